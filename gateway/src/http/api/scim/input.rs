//! What a request body makes of a user: a create's or replace's attributes, a PATCH's operations
//! (RFC 7644 §3.5.2) applied to the stored user, and the checks `gateway admin user add` applies,
//! as SCIM errors. Attributes outside the published schemas are refused, never dropped.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::errors::{ScimError, ScimType};
use super::resource::normalise_path;
use super::schema::{EXTENSION_SCHEMA, PATCH_SCHEMA, USER_SCHEMA};
use super::{ScimResult, embedded_password_step};
use crate::http::AppState;
use crate::store::{self, ScimFields, ScimUser, UserKind};

/// Most operations one PATCH may carry.
const MAX_OPERATIONS: usize = 100;
/// Longest name, external id and 医籍番号 accepted (characters).
const MAX_TEXT: usize = 256;

// ---- input --------------------------------------------------------------------------------------

/// What a request makes of a user, before it is checked: a create starts empty, a replace from
/// the clinic alone, a patch from the stored user.
#[derive(Default)]
pub(super) struct Draft {
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
    /// A replace's start: only the clinic, which cannot change.
    pub(super) fn in_clinic(clinic_id: &str) -> Self {
        Self { clinic: Some(clinic_id.to_owned()), ..Self::default() }
    }

    pub(super) fn of(u: &ScimUser) -> Self {
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
                        // Some clients send the extension's object with its own `schemas`.
                        if ignored(&k.to_ascii_lowercase()) {
                            continue;
                        }
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
    pub(super) fn set_all(&mut self, body: Map<String, Value>) -> ScimResult<()> {
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
pub(super) struct Checked {
    login_id: String,
    kind: UserKind,
    name: String,
    medical_reg_no: Option<String>,
    external_id: Option<String>,
    enabled: bool,
    pub(super) clinic: String,
    pub(super) password: Option<Zeroizing<String>>,
}

pub(super) fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

impl Draft {
    /// The rules `gateway admin user add` applies, as SCIM errors.
    pub(super) fn check(self) -> ScimResult<Checked> {
        let login_id = self.login_id.ok_or_else(|| invalid("userName is required"))?;
        crate::admin::validate_login_id(&login_id).map_err(|e| invalid(e.to_string()))?;
        let clinic = self.clinic.ok_or_else(|| invalid(format!("{EXTENSION_SCHEMA}:clinic is required")))?;
        let kind: UserKind = self
            .kind
            .ok_or_else(|| invalid(format!("{EXTENSION_SCHEMA}:userKind is required (doctor or staff)")))?
            .parse()
            .map_err(|_| invalid("userKind is doctor or staff"))?;
        let name = self
            .display_name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("displayName (or name) is required"))?;
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
    pub(super) async fn password_hash(&self, state: &AppState) -> ScimResult<Option<String>> {
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

    pub(super) fn fields<'a>(&'a self, hash: Option<&'a str>) -> ScimFields<'a> {
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
    pub(super) fn changed(&self, u: &ScimUser) -> Vec<&'static str> {
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

pub(super) fn conflict(e: store::Error) -> ScimError {
    match e {
        store::Error::Conflict(what) if matches!(what.as_str(), "userName" | "externalId" | "medicalRegistrationNumber") => {
            ScimError::taken(&what)
        }
        // A unique index caught what the check before it could not (PostgreSQL, a concurrent write).
        store::Error::Conflict(_) => ScimError::taken("userName, externalId or medicalRegistrationNumber"),
        e => e.into(),
    }
}


/// One PATCH operation.
pub(super) struct Operation {
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

pub(super) fn operations(body: Map<String, Value>) -> ScimResult<Vec<Operation>> {
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
    pub(super) fn apply(&self, draft: &mut Draft) -> ScimResult<()> {
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
