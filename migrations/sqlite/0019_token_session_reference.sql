-- Keep in step with ../postgres/0019_token_session_reference.sql.
--
-- `issued_tokens.session_id` loses its foreign key, as on PostgreSQL (docs/decisions/
-- 0024-one-statement-per-token-batch.md): a token is inserted only by a statement that joins its session
-- and requires it live, and signing sessions are never deleted. SQLite cannot drop a constraint,
-- so the table is rebuilt (it holds only tokens that have not expired yet).

CREATE TABLE issued_tokens_new (
    jti          TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
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
