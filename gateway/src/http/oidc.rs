//! Sign-in through the clinic's EMR OpenID Connect provider (docs/design.md §3.17): the start
//! (`/login/oidc`: a flow row, then the provider) and the callback (`/login/oidc/callback`: the
//! flow taken once, the code exchanged, the ID token verified, the user mapped and checked as
//! after a password). The presence step that follows is the same as after a password.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::Result;
use super::extract::ClinicContext;
use super::i18n::Lang;
use super::pages;
use super::refusal::Refusal;
use super::session::{BrowserSession, LoginState};
use crate::oidc::{self, UpstreamError};
use crate::store::{self, AuditEvent, ClinicLogin, NewFlow, Outcome, UpstreamMatch, UserKind};

/// The `method` label of these sign-ins in `ninsho_logins_total`.
const OIDC: &str = "oidc";
/// The cookie that binds a flow to the browser that started it. `SameSite=Lax`: it must come
/// back on the provider's top-level redirect to the callback, which `Strict` would not.
const FLOW_COOKIE: &str = "__Host-ninsho-oidc";
/// How long a flow may take, from the start to the callback (seconds).
pub const FLOW_SECS: i64 = 600;
/// Where the provider sends the browser back.
const CALLBACK: &str = "/login/oidc/callback";

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/login/oidc", get(start)).route(CALLBACK, get(callback))
}

/// The callback's address, registered as the client's `redirect_uri` at the provider.
fn redirect_uri(state: &AppState) -> String {
    format!("{}{CALLBACK}", state.config.public_origin())
}

/// The flow cookie's value, if the request has one.
fn flow_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == FLOW_COOKIE && value.len() == 43).then(|| value.to_owned()))
}

fn with_cookie(mut res: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(SET_COOKIE, v);
    }
    res
}

/// The cookie dropped: every callback answer clears it.
const CLEAR_FLOW: &str = "__Host-ninsho-oidc=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0";

/// What a refusal needs to be audited.
struct Attempt<'a> {
    state: &'a AppState,
    clinic: &'a ClinicContext,
    lang: Lang,
    issuer: Option<String>,
    sub: Option<String>,
    user_id: Option<String>,
    provider_error: Option<String>,
}

impl Attempt<'_> {
    /// The refusal page (in the page's language, with the way back), audited with the
    /// refusal's code as the reason, counted, the flow cookie cleared; nothing else changes.
    async fn refuse(self, r: Refusal) -> Result<Response> {
        Ok(with_cookie(self.refuse_keeping_cookie(r).await?, CLEAR_FLOW))
    }

    /// [`Self::refuse`] without touching the flow cookie: a callback that named no flow of
    /// ours leaves the browser's own flow, if it has one, to its own callback.
    async fn refuse_keeping_cookie(self, r: Refusal) -> Result<Response> {
        let now = self.state.clock.unix();
        self.state.metrics.login(OIDC, Outcome::Failure, Some(r.code()));
        let event = AuditEvent::UpstreamLoginFailed {
            clinic_id: self.clinic.clinic_id.clone(),
            user_id: self.user_id,
            reason: r.code(),
            device: self.clinic.fingerprint.clone(),
            issuer: self.issuer,
            sub: self.sub,
            provider_error: self.provider_error,
        };
        self.state.store.audit(&event, now).await?;
        let page = pages::message(self.lang, r.title(), &r.message(self.lang));
        Ok((r.status(), page).into_response())
    }
}

fn refusal_of(e: &UpstreamError) -> Refusal {
    match e {
        UpstreamError::Unavailable(_) => Refusal::UpstreamUnavailable,
        UpstreamError::TokenRefused(_) => Refusal::UpstreamTokenRefused,
        UpstreamError::Invalid(_) => Refusal::UpstreamIdTokenInvalid,
        UpstreamError::Expired => Refusal::UpstreamIdTokenExpired,
        UpstreamError::NonceMismatch => Refusal::UpstreamNonceMismatch,
        UpstreamError::Internal(_) => Refusal::Internal,
    }
}

