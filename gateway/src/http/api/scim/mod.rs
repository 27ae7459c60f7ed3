//! SCIM 2.0 provisioning of users by the EMR (RFC 7643, RFC 7644; docs/design.md §3.16) under
//! `/scim/v2`, on the main mTLS listener, for service clients of role `provisioner` limited to
//! their clinics.
//!
//! `errors.rs` answers RFC 7644 §3.12 errors, `filter.rs` parses the supported filters,
//! `schema.rs` holds the discovery documents, `users.rs` the `Users` endpoints, `input.rs` what
//! request bodies mean and `resource.rs` how a user looks.

mod errors;
mod filter;
mod input;
mod resource;
mod schema;
mod users;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;

pub use errors::{ScimError, ScimType};

use super::super::AppState;
use super::ServiceAuth;
use crate::store::ServiceRole;

/// SCIM's media type (RFC 7644 §3.1); `application/json` is accepted in requests too.
pub const MEDIA_TYPE: &str = "application/scim+json";

type ScimResult<T> = Result<T, ScimError>;

pub(crate) fn router() -> Router<AppState> {
    let not_allowed = || any(method_not_allowed);
    Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config).fallback(method_not_allowed))
        .route("/scim/v2/ResourceTypes", get(resource_types).fallback(method_not_allowed))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type).fallback(method_not_allowed))
        .route("/scim/v2/Schemas", get(schemas).fallback(method_not_allowed))
        .route("/scim/v2/Schemas/{id}", get(schema_by_id).fallback(method_not_allowed))
        .route("/scim/v2/Users", get(users::list).post(users::create).fallback(method_not_allowed))
        .route(
            "/scim/v2/Users/{id}",
            get(users::read).put(users::replace).patch(users::patch).delete(users::delete).fallback(method_not_allowed),
        )
        .route("/scim/v2/Users/.search", post(users::search).fallback(method_not_allowed))
        .route("/scim/v2/.search", any(search_all))
        .route("/scim/v2", not_allowed())
        .route("/scim/v2/{*rest}", any(not_found))
}

/// The calling provisioner: a registered, enabled service client of role `provisioner`. Every
/// other caller is refused (and the refusal audited) before a handler runs.
pub struct Provisioner(pub ServiceAuth);

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let auth = ServiceAuth::from_request_parts(parts, state).await?;
        auth.require(state, ServiceRole::Provisioner).await?;
        Ok(Self(auth))
    }
}

impl Provisioner {
    fn serves(&self, clinic_id: &str) -> bool {
        self.0.serves(clinic_id)
    }

    /// Audits that the caller asked about a clinic it does not serve (the answer is the caller's).
    async fn refused_clinic(&self, state: &AppState, clinic_id: &str, user_id: Option<&str>) -> ScimResult<()> {
        let mut refusal = self.0.clinic_refusal(clinic_id);
        if let Some(user_id) = user_id {
            refusal = self.0.session_refusal(clinic_id, user_id);
        }
        Ok(refusal.record(state, "clinic_not_allowed").await?)
    }

    fn fingerprint(&self) -> String {
        self.0.fingerprint().to_owned()
    }
}

/// Whether `clinic_id` signs its users in with the gateway's embedded password step, so a
/// password set through SCIM is one its users can use. A clinic whose users sign in at the EMR's
/// provider (docs/design.md §3.17) keeps no passwords here, and SCIM refuses one.
pub(crate) async fn embedded_password_step(state: &AppState, clinic_id: &str) -> ScimResult<bool> {
    Ok(state.store.clinic_login(clinic_id).await?.is_none())
}

/// The absolute base of the SCIM endpoints, for `meta.location`.
fn base_url(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.public_origin())
}

/// A SCIM JSON body with SCIM's media type.
pub(crate) fn scim_json(body: Value) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))], body.to_string()).into_response()
}

/// Refuses a request body that says it is something other than JSON (`application/scim+json`
/// or `application/json`, RFC 7644 §3.1). A body without a Content-Type is read as JSON.
fn check_content_type(headers: &HeaderMap) -> ScimResult<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == MEDIA_TYPE || essence == "application/json" {
        Ok(())
    } else {
        Err(ScimError::status(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("send {MEDIA_TYPE} or application/json")))
    }
}

/// The request body as a JSON object, or `invalidSyntax`.
fn json_object(headers: &HeaderMap, body: &[u8]) -> ScimResult<serde_json::Map<String, Value>> {
    check_content_type(headers)?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object")),
        Err(e) => Err(ScimError::bad(ScimType::InvalidSyntax, format!("the body is not valid JSON: {e}"))),
    }
}

async fn method_not_allowed() -> ScimError {
    ScimError::status(StatusCode::METHOD_NOT_ALLOWED, "this method is not supported here")
}

/// Searching every resource type at once (RFC 7644 §3.4.3): there is one, `Users/.search`.
async fn search_all(_: Provisioner) -> ScimError {
    ScimError::status(StatusCode::NOT_IMPLEMENTED, "search /Users/.search instead: User is the only resource type")
}

async fn not_found(_: Provisioner) -> ScimError {
    ScimError::status(StatusCode::NOT_FOUND, "no such SCIM endpoint (Bulk, Groups, Me and .search are not supported)")
}

async fn service_provider_config(State(state): State<AppState>, _: Provisioner) -> Response {
    scim_json(schema::service_provider_config(&base_url(&state)))
}

async fn resource_types(State(state): State<AppState>, _: Provisioner) -> Response {
    scim_json(schema::list(vec![schema::user_resource_type(&base_url(&state))]))
}

async fn resource_type(State(state): State<AppState>, _: Provisioner, Path(id): Path<String>) -> ScimResult<Response> {
    if id != "User" {
        return Err(ScimError::status(StatusCode::NOT_FOUND, format!("no resource type {id}")));
    }
    Ok(scim_json(schema::user_resource_type(&base_url(&state))))
}

fn all_schemas(state: &AppState, caller: &Provisioner) -> Vec<Value> {
    let base = base_url(state);
    vec![schema::user_schema(&base), schema::extension_schema(&base, &caller.0.client.clinics)]
}

async fn schemas(State(state): State<AppState>, caller: Provisioner) -> Response {
    scim_json(schema::list(all_schemas(&state, &caller)))
}

async fn schema_by_id(State(state): State<AppState>, caller: Provisioner, Path(id): Path<String>) -> ScimResult<Response> {
    all_schemas(&state, &caller)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(scim_json)
        .ok_or_else(|| ScimError::status(StatusCode::NOT_FOUND, format!("no schema {id}")))
}
