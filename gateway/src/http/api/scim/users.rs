//! The SCIM `Users` endpoints (RFC 7644 §3.3–§3.6): create, read, list with filters and pages,
//! replace, patch, delete (= deprovision). A provisioner sees only the users of its clinics: a user
//! of another clinic is "not found" to it (the refusal audited), and it cannot create one there.
//! Test accounts (docs/design.md §3.10) are the operator's and never shown.
//!
//! Every write is one transaction with its audit rows, checked against the version read: an
//! `If-Match` that is not the stored version, or a concurrent write in between, gets 412 and
//! nothing changes. What bodies mean is `input.rs`; how users look, `resource.rs`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::{ScimError, ScimType};
use super::filter::{self, Term};
use super::input::{Draft, conflict, invalid, operations};
use super::resource::{Projection, etag, resource, user_response};
use super::schema::{LIST_SCHEMA, MAX_RESULTS};
use super::{Provisioner, ScimResult, base_url, json_object, scim_json};
use crate::http::AppState;
use crate::store::{self, AuditEvent, ScimQuery, ScimUser, ScimWrite};

/// Attempts of a read-modify-write without If-Match before a concurrent writer wins for good.
const ATTEMPTS: usize = 3;

// ---- If-Match -----------------------------------------------------------------------------------

/// The versions an `If-Match` header accepts: `None` without one (or `*`), else the list
/// (`W/"3"` or `"3"`; an entity tag that is not one of ours matches nothing).
fn if_match(headers: &HeaderMap) -> Option<Vec<Option<i64>>> {
    let value = headers.get(header::IF_MATCH)?.to_str().unwrap_or("");
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(|t| {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|v| v.parse().ok())
            })
            .collect(),
    )
}

fn precondition(headers: &HeaderMap, u: &ScimUser) -> ScimResult<bool> {
    match if_match(headers) {
        None => Ok(false),
        Some(tags) if tags.contains(&Some(u.version)) => Ok(true),
        Some(_) => Err(ScimError::stale()),
    }
}

// ---- handlers -----------------------------------------------------------------------------------

/// The user `id` as `caller` may see it: in one of its clinics, not deprovisioned, not a test
/// account. Anything else is 404; a user of another clinic is audited as a refusal too.
async fn visible(state: &AppState, caller: &Provisioner, id: &str) -> ScimResult<ScimUser> {
    let u = match state.store.scim_user(id).await {
        Ok(u) => u,
        Err(store::Error::NotFound) => return Err(ScimError::not_found(id)),
        Err(e) => return Err(e.into()),
    };
    if !caller.serves(&u.clinic_id) {
        caller.refused_clinic(state, &u.clinic_id, Some(&u.id)).await?;
        return Err(ScimError::not_found(id));
    }
    if u.deprovisioned_at.is_some() || u.test_account {
        return Err(ScimError::not_found(id));
    }
    Ok(u)
}

