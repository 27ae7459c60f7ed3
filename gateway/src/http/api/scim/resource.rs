//! How a user looks in SCIM (RFC 7643 §4.1 and the gateway's extension), and `attributes` /
//! `excludedAttributes` on it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::schema::{EXTENSION_SCHEMA, USER_SCHEMA};
use super::{base_url, scim_json};
use crate::http::AppState;
use crate::store::ScimUser;

// ---- representation ----------------------------------------------------------------------------

pub(super) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The SCIM resource of `u`.
pub(super) fn resource(base: &str, u: &ScimUser) -> Value {
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
pub(super) struct Projection {
    attributes: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl Projection {
    pub(super) fn from_params(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |s: &str| s.split(',').map(|a| normalise_path(a.trim())).filter(|a| !a.is_empty()).collect::<Vec<_>>();
        Self { attributes: attributes.map(split), excluded: excluded.map(split).unwrap_or_default() }
    }

    pub(super) fn apply(&self, mut r: Value) -> Value {
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
pub(super) fn normalise_path(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let core = format!("{}:", USER_SCHEMA.to_ascii_lowercase());
    lower.strip_prefix(&core).map(str::to_owned).unwrap_or(lower)
}

pub(super) fn user_response(state: &AppState, status: StatusCode, u: &ScimUser, projection: Option<&Projection>) -> Response {
    let base = base_url(state);
    let mut body = resource(&base, u);
    if let Some(p) = projection {
        body = p.apply(body);
    }
    let mut res = (status, scim_json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(u.version)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", u.id))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
