//! Card login routes (docs/design.md §3.3, §3.6, §3.7): a challenge for the card agent, the agent's signed
//! answer checked with `card::verify`, and then either a signing session (like FIDO) or a newly
//! linked card.
//!
//! | step | request | answer |
//! |---|---|---|
//! | challenge | `POST /auth/card/challenge {"card","purpose"?,"code"?}` | `{"challenge","origin","agent_url","card","purpose"}` |
//! | (page → agent) | `POST http://127.0.0.1:PORT/v1/sign {"card","challenge","origin","pin"}` | `{"client_data","signature","certificate","chain"}` |
//! | finish | `POST /auth/card/finish` with the agent's answer unchanged | `{"ok","redirect"}` |
//! | confirm to add another | `POST /auth/card/challenge {"card","purpose":"confirm","then"}` → agent → finish | creation options (`then = "fido"`) or a link challenge (`"hpki"`, `"jpki"`) |
//!
//! The PIN goes from the page to the agent only; the finish body is exactly
//! `card::verify::CardResponse` (unknown keys refused), so it cannot carry a PIN here.
//!
//! A challenge is bound to the browser session (SHA-256 of its id), the doctor, the clinic, the
//! card kind and the purpose, lives 120 s and is taken with one `DELETE … RETURNING` before
//! anything is decided: a replay, a second instance or another browser session finds
//! nothing. Linking (`purpose = "link"`) needs a registration code with the challenge, or comes
//! after a presence check with a linked authenticator: from `/fido/link/finish {"credential","card"}`
//! (FIDO), or from the finish of a `confirm` challenge (a linked card), whose answer is then the
//! next step instead of a redirect (the shared rule in `http::link`). Every outcome is audited with the reason code and the certificate fingerprint.

use axum::extract::rejection::JsonRejection;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use card::CardKind;
use card::verify::{CardResponse, Expected, VerifiedCard};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::ceremony::Ceremony;
use super::error::{AppError, Result};
use super::i18n::{Done, Method, Msg};
use super::link::{CodeOutcome, Presence, check_registration_code, code_link_refusal, open_signing_session};
use super::refusal::Refusal;
use crate::assurance::{Assurance, Proof};
use crate::store::{
    self, AnchorKind, AuditEvent, AuthMethod, AuthenticatorUse, CardChallenge, CardPurpose, LinkAuthorisation,
    NewCardChallenge, NewCardCredential, Outcome,
};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/card/challenge", post(challenge))
        .route("/auth/card/finish", post(finish))
        // The ceremony routes answer JSON, errors included (removal is in `manage.rs`).
        .route_layer(axum::middleware::from_fn(super::error::json_internal_errors))
}

/// The store's names of a card kind: its trust anchors (and card rows), and its login method.
fn anchor_of(kind: CardKind) -> AnchorKind {
    match kind {
        CardKind::Hpki => AnchorKind::Hpki,
        CardKind::Jpki => AnchorKind::Jpki,
    }
}

/// The pages' name of a card kind (for the notice the page shows).
fn page_method(kind: CardKind) -> Method {
    match kind {
        CardKind::Hpki => Method::Hpki,
        CardKind::Jpki => Method::Jpki,
    }
}

fn method_of(kind: CardKind) -> AuthMethod {
    match kind {
        CardKind::Hpki => AuthMethod::Hpki,
        CardKind::Jpki => AuthMethod::Jpki,
    }
}