/// `POST /Users`.
pub(super) async fn create(State(state): State<AppState>, caller: Provisioner, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let mut draft = Draft::default();
    draft.set_all(json_object(&headers, &body)?)?;
    let checked = draft.check()?;
    if !caller.serves(&checked.clinic) {
        caller.refused_clinic(&state, &checked.clinic, None).await?;
        return Err(ScimError::status(StatusCode::FORBIDDEN, format!("this provisioner does not serve clinic {}", checked.clinic)));
    }
    // Without a password from the EMR the account gets one nobody knows: it cannot sign in with
    // a password until one is set (through SCIM or `gateway admin user set-password`).
    let hash = match checked.password_hash(&state).await? {
        Some(h) => h,
        None => state.passwords.hash(crate::admin::generate_password()).await.map_err(|e| ScimError::from(crate::http::ApiError::from(anyhow::Error::from(e))))?,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let event = AuditEvent::ScimUserCreated {
        clinic_id: checked.clinic.clone(),
        user_id: id.clone(),
        client_id: caller.0.client.id.clone(),
        fingerprint: caller.fingerprint(),
        password_set: checked.password.is_some(),
    };
    let fields = checked.fields(Some(&hash));
    let user = state.store.scim_create_user(&id, &checked.clinic, &fields, event, state.clock.unix()).await.map_err(conflict)?;
    tracing::info!(principal.id = %user.id, clinic.id = %user.clinic_id, "SCIM user created");
    Ok(user_response(&state, StatusCode::CREATED, &user, None))
}

/// `GET /Users/{id}`; `If-None-Match` with the current version answers 304.
pub(super) async fn read(
    State(state): State<AppState>,
    caller: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ScimResult<Response> {
    let u = visible(&state, &caller, &id).await?;
    let none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).unwrap_or("");
    if none_match.split(',').any(|t| t.trim() == etag(u.version) || t.trim() == format!("\"{}\"", u.version)) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let projection = Projection::from_params(param(&params, "attributes"), param(&params, "excludedAttributes"));
    Ok(user_response(&state, StatusCode::OK, &u, Some(&projection)))
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A list request: from the query (`GET /Users`) or a body (`POST /Users/.search`).
struct ListRequest {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    projection: Projection,
}

fn number(name: &str, v: Option<&str>) -> ScimResult<Option<i64>> {
    v.map(|s| s.trim().parse::<i64>().map_err(|_| invalid(format!("{name} must be an integer")))).transpose()
}

/// `GET /Users`: filtered (`filter.rs`), oldest first, in pages of at most [`MAX_RESULTS`].
pub(super) async fn list(State(state): State<AppState>, caller: Provisioner, Query(params): Query<HashMap<String, String>>) -> ScimResult<Response> {
    let request = ListRequest {
        filter: param(&params, "filter").map(str::to_owned),
        start_index: number("startIndex", param(&params, "startIndex"))?,
        count: number("count", param(&params, "count"))?,
        projection: Projection::from_params(param(&params, "attributes"), param(&params, "excludedAttributes")),
    };
    list_users(&state, &caller, request).await
}

/// `POST /Users/.search` (RFC 7644 §3.4.3): the same as `GET /Users`, the parameters in a body.
pub(super) async fn search(State(state): State<AppState>, caller: Provisioner, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let body = json_object(&headers, &body)?;
    let mut request = ListRequest { filter: None, start_index: None, count: None, projection: Projection::from_params(None, None) };
    let mut attributes = None;
    let mut excluded = None;
    let text = |k: &str, v: &Value| v.as_str().map(str::to_owned).ok_or_else(|| invalid(format!("{k} must be a string")));
    let list = |k: &str, v: &Value| match v {
        Value::Array(a) => a.iter().map(|s| text(k, s)).collect::<ScimResult<Vec<_>>>().map(|v| v.join(",")),
        _ => Err(invalid(format!("{k} must be a list of strings"))),
    };
    for (k, v) in &body {
        match k.to_ascii_lowercase().as_str() {
            "schemas" => {
                if v.as_array().is_none_or(|a| !a.iter().any(|s| s == "urn:ietf:params:scim:api:messages:2.0:SearchRequest")) {
                    return Err(ScimError::bad(ScimType::InvalidSyntax, "schemas must list urn:ietf:params:scim:api:messages:2.0:SearchRequest"));
                }
            }
            "filter" => request.filter = Some(text(k, v)?),
            "startindex" => request.start_index = Some(v.as_i64().ok_or_else(|| invalid("startIndex must be an integer"))?),
            "count" => request.count = Some(v.as_i64().ok_or_else(|| invalid("count must be an integer"))?),
            "attributes" => attributes = Some(list(k, v)?),
            "excludedattributes" => excluded = Some(list(k, v)?),
            "sortby" | "sortorder" => {}
            _ => return Err(ScimError::bad(ScimType::InvalidSyntax, format!("unknown search parameter {k}"))),
        }
    }
    request.projection = Projection::from_params(attributes.as_deref(), excluded.as_deref());
    list_users(&state, &caller, request).await
}

/// Narrows `slot` to `value`; true if it already held another value.
fn narrow<T: PartialEq>(slot: &mut Option<T>, value: T) -> bool {
    match slot {
        Some(old) => *old != value,
        None => {
            *slot = Some(value);
            false
        }
    }
}

async fn list_users(state: &AppState, caller: &Provisioner, request: ListRequest) -> ScimResult<Response> {
    let filter = match &request.filter {
        Some(f) => filter::parse(f).map_err(|why| ScimError::bad(ScimType::InvalidFilter, why))?,
        None => filter::Filter::default(),
    };
    // RFC 7644 §3.4.2.4: a startIndex below 1 is 1; a negative count is 0; more than the maximum
    // is the maximum.
    let start = request.start_index.unwrap_or(1).max(1);
    let count = request.count.unwrap_or(MAX_RESULTS).clamp(0, MAX_RESULTS);
    let mut query = ScimQuery { client_id: &caller.0.client.id, login_folded: None, external_id: None, enabled: None, offset: start - 1, limit: count };
    // Two different values for one attribute match nothing.
    let mut contradiction = false;
    let mut external = None;
    for term in filter.terms {
        let clash = match term {
            Term::UserName(v) => narrow(&mut query.login_folded, crate::login_id::fold(&v)),
            Term::ExternalId(v) => narrow(&mut external, v),
            Term::Active(b) => narrow(&mut query.enabled, b),
        };
        contradiction |= clash;
    }
    query.external_id = external.as_deref();
    let (total, users) = if contradiction { (0, Vec::new()) } else { state.store.scim_users(&query).await? };
    let base = base_url(state);
    let resources: Vec<Value> = users.iter().map(|u| request.projection.apply(resource(&base, u))).collect();
    Ok(scim_json(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start,
        "Resources": resources,
    })))
}

