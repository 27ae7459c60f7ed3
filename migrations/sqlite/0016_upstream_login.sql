-- Upstream sign-in through the EMR's OpenID Connect provider (docs/design.md §3.17). Keep in
-- step with ../postgres/0016_upstream_login.sql.
--
-- A clinic with a row in clinic_logins signs in through that provider instead of the embedded
-- password form (no row: embedded passwords, as before). The client secret is sealed under the
-- token key-encryption key (AES-256-GCM, associated data `oidc-client-secret:<clinic>`).
CREATE TABLE clinic_logins (
    clinic_id           TEXT NOT NULL PRIMARY KEY REFERENCES clinics (id),
    issuer              TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    client_secret       BLOB NOT NULL,              -- sealed (nonce ‖ ciphertext ‖ tag)
    claim               TEXT NOT NULL,             -- the ID token claim that names the user
    match_on            TEXT NOT NULL CHECK (match_on IN ('external_id', 'login_id')),
    scopes              TEXT NOT NULL,             -- space-separated, always with openid
    auth_method         TEXT NOT NULL CHECK (auth_method IN ('client_secret_basic', 'client_secret_post')),
    updated_at          BIGINT NOT NULL
);

-- One authorization request in flight: taken once (DELETE … RETURNING) by the callback, on any
-- instance. Keyed by SHA-256 of `state`; bound to the browser by SHA-256 of the flow cookie's
-- value and to the clinic certificate it started through. Lives a few minutes.
CREATE TABLE oidc_flows (
    state_hash          BLOB NOT NULL PRIMARY KEY,
    browser_hash        BLOB NOT NULL,
    clinic_id           TEXT NOT NULL REFERENCES clinics (id),
    device              TEXT NOT NULL,             -- fingerprint of the clinic certificate
    nonce               TEXT NOT NULL,
    pkce_verifier       TEXT NOT NULL,
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX oidc_flows_expires_at ON oidc_flows (expires_at);
