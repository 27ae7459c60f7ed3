//! The clinic agent's side of the OQS relay (docs/design.md §3.13), under `/agent/v1`. The caller
//! is the clinic agent with the clinic's certificate (the clinic gate has mapped it to its
//! clinic), naming itself in `X-Ninsho-Agent`; only the agent holding the clinic's relay is
//! served. Errors are JSON like the service API's.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::api::{file_refusal, json_body};
use super::error::ApiError;
use super::refusal::ApiRefusal;
use super::{AppState, ClinicContext};
use crate::oqs;
use crate::store::{AgentCall, AgentStep, AuditEvent, Claim, OqsAnswer};

/// The header naming the agent; `X-Ninsho-Agent-Version` carries its version.
pub const AGENT_HEADER: &str = "x-ninsho-agent";
/// The header carrying the agent's version.
pub const VERSION_HEADER: &str = "x-ninsho-agent-version";
/// Most pending request ids one heartbeat may ask about.
const MAX_PENDING: usize = 256;

type ApiResult<T> = Result<T, ApiError>;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/v1/heartbeat", post(heartbeat))
        .route("/agent/v1/oqs/next", get(next))
        .route("/agent/v1/oqs/{id}/delivered", post(delivered))
        // The body reader has applied `oqs.body_limit()` to this route (`body.rs`).
        .route("/agent/v1/oqs/{id}/response", post(response).layer(DefaultBodyLimit::disable()))
        .route("/agent/v1/oqs/{id}/failed", post(failed))
        .route("/agent/{*rest}", get(not_found).post(not_found))
        .merge(super::agent_release::router())
}

async fn not_found() -> ApiError {
    ApiRefusal::NotFound.into()
}

/// Whether `method path` carries an OQS file (its body may be `oqs.body_limit()` long).
pub(super) fn carries_file(method: &axum::http::Method, path: &str) -> bool {
    if method != axum::http::Method::POST {
        return false;
    }
    let inner = |p: &str, prefix: &str, suffix: &str| {
        p.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix)).is_some_and(|mid| !mid.is_empty() && !mid.contains('/'))
    };
    inner(path, "/agent/v1/oqs/", "/response") || inner(path, "/api/v1/clinics/", "/oqs/requests")
}

/// The agent calling, as it names itself in its headers: its clinic (from the clinic gate), its
/// id and its version. The OQS routes take [`Agent`] (which also holds the clinic's relay), the
/// self-update routes this alone.
pub(super) struct AgentIdentity {
    pub(super) clinic: ClinicContext,
    pub(super) agent_id: String,
    pub(super) version: String,
}

impl AgentIdentity {
    /// Reads the agent's headers behind the clinic gate.
    pub(super) async fn from_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let clinic = ClinicContext::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::from(anyhow::anyhow!("clinic gate did not run")))?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let Some(agent_id) = header(AGENT_HEADER).filter(|id| oqs::valid_agent_id(id)).map(str::to_owned) else {
            return Err(ApiRefusal::AgentBadId.into());
        };
        let version = header(VERSION_HEADER)
            .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("unknown")
            .to_owned();
        tracing::Span::current().record("clinic.id", clinic.clinic_id.as_str()).record("agent.id", agent_id.as_str());
        Ok(Self { clinic, agent_id, version })
    }

    /// The store's view of the caller.
    pub(super) fn call(&self) -> AgentCall<'_> {
        AgentCall {
            clinic_id: &self.clinic.clinic_id,
            agent_id: &self.agent_id,
            fingerprint: &self.clinic.fingerprint,
            version: &self.version,
        }
    }
}

/// The agent calling, holding its clinic's relay.
pub(super) struct Agent(AgentIdentity);

impl std::ops::Deref for Agent {
    type Target = AgentIdentity;

