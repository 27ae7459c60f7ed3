-- SCIM provisioning (docs/design.md §3.16). Keep in step with ../postgres/0015_scim.sql (same
-- tables, same columns).
--
-- `users.version` counts changes to an account: SCIM's ETag is `W/"<version>"`, and every SCIM
-- write bumps it in the statement that checks it (`… WHERE version = $n`), so of two writers with
-- the same If-Match one wins and the other gets 412. `users.deprovisioned_at` marks an account a
-- provisioner deleted: it stays (disabled) so the audit log keeps naming it, and SCIM no longer
-- shows it (404).
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN deprovisioned_at BIGINT;

-- A new service-client role, `provisioner` (SCIM). SQLite cannot change a CHECK constraint, so
-- `service_clients` is rebuilt, and with it the two tables that reference it (their foreign keys
-- would otherwise stop it being dropped: the migration runs with foreign keys on, in one
-- transaction). The new tables reference `service_clients_new`; renaming it to `service_clients`
-- rewrites those references (SQLite ≥ 3.26, legacy_alter_table off). Columns keep their names,
-- types and order.
CREATE TABLE service_clients_new (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('emr', 'signer', 'provisioner')),
    fingerprint  TEXT NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    anchor_fingerprint TEXT
);
INSERT INTO service_clients_new (id, name, role, fingerprint, subject, enabled, created_at, updated_at, anchor_fingerprint)
    SELECT id, name, role, fingerprint, subject, enabled, created_at, updated_at, anchor_fingerprint FROM service_clients;

CREATE TABLE service_client_clinics_new (
    client_id   TEXT NOT NULL REFERENCES service_clients_new (id),
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, clinic_id)
);
INSERT INTO service_client_clinics_new (client_id, clinic_id, created_at)
    SELECT client_id, clinic_id, created_at FROM service_client_clinics;

CREATE TABLE oqs_requests_new (
    id                TEXT PRIMARY KEY,
    seq               BIGINT NOT NULL UNIQUE,
    clinic_id         TEXT NOT NULL REFERENCES clinics(id),
    client_id         TEXT NOT NULL REFERENCES service_clients_new(id),
    file_name         TEXT NOT NULL,
    size              BIGINT NOT NULL,
    content           BLOB NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'answered', 'failed', 'expired')),
    reason            TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    leases            BIGINT NOT NULL DEFAULT 0,
    lease_agent       TEXT,
    lease_until       BIGINT,
    delivered_at      BIGINT,
    response_name     TEXT,
    response_size     BIGINT,
    response_content  BLOB,
    finished_at       BIGINT
);
INSERT INTO oqs_requests_new SELECT id, seq, clinic_id, client_id, file_name, size, content, status, reason, created_at,
    expires_at, leases, lease_agent, lease_until, delivered_at, response_name, response_size, response_content, finished_at
    FROM oqs_requests;

-- Children first: then nothing references the old parent when it goes.
DROP TABLE oqs_requests;
DROP TABLE service_client_clinics;
DROP TABLE service_clients;
ALTER TABLE service_clients_new RENAME TO service_clients;
ALTER TABLE service_client_clinics_new RENAME TO service_client_clinics;
ALTER TABLE oqs_requests_new RENAME TO oqs_requests;

-- The indexes of 0012, which went with the old table.
CREATE UNIQUE INDEX oqs_requests_live_name ON oqs_requests (clinic_id, file_name) WHERE status IN ('queued', 'delivered');
CREATE INDEX oqs_requests_queue ON oqs_requests (clinic_id, seq) WHERE status = 'queued';
CREATE INDEX oqs_requests_due ON oqs_requests (expires_at) WHERE status IN ('queued', 'delivered');
CREATE INDEX oqs_requests_finished ON oqs_requests (finished_at) WHERE finished_at IS NOT NULL;
