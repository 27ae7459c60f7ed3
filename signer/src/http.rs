//! The CSC API v2 subset (docs/design.md §3.11): `info`, `credentials/list`, `credentials/info`,
//! `signatures/signHash` and `signatures/signDoc` ([`sign_doc`], §3.12), and `POST /api/v1/verify`
//! ([`verify_doc`]), over mTLS for registered callers. Field names and error codes are
//! the CSC v2 specification's; every error is `{"error": code, "error_description": text}`.
//!
//! `signHash` checks everything it can before the key is touched, in this order: the caller,
//! the request's shape, the credential (the caller's clinic, enabled, its certificate in date),
//! the SAD (signature, `typ`, `iss`, `aud`, time, certificate binding, doctor and clinic, hashes
//! and their number), and only then consumes the token at the gateway. A refusal before the
//! consume leaves the token usable; nothing is signed unless the consume succeeded, and the
//! signatures are answered only once their audit row is committed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keys::SignAlgorithm;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::credentials::Keyring;
use crate::gateway::{ConsumeError, GatewayClient};
use crate::metrics::Metrics;
use crate::sad::{self, Jwks, SadError};
use crate::store::{AuditEntry, Credential, ServiceClient, Store};

mod sign_doc;
mod verify_doc;

pub use sign_doc::DocSigning;
pub use verify_doc::Anchors;

/// The OID of SHA-256, the one hash algorithm accepted.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Everything a request needs.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// Database.
    pub store: Store,
    /// The gateway (JWKS, consume).
    pub gateway: GatewayClient,
    /// Cached gateway keys.
    pub jwks: Arc<Jwks>,
    /// Doctors' keys.
    pub keyring: Arc<Keyring>,
    /// Injected time.
    pub clock: SharedClock,
    /// Metrics.
    pub metrics: Metrics,
    /// Set on SIGTERM: `/readyz` fails.
    pub draining: Arc<AtomicBool>,
    /// signDoc's time-stamping authority and validation data.
    pub doc_signing: Arc<DocSigning>,
    /// What `POST /api/v1/verify` trusts.
    pub verify_anchors: Arc<Anchors>,
}

/// A CSC error answer.
#[derive(Debug)]
pub struct CscError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl CscError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into() }
    }

    /// 400 `invalid_request` with the CSC description.
    pub fn invalid(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn unavailable(description: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", description)
    }

    pub(crate) fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The signer failed; nothing was signed")
    }

    /// The CSC error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::store::Error> for CscError {
    fn from(e: crate::store::Error) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            CscError::unavailable("The signer's database is unavailable; retry later")
        } else {
            tracing::error!(error = %e, "database error");
            CscError::internal()
        }
    }
}

impl IntoResponse for CscError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.code, "error_description": self.description }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        res
    }
}

type CscResult<T> = Result<T, CscError>;

/// The registered caller behind the connection's client certificate.
pub struct Caller {
    pub(crate) client: ServiceClient,
    /// base64url SHA-256 of its certificate: what a token's `cnf.x5t#S256` must equal.
    pub(crate) x5t_s256: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = CscError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> CscResult<Self> {
        let peer = parts.extensions.get::<infra::tls::PeerCert>().ok_or_else(CscError::internal)?.clone();
        let refused = |why: &'static str| CscError::new(StatusCode::FORBIDDEN, "access_denied", why);
        let client = match state.store.client_by_fingerprint(&peer.fingerprint).await? {
            Some(c) if c.enabled => c,
            found => {
                let reason = if found.is_some() { "client_disabled" } else { "client_unknown" };
                audit_refusal(state, None, None, json!({ "reason": reason, "fingerprint": peer.fingerprint })).await?;
                return Err(refused(if found.is_some() {
                    "This client certificate's registration is disabled"
                } else {
                    "This client certificate is not registered with the signer"
                }));
            }
        };
        Ok(Caller { client, x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&peer.der)) })
    }
}

