//! Upstream OpenID Connect sign-in, the relying-party side (docs/design.md §3.17): the provider's
//! discovery document and JWKS (cached per issuer), PKCE, the code exchange, and the ID token's
//! verification. The pages and the mapping to a user are `http/oidc.rs`.
//!
//! Signatures and the standard claims are checked by `jsonwebtoken` (the crate the gateway's own
//! signing tokens use). Discovery and the exchange are written here rather than taken from the
//! `openidconnect` crate: its 4.x line is built on reqwest 0.12 (ours is 0.13) and would bring a
//! second HTTP and TLS stack for two small requests. What is ours is kept to the few checks the
//! library cannot make: the algorithms allowed (RS256, ES256 only), `exp`/`iat` against the
//! injected clock, `azp`, `nonce`, and the issuer of the discovery document.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{ClientAuthMethod, ClinicLogin};
use crate::tokens::Kek;

/// How long a discovery document is used before it is fetched again (seconds).
const DISCOVERY_SECS: i64 = 3600;
/// An ID token naming a key we do not know makes us fetch the JWKS again, at most this often.
const JWKS_REFETCH_SECS: i64 = 30;
/// Clock skew allowed on `exp` and `iat` (seconds).
pub const SKEW_SECS: i64 = 60;
/// The largest discovery, JWKS or token response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// The longest value of the claim that names the user.
const MAX_SUBJECT_CHARS: usize = 255;

/// The associated data a clinic's client secret is sealed under.
pub fn secret_kid(clinic_id: &str) -> String {
    format!("oidc-client-secret:{clinic_id}")
}

/// Whether `url` may name an OpenID Connect provider or its endpoints: `https`, or `http` on a
/// loopback address only (a provider on the same machine: tests and the demo).
pub fn allowed_url(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// What went wrong in talking to the provider or in its ID token.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached or answered nonsense (discovery, JWKS, token endpoint).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code (its `error` code: `invalid_grant` for a used code).
    #[error("token endpoint refused the code: {0}")]
    TokenRefused(String),
    /// The ID token does not verify.
    #[error("ID token invalid: {0}")]
    Invalid(String),
    /// The ID token expired.
    #[error("ID token expired")]
    Expired,
    /// The ID token's nonce is not the flow's.
    #[error("ID token nonce mismatch")]
    NonceMismatch,
    /// Our own failure (the sealed secret does not open).
    #[error("{0}")]
    Internal(String),
}

/// The parts of a discovery document we use (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the browser goes.
    pub authorization_endpoint: String,
    /// Where the code is exchanged.
    pub token_endpoint: String,
    /// The provider's keys.
    pub jwks_uri: String,
}

struct Cached {
    meta: Metadata,
    fetched_at: i64,
    jwks: JwkSet,
    jwks_fetched_at: i64,
}

/// The gateway's view of its clinics' providers: an HTTP client, the key that opens the client
/// secrets, and the cache of discovery documents and JWKS per issuer (per instance; every
/// instance fetches its own).
pub struct Upstream {
    http: reqwest::Client,
    kek: Kek,
    cache: Mutex<HashMap<String, Arc<Cached>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// What a verified ID token says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `sub`.
    pub sub: String,
    /// The configured claim's value (the same as `sub` by default).
    pub subject: String,
    /// `acr`, as the provider stated it.
    pub acr: Option<String>,
    /// `amr`, as the provider stated it.
    pub amr: Vec<String>,
}

/// A new authorization request's secrets.
pub struct Request {
    /// `state` (random, 256 bits).
    pub state: String,
    /// `nonce` (random, 256 bits).
    pub nonce: String,
    /// The PKCE verifier (RFC 7636, 256 bits).
    pub verifier: String,
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// SHA-256 of a text (what the store keeps of `state` and of the flow cookie).
pub fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Request {
    /// Fresh random values.
    pub fn new() -> Self {
        Self { state: random_token(), nonce: random_token(), verifier: random_token() }
    }

    /// The authorization URL for `endpoint` (RFC 6749 §4.1.1, RFC 7636 §4.3 with S256).
    pub fn url(&self, endpoint: &str, login: &ClinicLogin, redirect_uri: &str, ui_locale: &str) -> Result<String, UpstreamError> {
        let mut url = url::Url::parse(endpoint).map_err(|e| UpstreamError::Unavailable(format!("authorization_endpoint: {e}")))?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &login.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &login.scopes)
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("ui_locales", ui_locale);
        Ok(url.into())
    }
}

