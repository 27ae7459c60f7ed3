//! The refusal catalogues: every API code documented in `openapi.json` under its status, every
//! browser refusal in Japanese and English, and snapshots of both catalogues and of the refusal
//! page, so a changed code, status or message shows up in review.

use std::fmt::Write as _;

use axum::http::StatusCode;
use card::verify::VerifyError;
use serde_json::Value;

use super::*;
use crate::http::AppError;
use crate::http::pages;
use crate::password::Weakness;

/// One of every API refusal.
fn every_api_refusal() -> Vec<ApiRefusal> {
    use ApiRefusal::*;
    let all = vec![
        BadRequest("Failed to deserialize the JSON body".into()),
        PresenterMissing,
        PresenterNotAllowed,
        HashAlgWithoutHashes,
        HashCount,
        HashNotSha256 { index: 2 },
        BadHashAlg,
        NumSignaturesRange,
        NumSignaturesMismatch,
        BadTtl,
        TtlTooLong { max: 300 },
        ClientNotRegistered,
        ClientDisabled,
        WrongRole(ServiceRole::Emr),
        ClinicNotAllowed("C002".into()),
        DoctorNotInClinic { doctor_id: "doctor1".into(), clinic_id: "C001".into() },
        NotADoctor,
        DoctorDisabled,
        SessionNotFound,
        SessionAlreadyEnded,
        NoSession,
        SessionJustEnded,
        SessionExpired,
        SessionIdleExpired,
        InvalidToken,
        TokenExpired,
        TokenNotYetValid,
        CnfMismatch,
        SessionEnded,
        TokenAlreadyUsed,
        OqsBadFileName("the file name must look like EPSsiDMP01req_<id>.xml".into()),
        OqsTooLarge { max: 1_048_576 },
        OqsNotXml("unexpected end of stream".into()),
        OqsNameInUse,
        OqsQueueFull { max: 1000 },
        OqsClinicNotFound("C009".into()),
        OqsClinicDisabled,
        OqsRequestNotFound,
        OqsBadWait { max: 30 },
        AgentCertNotRegistered,
        AgentCertRevoked,
        AgentClinicDisabled,
        AgentBadId,
        RelayHeld { agent_id: "9b1c0d7e-agent".into(), last_seen: 1_700_000_000 },
        OqsRequestOver { status: "expired" },
        ReleaseNotFound,
        NotFound,
        Unavailable,
        Internal,
    ];
    // A new variant does not compile here until it is listed above too.
    for r in &all {
        match r {
            BadRequest(_) | PresenterMissing | PresenterNotAllowed | HashAlgWithoutHashes | HashCount | HashNotSha256 { .. }
            | BadHashAlg | NumSignaturesRange | NumSignaturesMismatch | BadTtl | TtlTooLong { .. } | ClientNotRegistered
            | ClientDisabled | WrongRole(_) | ClinicNotAllowed(_) | DoctorNotInClinic { .. } | NotADoctor | DoctorDisabled
            | SessionNotFound | SessionAlreadyEnded | NoSession | SessionJustEnded | SessionExpired | SessionIdleExpired
            | InvalidToken | TokenExpired | TokenNotYetValid | CnfMismatch | SessionEnded | TokenAlreadyUsed | NotFound
            | Unavailable | Internal => {}
            OqsBadFileName(_) | OqsTooLarge { .. } | OqsNotXml(_) | OqsNameInUse | OqsQueueFull { .. } | OqsClinicNotFound(_)
            | OqsClinicDisabled | OqsRequestNotFound | OqsBadWait { .. } | AgentCertNotRegistered | AgentCertRevoked
            | AgentClinicDisabled | AgentBadId | RelayHeld { .. } | OqsRequestOver { .. } => {}
            ReleaseNotFound => {}
        }
    }
    all
}

