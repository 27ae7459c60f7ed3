//! FIDO ceremonies (docs/design.md §3.4, §3.6, §3.7): linking an authenticator with a registration
//! code or after confirming with a linked one, and authenticating to open a signing session.
//! Renaming and removing authenticators is in `manage.rs`.
//!
//! The ceremonies are JSON endpoints driven by `/assets/fido.js`:
//!
//! | step | request | answer |
//! |---|---|---|
//! | code → registration | `POST /fido/register/start {"code"}` | creation options |
//! | confirm with a linked one | `POST /fido/link/start` → `get()` → `POST /fido/link/finish {"credential"}` | creation options |
//! | registration | `create()` → `POST /fido/register/finish {"credential","name"?}` | `{"ok","redirect"}` |
//! | authentication | `POST /fido/auth/start` → `get()` → `POST /fido/auth/finish {"credential"}` | `{"ok","redirect"}` |
//! | browser cancelled | `POST /fido/cancel` | `{"ok"}` |
//!
//! Ceremony state lives in the database (`store::ceremonies`), bound to this browser session (one
//! at a time) and taken with one `DELETE … RETURNING`: a replayed or concurrent finish, on any
//! instance, finds nothing. Refusals are
//! `{"error": code, "message": text}` in the page's language, and every outcome is audited with
//! ids only (never codes, never credential material).

use axum::extract::rejection::JsonRejection;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::ceremony::Ceremony;
use super::error::{AppError, Result};
use super::i18n::{Done, Method, Msg};
use super::link::{CodeOutcome, Presence, check_registration_code, code_link_refusal, open_signing_session};
use super::manage::valid_name;
use super::refusal::{Refusal, fido_refusal};
use crate::assurance::{Assurance, Proof};
use crate::store::{
    self, AuditEvent, AuthMethod, AuthenticatorUse, CeremonyPurpose, FidoCredential, LinkAuthorisation, NewCeremony,
    NewFidoCredential, Outcome, TakenCeremony,
};

/// Authenticator kind recorded on links and signing sessions.
pub(super) const KIND: &str = "fido";
/// The purpose of a presence check that opens a signing session: a login.
const SIGNING_SESSION: &str = "signing_session";

pub(crate) fn router() -> axum::Router<AppState> {
    // The ceremony routes answer JSON, errors included.
    Router::new()
        .route("/fido/register/start", post(register_start))
        .route("/fido/register/finish", post(register_finish))
        .route("/fido/link/start", post(link_start))
        .route("/fido/link/finish", post(link_finish))
        .route("/fido/auth/start", post(auth_start))
        .route("/fido/auth/finish", post(auth_finish))
        .route("/fido/cancel", post(cancel))
        .route_layer(axum::middleware::from_fn(super::error::json_internal_errors))
}

/// Which audit event a refusal becomes.
#[derive(Clone, Copy)]
enum Step {
    /// Linking a new authenticator.
    Register,
    /// A presence check; the purpose (`signing_session` or `link`).
    Authenticate(&'static str),
}

impl Step {
    fn of(purpose: CeremonyPurpose) -> Self {
        match purpose {
            CeremonyPurpose::Register => Step::Register,
            CeremonyPurpose::Authenticate => Step::Authenticate(SIGNING_SESSION),
            CeremonyPurpose::Link => Step::Authenticate("link"),
        }
    }
}

impl Ceremony {
    /// Audits a refusal of a FIDO step and turns it into the JSON error the page shows.
    async fn refuse_step(&self, step: Step, r: Refusal, code_id: Option<String>, authenticator_id: Option<String>) -> AppError {
        if let Step::Authenticate(SIGNING_SESSION) = step {
            // A refused login (docs/metrics.md); presence checks for linking are no logins.
            self.state.metrics.login(KIND, Outcome::Failure, Some(r.code()));
        }
        let (clinic_id, user_id) = (self.doctor.clinic.clinic_id.clone(), self.doctor.user.id.clone());
        let event = match step {
            Step::Register => AuditEvent::AuthenticatorLinkFailed { clinic_id, user_id, kind: KIND, reason: r.code(), code_id },
            Step::Authenticate(purpose) => AuditEvent::Authentication {
                clinic_id,
                user_id,
                method: AuthMethod::Fido.as_str(),
                purpose,
                authenticator_id,
                outcome: Outcome::Failure,
                reason: Some(r.code()),
            },
        };
        tracing::info!(reason = r.code(), "FIDO step refused");
        self.refuse(vec![event], r).await
    }

