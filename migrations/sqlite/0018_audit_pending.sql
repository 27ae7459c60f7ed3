-- Audit rows waiting to be chained (docs/decisions/0022-audit-rows-chained-in-batches.md): used on
-- PostgreSQL only, where a transaction writes its audit rows here and one task per instance chains
-- them in batches. SQLite has one writer and chains directly; the table (kept for one schema on
-- both databases) stays empty.
CREATE TABLE audit_pending (
    id          INTEGER PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    clinic_id   TEXT,
    user_id     TEXT,
    detail      TEXT NOT NULL
);
