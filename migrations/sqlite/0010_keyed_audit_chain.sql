-- Keyed audit chain (decision 0013, docs/design.md §3.9). Rows are linked with HMAC-SHA256 under the
-- audit key, which is not in the database. `keyed_from` is the first keyed row: an empty log is
-- keyed from its first row; a log that already has rows keeps them as its plain SHA-256 segment
-- and takes no new rows until an operator runs `gateway admin audit rekey`, which appends an
-- `audit_chain_keyed` event linked to the old head and sets `keyed_from` to it.
ALTER TABLE audit_head ADD COLUMN keyed_from BIGINT;
UPDATE audit_head SET keyed_from = 1 WHERE seq = 0;
