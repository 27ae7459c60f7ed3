//! The service-client JSON API (docs/design.md §3.8): signing-session state and signing tokens for EMR
//! backends, single-use token consumption for remote signers, and the JWKS.
//!
//! These routes sit outside the clinic gate: the caller is a *service client*, identified by the
//! fingerprint of its verified TLS certificate ([`ServiceAuth`]), limited to the clinics it serves.
//! Errors are `{"error": code, "message": text}` with stable codes.

mod caller;
mod oqs;
mod scim;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

pub use caller::ServiceAuth;
use caller::{EmrCall, Peer};

use super::AppState;
use super::error::ApiError;
use super::refusal::ApiRefusal;
use crate::metrics::TokenOperation;
use crate::store::{self, AuditEvent, Consumption, EndReason, ServiceRole, SessionFilter};
use crate::tokens::{self, Claims, Confirmation, SHA256_OID, TokenError};

/// The OpenAPI description of `/api/v1`, committed and served as is.
pub const OPENAPI: &str = include_str!("../../../openapi.json");

/// Seconds between activity updates of a signing session. Idle timeouts are minutes long, so
/// recording activity at most every few seconds keeps issuance at one write per token.
const ACTIVITY_GRANULARITY_SECS: i64 = 5;

/// Most hashes one token may bind.
pub(super) const MAX_HASHES: usize = 100;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/signing-sessions", get(session_state))
        .route("/api/v1/signing-sessions/{id}", delete(end_session))
        .route("/api/v1/signing-tokens", post(issue))
        .route("/api/v1/signing-tokens/consume", post(consume))
        // The body reader has applied `oqs.body_limit()` to this route (`body.rs`).
        .route("/api/v1/clinics/{clinic_id}/oqs/requests", post(oqs::enqueue).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/api/v1/oqs/requests/{id}", get(oqs::status))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found).delete(api_not_found))
        .merge(scim::router())
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = state.token_keys.jwks().to_string().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    // Short enough that signers pick up a rotation well before the old key leaves the set.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    res
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

type ApiResult<T> = Result<T, ApiError>;

async fn api_not_found() -> ApiError {
    ApiRefusal::NotFound.into()
}

pub(crate) use oqs::file_refusal;

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b).map_err(|e| ApiRefusal::BadRequest(e.body_text()).into())
}

// ---- signing-session state ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    clinic_id: String,
    doctor_id: String,
}