async fn audit_refusal(state: &AppState, clinic: Option<String>, user: Option<String>, detail: serde_json::Value) -> CscResult<()> {
    let entry = AuditEntry { at: state.clock.unix(), event: "api_refused", outcome: "failure", clinic_id: clinic, user_id: user, detail };
    Ok(state.store.audit(std::slice::from_ref(&entry)).await?)
}

/// The CSC routes, with the body cap.
pub fn router(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes;
    Router::new()
        .route("/csc/v2/info", post(info).get(info))
        .route("/csc/v2/credentials/list", post(credentials_list))
        .route("/csc/v2/credentials/info", post(credentials_info))
        .route("/csc/v2/signatures/signHash", post(sign_hash))
        .route("/csc/v2/signatures/signDoc", post(sign_doc::sign_doc))
        .route("/api/v1/verify", post(verify_doc::verify))
        .route("/openapi.json", get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(|| async { CscError::new(StatusCode::NOT_FOUND, "invalid_request", "No such CSC method") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The body as JSON, or the CSC answer to why not.
pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> CscResult<T> {
    match body {
        Ok(Json(t)) => Ok(t),
        Err(JsonRejection::BytesRejection(_)) => {
            Err(CscError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "The request body is too large"))
        }
        Err(JsonRejection::MissingJsonContentType(_)) => Err(CscError::invalid("The request must be JSON (Content-Type: application/json)")),
        Err(e) => Err(CscError::invalid(csc_shape_error(&e.body_text()))),
    }
}

/// serde's message for a missing or mistyped field, said the CSC way.
fn csc_shape_error(text: &str) -> String {
    for field in ["credentialID", "SAD", "documents", "document", "signature_format", "hashes", "hashAlgorithmOID", "signAlgo", "signAlgoParams", "operationMode", "certificates", "userID"] {
        // Missing: "missing field `SAD`"; mistyped: axum names the path, "…: hashes: invalid
        // type…" or "…: hashes[0]: invalid type…".
        if text.contains(&format!("`{field}`")) || text.contains(&format!(": {field}: ")) || text.contains(&format!(": {field}[")) {
            let kind = if matches!(field, "hashes" | "documents") { "array" } else { "string" };
            return format!("Missing (or invalid type) {kind} parameter {field}");
        }
    }
    format!("Malformed request: {}", text.chars().take(200).collect::<String>())
}

// ---- info ------------------------------------------------------------------------------------

async fn info(State(state): State<AppState>, _caller: Caller) -> Json<serde_json::Value> {
    state.metrics.request("info", None);
    let c = &state.config.csc;
    Json(json!({
        "specs": "2.0.0.2",
        "name": c.name,
        "logo": "",
        "region": c.region,
        "lang": "ja-JP",
        "description": "Remote signing for Japanese electronic prescriptions; the SAD is a Ninsho Gateway signing token",
        "authType": ["external"],
        "methods": if state.doc_signing.enabled() {
            json!(["credentials/list", "credentials/info", "signatures/signHash", "signatures/signDoc"])
        } else {
            json!(["credentials/list", "credentials/info", "signatures/signHash"])
        },
        "signAlgorithms": {
            "algos": SignAlgorithm::ALL.iter().map(|a| a.oid()).collect::<Vec<_>>(),
        },
    }))
}

// ---- credentials -----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ListRequest {
    #[serde(rename = "userID")]
    user_id: Option<String>,
    credential_info: bool,
    certificates: Option<String>,
    cert_info: bool,
    auth_info: bool,
    only_valid: bool,
    #[allow(dead_code, reason = "accepted as CSC allows it; answers are in one language")]
    lang: Option<String>,
    #[allow(dead_code, reason = "accepted and ignored, as CSC allows")]
    client_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfoRequest {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(default)]
    certificates: Option<String>,
    #[serde(default)]
    cert_info: bool,
    #[serde(default)]
    auth_info: bool,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted as CSC allows it; answers are in one language")]
    lang: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored, as CSC allows")]
    client_data: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Certificates {
    None,
    Single,
    Chain,
}

fn certificates(value: Option<&str>) -> CscResult<Certificates> {
    match value.unwrap_or("single") {
        "none" => Ok(Certificates::None),
        "single" => Ok(Certificates::Single),
        "chain" => Ok(Certificates::Chain),
        _ => Err(CscError::invalid("Invalid parameter certificates")),
    }
}

async fn credentials_list(State(state): State<AppState>, caller: Caller, req: Result<Json<ListRequest>, JsonRejection>) -> Response {
    let answer = list(&state, &caller, req).await;
    state.metrics.request("credentials/list", answer.as_ref().err().map(CscError::code));
    answer.into_response()
}

async fn list(state: &AppState, caller: &Caller, req: Result<Json<ListRequest>, JsonRejection>) -> CscResult<Json<serde_json::Value>> {
    let req = body(req)?;
    let which = certificates(req.certificates.as_deref())?;
    let now = state.clock.unix();
    let mut creds = state.store.list_credentials(Some(&caller.client.clinics), req.user_id.as_deref()).await?;
    if req.only_valid {
        creds.retain(|c| c.enabled && certificate_status(c, now) == "valid");
    }
    let ids: Vec<&str> = creds.iter().map(|c| c.id.as_str()).collect();
    let mut answer = json!({ "credentialIDs": ids });
    if req.only_valid {
        answer["onlyValid"] = json!(true);
    }
    if req.credential_info {
        let infos: Vec<serde_json::Value> = creds
            .iter()
            .map(|c| {
                let mut info = credential_info(state, c, which, req.cert_info, req.auth_info, now);
                info["credentialID"] = json!(c.id);
                info
            })
            .collect();
        answer["credentialInfos"] = json!(infos);
    }
    Ok(Json(answer))
}

async fn credentials_info(State(state): State<AppState>, caller: Caller, req: Result<Json<InfoRequest>, JsonRejection>) -> Response {
    let answer = info_of(&state, &caller, req).await;
    state.metrics.request("credentials/info", answer.as_ref().err().map(CscError::code));
    answer.into_response()
}

async fn info_of(state: &AppState, caller: &Caller, req: Result<Json<InfoRequest>, JsonRejection>) -> CscResult<Json<serde_json::Value>> {
    let req = body(req)?;
    let which = certificates(req.certificates.as_deref())?;
    let credential = callers_credential(state, caller, &req.credential_id).await?;
    Ok(Json(credential_info(state, &credential, which, req.cert_info, req.auth_info, state.clock.unix())))
}

/// The credential `id` if it belongs to one of the caller's clinics; otherwise the same answer
/// as for one that does not exist.
async fn callers_credential(state: &AppState, caller: &Caller, id: &str) -> CscResult<Credential> {
    match state.store.credential(id).await? {
        Some(c) if caller.client.clinics.contains(&c.clinic_id) => Ok(c),
        _ => Err(CscError::invalid("Invalid parameter credentialID")),
    }
}

/// `valid`, `expired` or (before its start, or none yet) `invalid`… CSC names `valid`,
/// `expired`, `revoked`, `suspended`; a certificate not yet in force or missing is reported as
/// `suspended`, the one that says "not usable now".
fn certificate_status(c: &Credential, now: i64) -> &'static str {
    let Some((from, to)) = c.certificate.as_deref().and_then(validity) else { return "suspended" };
    if now > to {
        "expired"
    } else if now < from {
        "suspended"
    } else {
        "valid"
    }
}

fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

fn credential_info(state: &AppState, c: &Credential, which: Certificates, cert_info: bool, auth_info: bool, now: i64) -> serde_json::Value {
    let mut cert = json!({ "status": certificate_status(c, now) });
    let mut certs: Vec<String> = Vec::new();
    if which != Certificates::None {
        certs.extend(c.certificate.iter().map(|d| STANDARD.encode(d)));
        if which == Certificates::Chain {
            certs.extend(c.chain.iter().map(|d| STANDARD.encode(d)));
        }
        cert["certificates"] = json!(certs);
    }
    if cert_info
        && let Some((_, parsed)) = c.certificate.as_deref().and_then(|d| x509_parser::parse_x509_certificate(d).ok())
    {
            let time = |t: x509_parser::time::ASN1Time| {
                t.to_datetime().format(time::macros::format_description!("[year][month][day][hour][minute][second]Z")).unwrap_or_default()
            };
            cert["issuerDN"] = json!(parsed.issuer().to_string());
            cert["subjectDN"] = json!(parsed.subject().to_string());
            cert["serialNumber"] = json!(parsed.raw_serial_as_string().replace(':', "").to_uppercase());
            cert["validFrom"] = json!(time(parsed.validity().not_before));
            cert["validTo"] = json!(time(parsed.validity().not_after));
    }
    let mut info = json!({
        "description": c.description,
        "key": {
            "status": if c.enabled { "enabled" } else { "disabled" },
            "algo": SignAlgorithm::ALL.iter().map(|a| a.oid()).collect::<Vec<_>>(),
            "len": c.key_bits,
        },
        "cert": cert,
        "auth": { "mode": "explicit" },
        "authMode": "explicit",
        "SCAL": "2",
        "multisign": state.config.csc.max_hashes,
        "lang": "ja-JP",
    });
    if auth_info {
        // The activation is the gateway's token, obtained after the doctor proved presence with a
        // card or FIDO there; no PIN or OTP is entered at the signer.
        info["auth"] = json!({
            "mode": "explicit",
            "expression": "SAD",
            "objects": [{
                "type": "Token",
                "id": "SAD",
                "format": "A",
                "label": "Ninsho signing token",
                "description": "A single-use signing token from the Ninsho Gateway (POST /api/v1/signing-tokens with the hashes)",
            }],
        });
    }
    info
}

// ---- signHash --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignHashRequest {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID", default)]
    hash_algorithm_oid: Option<String>,
    sign_algo: String,
    #[serde(default)]
    sign_algo_params: Option<String>,
    #[serde(default)]
    operation_mode: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored, as CSC allows")]
    client_data: Option<String>,
}

#[derive(Serialize)]
struct SignHashResponse {
    signatures: Vec<String>,
}

/// What a signHash or signDoc refusal records: the reason and what was known by then.
pub(crate) struct Refusal {
    pub(crate) error: CscError,
    pub(crate) reason: &'static str,
    pub(crate) claims: Option<sad::Claims>,
}

impl From<CscError> for Refusal {
    fn from(error: CscError) -> Self {
        Refusal { error, reason: "", claims: None }
    }
}

pub(crate) fn refuse(reason: &'static str, error: CscError) -> Refusal {
    Refusal { error, reason, claims: None }
}

async fn sign_hash(State(state): State<AppState>, caller: Caller, req: Result<Json<SignHashRequest>, JsonRejection>) -> Response {
    let answer = sign_hash_checked(&state, &caller, req).await;
    let answer = audit_refused(&state, &caller, answer).await;
    state.metrics.request("signatures/signHash", answer.as_ref().err().map(CscError::code));
    answer.into_response()
}

/// Audits a refusal (before it is answered); a failing audit turns it into 503.
pub(crate) async fn audit_refused<T>(state: &AppState, caller: &Caller, answer: Result<T, Refusal>) -> Result<T, CscError> {
    let Refusal { error, reason, claims } = match answer {
        Ok(ok) => return Ok(ok),
        Err(refusal) => refusal,
    };
    let reason = if reason.is_empty() { error.code() } else { reason };
    let detail = json!({
        "reason": reason,
        "client": caller.client.id,
        "jti": claims.as_ref().map(|c| c.jti.clone()),
    });
    let entry = AuditEntry {
        at: state.clock.unix(),
        event: "signature_refused",
        outcome: "failure",
        clinic_id: claims.as_ref().map(|c| c.clinic.clone()),
        user_id: claims.as_ref().map(|c| c.sub.clone()),
        detail,
    };
    match state.store.audit(std::slice::from_ref(&entry)).await {
        Ok(()) => Err(error),
        Err(e) => Err(CscError::from(e)),
    }
}

async fn sign_hash_checked(
    state: &AppState,
    caller: &Caller,
    req: Result<Json<SignHashRequest>, JsonRejection>,
) -> Result<Json<SignHashResponse>, Refusal> {
    let req = body(req).map_err(|e| refuse("malformed_request", e))?;
    // The request's own shape.
    if req.operation_mode.as_deref().is_some_and(|m| m != "S") {
        return Err(refuse("operation_mode", CscError::invalid("Invalid parameter operationMode")));
    }
    if req.hashes.is_empty() {
        return Err(refuse("no_hashes", CscError::invalid("Empty hash array")));
    }
    if req.hashes.len() > state.config.csc.max_hashes {
        return Err(refuse("too_many_hashes", CscError::invalid("Numbers of signatures is too high")));
    }
    let hash_alg = req.hash_algorithm_oid.as_deref().unwrap_or(SHA256_OID);
    if hash_alg != SHA256_OID {
        return Err(refuse("hash_algorithm", CscError::invalid("Invalid parameter hashAlgorithmOID")));
    }
    let alg = sign_algorithm(&req.sign_algo, req.sign_algo_params.as_deref()).map_err(|e| refuse("sign_algorithm", e))?;
    let mut digests = Vec::with_capacity(req.hashes.len());
    for h in &req.hashes {
        let bytes = STANDARD.decode(h).map_err(|_| refuse("bad_base64", CscError::invalid("Invalid Base64 hash string parameter")))?;
        if bytes.len() != 32 {
            return Err(refuse("digest_length", CscError::invalid("Invalid digest value length")));
        }
        digests.push(bytes);
    }
    let Authorized { credential, claims } = authorize(state, caller, &req.credential_id, &req.sad, hash_alg, &digests).await?;
    let with_claims = |reason: &'static str, error: CscError| Refusal { error, reason, claims: Some(claims.clone()) };
    consume(state, caller, &req.sad, &claims).await?;
    let now = state.clock.unix();
    let signatures = sign_digests(state, &credential, alg, digests).await.map_err(|e| with_claims("key_failure", e))?;
    let detail = json!({ "hashes": signatures.len(), "sign_algo": alg.oid() });
    // Answered only once audited; a failed audit answers no signature.
    audit_created(state, caller, &claims, &credential, now, detail).await?;
    state.metrics.signed(signatures.len());
    Ok(Json(SignHashResponse { signatures: signatures.iter().map(|s| STANDARD.encode(s)).collect() }))
}

/// Signs `digests` with the credential's key, off the async threads.
pub(crate) async fn sign_digests(state: &AppState, credential: &Credential, alg: SignAlgorithm, digests: Vec<Vec<u8>>) -> CscResult<Vec<Vec<u8>>> {
    let keyring = state.keyring.clone();
    let signing = credential.clone();
    match tokio::task::spawn_blocking(move || keyring.sign(&signing, alg, &digests)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            tracing::error!(credential = %credential.id, error = %e, "signing failed");
            Err(CscError::internal())
        }
        Err(_) => Err(CscError::internal()),
    }
}

