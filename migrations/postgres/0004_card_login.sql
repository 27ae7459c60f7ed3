-- Card login (docs/design.md §3.3, §3.6): single-use card challenges, linked card credentials, and a CRL
-- distribution URL per trust anchor. Times are Unix seconds (UTC).
-- Keep in step with ../sqlite/0004_card_login.sql (same tables, same columns).

-- A card challenge between /auth/card/challenge and /auth/card/finish: 32 random bytes, single
-- use (taken with one DELETE ... RETURNING), 120 s, bound to the browser session (SHA-256 of its
-- id; at most one pending challenge per browser session), the doctor, the clinic, the card kind
-- and the purpose. A registration code or an authenticator that authorised a link rides along.
CREATE TABLE card_challenges (
    session_hash        BYTEA NOT NULL PRIMARY KEY, -- SHA-256 of the browser-session id
    user_id             TEXT NOT NULL REFERENCES users (id),
    clinic_id           TEXT NOT NULL REFERENCES clinics (id),
    kind                TEXT NOT NULL CHECK (kind IN ('hpki', 'jpki')),
    purpose             TEXT NOT NULL CHECK (purpose IN ('signing_session', 'link')),
    challenge           BYTEA NOT NULL,             -- 32 random bytes
    enrollment_code_id  TEXT,                      -- a link authorised by this code
    linked_via          TEXT,                      -- a link authorised by '<kind>:<authenticator id>'
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX card_challenges_expires_at ON card_challenges (expires_at);

-- Cards linked to doctor accounts, identified by issuer (SHA-256 of the DER issuer Name) and
-- serial; the SPKI hash pins the key. No PIN, no name or other personal data from the certificate.
-- The unique key means a card (in particular a My Number card) belongs to one account only.
CREATE TABLE card_credentials (
    id             TEXT PRIMARY KEY,               -- UUID, for URLs, audit rows and operators
    user_id        TEXT NOT NULL REFERENCES users (id),
    kind           TEXT NOT NULL CHECK (kind IN ('hpki', 'jpki')),
    issuer_sha256  TEXT NOT NULL,
    serial_hex     TEXT NOT NULL,
    spki_sha256    TEXT NOT NULL,
    cert_sha256    TEXT NOT NULL,                  -- fingerprint of the certificate linked
    not_after      BIGINT NOT NULL,
    name           TEXT NOT NULL,
    linked_via     TEXT NOT NULL,                  -- 'code' or '<kind>:<authenticator id>'
    last_used_at   BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CONSTRAINT card_credentials_card_key UNIQUE (kind, issuer_sha256, serial_hex)
);
CREATE INDEX card_credentials_user_id ON card_credentials (user_id);

-- Where a background task fetches the anchor's CRL from (optional); the fetched CRL replaces
-- crl_der, and crl_next_update (its nextUpdate) tells the task when to fetch again.
ALTER TABLE trust_anchors ADD COLUMN crl_url TEXT;
ALTER TABLE trust_anchors ADD COLUMN crl_next_update BIGINT;
