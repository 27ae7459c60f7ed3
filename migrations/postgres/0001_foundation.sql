-- Foundation: clinics, their TLS certificates, users, trust anchors, login lockout,
-- browser sessions and the hash-chained audit log. Times are Unix seconds (UTC).
-- Keep in step with ../sqlite/0001_foundation.sql (same tables, same columns).

CREATE TABLE clinics (
    id          TEXT PRIMARY KEY,                 -- the clinic's code, e.g. 21234
    name        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE clinic_certs (
    fingerprint TEXT PRIMARY KEY,                 -- lowercase hex SHA-256 of the DER certificate
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    subject     TEXT NOT NULL,
    serial      TEXT NOT NULL,
    not_after   BIGINT NOT NULL,
    revoked_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX clinic_certs_clinic_id ON clinic_certs (clinic_id);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,              -- UUID
    clinic_id      TEXT NOT NULL REFERENCES clinics (id),
    login_id       TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('doctor', 'staff')),
    name           TEXT NOT NULL,
    medical_reg_no TEXT,                          -- 医籍番号, doctors only
    password_hash  TEXT NOT NULL,                 -- argon2id PHC string
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CONSTRAINT users_clinic_login_key UNIQUE (clinic_id, login_id)
);

CREATE TABLE trust_anchors (
    kind            TEXT NOT NULL CHECK (kind IN ('clinic', 'service', 'hpki', 'jpki')),
    fingerprint     TEXT NOT NULL,                -- lowercase hex SHA-256 of the DER certificate
    subject         TEXT NOT NULL,
    cert_der        BYTEA NOT NULL,
    revocation      TEXT NOT NULL CHECK (revocation IN ('crl', 'none')),
    crl_der         BYTEA,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (kind, fingerprint)
);

-- Failed logins per (clinic, login ID), whether or not the ID exists, so the lockout
-- reveals nothing about which IDs are real.
CREATE TABLE login_attempts (
    login_key     TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    locked_until  BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Browser sessions; the id is stored only as its SHA-256.
CREATE TABLE browser_sessions (
    id_hash     BYTEA PRIMARY KEY,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);

-- Append-only audit log; each row's hash covers its content and the previous row's hash.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    event       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    clinic_id   TEXT,
    user_id     TEXT,
    detail      TEXT NOT NULL,                   -- JSON object; ids, fingerprints and reasons only
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL
);

-- The chain's head: one row, updated in the same transaction as each append, so appends from
-- several instances serialise on it and a truncated tail is detectable.
CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, created_at, updated_at) VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, 0);