    fn user_handle(&self) -> Result<Uuid> {
        // Account ids are random v4 UUIDs: a stable, non-personal WebAuthn user handle.
        Uuid::parse_str(&self.doctor.user.id).map_err(|e| AppError::internal(format!("user id is not a UUID: {e}")))
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::internal(e.to_string())
}

/// Stores a new ceremony for this browser session, replacing any earlier one.
async fn begin(
    ctx: &Ceremony,
    purpose: CeremonyPurpose,
    state_json: &str,
    enrollment_code_id: Option<&str>,
    linked_via: Option<&str>,
) -> Result<()> {
    let timeout = i64::try_from(ctx.state.fido.ceremony_timeout().as_secs()).unwrap_or(120);
    let new = NewCeremony {
        session_hash: &ctx.session_hash()?,
        user_id: &ctx.doctor.user.id,
        clinic_id: &ctx.doctor.clinic.clinic_id,
        purpose,
        state: state_json,
        enrollment_code_id,
        linked_via,
        expires_at: ctx.now + timeout,
    };
    Ok(ctx.state.store.put_ceremony(&new, ctx.now).await?)
}

/// Takes this browser session's ceremony out of the database (single use, whatever its purpose:
/// a finish of the wrong kind uses it up too) and checks it is a live one of `purpose`.
async fn take(ctx: &Ceremony, purpose: CeremonyPurpose) -> Result<TakenCeremony> {
    let taken = ctx.state.store.take_ceremony(&ctx.session_hash()?, &ctx.doctor.user.id, &ctx.doctor.clinic.clinic_id).await?;
    live(ctx, purpose, taken).await
}

/// The ceremony taken, as [`take`] checks it, and the credential the assertion `response`
/// names, read with the take: `Ok(None)` when no credential has that ID, the parse error when
/// the response names none (the ceremony is taken all the same).
async fn take_for_assertion(
    ctx: &Ceremony,
    purpose: CeremonyPurpose,
    response: &str,
) -> Result<(TakenCeremony, std::result::Result<Option<FidoCredential>, fido::Error>)> {
    let raw_id = match fido::credential_id_from_response(response) {
        Ok(id) => id,
        Err(e) => return Ok((take(ctx, purpose).await?, Err(e))),
    };
    let (user, clinic) = (&ctx.doctor.user.id, &ctx.doctor.clinic.clinic_id);
    let both = ctx.state.store.take_ceremony_and_credential(&ctx.session_hash()?, user, clinic, raw_id.as_bytes()).await?;
    let (taken, cred) = both.unzip();
    Ok((live(ctx, purpose, taken).await?, Ok(cred.flatten())))
}

/// A taken ceremony that is live and of `purpose`; anything else is refused and audited.
async fn live(ctx: &Ceremony, purpose: CeremonyPurpose, taken: Option<TakenCeremony>) -> Result<TakenCeremony> {
    let missing = || Refusal::CeremonyMissing;
    match taken {
        // Never started here, taken already (a replayed or concurrent finish, on this or another
        // instance), or started for something else.
        None => Err(ctx.refuse_step(Step::of(purpose), missing(), None, None).await),
        Some(t) if t.purpose != purpose => Err(ctx.refuse_step(Step::of(purpose), missing(), None, None).await),
        Some(t) if t.expires_at <= ctx.now => {
            let r = Refusal::TimedOut;
            Err(ctx.refuse_step(Step::of(purpose), r, t.enrollment_code_id, None).await)
        }
        Some(t) => Ok(t),
    }
}

/// The doctor's credentials, read back as the `fido` crate's records.
async fn stored_credentials(ctx: &Ceremony) -> Result<(Vec<FidoCredential>, Vec<fido::StoredCredential>)> {
    let rows = ctx.state.store.fido_credentials_of(&ctx.doctor.user.id).await?;
    let stored = rows.iter().map(|c| fido::StoredCredential::from_json(&c.stored)).collect::<Result<Vec<_>, _>>();
    Ok((rows, stored.map_err(internal)?))
}

/// Starts a registration for the doctor (authorised by a code or a linked authenticator) and
/// returns the creation options.
pub(super) async fn start_registration(ctx: &Ceremony, code_id: Option<&str>, linked_via: Option<&str>) -> Result<Value> {
    let (_, existing) = stored_credentials(ctx).await?;
    let user = &ctx.doctor.user;
    let info = fido::UserInfo {
        user_handle: ctx.user_handle()?,
        // docs/design.md §3.4: the WebAuthn user name is the 医籍番号 (every doctor account has one).
        name: user.medical_reg_no.clone().unwrap_or_else(|| user.login_id.clone()),
        display_name: user.name.clone(),
    };
    let (options, state) = ctx.state.fido.start_registration(&info, &existing).map_err(internal)?;
    begin(ctx, CeremonyPurpose::Register, &state.to_json().map_err(internal)?, code_id, linked_via).await?;
    options.to_json().map_err(internal)
}

/// Starts an authentication offering all the doctor's credentials.
async fn start_authentication(ctx: &Ceremony, purpose: CeremonyPurpose) -> Result<Value> {
    let (_, stored) = stored_credentials(ctx).await?;
    if stored.is_empty() {
        let r = Refusal::NoCredentials;
        return Err(ctx.refuse_step(Step::of(purpose), r, None, None).await);
    }
    let (options, state) = ctx.state.fido.start_authentication(ctx.user_handle()?, &stored).map_err(internal)?;
    begin(ctx, purpose, &state.to_json().map_err(internal)?, None, None).await?;
    options.to_json().map_err(internal)
}

/// A verified assertion: the credential, the counter to store, and the success event.
struct Assertion {
    cred: FidoCredential,
    /// The updated stored credential, when it changed.
    stored: Option<String>,
    counter: i64,
    /// The counter went up, and must still be higher when written: of two assertions with the
    /// same counter verified at once (a cloned authenticator, two instances), one loses.
    strict: bool,
    /// The success event, which the caller appends (with the events of what the check unlocks).
    checked: AuditEvent,
}

impl Assertion {
    /// The counter write, for the transaction of what the check unlocks; a lost strict write
    /// refuses it under `counter_policy = "refuse"`.
    fn used(&self, policy: fido::CounterPolicy) -> AuthenticatorUse<'_> {
        AuthenticatorUse::Fido {
            id: &self.cred.id,
            stored: self.stored.as_deref(),
            counter: self.counter,
            strict: self.strict,
            required: self.strict && policy == fido::CounterPolicy::Refuse,
        }
    }
}

/// Takes the browser session's ceremony of `purpose` and verifies the assertion against it: the
/// credential must exist and be the doctor's, and the `fido` policies must pass. The caller
/// stores the counter so it only goes up ([`Assertion::used`]).
async fn verify_assertion(ctx: &Ceremony, purpose: CeremonyPurpose, response: &str) -> Result<Assertion> {
    let step = Step::of(purpose);
    let (taken, cred) = take_for_assertion(ctx, purpose, response).await?;
    let auth_state = fido::AuthenticationState::from_json(&taken.state).map_err(internal)?;
    let cred = match cred {
        Ok(Some(c)) => c,
        Ok(None) => {
            let r = Refusal::UnknownCredential;
            return Err(ctx.refuse_step(step, r, None, None).await);
        }
        Err(e) => return Err(match fido_refusal(&e) { Some(r) => ctx.refuse_step(step, r, None, None).await, None => internal(e) }),
    };
    if cred.user_id != ctx.doctor.user.id {
        let r = Refusal::CredentialOfAnotherDoctor;
        return Err(ctx.refuse_step(step, r, None, Some(cred.id)).await);
    }
    let stored = fido::StoredCredential::from_json(&cred.stored).map_err(internal)?;
    let result = match ctx.state.fido.finish_authentication(auth_state, response, &stored) {
        Ok(r) => r,
        Err(e) => {
            return Err(match fido_refusal(&e) { Some(r) => ctx.refuse_step(step, r, None, Some(cred.id)).await, None => internal(e) });
        }
    };
    let stored_counter = stored.counter();
    let strict = result.counter > stored_counter;
    let counter = i64::from(result.updated.as_ref().map_or(stored_counter, fido::StoredCredential::counter));
    let blob = result.updated.as_ref().map(fido::StoredCredential::to_json).transpose().map_err(internal)?;
    let reason = if result.counter_regression.is_some() {
        // counter_policy = "allow": accepted, and the audit row says so (docs/fido-policy.md).
        Some("counter_regression_allowed")
    } else if result.backup_state_changed {
        Some("backup_state_changed")
    } else {
        None
    };
    let Step::Authenticate(purpose_name) = step else { return Err(AppError::internal("assertion outside authentication")) };
    let checked = AuditEvent::Authentication {
        clinic_id: ctx.doctor.clinic.clinic_id.clone(),
        user_id: ctx.doctor.user.id.clone(),
        method: AuthMethod::Fido.as_str(),
        purpose: purpose_name,
        authenticator_id: Some(cred.id.clone()),
        outcome: Outcome::Success,
        reason,
    };
    Ok(Assertion { cred, stored: blob, counter, strict, checked })
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

#[derive(Deserialize)]
struct CredentialBody {
    credential: Value,
    #[serde(default)]
    name: Option<String>,
    /// On `/fido/link/finish`: link a card of this kind (`hpki`, `jpki`) instead of another FIDO
    /// authenticator; the answer is then a card challenge.
    #[serde(default)]
    card: Option<String>,
}

#[tracing::instrument(name = "fido.register_start", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn register_start(
    ctx: Ceremony,
    body: std::result::Result<Json<CodeBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let Ok(Json(body)) = body else { return Err(AppError::Json(Refusal::FidoBadRequest, ctx.lang)) };
    // Refused before the code is looked at, so the refusal costs none of its tries.
    if let Some(r) = code_link_refusal(&ctx.state, &ctx.doctor).await? {
        return Err(ctx.refuse_step(Step::Register, r, None, None).await);
    }
    match check_registration_code(&ctx.state, &ctx.doctor.user.id, &body.code, ctx.now).await? {
        CodeOutcome::Valid { code_id } => Ok(Json(start_registration(&ctx, Some(&code_id), None).await?)),
        CodeOutcome::Refused(refusal, code_id) => Err(ctx.refuse_step(Step::Register, refusal, code_id, None).await),
    }
}

#[tracing::instrument(name = "fido.register_finish", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn register_finish(
    ctx: Ceremony,
    body: std::result::Result<Json<CredentialBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let Ok(Json(body)) = body else { return Err(AppError::Json(Refusal::FidoBadRequest, ctx.lang)) };
    // Checked before the ceremony is taken, so a bad name does not cost the doctor the ceremony.
    let name = match body.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        None => None,
        Some(n) => match valid_name(n) {
            Some(n) => Some(n),
            None => return Err(AppError::Json(Refusal::NameInvalid, ctx.lang)),
        },
    };
    let taken = take(&ctx, CeremonyPurpose::Register).await?;
    let code_id = taken.enrollment_code_id.clone();
    let reg_state = fido::RegistrationState::from_json(&taken.state).map_err(internal)?;
    let new = match ctx.state.fido.finish_registration(&reg_state, &body.credential.to_string()) {
        Ok(n) => n,
        Err(e) => {
            return Err(match fido_refusal(&e) { Some(r) => ctx.refuse_step(Step::Register, r, code_id, None).await, None => internal(e) });
        }
    };
    if new.user_handle != ctx.user_handle()? {
        return Err(AppError::internal("registration state of another user"));
    }
    let (existing, _) = stored_credentials(&ctx).await?;
    let name = name.unwrap_or_else(|| format!("{} {}", Msg::DefaultCredentialName.text(ctx.lang), existing.len() + 1));
    let authorisation = match (&taken.enrollment_code_id, &taken.linked_via) {
        (Some(code_id), _) => LinkAuthorisation::Code { code_id },
        (None, Some(via)) => LinkAuthorisation::Authenticator { via },
        (None, None) => return Err(AppError::internal("registration ceremony without authorisation")),
    };
    let id = Uuid::new_v4().to_string();
    let stored = new.stored.to_json().map_err(internal)?;
    let aaguid = new.aaguid.to_string();
    let row = NewFidoCredential {
        id: &id,
        credential_id: new.credential_id.as_bytes(),
        user_id: &ctx.doctor.user.id,
        name: &name,
        aaguid: &aaguid,
        aaguid_attested: new.aaguid_attested,
        backup_eligible: new.backup_eligible,
        stored: &stored,
        counter: i64::from(new.counter),
    };
    match ctx.state.store.link_fido_credential(&row, authorisation, ctx.now).await {
        Ok(()) => {}
        Err(store::Error::Precondition(_)) => {
            // The code was used, voided or expired while the doctor was at the authenticator.
            let expired = ctx
                .state
                .store
                .enrollment_code_of(&ctx.doctor.user.id)
                .await?
                .is_some_and(|c| Some(&c.id) == code_id.as_ref() && c.used_at.is_none() && c.expires_at <= ctx.now);
            let r = if expired { Refusal::CodeExpired } else { Refusal::CodeUsed };
            return Err(ctx.refuse_step(Step::Register, r, code_id, None).await);
        }
        Err(store::Error::Conflict(_)) => {
            // The credential ID is linked already (to this doctor or another).
            return Err(ctx.refuse_step(Step::Register, Refusal::AlreadyLinked, code_id, None).await);
        }
        Err(e) => return Err(e.into()),
    }
    let via = match authorisation {
        LinkAuthorisation::Code { code_id } => format!("code:{code_id}"),
        LinkAuthorisation::Authenticator { via } => via.to_owned(),
    };
    ctx.audit(AuditEvent::AuthenticatorLinked {
        clinic_id: ctx.doctor.clinic.clinic_id.clone(),
        user_id: ctx.doctor.user.id.clone(),
        kind: KIND,
        authenticator_id: id,
        via,
    })
    .await?;
    Ok(ctx.redirect(Done::Linked(Method::Fido)))
}