/// The card kind of a challenge row (only card anchors are stored on challenges).
fn kind_of(anchor: AnchorKind) -> CardKind {
    if anchor == AnchorKind::Hpki { CardKind::Hpki } else { CardKind::Jpki }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::internal(e.to_string())
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

impl Ceremony {
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

    /// Audits a refusal of a card step and turns it into the JSON error the page shows. A
    /// refused link is also recorded as a failed link (with the code it was tried with).
    async fn refuse_card(&self, f: &Facts, r: Refusal) -> AppError {
        let mut events = vec![self.authentication(f, Outcome::Failure, Some(r.code()))];
        let method = f.method.map_or("card", AuthMethod::as_str);
        if f.purpose == Some(CardPurpose::Link) {
            events.push(AuditEvent::AuthenticatorLinkFailed {
                clinic_id: self.doctor.clinic.clinic_id.clone(),
                user_id: self.doctor.user.id.clone(),
                kind: method,
                reason: r.code(),
                code_id: f.code_id.clone(),
            });
        } else if f.purpose == Some(CardPurpose::Confirm) {
            // A presence check before linking another authenticator: audited, but no login.
        } else {
            // A refused login (docs/metrics.md); `card` while the challenge, and so the kind, is
            // unknown. Presence checks for linking are no logins.
            self.state.metrics.login(method, Outcome::Failure, Some(r.code()));
        }
        tracing::info!(reason = r.code(), card.cert_sha256 = f.cert_sha256.as_deref(), "card step refused");
        self.refuse(events, r).await
    }
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
    /// For `purpose = "confirm"`: what to link after the check (`fido`, `hpki`, `jpki`).
    #[serde(default)]
    then: Option<String>,
}

/// What a confirmation with a linked card allows linking next (the stored spelling).
fn then_link(s: &str) -> Option<&'static str> {
    match s {
        "fido" => Some("fido"),
        "hpki" => Some("hpki"),
        "jpki" => Some("jpki"),
        _ => None,
    }
}

/// Stores a new challenge for this browser session and returns what the page passes to the agent;
/// `None` if `only_if_linked` and the doctor has no linked card of this kind (nothing is stored).
async fn issue(
    ctx: &Ceremony,
    kind: CardKind,
    purpose: CardPurpose,
    enrollment_code_id: Option<&str>,
    linked_via: Option<&str>,
    then_link: Option<&str>,
    only_if_linked: bool,
) -> Result<Option<Value>> {
    let challenge: [u8; 32] = rand::random();
    let config = &ctx.state.config;
    let row = NewCardChallenge {
        session_hash: &ctx.session_hash()?,
        user_id: &ctx.doctor.user.id,
        clinic_id: &ctx.doctor.clinic.clinic_id,
        kind: anchor_of(kind),
        purpose,
        challenge: &challenge,
        enrollment_code_id,
        linked_via,
        then_link,
        expires_at: ctx.now + config.card.challenge_timeout_secs,
    };
    if !ctx.state.store.put_card_challenge(&row, only_if_linked, ctx.now).await? {
        return Ok(None);
    }
    Ok(Some(json!({
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": config.public_origin(),
        "agent_url": config.card.agent_origin(),
        "card": kind.as_str(),
        "purpose": purpose.as_str(),
    })))
}

/// A challenge stored unconditionally that was not (cannot happen: `issue` answers `None` only
/// when asked to check for a linked card).
fn not_stored() -> AppError {
    AppError::internal("card challenge not stored")
}

/// A link challenge authorised by a presence check with an already-linked authenticator
/// (`via` = `<kind>:<id>`), for `/fido/link/finish {"card"}`.
pub(super) async fn link_challenge(ctx: &Ceremony, card: &str, via: &str) -> Result<Value> {
    let Ok(kind) = card.parse::<CardKind>() else {
        let f = Facts { purpose: Some(CardPurpose::Link), ..Facts::default() };
        return Err(ctx.refuse_card(&f, Refusal::BadCardKind).await);
    };
    issue(ctx, kind, CardPurpose::Link, None, Some(via), None, false).await?.ok_or_else(not_stored)
}

