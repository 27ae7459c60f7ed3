//! The SCIM discovery documents (RFC 7644 §4, RFC 7643 §5–§7): ServiceProviderConfig,
//! ResourceTypes and Schemas. The User schema lists only the core attributes the gateway keeps;
//! the extension carries this domain's (docs/design.md §3.16).

use serde_json::{Value, json};

/// The core User schema (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The gateway's User extension: clinic, doctor or staff, 医籍番号.
pub const EXTENSION_SCHEMA: &str = "urn:ninsho:params:scim:schemas:extension:2.0:User";
/// List responses (RFC 7644 §3.4.2).
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH requests (RFC 7644 §3.5.2).
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Most users one page of a list holds (`filter.maxResults`).
pub const MAX_RESULTS: i64 = 200;

fn meta(resource_type: &str, location: &str) -> Value {
    json!({ "resourceType": resource_type, "location": location })
}

/// `/ServiceProviderConfig`: what is supported. Bulk, sort and change-password-by-self are not;
/// PATCH, filtering (the subset of `filter.rs`) and ETags are.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": true },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "TLS client certificate",
            "description": "Mutual TLS: a service client of role provisioner, registered by certificate fingerprint \
                            (gateway admin service-client add --role provisioner)",
            "primary": true
        }],
        "meta": meta("ServiceProviderConfig", &format!("{base}/ServiceProviderConfig")),
    })
}

/// The one resource type, User, with the gateway's extension (required: the clinic is).
pub fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "Doctors and staff of the provisioner's clinics",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{ "schema": EXTENSION_SCHEMA, "required": true }],
        "meta": meta("ResourceType", &format!("{base}/ResourceTypes/User")),
    })
}

#[allow(clippy::too_many_arguments, reason = "one argument per field of RFC 7643 §7's attribute")]
fn attribute(
    name: &str,
    kind: &str,
    required: bool,
    case_exact: bool,
    mutability: &str,
    returned: &str,
    uniqueness: &str,
    description: &str,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    })
}

/// The core User schema as the gateway keeps it: only these attributes are stored; others are
/// refused (`invalidValue`) rather than silently dropped.
pub fn user_schema(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User account",
        "attributes": [
            attribute("userName", "string", true, false, "readWrite", "default", "server",
                "Login ID: unique within the clinic, compared ignoring width and case"),
            attribute("displayName", "string", true, false, "readWrite", "default", "none",
                "The full name, as shown to the doctor (name.formatted, or familyName givenName, is accepted instead)"),
            attribute("active", "boolean", true, false, "readWrite", "default", "none",
                "Whether the user may sign in (true where a create or replace leaves it out)"),
            attribute("password", "string", false, false, "writeOnly", "never", "none",
                "Sets the password, where the clinic signs in with the gateway's own password step"),
        ],
        "meta": meta("Schema", &format!("{base}/Schemas/{USER_SCHEMA}")),
    })
}

/// The extension schema. `clinic` lists the caller's clinics as its canonical values.
pub fn extension_schema(base: &str, clinics: &[String]) -> Value {
    let mut clinic = attribute("clinic", "string", true, true, "immutable", "default", "none",
        "The clinic code (医療機関コード) the user belongs to; one the provisioner serves");
    clinic["canonicalValues"] = json!(clinics);
    let mut kind = attribute("userKind", "string", true, true, "readWrite", "default", "none",
        "doctor (may sign e-prescriptions) or staff");
    kind["canonicalValues"] = json!(["doctor", "staff"]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": EXTENSION_SCHEMA,
        "name": "NinshoUser",
        "description": "Ninsho Gateway: the user's clinic, type and medical registration number",
        "attributes": [
            clinic,
            kind,
            attribute("medicalRegistrationNumber", "string", false, true, "readWrite", "default", "none",
                "医籍番号, 1–16 digits: required for doctors, absent for staff, unique within the clinic"),
        ],
        "meta": meta("Schema", &format!("{base}/Schemas/{EXTENSION_SCHEMA}")),
    })
}

/// A list response of `resources`, all on one page.
pub fn list(resources: Vec<Value>) -> Value {
    let n = resources.len();
    json!({ "schemas": [LIST_SCHEMA], "totalResults": n, "itemsPerPage": n, "startIndex": 1, "Resources": resources })
}
