//! EMR signing tokens (docs/design.md §3.8): ES256 JWTs, their keys, the JWKS, and verification.
//!
//! Issuing is on the hot path, so the active key is parsed once into an aws-lc-rs
//! `EcdsaKeyPair` and the compact JWS (RFC 7515 §7.1) is assembled here: base64url(header) "."
//! base64url(claims), signed with ECDSA P-256/SHA-256 in the fixed r‖s form JWS requires
//! (RFC 7518 §3.4). Verification, where a mistake would matter more than speed, goes through the
//! `jsonwebtoken` library with only ES256 allowed. See docs/decisions/0004-token-signing.md.
//!
//! Keys live in the database, the private half encrypted with AES-256-GCM under a
//! key-encryption key (KEK) from the configuration, so every instance signs with the same key and
//! publishes the same JWKS. Each instance reloads the key ring every few seconds; after a
//! rotation the previous key stays in the JWKS until the last token it signed has expired.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{SigningKeyRow, Store};

/// The JWS `typ` of a signing token (RFC 8725 §3.11, explicit typing). Consume and the remote
/// signer require it, so no other JWT signed with the same key can be presented as a signing token.
pub const TOKEN_TYPE: &str = "ninsho-signing+jwt";

/// The OID of SHA-256 (CSC `hashAlgorithmOID`), the only hash the signer accepts.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";

/// `cnf` claim (RFC 8705 §3.1): the SHA-256 thumbprint of the requesting client's certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// base64url SHA-256 of the DER certificate.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// Claims of a signing token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: the gateway.
    pub iss: String,
    /// Audience: the remote signer.
    pub aud: String,
    /// The doctor (gateway user id).
    pub sub: String,
    /// The clinic.
    pub clinic: String,
    /// The signing session.
    pub sid: String,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: String,
    /// When the doctor authenticated.
    pub auth_time: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id, single use at `/api/v1/signing-tokens/consume`.
    pub jti: String,
    /// Certificate binding of the requesting service client.
    pub cnf: Confirmation,
    /// The doctor's medical registration number (医籍番号), so the signer can select the key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub medical_reg_no: Option<String>,
    /// `true` for a test account's token (docs/design.md §3.10): a signer must not sign a real
    /// prescription with it. Absent for a real doctor's.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub test: bool,
    /// SCAL2-style binding: base64url hashes the signer may sign, in order.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hashes: Option<Vec<String>>,
    /// OID of the hash algorithm of `hashes`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hash_alg: Option<String>,
    /// How many signatures the token authorises.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub num_signatures: Option<u32>,
}

/// The base64url SHA-256 thumbprint of a DER certificate (`x5t#S256`).
pub fn x5t_s256(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

/// A fresh token id issued at `now` (Unix seconds): the time as 4 big-endian bytes, then 96
/// random bits, base64url (22 characters). Ids issued within a few seconds of each other share a
/// prefix, so each new id lands on the same few index pages instead of a random one (decision
/// 0009); the random part keeps ids unique and unguessable (the time is in `iat` anyway).
pub fn new_jti(now: i64) -> String {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&(now.clamp(0, i64::from(u32::MAX)) as u32).to_be_bytes());
    id[4..].copy_from_slice(&rand::random::<[u8; 12]>());
    URL_SAFE_NO_PAD.encode(id)
}

pub use infra::kek::Kek;

/// A newly generated key, ready to store.
pub struct NewKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Public JWK JSON.
    pub public_jwk: String,
    /// Encrypted PKCS#8.
    pub sealed_private: Vec<u8>,
}

/// Generates a P-256 key and seals it under `kek`.
pub fn generate_key(kek: &Kek) -> anyhow::Result<NewKey> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    key_from_pkcs8(kek, pkcs8.as_ref())
}

