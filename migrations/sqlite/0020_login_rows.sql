-- Keep in step with ../postgres/0020_login_rows.sql.
--
-- Nothing changes on SQLite (docs/decisions/0027-lighter-login-rows-on-postgresql.md). On PostgreSQL
-- a login's rows lose their foreign keys to `users` and `clinics`, whose checks locked the parent
-- rows, and ceremonies and card challenges become unlogged. Here a foreign key check is a lookup by
-- primary key on the one writer, with no lock and no write; SQLite has no unlogged tables; and
-- dropping a constraint means rebuilding `signing_sessions`, which never shrinks.
SELECT 1;