#[tracing::instrument(name = "card.challenge", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn challenge(ctx: Ceremony, body: std::result::Result<Json<ChallengeBody>, JsonRejection>) -> Result<Json<Value>> {
    let bad = || AppError::Json(Refusal::CardBadRequest, ctx.lang);
    let Ok(Json(body)) = body else { return Err(bad()) };
    let Ok(kind) = body.card.parse::<CardKind>() else { return Err(bad()) };
    let Ok(purpose) = body.purpose.as_deref().unwrap_or("signing_session").parse::<CardPurpose>() else { return Err(bad()) };
    // `then` belongs to a confirmation and to nothing else.
    if body.then.is_some() != (purpose == CardPurpose::Confirm) {
        return Err(bad());
    }
    let (state, doctor) = (&ctx.state, &ctx.doctor);
    let facts = Facts { method: Some(method_of(kind)), purpose: Some(purpose), ..Facts::default() };
    match purpose {
        CardPurpose::SigningSession | CardPurpose::Confirm => {
            let then = match body.then.as_deref() {
                None => None,
                Some(t) => Some(then_link(t).ok_or_else(bad)?),
            };
            // Refused before the doctor types a PIN: without a linked card of this kind the
            // login (or confirmation) cannot succeed. The check is part of the challenge's insert.
            match issue(&ctx, kind, purpose, None, None, then, true).await? {
                Some(challenge) => Ok(Json(challenge)),
                None => Err(ctx.refuse_card(&facts, Refusal::NoCardLinked).await),
            }
        }
        CardPurpose::Link => {
            let Some(code) = body.code.as_deref() else {
                // Linking with an already-linked authenticator goes through /fido/link/finish.
                return Err(ctx.refuse_card(&facts, Refusal::LinkNotAuthorised).await);
            };
            // Refused before the code is looked at, so the refusal costs none of its tries.
            if let Some(r) = code_link_refusal(state, doctor).await? {
                return Err(ctx.refuse_card(&facts, r).await);
            }
            match check_registration_code(state, &doctor.user.id, code, ctx.now).await? {
                CodeOutcome::Valid { code_id } => {
                    Ok(Json(issue(&ctx, kind, purpose, Some(&code_id), None, None, false).await?.ok_or_else(not_stored)?))
                }
                CodeOutcome::Refused(r, code_id) => Err(ctx.refuse_card(&Facts { code_id, ..facts }, r).await),
            }
        }
    }
}

#[tracing::instrument(name = "card.finish", skip_all, fields(principal.id = %ctx.doctor.user.id, card.cert_sha256))]
async fn finish(ctx: Ceremony, body: std::result::Result<Json<Value>, JsonRejection>) -> Result<Json<Value>> {
    let (state, doctor) = (&ctx.state, &ctx.doctor);
    let response = body.ok().and_then(|Json(v)| serde_json::from_value::<CardResponse>(v).ok());
    // The challenge is taken first, whatever the body: every finish attempt uses it up. When the
    // certificate parses, the same statement reads the linked card it names (docs/decisions/0029-card-finish-reads-with-its-take.md);
    // nothing read here is used before the card is verified.
    let key = response.as_ref().and_then(|r| card::verify::card_key(&r.certificate));
    let (session_hash, user_id, clinic_id) = (&ctx.session_hash()?, &doctor.user.id, &doctor.clinic.clinic_id);
    let taken = match &key {
        Some(k) => {
            state.store.take_card_challenge_and_credential(session_hash, user_id, clinic_id, &k.issuer_sha256, &k.serial_hex).await?
        }
        None => state.store.take_card_challenge(session_hash, user_id, clinic_id).await?.map(|t| (t, None)),
    };
    let Some((taken, linked)) = taken else {
        // Never issued to this browser session, taken already (replay, another instance), or
        // issued to another browser session.
        return Err(ctx.refuse_card(&Facts::default(), Refusal::ChallengeMissing).await);
    };
    let kind = kind_of(taken.kind);
    let mut facts = Facts {
        method: Some(method_of(kind)),
        purpose: Some(taken.purpose),
        code_id: taken.enrollment_code_id.clone(),
        ..Facts::default()
    };
    if taken.expires_at <= ctx.now {
        return Err(ctx.refuse_card(&facts, Refusal::ChallengeExpired).await);
    }
    let Some(response) = response else {
        return Err(ctx.refuse_card(&facts, Refusal::ResponseMalformed).await);
    };
    // Fingerprint of the presented certificate, for the audit row even when it is refused.
    let presented = crate::tls::fingerprint(&response.certificate);
    tracing::Span::current().record("card.cert_sha256", presented.as_str());
    facts.cert_sha256 = Some(presented);
    // An anchor that cannot be used (or whose CRL has not arrived yet) refuses only the cards
    // under it, with its own reason (anchor_unusable, no_crl).
    let trust = state.card_trust.get(&state.store, kind).await.map_err(internal)?;
    let origin = state.config.public_origin();
    let expected = Expected { kind, challenge: &taken.challenge, origin: &origin };
    let verified = match card::verify::verify(&response, &expected, &trust, &state.config.card.policy(), state.clock.now()) {
        Ok(v) => v,
        Err(e) => return Err(ctx.refuse_card(&facts, e.into()).await),
    };
    facts.revocation_checked = Some(verified.revocation_checked);
    if !verified.revocation_checked {
        // docs/design.md §3.3: an anchor without revocation data is logged on every use (the audit row
        // carries revocation_checked = false as well).
        tracing::warn!(card.cert_sha256 = %verified.cert.cert_sha256, card.anchor_sha256 = %verified.anchor_sha256,
            "card accepted without revocation check (anchor policy none)");
    }
    // What the take read belongs to this card only if the verified certificate has the same key
    // (it always has, being the same bytes); otherwise it is read again.
    let linked = key.filter(|k| k.issuer_sha256 == verified.cert.issuer_sha256 && k.serial_hex == verified.cert.serial_hex).map(|_| linked);
    match taken.purpose {
        CardPurpose::SigningSession => open_session(&ctx, facts, &taken, &verified, linked).await,
        CardPurpose::Link => link(&ctx, facts, &taken, &verified).await,
        CardPurpose::Confirm => confirm(&ctx, facts, &taken, &verified, linked).await,
    }
}

