//! SCIM errors as RFC 7644 §3.12 defines them: `{"schemas": [ERROR], "status": "400",
//! "scimType": "invalidFilter", "detail": "…"}`, with the HTTP status repeated as a string.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::super::super::error::ApiError;
use crate::store;

/// The error message schema (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// `scimType` values of RFC 7644 §3.12 (Table 9) the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "camelCase")]
pub enum ScimType {
    /// The filter is not understood or not supported.
    InvalidFilter,
    /// The body is not valid JSON or not a SCIM resource.
    InvalidSyntax,
    /// An attribute value is missing, of the wrong type or not allowed.
    InvalidValue,
    /// `userName`, `externalId` or 医籍番号 is taken in the clinic.
    Uniqueness,
    /// An attempt to change an attribute that cannot be changed (`id`, the clinic).
    Mutability,
    /// A PATCH path names nothing.
    NoTarget,
    /// A path is not a valid attribute path.
    InvalidPath,
}

/// A SCIM error response.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<ScimType>,
    detail: String,
}

impl ScimError {
    /// A 400 with its `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// A status without `scimType` (404, 403, 412, …).
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, scim_type: None, detail: detail.into() }
    }

    /// 404: no such user for this provisioner (another clinic's users are not found either).
    pub fn not_found(id: &str) -> Self {
        Self::status(StatusCode::NOT_FOUND, format!("no user {id}"))
    }

    /// 409 uniqueness: `what` is taken in the clinic.
    pub fn taken(what: &str) -> Self {
        Self { status: StatusCode::CONFLICT, scim_type: Some(ScimType::Uniqueness), detail: format!("{what} is already used in this clinic") }
    }

    /// 412: the resource changed since the version in If-Match.
    pub fn stale() -> Self {
        Self::status(StatusCode::PRECONDITION_FAILED, "the user changed since the version in If-Match; read it again")
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let refusal = e.refusal();
        let status = refusal.status();
        let detail = refusal.message();
        e.log_internal();
        Self { status, scim_type: None, detail }
    }
}

impl From<store::Error> for ScimError {
    fn from(e: store::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = serde_json::Value::from(<&'static str>::from(t));
        }
        let mut res = (self.status, super::scim_json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}