    fn deref(&self) -> &AgentIdentity {
        &self.0
    }
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    #[tracing::instrument(name = "auth.agent", skip_all, fields(clinic.id, agent.id))]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let agent = Self(AgentIdentity::from_parts(parts, state).await?);
        let now = state.clock.unix();
        let stale_before = now - state.config.oqs.agent_hold_secs;
        match state.store.oqs_claim_relay(agent.call(), stale_before, now).await? {
            Claim::Held => Ok(agent),
            Claim::HeldByOther(holder) => {
                let refusal = ApiRefusal::RelayHeld { agent_id: holder.agent_id, last_seen: holder.last_seen };
                state
                    .audit(AuditEvent::ApiRefused {
                        fingerprint: agent.clinic.fingerprint.clone(),
                        client_id: None,
                        route: format!("{} {}", parts.method, parts.uri.path()),
                        clinic_id: Some(agent.clinic.clinic_id.clone()),
                        user_id: None,
                        doctor_id: None,
                        reason: refusal.code(),
                    })
                    .await?;
                tracing::warn!(clinic.id = %agent.clinic.clinic_id, agent.id = %agent.agent_id, "a second agent asked for a clinic's relay");
                Err(refusal.into())
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    /// Requests the agent still waits on an answer for.
    #[serde(default)]
    pending: Vec<String>,
}

#[derive(Serialize)]
struct HeartbeatResponse {
    clinic_id: String,
    clinic_name: String,
    agent_id: String,
    /// Of the pending requests, those that have ended (or are unknown): stop waiting for them.
    over: Vec<Over>,
    lease_secs: i64,
    max_file_bytes: usize,
    max_wait_secs: u64,
}

#[derive(Serialize)]
struct Over {
    request_id: String,
    status: &'static str,
}

/// `POST /agent/v1/heartbeat`: keeps the relay, names the clinic (the set-up page checks it), and
/// tells which of the agent's pending requests have ended.
async fn heartbeat(
    State(state): State<AppState>,
    agent: Agent,
    body: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let req = json_body(body)?;
    // The agent list (`gateway admin agent list`) shows the version each agent reports.
    state.store.agent_seen(agent.call(), state.clock.unix()).await?;
    if req.pending.len() > MAX_PENDING {
        return Err(ApiRefusal::BadRequest(format!("at most {MAX_PENDING} pending ids")).into());
    }
    let ended = state.store.oqs_ended_of(&agent.clinic.clinic_id, &req.pending).await?;
    let over = ended
        .into_iter()
        .map(|(request_id, status)| Over { request_id, status: status.map_or("unknown", |s| s.as_str()) })
        .collect();
    let cfg = &state.config.oqs;
    let Agent(AgentIdentity { clinic, agent_id, .. }) = agent;
    Ok(Json(HeartbeatResponse {
        clinic_id: clinic.clinic_id,
        clinic_name: clinic.clinic_name,
        agent_id,
        over,
        lease_secs: cfg.lease_secs,
        max_file_bytes: cfg.max_file_bytes,
        max_wait_secs: cfg.max_wait_secs,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextQuery {
    #[serde(default)]
    wait: u64,
}

#[derive(Serialize)]
struct NextRequest {
    request_id: String,
    file_name: String,
    content: String,
    lease_until: i64,
}

/// `GET /agent/v1/oqs/next[?wait=s]`: leases the clinic's next request, waiting up to `wait`
/// seconds for one; `204` when none came.
async fn next(State(state): State<AppState>, agent: Agent, query: Result<Query<NextQuery>, QueryRejection>) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::from(ApiRefusal::BadRequest(e.body_text())))?;
    let cfg = &state.config.oqs;
    if query.wait > cfg.max_wait_secs {
        return Err(ApiRefusal::OqsBadWait { max: cfg.max_wait_secs }.into());
    }
    let signals = state.oqs_signals.clinic(&agent.clinic.clinic_id);
    let poll = std::time::Duration::from_millis(cfg.sweep_ms);
    let wait = std::time::Duration::from_secs(query.wait);
    let call = agent.call();
    let leased = oqs::long_poll(&state.oqs_signals, &signals.queue, wait, poll, || async {
        let now = state.clock.unix();
        Ok::<_, ApiError>(state.store.oqs_take(call, now + cfg.lease_secs, now).await?)
    })
    .await?;
    Ok(match leased {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(r) => Json(NextRequest {
            request_id: r.id,
            file_name: r.file_name,
            content: STANDARD.encode(&r.content),
            lease_until: r.lease_until,
        })
        .into_response(),
    })
}

/// The answer to a reported step.
fn step_answer(step: AgentStep) -> ApiResult<StatusCode> {
    match step {
        AgentStep::Done | AgentStep::AlreadyDone => Ok(StatusCode::NO_CONTENT),
        AgentStep::NotFound => Err(ApiRefusal::OqsRequestNotFound.into()),
        AgentStep::Refused(status) => Err(ApiRefusal::OqsRequestOver { status: status.map_or("unknown", |s| s.as_str()) }.into()),
    }
}

/// `POST /agent/v1/oqs/{id}/delivered`: the file is in `req`.
async fn delivered(State(state): State<AppState>, agent: Agent, Path(id): Path<String>) -> ApiResult<StatusCode> {
    step_answer(state.store.oqs_delivered(agent.call(), &id, state.clock.unix()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseBody {
    file_name: String,
    content: String,
}

/// `POST /agent/v1/oqs/{id}/response`: the terminal's answer, under the name paired with the
/// request's.
async fn response(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    body: Result<Json<ResponseBody>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let body = json_body(body)?;
    let Some(request) = state.store.oqs_request(&id).await?.filter(|r| r.clinic_id == agent.clinic.clinic_id) else {
        return Err(ApiRefusal::OqsRequestNotFound.into());
    };
    if oqs::answer_name(&request.file_name).as_deref() != Some(body.file_name.as_str()) {
        return Err(ApiRefusal::OqsBadFileName(format!(
            "the answer to {} must be named {}",
            request.file_name,
            oqs::answer_name(&request.file_name).unwrap_or_default()
        ))
        .into());
    }
    let Ok(content) = STANDARD.decode(body.content.as_bytes()) else {
        return Err(ApiRefusal::BadRequest("content must be the file in base64".to_owned()).into());
    };
    oqs::check_content(&content, state.config.oqs.max_file_bytes).map_err(file_refusal)?;
    let answer = OqsAnswer { file_name: &body.file_name, content: &content };
    let step = state.store.oqs_answered(agent.call(), &id, &answer, state.clock.unix()).await?;
    if step == AgentStep::Done {
        state.oqs_signals.clinic(&agent.clinic.clinic_id).ended.notify_waiters();
        state.metrics.oqs_answered();
    }
    step_answer(step)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailedBody {
    reason: String,
}

/// What an agent may give as the reason a request failed.
const AGENT_REASONS: [&str; 3] = ["name_taken", "answer_unreadable", "answer_too_large"];

/// `POST /agent/v1/oqs/{id}/failed`: the agent cannot go on with the request.
async fn failed(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    body: Result<Json<FailedBody>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let body = json_body(body)?;
    let Some(&reason) = AGENT_REASONS.iter().find(|r| **r == body.reason) else {
        return Err(ApiRefusal::BadRequest(format!("reason must be one of {}", AGENT_REASONS.join(", "))).into());
    };
    let step = state.store.oqs_failed(agent.call(), &id, reason, state.clock.unix()).await?;
    if step == AgentStep::Done {
        state.oqs_signals.clinic(&agent.clinic.clinic_id).ended.notify_waiters();
    }
    step_answer(step)
}
