//! The SAD (Signature Activation Data) is the gateway's signing token (docs/design.md §3.11):
//! an ES256 JWT, typed `ninsho-signing+jwt`, verified here offline against the gateway's JWKS
//! before anything else happens. Only what [`verify`] accepts goes on to be consumed at the
//! gateway, and only a consumed token signs.
//!
//! Verification goes through `jsonwebtoken` with ES256 as the only algorithm; the header is
//! checked first, so a token cannot bring its own key (`jwk`, `jku`, `x5u`, `x5c`) or an
//! extension we would not understand (`crit`), RFC 8725 §3.10.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::gateway::GatewayClient;

/// The JWS `typ` of a signing token.
pub const TOKEN_TYPE: &str = "ninsho-signing+jwt";

/// `cnf` (RFC 8705 §3.1).
#[derive(Debug, Clone, Deserialize)]
pub struct Confirmation {
    /// base64url SHA-256 of the client certificate the token was issued to.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The claims the signer relies on.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Issuer: the gateway.
    pub iss: String,
    /// The doctor (gateway user id).
    pub sub: String,
    /// The clinic.
    pub clinic: String,
    /// Token id (single use, decided at the gateway).
    pub jti: String,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Certificate binding.
    pub cnf: Confirmation,
    /// The doctor's 医籍番号: selects the credential.
    #[serde(default)]
    pub medical_reg_no: Option<String>,
    /// A test account's token.
    #[serde(default)]
    pub test: bool,
    /// base64url SHA-256 hashes the token authorises.
    #[serde(default)]
    pub hashes: Option<Vec<String>>,
    /// Their algorithm's OID.
    #[serde(default)]
    pub hash_alg: Option<String>,
    /// How many signatures it authorises.
    #[serde(default)]
    pub num_signatures: Option<u32>,
}

/// Why a SAD was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SadError {
    /// Malformed, wrong header, bad signature, wrong `iss`/`aud`/`typ`, or a key we do not know.
    #[error("{0}")]
    Invalid(&'static str),
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("not yet valid")]
    NotYetValid,
    /// The JWKS could not be fetched for an unknown key: nothing can be decided.
    #[error("the gateway's JWKS could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// The gateway's public keys by `kid`, fetched and cached; an unknown `kid` triggers a fetch
/// (at most every `refresh_min_secs`), and a set older than `max_age_secs` is fetched again.
pub struct Jwks {
    keys: ArcSwap<KeySet>,
    fetch: tokio::sync::Mutex<()>,
    refresh_min_secs: i64,
    max_age_secs: i64,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<jsonwebtoken::DecodingKey>>,
    /// When it was fetched (Unix seconds); `None`: never.
    fetched_at: Option<i64>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("kids", &self.keys.load().by_kid.keys().collect::<Vec<_>>()).finish()
    }
}

impl Jwks {
    /// An empty cache; the first token fetches.
    pub fn new(refresh_min_secs: u64, max_age_secs: u64) -> Self {
        Self {
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(()),
            refresh_min_secs: i64::try_from(refresh_min_secs).unwrap_or(i64::MAX),
            max_age_secs: i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        }
    }

    /// The key for `kid`, fetching the set when the key is unknown or the set is stale.
    async fn key(&self, kid: &str, gateway: &GatewayClient, now: i64) -> Result<Arc<jsonwebtoken::DecodingKey>, SadError> {
        let fresh = |set: &KeySet| set.fetched_at.is_some_and(|at| now - at < self.max_age_secs);
        {
            let set = self.keys.load();
            if let (Some(key), true) = (set.by_kid.get(kid), fresh(&set)) {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; whoever waited looks again before fetching.
        let _guard = self.fetch.lock().await;
        let set = self.keys.load_full();
        let stale = !fresh(&set);
        match set.by_kid.get(kid) {
            Some(key) if !stale => return Ok(key.clone()),
            // An unknown kid refetches at most every refresh_min_secs, so a flood of made-up kids
            // cannot turn into a flood of fetches.
            None if !stale && set.fetched_at.is_some_and(|at| now - at < self.refresh_min_secs) => {
                return Err(SadError::Invalid("unknown kid"));
            }
            _ => {}
        }
        match gateway.jwks().await {
            Ok(jwks) => {
                let mut by_kid = HashMap::new();
                for jwk in &jwks.keys {
                    let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), jsonwebtoken::DecodingKey::from_jwk(jwk)) else {
                        continue;
                    };
                    by_kid.insert(kid, Arc::new(key));
                }
                tracing::debug!(keys = by_kid.len(), "fetched the gateway's JWKS");
                let key = by_kid.get(kid).cloned();
                self.keys.store(Arc::new(KeySet { by_kid, fetched_at: Some(now) }));
                key.ok_or(SadError::Invalid("unknown kid"))
            }
            // A stale set still holds the key: use it rather than stop signing while the gateway
            // is briefly away (consume will decide anyway, and fails closed).
            Err(e) => match set.by_kid.get(kid) {
                Some(key) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; using the cached key set");
                    Ok(key.clone())
                }
                None => Err(SadError::KeysUnavailable(e.to_string())),
            },
        }
    }
}

/// Verifies `token` completely: header, signature under the gateway's key, `typ`, `iss`,
/// `aud`, `exp`/`nbf` against `now`. The claims it returns are still to be matched with the
/// request (credential, hashes, certificate binding).
pub async fn verify(
    token: &str,
    jwks: &Jwks,
    gateway: &GatewayClient,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<Claims, SadError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| SadError::Invalid("not a JWT"))?;
    if header.alg != jsonwebtoken::Algorithm::ES256 {
        return Err(SadError::Invalid("algorithm is not ES256"));
    }
    if header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(SadError::Invalid("not a signing token (typ)"));
    }
    if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
        return Err(SadError::Invalid("key material or extensions in the header"));
    }
    let kid = header.kid.ok_or(SadError::Invalid("no kid"))?;
    let key = jwks.key(&kid, gateway, now).await?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    // Time is checked below against the injected clock, not the library's wall clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub", "jti"].iter().map(|s| (*s).to_owned()).collect();
    let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            return Err(SadError::Invalid(match e.kind() {
                K::InvalidSignature => "bad signature",
                K::InvalidIssuer => "wrong issuer",
                K::InvalidAudience => "wrong audience",
                K::MissingRequiredClaim(_) => "a required claim is missing",
                _ => "malformed claims",
            }));
        }
    };
    if now >= claims.exp {
        return Err(SadError::Expired);
    }
    if now < claims.nbf {
        return Err(SadError::NotYetValid);
    }
    Ok(claims)
}
