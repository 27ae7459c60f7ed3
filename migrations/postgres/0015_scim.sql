-- SCIM provisioning (docs/design.md §3.16). Keep in step with ../sqlite/0015_scim.sql (same
-- tables, same columns).
--
-- `users.version` counts changes to an account: SCIM's ETag is `W/"<version>"`, and every SCIM
-- write bumps it in the statement that checks it (`… WHERE version = $n`), so of two writers with
-- the same If-Match one wins and the other gets 412. `users.deprovisioned_at` marks an account a
-- provisioner deleted: it stays (disabled) so the audit log keeps naming it, and SCIM no longer
-- shows it (404).
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN deprovisioned_at BIGINT;

-- A new service-client role, `provisioner` (SCIM).
ALTER TABLE service_clients DROP CONSTRAINT service_clients_role_check;
ALTER TABLE service_clients ADD CONSTRAINT service_clients_role_check CHECK (role IN ('emr', 'signer', 'provisioner'));