impl Default for Request {
    fn default() -> Self {
        Self::new()
    }
}

/// The claims we read; the rest is kept for the configured claim.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    aud: serde_json::Value,
    azp: Option<String>,
    nonce: Option<String>,
    acr: Option<String>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
}

impl Upstream {
    /// With `kek`, the token key-encryption key that seals the client secrets.
    pub fn new(kek: Kek) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, kek, cache: Mutex::new(HashMap::new()) })
    }

    /// Seals a client secret for `clinic_id`.
    pub fn seal_secret(kek: &Kek, clinic_id: &str, secret: &str) -> anyhow::Result<Vec<u8>> {
        kek.seal(&secret_kid(clinic_id), secret.as_bytes())
    }

    fn cached(&self, issuer: &str) -> Option<Arc<Cached>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(issuer).cloned()
    }

    fn keep(&self, issuer: &str, c: Cached) -> Arc<Cached> {
        let c = Arc::new(c);
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(issuer.to_owned(), c.clone());
        c
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, UpstreamError> {
        let parsed = url::Url::parse(url).map_err(|e| UpstreamError::Unavailable(format!("{what}: {e}")))?;
        if !allowed_url(&parsed) {
            return Err(UpstreamError::Unavailable(format!("{what}: not https")));
        }
        let res = self.http.get(parsed).send().await.map_err(|e| UpstreamError::Unavailable(format!("{what}: {e}")))?;
        if !res.status().is_success() {
            return Err(UpstreamError::Unavailable(format!("{what}: HTTP {}", res.status())));
        }
        let body = read_limited(res).await.map_err(|e| UpstreamError::Unavailable(format!("{what}: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| UpstreamError::Unavailable(format!("{what}: {e}")))
    }

    /// The provider's discovery document (cached for [`DISCOVERY_SECS`]); its `issuer` must be
    /// the configured one (OpenID Connect Discovery 1.0 §4.3) and its endpoints https.
    pub async fn metadata(&self, issuer: &str, now: i64) -> Result<Metadata, UpstreamError> {
        Ok(self.provider(issuer, now).await?.meta.clone())
    }

    async fn provider(&self, issuer: &str, now: i64) -> Result<Arc<Cached>, UpstreamError> {
        if let Some(c) = self.cached(issuer).filter(|c| now >= c.fetched_at && now - c.fetched_at < DISCOVERY_SECS) {
            return Ok(c);
        }
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let meta: Metadata = self.get_json(&url, "discovery").await?;
        if meta.issuer != issuer {
            return Err(UpstreamError::Unavailable(format!("discovery names issuer {:?}, not {issuer:?}", meta.issuer)));
        }
        for (what, u) in [("authorization_endpoint", &meta.authorization_endpoint), ("token_endpoint", &meta.token_endpoint)] {
            if !url::Url::parse(u).is_ok_and(|u| allowed_url(&u)) {
                return Err(UpstreamError::Unavailable(format!("{what} is not an https URL")));
            }
        }
        let jwks: JwkSet = self.get_json(&meta.jwks_uri, "jwks").await?;
        Ok(self.keep(issuer, Cached { meta, fetched_at: now, jwks, jwks_fetched_at: now }))
    }

    /// The provider's key for `kid` and `alg`; an unknown one makes the JWKS be fetched again
    /// (key rotation), at most once per [`JWKS_REFETCH_SECS`].
    async fn key(&self, issuer: &str, kid: Option<&str>, alg: Algorithm, now: i64) -> Result<Jwk, UpstreamError> {
        let c = self.provider(issuer, now).await?;
        if let Some(k) = pick_key(&c.jwks, kid, alg) {
            return Ok(k);
        }
        if now >= c.jwks_fetched_at && now - c.jwks_fetched_at < JWKS_REFETCH_SECS {
            return Err(UpstreamError::Invalid("no key of the provider's matches the ID token".into()));
        }
        let jwks: JwkSet = self.get_json(&c.meta.jwks_uri, "jwks").await?;
        let found = pick_key(&jwks, kid, alg);
        self.keep(issuer, Cached { meta: c.meta.clone(), fetched_at: c.fetched_at, jwks, jwks_fetched_at: now });
        found.ok_or_else(|| UpstreamError::Invalid("no key of the provider's matches the ID token".into()))
    }

    /// Exchanges `code` at the token endpoint (RFC 6749 §4.1.3 with the PKCE verifier) and
    /// returns the ID token.
    pub async fn exchange(
        &self,
        login: &ClinicLogin,
        meta: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, UpstreamError> {
        let secret = self
            .kek
            .open(&secret_kid(&login.clinic_id), &login.sealed_secret)
            .map_err(|e| UpstreamError::Internal(format!("client secret of clinic {}: {e}", login.clinic_id)))?;
        let secret = Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(|_| UpstreamError::Internal("client secret is not UTF-8".into()))?);
        let mut form: Vec<(&str, &str)> =
            vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", verifier)];
        let mut req = self.http.post(&meta.token_endpoint);
        match login.auth_method {
            ClientAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = Zeroizing::new(format!("{}:{}", enc(&login.client_id), enc(&secret)));
                let header = Zeroizing::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(basic.as_bytes())));
                req = req.header(reqwest::header::AUTHORIZATION, header.as_str());
            }
            ClientAuthMethod::ClientSecretPost => {
                form.push(("client_id", &login.client_id));
                form.push(("client_secret", &secret));
            }
        }
        let res = req.form(&form).send().await.map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {e}")))?;
        let status = res.status();
        let body = read_limited(res).await.map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {e}")))?;
        if status.is_client_error() {
            let code = serde_json::from_slice::<TokenError>(&body).ok().and_then(|e| e.error).unwrap_or_else(|| status.as_str().to_owned());
            return Err(UpstreamError::TokenRefused(error_code(&code)));
        }
        if !status.is_success() {
            return Err(UpstreamError::Unavailable(format!("token endpoint: HTTP {status}")));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {e}")))?;
        parsed.id_token.ok_or_else(|| UpstreamError::Invalid("no id_token in the token response".into()))
    }

    /// Verifies an ID token (OpenID Connect Core 1.0 §3.1.3.7): signature by the provider's key
    /// (RS256 or ES256 only: never `none` or a MAC keyed with our secret), `iss`, `aud`, `azp`,
    /// `exp` and `iat` at `now` within [`SKEW_SECS`], and `nonce`.
    pub async fn verify(&self, login: &ClinicLogin, id_token: &str, nonce: &str, now: i64) -> Result<Verified, UpstreamError> {
        let invalid = |e: &dyn std::fmt::Display| UpstreamError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| invalid(&e))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(UpstreamError::Invalid(format!("algorithm {:?} is not allowed", header.alg)));
        }
        // Keys come from the provider's JWKS only (RFC 8725 §3.10).
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
            return Err(UpstreamError::Invalid("key material in the header".into()));
        }
        let jwk = self.key(&login.issuer, header.kid.as_deref(), header.alg, now).await?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| invalid(&e))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&login.issuer]);
        validation.set_audience(&[&login.client_id]);
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"].iter().map(|s| (*s).to_owned()).collect();
        let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation).map_err(|e| invalid(&e))?.claims;
        // Several audiences need `azp`, and an `azp` must be us (Core §3.1.3.7 items 4 and 5).
        let audiences = match &claims.aud {
            serde_json::Value::Array(a) => a.len(),
            _ => 1,
        };
        if (audiences > 1 && claims.azp.is_none()) || claims.azp.as_deref().is_some_and(|azp| azp != login.client_id) {
            return Err(UpstreamError::Invalid("azp is not this client".into()));
        }
        if now > claims.exp.saturating_add(SKEW_SECS) {
            return Err(UpstreamError::Expired);
        }
        if claims.iat > now.saturating_add(SKEW_SECS) {
            return Err(UpstreamError::Invalid("issued in the future".into()));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(UpstreamError::NonceMismatch);
        }
        let subject = if login.claim == "sub" {
            claims.sub.clone()
        } else {
            match claims.rest.get(&login.claim) {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => return Err(UpstreamError::Invalid(format!("no string claim {:?}", login.claim))),
            }
        };
        for v in [&claims.sub, &subject] {
            if v.is_empty() || v.chars().count() > MAX_SUBJECT_CHARS || v.chars().any(char::is_control) {
                return Err(UpstreamError::Invalid("subject claim empty, too long or with control characters".into()));
            }
        }
        Ok(Verified { sub: claims.sub, subject, acr: claims.acr.map(bounded), amr: claims.amr.into_iter().take(8).map(bounded).collect() })
    }
}

