-- Browser sessions of our own session layer, and WebAuthn ceremonies bound to them (decision
-- 0010). Keep in step with ../sqlite/0006_sessions_own_ceremonies.sql.
--
-- Session ids are now 256-bit and stored as SHA-256 of those bytes: no earlier session can be
-- presented again, so the rows go (doctors sign in once more after the upgrade). A ceremony is
-- now keyed by the hash of the browser session that started it, one at a time, like a card
-- challenge, instead of by a random id kept in the session's data: starting one no longer writes
-- the session. Ceremonies live two minutes; those in flight during the upgrade are dropped.

DELETE FROM browser_sessions;

DROP TABLE webauthn_ceremonies;
CREATE TABLE webauthn_ceremonies (
    session_hash        BYTEA NOT NULL PRIMARY KEY, -- SHA-256 of the browser-session id
    user_id             TEXT NOT NULL REFERENCES users (id),
    clinic_id           TEXT NOT NULL REFERENCES clinics (id),
    purpose             TEXT NOT NULL CHECK (purpose IN ('register', 'authenticate', 'link')),
    state               TEXT NOT NULL,             -- fido::RegistrationState / AuthenticationState
    enrollment_code_id  TEXT,                      -- registration authorised by this code
    linked_via          TEXT,                      -- registration authorised by this authenticator
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires_at ON webauthn_ceremonies (expires_at);
