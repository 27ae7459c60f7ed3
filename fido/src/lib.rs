//! WebAuthn (FIDO2) ceremonies and policy for the gateway: no HTTP, no SQL, no async.
//!
//! The gateway drives two ceremonies through [`Service`], storing the opaque state in between:
//!
//! 1. Registration (linking an authenticator, docs/design.md §3.6):
//!    [`Service::start_registration`] → options JSON to the browser, [`RegistrationState`] to the
//!    database (single use, [`Service::ceremony_timeout`]) → browser `create()` →
//!    [`Service::finish_registration`] → [`NewCredential`] with the [`StoredCredential`] to keep.
//! 2. Authentication (docs/design.md §3.4): [`Service::start_authentication`] → browser `get()` →
//!    [`credential_id_from_response`] (the gateway finds the credential and checks its owner) →
//!    [`Service::finish_authentication`] → [`AuthenticationResult`], whose `updated` record the
//!    gateway stores.
//!
//! User verification is required in both. The attestation, signature-counter and
//! backup-eligibility policies are configured in [`Config`] and written down in
//! `docs/fido-policy.md`. Errors are [`Error`].
//!
//! The crate reads no clock. webauthn-rs itself reads the system time only to check the
//! validity period of attestation certificates under an `aaguid-allowlist` policy.
#![forbid(unsafe_code)]

#[cfg(feature = "soft")]
pub mod soft;
mod config;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod response;
mod service;
mod types;

pub use config::{AttestationPolicy, BackupEligiblePolicy, Config, CounterPolicy};
pub use error::Error;
pub use response::credential_id_from_response;
pub use service::Service;
pub use types::{
    AuthenticationResult, AuthenticationState, CounterRegression, CreationOptions, CredentialId,
    NewCredential, RegistrationState, RequestOptions, StoredCredential, UserInfo,
};