#[tracing::instrument(name = "fido.link_start", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn link_start(
    ctx: Ceremony,
) -> Result<Json<Value>> {
    Ok(Json(start_authentication(&ctx, CeremonyPurpose::Link).await?))
}

#[tracing::instrument(name = "fido.link_finish", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn link_finish(
    ctx: Ceremony,
    body: std::result::Result<Json<CredentialBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let Ok(Json(body)) = body else { return Err(AppError::Json(Refusal::FidoBadRequest, ctx.lang)) };
    let a = verify_assertion(&ctx, CeremonyPurpose::Link, &body.credential.to_string()).await?;
    match ctx.state.store.record_use(&a.used(ctx.state.config.fido.counter_policy), ctx.now).await {
        Ok(()) => {}
        Err(store::Error::Precondition(store::Precondition::FidoCounter)) => {
            return Err(ctx.refuse_step(Step::Authenticate("link"), Refusal::CounterRegression, None, Some(a.cred.id)).await);
        }
        Err(e) => return Err(e.into()),
    }
    let (cred, checked) = (a.cred, a.checked);
    ctx.audit(checked).await?;
    // A proof with a linked authenticator: it also allows renaming and removing for a while.
    ctx.doctor.session.mark_proven().await?;
    // The registration ceremony (or, for a card, the card challenge) itself is the permission:
    // single use, 120 s, this session only.
    let via = format!("{KIND}:{}", cred.id);
    if let Some(card) = body.card.as_deref() {
        return Ok(Json(super::card::link_challenge(&ctx, card, &via).await?));
    }
    Ok(Json(start_registration(&ctx, None, Some(&via)).await?))
}

