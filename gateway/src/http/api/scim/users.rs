//! The SCIM `Users` endpoints (RFC 7644 §3.3–§3.6): create, read, list with filters and pages,
//! replace, patch, delete (= deprovision). A provisioner sees only the users of its clinics: a user
//! of another clinic is "not found" to it (the refusal audited), and it cannot create one there.
//! Test accounts (docs/design.md §3.10) are the operator's and never shown.
//!
//! Every write is one transaction with its audit rows, checked against the version read: an
//! `If-Match` that is not the stored version, or a concurrent write in between, gets 412 and
//! nothing changes.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::errors::{ScimError, ScimType};
use super::filter::{self, Term};
use super::schema::{EXTENSION_SCHEMA, LIST_SCHEMA, MAX_RESULTS, PATCH_SCHEMA, USER_SCHEMA};
use super::{Provisioner, ScimResult, base_url, embedded_password_step, json_object, scim_json};
use crate::http::AppState;
use crate::store::{self, AuditEvent, ScimFields, ScimQuery, ScimUser, ScimWrite, UserKind};

/// Most operations one PATCH may carry.
const MAX_OPERATIONS: usize = 100;
/// Longest name, external id and 医籍番号 accepted (characters).
const MAX_TEXT: usize = 256;
/// Attempts of a read-modify-write without If-Match before a concurrent writer wins for good.
const ATTEMPTS: usize = 3;

// ---- representation ----------------------------------------------------------------------------

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The SCIM resource of `u`.
fn resource(base: &str, u: &ScimUser) -> Value {
    let mut ext = json!({ "clinic": u.clinic_id, "userKind": u.kind.as_str() });
    if let Some(n) = &u.medical_reg_no {
        ext["medicalRegistrationNumber"] = json!(n);
    }
    let mut r = json!({
        "schemas": [USER_SCHEMA, EXTENSION_SCHEMA],
        "id": u.id,
        "userName": u.login_id,
        "displayName": u.name,
        "active": u.enabled,
        (EXTENSION_SCHEMA): ext,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(u.created_at),
            "lastModified": rfc3339(u.updated_at),
            "location": format!("{base}/Users/{}", u.id),
            "version": etag(u.version),
        },
    });
    if let Some(e) = &u.external_id {
        r["externalId"] = json!(e);
    }
    r
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) on top-level attributes and the
/// extension's: `id`, `schemas` and `meta` are always returned.
struct Projection {
    attributes: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl Projection {
    fn from_params(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |s: &str| s.split(',').map(|a| normalise_path(a.trim())).filter(|a| !a.is_empty()).collect::<Vec<_>>();
        Self { attributes: attributes.map(split), excluded: excluded.map(split).unwrap_or_default() }
    }

    fn apply(&self, mut r: Value) -> Value {
        let Some(obj) = r.as_object_mut() else { return r };
        let ext_prefix = format!("{}:", EXTENSION_SCHEMA.to_ascii_lowercase());
        let keep = |name: &str| {
            let lower = name.to_ascii_lowercase();
            let listed = |list: &[String]| list.iter().any(|a| *a == lower || a.starts_with(&format!("{lower}.")));
            if matches!(lower.as_str(), "id" | "schemas" | "meta") {
                return true;
            }
            match &self.attributes {
                Some(list) => listed(list) || (lower == EXTENSION_SCHEMA.to_ascii_lowercase() && list.iter().any(|a| a.starts_with(&ext_prefix))),
                None => !self.excluded.contains(&lower),
            }
        };
        obj.retain(|k, _| keep(k));
        if let Some(Value::Object(ext)) = obj.get_mut(EXTENSION_SCHEMA) {
            let full = |k: &str| format!("{ext_prefix}{}", k.to_ascii_lowercase());
            match &self.attributes {
                Some(list) if !list.contains(&EXTENSION_SCHEMA.to_ascii_lowercase()) => ext.retain(|k, _| list.contains(&full(k))),
                _ => ext.retain(|k, _| !self.excluded.contains(&full(k))),
            }
        }
        r
    }
}

/// A path lower-cased, without the core schema's URN.
fn normalise_path(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let core = format!("{}:", USER_SCHEMA.to_ascii_lowercase());
    lower.strip_prefix(&core).map(str::to_owned).unwrap_or(lower)
}

fn user_response(state: &AppState, status: StatusCode, u: &ScimUser, projection: Option<&Projection>) -> Response {
    let base = base_url(state);
    let mut body = resource(&base, u);
    if let Some(p) = projection {
        body = p.apply(body);
    }
    let mut res = (status, scim_json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(u.version)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", u.id)) {
            res.headers_mut().insert(header::LOCATION, v);
        }
    }
    res
}