/// One of every browser refusal (a card failure of each kind of message).
fn every_refusal() -> Vec<Refusal> {
    use Refusal::*;
    let mut all = vec![
        NotFound,
        BadOrigin,
        BodyIncomplete,
        BodyTimeout,
        PayloadTooLarge,
        Unavailable,
        Internal,
        CertRevoked,
        ClinicDisabled,
        CertNotRegistered,
        MissingFields,
        InvalidCredentials { tries_left: Some(2), lock_minutes: 15 },
        InvalidCredentials { tries_left: None, lock_minutes: 15 },
        LoginLocked { until: 0 },
        DoctorOnly,
        TemporaryPasswordExpired,
        PasswordCurrentWrong,
        PasswordMismatch,
        PasswordSameAsOld,
        PasswordChangedMeanwhile,
        LoginRequired,
        PasswordChangeRequired,
        ReauthRequired,
        CredentialNotFound,
        NameInvalid,
        CodeMalformed,
        CodeWrong { tries_left: Some(4) },
        CodeWrong { tries_left: None },
        CodeExpired,
        CodeUsed,
        CodeExhausted,
        CodeVoided,
        FidoBadRequest,
        CeremonyMissing,
        TimedOut,
        Cancelled,
        NoCredentials,
        UnknownCredential,
        CredentialOfAnotherDoctor,
        CounterRegression,
        PolicyRefused,
        UserNotVerified,
        AlreadyLinked,
        InvalidResponse,
        CardBadRequest,
        BadCardKind,
        NoCardLinked,
        LinkNotAuthorised,
        ChallengeMissing,
        ChallengeExpired,
        ResponseMalformed,
        CardNotLinked,
        CardOfAnotherDoctor,
        CardKeyMismatch,
        RoleMissingNeedsCode,
        CardAlreadyLinked,
        CardLinkedToAnotherDoctor,
        UpstreamNotConfigured,
        PasswordLoginOff,
        UpstreamFlowUnknown,
        UpstreamFlowMismatch,
        UpstreamFlowExpired,
        UpstreamProviderError,
        UpstreamUnavailable,
        UpstreamTokenRefused,
        UpstreamIdTokenInvalid,
        UpstreamIdTokenExpired,
        UpstreamNonceMismatch,
        UpstreamUnknownUser,
        UpstreamUserDisabled,
    ];
    all.extend(
        [Weakness::Length, Weakness::Common, Weakness::Personal, Weakness::Context, Weakness::Guessable].map(PasswordWeak),
    );
    let now = time::OffsetDateTime::UNIX_EPOCH;
    all.extend(
        [
            VerifyError::Expired { not_after: now },
            VerifyError::NotYetValid { not_before: now },
            VerifyError::Revoked,
            VerifyError::NoCrl,
            VerifyError::SigningCertificate,
            VerifyError::PolicyNotAllowed { found: vec![] },
            VerifyError::UntrustedIssuer { reason: "unknown issuer".into() },
            VerifyError::RoleMissing,
            VerifyError::CardKindMismatch { expected: card::CardKind::Hpki, found: "jpki".into() },
            VerifyError::BadSignature,
            VerifyError::KeyUsage { reason: "no digitalSignature".into() },
            VerifyError::TypeMismatch,
        ]
        .map(CardVerify),
    );
    for r in &all {
        match r {
            NotFound | BadOrigin | BodyIncomplete | BodyTimeout | PayloadTooLarge | Unavailable | Internal | CertRevoked
            | ClinicDisabled | CertNotRegistered | MissingFields | InvalidCredentials { .. } | LoginLocked { .. } | DoctorOnly
            | TemporaryPasswordExpired | PasswordCurrentWrong | PasswordMismatch | PasswordSameAsOld | PasswordWeak(_)
            | PasswordChangedMeanwhile | LoginRequired | PasswordChangeRequired | ReauthRequired | CredentialNotFound
            | NameInvalid | CodeMalformed | CodeWrong { .. } | CodeExpired | CodeUsed | CodeExhausted | CodeVoided
            | FidoBadRequest | CeremonyMissing | TimedOut | Cancelled | NoCredentials | UnknownCredential
            | CredentialOfAnotherDoctor | CounterRegression | PolicyRefused | UserNotVerified | AlreadyLinked
            | InvalidResponse | CardBadRequest | BadCardKind | NoCardLinked | LinkNotAuthorised | ChallengeMissing
            | ChallengeExpired | ResponseMalformed | CardVerify(_) | CardNotLinked | CardOfAnotherDoctor | CardKeyMismatch
            | RoleMissingNeedsCode | CardAlreadyLinked | CardLinkedToAnotherDoctor | UpstreamNotConfigured | PasswordLoginOff
            | UpstreamFlowUnknown | UpstreamFlowMismatch | UpstreamFlowExpired | UpstreamProviderError | UpstreamUnavailable
            | UpstreamTokenRefused | UpstreamIdTokenInvalid | UpstreamIdTokenExpired | UpstreamNonceMismatch
            | UpstreamUnknownUser | UpstreamUserDisabled => {}
        }
    }
    all
}

