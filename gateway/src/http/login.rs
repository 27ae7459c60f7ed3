//! Doctor login and logout (docs/design.md §3.2), the change of a temporary password that a login may
//! require first (issue 15), and the doctor's two pages that follow a login: 「本人確認」 (`/methods`,
//! daily) and 「認証手段の管理」 (`/manage`, set-up; where a login with nothing linked lands).

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use card::CardKind;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::AppState;
use super::error::{AppError, Result};
use super::extract::{ClinicContext, CurrentDoctor};
use super::i18n::{Done, Lang, Method, Msg};
use super::pages;
use super::refusal::Refusal;
use super::session::{BrowserSession, LoginState};
use crate::password::weakness;
use crate::store::{self, AuditEvent, EndReason, LockoutRules, LoginReservation, Outcome, SessionFilter, User, UserKind};

/// The `method` label of the login form's attempts in `ninsho_logins_total`.
const PASSWORD: &str = "password";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/login") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/methods", get(methods_page))
        .route("/manage", get(manage_page))
        .route("/password", get(password_page).post(change_password))
}

#[derive(Deserialize)]
struct LoginPageQuery {
    signed_out: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    Query(q): Query<LoginPageQuery>,
) -> Result<Response> {
    if session.login().is_some_and(|l| l.clinic_id == clinic.clinic_id) {
        return Ok(Redirect::to("/methods").into_response());
    }
    let notice = q.signed_out.map(|_| Msg::SignedOut.text(lang));
    // A clinic that signs in through its EMR's provider gets that button instead of the form.
    if state.store.clinic_login(&clinic.clinic_id).await?.is_some() {
        return Ok(pages::login_upstream(lang, &clinic.clinic_name, None, notice).into_response());
    }
    Ok(pages::login(lang, &clinic.clinic_name, None, notice, "").into_response())
}

/// The login form. The password is moved into a zeroizing buffer straight away.
#[derive(Deserialize)]
struct LoginForm {
    login_id: String,
    password: String,
}

/// The lock's length as the login form states it, in whole minutes (at least one).
fn lock_minutes(state: &AppState) -> i64 {
    ((state.config.login.lockout_secs + 59) / 60).max(1)
}

/// The login form again, with the refusal's message.
fn refused(r: Refusal, lang: Lang, clinic: &ClinicContext, login_id: &str) -> Response {
    (r.status(), pages::login(lang, &clinic.clinic_name, Some(&r.message(lang)), None, login_id)).into_response()
}

