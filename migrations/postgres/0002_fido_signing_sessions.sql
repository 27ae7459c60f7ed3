-- FIDO login (docs/design.md §3.4, §3.6, §3.7): one-time registration codes, linked FIDO credentials,
-- server-side WebAuthn ceremony state, and signing sessions. Times are Unix seconds (UTC).
-- Keep in step with ../sqlite/0002_fido_signing_sessions.sql (same tables, same columns).

-- One-time registration codes that let a doctor link an authenticator (any kind: FIDO now,
-- cards later). Only SHA-256 of the code is kept. A code is usable while used_at and voided_at
-- are NULL and expires_at lies ahead; at most one such code per user (issuing a new one voids
-- the old one in the same transaction).
CREATE TABLE enrollment_codes (
    id            TEXT PRIMARY KEY,                -- UUID, for audit rows and operators
    user_id       TEXT NOT NULL REFERENCES users (id),
    code_hash     BYTEA NOT NULL,               -- SHA-256 of the normalised code
    failures      BIGINT NOT NULL DEFAULT 0,       -- wrong entries so far
    max_failures  BIGINT NOT NULL,                 -- wrong entries that void the code
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    voided_at     BIGINT,
    void_reason   TEXT CHECK (void_reason IN ('replaced', 'revoked', 'exhausted')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX enrollment_codes_one_open ON enrollment_codes (user_id)
    WHERE used_at IS NULL AND voided_at IS NULL;

-- Linked FIDO credentials. `stored` is fido::StoredCredential (public key, flags, counter) as
-- JSON; `counter` mirrors its signature counter so updates can be compare-and-swap and the
-- stored value only ever goes up.
CREATE TABLE fido_credentials (
    id               TEXT PRIMARY KEY,             -- UUID, for URLs, audit rows and operators
    credential_id    BYTEA NOT NULL,            -- WebAuthn rawId
    user_id          TEXT NOT NULL REFERENCES users (id),
    name             TEXT NOT NULL,
    aaguid           TEXT NOT NULL,
    aaguid_attested  BOOLEAN NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    stored           TEXT NOT NULL,
    counter          BIGINT NOT NULL,
    linked_via       TEXT NOT NULL,                -- 'code' or '<kind>:<authenticator id>'
    last_used_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT fido_credentials_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX fido_credentials_user_id ON fido_credentials (user_id);

-- WebAuthn ceremony state between start and finish: single use (taken with one
-- DELETE ... RETURNING), expiring, bound to the browser session that started it (the row id
-- is kept only in that session's server-side data) and to the doctor and clinic.
CREATE TABLE webauthn_ceremonies (
    id                  TEXT PRIMARY KEY,          -- random UUID, held in the browser session
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

-- Signing sessions (docs/design.md §3.7): opened by a successful presence check, bound to one doctor at
-- one clinic. Live while ended_at IS NULL, now < expires_at and now < last_activity_at + idle_secs.
CREATE TABLE signing_sessions (
    id                  TEXT PRIMARY KEY,          -- UUID (the token's sid)
    user_id             TEXT NOT NULL REFERENCES users (id),
    clinic_id           TEXT NOT NULL REFERENCES clinics (id),
    method              TEXT NOT NULL CHECK (method IN ('fido', 'hpki', 'jpki')),
    authenticator_kind  TEXT NOT NULL,             -- 'fido', 'hpki', 'jpki'
    authenticator_id    TEXT NOT NULL,             -- e.g. fido_credentials.id
    amr                 TEXT NOT NULL,             -- JSON array of RFC 8176 values
    acr                 TEXT NOT NULL,
    auth_time           BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,           -- absolute expiry
    idle_secs           BIGINT NOT NULL,
    last_activity_at    BIGINT NOT NULL,
    ended_at            BIGINT,
    ended_reason        TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
-- At most one open session per doctor and clinic; opening a new one ends the old one first.
CREATE UNIQUE INDEX signing_sessions_one_open ON signing_sessions (user_id, clinic_id)
    WHERE ended_at IS NULL;
CREATE INDEX signing_sessions_authenticator ON signing_sessions (authenticator_kind, authenticator_id);
