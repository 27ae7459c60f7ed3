//! Extractors that carry authentication: a handler that needs a clinic or a doctor asks for
//! [`ClinicContext`] or [`CurrentDoctor`], and cannot run without one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::AppError;
use super::session::{BrowserSession, LoginState};
use crate::store::{self, User, UserKind};

/// The clinic that the verified client certificate is registered to. Inserted by the clinic
/// gate middleware, which runs before every route on the main listener.
#[derive(Clone, Debug)]
pub struct ClinicContext {
    /// Clinic code.
    pub clinic_id: String,
    /// Clinic name.
    pub clinic_name: String,
    /// Fingerprint of the certificate used.
    pub fingerprint: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ClinicContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        // Fail closed: a route reached without the gate is a wiring bug, never "anonymous".
        parts.extensions.get::<ClinicContext>().cloned().ok_or_else(|| AppError::internal("clinic gate did not run"))
    }
}

/// A signed-in doctor of the certificate's clinic, still enabled.
#[derive(Clone, Debug)]
pub struct CurrentDoctor {
    /// The account.
    pub user: User,
    /// The clinic.
    pub clinic: ClinicContext,
    /// The login.
    pub login: LoginState,
    /// The browser session.
    pub session: BrowserSession,
}

impl FromRequestParts<AppState> for CurrentDoctor {
    type Rejection = AppError;

    #[tracing::instrument(name = "auth.doctor", skip_all, fields(principal.id))]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let clinic = ClinicContext::from_request_parts(parts, state).await?;
        let session = BrowserSession::from_request_parts(parts, state).await?;
        let login: LoginState = session.login().ok_or(AppError::LoginRequired)?;
        // A session opened through another clinic's certificate is not valid here.
        if login.clinic_id != clinic.clinic_id {
            return Err(AppError::LoginRequired);
        }
        let user = match session.loaded_user(&login.user_id) {
            Some(user) => user,
            None => match state.store.user(&login.user_id).await {
                Ok(user) => user,
                Err(store::Error::NotFound) => return Err(AppError::LoginRequired),
                Err(e) => return Err(e.into()),
            },
        };
        if !user.enabled || user.kind != UserKind::Doctor || user.clinic_id != clinic.clinic_id {
            session.sign_out().await?;
            return Err(AppError::LoginRequired);
        }
        tracing::Span::current().record("principal.id", user.id.as_str());
        // A temporary password signs in to the change page only (issue 15).
        if login.must_change_password {
            return Err(AppError::PasswordChangeRequired);
        }
        Ok(Self { user, clinic, login, session })
    }
}
