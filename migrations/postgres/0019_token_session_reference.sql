-- Keep in step with ../sqlite/0019_token_session_reference.sql.
--
-- `issued_tokens.session_id` loses its foreign key (docs/decisions/0024-one-statement-per-token-batch.md).
-- The check behind it locked the session's row (`FOR KEY SHARE`) for every token: a WAL record and a
-- dirtied page of `signing_sessions` per token, and after each checkpoint a full-page image of it.
-- Nothing needs the constraint: a token is inserted only by a statement that joins its session and
-- requires it live (`Store::commit_batch`), and signing sessions are never deleted.
ALTER TABLE issued_tokens DROP CONSTRAINT issued_tokens_session_id_fkey;
