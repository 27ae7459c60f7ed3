-- Trust per anchor (decision 0012): each anchor's end-entity policy allow-list, CRLs of the CAs
-- below an anchor, and which anchor each registered certificate or card was accepted under, so an
-- anchor is not removed while something depends on it. Times are Unix seconds (UTC).
-- Keep in step with ../postgres/0007_trust_per_anchor.sql.

-- NULL: the kind's default (HPKI / JPKI authentication arcs; any for clinic and service anchors);
-- 'any', or OIDs and arcs ('1.2.3.*') separated by commas.
ALTER TABLE trust_anchors ADD COLUMN policies TEXT;

-- CRLs of intermediate CAs under an anchor (the anchor's own CRL stays on trust_anchors), each
-- with the CA certificate it was checked against at registration.
CREATE TABLE anchor_crls (
    kind                TEXT NOT NULL,
    anchor_fingerprint  TEXT NOT NULL,
    issuer_sha256       TEXT NOT NULL,            -- lowercase hex SHA-256 of the CA's DER subject Name
    issuer_subject      TEXT NOT NULL,
    issuer_cert_der     BLOB NOT NULL,
    crl_der             BLOB NOT NULL,
    this_update         BIGINT NOT NULL,
    next_update         BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (kind, anchor_fingerprint, issuer_sha256),
    FOREIGN KEY (kind, anchor_fingerprint) REFERENCES trust_anchors (kind, fingerprint) ON DELETE CASCADE
);

-- The anchor a certificate was accepted under (NULL for rows registered before this version).
ALTER TABLE clinic_certs ADD COLUMN anchor_fingerprint TEXT;
ALTER TABLE service_clients ADD COLUMN anchor_fingerprint TEXT;
ALTER TABLE card_credentials ADD COLUMN anchor_fingerprint TEXT;