/// The `signature_created` audit row (credential, token, client and `detail`'s fields); what it
/// audits is answered only once the row is committed.
pub(crate) async fn audit_created(
    state: &AppState,
    caller: &Caller,
    claims: &sad::Claims,
    credential: &Credential,
    now: i64,
    mut detail: serde_json::Value,
) -> Result<(), Refusal> {
    detail["credential"] = json!(credential.id);
    detail["jti"] = json!(claims.jti);
    detail["client"] = json!(caller.client.id);
    let entry = AuditEntry {
        at: now,
        event: "signature_created",
        outcome: "success",
        clinic_id: Some(claims.clinic.clone()),
        user_id: Some(claims.sub.clone()),
        detail,
    };
    state
        .store
        .audit(std::slice::from_ref(&entry))
        .await
        .map_err(|e| Refusal { error: e.into(), reason: "audit_failed", claims: Some(claims.clone()) })
}

/// A credential and the SAD that allows signing `digests` with it.
pub(crate) struct Authorized {
    pub(crate) credential: Credential,
    pub(crate) claims: sad::Claims,
}

/// What signHash and signDoc both check before the token is consumed: the credential (the
/// caller's clinic, enabled, its certificate in date), the SAD (signature, `typ`, `iss`, `aud`,
/// time, certificate binding, doctor and clinic), and that the SAD authorises exactly `digests`
/// (as a set, no more of them than `numSignatures`) with `hash_alg`.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    credential_id: &str,
    sad_token: &str,
    hash_alg: &str,
    digests: &[Vec<u8>],
) -> Result<Authorized, Refusal> {
    // The credential: the caller's clinic, enabled, in this backend, certificate in force.
    let now = state.clock.unix();
    let credential = callers_credential(state, caller, credential_id).await.map_err(|e| refuse("unknown_credential", e))?;
    if !credential.enabled {
        return Err(refuse("credential_disabled", CscError::invalid("The credential identified by credentialID is disabled")));
    }
    match certificate_status(&credential, now) {
        "valid" => {}
        "expired" => return Err(refuse("certificate_expired", CscError::invalid("Signing certificate is expired"))),
        _ => return Err(refuse("certificate_not_valid", CscError::invalid("Signing certificate is not valid yet or not issued"))),
    }
    // The SAD, offline.
    let claims = match sad::verify(sad_token, &state.jwks, &state.gateway, &state.config.issuer(), &state.config.csc.audience, now).await {
        Ok(c) => c,
        Err(SadError::Expired) => return Err(refuse("sad_expired", CscError::invalid("SAD expired"))),
        Err(SadError::NotYetValid) => return Err(refuse("sad_not_yet_valid", CscError::invalid("Invalid parameter SAD: not yet valid"))),
        Err(SadError::Invalid(why)) => return Err(refuse("sad_invalid", CscError::invalid(format!("Invalid parameter SAD: {why}")))),
        Err(e @ SadError::KeysUnavailable(_)) => {
            tracing::warn!(error = %e, "cannot verify a SAD");
            return Err(refuse("gateway_unavailable", CscError::unavailable("The gateway's keys cannot be fetched; nothing was signed")));
        }
    };
    let with_claims = |reason: &'static str, error: CscError| Refusal { error, reason, claims: Some(claims.clone()) };
    if claims.cnf.x5t_s256 != caller.x5t_s256 {
        return Err(with_claims("cnf_mismatch", CscError::invalid("Invalid parameter SAD: issued to another client certificate")));
    }
    if claims.test {
        return Err(with_claims("test_token", CscError::invalid("Invalid parameter SAD: a test account's token signs nothing")));
    }
    if claims.clinic != credential.clinic_id || claims.medical_reg_no.as_deref() != Some(credential.medical_reg_no.as_str()) {
        return Err(with_claims("other_doctor", CscError::invalid("Invalid parameter credentialID: not the credential of the SAD's doctor")));
    }
    // SCAL2: the hashes are bound to the SAD.
    let Some(authorised) = claims.hashes.as_deref() else {
        return Err(with_claims("hashes_not_bound", CscError::invalid("Hash is not authorized by the SAD")));
    };
    if claims.hash_alg.as_deref().unwrap_or(SHA256_OID) != hash_alg {
        return Err(with_claims("hash_algorithm", CscError::invalid("Invalid parameter hashAlgorithmOID: not the SAD's")));
    }
    let authorised: Option<BTreeSet<Vec<u8>>> = authorised.iter().map(|h| URL_SAFE_NO_PAD.decode(h).ok()).collect();
    let requested: BTreeSet<Vec<u8>> = digests.iter().cloned().collect();
    if authorised.as_ref() != Some(&requested) {
        return Err(with_claims("hash_not_authorized", CscError::invalid("Hash is not authorized by the SAD")));
    }
    let allowed = claims.num_signatures.map_or(requested.len(), |n| n as usize);
    if digests.len() > allowed {
        return Err(with_claims("too_many_signatures", CscError::invalid("Numbers of signatures is too high")));
    }
    Ok(Authorized { credential, claims })
}