/// The linked card read together with the challenge, for the verified card (`Some(None)`: none is
/// linked), or `None` when it has to be read now.
type Linked = Option<Option<store::CardCredential>>;

/// The doctor's linked credential of a verified card (refused, and audited, when the card is not
/// linked, is another doctor's, or carries another key).
async fn linked_card(
    ctx: &Ceremony,
    facts: &mut Facts,
    taken: &CardChallenge,
    v: &VerifiedCard,
    linked: Linked,
) -> Result<store::CardCredential> {
    let read = match linked {
        Some(cred) => cred.ok_or(store::Error::NotFound),
        None => ctx.state.store.card_credential_by_card(taken.kind, &v.cert.issuer_sha256, &v.cert.serial_hex).await,
    };
    let cred = match read {
        Ok(c) => c,
        Err(store::Error::NotFound) => return Err(ctx.refuse_card(facts, Refusal::CardNotLinked).await),
        Err(e) => return Err(e.into()),
    };
    facts.authenticator_id = Some(cred.id.clone());
    if cred.user_id != ctx.doctor.user.id {
        return Err(ctx.refuse_card(facts, Refusal::CardOfAnotherDoctor).await);
    }
    if cred.spki_sha256 != v.cert.spki_sha256 {
        // Same issuer and serial with another key: a mis-issued or forged certificate.
        return Err(ctx.refuse_card(facts, Refusal::CardKeyMismatch).await);
    }
    Ok(cred)
}

/// Maps a verified card to the doctor's linked credential and opens a signing session.
async fn open_session(ctx: &Ceremony, mut facts: Facts, taken: &CardChallenge, v: &VerifiedCard, linked: Linked) -> Result<Json<Value>> {
    let cred = linked_card(ctx, &mut facts, taken, v, linked).await?;
    let checked = ctx.authentication(&facts, Outcome::Success, None);
    // The card's key is generated on and never leaves the card: a device-bound hardware key.
    let assurance = Assurance::of(Proof::Card, &ctx.state.config.signing_session);
    let presence = Presence { method: method_of(v.kind), authenticator_id: &cred.id, assurance };
    let used = AuthenticatorUse::Card { id: &cred.id };
    if !open_signing_session(ctx, &presence, used, checked).await? {
        return Err(AppError::internal("card opening refused a FIDO counter"));
    }
    Ok(ctx.redirect(Done::Authenticated(page_method(v.kind))))
}

