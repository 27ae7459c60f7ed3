//! The EMR side of the OQS relay (docs/design.md §3.13): queue a file for a clinic's OQS terminal,
//! then read (or wait for) its answer. Callers are EMR service clients serving the clinic.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{ApiResult, ServiceAuth, json_body};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::refusal::ApiRefusal;
use crate::oqs::{self, Direction, FileRefusal};
use crate::store::{self, AuditEvent, Enqueued, NewOqsRequest, OqsRequest, OqsStatus, ServiceRole};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnqueueRequest {
    file_name: String,
    /// The file, base64 (standard alphabet, padded).
    content: String,
}

#[derive(Serialize)]
pub(super) struct EnqueueResponse {
    request_id: String,
    status: &'static str,
    expires_at: i64,
}

/// `POST /api/v1/clinics/{clinic_id}/oqs/requests`.
pub(super) async fn enqueue(
    State(state): State<AppState>,
    auth: ServiceAuth,
    Path(clinic_id): Path<String>,
    body: Result<Json<EnqueueRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<EnqueueResponse>)> {
    auth.require(&state, ServiceRole::Emr).await?;
    if !auth.serves(&clinic_id) {
        return Err(auth.refuse_for_clinic(&state, &clinic_id, ApiRefusal::ClinicNotAllowed(clinic_id.clone())).await);
    }
    let req = json_body(body)?;
    let refuse = async |file_name: Option<&str>, refusal: ApiRefusal| -> ApiError {
        let event = AuditEvent::OqsRefused {
            clinic_id: clinic_id.clone(),
            client_id: auth.client.id.clone(),
            file_name: file_name.map(str::to_owned),
            reason: refusal.code(),
        };
        match state.audit(event).await {
            Ok(()) => refusal.into(),
            Err(e) => e.into(),
        }
    };
    match state.store.clinic(&clinic_id).await {
        Ok(c) if c.enabled => {}
        Ok(_) => return Err(refuse(None, ApiRefusal::OqsClinicDisabled).await),
        Err(store::Error::NotFound) => return Err(refuse(None, ApiRefusal::OqsClinicNotFound(clinic_id.clone())).await),
        Err(e) => return Err(e.into()),
    }
    let cfg = &state.config.oqs;
    if let Err(e) = oqs::check_name(&req.file_name, Direction::Request) {
        // A name off the pattern is not repeated into the audit row.
        return Err(refuse(None, file_refusal(e)).await);
    }
    let file_name = req.file_name.as_str();
    let Ok(content) = STANDARD.decode(req.content.as_bytes()) else {
        return Err(refuse(Some(file_name), ApiRefusal::BadRequest("content must be the file in base64".to_owned())).await);
    };
    if let Err(e) = oqs::check_content(&content, cfg.max_file_bytes) {
        return Err(refuse(Some(file_name), file_refusal(e)).await);
    }
    let now = state.clock.unix();
    let expires_at = now + cfg.answer_timeout_secs;
    let new = NewOqsRequest {
        clinic_id: &clinic_id,
        client_id: &auth.client.id,
        file_name,
        content: &content,
        expires_at,
        max_live: cfg.max_queued_per_clinic,
    };
    match state.store.oqs_enqueue(&new, now).await? {
        Enqueued::Queued(request_id) => {
            state.oqs_signals.clinic(&clinic_id).queue.notify_waiters();
            state.metrics.oqs_enqueued();
            Ok((StatusCode::ACCEPTED, Json(EnqueueResponse { request_id, status: OqsStatus::Queued.as_str(), expires_at })))
        }
        Enqueued::NameInUse => Err(refuse(Some(file_name), ApiRefusal::OqsNameInUse).await),
        Enqueued::QueueFull => Err(refuse(Some(file_name), ApiRefusal::OqsQueueFull { max: cfg.max_queued_per_clinic }).await),
    }
}

