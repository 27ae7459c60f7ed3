//! Doctor login and logout (DESIGN §3.2), and the method page that follows a login.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::AppState;
use super::error::{AppError, Result};
use super::extract::{ClinicContext, CurrentDoctor};
use super::i18n::{Lang, Msg};
use super::pages;
use super::session::{BrowserSession, LoginState};
use crate::store::{self, AuditEvent, EndReason, LockoutRules, SessionFilter, UserKind};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/login") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/methods", get(methods_page))
}

#[derive(Deserialize)]
struct LoginPageQuery {
    signed_out: Option<String>,
}

async fn login_page(
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    Query(q): Query<LoginPageQuery>,
) -> Result<Response> {
    if session.login().is_some_and(|l| l.clinic_id == clinic.clinic_id) {
        return Ok(Redirect::to("/methods").into_response());
    }
    let notice = q.signed_out.map(|_| Msg::SignedOut.text(lang));
    Ok(pages::login(lang, &clinic.clinic_name, None, notice, "").into_response())
}

/// The login form. The password is moved into a zeroizing buffer straight away.
#[derive(Deserialize)]
struct LoginForm {
    login_id: String,
    password: String,
}

fn refused(status: StatusCode, lang: Lang, clinic: &ClinicContext, error: &str, login_id: &str) -> Response {
    (status, pages::login(lang, &clinic.clinic_name, Some(error), None, login_id)).into_response()
}

#[tracing::instrument(name = "login", skip_all, fields(clinic.id = %clinic.clinic_id, principal.id))]
async fn login(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    form: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return Ok(refused(StatusCode::BAD_REQUEST, lang, &clinic, Msg::MissingFields.text(lang), ""));
    };
    let password = Zeroizing::new(form.password);
    let login_id = form.login_id.trim();
    if login_id.is_empty() || password.is_empty() || login_id.len() > 128 || password.len() > 1024 {
        return Ok(refused(StatusCode::BAD_REQUEST, lang, &clinic, Msg::MissingFields.text(lang), login_id));
    }
    let now = state.clock.unix();
    // Failures are counted per (clinic, login ID) whether or not the ID exists, under the folded
    // ID that finds the account: `DOCTOR1` and `doctor1` share one count.
    let key = format!("{}/{}", clinic.clinic_id, crate::login_id::fold(login_id));
    let locked = |until: i64| {
        let text = format!("{} {}", Msg::LoginLocked.text(lang), lang.format_time(until));
        refused(StatusCode::FORBIDDEN, lang, &clinic, &text, login_id)
    };

    if let Some(until) = state.store.login_locked_until(&key, now).await? {
        state.metrics.login("locked");
        state.store.audit(&AuditEvent::LoginLocked { clinic_id: clinic.clinic_id.clone(), user_id: None, locked_until: until }, now).await?;
        return Ok(locked(until));
    }

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
            let rules = LockoutRules {
                max_failures: state.config.login.max_failures,
                window_secs: state.config.login.failure_window_secs,
                lockout_secs: state.config.login.lockout_secs,
            };
            let now_locked = state.store.record_login_failure(&key, now, &rules).await?;
            let event = AuditEvent::LoginFailed { clinic_id: clinic.clinic_id.clone(), user_id: user_id.clone(), reason };
            state.store.audit(&event, now).await?;
            if let Some(until) = now_locked {
                state.metrics.login("locked");
                let event = AuditEvent::LoginLocked { clinic_id: clinic.clinic_id.clone(), user_id, locked_until: until };
                state.store.audit(&event, now).await?;
                return Ok(locked(until));
            }
            state.metrics.login("failure");
            return Ok(refused(StatusCode::FORBIDDEN, lang, &clinic, Msg::InvalidCredentials.text(lang), login_id));
        }
    };
    tracing::Span::current().record("principal.id", user.id.as_str());
    // The password was right, so this is no guessing attempt: reset the counter either way.
    state.store.clear_login_failures(&key).await?;

    if user.kind != UserKind::Doctor {
        state.metrics.login("not_doctor");
        let event =
            AuditEvent::LoginFailed { clinic_id: clinic.clinic_id.clone(), user_id: Some(user.id.clone()), reason: "not_doctor" };
        state.store.audit(&event, now).await?;
        return Ok(refused(StatusCode::FORBIDDEN, lang, &clinic, Msg::DoctorOnly.text(lang), login_id));
    }

    // New privilege, new session id (session fixation).
    session.sign_in(LoginState { user_id: user.id.clone(), clinic_id: clinic.clinic_id.clone(), login_at: now }).await?;
    state.metrics.login("success");
    state.store.audit(&AuditEvent::LoginSucceeded { clinic_id: clinic.clinic_id, user_id: user.id }, now).await?;
    Ok(Redirect::to("/methods").into_response())
}

async fn logout(
    State(state): State<AppState>,
    doctor: std::result::Result<CurrentDoctor, AppError>,
    session: BrowserSession,
) -> Result<Response> {
    if let Ok(doctor) = doctor {
        let now = state.clock.unix();
        // DESIGN §3.7: signing out ends the doctor's signing session at this clinic, on every
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

async fn methods_page(
    State(state): State<AppState>,
    doctor: CurrentDoctor,
    lang: Lang,
    Query(q): Query<MethodsQuery>,
) -> Result<Response> {
    let now = state.clock.unix();
    let mut credentials: Vec<pages::LinkedView> = state
        .store
        .fido_credentials_of(&doctor.user.id)
        .await?
        .into_iter()
        .map(|c| pages::LinkedView {
            id: c.id,
            kind: "fido",
            name: c.name,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            synced: c.backup_eligible,
        })
        .collect();
    credentials.extend(state.store.card_credentials_of(&doctor.user.id).await?.into_iter().map(|c| pages::LinkedView {
        kind: if c.kind == "hpki" { "hpki" } else { "jpki" },
        id: c.id,
        name: c.name,
        created_at: c.created_at,
        last_used_at: c.last_used_at,
        synced: false,
    }));
    // Only this doctor's session at this clinic (DESIGN §3.7).
    let signing = state
        .store
        .live_signing_session(&doctor.user.id, &doctor.clinic.clinic_id, now)
        .await?
        .map(|s| pages::SigningView { expires_at: s.expires_at, idle_expires_at: s.idle_expires_at() });
    let notice = match q.done.as_deref() {
        Some("linked") => Some(Msg::NoticeLinked),
        Some("renamed") => Some(Msg::NoticeRenamed),
        Some("removed") => Some(Msg::NoticeRemoved),
        Some("ended") => Some(Msg::NoticeEnded),
        Some("authenticated") => Some(Msg::NoticeAuthenticated),
        _ => None,
    };
    let view = pages::MethodsView { credentials, signing, notice: notice.map(|m| m.text(lang)), error: None };
    let agent_url = state.config.card.agent_origin();
    Ok(pages::methods(lang, &doctor.clinic.clinic_name, &doctor.user, &agent_url, &view).into_response())
}
