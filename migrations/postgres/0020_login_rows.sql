-- Keep in step with ../sqlite/0020_login_rows.sql.
--
-- Two changes to the rows a login writes (docs/decisions/0027-lighter-login-rows-on-postgresql.md).
--
-- 1. Ceremonies, card challenges and signing sessions lose their foreign keys to `users` and
--    `clinics`. PostgreSQL checks such a key on insert by locking the parent row (`SELECT … FOR KEY
--    SHARE`): each login locked its doctor's row and its clinic's row twice, and every login at a
--    clinic locks the same clinic row, so concurrent logins shared that lock through a MultiXact.
--    Nothing needs the keys: these rows are written only for the doctor and clinic of an
--    authenticated browser session, and doctors and clinics are never deleted.
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_user_id_fkey;
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_clinic_id_fkey;
ALTER TABLE card_challenges DROP CONSTRAINT card_challenges_user_id_fkey;
ALTER TABLE card_challenges DROP CONSTRAINT card_challenges_clinic_id_fkey;
ALTER TABLE signing_sessions DROP CONSTRAINT signing_sessions_user_id_fkey;
ALTER TABLE signing_sessions DROP CONSTRAINT signing_sessions_clinic_id_fkey;

-- 2. Ceremonies and card challenges are unlogged: written without WAL, so the transactions that
--    only put or take one commit without waiting for a WAL flush. They are single-use state that
--    lives two minutes. A crash or a fail-over empties both tables (PostgreSQL resets unlogged
--    tables in recovery, and a standby has none): a doctor in the middle of a login starts again,
--    and nothing taken can be taken twice.
ALTER TABLE webauthn_ceremonies SET UNLOGGED;
ALTER TABLE card_challenges SET UNLOGGED;