// ---- input --------------------------------------------------------------------------------------

/// What a request makes of a user, before it is checked: a create starts empty, a replace from
/// the clinic alone, a patch from the stored user.
#[derive(Default)]
struct Draft {
    login_id: Option<String>,
    display_name: Option<String>,
    /// `displayName` was given in this request: `name` does not override it.
    display_explicit: bool,
    external_id: Option<String>,
    active: Option<bool>,
    clinic: Option<String>,
    kind: Option<String>,
    medical_reg_no: Option<String>,
    password: Option<Zeroizing<String>>,
}

impl Draft {
    fn of(u: &ScimUser) -> Self {
        Self {
            login_id: Some(u.login_id.clone()),
            display_name: Some(u.name.clone()),
            display_explicit: false,
            external_id: u.external_id.clone(),
            active: Some(u.enabled),
            clinic: Some(u.clinic_id.clone()),
            kind: Some(u.kind.as_str().to_owned()),
            medical_reg_no: u.medical_reg_no.clone(),
            password: None,
        }
    }
}

/// An attribute the gateway keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    UserName,
    DisplayName,
    /// `name`, or one of its sub-attributes.
    Name(Option<NamePart>),
    ExternalId,
    Active,
    Password,
    Clinic,
    Kind,
    MedicalRegNo,
    /// The extension as a whole.
    Extension,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamePart {
    Formatted,
    Family,
    Given,
}

/// Read-only attributes a client may send back; ignored (RFC 7644 §3.5.1).
fn ignored(path: &str) -> bool {
    matches!(path, "id" | "meta" | "schemas")
}

/// The attribute `path` names (case-insensitive, with or without its schema URN).
fn attr_of(path: &str) -> Option<Attr> {
    let p = normalise_path(path);
    let ext = EXTENSION_SCHEMA.to_ascii_lowercase();
    if p == ext {
        return Some(Attr::Extension);
    }
    if let Some(sub) = p.strip_prefix(&format!("{ext}:")) {
        return match sub {
            "clinic" => Some(Attr::Clinic),
            "userkind" => Some(Attr::Kind),
            "medicalregistrationnumber" => Some(Attr::MedicalRegNo),
            _ => None,
        };
    }
    Some(match p.as_str() {
        "username" => Attr::UserName,
        "displayname" => Attr::DisplayName,
        "name" => Attr::Name(None),
        "name.formatted" => Attr::Name(Some(NamePart::Formatted)),
        "name.familyname" => Attr::Name(Some(NamePart::Family)),
        "name.givenname" => Attr::Name(Some(NamePart::Given)),
        "externalid" => Attr::ExternalId,
        "active" => Attr::Active,
        "password" => Attr::Password,
        _ => return None,
    })
}

fn string(name: &str, v: Value) -> ScimResult<String> {
    match v {
        Value::String(s) if s.chars().count() <= MAX_TEXT => Ok(s),
        Value::String(_) => Err(ScimError::bad(ScimType::InvalidValue, format!("{name} is at most {MAX_TEXT} characters"))),
        _ => Err(ScimError::bad(ScimType::InvalidValue, format!("{name} must be a string"))),
    }
}

/// `null` clears a value (RFC 7644 §3.5.1 treats it as unassigned).
fn optional_string(name: &str, v: Value) -> ScimResult<Option<String>> {
    if v.is_null() { Ok(None) } else { string(name, v).map(Some) }
}

/// `active` as a boolean; some clients send `"True"`/`"False"` strings, accepted too.
fn boolean(v: &Value) -> ScimResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(ScimType::InvalidValue, "active must be true or false")),
    }
}