/// `/login/oidc`: a new flow, then the provider's authorization endpoint.
#[tracing::instrument(name = "login.oidc.start", skip_all, fields(clinic.id = %clinic.clinic_id))]
async fn start(State(state): State<AppState>, clinic: ClinicContext, lang: Lang, session: BrowserSession) -> Result<Response> {
    if session.login().is_some_and(|l| l.clinic_id == clinic.clinic_id) {
        return Ok(Redirect::to("/methods").into_response());
    }
    let attempt = Attempt { state: &state, clinic: &clinic, lang, issuer: None, sub: None, user_id: None, provider_error: None };
    let Some(login) = state.store.clinic_login(&clinic.clinic_id).await? else {
        return attempt.refuse(Refusal::UpstreamNotConfigured).await;
    };
    let now = state.clock.unix();
    let attempt = Attempt { issuer: Some(login.issuer.clone()), ..attempt };
    let meta = match state.upstream.metadata(&login.issuer, now).await {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!(error = %e, issuer = %login.issuer, "OpenID Connect provider unusable");
            return attempt.refuse(refusal_of(&e)).await;
        }
    };
    let request = oidc::Request::new();
    let location = match request.url(&meta.authorization_endpoint, &login, &redirect_uri(&state), lang.code()) {
        Ok(url) => url,
        Err(e) => return attempt.refuse(refusal_of(&e)).await,
    };
    let browser = oidc::random_token();
    let flow = NewFlow {
        state_hash: &oidc::hash(&request.state),
        browser_hash: &oidc::hash(&browser),
        clinic_id: &clinic.clinic_id,
        device: &clinic.fingerprint,
        nonce: &request.nonce,
        pkce_verifier: &request.verifier,
        expires_at: now + FLOW_SECS,
    };
    state.store.put_oidc_flow(&flow, now).await?;
    let cookie = format!("{FLOW_COOKIE}={browser}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={FLOW_SECS}");
    Ok(with_cookie(Redirect::to(&location).into_response(), &cookie))
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// `/login/oidc/callback`: the provider's answer.
#[tracing::instrument(name = "login.oidc.callback", skip_all, fields(clinic.id = %clinic.clinic_id, principal.id))]
async fn callback(
    State(state): State<AppState>,
    clinic: ClinicContext,
    lang: Lang,
    session: BrowserSession,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response> {
    let now = state.clock.unix();
    let attempt = Attempt { state: &state, clinic: &clinic, lang, issuer: None, sub: None, user_id: None, provider_error: None };
    // The flow is taken first, whatever follows: one callback per flow, on any instance.
    let flow = match q.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 128) {
        Some(s) => state.store.take_oidc_flow(&oidc::hash(s)).await?,
        None => None,
    };
    let Some(flow) = flow else {
        return attempt.refuse_keeping_cookie(Refusal::UpstreamFlowUnknown).await;
    };
    let same_browser = flow_cookie(&headers).is_some_and(|c| bool::from(oidc::hash(&c).ct_eq(flow.browser_hash.as_slice())));
    if !same_browser || flow.clinic_id != clinic.clinic_id || flow.device != clinic.fingerprint {
        return attempt.refuse(Refusal::UpstreamFlowMismatch).await;
    }
    if flow.expires_at <= now {
        return attempt.refuse(Refusal::UpstreamFlowExpired).await;
    }
    let Some(login) = state.store.clinic_login(&clinic.clinic_id).await? else {
        return attempt.refuse(Refusal::UpstreamNotConfigured).await;
    };
    let attempt = Attempt { issuer: Some(login.issuer.clone()), ..attempt };
    // RFC 9207: a provider that names itself in the answer must be this clinic's (mix-up).
    if q.iss.as_deref().is_some_and(|iss| iss != login.issuer) {
        let attempt = Attempt { provider_error: Some("iss_mismatch".to_owned()), ..attempt };
        return attempt.refuse(Refusal::UpstreamProviderError).await;
    }
    if let Some(error) = q.error.as_deref() {
        let attempt = Attempt { provider_error: Some(oidc::error_code(error)), ..attempt };
        return attempt.refuse(Refusal::UpstreamProviderError).await;
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return attempt.refuse(Refusal::UpstreamProviderError).await;
    };
    let verified = match exchange_and_verify(&state, &login, code, &flow.pkce_verifier, &flow.nonce, now).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(error = %e, issuer = %login.issuer, "upstream sign-in refused");
            let provider_error = match &e {
                UpstreamError::TokenRefused(code) => Some(code.clone()),
                _ => None,
            };
            return Attempt { provider_error, ..attempt }.refuse(refusal_of(&e)).await;
        }
    };
    let attempt = Attempt { sub: Some(verified.sub.clone()), ..attempt };

    // The provider's claim names a user of this clinic.
    let user = match login.match_on {
        UpstreamMatch::ExternalId => state.store.user_by_external_id(&clinic.clinic_id, &verified.subject).await,
        UpstreamMatch::LoginId => state.store.user_by_login(&clinic.clinic_id, &verified.subject).await,
    };
    let user = match user {
        Ok(user) => user,
        Err(store::Error::NotFound) => return attempt.refuse(Refusal::UpstreamUnknownUser).await,
        Err(e) => return Err(e.into()),
    };
    tracing::Span::current().record("principal.id", user.id.as_str());
    let attempt = Attempt { user_id: Some(user.id.clone()), ..attempt };
    // The gateway's own checks, as after a password: enabled, not locked, a doctor.
    if !user.enabled {
        return attempt.refuse(Refusal::UpstreamUserDisabled).await;
    }
    let key = crate::login_id::lockout_key(&clinic.clinic_id, &user.login_id);
    if let Some(until) = state.store.login_locked_until(&key, now).await? {
        return attempt.refuse(Refusal::LoginLocked { until }).await;
    }
    if user.kind != UserKind::Doctor {
        return attempt.refuse(Refusal::DoctorOnly).await;
    }

    // New privilege, new session id; the same login state as after a password (never a
    // temporary one: the gateway's password plays no part here).
    let login_state = LoginState { user_id: user.id.clone(), clinic_id: clinic.clinic_id.clone(), login_at: now, must_change_password: false };
    session.sign_in(login_state, &clinic).await?;
    state.metrics.login(OIDC, Outcome::Success, None);
    let event = AuditEvent::UpstreamLoginSucceeded {
        clinic_id: clinic.clinic_id.clone(),
        user_id: user.id.clone(),
        issuer: login.issuer.clone(),
        sub: verified.sub,
        acr: verified.acr,
        amr: verified.amr,
    };
    state.store.audit(&event, now).await?;
    let next = if super::login::linked_authenticators(&state, &user.id).await?.is_empty() { "/manage" } else { "/methods" };
    Ok(with_cookie(Redirect::to(next).into_response(), CLEAR_FLOW))
}

async fn exchange_and_verify(
    state: &AppState,
    login: &ClinicLogin,
    code: &str,
    verifier: &str,
    nonce: &str,
    now: i64,
) -> std::result::Result<oidc::Verified, UpstreamError> {
    let meta = state.upstream.metadata(&login.issuer, now).await?;
    let id_token = state.upstream.exchange(login, &meta, code, verifier, &redirect_uri(state)).await?;
    state.upstream.verify(login, &id_token, nonce, now).await
}
