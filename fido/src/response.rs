//! Reading the browser's `PublicKeyCredential` JSON: structural checks webauthn-rs leaves to us,
//! and the few authenticator-data fields our policy needs before or beside webauthn-rs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use crate::{CredentialId, Error};

/// The fields every `PublicKeyCredential` JSON carries, read without the rest.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    type_: String,
}

fn b64url(field: &str, s: &str) -> Result<Vec<u8>, Error> {
    // The JSON encoding of WebAuthn L3 (`toJSON()`) is unpadded base64url; tolerate padding.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| Error::InvalidResponse(format!("{field} is not base64url")))
}

/// The credential ID of a registration or authentication response, read before any
/// verification so the gateway can find the owner of the credential (and refuse a credential
/// of another doctor) before calling a `finish_*` method.
///
/// Checks that `id` and `rawId` agree and that `type` is `public-key`. The ID is *not*
/// authenticated by this call; [`Service::finish_authentication`](crate::Service::finish_authentication)
/// verifies the signature made with that credential.
pub fn credential_id_from_response(response_json: &str) -> Result<CredentialId, Error> {
    let env: Envelope = serde_json::from_str(response_json)
        .map_err(|e| Error::InvalidResponse(format!("not a PublicKeyCredential: {e}")))?;
    if env.type_ != "public-key" {
        return Err(Error::InvalidResponse("type is not public-key".to_owned()));
    }
    let raw = b64url("rawId", &env.raw_id)?;
    // WebAuthn §5.1: `id` is the base64url encoding of `rawId`. webauthn-rs keys on `rawId`
    // only, so a response where they differ would be looked up by one and verified by the other.
    if b64url("id", &env.id)? != raw {
        return Err(Error::InvalidResponse("id and rawId differ".to_owned()));
    }
    if raw.is_empty() {
        return Err(Error::InvalidResponse("empty credential id".to_owned()));
    }
    Ok(CredentialId::from_bytes(raw))
}

/// Parses a registration response (`navigator.credentials.create()` → `toJSON()`).
pub(crate) fn parse_registration(
    json: &str,
) -> Result<(CredentialId, RegisterPublicKeyCredential), Error> {
    let id = credential_id_from_response(json)?;
    let reg: RegisterPublicKeyCredential = serde_json::from_str(json)
        .map_err(|e| Error::InvalidResponse(format!("registration response: {e}")))?;
    Ok((id, reg))
}

/// Parses an authentication response (`navigator.credentials.get()` → `toJSON()`).
pub(crate) fn parse_assertion(json: &str) -> Result<(CredentialId, PublicKeyCredential), Error> {
    let id = credential_id_from_response(json)?;
    let pkc: PublicKeyCredential = serde_json::from_str(json)
        .map_err(|e| Error::InvalidResponse(format!("authentication response: {e}")))?;
    Ok((id, pkc))
}

/// Flags and counter from the fixed 37-byte head of authenticator data (WebAuthn §6.1:
/// rpIdHash[32] ‖ flags[1] ‖ signCount[4, big-endian]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthDataHead {
    pub backup_eligible: bool,
    pub backup_state: bool,
}

const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;

pub(crate) fn auth_data_head(auth_data: &[u8]) -> Result<AuthDataHead, Error> {
    let flags = *auth_data
        .get(32)
        .ok_or_else(|| Error::InvalidResponse("authenticator data too short".to_owned()))?;
    if auth_data.len() < 37 {
        return Err(Error::InvalidResponse(
            "authenticator data too short".to_owned(),
        ));
    }
    let head = AuthDataHead {
        backup_eligible: flags & FLAG_BE != 0,
        backup_state: flags & FLAG_BS != 0,
    };
    // WebAuthn §6.1.3: BS may only be set when BE is set.
    if head.backup_state && !head.backup_eligible {
        return Err(Error::InvalidResponse(
            "backup state set without backup eligibility".to_owned(),
        ));
    }
    Ok(head)
}

/// The authenticator data inside a CBOR attestation object (WebAuthn §6.5).
pub(crate) fn attestation_auth_data(attestation_object: &[u8]) -> Result<Vec<u8>, Error> {
    use serde_cbor_2::Value;
    let value: Value = serde_cbor_2::from_slice(attestation_object)
        .map_err(|_| Error::InvalidResponse("attestationObject is not CBOR".to_owned()))?;
    let Value::Map(map) = value else {
        return Err(Error::InvalidResponse(
            "attestationObject is not a map".to_owned(),
        ));
    };
    match map.get(&Value::Text("authData".to_owned())) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        _ => Err(Error::InvalidResponse(
            "attestationObject has no authData".to_owned(),
        )),
    }
}

/// The credential ID inside attested credential data (WebAuthn §6.5.1: AAGUID[16] ‖
/// credentialIdLength[2, big-endian] ‖ credentialId, after the 37-byte head).
pub(crate) fn attested_credential_id(auth_data: &[u8]) -> Option<CredentialId> {
    let flags = *auth_data.get(32)?;
    if flags & FLAG_AT == 0 {
        return None;
    }
    let len = u16::from_be_bytes(auth_data.get(53..55)?.try_into().ok()?) as usize;
    Some(CredentialId::from_bytes(
        auth_data.get(55..55 + len)?.to_vec(),
    ))
}

/// The AAGUID claimed in attested credential data (WebAuthn §6.5.1: it follows the 37-byte head
/// when the AT flag is set). Unverified: whoever made the response chose it.
pub(crate) fn claimed_aaguid(auth_data: &[u8]) -> Option<Uuid> {
    let flags = *auth_data.get(32)?;
    if flags & FLAG_AT == 0 {
        return None;
    }
    let bytes: [u8; 16] = auth_data.get(37..53)?.try_into().ok()?;
    Some(Uuid::from_bytes(bytes))
}