/// A provider's free text cut to what an audit row carries.
fn bounded(s: String) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// An OAuth error code as audited: its own characters (RFC 6749 §5.2: %x20-21 / %x23-5B /
/// %x5D-7E), at most 64, or `other`.
pub fn error_code(code: &str) -> String {
    if !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        code.to_owned()
    } else {
        "other".to_owned()
    }
}

/// A signing key of the set for `alg`: by `kid`, or the only one of the right type without one.
fn pick_key(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let fits = |k: &&Jwk| {
        let kty = match (&k.algorithm, alg) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == jsonwebtoken::jwk::EllipticCurve::P256,
            _ => false,
        };
        let usable = !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)));
        let alg_ok = match k.common.key_algorithm {
            None => true,
            Some(a) => matches!((a, alg), (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)),
        };
        kty && usable && alg_ok
    };
    match kid {
        Some(kid) => set.keys.iter().filter(|k| k.common.key_id.as_deref() == Some(kid)).find(fits).cloned(),
        None => {
            let mut candidates = set.keys.iter().filter(fits);
            let first = candidates.next()?;
            candidates.next().is_none().then(|| first.clone())
        }
    }
}

async fn read_limited(mut res: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            anyhow::bail!("response over {MAX_RESPONSE_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_https_or_loopback() {
        for ok in ["https://emr.example.jp/", "http://127.0.0.1:8080", "http://localhost:9/x", "http://[::1]:3000"] {
            assert!(allowed_url(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["http://emr.example.jp/", "http://10.0.0.1/", "ftp://127.0.0.1/", "file:///etc/passwd"] {
            assert!(!allowed_url(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn error_codes_are_audited_only_in_their_own_alphabet() {
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("bad\ncode"), "other");
        assert_eq!(error_code(&"x".repeat(65)), "other");
        assert_eq!(error_code(""), "other");
    }

    #[test]
    fn the_challenge_is_s256_of_the_verifier() {
        // RFC 7636 Appendix B.
        let r = Request { state: "s".into(), nonce: "n".into(), verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into() };
        let login = ClinicLogin {
            clinic_id: "c".into(),
            issuer: "https://idp".into(),
            client_id: "gw".into(),
            sealed_secret: vec![],
            claim: "sub".into(),
            match_on: crate::store::UpstreamMatch::ExternalId,
            scopes: "openid".into(),
            auth_method: ClientAuthMethod::ClientSecretBasic,
        };
        let url = r.url("https://idp/auth?x=1", &login, "https://gw/cb", "ja").unwrap();
        assert!(url.contains("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), "{url}");
        assert!(url.starts_with("https://idp/auth?x=1&response_type=code"), "{url}");
    }
}
