//! Managing linked authenticators from 「認証手段の管理」 (docs/design.md §3.6, §3.7): renaming and
//! removing one of either kind (FIDO, HPKI card, My Number card), and ending the signing session. Form posts,
//! answered with a redirect back to the page the step belongs to ([`Done::page`]) or a refusal page. Renaming and removing
//! need a recent proof (issue 15, `link::recently_proven`).

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use card::CardKind;
use serde::Deserialize;

use super::AppState;
use super::error::{AppError, Result};
use super::extract::CurrentDoctor;
use super::fido::KIND;
use super::i18n::{Done, Lang, Method};
use super::link::recently_proven;
use super::refusal::Refusal;
use crate::store::{self, AuditEvent, EndReason, SessionFilter};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/fido/credentials/{id}/rename", post(rename_fido))
        .route("/auth/card/credentials/{id}/rename", post(rename_card))
        .route("/fido/credentials/{id}/remove", post(remove_fido))
        .route("/auth/card/credentials/{id}/remove", post(remove_card))
        .route("/signing-session/end", post(end_signing_session))
}

/// A name for an authenticator: trimmed, 1–64 characters, no control characters.
pub(super) fn valid_name(name: &str) -> Option<String> {
    let name = name.trim();
    let n = name.chars().count();
    ((1..=64).contains(&n) && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

/// Whether `id` is one of the doctor's FIDO credentials (another's is "not found", before any
/// other answer).
async fn owns(state: &AppState, doctor: &CurrentDoctor, id: &str) -> Result<bool> {
    Ok(state.store.fido_credentials_of(&doctor.user.id).await?.iter().any(|c| c.id == id))
}

fn back(lang: Lang, done: Done) -> Response {
    Redirect::to(&done.location(lang)).into_response()
}

/// The change needs a recent proof (audited when missing as `action` on `id`).
async fn need_recent_proof(state: &AppState, doctor: &CurrentDoctor, lang: Lang, action: &'static str, id: &str) -> Result<()> {
    if recently_proven(state, doctor, action, id).await? { Ok(()) } else { Err(AppError::Page(Refusal::ReauthRequired, lang)) }
}

/// The pages' name of an authenticator kind (`fido`, `hpki`, `jpki`).
fn method_of(kind: &str) -> Method {
    match kind {
        KIND => Method::Fido,
        "hpki" => Method::Hpki,
        _ => Method::Jpki,
    }
}

/// The kind of a linked card as its row spells it (the store holds only the two card kinds;
/// anything else reads as My Number, as before).
fn card_kind(kind: &str) -> CardKind {
    kind.parse().unwrap_or(CardKind::Jpki)
}

async fn rename_fido(
    State(state): State<AppState>,
    lang: Lang,
    doctor: CurrentDoctor,
    Path(id): Path<String>,
    form: std::result::Result<Form<RenameForm>, FormRejection>,
) -> Result<Response> {
    let kind = owns(&state, &doctor, &id).await?.then_some(KIND);
    rename(&state, lang, doctor, &id, kind, form).await
}

async fn rename_card(
    State(state): State<AppState>,
    lang: Lang,
    doctor: CurrentDoctor,
    Path(id): Path<String>,
    form: std::result::Result<Form<RenameForm>, FormRejection>,
) -> Result<Response> {
    let linked = state.store.card_credentials_of(&doctor.user.id).await?;
    let kind = linked.iter().find(|c| c.id == id).map(|c| card_kind(&c.kind).as_str());
    rename(&state, lang, doctor, &id, kind, form).await
}

/// Renames the doctor's authenticator `id` of `kind` (`fido`, `hpki`, `jpki`; `None`: not one of
/// theirs, "not found" before any other answer but a bad name's).
async fn rename(
    state: &AppState,
    lang: Lang,
    doctor: CurrentDoctor,
    id: &str,
    kind: Option<&'static str>,
    form: std::result::Result<Form<RenameForm>, FormRejection>,
) -> Result<Response> {
    let not_found = AppError::Page(Refusal::CredentialNotFound, lang);
    let Some(name) = form.ok().and_then(|Form(f)| valid_name(&f.name)) else {
        return Err(AppError::Page(Refusal::NameInvalid, lang));
    };
    let Some(kind) = kind else { return Err(not_found) };
    need_recent_proof(state, &doctor, lang, "rename", id).await?;
    let now = state.clock.unix();
    let renamed = if kind == KIND {
        state.store.rename_fido_credential(&doctor.user.id, id, &name, now).await
    } else {
        state.store.rename_card_credential(&doctor.user.id, id, &name, now).await
    };
    match renamed {
        Ok(()) => {}
        Err(store::Error::NotFound) => return Err(not_found),
        Err(e) => return Err(e.into()),
    }
    let event = AuditEvent::AuthenticatorRenamed {
        clinic_id: doctor.clinic.clinic_id,
        user_id: doctor.user.id,
        kind,
        authenticator_id: id.to_owned(),
    };
    state.store.audit(&event, now).await?;
    Ok(back(lang, Done::Renamed(method_of(kind))))
}

async fn remove_fido(State(state): State<AppState>, lang: Lang, doctor: CurrentDoctor, Path(id): Path<String>) -> Result<Response> {
    let not_found = AppError::Page(Refusal::CredentialNotFound, lang);
    if !owns(&state, &doctor, &id).await? {
        return Err(not_found);
    }
    need_recent_proof(&state, &doctor, lang, "remove", &id).await?;
    let now = state.clock.unix();
    let ended = match state.store.remove_fido_credential(&doctor.user.id, &id, now).await {
        Ok(ended) => ended,
        Err(store::Error::NotFound) => return Err(not_found),
        Err(e) => return Err(e.into()),
    };
    audit_removal(&state, &doctor, KIND, &id, &ended, now).await?;
    Ok(back(lang, Done::Removed(Method::Fido)))
}

async fn remove_card(State(state): State<AppState>, lang: Lang, doctor: CurrentDoctor, Path(id): Path<String>) -> Result<Response> {
    let not_found = AppError::Page(Refusal::CredentialNotFound, lang);
    let linked = state.store.card_credentials_of(&doctor.user.id).await?;
    let Some(card) = linked.into_iter().find(|c| c.id == id) else { return Err(not_found) };
    need_recent_proof(&state, &doctor, lang, "remove", &id).await?;
    let now = state.clock.unix();
    let ended = match state.store.remove_card_credential(&doctor.user.id, &id, now).await {
        Ok(ended) => ended,
        Err(store::Error::NotFound) => return Err(not_found),
        Err(e) => return Err(e.into()),
    };
    let kind = card_kind(&card.kind);
    audit_removal(&state, &doctor, kind.as_str(), &id, &ended, now).await?;
    Ok(back(lang, Done::Removed(method_of(kind.as_str()))))
}

/// Audits a removed authenticator (`kind`: `fido`, `hpki`, `jpki`) and the signing sessions its
/// removal ended.
async fn audit_removal(
    state: &AppState,
    doctor: &CurrentDoctor,
    kind: &'static str,
    credential: &str,
    ended_sessions: &[String],
    now: i64,
) -> Result<()> {
    let event = AuditEvent::AuthenticatorRemoved {
        clinic_id: doctor.clinic.clinic_id.clone(),
        user_id: doctor.user.id.clone(),
        kind,
        authenticator_id: credential.to_owned(),
        by: "doctor",
    };
    state.store.audit(&event, now).await?;
    for session_id in ended_sessions {
        let s = state.store.signing_session(session_id).await?;
        let event = AuditEvent::SigningSessionEnded {
            clinic_id: s.clinic_id,
            user_id: s.user_id,
            session_id: s.id,
            reason: EndReason::AuthenticatorRemoved.as_str(),
        };
        state.store.audit(&event, now).await?;
    }
    Ok(())
}

async fn end_signing_session(State(state): State<AppState>, lang: Lang, doctor: CurrentDoctor) -> Result<Response> {
    let now = state.clock.unix();
    // Only this doctor's session at this clinic: another doctor's or clinic's is never touched.
    let filter = SessionFilter::User { user_id: &doctor.user.id, clinic_id: Some(&doctor.clinic.clinic_id) };
    for ended in state.store.end_signing_sessions(filter, EndReason::Doctor, now).await? {
        let event = AuditEvent::SigningSessionEnded {
            clinic_id: ended.clinic_id,
            user_id: ended.user_id,
            session_id: ended.id,
            reason: EndReason::Doctor.as_str(),
        };
        state.store.audit(&event, now).await?;
    }
    Ok(back(lang, Done::Ended))
}
