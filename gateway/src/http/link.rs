//! What FIDO and card routes share about linking authenticators (docs/design.md §3.6): the check
//! of an entered one-time registration code. Either kind of
//! authenticator is linked by a code (checked here, consumed in the transaction that links) or
//! after a presence check with an authenticator already linked, recorded as `<kind>:<id>` on the
//! single-use, 120 s ceremony or challenge row that carries the permission. Also what a
//! successful presence check of either kind does: open the signing session.
//!
//! A password alone never changes the factors (issue 15): adding an authenticator by code when
//! one is linked already, renaming or removing one needs a card or FIDO proof in this browser
//! session within `login.reauth_secs` ([`recently_proven`]). The first authenticator is linked
//! with the registration code alone.

use super::ceremony::Ceremony;
use super::error::{AppError, Result};
use super::refusal::Refusal;
use super::{AppState, CurrentDoctor};
use crate::assurance::Assurance;
use crate::enrollment;
use crate::store::{self, AuditEvent, AuthMethod, AuthenticatorUse, CodeCheck, NewSigningSession, Opening, Outcome};

/// How a presence check authenticated the doctor, for the signing session it opens.
pub(super) struct Presence<'a> {
    /// `fido`, `hpki` or `jpki` (also the authenticator kind).
    pub method: AuthMethod,
    /// The linked authenticator that was used.
    pub authenticator_id: &'a str,
    /// `acr` and `amr` of the session.
    pub assurance: Assurance,
}

/// Opens the doctor's signing session at this clinic after a successful presence check
/// (docs/design.md §3.7), ending the open one it supersedes, records the authenticator's use, and moves
/// the browser session to a new id for the new privilege (docs/design.md §3.2) — all in one transaction
/// with the audit rows (`checked` is the presence check's own success event), so a login commits
/// once and a session is never open unaudited.
///
/// `Ok(false)`: nothing was opened because a required FIDO counter could not be written (the
/// caller refuses). A browser session signed out meanwhile is a JSON 401.
pub(super) async fn open_signing_session(
    ctx: &Ceremony,
    p: &Presence<'_>,
    used: AuthenticatorUse<'_>,
    checked: AuditEvent,
) -> Result<bool> {
    let (state, doctor, now) = (&ctx.state, &ctx.doctor, ctx.now);
    let config = &state.config.signing_session;
    let new = NewSigningSession {
        user_id: &doctor.user.id,
        clinic_id: &doctor.clinic.clinic_id,
        method: p.method,
        authenticator_kind: p.method.as_str(),
        authenticator_id: p.authenticator_id,
        amr: p.assurance.amr,
        acr: p.assurance.acr,
        auth_time: now,
        absolute_secs: config.absolute_secs,
        idle_secs: config.idle_secs,
    };
    let rotation = doctor.session.rotation().ok_or_else(|| AppError::internal("signed-in doctor without a stored session"))?;
    let opening = Opening { checked: Some(&checked), used: Some(used), session_move: Some(rotation.step()) };
    match state.store.open_signing_session(&new, now, &opening).await {
        Ok(_) => {
            doctor.session.moved(rotation);
            // A login (docs/metrics.md), with the check's note if it has one (an allowed
            // counter regression, a changed backup state).
            let note = match checked {
                AuditEvent::Authentication { reason, .. } | AuditEvent::CardAuthentication { reason, .. } => reason,
                _ => None,
            };
            state.metrics.login(p.method.as_str(), Outcome::Success, note);
            Ok(true)
        }
        Err(store::Error::Precondition(store::Precondition::FidoCounter)) => Ok(false),
        Err(store::Error::Precondition(store::Precondition::BrowserSession)) => {
            Err(AppError::Json(Refusal::LoginRequired, ctx.lang))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the doctor proved a linked card or FIDO authenticator in this browser session
/// recently enough to change the authenticators. When not, the refusal is audited with `action`
/// (`rename`, `remove`) and the authenticator concerned.
pub(super) async fn recently_proven(
    state: &AppState,
    doctor: &CurrentDoctor,
    action: &'static str,
    authenticator_id: &str,
) -> Result<bool> {
    if doctor.session.recently_proven() {
        return Ok(true);
    }
    let event = AuditEvent::AuthenticatorChangeRefused {
        clinic_id: doctor.clinic.clinic_id.clone(),
        user_id: doctor.user.id.clone(),
        action,
        authenticator_id: Some(authenticator_id.to_owned()),
        reason: "reauth_required",
    };
    state.store.audit(&event, state.clock.unix()).await?;
    Ok(false)
}

/// Whether linking with a registration code needs a recent proof first: it does once the doctor
/// has any authenticator (only the first one is linked with the code alone). `Some(refusal)`
/// when the proof is missing; the caller audits it as a failed link.
pub(super) async fn code_link_refusal(state: &AppState, doctor: &CurrentDoctor) -> Result<Option<Refusal>> {
    if doctor.session.recently_proven() {
        return Ok(None);
    }
    let has_fido = !state.store.fido_credentials_of(&doctor.user.id).await?.is_empty();
    let has_card = has_fido || !state.store.card_credentials_of(&doctor.user.id).await?.is_empty();
    Ok(has_card.then_some(Refusal::ReauthRequired))
}

/// What an entered registration code allows.
pub(super) enum CodeOutcome {
    /// The doctor's open code: link with it (consumed when the authenticator is stored).
    Valid {
        /// `enrollment_codes.id`.
        code_id: String,
    },
    /// Refused; the caller audits it (with the code's id when one was involved).
    Refused(Refusal, Option<String>),
}

/// Checks a code the doctor typed. A malformed entry is not a guess at a valid code, so it is
/// refused without counting a failure; a wrong one counts against the doctor's open code.
pub(super) async fn check_registration_code(state: &AppState, user_id: &str, code: &str, now: i64) -> Result<CodeOutcome> {
    let Some(code) = enrollment::normalise(code) else {
        return Ok(CodeOutcome::Refused(Refusal::CodeMalformed, None));
    };
    let check = state.store.check_enrollment_code(user_id, &enrollment::hash(&code), now).await?;
    let (refusal, code_id) = match check {
        CodeCheck::Valid { code_id } => return Ok(CodeOutcome::Valid { code_id }),
        CodeCheck::Wrong { code_id, tries_left } => (Refusal::CodeWrong { tries_left: Some(tries_left) }, Some(code_id)),
        CodeCheck::NoCode => (Refusal::CodeWrong { tries_left: None }, None),
        CodeCheck::Expired { code_id } => (Refusal::CodeExpired, Some(code_id)),
        CodeCheck::Used { code_id } => (Refusal::CodeUsed, Some(code_id)),
        CodeCheck::Exhausted { code_id } => (Refusal::CodeExhausted, Some(code_id)),
        CodeCheck::Voided { code_id } => (Refusal::CodeVoided, Some(code_id)),
    };
    Ok(CodeOutcome::Refused(refusal, code_id))
}
