-- Storage layout of the token path (decision 0009): the SQLite migration of the same number
-- rebuilds `issued_tokens` (WITHOUT ROWID) and `audit_log` (seq as the rowid). PostgreSQL already
-- stores each as a heap with one primary-key index, so nothing changes here; the migration exists
-- so both databases carry the same version numbers.
SELECT 1;
