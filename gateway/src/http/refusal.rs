//! Every refusal the gateway answers with, one enum per surface, and the only place that picks
//! their codes, status codes and messages. Call sites name a variant.
//!
//! - [`ApiRefusal`]: the service-client API (`/api/v1`). English messages; every code is listed
//!   in `openapi.json` (a test below checks it).
//! - [`Refusal`]: the browser — refusal pages, the login and password forms, and the JSON of the
//!   WebAuthn and card ceremonies. Messages in Japanese and English ([`Msg`]).

use axum::http::StatusCode;
use card::verify::VerifyError;

use super::i18n::{Lang, Msg};
use crate::password::Weakness;
use crate::store::ServiceRole;

/// A refusal of the service API: `{"error": code, "message": text}` with [`Self::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRefusal {
    /// The request does not parse (the extractor's own description).
    BadRequest(String),
    /// A signer consumed a token without the presenter's thumbprint.
    PresenterMissing,
    /// An EMR passed a presenter thumbprint.
    PresenterNotAllowed,
    /// `hash_alg` without `hashes`.
    HashAlgWithoutHashes,
    /// Too few or too many hashes.
    HashCount,
    /// `hashes[index]` is not a base64url SHA-256 value.
    HashNotSha256 {
        /// Its position.
        index: usize,
    },
    /// Another hash algorithm than SHA-256.
    BadHashAlg,
    /// `num_signatures` out of range (without hashes).
    NumSignaturesRange,
    /// `num_signatures` differs from the number of hashes.
    NumSignaturesMismatch,
    /// `ttl` below one second.
    BadTtl,
    /// `ttl` above the configured maximum.
    TtlTooLong {
        /// `tokens.max_ttl_secs`.
        max: i64,
    },
    /// The TLS client certificate is no service client's.
    ClientNotRegistered,
    /// The service client is disabled.
    ClientDisabled,
    /// The call needs a client of another role.
    WrongRole(ServiceRole),
    /// The client does not serve this clinic.
    ClinicNotAllowed(String),
    /// No such doctor at the clinic.
    DoctorNotInClinic {
        /// The doctor's login ID.
        doctor_id: String,
        /// The clinic.
        clinic_id: String,
    },
    /// The account is not a doctor's.
    NotADoctor,
    /// The doctor's account is disabled.
    DoctorDisabled,
    /// No such signing session (or one of a clinic the client does not serve).
    SessionNotFound,
    /// The signing session has ended already.
    SessionAlreadyEnded,
    /// The doctor has no signing session at the clinic.
    NoSession,
    /// The signing session ended while the token was being made.
    SessionJustEnded,
    /// The signing session reached its maximum lifetime.
    SessionExpired,
    /// The signing session timed out from inactivity.
    SessionIdleExpired,
    /// The token is not a valid signing token.
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// The token is not valid yet.
    TokenNotYetValid,
    /// The token is bound to another client certificate.
    CnfMismatch,
    /// The token's signing session has ended.
    SessionEnded,
    /// The token was consumed already, or is unknown.
    TokenAlreadyUsed,
    /// An OQS file name off the pattern (docs/design.md §3.13), or an answer's name that does not
    /// pair with its request's.
    OqsBadFileName(String),
    /// An OQS file over `oqs.max_file_bytes`.
    OqsTooLarge {
        /// The limit.
        max: usize,
    },
    /// An OQS file that is not a well-formed `XmlMsg` document.
    OqsNotXml(String),
    /// A live request of the clinic has this file name.
    OqsNameInUse,
    /// The clinic has `oqs.max_queued_per_clinic` live requests.
    OqsQueueFull {
        /// The limit.
        max: i64,
    },
    /// No such clinic (a client may be configured for one that does not exist yet).
    OqsClinicNotFound(String),
    /// The clinic is disabled.
    OqsClinicDisabled,
    /// No OQS request with this id that the caller may see.
    OqsRequestNotFound,
    /// `wait` over `oqs.max_wait_secs`.
    OqsBadWait {
        /// The limit.
        max: u64,
    },
    /// Agent API: the clinic certificate is not registered.
    AgentCertNotRegistered,
    /// Agent API: the clinic certificate was revoked.
    AgentCertRevoked,
    /// Agent API: the certificate's clinic is disabled.
    AgentClinicDisabled,
    /// Agent API: no or a malformed `X-Ninsho-Agent` header.
    AgentBadId,
    /// Agent API: another agent relays for the clinic.
    RelayHeld {
        /// Its id.
        agent_id: String,
        /// When it was last seen (Unix seconds).
        last_seen: i64,
    },
    /// Agent API: no such agent release, or it was withdrawn.
    ReleaseNotFound,
    /// Agent API: the request has ended, or the step does not apply to it.
    OqsRequestOver {
        /// Its status.
        status: &'static str,
    },
    /// No such endpoint under `/api/`.
    NotFound,
    /// The database is unreachable or did not commit; a retry may work.
    Unavailable,
    /// A bug or an outage (logged, never described to the client).
    Internal,
}

