//! The service-client JSON API (docs/design.md §3.8): signing-session state and signing tokens for EMR
//! backends, single-use token consumption for remote signers, and the JWKS.
//!
//! These routes sit outside the clinic gate: the caller is a *service client*, identified by the
//! fingerprint of its verified TLS certificate ([`ServiceAuth`]), limited to the clinics it serves.
//! Errors are `{"error": code, "message": text}` with stable codes.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::store::{self, AuditEvent, Consumption, EndReason, ServiceClient, ServiceRole, SessionFilter};
use crate::tls::PeerCert;
use crate::tokens::{self, Claims, Confirmation, SHA256_OID, TokenError};

/// The OpenAPI description of `/api/v1`, committed and served as is.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Seconds between activity updates of a signing session. Idle timeouts are minutes long, so
/// recording activity at most every few seconds keeps issuance at one write per token.
const ACTIVITY_GRANULARITY_SECS: i64 = 5;

/// Most hashes one token may bind.
const MAX_HASHES: usize = 100;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/signing-sessions", get(session_state))
        .route("/api/v1/signing-sessions/{id}", delete(end_session))
        .route("/api/v1/signing-tokens", post(issue))
        .route("/api/v1/signing-tokens/consume", post(consume))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found).delete(api_not_found))
}

/// An API error: status, stable code and an English message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    internal: Option<anyhow::Error>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), internal: None }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        let e = e.into();
        if super::error::is_unavailable(&e) {
            // Logged (once, as a warning) by the group commit or here; the client may retry.
            tracing::warn!(error = %format!("{e:#}"), "database unavailable");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is temporarily unavailable; retry shortly");
        }
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: "internal error".into(), internal: Some(e) }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(e) = &self.internal {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        let mut res = (self.status, Json(ErrorBody { error: self.code, message: &self.message })).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The calling service client, resolved from the verified TLS certificate. Clinic devices and
/// unregistered or disabled clients are refused here, before any handler runs.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    /// The client.
    pub client: ServiceClient,
    /// `x5t#S256` of the certificate it connected with.
    pub x5t_s256: String,
    /// The route called, for the audit of a refusal.
    route: String,
    /// SHA-256 fingerprint of the certificate, for the audit of a refusal.
    fingerprint: String,
}

fn client_not_registered() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "client_not_registered", "the TLS client certificate is not registered as a service client")
}

fn client_disabled() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "client_disabled", "this service client is disabled")
}

fn wrong_role(role: ServiceRole) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "wrong_role", format!("this call needs a service client of role {}", role.as_str()))
}

fn clinic_not_allowed(clinic_id: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "clinic_not_allowed", format!("this client does not serve clinic {clinic_id}"))
}

/// An access refusal on the service API. It is audited before it is answered (docs/design.md
/// §3.9); when its row cannot be committed the caller gets 503 instead.
struct Refusal<'a> {
    route: &'a str,
    fingerprint: &'a str,
    client_id: Option<&'a str>,
    clinic_id: Option<&'a str>,
    user_id: Option<&'a str>,
    doctor_id: Option<&'a str>,
}

impl<'a> Refusal<'a> {
    fn new(route: &'a str, fingerprint: &'a str) -> Self {
        Self { route, fingerprint, client_id: None, clinic_id: None, user_id: None, doctor_id: None }
    }

    /// Audits the refusal and returns it to answer with.
    async fn audit(self, state: &AppState, refusal: ApiError) -> ApiError {
        match self.record(state, refusal.code).await {
            Ok(()) => refusal,
            Err(unavailable) => unavailable,
        }
    }

    async fn record(self, state: &AppState, reason: &'static str) -> ApiResult<()> {
        let event = AuditEvent::ApiRefused {
            fingerprint: self.fingerprint.to_owned(),
            client_id: self.client_id.map(str::to_owned),
            route: self.route.to_owned(),
            clinic_id: self.clinic_id.map(str::to_owned),
            user_id: self.user_id.map(str::to_owned),
            doctor_id: self.doctor_id.map(str::to_owned),
            reason,
        };
        tracing::info!(route = self.route, reason, "service API refused the caller");
        Ok(state.audit(event).await?)
    }
}