impl Draft {
    /// Sets (add, replace) `attr` to `v`.
    fn set(&mut self, attr: Attr, v: Value) -> ScimResult<()> {
        match attr {
            Attr::UserName => self.login_id = optional_string("userName", v)?,
            Attr::DisplayName => {
                self.display_name = optional_string("displayName", v)?;
                self.display_explicit = true;
            }
            Attr::Name(part) => {
                let name = match (part, v) {
                    (None, Value::Object(m)) => name_of(m)?,
                    (None, Value::Null) => None,
                    (None, _) => return Err(ScimError::bad(ScimType::InvalidValue, "name must be an object")),
                    (Some(NamePart::Formatted), v) => optional_string("name.formatted", v)?,
                    (Some(_), v) => {
                        // A family or given name alone: kept as the whole name only if nothing better was given.
                        optional_string("name", v)?
                    }
                };
                if !self.display_explicit && name.is_some() {
                    self.display_name = name;
                }
            }
            Attr::ExternalId => self.external_id = optional_string("externalId", v)?,
            Attr::Active => self.active = if v.is_null() { None } else { Some(boolean(&v)?) },
            Attr::Password => {
                self.password = match v {
                    Value::String(s) => Some(Zeroizing::new(s)),
                    _ => return Err(ScimError::bad(ScimType::InvalidValue, "password must be a string")),
                }
            }
            Attr::Clinic => self.clinic = optional_string("clinic", v)?,
            Attr::Kind => self.kind = optional_string("userKind", v)?,
            Attr::MedicalRegNo => self.medical_reg_no = optional_string("medicalRegistrationNumber", v)?,
            Attr::Extension => match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        let sub = attr_of(&format!("{EXTENSION_SCHEMA}:{k}"))
                            .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, format!("unknown attribute {k} of {EXTENSION_SCHEMA}")))?;
                        self.set(sub, v)?;
                    }
                }
                _ => return Err(ScimError::bad(ScimType::InvalidValue, format!("{EXTENSION_SCHEMA} must be an object"))),
            },
        }
        Ok(())
    }

    /// Removes `attr` (PATCH `remove`). Required attributes removed are refused when checked.
    fn remove(&mut self, attr: Attr) -> ScimResult<()> {
        match attr {
            Attr::UserName => self.login_id = None,
            Attr::DisplayName | Attr::Name(_) => self.display_name = None,
            Attr::ExternalId => self.external_id = None,
            Attr::Active => self.active = None,
            Attr::Password => return Err(ScimError::bad(ScimType::Mutability, "a password cannot be removed, only replaced")),
            Attr::Clinic | Attr::Extension => return Err(ScimError::bad(ScimType::Mutability, "the clinic cannot be removed")),
            Attr::Kind => self.kind = None,
            Attr::MedicalRegNo => self.medical_reg_no = None,
        }
        Ok(())
    }

    /// Sets every attribute of a resource body (POST, PUT). Unknown attributes are refused:
    /// the gateway keeps only what its schema lists, and drops nothing silently.
    fn set_all(&mut self, body: Map<String, Value>) -> ScimResult<()> {
        check_schemas(&body)?;
        for (k, v) in body {
            if ignored(&k.to_ascii_lowercase()) {
                continue;
            }
            let a = attr_of(&k).ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, format!("unknown attribute {k}")))?;
            self.set(a, v)?;
        }
        Ok(())
    }
}

/// A whole name from `name`'s sub-attributes: `formatted`, or family then given name (the
/// Japanese order).
fn name_of(m: Map<String, Value>) -> ScimResult<Option<String>> {
    let mut formatted = None;
    let mut family = None;
    let mut given = None;
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "formatted" => formatted = optional_string("name.formatted", v)?,
            "familyname" => family = optional_string("name.familyName", v)?,
            "givenname" => given = optional_string("name.givenName", v)?,
            _ => return Err(ScimError::bad(ScimType::InvalidSyntax, format!("name.{k} is not supported"))),
        }
    }
    let joined = [family, given].into_iter().flatten().collect::<Vec<_>>().join(" ");
    Ok(formatted.or((!joined.is_empty()).then_some(joined)))
}

/// `schemas` must name the User schema, and may name the extension, nothing else.
fn check_schemas(body: &Map<String, Value>) -> ScimResult<()> {
    let schemas = body.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")).map(|(_, v)| v);
    let Some(Value::Array(list)) = schemas else {
        return Err(ScimError::bad(ScimType::InvalidSyntax, format!("schemas must list {USER_SCHEMA}")));
    };
    let mut core = false;
    for s in list {
        match s.as_str() {
            Some(USER_SCHEMA) => core = true,
            Some(EXTENSION_SCHEMA) => {}
            _ => return Err(ScimError::bad(ScimType::InvalidSyntax, format!("schema {s} is not supported"))),
        }
    }
    if !core {
        return Err(ScimError::bad(ScimType::InvalidSyntax, format!("schemas must list {USER_SCHEMA}")));
    }
    Ok(())
}