#[derive(Serialize)]
struct SessionState {
    active: bool,
    /// The doctor is a test account (docs/design.md §3.10); `gateway check` runs only for one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    test_account: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

async fn session_state(
    State(state): State<AppState>,
    Peer(peer): Peer,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> ApiResult<Json<SessionState>> {
    let query = query.map(|Query(q)| q).map_err(|e| ApiRefusal::BadRequest(e.body_text()).into());
    let call = EmrCall::resolve(&state, "GET /api/v1/signing-sessions", &peer, query, |q| (&q.clinic_id, &q.doctor_id)).await?;
    let now = state.clock.unix();
    let ctx = call.doctor(&state, &call.request.clinic_id, &call.request.doctor_id).await?.clone();
    let test_account = ctx.test_account;
    let inactive = |reason| SessionState {
        active: false,
        test_account,
        session_id: None,
        method: None,
        acr: None,
        auth_time: None,
        expires_at: None,
        idle_expires_at: None,
        reason: Some(reason),
    };
    Ok(Json(match ctx.session {
        None => inactive("no_session"),
        Some(s) => match session_liveness(&s, now) {
            Err(e) => inactive(e.code()),
            Ok(()) => SessionState {
                active: true,
                test_account,
                session_id: Some(s.id),
                method: Some(s.method),
                acr: Some(s.acr),
                auth_time: Some(s.auth_time),
                expires_at: Some(s.expires_at),
                idle_expires_at: Some((s.last_activity_at + s.idle_secs).min(s.expires_at)),
                reason: None,
            },
        },
    }))
}

fn session_liveness(s: &store::OpenSession, now: i64) -> Result<(), ApiRefusal> {
    if now >= s.expires_at {
        return Err(ApiRefusal::SessionExpired);
    }
    if now >= s.last_activity_at + s.idle_secs {
        return Err(ApiRefusal::SessionIdleExpired);
    }
    Ok(())
}

async fn end_session(State(state): State<AppState>, auth: ServiceAuth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    auth.require(&state, ServiceRole::Emr).await?;
    let session = match state.store.signing_session(&id).await {
        Ok(s) => s,
        Err(store::Error::NotFound) => return Err(ApiRefusal::SessionNotFound.into()),
        Err(e) => return Err(e.into()),
    };
    // A client learns nothing about sessions of clinics it does not serve; the audit says why.
    if !auth.serves(&session.clinic_id) {
        let refusal = auth.session_refusal(&session.clinic_id, &session.user_id);
        refusal.record(&state, ApiRefusal::ClinicNotAllowed(session.clinic_id.clone()).code()).await?;
        return Err(ApiRefusal::SessionNotFound.into());
    }
    let ended = state.store.end_signing_sessions(SessionFilter::Id(&id), EndReason::Operator, state.clock.unix()).await?;
    if ended.is_empty() {
        return Err(ApiRefusal::SessionAlreadyEnded.into());
    }
    state.audit(AuditEvent::SigningSessionEndedByClient {
        clinic_id: session.clinic_id,
        user_id: session.user_id,
        session_id: id,
        client_id: auth.client.id,
    }).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- token issuance -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    clinic_id: String,
    doctor_id: String,
    hashes: Option<Vec<String>>,
    hash_alg: Option<String>,
    num_signatures: Option<u32>,
    ttl: Option<i64>,
}

#[derive(Serialize)]
struct IssueResponse {
    token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// The CSC-style binding a token carries: hashes, their algorithm, the number of signatures.
#[derive(Default)]
struct Binding {
    hashes: Option<Vec<String>>,
    hash_alg: Option<String>,
    num_signatures: Option<u32>,
}

/// Checks the CSC-style binding: hashes are base64url SHA-256 values, the count matches.
fn validate_binding(req: &IssueRequest) -> Result<Binding, ApiRefusal> {
    match &req.hashes {
        None => {
            if req.hash_alg.is_some() {
                return Err(ApiRefusal::HashAlgWithoutHashes);
            }
            if req.num_signatures.is_some_and(|n| !(1..=MAX_HASHES as u32).contains(&n)) {
                return Err(ApiRefusal::NumSignaturesRange);
            }
            Ok(Binding { num_signatures: req.num_signatures, ..Binding::default() })
        }
        Some(hashes) => {
            let alg = req.hash_alg.clone().unwrap_or_else(|| SHA256_OID.to_owned());
            if alg != SHA256_OID {
                return Err(ApiRefusal::BadHashAlg);
            }
            if hashes.is_empty() || hashes.len() > MAX_HASHES {
                return Err(ApiRefusal::HashCount);
            }
            for (i, h) in hashes.iter().enumerate() {
                match URL_SAFE_NO_PAD.decode(h) {
                    Ok(bytes) if bytes.len() == 32 => {}
                    _ => return Err(ApiRefusal::HashNotSha256 { index: i }),
                }
            }
            let n = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
            if req.num_signatures.is_some_and(|k| k != n) {
                return Err(ApiRefusal::NumSignaturesMismatch);
            }
            Ok(Binding { hashes: Some(hashes.clone()), hash_alg: Some(alg), num_signatures: Some(n) })
        }
    }
}

/// Counts the answer of a token operation (docs/metrics.md): a success, or the error code given.
fn count<T>(state: &AppState, operation: TokenOperation, answer: &ApiResult<T>) {
    match (answer, operation) {
        (Ok(_), TokenOperation::Issue) => state.metrics.token_issued(),
        (Ok(_), TokenOperation::Consume) => state.metrics.token_consumed(),
        (Err(e), _) => state.metrics.token_refused(operation, e.refusal().code()),
    }
}

#[tracing::instrument(name = "api.issue_token", skip_all, fields(clinic.id, service_client.id))]
async fn issue(
    State(state): State<AppState>,
    peer: Peer,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> ApiResult<Json<IssueResponse>> {
    let answer = issue_token(&state, peer, body).await;
    count(&state, TokenOperation::Issue, &answer);
    answer
}

async fn issue_token(
    state: &AppState,
    Peer(peer): Peer,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> ApiResult<Json<IssueResponse>> {
    let call = EmrCall::resolve(state, "POST /api/v1/signing-tokens", &peer, json_body(body), |r| (&r.clinic_id, &r.doctor_id)).await?;
    let req = &call.request;
    tracing::Span::current().record("clinic.id", req.clinic_id.as_str());
    let cfg = &state.config.tokens;
    let ttl = match req.ttl {
        None => cfg.default_ttl_secs,
        Some(t) if t < 1 => return Err(ApiRefusal::BadTtl.into()),
        Some(t) if t > cfg.max_ttl_secs => return Err(ApiRefusal::TtlTooLong { max: cfg.max_ttl_secs }.into()),
        Some(t) => t,
    };
    let Binding { hashes, hash_alg, num_signatures } = validate_binding(req)?;
    let now = state.clock.unix();
    let ctx = call.doctor(state, &req.clinic_id, &req.doctor_id).await?;
    let refuse = |code: &'static str| AuditEvent::TokenRefused {
        clinic_id: req.clinic_id.clone(),
        user_id: ctx.user_id.clone(),
        client_id: call.client_id.clone(),
        reason: code,
    };
    let Some(mut session) = ctx.session.clone() else {
        state.audit(refuse(ApiRefusal::NoSession.code())).await?;
        return Err(ApiRefusal::NoSession.into());
    };
    // A re-authentication can supersede the session between the read above and the commit; the
    // token is then made again from the session live at that point (once).
    for retry in [false, true] {
        if let Err(e) = session_liveness(&session, now) {
            state.audit(refuse(e.code())).await?;
            return Err(e.into());
        }
        // A token never outlives its session.
        let exp = (now + ttl).min(session.expires_at);
        let claims = Claims {
            iss: state.config.token_issuer(),
            aud: cfg.audience.clone(),
            sub: ctx.user_id.clone(),
            clinic: req.clinic_id.clone(),
            sid: session.id.clone(),
            amr: serde_json::from_str(&session.amr)?,
            acr: session.acr.clone(),
            auth_time: session.auth_time,
            iat: now,
            nbf: now,
            exp,
            jti: tokens::new_jti(now),
            cnf: Confirmation { x5t_s256: call.x5t_s256.clone() },
            medical_reg_no: ctx.medical_reg_no.clone(),
            test: ctx.test_account,
            hashes: hashes.clone(),
            hash_alg: hash_alg.clone(),
            num_signatures,
        };
        let token = state.token_keys.sign(&claims)?;
        let record = store::NewIssuedToken {
            jti: claims.jti,
            session_id: session.id.clone(),
            client_id: call.client_id.clone(),
            clinic_id: req.clinic_id.clone(),
            user_id: ctx.user_id.clone(),
            expires_at: exp,
            issued_at: now,
            touch: now - session.last_activity_at >= ACTIVITY_GRANULARITY_SECS,
            audit_refusal: retry,
        };
        // The token leaves only once its id (and its audit event) are committed.
        if state.group_commit.record_token(record).await? {
            return Ok(Json(IssueResponse { token, token_type: "Bearer", expires_in: exp - now }));
        }
        if retry {
            // Audited with the batch.
            break;
        }
        match state.store.live_signing_session(&ctx.user_id, &req.clinic_id, state.clock.unix()).await? {
            Some(live) if live.id != session.id => session = store::OpenSession::from(&live),
            _ => {
                state.audit(refuse("no_session")).await?;
                break;
            }
        }
    }
    Err(ApiRefusal::SessionJustEnded.into())
}

// ---- consumption -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeRequest {
    token: String,
    /// A signer passes the `x5t#S256` of the certificate the token was presented with (RFC 8705
    /// §3: the resource server checks the binding). An EMR consuming its own token omits it.
    #[serde(rename = "x5t#S256")]
    presenter_x5t_s256: Option<String>,
}

#[derive(Serialize)]
struct ConsumeResponse {
    sub: String,
    medical_reg_no: Option<String>,
    /// A test account's token (docs/design.md §3.10): never sign a real prescription with it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    test: bool,
    clinic_id: String,
    session_id: String,
    amr: Vec<String>,
    acr: String,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hashes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_signatures: Option<u32>,
    expires_at: i64,
}

#[tracing::instrument(name = "api.consume_token", skip_all, fields(service_client.id))]
async fn consume(
    State(state): State<AppState>,
    auth: Result<ServiceAuth, ApiError>,
    body: Result<Json<ConsumeRequest>, JsonRejection>,
) -> ApiResult<Json<ConsumeResponse>> {
    // The caller's refusal (unregistered, disabled) is a refused consumption too.
    let answer = match auth {
        Ok(auth) => {
            tracing::Span::current().record("service_client.id", auth.client.id.as_str());
            consume_token(&state, auth, body).await
        }
        Err(refused) => Err(refused),
    };
    count(&state, TokenOperation::Consume, &answer);
    answer
}

async fn consume_token(
    state: &AppState,
    auth: ServiceAuth,
    body: Result<Json<ConsumeRequest>, JsonRejection>,
) -> ApiResult<Json<ConsumeResponse>> {
    // A provisioner manages accounts only (docs/design.md §3.16): refused before the token is read.
    if auth.client.role == ServiceRole::Provisioner {
        auth.require(state, ServiceRole::Signer).await?;
    }
    let req = json_body(body)?;
    let now = state.clock.unix();
    let refusal = |claims: Option<&Claims>, reason: &'static str| AuditEvent::TokenConsumeRefused {
        clinic_id: claims.map(|c| c.clinic.clone()),
        user_id: claims.map(|c| c.sub.clone()),
        client_id: auth.client.id.clone(),
        jti: claims.map(|c| c.jti.clone()),
        reason,
    };
    let claims = match state.token_keys.verify(&req.token, &state.config.token_issuer(), &state.config.tokens.audience, now) {
        Ok(claims) => claims,
        Err(e) => {
            let (claims, err) = match e {
                TokenError::Expired(c) => (Some(c), ApiRefusal::TokenExpired),
                TokenError::NotYetValid(c) => (Some(c), ApiRefusal::TokenNotYetValid),
                TokenError::Invalid(_) => (None, ApiRefusal::InvalidToken),
            };
            state.audit(refusal(claims.as_deref(), err.code())).await?;
            return Err(err.into());
        }
    };
    // The holder of the token must be the client it was issued to (RFC 8705 certificate binding).
    let presenter = match (auth.client.role, &req.presenter_x5t_s256) {
        (ServiceRole::Signer, Some(x5t)) => x5t.clone(),
        (ServiceRole::Signer, None) => return Err(ApiRefusal::PresenterMissing.into()),
        (ServiceRole::Emr, None) => auth.x5t_s256.clone(),
        (ServiceRole::Emr, Some(_)) => return Err(ApiRefusal::PresenterNotAllowed.into()),
        (ServiceRole::Provisioner, _) => return Err(ApiRefusal::WrongRole(ServiceRole::Signer).into()),
    };
    let audit_refusal = |reason: &'static str| refusal(Some(&claims), reason);
    if presenter != claims.cnf.x5t_s256 {
        state.audit(audit_refusal(ApiRefusal::CnfMismatch.code())).await?;
        return Err(ApiRefusal::CnfMismatch.into());
    }
    // The consumption and its `token_consumed` row commit together before the answer.
    let consume = store::NewConsume {
        jti: claims.jti.clone(),
        consumer: auth.client.id.clone(),
        clinic_id: claims.clinic.clone(),
        user_id: claims.sub.clone(),
        at: now,
    };
    if state.group_commit.consume(consume).await?.is_none() {
        return Err(match state.store.consume_refusal(&claims.jti, now).await? {
            Consumption::SessionEnded => {
                state.audit(audit_refusal(ApiRefusal::SessionEnded.code())).await?;
                ApiRefusal::SessionEnded.into()
            }
            _ => {
                state.audit(audit_refusal("already_consumed")).await?;
                ApiRefusal::TokenAlreadyUsed.into()
            }
        });
    }
    Ok(Json(ConsumeResponse {
        sub: claims.sub,
        medical_reg_no: claims.medical_reg_no,
        test: claims.test,
        clinic_id: claims.clinic,
        session_id: claims.sid,
        amr: claims.amr,
        acr: claims.acr,
        auth_time: claims.auth_time,
        hashes: claims.hashes,
        hash_alg: claims.hash_alg,
        num_signatures: claims.num_signatures,
        expires_at: claims.exp,
    }))
}
