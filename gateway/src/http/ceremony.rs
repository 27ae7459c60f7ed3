//! What every WebAuthn and card ceremony request starts with: the signed-in doctor (or a JSON
//! refusal, since a script cannot follow the login redirect), the language and the time —
//! one extractor, [`Ceremony`], so no handler repeats the opening.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::Json;
use serde_json::{Value, json};

use super::AppState;
use super::error::{AppError, Result};
use super::extract::CurrentDoctor;
use super::i18n::{Done, Lang};
use super::refusal::Refusal;
use crate::store::AuditEvent;

/// One ceremony request of a signed-in doctor: who, where, when, in which language.
pub(super) struct Ceremony {
    pub(super) state: AppState,
    pub(super) doctor: CurrentDoctor,
    pub(super) lang: Lang,
    /// The request's time, one for all its checks and rows.
    pub(super) now: i64,
}

impl FromRequestParts<AppState> for Ceremony {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let Ok(lang) = Lang::from_request_parts(parts, state).await;
        let doctor = match CurrentDoctor::from_request_parts(parts, state).await {
            Ok(d) => d,
            Err(AppError::LoginRequired) => return Err(AppError::Json(Refusal::LoginRequired, lang)),
            Err(AppError::PasswordChangeRequired) => return Err(AppError::Json(Refusal::PasswordChangeRequired, lang)),
            Err(e) => return Err(e),
        };
        Ok(Self { state: state.clone(), doctor, lang, now: state.clock.unix() })
    }
}

impl Ceremony {
    /// Appends an audit row at the request's time.
    pub(super) async fn audit(&self, event: AuditEvent) -> Result<()> {
        Ok(self.state.store.audit(&event, self.now).await?)
    }

    /// The ceremony's refusal as the page reads it, after its audit rows were written.
    pub(super) async fn refuse(&self, events: Vec<AuditEvent>, r: Refusal) -> AppError {
        for event in events {
            if let Err(e) = self.audit(event).await {
                return e;
            }
        }
        AppError::Json(r, self.lang)
    }

    /// SHA-256 of the browser session id, which ceremony rows are bound to.
    pub(super) fn session_hash(&self) -> Result<[u8; 32]> {
        // A signed-in doctor always has a stored session (the login stored it).
        self.doctor.session.id_hash().ok_or_else(|| AppError::internal("browser session without id"))
    }

    /// The answer of a finished ceremony: where the page goes next.
    pub(super) fn redirect(&self, done: Done) -> Json<Value> {
        Json(json!({ "ok": true, "redirect": done.location(self.lang) }))
    }
}