impl ApiRefusal {
    /// The stable code (`error` in the body, `reason` in the audit row).
    pub fn code(&self) -> &'static str {
        use ApiRefusal::*;
        match self {
            BadRequest(_) | PresenterMissing | PresenterNotAllowed => "bad_request",
            HashAlgWithoutHashes | HashCount | HashNotSha256 { .. } => "bad_hashes",
            BadHashAlg => "bad_hash_alg",
            NumSignaturesRange | NumSignaturesMismatch => "bad_num_signatures",
            BadTtl => "bad_ttl",
            TtlTooLong { .. } => "ttl_too_long",
            ClientNotRegistered => "client_not_registered",
            ClientDisabled => "client_disabled",
            WrongRole(_) => "wrong_role",
            ClinicNotAllowed(_) => "clinic_not_allowed",
            DoctorNotInClinic { .. } => "doctor_not_in_clinic",
            NotADoctor => "not_a_doctor",
            DoctorDisabled => "doctor_disabled",
            SessionNotFound => "session_not_found",
            SessionAlreadyEnded => "session_already_ended",
            NoSession | SessionJustEnded => "no_session",
            SessionExpired => "session_expired",
            SessionIdleExpired => "session_idle_expired",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            TokenNotYetValid => "token_not_yet_valid",
            CnfMismatch => "cnf_mismatch",
            SessionEnded => "session_ended",
            TokenAlreadyUsed => "token_already_used",
            OqsBadFileName(_) => "bad_file_name",
            OqsTooLarge { .. } => "file_too_large",
            OqsNotXml(_) => "not_xml",
            OqsNameInUse => "name_in_use",
            OqsQueueFull { .. } => "queue_full",
            OqsClinicNotFound(_) => "clinic_not_found",
            OqsClinicDisabled | AgentClinicDisabled => "clinic_disabled",
            OqsRequestNotFound => "request_not_found",
            OqsBadWait { .. } => "bad_wait",
            AgentCertNotRegistered => "cert_not_registered",
            AgentCertRevoked => "cert_revoked",
            AgentBadId => "bad_agent_id",
            RelayHeld { .. } => "relay_held",
            OqsRequestOver { .. } => "request_over",
            ReleaseNotFound => "release_not_found",
            NotFound => "not_found",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use ApiRefusal::*;
        match self {
            BadRequest(_) | PresenterMissing | PresenterNotAllowed | HashAlgWithoutHashes | HashCount | HashNotSha256 { .. }
            | BadHashAlg | NumSignaturesRange | NumSignaturesMismatch | BadTtl | TtlTooLong { .. } | OqsBadFileName(_)
            | OqsNotXml(_) | OqsBadWait { .. } | AgentBadId => StatusCode::BAD_REQUEST,
            OqsTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OqsQueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            OqsClinicDisabled | AgentCertNotRegistered | AgentCertRevoked | AgentClinicDisabled => StatusCode::FORBIDDEN,
            OqsClinicNotFound(_) | OqsRequestNotFound | ReleaseNotFound => StatusCode::NOT_FOUND,
            OqsNameInUse | RelayHeld { .. } | OqsRequestOver { .. } => StatusCode::CONFLICT,
            InvalidToken | TokenExpired | TokenNotYetValid => StatusCode::UNAUTHORIZED,
            ClientNotRegistered | ClientDisabled | WrongRole(_) | ClinicNotAllowed(_) | NotADoctor | DoctorDisabled
            | CnfMismatch => StatusCode::FORBIDDEN,
            DoctorNotInClinic { .. } | SessionNotFound | NotFound => StatusCode::NOT_FOUND,
            SessionAlreadyEnded | NoSession | SessionJustEnded | SessionExpired | SessionIdleExpired | SessionEnded
            | TokenAlreadyUsed => StatusCode::CONFLICT,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The English message.
    pub fn message(&self) -> String {
        use super::api::MAX_HASHES;
        use ApiRefusal::*;
        let fixed = match self {
            BadRequest(detail) => return detail.clone(),
            HashNotSha256 { index } => {
                return format!("hashes[{index}] is not an unpadded base64url SHA-256 value (32 bytes)");
            }
            TtlTooLong { max } => return format!("ttl must be at most {max} seconds"),
            WrongRole(role) => return format!("this call needs a service client of role {}", role.as_str()),
            ClinicNotAllowed(clinic_id) => return format!("this client does not serve clinic {clinic_id}"),
            OqsBadFileName(detail) => return detail.clone(),
            OqsTooLarge { max } => return format!("the file is larger than {max} bytes"),
            OqsNotXml(detail) => return format!("the file is not a well-formed XmlMsg document: {detail}"),
            OqsQueueFull { max } => return format!("the clinic already has {max} requests waiting; retry when some are answered"),
            OqsClinicNotFound(clinic_id) => return format!("no clinic {clinic_id}"),
            OqsBadWait { max } => return format!("wait must be 0..={max} seconds"),
            RelayHeld { agent_id, last_seen } => {
                return format!("agent {agent_id} relays for this clinic (last seen at {last_seen}); only one agent per clinic may");
            }
            OqsRequestOver { status } => return format!("the request is {status}; this step no longer applies"),
            DoctorNotInClinic { doctor_id, clinic_id } => return format!("no doctor {doctor_id} at clinic {clinic_id}"),
            HashCount => return format!("hashes must hold 1..={MAX_HASHES} values"),
            NumSignaturesRange => return format!("num_signatures must be 1..={MAX_HASHES}"),
            BadHashAlg => return format!("only SHA-256 ({}) is supported", crate::tokens::SHA256_OID),
            PresenterMissing => "a signer must pass the presenter's x5t#S256",
            PresenterNotAllowed => "only signers pass a presenter thumbprint",
            HashAlgWithoutHashes => "hash_alg is given without hashes",
            NumSignaturesMismatch => "num_signatures must equal the number of hashes",
            BadTtl => "ttl must be at least 1 second",
            ClientNotRegistered => "the TLS client certificate is not registered as a service client",
            ClientDisabled => "this service client is disabled",
            NotADoctor => "only doctors have signing sessions",
            DoctorDisabled => "the doctor's account is disabled",
            SessionNotFound => "no such signing session",
            SessionAlreadyEnded => "the signing session has already ended",
            NoSession => "the doctor has no signing session at this clinic",
            SessionJustEnded => "the signing session has just ended",
            SessionExpired => "the signing session reached its maximum lifetime",
            SessionIdleExpired => "the signing session timed out from inactivity",
            InvalidToken => "the token is not a valid signing token",
            TokenExpired => "the token has expired",
            TokenNotYetValid => "the token is not valid yet",
            CnfMismatch => "the token is bound to another client certificate",
            SessionEnded => "the signing session this token was issued in has ended",
            TokenAlreadyUsed => "the token was already consumed or is unknown",
            OqsNameInUse => "a request of this clinic with this file name is still queued or waiting for its answer",
            OqsClinicDisabled => "the clinic is disabled",
            OqsRequestNotFound => "no such OQS request",
            ReleaseNotFound => "no such agent release (or it was withdrawn)",
            AgentCertNotRegistered => "the TLS client certificate is not registered to a clinic",
            AgentCertRevoked => "the TLS client certificate has been revoked",
            AgentClinicDisabled => "the certificate's clinic is disabled",
            AgentBadId => "the X-Ninsho-Agent header must carry the agent's id (8 to 64 letters, digits or '-')",
            NotFound => "no such API endpoint",
            Unavailable => "the service is temporarily unavailable; retry shortly",
            Internal => "internal error",
        };
        fixed.to_owned()
    }
}

/// A refusal of a browser request. The route picks the form it takes: a page
/// ([`super::AppError::Page`]), a form shown again with the message, or the ceremonies' JSON
/// ([`super::AppError::Json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    // ---- anywhere ----
    /// No such page.
    NotFound,
    /// A state-changing request without this gateway's origin.
    BadOrigin,
    /// The body broke off.
    BodyIncomplete,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body is over `server.max_body_bytes`.
    PayloadTooLarge,
    /// The database is unreachable or did not commit.
    Unavailable,
    /// A bug or an outage (logged).
    Internal,
    // ---- clinic gate (the code is the audit reason) ----
    /// The client certificate is revoked.
    CertRevoked,
    /// The clinic is disabled.
    ClinicDisabled,
    /// The client certificate is no clinic's.
    CertNotRegistered,
    // ---- login and password forms (the password form audits the code) ----
    /// A field is missing or too long.
    MissingFields,
    /// Wrong login ID or password (one answer for both, with the same count: the lockout counts
    /// per typed login ID whether or not it exists).
    InvalidCredentials {
        /// Failed attempts left before the lock, when the count is known.
        tries_left: Option<i64>,
        /// How long the lock lasts, in minutes.
        lock_minutes: i64,
    },
    /// Too many failures: locked until then.
    LoginLocked {
        /// Unix time the lock ends.
        until: i64,
    },
    /// Only doctors sign in here.
    DoctorOnly,
    /// The temporary password is too old to sign in with.
    TemporaryPasswordExpired,
    /// The current password is wrong.
    PasswordCurrentWrong,
    /// New password and confirmation differ.
    PasswordMismatch,
    /// The new password is the current one.
    PasswordSameAsOld,
    /// The new password is too weak.
    PasswordWeak(Weakness),
    /// An operator set another password meanwhile.
    PasswordChangedMeanwhile,
    // ---- signed-in doctor ----
    /// A JSON request without a login (a JSON client cannot follow the redirect).
    LoginRequired,
    /// A JSON request of a login that must change its temporary password first.
    PasswordChangeRequired,
    /// Changing authenticators needs a recent card or FIDO proof (issue 15).
    ReauthRequired,
    /// No such authenticator of this doctor.
    CredentialNotFound,
    /// An authenticator name that is empty, too long or has control characters.
    NameInvalid,
    // ---- registration codes ----
    /// Not the shape of a registration code.
    CodeMalformed,
    /// Wrong code; the tries the open code has left, when there is one.
    CodeWrong {
        /// Tries left.
        tries_left: Option<i64>,
    },
    /// The code expired.
    CodeExpired,
    /// The code was used.
    CodeUsed,
    /// The code's tries are used up.
    CodeExhausted,
    /// The code was voided.
    CodeVoided,
    // ---- FIDO ceremonies ----
    /// A malformed FIDO request body.
    FidoBadRequest,
    /// No ceremony of this kind for this browser session.
    CeremonyMissing,
    /// The ceremony timed out.
    TimedOut,
    /// The browser cancelled the ceremony (audited only; the page gets `{"ok": true}`).
    Cancelled,
    /// The doctor has no FIDO authenticator.
    NoCredentials,
    /// The credential is not linked.
    UnknownCredential,
    /// The credential is another doctor's.
    CredentialOfAnotherDoctor,
    /// The signature counter went back (a cloned authenticator).
    CounterRegression,
    /// The authenticator is not allowed by the FIDO policy.
    PolicyRefused,
    /// No user verification.
    UserNotVerified,
    /// The credential is linked already.
    AlreadyLinked,
    /// The authenticator's answer does not verify.
    InvalidResponse,
    // ---- card ceremonies ----
    /// A malformed card request body.
    CardBadRequest,
    /// A card kind other than `hpki` or `jpki`.
    BadCardKind,
    /// No card of this kind is linked.
    NoCardLinked,
    /// Linking a card needs a registration code or a presence check.
    LinkNotAuthorised,
    /// No card challenge for this browser session.
    ChallengeMissing,
    /// The card challenge expired.
    ChallengeExpired,
    /// The finish body is not the agent's answer.
    ResponseMalformed,
    /// The card failed verification (`card::verify`).
    CardVerify(VerifyError),
    /// The verified card is not linked.
    CardNotLinked,
    /// The verified card is another doctor's.
    CardOfAnotherDoctor,
    /// A linked card's issuer and serial with another key.
    CardKeyMismatch,
    /// An HPKI certificate without hcRole is linked by registration code only.
    RoleMissingNeedsCode,
    /// The card is linked to this doctor already.
    CardAlreadyLinked,
    /// The card is linked to another doctor.
    CardLinkedToAnotherDoctor,
    // ---- upstream sign-in (docs/design.md §3.17; the code is the audit reason) ----
    /// The clinic signs in with embedded passwords (`/login/oidc` on such a clinic).
    UpstreamNotConfigured,
    /// The clinic signs in through its OpenID Connect provider: the password form is off.
    PasswordLoginOff,
    /// No authorization request with this `state` (wrong, or its callback came already).
    UpstreamFlowUnknown,
    /// The request was started in another browser, through another certificate or clinic.
    UpstreamFlowMismatch,
    /// The authorization request timed out.
    UpstreamFlowExpired,
    /// The provider answered with an error (`error=access_denied`, …) or without a code.
    UpstreamProviderError,
    /// The provider's discovery, JWKS or token endpoint cannot be used.
    UpstreamUnavailable,
    /// The token endpoint refused the code (`invalid_grant`: used already).
    UpstreamTokenRefused,
    /// The ID token does not verify (signature, algorithm, issuer, audience).
    UpstreamIdTokenInvalid,
    /// The ID token expired.
    UpstreamIdTokenExpired,
    /// The ID token's nonce is not the request's.
    UpstreamNonceMismatch,
    /// No user of the clinic matches the provider's claim.
    UpstreamUnknownUser,
    /// The matched user is disabled.
    UpstreamUserDisabled,
}

impl Refusal {
    /// The stable code: `error` in the ceremonies' JSON and the reason of their audit rows.
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            NotFound => "not_found",
            BadOrigin => "bad_origin",
            BodyIncomplete | FidoBadRequest | CardBadRequest => "bad_request",
            BodyTimeout => "body_timeout",
            PayloadTooLarge => "payload_too_large",
            Unavailable => "unavailable",
            Internal => "internal",
            CertRevoked => "revoked",
            ClinicDisabled => "clinic_disabled",
            CertNotRegistered => "not_registered",
            MissingFields => "missing",
            InvalidCredentials { .. } => "invalid_credentials",
            LoginLocked { .. } => "locked",
            DoctorOnly => "not_doctor",
            TemporaryPasswordExpired => "temporary_password_expired",
            PasswordCurrentWrong => "bad_current_password",
            PasswordMismatch => "mismatch",
            PasswordSameAsOld => "same_as_old",
            PasswordWeak(w) => match w {
                Weakness::Length => "length",
                Weakness::Common => "common",
                Weakness::Personal => "personal",
                Weakness::Context => "context",
                Weakness::Guessable => "weak",
            },
            PasswordChangedMeanwhile => "changed_meanwhile",
            LoginRequired => "login_required",
            PasswordChangeRequired => "password_change_required",
            ReauthRequired => "reauth_required",
            CredentialNotFound => "credential_not_found",
            NameInvalid => "name_invalid",
            CodeMalformed => "code_malformed",
            CodeWrong { .. } => "code_wrong",
            CodeExpired => "code_expired",
            CodeUsed => "code_used",
            CodeExhausted => "code_exhausted",
            CodeVoided => "code_voided",
            CeremonyMissing => "ceremony_missing",
            TimedOut => "timed_out",
            Cancelled => "cancelled",
            NoCredentials => "no_credentials",
            UnknownCredential => "unknown_credential",
            CredentialOfAnotherDoctor => "credential_of_another_doctor",
            CounterRegression => "counter_regression",
            PolicyRefused => "policy_refused",
            UserNotVerified => "user_not_verified",
            AlreadyLinked => "already_linked",
            InvalidResponse => "invalid_response",
            BadCardKind => "bad_card_kind",
            NoCardLinked => "no_card_linked",
            LinkNotAuthorised => "link_not_authorised",
            ChallengeMissing => "challenge_missing",
            ChallengeExpired => "challenge_expired",
            ResponseMalformed => "response_malformed",
            CardVerify(e) => e.code(),
            CardNotLinked => "card_not_linked",
            CardOfAnotherDoctor => "card_of_another_doctor",
            CardKeyMismatch => "card_key_mismatch",
            RoleMissingNeedsCode => "role_missing_needs_code",
            CardAlreadyLinked => "card_already_linked",
            CardLinkedToAnotherDoctor => "card_linked_to_another_doctor",
            UpstreamNotConfigured => "oidc_not_configured",
            PasswordLoginOff => "password_login_off",
            UpstreamFlowUnknown => "oidc_flow_unknown",
            UpstreamFlowMismatch => "oidc_flow_mismatch",
            UpstreamFlowExpired => "oidc_flow_expired",
            UpstreamProviderError => "oidc_provider_error",
            UpstreamUnavailable => "oidc_unavailable",
            UpstreamTokenRefused => "oidc_token_refused",
            UpstreamIdTokenInvalid => "oidc_id_token_invalid",
            UpstreamIdTokenExpired => "oidc_id_token_expired",
            UpstreamNonceMismatch => "oidc_nonce_mismatch",
            UpstreamUnknownUser => "oidc_unknown_user",
            UpstreamUserDisabled => "oidc_user_disabled",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            BodyIncomplete | MissingFields | PasswordMismatch | PasswordSameAsOld | PasswordWeak(_) | NameInvalid
            | CodeMalformed | FidoBadRequest | CeremonyMissing | TimedOut | InvalidResponse | CardBadRequest | BadCardKind
            | ChallengeMissing | ChallengeExpired | ResponseMalformed => StatusCode::BAD_REQUEST,
            LoginRequired => StatusCode::UNAUTHORIZED,
            BadOrigin | CertRevoked | ClinicDisabled | CertNotRegistered | InvalidCredentials { .. } | LoginLocked { .. }
            | DoctorOnly | TemporaryPasswordExpired | PasswordCurrentWrong | PasswordChangeRequired | ReauthRequired
            | CodeWrong { .. } | CodeExpired | CodeUsed | CodeExhausted | CodeVoided | UnknownCredential
            | CredentialOfAnotherDoctor | CounterRegression | PolicyRefused | UserNotVerified | LinkNotAuthorised
            | CardNotLinked | CardOfAnotherDoctor | CardKeyMismatch | RoleMissingNeedsCode => StatusCode::FORBIDDEN,
            NotFound | CredentialNotFound => StatusCode::NOT_FOUND,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            PasswordChangedMeanwhile | NoCredentials | AlreadyLinked | NoCardLinked | CardAlreadyLinked
            | CardLinkedToAnotherDoctor => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // Never sent: the page asked to drop the ceremony, and gets `{"ok": true}`.
            Cancelled => StatusCode::OK,
            CardVerify(e) => card_failure(e).0,
            UpstreamFlowUnknown | UpstreamFlowMismatch | UpstreamFlowExpired => StatusCode::BAD_REQUEST,
            UpstreamNotConfigured => StatusCode::NOT_FOUND,
            UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            PasswordLoginOff | UpstreamProviderError | UpstreamTokenRefused | UpstreamIdTokenInvalid | UpstreamIdTokenExpired
            | UpstreamNonceMismatch | UpstreamUnknownUser | UpstreamUserDisabled => StatusCode::FORBIDDEN,
        }
    }

    /// The fixed message (without what [`Self::message`] appends).
    pub fn msg(&self) -> Msg {
        use Refusal::*;
        match self {
            NotFound => Msg::NotFound,
            BadOrigin => Msg::BadOrigin,
            BodyIncomplete => Msg::BodyIncomplete,
            BodyTimeout => Msg::BodyTimeout,
            PayloadTooLarge => Msg::BodyTooLarge,
            Unavailable => Msg::Unavailable,
            Internal => Msg::InternalError,
            CertRevoked => Msg::CertRevoked,
            ClinicDisabled => Msg::ClinicDisabled,
            CertNotRegistered => Msg::CertNotRegistered,
            MissingFields => Msg::MissingFields,
            InvalidCredentials { .. } => Msg::InvalidCredentials,
            LoginLocked { .. } => Msg::LoginLocked,
            DoctorOnly => Msg::DoctorOnly,
            TemporaryPasswordExpired => Msg::TemporaryPasswordExpired,
            PasswordCurrentWrong => Msg::PasswordCurrentWrong,
            PasswordMismatch => Msg::PasswordMismatch,
            PasswordSameAsOld => Msg::PasswordSameAsOld,
            PasswordWeak(w) => match w {
                Weakness::Length => Msg::PasswordTooShortOrLong,
                Weakness::Common => Msg::PasswordCommon,
                Weakness::Personal => Msg::PasswordPersonal,
                Weakness::Context => Msg::PasswordContext,
                Weakness::Guessable => Msg::PasswordGuessable,
            },
            PasswordChangedMeanwhile => Msg::PasswordChangedMeanwhile,
            LoginRequired => Msg::LoginRequiredJson,
            PasswordChangeRequired => Msg::PasswordChangeLead,
            ReauthRequired => Msg::ReauthRequired,
            CredentialNotFound => Msg::CredentialNotFound,
            NameInvalid => Msg::CredentialNameInvalid,
            CodeMalformed => Msg::CodeMalformed,
            CodeWrong { .. } => Msg::CodeWrong,
            CodeExpired => Msg::CodeExpired,
            CodeUsed | CodeExhausted | CodeVoided => Msg::CodeUsedUp,
            FidoBadRequest => Msg::FidoBadRequest,
            CeremonyMissing => Msg::FidoCeremonyMissing,
            TimedOut | Cancelled => Msg::FidoCancelled,
            NoCredentials => Msg::FidoNoCredentials,
            UnknownCredential => Msg::FidoUnknownCredential,
            CredentialOfAnotherDoctor => Msg::FidoOtherDoctor,
            CounterRegression => Msg::FidoCounterRegression,
            PolicyRefused => Msg::FidoPolicyRefused,
            UserNotVerified => Msg::FidoUserNotVerified,
            AlreadyLinked => Msg::FidoAlreadyLinked,
            InvalidResponse => Msg::FidoFailed,
            CardBadRequest | BadCardKind => Msg::CardBadRequest,
            NoCardLinked => Msg::CardNoneLinked,
            LinkNotAuthorised => Msg::CardLinkNeedsCode,
            ChallengeMissing => Msg::CardChallengeMissing,
            ChallengeExpired => Msg::CardChallengeExpired,
            ResponseMalformed => Msg::CardResponseInvalid,
            CardVerify(e) => card_failure(e).1,
            CardNotLinked | CardKeyMismatch => Msg::CardNotLinked,
            CardOfAnotherDoctor => Msg::CardOtherDoctor,
            RoleMissingNeedsCode => Msg::CardNoRoleNeedsCode,
            CardAlreadyLinked => Msg::CardAlreadyLinked,
            CardLinkedToAnotherDoctor => Msg::CardLinkedToOther,
            UpstreamNotConfigured => Msg::UpstreamNotConfigured,
            PasswordLoginOff => Msg::PasswordLoginOff,
            UpstreamFlowUnknown => Msg::UpstreamFlowUnknown,
            UpstreamFlowMismatch => Msg::UpstreamFlowMismatch,
            UpstreamFlowExpired => Msg::UpstreamFlowExpired,
            UpstreamProviderError => Msg::UpstreamProviderError,
            UpstreamUnavailable => Msg::UpstreamUnavailable,
            UpstreamTokenRefused => Msg::UpstreamTokenRefused,
            UpstreamIdTokenInvalid => Msg::UpstreamIdTokenInvalid,
            UpstreamIdTokenExpired => Msg::UpstreamIdTokenExpired,
            UpstreamNonceMismatch => Msg::UpstreamNonceMismatch,
            UpstreamUnknownUser => Msg::UpstreamUnknownUser,
            UpstreamUserDisabled => Msg::UpstreamUserDisabled,
        }
    }

    /// The title of the refusal page.
    pub fn title(&self) -> Msg {
        match self {
            Refusal::CertRevoked | Refusal::ClinicDisabled | Refusal::CertNotRegistered => Msg::GateTitle,
            _ => Msg::ErrorTitle,
        }
    }

    /// The message in `lang`, with what the refusal carries (tries left, the end of a lock).
    pub fn message(&self, lang: Lang) -> String {
        let text = self.msg().text(lang);
        match self {
            Refusal::CodeWrong { tries_left: Some(n) } => format!("{text} {} {n}", Msg::CodeTriesLeft.text(lang)),
            Refusal::LoginLocked { until } => {
                let end = if lang == Lang::Ja { "。" } else { "." };
                format!("{text} {}{end} {}", lang.format_time(*until), Msg::LoginLockedUnlock.text(lang))
            }
            Refusal::InvalidCredentials { tries_left: Some(n), lock_minutes } => {
                let warning =
                    Msg::LoginTriesLeft.text(lang).replace("{n}", &n.to_string()).replace("{minutes}", &lock_minutes.to_string());
                format!("{text} {warning}")
            }
            _ => text.to_owned(),
        }
    }
}