/// Consumes the SAD at the gateway: single use on every instance, decided there. Only after this
/// succeeds may a key be touched.
pub(crate) async fn consume(state: &AppState, caller: &Caller, sad_token: &str, claims: &sad::Claims) -> Result<(), Refusal> {
    let with_claims = |reason: &'static str, error: CscError| Refusal { error, reason, claims: Some(claims.clone()) };
    // Single use, decided by the gateway for every instance: only then is the key touched.
    let started = Instant::now();
    let consumed = state.gateway.consume(sad_token, &caller.x5t_s256).await;
    state.metrics.consume_took(started.elapsed().as_secs_f64());
    match consumed {
        Ok(c) if c.sub == claims.sub && c.clinic_id == claims.clinic && c.medical_reg_no == claims.medical_reg_no => {}
        Ok(_) => {
            tracing::error!(jti = %claims.jti, "the gateway's answer to consume names another doctor than the token; refusing");
            return Err(with_claims("consume_mismatch", CscError::internal()));
        }
        Err(ConsumeError::Refused(code)) => {
            let description = match code.as_str() {
                "token_already_used" => "Invalid parameter SAD: already used".to_owned(),
                "session_ended" => "Invalid parameter SAD: the doctor's signing session has ended".to_owned(),
                other => format!("Invalid parameter SAD: refused by the gateway ({other})"),
            };
            let reason = if code == "token_already_used" { "sad_replayed" } else { "consume_refused" };
            return Err(with_claims(reason, CscError::invalid(description)));
        }
        Err(ConsumeError::Unavailable(why)) => {
            tracing::warn!(jti = %claims.jti, error = %why, "consume failed; nothing signed");
            return Err(with_claims(
                "gateway_unavailable",
                CscError::unavailable("The gateway cannot confirm the SAD; nothing was signed"),
            ));
        }
    }
    Ok(())
}

