//! `POST /api/v1/verify` (docs/design.md §3.12): a registered caller sends a signed prescription
//! document and gets the verification report, judged against `[verify]`'s anchors. Verification
//! touches no key and no token; it is counted, not audited.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::{AppState, Caller, CscError, body};
use crate::config::Config;
use crate::validation::read_certificates;

/// The anchors a signed document is judged against, read at start.
#[derive(Debug, Default)]
pub struct Anchors {
    /// HPKI signing roots (DER).
    pub signer: Vec<Vec<u8>>,
    /// TSA roots (DER).
    pub tsa: Vec<Vec<u8>>,
}

impl Anchors {
    /// From `[verify]`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let mut anchors = Anchors::default();
        for path in &config.verify.anchor_files {
            anchors.signer.extend(read_certificates(path).map_err(|e| anyhow::anyhow!("verify.anchor_files: {e:#}"))?);
        }
        for path in &config.verify.tsa_anchor_files {
            anchors.tsa.extend(read_certificates(path).map_err(|e| anyhow::anyhow!("verify.tsa_anchor_files: {e:#}"))?);
        }
        Ok(anchors)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    /// The signed document, base64.
    document: String,
    /// Judge the certificate at this time (RFC 3339) instead of the time-stamp's.
    #[serde(default)]
    at: Option<String>,
}

/// `POST /api/v1/verify`.
pub(crate) async fn verify(State(state): State<AppState>, _caller: Caller, req: Result<Json<VerifyRequest>, JsonRejection>) -> Response {
    let answer = verify_checked(&state, req).await;
    state.metrics.request("verify", answer.as_ref().err().map(CscError::code));
    answer.into_response()
}

async fn verify_checked(state: &AppState, req: Result<Json<VerifyRequest>, JsonRejection>) -> Result<Json<serde_json::Value>, CscError> {
    let req = body(req)?;
    let document = STANDARD.decode(req.document.as_bytes()).map_err(|_| CscError::invalid("Invalid Base64 document string parameter"))?;
    let at = match req.at.as_deref() {
        None => None,
        Some(text) => Some(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| CscError::invalid("Invalid parameter at: not an RFC 3339 time"))?
                .unix_timestamp(),
        ),
    };
    let anchors = state.verify_anchors.clone();
    let report = tokio::task::spawn_blocking(move || {
        let policy = xades::VerifyPolicy { signer_anchors: &anchors.signer, tsa_anchors: &anchors.tsa, at };
        xades::verify(&document, &policy)
    })
    .await
    .map_err(|_| CscError::internal())?;
    Ok(Json(report.to_json()))
}