/// A draft checked: what to store, and the password to hash (if one was given).
struct Checked {
    login_id: String,
    kind: UserKind,
    name: String,
    medical_reg_no: Option<String>,
    external_id: Option<String>,
    enabled: bool,
    clinic: String,
    password: Option<Zeroizing<String>>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

impl Draft {
    /// The rules `gateway admin user add` applies, as SCIM errors.
    fn check(self) -> ScimResult<Checked> {
        let login_id = self.login_id.ok_or_else(|| invalid("userName is required"))?;
        crate::admin::validate_login_id(&login_id).map_err(|e| invalid(e.to_string()))?;
        let clinic = self.clinic.ok_or_else(|| invalid(format!("{EXTENSION_SCHEMA}:clinic is required")))?;
        let kind: UserKind = self
            .kind
            .ok_or_else(|| invalid(format!("{EXTENSION_SCHEMA}:userKind is required (doctor or staff)")))?
            .parse()
            .map_err(|_| invalid("userKind is doctor or staff"))?;
        let name = self.display_name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).unwrap_or_else(|| login_id.clone());
        let medical_reg_no = self.medical_reg_no;
        match (kind, &medical_reg_no) {
            (UserKind::Doctor, None) => return Err(invalid("a doctor needs medicalRegistrationNumber (医籍番号)")),
            (UserKind::Doctor, Some(n)) if n.is_empty() || n.len() > 16 || !n.chars().all(|c| c.is_ascii_digit()) => {
                return Err(invalid("medicalRegistrationNumber (医籍番号) is 1–16 digits"));
            }
            (UserKind::Staff, Some(_)) => return Err(invalid("only doctors have a medicalRegistrationNumber")),
            _ => {}
        }
        if self.external_id.as_deref() == Some("") {
            return Err(invalid("externalId must not be empty"));
        }
        Ok(Checked {
            login_id,
            kind,
            name,
            medical_reg_no,
            external_id: self.external_id,
            enabled: self.active.unwrap_or(true),
            clinic,
            password: self.password,
        })
    }
}

impl Checked {
    /// The argon2id hash of the password given, after the clinic's login mode and the strength
    /// rule allowed it. Never logged or audited.
    async fn password_hash(&self, state: &AppState) -> ScimResult<Option<String>> {
        let Some(password) = &self.password else { return Ok(None) };
        if !embedded_password_step(state, &self.clinic).await? {
            return Err(ScimError::bad(
                ScimType::Mutability,
                "this clinic's users sign in at the EMR's identity provider: the gateway keeps no password for them",
            ));
        }
        let clinic = state.store.clinic(&self.clinic).await?;
        let personal = [Some(self.login_id.as_str()), Some(self.name.as_str()), self.medical_reg_no.as_deref(), Some(clinic.name.as_str())];
        if let Some(w) = crate::password::weakness(password, &personal.into_iter().flatten().collect::<Vec<_>>()) {
            return Err(invalid(w.reason()));
        }
        let hash = state.passwords.hash(password.clone()).await.map_err(|e| ScimError::from(crate::http::ApiError::from(anyhow::Error::from(e))))?;
        Ok(Some(hash))
    }

    fn fields<'a>(&'a self, hash: Option<&'a str>) -> ScimFields<'a> {
        ScimFields {
            login_id: &self.login_id,
            kind: self.kind,
            name: &self.name,
            medical_reg_no: self.medical_reg_no.as_deref(),
            external_id: self.external_id.as_deref(),
            enabled: self.enabled,
            password_hash: hash,
        }
    }

    /// The SCIM attributes this changes on `u`.
    fn changed(&self, u: &ScimUser) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |differs: bool, name| {
            if differs {
                out.push(name);
            }
        };
        note(self.login_id != u.login_id, "userName");
        note(self.name != u.name, "displayName");
        note(self.external_id != u.external_id, "externalId");
        note(self.enabled != u.enabled, "active");
        note(self.kind != u.kind, "userKind");
        note(self.medical_reg_no != u.medical_reg_no, "medicalRegistrationNumber");
        note(self.password.is_some(), "password");
        out
    }
}