/// The DER of RSASSA-PSS-params with SHA-256, MGF1 with SHA-256 and a 32-byte salt (RFC 8017
/// A.2.3), the only PSS parameters offered; with `NULL` parameters in the AlgorithmIdentifiers
/// as most encoders write them, or without.
const PSS_SHA256_PARAMS: [&str; 2] = [
    "MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIDAgEg",
    "MDCgDTALBglghkgBZQMEAgGhGjAYBgkqhkiG9w0BAQgwCwYJYIZIAWUDBAIBogMCASA=",
];

fn sign_algorithm(oid: &str, params: Option<&str>) -> CscResult<SignAlgorithm> {
    // CSC lets a client name plain rsaEncryption with the hash given separately.
    let alg = match oid {
        "1.2.840.113549.1.1.1" => SignAlgorithm::RsaPkcs1Sha256,
        other => SignAlgorithm::from_oid(other).ok_or_else(|| CscError::invalid("Invalid parameter signAlgo"))?,
    };
    match (alg, params) {
        (SignAlgorithm::RsaPkcs1Sha256, None) => Ok(alg),
        (SignAlgorithm::RsaPkcs1Sha256, Some(_)) => Err(CscError::invalid("Invalid parameter signAlgoParams")),
        (SignAlgorithm::RsaPssSha256, None) => Ok(alg),
        (SignAlgorithm::RsaPssSha256, Some(p)) if PSS_SHA256_PARAMS.contains(&p) => Ok(alg),
        (_, Some(_)) => Err(CscError::invalid("Invalid parameter signAlgoParams: PSS is offered with SHA-256, MGF1-SHA-256, salt 32")),
    }
}

// ---- ops -------------------------------------------------------------------------------------

/// The ops listener's routes: `/healthz`, `/readyz`, `/metrics`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(s): State<AppState>| async move {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
        }))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        state.metrics.set_ready(false);
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    let probe = tokio::time::timeout(std::time::Duration::from_secs(1), state.store.probe_commit()).await;
    let ready = matches!(probe, Ok(Ok(())));
    state.metrics.set_ready(ready);
    if ready { (StatusCode::OK, "ready").into_response() } else { (StatusCode::SERVICE_UNAVAILABLE, "database not writable").into_response() }
}
