//! Card login routes (docs/design.md §3.3, §3.6, §3.7): a challenge for the card agent, the agent's signed
//! answer checked with `card::verify`, and then either a signing session (like FIDO) or a newly
//! linked card.
//!
//! | step | request | answer |
//! |---|---|---|
//! | challenge | `POST /auth/card/challenge {"card","purpose"?,"code"?}` | `{"challenge","origin","agent_url","card","purpose"}` |
//! | (page → agent) | `POST http://127.0.0.1:PORT/v1/sign {"card","challenge","origin","pin"}` | `{"client_data","signature","certificate","chain"}` |
//! | finish | `POST /auth/card/finish` with the agent's answer unchanged | `{"ok","redirect"}` |
//! | remove | `POST /auth/card/credentials/{id}/remove` (form) | redirect |
//!
//! The PIN goes from the page to the agent only; the finish body is exactly
//! `card::verify::CardResponse` (unknown keys refused), so it cannot carry a PIN here.
//!
//! A challenge is bound to the browser session (SHA-256 of its id), the doctor, the clinic, the
//! card kind and the purpose, lives 120 s and is taken with one `DELETE … RETURNING` before
//! anything else is looked at: a replay, a second instance or another browser session finds
//! nothing. Linking (`purpose = "link"`) needs a registration code with the challenge, or comes
//! from `/fido/link/finish {"credential","card"}` after a FIDO presence check (the shared rule in
//! `http::link`). Every outcome is audited with the reason code and the certificate fingerprint.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use card::CardKind;
use card::verify::{CardResponse, Expected, VerifiedCard, VerifyError};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::{AppError, Result};
use super::extract::CurrentDoctor;
use super::fido::{audit_removal, back, need_doctor};
use super::i18n::{Lang, Msg};
use super::link::{
    CodeOutcome, Presence, Refusal, check_registration_code, code_link_refusal, open_signing_session, reauth_required,
    recently_proven,
};
use crate::store::{
    self, AnchorKind, AuditEvent, AuthMethod, AuthenticatorUse, CardChallenge, CardPurpose, LinkAuthorisation,
    NewCardChallenge, NewCardCredential, Outcome,
};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/card/challenge", post(challenge))
        .route("/auth/card/finish", post(finish))
        // The ceremony routes above answer JSON, errors included; removal is a form post.
        .route_layer(axum::middleware::from_fn(super::error::json_internal_errors))
        .route("/auth/card/credentials/{id}/remove", post(remove))
}

/// RFC 8176 `amr` of a card login after the password login: password, smart card, PIN — several
/// factors. (`hwk` would be true too, but `sc` is the more specific value for a card.)
const CARD_AMR: [&str; 4] = ["pwd", "sc", "pin", "mfa"];

fn kinds(card: &str) -> Option<(CardKind, AnchorKind, AuthMethod)> {
    match card {
        "hpki" => Some((CardKind::Hpki, AnchorKind::Hpki, AuthMethod::Hpki)),
        "jpki" => Some((CardKind::Jpki, AnchorKind::Jpki, AuthMethod::Jpki)),
        _ => None,
    }
}

fn method_of(kind: AnchorKind) -> AuthMethod {
    if kind == AnchorKind::Hpki { AuthMethod::Hpki } else { AuthMethod::Jpki }
}

fn card_kind_of(kind: AnchorKind) -> CardKind {
    if kind == AnchorKind::Hpki { CardKind::Hpki } else { CardKind::Jpki }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::internal(e.to_string())
}

/// Context of one card request.
struct Ctx<'a> {
    state: &'a AppState,
    doctor: &'a CurrentDoctor,
    lang: Lang,
    now: i64,
}

/// What an audit row of a card step carries besides the doctor.
#[derive(Default)]
struct Facts {
    method: Option<AuthMethod>,
    purpose: Option<CardPurpose>,
    authenticator_id: Option<String>,
    cert_sha256: Option<String>,
    revocation_checked: Option<bool>,
    code_id: Option<String>,
}

