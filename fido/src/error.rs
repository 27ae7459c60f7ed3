//! `fido::Error`: every way a ceremony or the configuration can fail, in terms the gateway can act on.

use uuid::Uuid;
use webauthn_rs::prelude::WebauthnError;

/// Why a WebAuthn ceremony, or building the [`Service`](crate::Service), failed.
///
/// Browser-side outcomes (the doctor cancelled, the browser timed out) never reach this crate:
/// the page reports them itself. Everything here is about a response the browser did deliver,
/// or about our own configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `[fido]` configuration is unusable (RP ID not a suffix of the origin's host, no
    /// AAGUIDs for an allowlist, an unreadable attestation root, ...).
    #[error("invalid FIDO configuration: {0}")]
    Config(String),

    /// A serialised ceremony state or stored credential could not be read back.
    #[error("stored FIDO data is unreadable: {0}")]
    Storage(String),

    /// The browser's response is malformed or internally inconsistent (bad JSON, base64, CBOR,
    /// `id` ≠ `rawId`, wrong `type`, an invalid flag combination, ...).
    #[error("malformed WebAuthn response: {0}")]
    InvalidResponse(String),

    /// The response answers a different challenge than the one in the ceremony state
    /// (a replayed or mixed-up response).
    #[error("the response answers another challenge")]
    ChallengeMismatch,

    /// The client data names an origin other than the gateway's public URL.
    #[error("the response comes from another origin")]
    OriginMismatch,

    /// The authenticator data was made for another RP ID.
    #[error("the response was made for another relying party ID")]
    RpIdMismatch,

    /// The authenticator did not report user presence.
    #[error("the authenticator did not report user presence")]
    UserNotPresent,

    /// The authenticator did not report user verification (PIN or biometrics); we require it.
    #[error("the authenticator did not verify the user")]
    UserNotVerified,

    /// The assertion signature does not verify with the stored public key.
    #[error("the assertion signature is invalid")]
    InvalidSignature,

    /// The credential in the response is not one this ceremony offered, or does not belong to
    /// the user the ceremony was started for.
    #[error("unknown credential")]
    UnknownCredential,

    /// Registration of a credential that is already linked (it was in the exclude list).
    #[error("this authenticator is already linked")]
    CredentialAlreadyRegistered,

    /// [`Service::start_authentication`](crate::Service::start_authentication) was given no
    /// credentials: the doctor has nothing linked.
    #[error("no linked credentials to authenticate with")]
    NoCredentials,

    /// The signature counter did not increase (policy `counter_policy = "refuse"`, the default).
    /// This is the WebAuthn signal for a possibly cloned authenticator.
    #[error("signature counter regression: stored {stored}, received {received}")]
    CounterRegression {
        /// Counter stored after the last successful use.
        stored: u32,
        /// Counter in this assertion.
        received: u32,
    },

    /// The backup-eligibility (BE) flag differs from the one recorded at registration. BE is a
    /// fixed property of a credential, so a change means another credential source or tampering.
    #[error("backup eligibility changed: registered {stored}, now {received}")]
    BackupEligibilityChanged {
        /// BE recorded at registration.
        stored: bool,
        /// BE in this assertion.
        received: bool,
    },

    /// The credential is backup eligible (a synced passkey) and the configuration refuses those.
    #[error("synced (backup-eligible) passkeys are not accepted")]
    BackupEligibleRefused,

    /// The attestation does not satisfy the configured attestation policy.
    #[error("attestation refused by policy (aaguid {aaguid:?}): {reason}")]
    AttestationRefused {
        /// The AAGUID the authenticator claimed, when the response carried one.
        aaguid: Option<Uuid>,
        /// What was wrong, for the log (not for the doctor).
        reason: String,
    },

    /// A failure that is ours, not the browser's.
    #[error("internal FIDO error: {0}")]
    Internal(String),
}

impl Error {
    /// Maps a webauthn-rs error raised while checking a browser response.
    ///
    /// `aaguid` is the AAGUID claimed in a registration response, carried into
    /// [`Error::AttestationRefused`].
    pub(crate) fn from_webauthn(err: WebauthnError, aaguid: Option<Uuid>) -> Self {
        use WebauthnError as W;
        match err {
            W::MismatchedChallenge | W::ChallengeNotFound => Error::ChallengeMismatch,
            W::InvalidRPOrigin | W::CredentialCrossOrigin => Error::OriginMismatch,
            W::InvalidRPIDHash => Error::RpIdMismatch,
            W::UserNotPresent => Error::UserNotPresent,
            W::UserNotVerified => Error::UserNotVerified,
            W::AuthenticationFailure | W::SignatureInvalid => Error::InvalidSignature,
            W::CredentialNotFound => Error::UnknownCredential,
            W::CredentialBackupEligibilityInconsistent => Error::InvalidResponse(err.to_string()),
            W::Configuration | W::MissingAttestationCaList => Error::Config(err.to_string()),
            // Attestation statement present but unacceptable: not trusted, wrong AAGUID,
            // unsupported or unverifiable format, or (only in allowlist mode, where webauthn-rs
            // refuses synchronised authenticators) a backup-eligible credential.
            W::AttestationNotSupported
            | W::AttestationTrustFailure
            | W::AttestationCertificateTrustStoreEmpty
            | W::AttestationNotVerifiable
            | W::AttestationUntrustedAaguid
            | W::AttestationFormatMissingAaguid
            | W::AttestationChainNotTrusted(_)
            | W::AttestationCertificateRequirementsNotMet
            | W::AttestationCertificateAAGUIDMismatch
            | W::AttestationStatementSigInvalid
            | W::AttestationStatementX5CMissing
            | W::AttestationStatementX5CInvalid
            | W::AttestationLeafCertMissing
            | W::CredentialMayNotBeHardwareBound
            | W::CredentialInsecureCryptography
            | W::CredentialAlteredAlgFromRequest => Error::AttestationRefused {
                aaguid,
                reason: err.to_string(),
            },
            // Every remaining variant that can come out of a finish call describes a response
            // that could not be parsed or does not hold together.
            other => Error::InvalidResponse(other.to_string()),
        }
    }
}