pub(crate) fn file_refusal(e: FileRefusal) -> ApiRefusal {
    match e {
        FileRefusal::BadName => ApiRefusal::OqsBadFileName(e.to_string()),
        FileRefusal::TooLarge { max } => ApiRefusal::OqsTooLarge { max },
        FileRefusal::NotXml(why) => ApiRefusal::OqsNotXml(why),
        FileRefusal::NotXmlMsg(root) => ApiRefusal::OqsNotXml(format!("the root element is {root}, not XmlMsg")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    /// Seconds to wait for the request to end.
    #[serde(default)]
    wait: u64,
}

#[derive(Serialize)]
pub(super) struct RequestState {
    request_id: String,
    clinic_id: String,
    file_name: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: i64,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<AnswerFile>,
}

#[derive(Serialize)]
pub(super) struct AnswerFile {
    file_name: String,
    content: String,
}

/// `GET /api/v1/oqs/requests/{id}[?wait=s]`: the request's state, after waiting up to `wait`
/// seconds for it to end.
pub(super) async fn status(
    State(state): State<AppState>,
    auth: ServiceAuth,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<RequestState>> {
    auth.require(&state, ServiceRole::Emr).await?;
    let Query(query) = query.map_err(|e| ApiError::from(ApiRefusal::BadRequest(e.body_text())))?;
    let max = state.config.oqs.max_wait_secs;
    if query.wait > max {
        return Err(ApiRefusal::OqsBadWait { max }.into());
    }
    let Some(first) = current(&state, &id).await? else {
        return Err(ApiRefusal::OqsRequestNotFound.into());
    };
    // A client learns nothing about requests of clinics it does not serve; the audit says why.
    if !auth.serves(&first.clinic_id) {
        let refusal = ApiRefusal::ClinicNotAllowed(first.clinic_id.clone());
        auth.clinic_refusal(&first.clinic_id).record(&state, refusal.code()).await?;
        return Err(ApiRefusal::OqsRequestNotFound.into());
    }
    let mut row = first;
    if !row.status()?.is_final() && query.wait > 0 {
        let signals = state.oqs_signals.clinic(&row.clinic_id);
        let poll = std::time::Duration::from_millis(state.config.oqs.sweep_ms);
        let wait = std::time::Duration::from_secs(query.wait);
        let ended = oqs::long_poll(&state.oqs_signals, &signals.ended, wait, poll, || async {
            match current(&state, &id).await? {
                Some(r) if r.status()?.is_final() => Ok::<_, ApiError>(Some(r)),
                _ => Ok(None),
            }
        })
        .await?;
        if let Some(r) = ended {
            row = r;
        } else if let Some(r) = current(&state, &id).await? {
            row = r;
        }
    }
    let status = row.status()?;
    if status == OqsStatus::Answered {
        // The answer leaves only once its reading is audited.
        state.audit(AuditEvent::OqsAnswerRead {
            clinic_id: row.clinic_id.clone(),
            client_id: auth.client.id.clone(),
            request_id: row.id.clone(),
        })
        .await?;
    }
    Ok(Json(render(row, status)))
}

/// The request as stored now; one past its deadline is expired first (with its reason and
/// audit row), so an answer never says `queued` after the deadline.
async fn current(state: &AppState, id: &str) -> ApiResult<Option<OqsRequest>> {
    let Some(row) = state.store.oqs_request(id).await? else {
        return Ok(None);
    };
    let now = state.clock.unix();
    if row.status()?.is_final() || now < row.expires_at {
        return Ok(Some(row));
    }
    crate::server::sweep_oqs(state, now).await?;
    Ok(state.store.oqs_request(id).await?)
}

fn render(row: OqsRequest, status: OqsStatus) -> RequestState {
    let response = match (status, row.response_name, row.response_content) {
        (OqsStatus::Answered, Some(file_name), Some(content)) => Some(AnswerFile { file_name, content: STANDARD.encode(content) }),
        _ => None,
    };
    RequestState {
        request_id: row.id,
        clinic_id: row.clinic_id,
        file_name: row.file_name,
        status: status.as_str(),
        reason: row.reason,
        created_at: row.created_at,
        expires_at: row.expires_at,
        delivered_at: row.delivered_at,
        answered_at: if status == OqsStatus::Answered { row.finished_at } else { None },
        response,
    }
}
