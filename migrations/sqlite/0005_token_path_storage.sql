-- Storage layout of the token path (decision 0009). Keep the columns in step with
-- ../postgres/0005_token_path_storage.sql (which changes nothing: PostgreSQL stores these as heaps
-- with one index already).
--
-- Every issued token writes one `issued_tokens` row and one `audit_log` row. As rowid tables with
-- a TEXT / BIGINT primary key each kept two B-trees (the rows and the key's index), so every token
-- dirtied twice the pages it needs. `issued_tokens` becomes a WITHOUT ROWID table keyed by `jti`
-- (token ids are time-prefixed, so new ids land on the same few leaf pages), and `audit_log.seq`
-- becomes an INTEGER PRIMARY KEY, the rowid itself.

CREATE TABLE issued_tokens_new (
    jti          TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES signing_sessions (id),
    client_id    TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    consumed_at  BIGINT,
    consumed_by  TEXT,
    created_at   BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO issued_tokens_new (jti, session_id, client_id, expires_at, consumed_at, consumed_by, created_at)
    SELECT jti, session_id, client_id, expires_at, consumed_at, consumed_by, created_at FROM issued_tokens;
DROP TABLE issued_tokens;
ALTER TABLE issued_tokens_new RENAME TO issued_tokens;
CREATE INDEX issued_tokens_expires_at ON issued_tokens (expires_at);

CREATE TABLE audit_log_new (
    seq         INTEGER PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    clinic_id   TEXT,
    user_id     TEXT,
    detail      TEXT NOT NULL,                   -- JSON object; ids, fingerprints and reasons only
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
);
INSERT INTO audit_log_new (seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash)
    SELECT seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
