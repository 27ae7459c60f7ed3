//! The error types handlers end with: [`AppError`] for the browser, [`ApiError`] for the service
//! API. Status codes, codes and messages come from the refusals of `refusal.rs`; internal errors
//! are logged once here and shown as a fixed message.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::i18n::{Lang, Msg};
use super::pages;
use super::refusal::{ApiRefusal, Refusal};

/// An error a browser request ends with.
#[derive(Debug)]
pub enum AppError {
    /// A refusal the person should read, as a page.
    Page(Refusal, Lang),
    /// A refusal of a JSON request (the WebAuthn and card ceremonies): `{"error": code, "message": text}`.
    Json(Refusal, Lang),
    /// Not signed in (or no longer): back to the login page.
    LoginRequired,
    /// Signed in with a temporary password: to the page that replaces it, and nowhere else.
    PasswordChangeRequired,
    /// A bug or an outage; details go to the log, never to the client.
    Internal(anyhow::Error),
}

/// Marks an error page rendered without knowing the request's language (internal errors), so
/// [`super::i18n::keep_language`] can render it again in the right one.
#[derive(Debug, Clone)]
pub struct ErrorPage(pub Refusal);

/// Result of browser handlers.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
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
            AppError::Page(r, lang) => (r.status(), pages::message(lang, r.title(), &r.message(lang))).into_response(),
            AppError::Json(r, lang) => {
                (r.status(), axum::Json(serde_json::json!({ "error": r.code(), "message": r.message(lang) }))).into_response()
            }
            AppError::LoginRequired => Redirect::to("/login").into_response(),
            AppError::PasswordChangeRequired => Redirect::to("/password").into_response(),
            AppError::Internal(e) if is_unavailable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "database unavailable");
                // The request's language is not known here: both, Japanese first.
                let text = format!("{} {}", Msg::Unavailable.text(Lang::Ja), Msg::Unavailable.text(Lang::En));
                let r = Refusal::Unavailable;
                let mut res = (r.status(), [(header::RETRY_AFTER, "5")], pages::message(Lang::Ja, r.title(), &text)).into_response();
                // The browser routes' language layer shows it in the request's language instead.
                res.extensions_mut().insert(ErrorPage(r));
                res
            }
            AppError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                let (r, lang) = (Refusal::Internal, Lang::Ja);
                let mut res = (r.status(), pages::message(lang, r.title(), &r.message(lang))).into_response();
                res.extensions_mut().insert(ErrorPage(r));
                res
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
    for r in [Refusal::Internal, Refusal::Unavailable] {
        if res.status() == r.status() && html {
            return AppError::Json(r, lang).into_response();
        }
    }
    res
}

/// An error of the service API: a refusal, or an internal error (logged once, answered as
/// [`ApiRefusal::Internal`]).
#[derive(Debug)]
pub struct ApiError {
    refusal: ApiRefusal,
    internal: Option<anyhow::Error>,
}

impl ApiError {
    /// The refusal answered.
    pub fn refusal(&self) -> &ApiRefusal {
        &self.refusal
    }

    /// Logs the internal error behind it, if any, once (for callers that answer it in another
    /// format, such as SCIM's).
    pub(crate) fn log_internal(&self) {
        if let Some(e) = &self.internal {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
    }
}

impl From<ApiRefusal> for ApiError {
    fn from(refusal: ApiRefusal) -> Self {
        Self { refusal, internal: None }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        let e = e.into();
        if is_unavailable(&e) {
            // Logged (once, as a warning) by the group commit or here; the client may retry.
            tracing::warn!(error = %format!("{e:#}"), "database unavailable");
            return ApiRefusal::Unavailable.into();
        }
        Self { refusal: ApiRefusal::Internal, internal: Some(e) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(e) = &self.internal {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        let status = self.refusal.status();
        let body = serde_json::json!({ "error": self.refusal.code(), "message": self.refusal.message() });
        let mut res = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        res
    }
}