impl ServiceAuth {
    fn refusal(&self) -> Refusal<'_> {
        Refusal { client_id: Some(&self.client.id), ..Refusal::new(&self.route, &self.fingerprint) }
    }

    async fn require(&self, state: &AppState, role: ServiceRole) -> ApiResult<()> {
        if self.client.role == role { Ok(()) } else { Err(self.refusal().audit(state, wrong_role(role)).await) }
    }

    fn serves(&self, clinic_id: &str) -> bool {
        self.client.clinics.iter().any(|c| c == clinic_id)
    }

    async fn resolve(state: &AppState, peer: &PeerCert, route: String) -> ApiResult<Self> {
        let refusal = Refusal::new(&route, &peer.fingerprint);
        let client = match state.store.service_client_by_fingerprint(&peer.fingerprint).await {
            Ok(c) => c,
            Err(store::Error::NotFound) => return Err(refusal.audit(state, client_not_registered()).await),
            Err(e) => return Err(e.into()),
        };
        if !client.enabled {
            return Err(Refusal { client_id: Some(&client.id), ..refusal }.audit(state, client_disabled()).await);
        }
        tracing::Span::current().record("service_client.id", client.id.as_str());
        Ok(Self { x5t_s256: tokens::x5t_s256(&peer.der), fingerprint: peer.fingerprint.clone(), client, route })
    }
}

/// The verified client certificate of the request (the accept loop always attaches it).
struct Peer(PeerCert);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<PeerCert>()
            .cloned()
            .map(Peer)
            .ok_or_else(|| ApiError::from(anyhow::anyhow!("request without a verified client certificate")))
    }
}

impl FromRequestParts<AppState> for ServiceAuth {
    type Rejection = ApiError;

    #[tracing::instrument(name = "auth.service_client", skip_all, fields(service_client.id))]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Peer(peer) = Peer::from_request_parts(parts, state).await?;
        let path = parts.extensions.get::<MatchedPath>().map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let route = format!("{} {path}", parts.method);
        Self::resolve(state, &peer, route).await
    }
}

/// An EMR call about one doctor: the calling client (checked: registered, enabled, role EMR,
/// serves the clinic) and the doctor with their open signing session, found in one read.
struct EmrCall<T> {
    request: T,
    route: &'static str,
    fingerprint: String,
    client_id: String,
    x5t_s256: String,
    doctor: Option<store::IssueContext>,
}

impl<T> EmrCall<T> {
    /// Resolves the call to `route`. Errors come in the order every API route reports them:
    /// the client first, then the request's syntax, then the client's access to the clinic.
    async fn resolve(
        state: &AppState,
        route: &'static str,
        peer: &PeerCert,
        request: ApiResult<T>,
        target: impl Fn(&T) -> (&str, &str),
    ) -> ApiResult<Self> {
        let request = match request {
            Ok(r) => r,
            Err(bad) => {
                ServiceAuth::resolve(state, peer, route.to_owned()).await?.require(state, ServiceRole::Emr).await?;
                return Err(bad);
            }
        };
        let (clinic_id, doctor_id) = target(&request);
        let refusal = Refusal { clinic_id: Some(clinic_id), doctor_id: Some(doctor_id), ..Refusal::new(route, &peer.fingerprint) };
        let Some(ctx) = state.store.emr_context(&peer.fingerprint, clinic_id, doctor_id).await? else {
            return Err(refusal.audit(state, client_not_registered()).await);
        };
        let client = ctx.client;
        let refusal = Refusal { client_id: Some(&client.id), ..refusal };
        if !client.enabled {
            return Err(refusal.audit(state, client_disabled()).await);
        }
        tracing::Span::current().record("service_client.id", client.id.as_str());
        if client.role != ServiceRole::Emr {
            return Err(refusal.audit(state, wrong_role(ServiceRole::Emr)).await);
        }
        if !client.serves_clinic {
            return Err(refusal.audit(state, clinic_not_allowed(clinic_id)).await);
        }
        Ok(Self {
            request,
            route,
            fingerprint: peer.fingerprint.clone(),
            client_id: client.id,
            x5t_s256: tokens::x5t_s256(&peer.der),
            doctor: ctx.doctor,
        })
    }

