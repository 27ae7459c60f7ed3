-- The OQS relay (docs/design.md §3.13): files an EMR sends to a clinic's online qualification
-- (OQS) terminal through the clinic agent, and the terminal's answers. A request is `queued`
-- until the clinic's agent reports it written into the terminal's `req` folder (`delivered`),
-- then `answered` once the agent uploads the answer from `res`; `failed` or `expired` end it with
-- a reason. `lease_agent`/`lease_until` are the agent's claim while it writes the file. Content is
-- kept until `oqs.retention_secs` after the request ends, then the row is deleted (the audit
-- log keeps ids, names and sizes, never content).
CREATE TABLE oqs_requests (
    id                TEXT PRIMARY KEY,
    -- The queue's order (first in, first out): one more than the largest, under SQLite's one writer.
    seq               BIGINT NOT NULL UNIQUE,
    clinic_id         TEXT NOT NULL REFERENCES clinics(id),
    client_id         TEXT NOT NULL REFERENCES service_clients(id),
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
-- Two live requests of one clinic never share a file name: they would meet in the same folder.
CREATE UNIQUE INDEX oqs_requests_live_name ON oqs_requests (clinic_id, file_name) WHERE status IN ('queued', 'delivered');
CREATE INDEX oqs_requests_queue ON oqs_requests (clinic_id, seq) WHERE status = 'queued';
CREATE INDEX oqs_requests_due ON oqs_requests (expires_at) WHERE status IN ('queued', 'delivered');
CREATE INDEX oqs_requests_finished ON oqs_requests (finished_at) WHERE finished_at IS NOT NULL;

-- The one agent relaying for each clinic: another agent is refused while this one was seen within
-- `oqs.agent_hold_secs`.
CREATE TABLE oqs_agents (
    clinic_id    TEXT PRIMARY KEY REFERENCES clinics(id),
    agent_id     TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    version      TEXT NOT NULL,
    since        BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);