/// A P-256 PKCS#8 private key, ready to store: its RFC 7638 `kid`, public JWK and the key sealed
/// under `kek`.
pub fn key_from_pkcs8(kek: &Kek, pkcs8: &[u8]) -> anyhow::Result<NewKey> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| anyhow::anyhow!("not a P-256 PKCS#8 key"))?;
    let (x, y) = point_xy(pair.public_key().as_ref())?;
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
    let public_jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"
    })
    .to_string();
    let sealed_private = kek.seal(&kid, pkcs8)?;
    Ok(NewKey { kid, public_jwk, sealed_private })
}

/// Splits an uncompressed P-256 point (0x04 ‖ X ‖ Y) into base64url X and Y.
fn point_xy(point: &[u8]) -> anyhow::Result<(String, String)> {
    if point.len() != 65 || point[0] != 4 {
        bail!("unexpected public key encoding");
    }
    Ok((URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..])))
}

struct ActiveKey {
    kid: String,
    pair: EcdsaKeyPair,
    /// base64url of the protected header, computed once per key.
    header_b64: String,
}

/// What one instance currently signs with and accepts.
struct KeyRing {
    active: Option<ActiveKey>,
    verifiers: HashMap<String, jsonwebtoken::DecodingKey>,
    jwks: Arc<str>,
}

/// Why a presented token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, wrong algorithm, unknown key, bad signature, wrong issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past `exp`; signed by us, so its claims can be trusted for the audit.
    #[error("token expired")]
    Expired(Box<Claims>),
    /// Before `nbf`; signed by us.
    #[error("token not yet valid")]
    NotYetValid(Box<Claims>),
}

/// The token keys of this instance.
pub struct TokenKeys {
    ring: ArcSwap<KeyRing>,
    kek: Kek,
    /// A retired key stays published this long after it stopped signing.
    publish_retired_secs: i64,
    rng: SystemRandom,
    /// Refreshes read and swap one at a time, so a slow read of older rows can never replace
    /// the ring a later read built (the periodic refresh racing a rotation's).
    refreshing: tokio::sync::Mutex<()>,
}

impl TokenKeys {
    /// Loads the keys, creating the first one if the database has none (race-safe across
    /// instances: one active key per algorithm is a unique index).
    pub async fn load(store: &Store, kek: Kek, publish_retired_secs: i64, now: i64) -> anyhow::Result<Self> {
        if store.active_signing_key().await?.is_none() {
            let key = generate_key(&kek)?;
            store.insert_signing_key_if_none_active(&key.kid, "ES256", &key.public_jwk, &key.sealed_private, now).await?;
        }
        let keys = Self {
            ring: ArcSwap::from_pointee(KeyRing { active: None, verifiers: HashMap::new(), jwks: Arc::from("") }),
            kek,
            publish_retired_secs,
            rng: SystemRandom::new(),
            refreshing: tokio::sync::Mutex::new(()),
        };
        keys.refresh(store, now).await?;
        Ok(keys)
    }

