-- The remote signer's own schema (docs/design.md §3.10). Never the gateway's tables.

-- Callers of the CSC API: registered by the SHA-256 fingerprint of their TLS client certificate.
CREATE TABLE service_clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    subject     TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL
);

-- The clinics each caller may sign for.
CREATE TABLE service_client_clinics (
    client_id TEXT NOT NULL REFERENCES service_clients(id) ON DELETE CASCADE,
    clinic_id TEXT NOT NULL,
    PRIMARY KEY (client_id, clinic_id)
);

-- One signing credential per doctor and clinic. key_ref: the sealed PKCS#8 (software) or the
-- token's CKA_ID (pkcs11). certificate: DER; chain: the issuing CAs, DER, concatenated.
CREATE TABLE credentials (
    id             TEXT PRIMARY KEY,
    clinic_id      TEXT NOT NULL,
    medical_reg_no TEXT NOT NULL,
    description    TEXT NOT NULL,
    backend        TEXT NOT NULL,
    key_ref        BYTEA NOT NULL,
    key_bits       BIGINT NOT NULL,
    spki           BYTEA NOT NULL,
    certificate    BYTEA,
    chain          BYTEA,
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (clinic_id, medical_reg_no)
);

-- The keyed hash chain (infra::audit_chain): hash = HMAC(audit key, prev_hash || row).
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    clinic_id  TEXT,
    user_id    TEXT,
    detail     TEXT NOT NULL,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL
);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