#[tracing::instrument(name = "fido.auth_start", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn auth_start(
    ctx: Ceremony,
) -> Result<Json<Value>> {
    Ok(Json(start_authentication(&ctx, CeremonyPurpose::Authenticate).await?))
}

#[tracing::instrument(name = "fido.auth_finish", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn auth_finish(
    ctx: Ceremony,
    body: std::result::Result<Json<CredentialBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let Ok(Json(body)) = body else { return Err(AppError::Json(Refusal::FidoBadRequest, ctx.lang)) };
    let a = verify_assertion(&ctx, CeremonyPurpose::Authenticate, &body.credential.to_string()).await?;
    let cred = &a.cred;

    let assurance = Assurance::of(Proof::Fido { synced: cred.backup_eligible }, &ctx.state.config.signing_session);
    let presence = Presence { method: AuthMethod::Fido, authenticator_id: &cred.id, assurance };
    let used = a.used(ctx.state.config.fido.counter_policy);
    if !open_signing_session(&ctx, &presence, used, a.checked.clone()).await? {
        let step = Step::Authenticate(SIGNING_SESSION);
        return Err(ctx.refuse_step(step, Refusal::CounterRegression, None, Some(cred.id.clone())).await);
    }
    Ok(ctx.redirect(Done::Authenticated(Method::Fido)))
}

/// The browser reported a cancelled or timed-out ceremony: drop the state and audit it.
#[tracing::instrument(name = "fido.cancel", skip_all, fields(principal.id = %ctx.doctor.user.id))]
async fn cancel(
    ctx: Ceremony,
) -> Result<Json<Value>> {
    if let Some(taken) = ctx.state.store.take_ceremony(&ctx.session_hash()?, &ctx.doctor.user.id, &ctx.doctor.clinic.clinic_id).await? {
        // Audited like any other refusal; the JSON error is not what the page needs.
        let _ = ctx.refuse_step(Step::of(taken.purpose), Refusal::Cancelled, taken.enrollment_code_id, None).await;
    }
    Ok(Json(json!({ "ok": true })))
}