fn conflict(e: store::Error) -> ScimError {
    match e {
        store::Error::Conflict(what) if matches!(what.as_str(), "userName" | "externalId" | "medicalRegistrationNumber") => {
            ScimError::taken(&what)
        }
        // A unique index caught what the check before it could not (PostgreSQL, a concurrent write).
        store::Error::Conflict(_) => ScimError::taken("userName, externalId or medicalRegistrationNumber"),
        e => e.into(),
    }
}

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
    tracing::info!(user.id = %user.id, clinic.id = %user.clinic_id, "SCIM user created");
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
    let resources: Vec<Value> = users.iter().filter(|u| !u.test_account).map(|u| request.projection.apply(resource(&base, u))).collect();
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
        let mut draft = Draft { clinic: Some(u.clinic_id.clone()), ..Draft::default() };
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

/// One PATCH operation.
struct Operation {
    op: Op,
    path: Option<String>,
    value: Option<Value>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

fn operations(body: Map<String, Value>) -> ScimResult<Vec<Operation>> {
    let mut schemas_ok = false;
    let mut ops = None;
    for (k, v) in body {
        match k.to_ascii_lowercase().as_str() {
            "schemas" => schemas_ok = v.as_array().is_some_and(|a| a.len() == 1 && a[0] == PATCH_SCHEMA),
            "operations" => ops = Some(v),
            _ => return Err(ScimError::bad(ScimType::InvalidSyntax, format!("unknown member {k} of a PatchOp"))),
        }
    }
    if !schemas_ok {
        return Err(ScimError::bad(ScimType::InvalidSyntax, format!("schemas must be [\"{PATCH_SCHEMA}\"]")));
    }
    let Some(Value::Array(list)) = ops else {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "Operations must be a list"));
    };
    if list.is_empty() || list.len() > MAX_OPERATIONS {
        return Err(invalid(format!("a PATCH carries 1–{MAX_OPERATIONS} operations")));
    }
    list.into_iter()
        .map(|o| {
            let Value::Object(o) = o else { return Err(ScimError::bad(ScimType::InvalidSyntax, "an operation is an object")) };
            let mut op = None;
            let mut path = None;
            let mut value = None;
            for (k, v) in o {
                match k.to_ascii_lowercase().as_str() {
                    "op" => {
                        op = Some(match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                            Some("add") => Op::Add,
                            Some("replace") => Op::Replace,
                            Some("remove") => Op::Remove,
                            _ => return Err(ScimError::bad(ScimType::InvalidSyntax, "op is add, replace or remove")),
                        })
                    }
                    "path" => path = Some(v.as_str().map(str::to_owned).ok_or_else(|| ScimError::bad(ScimType::InvalidPath, "path must be a string"))?),
                    "value" => value = Some(v),
                    _ => return Err(ScimError::bad(ScimType::InvalidSyntax, format!("unknown member {k} of an operation"))),
                }
            }
            let op = op.ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "an operation needs op"))?;
            Ok(Operation { op, path, value })
        })
        .collect()
}

impl Operation {
    fn apply(&self, draft: &mut Draft) -> ScimResult<()> {
        let target = match &self.path {
            Some(p) => {
                if p.contains('[') {
                    return Err(ScimError::bad(ScimType::InvalidPath, "value filters in paths are not supported (no multi-valued attributes)"));
                }
                Some(attr_of(p).ok_or_else(|| ScimError::bad(ScimType::NoTarget, format!("no attribute {p}")))?)
            }
            None => None,
        };
        match (self.op, target, &self.value) {
            (Op::Remove, None, _) => Err(ScimError::bad(ScimType::NoTarget, "remove needs a path")),
            (Op::Remove, Some(a), _) => draft.remove(a),
            (_, _, None) => Err(invalid("add and replace need a value")),
            (_, Some(a), Some(v)) => draft.set(a, v.clone()),
            (_, None, Some(Value::Object(m))) => {
                for (k, v) in m {
                    if ignored(&k.to_ascii_lowercase()) {
                        continue;
                    }
                    let a = attr_of(k).ok_or_else(|| ScimError::bad(ScimType::NoTarget, format!("no attribute {k}")))?;
                    draft.set(a, v.clone())?;
                }
                Ok(())
            }
            (_, None, Some(_)) => Err(invalid("without a path, the value is an object of attributes")),
        }
    }
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
                tracing::info!(user.id = %u.id, clinic.id = %u.clinic_id, "SCIM user deprovisioned");
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            ScimWrite::Stale if conditional => return Err(ScimError::stale()),
            ScimWrite::Stale => continue,
        }
    }
    Err(ScimError::status(StatusCode::CONFLICT, "the user kept changing meanwhile; try again"))
}
