-- Bound browser sessions and temporary passwords (issue 15). Keep in step with
-- ../sqlite/0008_bound_browser_sessions.sql.
--
-- A browser session now records whose it is (so an operator's password change can end it), the
-- SHA-256 of the clinic client certificate it was created under (a cookie presented under another
-- certificate is not a session), its absolute expiry, and when this browser session last proved
-- a card or FIDO authenticator (adding, renaming or removing one needs a recent proof). Earlier
-- sessions know none of this, so they go: doctors sign in once more after the upgrade.
--
-- A password set by an operator is temporary unless given as permanent: the doctor chooses a new
-- one at the next login, before `login.temporary_password_secs` from when it was set
-- (`password_set_at`) have passed. Existing passwords stay as they are (permanent); their set
-- time is taken to be the account's last change.

DELETE FROM browser_sessions;

ALTER TABLE browser_sessions ADD COLUMN user_id TEXT;
ALTER TABLE browser_sessions ADD COLUMN client_cert_sha256 BYTEA;
ALTER TABLE browser_sessions ADD COLUMN absolute_expires_at BIGINT;
ALTER TABLE browser_sessions ADD COLUMN reauth_at BIGINT;
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);

ALTER TABLE users ADD COLUMN password_temporary BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN password_set_at BIGINT NOT NULL DEFAULT 0;
UPDATE users SET password_set_at = updated_at;