/// What the body reader answers on the API too (in English, see `body.rs`).
const BODY_REFUSALS: [Refusal; 3] = [Refusal::BodyIncomplete, Refusal::BodyTimeout, Refusal::PayloadTooLarge];

/// The descriptions of the responses of `status` in the OpenAPI document, on every operation.
fn documented(doc: &Value, status: StatusCode) -> Vec<String> {
    let mut found = Vec::new();
    for operations in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for operation in operations.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(text) = operation["responses"][status.as_str()]["description"].as_str() {
                found.push(text.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_api_refusal_is_in_the_openapi_document_under_its_status() {
    let doc: Value = serde_json::from_str(super::super::api::OPENAPI).unwrap();
    let general = doc["components"]["schemas"]["Error"]["description"].as_str().unwrap_or_default();
    let api = every_api_refusal().into_iter().map(|r| (r.code(), r.status()));
    let body = BODY_REFUSALS.iter().map(|r| (r.code(), r.status()));
    let mut missing = Vec::new();
    for (code, status) in api.chain(body) {
        let quoted = format!("`{code}`");
        let listed = documented(&doc, status).iter().any(|d| d.contains(&quoted))
            || general.contains(&format!("{quoted} ({}", status.as_u16()));
        if !listed {
            missing.push(format!("{code} ({status})"));
        }
    }
    assert!(missing.is_empty(), "not in openapi.json under their status: {missing:?}");
}

#[test]
fn every_browser_refusal_reads_in_japanese_and_english() {
    for r in every_refusal() {
        for msg in [r.msg(), r.title()] {
            let (ja, en) = (msg.text(Lang::Ja), msg.text(Lang::En));
            assert!(!ja.is_empty() && !en.is_empty(), "{r:?}: {msg:?} has an empty text");
            assert_ne!(ja, en, "{r:?}: {msg:?} is not translated");
            assert!(!ja.is_ascii(), "{r:?}: {msg:?} has no Japanese text");
        }
        assert!(r.message(Lang::Ja).starts_with(r.msg().text(Lang::Ja)), "{r:?}");
    }
}

#[test]
fn api_refusal_catalogue() {
    let mut table = String::new();
    for r in every_api_refusal() {
        let _ = writeln!(table, "{} {} — {}", r.status().as_u16(), r.code(), r.message());
    }
    insta::assert_snapshot!(table);
}

#[test]
fn browser_refusal_catalogue() {
    let mut table = String::new();
    for r in every_refusal() {
        let _ = writeln!(table, "{} {}\n  ja: {}\n  en: {}", r.status().as_u16(), r.code(), r.message(Lang::Ja), r.message(Lang::En));
    }
    insta::assert_snapshot!(table);
}

async fn body_of(e: AppError) -> (StatusCode, String) {
    let res = axum::response::IntoResponse::into_response(e);
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn refusal_pages() {
    let (status, gate) = body_of(AppError::Page(Refusal::CertNotRegistered, Lang::Ja)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    insta::assert_snapshot!("gate_refusal_page_ja", gate);
    let (status, locked) = body_of(AppError::Page(Refusal::ReauthRequired, Lang::En)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    insta::assert_snapshot!("reauth_refusal_page_en", locked);
    // The page is the one layout's message page, nothing else.
    let r = Refusal::NotFound;
    let (_, page) = body_of(AppError::Page(r.clone(), Lang::En)).await;
    assert_eq!(page, pages::message(Lang::En, r.title(), &r.message(Lang::En)).into_string());
}

#[tokio::test]
async fn ceremony_refusals_are_json_with_the_code_and_the_message() {
    let r = Refusal::CodeWrong { tries_left: Some(4) };
    let (status, body) = body_of(AppError::Json(r.clone(), Lang::En)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({ "error": "code_wrong", "message": r.message(Lang::En) }));
    assert!(r.message(Lang::En).ends_with(" 4"), "{}", r.message(Lang::En));
}
