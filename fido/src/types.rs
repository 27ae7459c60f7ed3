//! Our own types at the crate boundary: what the gateway stores, sends to the browser, and gets back.
//!
//! webauthn-rs types stay inside; the serialised forms below are versioned so that a stored
//! blob can be recognised (and refused cleanly) after an upgrade.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestationMetadata, CreationChallengeResponse, Credential, DiscoverableAuthentication,
    RequestChallengeResponse,
};
use webauthn_rs::prelude::{AttestedPasskeyRegistration, PasskeyRegistration};

use crate::Error;

/// A WebAuthn credential ID (the raw bytes of `rawId`). `Display` is base64url without padding,
/// as in the browser's JSON.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialId(Vec<u8>);

impl CredentialId {
    /// Wraps raw credential ID bytes (e.g. read from the database).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes, for storage and lookup.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// base64url without padding.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({self})")
    }
}

/// The doctor a registration is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// WebAuthn user handle: a random, stable, non-personal id of the doctor account (16 bytes).
    pub user_handle: Uuid,
    /// WebAuthn user name: the doctor's medical registration number (医籍番号).
    pub name: String,
    /// WebAuthn display name: the doctor's name.
    pub display_name: String,
}

/// A linked credential as the gateway stores it: public key, counter, flags and attestation.
///
/// Persist it with [`StoredCredential::to_json`] (a JSON text column) and read it back with
/// [`StoredCredential::from_json`]. It holds no secret, but it is the trust anchor of the
/// doctor's FIDO login: only the gateway may write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCredential {
    /// Format version of this blob.
    v: u8,
    /// webauthn-rs's credential record.
    credential: Credential,
}

/// Version of the [`StoredCredential`] blob format written by this crate.
const STORED_CREDENTIAL_VERSION: u8 = 1;

impl StoredCredential {
    pub(crate) fn new(credential: Credential) -> Self {
        Self {
            v: STORED_CREDENTIAL_VERSION,
            credential,
        }
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.credential
    }

    pub(crate) fn credential_mut(&mut self) -> &mut Credential {
        &mut self.credential
    }

    /// Serialises for storage.
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Reads a blob written by [`StoredCredential::to_json`].
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let this: Self = serde_json::from_str(json).map_err(|e| Error::Storage(e.to_string()))?;
        if this.v != STORED_CREDENTIAL_VERSION {
            return Err(Error::Storage(format!(
                "stored credential version {} is not supported",
                this.v
            )));
        }
        Ok(this)
    }

    /// The credential ID.
    pub fn credential_id(&self) -> CredentialId {
        CredentialId(self.credential.cred_id.to_vec())
    }

    /// Signature counter after the last successful use (0 for authenticators without one).
    pub fn counter(&self) -> u32 {
        self.credential.counter
    }

    /// Backup eligibility recorded at registration (a synced passkey).
    pub fn backup_eligible(&self) -> bool {
        self.credential.backup_eligible
    }

    /// Backup state at the last successful use.
    pub fn backup_state(&self) -> bool {
        self.credential.backup_state
    }

    /// The AAGUID proven by a verified attestation statement, if there was one.
    pub fn attested_aaguid(&self) -> Option<Uuid> {
        match &self.credential.attestation.metadata {
            AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => {
                Some(*aaguid)
            }
            _ => None,
        }
    }
}

/// The result of a successful registration: what the gateway links to the doctor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewCredential {
    /// The credential ID (unique: the gateway's table should enforce it).
    pub credential_id: CredentialId,
    /// The user handle the ceremony was started for; the gateway should check it is the doctor
    /// it is linking for.
    pub user_handle: Uuid,
    /// The blob to store.
    pub stored: StoredCredential,
    /// The authenticator model (AAGUID) as claimed in the authenticator data; all zeros when
    /// the authenticator or browser withholds it.
    pub aaguid: Uuid,
    /// Whether `aaguid` was proven by a verified attestation statement.
    pub aaguid_attested: bool,
    /// The attestation statement format (`none`, `packed`, `tpm`, ...).
    pub attestation_format: String,
    /// Backup eligible: a synced, multi-device passkey. Fixed for the credential's lifetime.
    pub backup_eligible: bool,
    /// Backed up at registration time.
    pub backup_state: bool,
    /// Initial signature counter.
    pub counter: u32,
    /// User verification was performed (always true: it is required).
    pub user_verified: bool,
    /// Transports (`usb`, `nfc`, `ble`, `internal`, `hybrid`) as kept by webauthn-rs: the
    /// browser's report is unsigned, so webauthn-rs keeps it only alongside a verified
    /// attestation statement; otherwise empty. Used as a hint in later `allowCredentials`.
    pub transports: Vec<String>,
}