impl Ctx<'_> {
    async fn audit(&self, event: AuditEvent) -> Result<()> {
        Ok(self.state.store.audit(&event, self.now).await?)
    }

    fn authentication(&self, f: &Facts, outcome: Outcome, reason: Option<&'static str>) -> AuditEvent {
        AuditEvent::CardAuthentication {
            clinic_id: self.doctor.clinic.clinic_id.clone(),
            user_id: self.doctor.user.id.clone(),
            method: f.method.map_or("card", AuthMethod::as_str),
            purpose: f.purpose.map_or("signing_session", CardPurpose::as_str),
            authenticator_id: f.authenticator_id.clone(),
            outcome,
            reason,
            cert_sha256: f.cert_sha256.clone(),
            revocation_checked: f.revocation_checked,
        }
    }

    /// Audits a refusal and turns it into the JSON error the page shows. A refused link is also
    /// recorded as a failed link (with the code it was tried with).
    async fn refuse(&self, f: &Facts, r: Refusal) -> AppError {
        let mut events = vec![self.authentication(f, Outcome::Failure, Some(r.code))];
        if f.purpose == Some(CardPurpose::Link) {
            events.push(AuditEvent::AuthenticatorLinkFailed {
                clinic_id: self.doctor.clinic.clinic_id.clone(),
                user_id: self.doctor.user.id.clone(),
                kind: f.method.map_or("card", AuthMethod::as_str),
                reason: r.code,
                code_id: f.code_id.clone(),
            });
        }
        for event in events {
            if let Err(e) = self.audit(event).await {
                return e;
            }
        }
        tracing::info!(reason = r.code, card.cert_sha256 = f.cert_sha256.as_deref(), "card step refused");
        AppError::Json { status: r.status, code: r.code, message: r.message(self.lang) }
    }

    fn session_hash(&self) -> Result<[u8; 32]> {
        // A signed-in doctor always has a stored session (the login saved it).
        self.doctor.session.id_hash().ok_or_else(|| AppError::internal("browser session without id"))
    }

    fn redirect(&self, done: &str) -> Json<Value> {
        Json(json!({ "ok": true, "redirect": format!("/methods?done={done}&lang={}", self.lang.code()) }))
    }
}

/// What the doctor sees for a verification failure.
fn refusal_of(e: &VerifyError) -> Refusal {
    use StatusCode as S;
    use VerifyError as E;
    let (status, msg) = match e {
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
        E::KeyUsage { .. } | E::CertMalformed { .. } | E::WeakKey { .. } | E::UnsupportedKey { .. } => (S::FORBIDDEN, Msg::CardUnusable),
        // Type, challenge, origin, malformed data: not what the agent produces for this page.
        _ => (S::BAD_REQUEST, Msg::CardResponseInvalid),
    };
    Refusal::new(e.code(), status, msg)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    card: String,
    #[serde(default)]
    purpose: Option<String>,
    /// A registration code, for `purpose = "link"`.
    #[serde(default)]
    code: Option<String>,
}

/// Stores a new challenge for this browser session and returns what the page passes to the agent.
async fn issue(
    ctx: &Ctx<'_>,
    kind: AnchorKind,
    purpose: CardPurpose,
    enrollment_code_id: Option<&str>,
    linked_via: Option<&str>,
) -> Result<Value> {
    let challenge: [u8; 32] = rand::random();
    let config = &ctx.state.config;
    ctx.state
        .store
        .put_card_challenge(
            &NewCardChallenge {
                session_hash: &ctx.session_hash()?,
                user_id: &ctx.doctor.user.id,
                clinic_id: &ctx.doctor.clinic.clinic_id,
                kind,
                purpose,
                challenge: &challenge,
                enrollment_code_id,
                linked_via,
                expires_at: ctx.now + config.card.challenge_timeout_secs,
            },
            ctx.now,
        )
        .await?;
    Ok(json!({
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": config.public_origin(),
        "agent_url": config.card.agent_origin(),
        "card": kind.as_str(),
        "purpose": purpose.as_str(),
    }))
}

/// A link challenge authorised by a presence check with an already-linked authenticator
/// (`via` = `<kind>:<id>`), for `/fido/link/finish {"card"}`.
pub(super) async fn link_challenge(state: &AppState, doctor: &CurrentDoctor, lang: Lang, card: &str, via: &str) -> Result<Value> {
    let ctx = Ctx { state, doctor, lang, now: state.clock.unix() };
    let Some((_, kind, _)) = kinds(card) else {
        let f = Facts { purpose: Some(CardPurpose::Link), ..Facts::default() };
        return Err(ctx.refuse(&f, Refusal::new("bad_card_kind", StatusCode::BAD_REQUEST, Msg::CardBadRequest)).await);
    };
    issue(&ctx, kind, CardPurpose::Link, None, Some(via)).await
}

