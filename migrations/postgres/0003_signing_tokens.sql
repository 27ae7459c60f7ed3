-- EMR signing tokens (docs/design.md §3.8): service clients, token signing keys, issued token ids.
-- Keep in step with ../sqlite/0003_signing_tokens.sql (same tables, same columns).

-- A service client is an EMR backend (role emr) or a remote signer (role signer), identified by
-- the SHA-256 fingerprint of its TLS client certificate (RFC 8705 §2.2 style).
CREATE TABLE service_clients (
    id           TEXT PRIMARY KEY,               -- operator-chosen name, e.g. emr-acme
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('emr', 'signer')),
    fingerprint  TEXT NOT NULL UNIQUE,           -- lowercase hex SHA-256 of the DER certificate
    subject      TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- The clinics a service client serves.
CREATE TABLE service_client_clinics (
    client_id   TEXT NOT NULL REFERENCES service_clients (id),
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, clinic_id)
);

-- ES256 token signing keys. The private key is AES-256-GCM encrypted (nonce || ciphertext,
-- the key id as associated data) with the key-encryption key from the configuration.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,               -- RFC 7638 JWK thumbprint
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_key  BYTEA NOT NULL,
    retired_at   BIGINT,                         -- stops signing; stays in the JWKS until its tokens expire
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;

-- Every issued token id, so a token can be consumed once on any instance.
CREATE TABLE issued_tokens (
    jti          TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES signing_sessions (id),
    client_id    TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    consumed_at  BIGINT,
    consumed_by  TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX issued_tokens_expires_at ON issued_tokens (expires_at);