impl From<VerifyError> for Refusal {
    fn from(e: VerifyError) -> Self {
        Refusal::CardVerify(e)
    }
}

/// Status and message of a card that failed verification.
fn card_failure(e: &VerifyError) -> (StatusCode, Msg) {
    use StatusCode as S;
    use VerifyError as E;
    match e {
        E::Expired { .. } => (S::FORBIDDEN, Msg::CardExpired),
        E::NotYetValid { .. } => (S::FORBIDDEN, Msg::CardNotYetValid),
        E::Revoked => (S::FORBIDDEN, Msg::CardRevoked),
        E::CrlStale { .. } | E::NoCrl | E::CrlInvalid { .. } | E::AnchorUnusable { .. } => {
            (S::SERVICE_UNAVAILABLE, Msg::CardRevocationUnavailable)
        }
        E::SigningCertificate => (S::FORBIDDEN, Msg::CardSigningCertificate),
        E::PolicyNotAllowed { .. } => (S::FORBIDDEN, Msg::CardPolicyNotAllowed),
        E::UntrustedIssuer { .. } => (S::FORBIDDEN, Msg::CardUntrusted),
        E::RoleMissing | E::RoleNotAccepted { .. } => (S::FORBIDDEN, Msg::CardNotDoctor),
        E::CardKindMismatch { .. } => (S::BAD_REQUEST, Msg::CardWrongKind),
        E::BadSignature => (S::BAD_REQUEST, Msg::CardBadSignature),
        E::KeyUsage { .. } | E::CertMalformed { .. } | E::WeakKey { .. } | E::UnsupportedKey { .. } => {
            (S::FORBIDDEN, Msg::CardUnusable)
        }
        // Type, challenge, origin, malformed data: not what the agent produces for this page.
        _ => (S::BAD_REQUEST, Msg::CardResponseInvalid),
    }
}

/// What the doctor sees for a `fido::Error`; `None` for our own failures (logged, 500).
pub fn fido_refusal(e: &fido::Error) -> Option<Refusal> {
    use fido::Error as E;
    Some(match e {
        E::UnknownCredential => Refusal::UnknownCredential,
        E::CounterRegression { .. } => Refusal::CounterRegression,
        E::AttestationRefused { .. } | E::BackupEligibleRefused | E::BackupEligibilityChanged { .. } => Refusal::PolicyRefused,
        E::UserNotVerified | E::UserNotPresent => Refusal::UserNotVerified,
        E::CredentialAlreadyRegistered => Refusal::AlreadyLinked,
        E::NoCredentials => Refusal::NoCredentials,
        E::ChallengeMismatch | E::OriginMismatch | E::RpIdMismatch | E::InvalidSignature | E::InvalidResponse(_) => {
            Refusal::InvalidResponse
        }
        _ => return None,
    })
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