    /// Re-reads the keys from the database and swaps the ring in one step.
    pub async fn refresh(&self, store: &Store, now: i64) -> anyhow::Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let rows = store.published_signing_keys(now - self.publish_retired_secs).await?;
        self.ring.store(Arc::new(self.ring_of(&rows)?));
        Ok(())
    }

    /// Keys from `rows` without a database (the fuzz targets, `crate::fuzzing`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn from_rows(kek: Kek, rows: &[SigningKeyRow]) -> anyhow::Result<Self> {
        let keys = Self {
            ring: ArcSwap::from_pointee(KeyRing { active: None, verifiers: HashMap::new(), jwks: Arc::from("") }),
            kek,
            publish_retired_secs: 0,
            rng: SystemRandom::new(),
            refreshing: tokio::sync::Mutex::new(()),
        };
        keys.ring.store(Arc::new(keys.ring_of(rows)?));
        Ok(keys)
    }

    /// The ring of `rows`: a verifier and a JWKS entry for each, the signer of the one not retired.
    fn ring_of(&self, rows: &[SigningKeyRow]) -> anyhow::Result<KeyRing> {
        let mut active = None;
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for row in rows {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&row.public_jwk).context("stored JWK")?;
            verifiers.insert(row.kid.clone(), jsonwebtoken::DecodingKey::from_jwk(&jwk).context("stored JWK")?);
            jwks.push(serde_json::from_str::<serde_json::Value>(&row.public_jwk)?);
            if row.retired_at.is_none() {
                let pkcs8 = self.kek.open(&row.kid, &row.private_key)?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| anyhow::anyhow!("signing key {} does not parse", row.kid))?;
                let header = serde_json::json!({ "alg": "ES256", "typ": TOKEN_TYPE, "kid": row.kid }).to_string();
                active = Some(ActiveKey { kid: row.kid.clone(), pair, header_b64: URL_SAFE_NO_PAD.encode(header) });
            }
        }
        let jwks = Arc::from(serde_json::json!({ "keys": jwks }).to_string());
        Ok(KeyRing { active, verifiers, jwks })
    }

    /// The JWKS document (current and still-published previous keys).
    pub fn jwks(&self) -> Arc<str> {
        self.ring.load().jwks.clone()
    }

    /// The key id new tokens are signed with.
    pub fn active_kid(&self) -> Option<String> {
        self.ring.load().active.as_ref().map(|k| k.kid.clone())
    }

    /// Signs `claims` with the active key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let ring = self.ring.load();
        let key = ring.active.as_ref().context("no active token signing key")?;
        let payload = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(key.header_b64.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&key.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let sig = key.pair.sign(&self.rng, token.as_bytes()).map_err(|_| anyhow::anyhow!("signing failed"))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
        Ok(token)
    }

    /// Verifies a token's header (ES256 only, type [`TOKEN_TYPE`], key by `kid` from our own
    /// ring only), then its signature, issuer and audience with `jsonwebtoken`, then `exp`/`nbf`
    /// against `now` (the library would read the system clock).
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, now: i64) -> Result<Claims, TokenError> {
        let invalid = |e: &dyn std::fmt::Display| TokenError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if header.alg != jsonwebtoken::Algorithm::ES256 {
            return Err(TokenError::Invalid("algorithm is not ES256".into()));
        }
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(TokenError::Invalid("not a signing token (typ)".into()));
        }
        // We never send keys or key locations in the header; a token carrying one was not made
        // here, and must not even look as if it could choose its own key (RFC 8725 §3.10). We
        // understand no extension, so a `crit` header is refused too (RFC 7515 §4.1.11).
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
            return Err(TokenError::Invalid("key material in the header".into()));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let ring = self.ring.load();
        let key = ring.verifiers.get(&kid).ok_or_else(|| TokenError::Invalid("unknown key".into()))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.required_spec_claims =
            ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"].iter().map(|s| (*s).to_owned()).collect();
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| invalid(&e))?.claims;
        if now >= claims.exp {
            return Err(TokenError::Expired(Box::new(claims)));
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid(Box::new(claims)));
        }
        Ok(claims)
    }
}

/// Rotates: the active key retires now and a new one takes over. Returns the new key id.
pub async fn rotate(store: &Store, kek: &Kek, now: i64) -> anyhow::Result<String> {
    let key = generate_key(kek)?;
    store.rotate_signing_key(&key.kid, "ES256", &key.public_jwk, &key.sealed_private, now).await?;
    Ok(key.kid)
}

/// The stored key rows, for `keys list`.
pub type KeyRow = SigningKeyRow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_time_prefixed_and_unique() {
        let now = 1_800_000_000;
        let a = new_jti(now);
        let b = new_jti(now);
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        let bytes = URL_SAFE_NO_PAD.decode(&a).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()), 1_800_000_000);
        // Ids of the same few seconds share their first five characters (30 bits of the time).
        assert_eq!(a[..5], b[..5]);
        assert_eq!(new_jti(now + 3)[..5], a[..5]);
        assert_ne!(new_jti(now + 3600)[..5], a[..5]);
        // The random part differs (96 bits).
        assert_ne!(bytes[4..], URL_SAFE_NO_PAD.decode(&b).unwrap()[4..]);
    }
}