/// The result of a successful authentication.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthenticationResult {
    /// The credential that was used.
    pub credential_id: CredentialId,
    /// The counter in this assertion.
    pub counter: u32,
    /// Set when the counter did not increase and `counter_policy = "allow"` let it pass;
    /// the gateway must audit it.
    pub counter_regression: Option<CounterRegression>,
    /// User verification was performed (always true: it is required).
    pub user_verified: bool,
    /// Backup eligibility (unchanged since registration, or the ceremony would have failed).
    pub backup_eligible: bool,
    /// Backup state now.
    pub backup_state: bool,
    /// The backup state differs from the stored one (allowed; worth an audit line).
    pub backup_state_changed: bool,
    /// The updated record when something changed (counter, backup state): the gateway must
    /// store it. `None` when the stored record is still current.
    pub updated: Option<StoredCredential>,
}

/// A counter that did not increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterRegression {
    /// Counter stored after the last successful use.
    pub stored: u32,
    /// Counter in this assertion.
    pub received: u32,
}

/// `PublicKeyCredentialCreationOptions` for `navigator.credentials.create()`, as JSON of the
/// shape `{"publicKey": {...}}` with binary fields in base64url.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct CreationOptions(pub(crate) CreationChallengeResponse);

impl CreationOptions {
    /// The options as a JSON value, for the gateway's response body.
    pub fn to_json(&self) -> Result<serde_json::Value, Error> {
        serde_json::to_value(&self.0).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// `PublicKeyCredentialRequestOptions` for `navigator.credentials.get()`, as JSON of the shape
/// `{"publicKey": {...}}` with binary fields in base64url.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RequestOptions(pub(crate) RequestChallengeResponse);

impl RequestOptions {
    /// The options as a JSON value, for the gateway's response body.
    pub fn to_json(&self) -> Result<serde_json::Value, Error> {
        serde_json::to_value(&self.0).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// Server-side state of a registration ceremony. The gateway stores it (single use, expiring
/// after [`Service::ceremony_timeout`](crate::Service::ceremony_timeout)) and hands it back to
/// [`Service::finish_registration`](crate::Service::finish_registration).
///
/// It must never reach the browser: it holds the challenge the browser has to answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationState {
    pub(crate) v: u8,
    pub(crate) user_handle: Uuid,
    pub(crate) exclude: Vec<CredentialId>,
    pub(crate) ceremony: RegistrationCeremony,
}

/// The webauthn-rs state for the flavour of registration the attestation policy chose.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RegistrationCeremony {
    /// `none` and `any`: webauthn-rs's passkey registration.
    Passkey(PasskeyRegistration),
    /// `aaguid-allowlist`: webauthn-rs's attested passkey registration (carries the CA list).
    Attested(Box<AttestedPasskeyRegistration>),
}

/// Server-side state of an authentication ceremony; same storage rules as [`RegistrationState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthenticationState {
    pub(crate) v: u8,
    pub(crate) user_handle: Uuid,
    pub(crate) allowed: Vec<CredentialId>,
    pub(crate) ceremony: DiscoverableAuthentication,
}

/// Version of the serialised ceremony states.
pub(crate) const STATE_VERSION: u8 = 1;

macro_rules! state_json {
    ($t:ty) => {
        impl $t {
            /// Serialises for the gateway's ceremony-state table.
            pub fn to_json(&self) -> Result<String, Error> {
                serde_json::to_string(self).map_err(|e| Error::Internal(e.to_string()))
            }

            /// Reads a state written by `to_json`.
            pub fn from_json(json: &str) -> Result<Self, Error> {
                let this: Self =
                    serde_json::from_str(json).map_err(|e| Error::Storage(e.to_string()))?;
                if this.v != STATE_VERSION {
                    return Err(Error::Storage(format!(
                        "ceremony state version {} is not supported",
                        this.v
                    )));
                }
                Ok(this)
            }

            /// The user handle the ceremony was started for.
            pub fn user_handle(&self) -> Uuid {
                self.user_handle
            }
        }
    };
}

state_json!(RegistrationState);
state_json!(AuthenticationState);