/// Links a verified card to the doctor, with the authorisation the challenge carries.
async fn link(ctx: &Ceremony, facts: Facts, taken: &CardChallenge, v: &VerifiedCard) -> Result<Json<Value>> {
    let (state, doctor) = (&ctx.state, &ctx.doctor);
    let authorisation = match (&taken.enrollment_code_id, &taken.linked_via) {
        (Some(code_id), _) => LinkAuthorisation::Code { code_id },
        (None, Some(via)) => LinkAuthorisation::Authenticator { via },
        (None, None) => return Err(AppError::internal("card link challenge without authorisation")),
    };
    // docs/design.md §3.3: an HPKI certificate without hcRole (only accepted under hpki_require_role =
    // false) is linked by registration code only — the operator who issued the code vouches for
    // the doctor role.
    if v.kind == CardKind::Hpki && v.hc_role.is_none() && taken.enrollment_code_id.is_none() {
        return Err(ctx.refuse_card(&facts, Refusal::RoleMissingNeedsCode).await);
    }
    let existing = state.store.card_credentials_of(&doctor.user.id).await?;
    let base = if v.kind == CardKind::Hpki { Msg::Hpki } else { Msg::MyNumber };
    let same_kind = existing.iter().filter(|c| c.kind == v.kind.as_str()).count();
    let name = format!("{} {}", base.text(ctx.lang), same_kind + 1);
    let id = Uuid::new_v4().to_string();
    let cert = &v.cert;
    let row = NewCardCredential {
        id: &id,
        user_id: &doctor.user.id,
        kind: anchor_of(v.kind),
        issuer_sha256: &cert.issuer_sha256,
        serial_hex: &cert.serial_hex,
        spki_sha256: &cert.spki_sha256,
        cert_sha256: &cert.cert_sha256,
        not_after: cert.not_after.unix_timestamp(),
        name: &name,
    };
    match state.store.link_card_credential(&row, authorisation, ctx.now).await {
        Ok(()) => state.store.record_anchor_of(anchor_of(v.kind), &id, &v.anchor_sha256).await?,
        Err(store::Error::Precondition(_)) => {
            // The code was used, voided or expired between challenge and finish.
            return Err(ctx.refuse_card(&facts, Refusal::CodeUsed).await);
        }
        Err(store::Error::Conflict(_)) => {
            // One card, one account: a My Number card in particular cannot serve two doctors.
            let owner = state.store.card_credential_by_card(anchor_of(v.kind), &cert.issuer_sha256, &cert.serial_hex).await;
            let r = match owner {
                Ok(c) if c.user_id == doctor.user.id => Refusal::CardAlreadyLinked,
                _ => Refusal::CardLinkedToAnotherDoctor,
            };
            return Err(ctx.refuse_card(&facts, r).await);
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
        kind: method_of(v.kind).as_str(),
        authenticator_id: id,
        via,
    })
    .await?;
    Ok(ctx.redirect(Done::Linked(page_method(v.kind))))
}

/// A confirmation with one of the doctor's linked cards: the proof (which also allows renaming and
/// removing for a while) and the permission to link what the challenge names — a FIDO
/// registration ceremony or a card link challenge, each carrying `<kind>:<card id>` as its
/// single-use, 120 s authorisation, like a confirmation with FIDO (`/fido/link/finish`).
async fn confirm(ctx: &Ceremony, mut facts: Facts, taken: &CardChallenge, v: &VerifiedCard, linked: Linked) -> Result<Json<Value>> {
    let cred = linked_card(ctx, &mut facts, taken, v, linked).await?;
    let Some(then) = taken.then_link.as_deref() else {
        return Err(AppError::internal("card confirmation without what to link next"));
    };
    ctx.state.store.record_use(&AuthenticatorUse::Card { id: &cred.id }, ctx.now).await?;
    ctx.audit(ctx.authentication(&facts, Outcome::Success, None)).await?;
    ctx.doctor.session.mark_proven().await?;
    let via = format!("{}:{}", method_of(v.kind).as_str(), cred.id);
    if then == super::fido::KIND {
        return Ok(Json(super::fido::start_registration(ctx, None, Some(&via)).await?));
    }
    Ok(Json(link_challenge(ctx, then, &via).await?))
}
