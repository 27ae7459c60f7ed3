-- Audit rows waiting to be chained (docs/decisions/0022-audit-rows-chained-in-batches.md). On
-- PostgreSQL a transaction that changes state writes its audit rows here, in the same commit, and
-- takes no lock on `audit_head`; one task per instance then moves whatever is pending into
-- `audit_log`, chained in `id` order, in one transaction per batch, before the request is
-- answered. SQLite has one writer and chains directly; the table stays empty there.
CREATE TABLE audit_pending (
    id          BIGSERIAL PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    clinic_id   TEXT,
    user_id     TEXT,
    detail      TEXT NOT NULL
);
