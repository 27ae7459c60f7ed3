//! The gateway side of the clinic agent's self-update (docs/design.md §3.14), under `/agent/v1`:
//! the newest release for the agent's target, its binary, and the agent's reports of how an
//! update went. Behind the clinic gate like the rest of the agent API; unlike the OQS routes it
//! does not claim the clinic's relay, so every agent of a clinic may update.
//!
//! The gateway only relays what an operator published (its signature checked then); the agent
//! trusts none of it until the signature verifies under the keys compiled into the agent.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::agent::AgentIdentity;
use super::api::json_body;
use super::error::ApiError;
use super::refusal::ApiRefusal;
use super::AppState;
use crate::store::UpdateReport;

type ApiResult<T> = Result<T, ApiError>;

/// The update steps an agent reports (docs/design.md §3.14).
pub const UPDATE_STEPS: [&str; 7] = ["prompt", "download", "verify", "self_test", "swap", "restart", "rollback"];
/// How a step went.
pub const UPDATE_OUTCOMES: [&str; 3] = ["success", "failure", "declined"];
/// Longest `detail` of a report, in characters.
const MAX_DETAIL_CHARS: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/v1/releases/latest", get(latest))
        .route("/agent/v1/releases/{version}/{target}/binary", get(binary))
        .route("/agent/v1/update-report", post(update_report))
}

/// The self-update routes' caller: the agent as it names itself, without claiming the clinic's
/// relay; recorded as seen with its version on every call.
pub(super) struct Updating(AgentIdentity);

impl FromRequestParts<AppState> for Updating {
    type Rejection = ApiError;

    #[tracing::instrument(name = "auth.agent", skip_all, fields(clinic.id, agent.id))]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let agent = AgentIdentity::from_parts(parts, state).await?;
        state.store.agent_seen(agent.call(), state.clock.unix()).await?;
        Ok(Self(agent))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestQuery {
    target: String,
    current: String,
}

#[derive(Serialize)]
struct Offer {
    version: String,
    target: String,
    /// The manifest's exact signed bytes, base64.
    manifest: String,
    /// The minisign signature of those bytes.
    signature: String,
    size: i64,
    /// Where to download the binary.
    binary: String,
}

/// `GET /agent/v1/releases/latest?target=…&current=…`: the newest live release for the target
/// if it is newer than `current`, else `204`.
async fn latest(State(state): State<AppState>, _agent: Updating, query: Result<Query<LatestQuery>, QueryRejection>) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::from(ApiRefusal::BadRequest(e.body_text())))?;
    let target = query.target.parse::<release::Target>().map_err(|e| ApiError::from(ApiRefusal::BadRequest(e.0)))?;
    // Any semantic version, pre-releases included: a development build (1.3.0-dev) is offered
    // the release 1.3.0.
    let Ok(current) = release::Version::parse(&query.current) else {
        return Err(ApiRefusal::BadRequest(format!("current must be the agent's semantic version, got {:?}", query.current)).into());
    };
    let Some(offer) = state.store.newest_agent_release(target.as_str()).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let numbers = |n: i64| u64::try_from(n).unwrap_or(0);
    let newest = release::Version::new(numbers(offer.major), numbers(offer.minor), numbers(offer.patch));
    if newest <= current {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(Offer {
        binary: format!("/agent/v1/releases/{}/{}/binary", offer.version, offer.target),
        version: offer.version,
        target: offer.target,
        manifest: STANDARD.encode(&offer.manifest),
        signature: offer.signature,
        size: offer.size,
    })
    .into_response())
}

/// `GET /agent/v1/releases/{version}/{target}/binary`: the binary of a live release (audited).
async fn binary(State(state): State<AppState>, Updating(agent): Updating, Path((version, target)): Path<(String, String)>) -> ApiResult<Response> {
    // Names that could not have been published are simply not found.
    if release::parse_version(&version).is_err() || target.parse::<release::Target>().is_err() {
        return Err(ApiRefusal::ReleaseNotFound.into());
    }
    let Some(found) = state.store.agent_release_binary(agent.call(), &version, &target, state.clock.unix()).await? else {
        return Err(ApiRefusal::ReleaseNotFound.into());
    };
    tracing::info!(clinic.id = %agent.clinic.clinic_id, agent.id = %agent.agent_id, release.version = %version, release.target = %target, "agent release downloaded");
    let length = found.content.len();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::HeaderName::from_static("x-content-sha256"), found.sha256),
        ],
        found.content,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    step: String,
    version: String,
    outcome: String,
    #[serde(default)]
    detail: Option<String>,
}

/// `POST /agent/v1/update-report {step, version, outcome, detail}`: how a step of an update went
/// (recorded on the agent, shown by `gateway admin agent list`, audited).
async fn update_report(State(state): State<AppState>, Updating(agent): Updating, body: Result<Json<ReportBody>, JsonRejection>) -> ApiResult<StatusCode> {
    let body = json_body(body)?;
    let Some(&step) = UPDATE_STEPS.iter().find(|s| **s == body.step) else {
        return Err(ApiRefusal::BadRequest(format!("step must be one of {}", UPDATE_STEPS.join(", "))).into());
    };
    let Some(&outcome) = UPDATE_OUTCOMES.iter().find(|o| **o == body.outcome) else {
        return Err(ApiRefusal::BadRequest(format!("outcome must be one of {}", UPDATE_OUTCOMES.join(", "))).into());
    };
    if release::parse_version(&body.version).is_err() {
        return Err(ApiRefusal::BadRequest("version must be the release's MAJOR.MINOR.PATCH".to_owned()).into());
    }
    if let Some(d) = &body.detail
        && (d.chars().count() > MAX_DETAIL_CHARS || d.chars().any(char::is_control))
    {
        return Err(
            ApiRefusal::BadRequest(format!("detail must be at most {MAX_DETAIL_CHARS} characters without control characters")).into()
        );
    }
    let detail = body.detail.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let report = UpdateReport { step, version: &body.version, outcome, detail };
    state.store.agent_update_reported(agent.call(), &report, state.clock.unix()).await?;
    Ok(StatusCode::NO_CONTENT)
}