    /// The doctor: exists at the clinic, is a doctor, is enabled.
    async fn doctor(&self, state: &AppState, clinic_id: &str, doctor_id: &str) -> ApiResult<&store::IssueContext> {
        let refusal = Refusal {
            client_id: Some(&self.client_id),
            clinic_id: Some(clinic_id),
            doctor_id: Some(doctor_id),
            user_id: self.doctor.as_ref().map(|d| d.user_id.as_str()),
            ..Refusal::new(self.route, &self.fingerprint)
        };
        let Some(ctx) = self.doctor.as_ref() else {
            let missing =
                ApiError::new(StatusCode::NOT_FOUND, "doctor_not_in_clinic", format!("no doctor {doctor_id} at clinic {clinic_id}"));
            return Err(refusal.audit(state, missing).await);
        };
        if !ctx.is_doctor {
            let refused = ApiError::new(StatusCode::FORBIDDEN, "not_a_doctor", "only doctors have signing sessions");
            return Err(refusal.audit(state, refused).await);
        }
        if !ctx.enabled {
            let refused = ApiError::new(StatusCode::FORBIDDEN, "doctor_disabled", "the doctor's account is disabled");
            return Err(refusal.audit(state, refused).await);
        }
        Ok(ctx)
    }
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

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b).map_err(|e| ApiError::bad("bad_request", e.body_text()))
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
    let query = query.map(|Query(q)| q).map_err(|e| ApiError::bad("bad_request", e.body_text()));
    let call = EmrCall::resolve(&state, "GET /api/v1/signing-sessions", &peer, query, |q| (&q.clinic_id, &q.doctor_id)).await?;
    let now = state.clock.unix();
    let ctx = call.doctor(&state, &call.request.clinic_id, &call.request.doctor_id).await?.clone();
    let inactive = |reason| SessionState {
        active: false,
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
            Err(e) => inactive(e.code),
            Ok(()) => SessionState {
                active: true,
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

fn session_liveness(s: &store::OpenSession, now: i64) -> ApiResult<()> {
    if now >= s.expires_at {
        return Err(ApiError::new(StatusCode::CONFLICT, "session_expired", "the signing session reached its maximum lifetime"));
    }
    if now >= s.last_activity_at + s.idle_secs {
        return Err(ApiError::new(StatusCode::CONFLICT, "session_idle_expired", "the signing session timed out from inactivity"));
    }
    Ok(())
}

async fn end_session(State(state): State<AppState>, auth: ServiceAuth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    auth.require(&state, ServiceRole::Emr).await?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "session_not_found", "no such signing session");
    let session = match state.store.signing_session(&id).await {
        Ok(s) => s,
        Err(store::Error::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    // A client learns nothing about sessions of clinics it does not serve; the audit says why.
    if !auth.serves(&session.clinic_id) {
        let refusal = Refusal { clinic_id: Some(&session.clinic_id), user_id: Some(&session.user_id), ..auth.refusal() };
        refusal.record(&state, "clinic_not_allowed").await?;
        return Err(not_found());
    }
    let ended = state.store.end_signing_sessions(SessionFilter::Id(&id), EndReason::Operator, state.clock.unix()).await?;
    if ended.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, "session_already_ended", "the signing session has already ended"));
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
fn validate_binding(req: &IssueRequest) -> ApiResult<Binding> {
    match &req.hashes {
        None => {
            if req.hash_alg.is_some() {
                return Err(ApiError::bad("bad_hashes", "hash_alg is given without hashes"));
            }
            if req.num_signatures.is_some_and(|n| !(1..=MAX_HASHES as u32).contains(&n)) {
                return Err(ApiError::bad("bad_num_signatures", format!("num_signatures must be 1..={MAX_HASHES}")));
            }
            Ok(Binding { num_signatures: req.num_signatures, ..Binding::default() })
        }
        Some(hashes) => {
            let alg = req.hash_alg.clone().unwrap_or_else(|| SHA256_OID.to_owned());
            if alg != SHA256_OID {
                return Err(ApiError::bad("bad_hash_alg", format!("only SHA-256 ({SHA256_OID}) is supported")));
            }
            if hashes.is_empty() || hashes.len() > MAX_HASHES {
                return Err(ApiError::bad("bad_hashes", format!("hashes must hold 1..={MAX_HASHES} values")));
            }
            for (i, h) in hashes.iter().enumerate() {
                match URL_SAFE_NO_PAD.decode(h) {
                    Ok(bytes) if bytes.len() == 32 => {}
                    _ => {
                        return Err(ApiError::bad(
                            "bad_hashes",
                            format!("hashes[{i}] is not an unpadded base64url SHA-256 value (32 bytes)"),
                        ));
                    }
                }
            }
            let n = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
            if req.num_signatures.is_some_and(|k| k != n) {
                return Err(ApiError::bad("bad_num_signatures", "num_signatures must equal the number of hashes"));
            }
            Ok(Binding { hashes: Some(hashes.clone()), hash_alg: Some(alg), num_signatures: Some(n) })
        }
    }
}

#[tracing::instrument(name = "api.issue_token", skip_all, fields(clinic.id, service_client.id))]
async fn issue(
    State(state): State<AppState>,
    Peer(peer): Peer,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> ApiResult<Json<IssueResponse>> {
    let call = EmrCall::resolve(&state, "POST /api/v1/signing-tokens", &peer, json_body(body), |r| (&r.clinic_id, &r.doctor_id)).await?;
    let req = &call.request;
    tracing::Span::current().record("clinic.id", req.clinic_id.as_str());
    let cfg = &state.config.tokens;
    let ttl = match req.ttl {
        None => cfg.default_ttl_secs,
        Some(t) if t < 1 => return Err(ApiError::bad("bad_ttl", "ttl must be at least 1 second")),
        Some(t) if t > cfg.max_ttl_secs => {
            return Err(ApiError::bad("ttl_too_long", format!("ttl must be at most {} seconds", cfg.max_ttl_secs)));
        }
        Some(t) => t,
    };
    let Binding { hashes, hash_alg, num_signatures } = validate_binding(req)?;
    let now = state.clock.unix();
    let ctx = call.doctor(&state, &req.clinic_id, &req.doctor_id).await?;
    let refuse = |code: &'static str| AuditEvent::TokenRefused {
        clinic_id: req.clinic_id.clone(),
        user_id: ctx.user_id.clone(),
        client_id: call.client_id.clone(),
        reason: code,
    };
    let Some(mut session) = ctx.session.clone() else {
        state.audit(refuse("no_session")).await?;
        return Err(ApiError::new(StatusCode::CONFLICT, "no_session", "the doctor has no signing session at this clinic"));
    };
    // A re-authentication can supersede the session between the read above and the commit; the
    // token is then made again from the session live at that point (once).
    for retry in [false, true] {
        if let Err(e) = session_liveness(&session, now) {
            state.audit(refuse(e.code)).await?;
            return Err(e);
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
    Err(ApiError::new(StatusCode::CONFLICT, "no_session", "the signing session has just ended"))
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

#[tracing::instrument(name = "api.consume_token", skip_all, fields(service_client.id = %auth.client.id))]
async fn consume(
    State(state): State<AppState>,
    auth: ServiceAuth,
    body: Result<Json<ConsumeRequest>, JsonRejection>,
) -> ApiResult<Json<ConsumeResponse>> {
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
                TokenError::Expired(c) => {
                    (Some(c), ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", "the token has expired"))
                }
                TokenError::NotYetValid(c) => {
                    (Some(c), ApiError::new(StatusCode::UNAUTHORIZED, "token_not_yet_valid", "the token is not valid yet"))
                }
                TokenError::Invalid(_) => {
                    (None, ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the token is not a valid signing token"))
                }
            };
            state.audit(refusal(claims.as_deref(), err.code)).await?;
            return Err(err);
        }
    };
    // The holder of the token must be the client it was issued to (RFC 8705 certificate binding).
    let presenter = match (auth.client.role, &req.presenter_x5t_s256) {
        (ServiceRole::Signer, Some(x5t)) => x5t.clone(),
        (ServiceRole::Signer, None) => {
            return Err(ApiError::bad("bad_request", "a signer must pass the presenter's x5t#S256"));
        }
        (ServiceRole::Emr, None) => auth.x5t_s256.clone(),
        (ServiceRole::Emr, Some(_)) => {
            return Err(ApiError::bad("bad_request", "only signers pass a presenter thumbprint"));
        }
    };
    let audit_refusal = |reason: &'static str| refusal(Some(&claims), reason);
    if presenter != claims.cnf.x5t_s256 {
        state.audit(audit_refusal("cnf_mismatch")).await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cnf_mismatch", "the token is bound to another client certificate"));
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
                state.audit(audit_refusal("session_ended")).await?;
                ApiError::new(StatusCode::CONFLICT, "session_ended", "the signing session this token was issued in has ended")
            }
            _ => {
                state.audit(audit_refusal("already_consumed")).await?;
                ApiError::new(StatusCode::CONFLICT, "token_already_used", "the token was already consumed or is unknown")
            }
        });
    }
    Ok(Json(ConsumeResponse {
        sub: claims.sub,
        medical_reg_no: claims.medical_reg_no,
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