/// `PUT /Users/{id}`: replaces every attribute (a password only if one is given; the clinic
/// cannot change).
pub(super) async fn replace(
    State(state): State<AppState>,
    caller: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let body = json_object(&headers, &body)?;
    write(&state, &caller, &id, &headers, |u| {
        let mut draft = Draft::in_clinic(&u.clinic_id);
        draft.set_all(body.clone())?;
        Ok(draft)
    })
    .await
}

/// `PATCH /Users/{id}` (RFC 7644 §3.5.2): `add`, `replace`, `remove` on the attributes the schema
/// lists, applied to the stored user and then checked as a whole, so a patch that leaves the user
/// invalid changes nothing.
pub(super) async fn patch(
    State(state): State<AppState>,
    caller: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let ops = operations(json_object(&headers, &body)?)?;
    write(&state, &caller, &id, &headers, |u| {
        let mut draft = Draft::of(u);
        for op in &ops {
            op.apply(&mut draft)?;
        }
        Ok(draft)
    })
    .await
}

/// A replace or a patch: reads the user, builds and checks its new state, and writes it if the
/// version is still the one read (or the one in If-Match). Without If-Match a concurrent write in
/// between is retried from a fresh read; with it, it is 412.
async fn write(
    state: &AppState,
    caller: &Provisioner,
    id: &str,
    headers: &HeaderMap,
    build: impl Fn(&ScimUser) -> ScimResult<Draft>,
) -> ScimResult<Response> {
    for _ in 0..ATTEMPTS {
        let u = visible(state, caller, id).await?;
        let conditional = precondition(headers, &u)?;
        let checked = build(&u)?.check()?;
        if checked.clinic != u.clinic_id {
            return Err(ScimError::bad(ScimType::Mutability, "a user's clinic cannot change"));
        }
        let hash = checked.password_hash(state).await?;
        let changed = checked.changed(&u);
        let (client_id, fingerprint) = (caller.0.client.id.clone(), caller.fingerprint());
        let (clinic_id, user_id) = (u.clinic_id.clone(), u.id.clone());
        let event = move |browser_sessions_ended, signing_sessions_ended| AuditEvent::ScimUserChanged {
            clinic_id,
            user_id,
            client_id,
            fingerprint,
            changed,
            browser_sessions_ended,
            signing_sessions_ended,
        };
        let fields = checked.fields(hash.as_deref());
        match state.store.scim_replace_user(&u, &fields, event, state.clock.unix()).await.map_err(conflict)? {
            ScimWrite::Done { user, .. } => return Ok(user_response(state, StatusCode::OK, &user, None)),
            ScimWrite::Stale if conditional => return Err(ScimError::stale()),
            ScimWrite::Stale => continue,
        }
    }
    Err(ScimError::status(StatusCode::CONFLICT, "the user kept changing meanwhile; try again"))
}

/// `DELETE /Users/{id}`: deprovisions (docs/design.md §3.16): the user is disabled for good and
/// its browser and signing sessions end at once; the account stays for the audit log, and SCIM
/// answers 404 for it from then on.
pub(super) async fn delete(State(state): State<AppState>, caller: Provisioner, Path(id): Path<String>, headers: HeaderMap) -> ScimResult<Response> {
    for _ in 0..ATTEMPTS {
        let u = visible(&state, &caller, &id).await?;
        let conditional = precondition(&headers, &u)?;
        let (client_id, fingerprint) = (caller.0.client.id.clone(), caller.fingerprint());
        let (clinic_id, user_id) = (u.clinic_id.clone(), u.id.clone());
        let event = move |browser_sessions_ended, signing_sessions_ended| AuditEvent::ScimUserDeprovisioned {
            clinic_id,
            user_id,
            client_id,
            fingerprint,
            browser_sessions_ended,
            signing_sessions_ended,
        };
        match state.store.scim_deprovision_user(&u, event, state.clock.unix()).await? {
            ScimWrite::Done { .. } => {
                tracing::info!(principal.id = %u.id, clinic.id = %u.clinic_id, "SCIM user deprovisioned");
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            ScimWrite::Stale if conditional => return Err(ScimError::stale()),
            ScimWrite::Stale => continue,
        }
    }
    Err(ScimError::status(StatusCode::CONFLICT, "the user kept changing meanwhile; try again"))
}