#[tracing::instrument(name = "card.challenge", skip_all, fields(principal.id))]
async fn challenge(
    State(state): State<AppState>,
    lang: Lang,
    doctor: std::result::Result<CurrentDoctor, AppError>,
    body: std::result::Result<Json<ChallengeBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let doctor = need_doctor(doctor, lang)?;
    tracing::Span::current().record("principal.id", doctor.user.id.as_str());
    let ctx = Ctx { state: &state, doctor: &doctor, lang, now: state.clock.unix() };
    let bad = || AppError::json(StatusCode::BAD_REQUEST, "bad_request", lang, Msg::CardBadRequest);
    let Ok(Json(body)) = body else { return Err(bad()) };
    let Some((_, kind, method)) = kinds(&body.card) else { return Err(bad()) };
    let Some(purpose) = CardPurpose::parse(body.purpose.as_deref().unwrap_or("signing_session")) else { return Err(bad()) };
    let facts = Facts { method: Some(method), purpose: Some(purpose), ..Facts::default() };
    match purpose {
        CardPurpose::SigningSession => {
            // Refused before the doctor types a PIN: without a linked card of this kind the
            // login cannot succeed.
            let linked = state.store.card_credentials_of(&doctor.user.id).await?;
            if !linked.iter().any(|c| c.kind == kind.as_str()) {
                let r = Refusal::new("no_card_linked", StatusCode::CONFLICT, Msg::CardNoneLinked);
                return Err(ctx.refuse(&facts, r).await);
            }
            Ok(Json(issue(&ctx, kind, purpose, None, None).await?))
        }
        CardPurpose::Link => {
            let Some(code) = body.code.as_deref() else {
                // Linking with an already-linked authenticator goes through /fido/link/finish.
                let r = Refusal::new("link_not_authorised", StatusCode::FORBIDDEN, Msg::CardLinkNeedsCode);
                return Err(ctx.refuse(&facts, r).await);
            };
            // Refused before the code is looked at, so the refusal costs none of its tries.
            if let Some(r) = code_link_refusal(&state, &doctor).await? {
                return Err(ctx.refuse(&facts, r).await);
            }
            match check_registration_code(&state, &doctor.user.id, lang, code, ctx.now).await? {
                CodeOutcome::Valid { code_id } => Ok(Json(issue(&ctx, kind, purpose, Some(&code_id), None).await?)),
                CodeOutcome::Refused(r, code_id) => Err(ctx.refuse(&Facts { code_id, ..facts }, r).await),
            }
        }
    }
}

