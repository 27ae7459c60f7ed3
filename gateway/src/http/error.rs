//! The browser-facing error type: the only place (with the API error type) that picks status
//! codes. Internal errors are logged once here and shown as a fixed message.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::i18n::{Lang, Msg};
use super::pages;

/// An error a browser request ends with.
#[derive(Debug)]
pub enum AppError {
    /// A refusal the person should read.
    Page { status: StatusCode, lang: Lang, title: Msg, text: String },
    /// A refusal of a JSON request (the WebAuthn endpoints): `{"error": code, "message": text}`.
    Json { status: StatusCode, code: &'static str, message: String },
    /// Not signed in (or no longer): back to the login page.
    LoginRequired,
    /// Signed in with a temporary password: to the page that replaces it, and nowhere else.
    PasswordChangeRequired,
    /// A bug or an outage; details go to the log, never to the client.
    Internal(anyhow::Error),
}

/// Result of browser handlers.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    /// A refusal page with a fixed message.
    pub fn page(status: StatusCode, lang: Lang, title: Msg, msg: Msg) -> Self {
        AppError::Page { status, lang, title, text: msg.text(lang).to_owned() }
    }

    /// A JSON refusal with a fixed code and a message in `lang`.
    pub fn json(status: StatusCode, code: &'static str, lang: Lang, msg: Msg) -> Self {
        AppError::Json { status, code, message: msg.text(lang).to_owned() }
    }

    /// An internal error with a description.
    pub fn internal(what: impl Into<String>) -> Self {
        AppError::Internal(anyhow::anyhow!(what.into()))
    }
}

/// Whether `e` means the database could not be reached or did not commit (a pool timeout, a
/// lost connection, a group commit that failed): answered 503, not 500, since a retry may work.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<crate::group_commit::NotCommitted>().is_some()
            || cause.downcast_ref::<crate::store::Error>().is_some_and(crate::store::Error::is_unavailable)
            || cause.downcast_ref::<sqlx::Error>().is_some_and(crate::store::sqlx_unavailable)
    })
}

impl From<crate::group_commit::NotCommitted> for AppError {
    fn from(e: crate::group_commit::NotCommitted) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<crate::store::Error> for AppError {
    fn from(e: crate::store::Error) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<crate::password::HashError> for AppError {
    fn from(e: crate::password::HashError) -> Self {
        AppError::Internal(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Page { status, lang, title, text } => (status, pages::message(lang, title, &text)).into_response(),
            AppError::Json { status, code, message } => {
                (status, axum::Json(serde_json::json!({ "error": code, "message": message }))).into_response()
            }
            AppError::LoginRequired => Redirect::to("/login").into_response(),
            AppError::PasswordChangeRequired => Redirect::to("/password").into_response(),
            AppError::Internal(e) if is_unavailable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "database unavailable");
                // The request's language is not known here: both, Japanese first.
                let text = format!("{} {}", Msg::Unavailable.text(Lang::Ja), Msg::Unavailable.text(Lang::En));
                (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], pages::message(Lang::Ja, Msg::ErrorTitle, &text))
                    .into_response()
            }
            AppError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                let lang = Lang::Ja;
                (StatusCode::INTERNAL_SERVER_ERROR, pages::message(lang, Msg::ErrorTitle, Msg::InternalError.text(lang)))
                    .into_response()
            }
        }
    }
}

/// Layer for the JSON routes of the browser (WebAuthn and card ceremonies): an internal error
/// there is answered as `{"error": "internal", "message": …}` in the request's language, like
/// every other refusal of those routes, instead of the HTML error page (`AppError::Internal`
/// does not know which kind of request failed; it has already been logged).
pub async fn json_internal_errors(lang: Lang, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if res.status() == StatusCode::INTERNAL_SERVER_ERROR && html {
        return AppError::json(StatusCode::INTERNAL_SERVER_ERROR, "internal", lang, Msg::InternalError).into_response();
    }
    if res.status() == StatusCode::SERVICE_UNAVAILABLE && html {
        return AppError::json(StatusCode::SERVICE_UNAVAILABLE, "unavailable", lang, Msg::Unavailable).into_response();
    }
    res
}