#[tracing::instrument(name = "login", skip_all, fields(clinic.id = %clinic.clinic_id, principal.id))]
async fn login(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    form: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Result<Response> {
    // docs/metrics.md: every outcome is counted by reason code (never by login ID).
    let count = |outcome: Outcome, reason: Option<&'static str>| state.metrics.login(PASSWORD, outcome, reason);
    // docs/design.md §3.17: a clinic that signs in through its EMR's provider has no password
    // form here, and a posted one is refused before anything is counted or checked.
    if state.store.clinic_login(&clinic.clinic_id).await?.is_some() {
        let r = Refusal::PasswordLoginOff;
        count(Outcome::Failure, Some(r.code()));
        let event = AuditEvent::LoginFailed { clinic_id: clinic.clinic_id.clone(), user_id: None, reason: r.code(), device: clinic.fingerprint.clone() };
        state.store.audit(&event, state.clock.unix()).await?;
        return Ok((r.status(), pages::login_upstream(lang, &clinic.clinic_name, Some(&r.message(lang)), None)).into_response());
    }
    let Ok(Form(form)) = form else {
        count(Outcome::Failure, Some(Refusal::MissingFields.code()));
        return Ok(refused(Refusal::MissingFields, lang, &clinic, ""));
    };
    let password = Zeroizing::new(form.password);
    let login_id = form.login_id.trim();
    if login_id.is_empty() || password.is_empty() || login_id.len() > 128 || password.len() > 1024 {
        count(Outcome::Failure, Some(Refusal::MissingFields.code()));
        return Ok(refused(Refusal::MissingFields, lang, &clinic, login_id));
    }
    let now = state.clock.unix();
    let key = crate::login_id::lockout_key(&clinic.clinic_id, login_id);
    let locked = |until: i64| refused(Refusal::LoginLocked { until }, lang, &clinic, login_id);

    let rules = LockoutRules {
        max_failures: state.config.login.max_failures,
        window_secs: state.config.login.failure_window_secs,
        lockout_secs: state.config.login.lockout_secs,
    };
    // The attempt is reserved before the password is checked (issue 15, item 1): only a reserved
    // attempt runs argon2, so a burst of guesses checks at most `max_failures` of them.
    let (locks_until, tries_left) = match state.store.reserve_login_attempt(&key, now, &rules).await? {
        LoginReservation::Reserved { locks_until, tries_left } => (locks_until, tries_left),
        LoginReservation::Refused { until } => {
            count(Outcome::Failure, Some("locked"));
            let event = AuditEvent::LoginLocked {
                clinic_id: clinic.clinic_id.clone(),
                user_id: None,
                locked_until: until,
                device: clinic.fingerprint.clone(),
            };
            state.store.audit(&event, now).await?;
            return Ok(locked(until));
        }
    };

    let user = match state.store.user_by_login(&clinic.clinic_id, login_id).await {
        Ok(user) => Some(user),
        Err(store::Error::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // Unknown IDs are verified against a dummy hash: same work, same answer, same time.
    let password_ok = state.passwords.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user_id = user.as_ref().map(|u| u.id.clone());

    let user = match user {
        Some(user) if password_ok && user.enabled => user,
        _ => {
            let reason = match &user {
                None => "unknown_login",
                Some(u) if !u.enabled => "disabled",
                Some(_) => "bad_password",
            };
            // The reservation already counted this failure.
            let event = AuditEvent::LoginFailed {
                clinic_id: clinic.clinic_id.clone(),
                user_id: user_id.clone(),
                reason,
                device: clinic.fingerprint.clone(),
            };
            count(Outcome::Failure, Some(reason));
            state.store.audit(&event, now).await?;
            if let Some(until) = locks_until {
                state.metrics.lockout();
                let event = AuditEvent::LoginLocked {
                    clinic_id: clinic.clinic_id.clone(),
                    user_id,
                    locked_until: until,
                    device: clinic.fingerprint.clone(),
                };
                state.store.audit(&event, now).await?;
                return Ok(locked(until));
            }
            // How many tries are left before the lock, said for unknown login IDs just the same
            // (the count is per typed login ID), so the answer tells nothing about the account.
            let r = Refusal::InvalidCredentials { tries_left: Some(tries_left), lock_minutes: lock_minutes(&state) };
            return Ok(refused(r, lang, &clinic, login_id));
        }
    };
    tracing::Span::current().record("principal.id", user.id.as_str());
    // The password was right, so this is no guessing attempt: reset the counter either way.
    state.store.clear_login_failures(&key).await?;

    if user.kind != UserKind::Doctor {
        count(Outcome::Failure, Some("not_doctor"));
        let event =
            AuditEvent::LoginFailed {
                clinic_id: clinic.clinic_id.clone(),
                user_id: Some(user.id.clone()),
                reason: "not_doctor",
                device: clinic.fingerprint.clone(),
            };
        state.store.audit(&event, now).await?;
        return Ok(refused(Refusal::DoctorOnly, lang, &clinic, login_id));
    }

    // A temporary password is for a first sign-in soon after it was set (ASVS 5.0 V6.4.1).
    if user.password_temporary && now >= user.password_set_at.saturating_add(state.config.login.temporary_password_secs) {
        count(Outcome::Failure, Some("temporary_password_expired"));
        let event = AuditEvent::LoginFailed {
            clinic_id: clinic.clinic_id.clone(),
            user_id: Some(user.id.clone()),
            reason: "temporary_password_expired",
            device: clinic.fingerprint.clone(),
        };
        state.store.audit(&event, now).await?;
        return Ok(refused(Refusal::TemporaryPasswordExpired, lang, &clinic, login_id));
    }

    // New privilege, new session id (session fixation). A temporary password signs in to the
    // change page only.
    let must_change_password = user.password_temporary;
    let login = LoginState { user_id: user.id.clone(), clinic_id: clinic.clinic_id.clone(), login_at: now, must_change_password };
    session.sign_in(login, &clinic).await?;
    count(Outcome::Success, None);
    // A doctor with nothing linked yet cannot confirm presence: straight to the set-up page,
    // which explains what to do.
    let next = if must_change_password {
        "/password"
    } else if linked_authenticators(&state, &user.id).await?.is_empty() {
        "/manage"
    } else {
        "/methods"
    };
    state.store.audit(&AuditEvent::LoginSucceeded { clinic_id: clinic.clinic_id, user_id: user.id }, now).await?;
    Ok(Redirect::to(next).into_response())
}

async fn logout(
    State(state): State<AppState>,
    doctor: std::result::Result<CurrentDoctor, AppError>,
    session: BrowserSession,
) -> Result<Response> {
    if let Ok(doctor) = doctor {
        let now = state.clock.unix();
        // docs/design.md §3.7: signing out ends the doctor's signing session at this clinic, on every
        // instance (it lives in the database).
        let filter = SessionFilter::User { user_id: &doctor.user.id, clinic_id: Some(&doctor.clinic.clinic_id) };
        for ended in state.store.end_signing_sessions(filter, EndReason::Logout, now).await? {
            let event = AuditEvent::SigningSessionEnded {
                clinic_id: ended.clinic_id,
                user_id: ended.user_id,
                session_id: ended.id,
                reason: EndReason::Logout.as_str(),
            };
            state.store.audit(&event, now).await?;
        }
        let event = AuditEvent::Logout { clinic_id: doctor.clinic.clinic_id, user_id: doctor.user.id };
        state.store.audit(&event, now).await?;
    }
    // Deletes the stored session and expires the cookie; the next visit gets a new id.
    session.sign_out().await?;
    Ok(Redirect::to("/login?signed_out=1").into_response())
}

#[derive(Deserialize)]
struct MethodsQuery {
    done: Option<String>,
}

/// The doctor's linked authenticators.
pub(super) async fn linked_authenticators(state: &AppState, user_id: &str) -> Result<Vec<pages::LinkedView>> {
    let mut credentials: Vec<pages::LinkedView> = state
        .store
        .fido_credentials_of(user_id)
        .await?
        .into_iter()
        .map(|c| pages::LinkedView {
            id: c.id,
            kind: Method::Fido,
            name: c.name,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            synced: c.backup_eligible,
        })
        .collect();
    credentials.extend(state.store.card_credentials_of(user_id).await?.into_iter().map(|c| pages::LinkedView {
        // The store holds only the two card kinds here; anything else reads as My Number, as before.
        kind: if c.kind.parse().unwrap_or(CardKind::Jpki) == CardKind::Hpki { Method::Hpki } else { Method::Jpki },
        id: c.id,
        name: c.name,
        created_at: c.created_at,
        last_used_at: c.last_used_at,
        synced: false,
    }));
    // Listed in the pages' order of the methods (HPKI card, FIDO, My Number card), then by age.
    let rank = |m: Method| [Method::Hpki, Method::Fido, Method::Jpki].iter().position(|&x| x == m);
    credentials.sort_by_key(|c| (rank(c.kind), c.created_at));
    Ok(credentials)
}

/// What both pages of a signed-in doctor show: the linked authenticators, the live signing
/// session, and the notice of the step that led here (`?done=`, from [`Done`]'s one table).
async fn doctor_view(state: &AppState, doctor: &CurrentDoctor, lang: Lang, done: Option<&str>) -> Result<pages::MethodsView<'static>> {
    let now = state.clock.unix();
    let credentials = linked_authenticators(state, &doctor.user.id).await?;
    // Only this doctor's session at this clinic (docs/design.md §3.7).
    let signing = state
        .store
        .live_signing_session(&doctor.user.id, &doctor.clinic.clinic_id, now)
        .await?
        .map(|s| pages::SigningView { expires_at: s.expires_at, idle_expires_at: s.idle_expires_at() });
    let notice = done.and_then(Done::parse).map(|d| d.text(lang));
    let password_here = state.store.clinic_login(&doctor.clinic.clinic_id).await?.is_none();
    Ok(pages::MethodsView { credentials, signing, notice, error: None, password_here })
}

/// 「本人確認」, the daily page.
async fn methods_page(state: State<AppState>, doctor: CurrentDoctor, lang: Lang, q: Query<MethodsQuery>) -> Result<Response> {
    doctor_page(state, doctor, lang, q, pages::methods).await
}

/// 「認証手段の管理」, the one-time set-up page.
async fn manage_page(state: State<AppState>, doctor: CurrentDoctor, lang: Lang, q: Query<MethodsQuery>) -> Result<Response> {
    doctor_page(state, doctor, lang, q, pages::manage).await
}

/// One of the doctor's two pages, drawn by `render` from the same view.
async fn doctor_page(
    State(state): State<AppState>,
    doctor: CurrentDoctor,
    lang: Lang,
    Query(q): Query<MethodsQuery>,
    render: fn(Lang, &str, &User, pages::AgentView<'_>, &pages::MethodsView<'_>) -> maud::Markup,
) -> Result<Response> {
    let view = doctor_view(&state, &doctor, lang, q.done.as_deref()).await?;
    let (agent_url, origin) = (state.config.card.agent_origin(), state.config.public_origin());
    let agent = pages::AgentView { url: &agent_url, gateway_origin: &origin };
    Ok(render(lang, &doctor.clinic.clinic_name, &doctor.user, agent, &view).into_response())
}

/// The doctor signed in here, for the password page: with a temporary password (who must
/// replace it before anything else) or with their own (who may change it). `None` when the
/// session has no login here (the caller sends them on).
async fn signed_in_doctor(state: &AppState, clinic: &ClinicContext, session: &BrowserSession) -> Result<Option<(User, LoginState)>> {
    let Some(login) = session.login() else { return Ok(None) };
    if login.clinic_id != clinic.clinic_id {
        return Ok(None);
    }
    let user = match state.store.user(&login.user_id).await {
        Ok(user) => user,
        Err(store::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !user.enabled || user.kind != UserKind::Doctor || user.clinic_id != clinic.clinic_id {
        session.sign_out().await?;
        return Ok(None);
    }
    Ok(Some((user, login)))
}

async fn password_page(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
) -> Result<Response> {
    match signed_in_doctor(&state, &clinic, &session).await? {
        Some(_) if state.store.clinic_login(&clinic.clinic_id).await?.is_some() => Ok(password_kept_upstream(lang)),
        Some((user, login)) => {
            Ok(pages::change_password(lang, &clinic.clinic_name, &user, login.must_change_password, None).into_response())
        }
        None => Ok(Redirect::to("/login").into_response()),
    }
}

/// docs/design.md §3.17: where the clinic signs in through its EMR's provider, the password is
/// the EMR's; the gateway's own (if an account has one) is neither shown nor changed here.
fn password_kept_upstream(lang: Lang) -> Response {
    let r = Refusal::PasswordLoginOff;
    (r.status(), pages::message(lang, Msg::PasswordChangeLink, &r.message(lang))).into_response()
}

/// The change form; every field goes into a zeroizing buffer straight away.
#[derive(Deserialize)]
struct ChangeForm {
    current_password: String,
    new_password: String,
    confirm: String,
}

/// Changes the signed-in doctor's password (ASVS 5.0 V6.2.2, V6.2.3). The current password is
/// checked first, as a login attempt: it is reserved under the same lockout count as the login
/// form, so a borrowed browser session cannot be used to guess the password faster.
#[tracing::instrument(name = "password.change", skip_all, fields(clinic.id = %clinic.clinic_id, principal.id))]
async fn change_password(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    form: std::result::Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response> {
    let Some((user, login)) = signed_in_doctor(&state, &clinic, &session).await? else {
        return Err(AppError::LoginRequired);
    };
    tracing::Span::current().record("principal.id", user.id.as_str());
    if state.store.clinic_login(&clinic.clinic_id).await?.is_some() {
        return Ok(password_kept_upstream(lang));
    }
    let now = state.clock.unix();
    let temporary = login.must_change_password;
    // The form again with the refusal's message; the audit row carries its code.
    let refuse = |r: Refusal| {
        (r.status(), pages::change_password(lang, &clinic.clinic_name, &user, temporary, Some(&r.message(lang)))).into_response()
    };
    let audit_failure = |reason: &'static str| AuditEvent::PasswordChangeFailed {
        clinic_id: clinic.clinic_id.clone(),
        user_id: user.id.clone(),
        reason,
    };
    let Ok(Form(form)) = form else {
        state.store.audit(&audit_failure(Refusal::MissingFields.code()), now).await?;
        return Ok(refuse(Refusal::MissingFields));
    };
    let current = Zeroizing::new(form.current_password);
    let (new, confirm) = (Zeroizing::new(form.new_password), Zeroizing::new(form.confirm));
    if current.is_empty() || new.is_empty() || confirm.is_empty() || current.len() > 1024 {
        state.store.audit(&audit_failure(Refusal::MissingFields.code()), now).await?;
        return Ok(refuse(Refusal::MissingFields));
    }

    // The current password, under the login form's lockout count for this account.
    let key = crate::login_id::lockout_key(&clinic.clinic_id, &user.login_id);
    let rules = LockoutRules {
        max_failures: state.config.login.max_failures,
        window_secs: state.config.login.failure_window_secs,
        lockout_secs: state.config.login.lockout_secs,
    };
    let locks_until = match state.store.reserve_login_attempt(&key, now, &rules).await? {
        LoginReservation::Reserved { locks_until, .. } => locks_until,
        LoginReservation::Refused { until } => {
            let r = Refusal::LoginLocked { until };
            state.store.audit(&audit_failure(r.code()), now).await?;
            return Ok(refuse(r));
        }
    };
    if !state.passwords.verify(current.clone(), Some(user.password_hash.clone())).await? {
        state.store.audit(&audit_failure(Refusal::PasswordCurrentWrong.code()), now).await?;
        if let Some(until) = locks_until {
            state.metrics.lockout();
            let event = AuditEvent::LoginLocked {
                clinic_id: clinic.clinic_id.clone(),
                user_id: Some(user.id.clone()),
                locked_until: until,
                device: clinic.fingerprint.clone(),
            };
            state.store.audit(&event, now).await?;
            return Ok(refuse(Refusal::LoginLocked { until }));
        }
        return Ok(refuse(Refusal::PasswordCurrentWrong));
    }
    state.store.clear_login_failures(&key).await?;

    let personal: Vec<&str> =
        [Some(user.login_id.as_str()), Some(user.name.as_str()), user.medical_reg_no.as_deref(), Some(clinic.clinic_name.as_str())]
            .into_iter()
            .flatten()
            .collect();
    let refusal = if *new != *confirm {
        Some(Refusal::PasswordMismatch)
    } else if *new == *current {
        // The current password was just verified, so equal text is the same password.
        Some(Refusal::PasswordSameAsOld)
    } else {
        weakness(&new, &personal).map(Refusal::PasswordWeak)
    };
    if let Some(r) = refusal {
        state.store.audit(&audit_failure(r.code()), now).await?;
        return Ok(refuse(r));
    }
    let hash = state.passwords.hash(new).await?;
    if !state.store.replace_own_password(&user.id, &user.password_hash, &hash, now).await? {
        // An operator set another password meanwhile (and so ended this session's login).
        let r = Refusal::PasswordChangedMeanwhile;
        state.store.audit(&audit_failure(r.code()), now).await?;
        session.sign_out().await?;
        return Ok(refused(r, lang, &clinic, &user.login_id));
    }
    // Whoever else knew the old password is signed out; this session moves to a new id.
    let keep = session.id_hash();
    let ended = state.store.end_browser_sessions(&user.id, keep.as_ref().map(<[u8; 32]>::as_slice)).await?;
    session.sign_in(LoginState { must_change_password: false, login_at: now, ..login }, &clinic).await?;
    let event = AuditEvent::PasswordChanged {
        clinic_id: clinic.clinic_id.clone(),
        user_id: user.id.clone(),
        by: "user",
        temporary: false,
        browser_sessions_ended: ended,
    };
    state.store.audit(&event, now).await?;
    Ok(Redirect::to(&Done::Password.location(lang)).into_response())
}