#[tracing::instrument(name = "card.finish", skip_all, fields(principal.id, card.cert_sha256))]
async fn finish(
    State(state): State<AppState>,
    lang: Lang,
    doctor: std::result::Result<CurrentDoctor, AppError>,
    body: std::result::Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>> {
    let doctor = need_doctor(doctor, lang)?;
    tracing::Span::current().record("principal.id", doctor.user.id.as_str());
    let ctx = Ctx { state: &state, doctor: &doctor, lang, now: state.clock.unix() };
    // The challenge is taken first, whatever the body: every finish attempt uses it up.
    let taken = state.store.take_card_challenge(&ctx.session_hash()?, &doctor.user.id, &doctor.clinic.clinic_id).await?;
    let Some(taken) = taken else {
        // Never issued to this browser session, taken already (replay, another instance), or
        // issued to another browser session.
        let r = Refusal::new("challenge_missing", StatusCode::BAD_REQUEST, Msg::CardChallengeMissing);
        return Err(ctx.refuse(&Facts::default(), r).await);
    };
    let mut facts = Facts {
        method: Some(method_of(taken.kind)),
        purpose: Some(taken.purpose),
        code_id: taken.enrollment_code_id.clone(),
        ..Facts::default()
    };
    if taken.expires_at <= ctx.now {
        let r = Refusal::new("challenge_expired", StatusCode::BAD_REQUEST, Msg::CardChallengeExpired);
        return Err(ctx.refuse(&facts, r).await);
    }
    let response = match body.map(|Json(v)| serde_json::from_value::<CardResponse>(v)) {
        Ok(Ok(r)) => r,
        _ => {
            let r = Refusal::new("response_malformed", StatusCode::BAD_REQUEST, Msg::CardResponseInvalid);
            return Err(ctx.refuse(&facts, r).await);
        }
    };
    // Fingerprint of the presented certificate, for the audit row even when it is refused.
    let presented = crate::tls::fingerprint(&response.certificate);
    tracing::Span::current().record("card.cert_sha256", presented.as_str());
    facts.cert_sha256 = Some(presented);
    let kind = card_kind_of(taken.kind);
    // An anchor that cannot be used (or whose CRL has not arrived yet) refuses only the cards
    // under it, with its own reason (anchor_unusable, no_crl).
    let trust = state.card_trust.get(&state.store, kind).await.map_err(internal)?;
    let origin = state.config.public_origin();
    let expected = Expected { kind, challenge: &taken.challenge, origin: &origin };
    let verified = match card::verify::verify(&response, &expected, &trust, &state.config.card.policy(), state.clock.now()) {
        Ok(v) => v,
        Err(e) => return Err(ctx.refuse(&facts, refusal_of(&e)).await),
    };
    facts.revocation_checked = Some(verified.revocation_checked);
    if !verified.revocation_checked {
        // docs/design.md §3.3: an anchor without revocation data is logged on every use (the audit row
        // carries revocation_checked = false as well).
        tracing::warn!(card.cert_sha256 = %verified.cert_sha256, card.anchor_sha256 = %verified.anchor_sha256,
            "card accepted without revocation check (anchor policy none)");
    }
    match taken.purpose {
        CardPurpose::SigningSession => open_session(&ctx, facts, &taken, &verified).await,
        CardPurpose::Link => link(&ctx, facts, &taken, &verified).await,
    }
}

/// Maps a verified card to the doctor's linked credential and opens a signing session.
async fn open_session(ctx: &Ctx<'_>, mut facts: Facts, taken: &CardChallenge, v: &VerifiedCard) -> Result<Json<Value>> {
    let (state, doctor) = (ctx.state, ctx.doctor);
    let cred = match state.store.card_credential_by_card(taken.kind, &v.issuer_sha256, &v.serial_hex).await {
        Ok(c) => c,
        Err(store::Error::NotFound) => {
            return Err(ctx.refuse(&facts, Refusal::new("card_not_linked", StatusCode::FORBIDDEN, Msg::CardNotLinked)).await);
        }
        Err(e) => return Err(e.into()),
    };
    facts.authenticator_id = Some(cred.id.clone());
    if cred.user_id != doctor.user.id {
        let r = Refusal::new("card_of_another_doctor", StatusCode::FORBIDDEN, Msg::CardOtherDoctor);
        return Err(ctx.refuse(&facts, r).await);
    }
    if cred.spki_sha256 != v.spki_sha256 {
        // Same issuer and serial with another key: a mis-issued or forged certificate.
        let r = Refusal::new("card_key_mismatch", StatusCode::FORBIDDEN, Msg::CardNotLinked);
        return Err(ctx.refuse(&facts, r).await);
    }
    let checked = ctx.authentication(&facts, Outcome::Success, None);

    let config = &state.config.signing_session;
    // The card's key is generated on and never leaves the card (device-bound hardware key), so
    // the session is AAL3 unless the configured lifetimes exceed the AAL3 bounds.
    let acr = if config.exceeds_aal3() { "aal2" } else { "aal3" };
    let method = method_of(taken.kind);
    let presence = Presence { method, authenticator_id: &cred.id, amr: &CARD_AMR, acr };
    let used = AuthenticatorUse::Card { id: &cred.id };
    if !open_signing_session(state, doctor, ctx.lang, &presence, used, checked, ctx.now).await? {
        return Err(AppError::internal("card opening refused a FIDO counter"));
    }
    Ok(ctx.redirect("authenticated"))
}

/// Links a verified card to the doctor, with the authorisation the challenge carries.
async fn link(ctx: &Ctx<'_>, facts: Facts, taken: &CardChallenge, v: &VerifiedCard) -> Result<Json<Value>> {
    let (state, doctor) = (ctx.state, ctx.doctor);
    let authorisation = match (&taken.enrollment_code_id, &taken.linked_via) {
        (Some(code_id), _) => LinkAuthorisation::Code { code_id },
        (None, Some(via)) => LinkAuthorisation::Authenticator { via },
        (None, None) => return Err(AppError::internal("card link challenge without authorisation")),
    };
    // docs/design.md §3.3: an HPKI certificate without hcRole (only accepted under hpki_require_role =
    // false) is linked by registration code only — the operator who issued the code vouches for
    // the doctor role.
    if taken.kind == AnchorKind::Hpki && v.hc_role.is_none() && taken.enrollment_code_id.is_none() {
        let r = Refusal::new("role_missing_needs_code", StatusCode::FORBIDDEN, Msg::CardNoRoleNeedsCode);
        return Err(ctx.refuse(&facts, r).await);
    }
    let existing = state.store.card_credentials_of(&doctor.user.id).await?;
    let base = if taken.kind == AnchorKind::Hpki { Msg::Hpki } else { Msg::MyNumber };
    let same_kind = existing.iter().filter(|c| c.kind == taken.kind.as_str()).count();
    let name = format!("{} {}", base.text(ctx.lang), same_kind + 1);
    let id = Uuid::new_v4().to_string();
    let row = NewCardCredential {
        id: &id,
        user_id: &doctor.user.id,
        kind: taken.kind,
        issuer_sha256: &v.issuer_sha256,
        serial_hex: &v.serial_hex,
        spki_sha256: &v.spki_sha256,
        cert_sha256: &v.cert_sha256,
        not_after: v.not_after.unix_timestamp(),
        name: &name,
    };
    match state.store.link_card_credential(&row, authorisation, ctx.now).await {
        Ok(()) => state.store.record_anchor_of(taken.kind, &id, &v.anchor_sha256).await?,
        Err(store::Error::Precondition(_)) => {
            // The code was used, voided or expired between challenge and finish.
            let r = Refusal::new("code_used", StatusCode::FORBIDDEN, Msg::CodeUsedUp);
            return Err(ctx.refuse(&facts, r).await);
        }
        Err(store::Error::Conflict(_)) => {
            // One card, one account: a My Number card in particular cannot serve two doctors.
            let owner = state.store.card_credential_by_card(taken.kind, &v.issuer_sha256, &v.serial_hex).await;
            let r = match owner {
                Ok(c) if c.user_id == doctor.user.id => {
                    Refusal::new("card_already_linked", StatusCode::CONFLICT, Msg::CardAlreadyLinked)
                }
                _ => Refusal::new("card_linked_to_another_doctor", StatusCode::CONFLICT, Msg::CardLinkedToOther),
            };
            return Err(ctx.refuse(&facts, r).await);
        }
        Err(e) => return Err(e.into()),
    }
    let via = match authorisation {
        LinkAuthorisation::Code { code_id } => format!("code:{code_id}"),
        LinkAuthorisation::Authenticator { via } => via.to_owned(),
    };
    ctx.audit(ctx.authentication(&Facts { authenticator_id: Some(id.clone()), ..facts }, Outcome::Success, None)).await?;
    ctx.audit(AuditEvent::AuthenticatorLinked {
        clinic_id: doctor.clinic.clinic_id.clone(),
        user_id: doctor.user.id.clone(),
        kind: method_of(taken.kind).as_str(),
        authenticator_id: id,
        via,
    })
    .await?;
    Ok(ctx.redirect("linked"))
}

async fn remove(State(state): State<AppState>, lang: Lang, doctor: CurrentDoctor, Path(id): Path<String>) -> Result<Response> {
    let now = state.clock.unix();
    let not_found = || AppError::page(StatusCode::NOT_FOUND, lang, Msg::ErrorTitle, Msg::CredentialNotFound);
    let linked = state.store.card_credentials_of(&doctor.user.id).await?;
    let Some(card) = linked.into_iter().find(|c| c.id == id) else { return Err(not_found()) };
    if !recently_proven(&state, &doctor, "remove", &id).await? {
        return Err(reauth_required(lang));
    }
    let ended = match state.store.remove_card_credential(&doctor.user.id, &id, now).await {
        Ok(ended) => ended,
        Err(store::Error::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let kind = if card.kind == AnchorKind::Hpki.as_str() { "hpki" } else { "jpki" };
    audit_removal(&state, kind, &doctor.clinic.clinic_id, &doctor.user.id, &id, "doctor", &ended, now).await?;
    Ok(back(lang, "removed"))
}
