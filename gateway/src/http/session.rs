//! Browser sessions (docs/design.md §3.2): a random 256-bit id in a `__Host-` cookie; the database keeps
//! only SHA-256 of the id, the login and the expiry, so sessions survive restarts and are shared
//! by every instance.
//!
//! A session ends at its idle expiry or at its absolute expiry (`login.session_absolute_secs`
//! after the password login), whichever comes first, and is bound to the clinic client
//! certificate it was signed in under: the same cookie presented through another device's
//! certificate (even of the same clinic) is no session, and is audited. It also remembers when
//! the doctor last proved a card or FIDO authenticator in it, which changing the authenticators
//! requires (`login.reauth_secs`).
//!
//! Our own layer rather than a session crate's: a method success moves the session to a new id in
//! the same transaction that opens the signing session (decision 0010), which a store interface
//! of create / save / delete cannot express (it rotates as a delete and a create, two more
//! commits per login). What needs care is small and kept here: ids come from the OS generator,
//! are compared only as hashes in the database, and are never logged; every write happens in the
//! handler that asks for it, so its failure is the handler's error; the cookie is only ever set to
//! an id the database holds.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AppState, ClinicContext, SESSION_COOKIE};
use super::error::AppError;
use crate::store::{self, AuditEvent, SessionMove, SessionSignIn};

/// A stored session's idle expiry is pushed forward by a request at most this often, so reading
/// pages does not cost a write each.
const REFRESH_SECS: i64 = 60;

/// What a session records about a signed-in doctor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    /// The user.
    pub user_id: String,
    /// The clinic whose certificate the login came through.
    pub clinic_id: String,
    /// Unix seconds.
    pub login_at: i64,
    /// The password was temporary: nothing but choosing a new one is allowed.
    #[serde(default)]
    pub must_change_password: bool,
}

/// The stored data of a session (JSON in `browser_sessions.data`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    login: Option<LoginState>,
}

/// A session id: 32 bytes from the OS generator. Only its hash leaves this module.
#[derive(Clone, PartialEq, Eq)]
struct SessionId([u8; 32]);

impl SessionId {
    fn random() -> Self {
        Self(rand::random())
    }

    /// The id in a cookie value, if it is one (43 base64url characters).
    fn parse(value: &str) -> Option<Self> {
        if value.len() != 43 {
            return None;
        }
        // The engine refuses padding and non-zero trailing bits: one spelling per id.
        URL_SAFE_NO_PAD.decode(value).ok()?.try_into().ok().map(Self)
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// What the database keeps, and what card challenges and WebAuthn ceremonies are bound to.
    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// The session id from a request's `Cookie` headers (RFC 6265 §5.4: `name=value` pairs separated
/// by `;`). The first pair with our name whose value is a well-formed id wins; anything else is
/// ignored, and the request is simply without a session.
fn id_from(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| if name == SESSION_COOKIE { SessionId::parse(value) } else { None })
}

/// What the response must tell the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieChange {
    Keep,
    Set,
    Clear,
}

/// The session as this request sees it (no `Debug`: it holds the id).
struct Current {
    /// The id of a stored, live session; `None` without one.
    id: Option<SessionId>,
    data: Data,
    /// The latest card or FIDO proof in this session (Unix seconds).
    reauth_at: Option<i64>,
    /// When the session ends however active it is (Unix seconds).
    absolute_expires_at: Option<i64>,
    /// The signed-in user's account, read with the session ([`store::LoadedSession::user`]).
    user: Option<store::User>,
    cookie: CookieChange,
}

impl Current {
    fn none(cookie: CookieChange) -> Self {
        Self { id: None, data: Data::default(), reauth_at: None, absolute_expires_at: None, user: None, cookie }
    }
}

/// What a session is bound to: SHA-256 of the client certificate's fingerprint.
fn device_binding(clinic: &ClinicContext) -> [u8; 32] {
    Sha256::digest(clinic.fingerprint.as_bytes()).into()
}

/// The request's browser session, put there by [`layer`]; clones share it.
#[derive(Clone)]
pub struct BrowserSession {
    inner: Arc<Inner>,
}

struct Inner {
    state: AppState,
    current: Mutex<Current>,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the id (docs/design.md §6).
        f.debug_struct("BrowserSession").field("login", &self.current().data.login).finish_non_exhaustive()
    }
}

/// A new id for the session, to be written by a store transaction ([`SessionMove`]) and then
/// adopted with [`BrowserSession::moved`].
pub(super) struct Rotation {
    to: SessionId,
    step: SessionMove,
}

impl Rotation {
    /// What the store transaction writes.
    pub(super) fn step(&self) -> &SessionMove {
        &self.step
    }
}

impl BrowserSession {
    fn current(&self) -> MutexGuard<'_, Current> {
        // The lock is never held across an await or a panic-prone call.
        self.inner.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The idle expiry a session moved now gets, never past its absolute expiry.
    fn idle_expiry(&self) -> i64 {
        let now = self.inner.state.clock.unix();
        let idle = now + self.inner.state.config.login.session_idle_secs;
        self.current().absolute_expires_at.map_or(idle, |absolute| idle.min(absolute))
    }

    /// The login this session carries, if any.
    pub fn login(&self) -> Option<LoginState> {
        self.current().data.login.clone()
    }

    /// The account of `user_id` as this request's session load read it, if it is that user's
    /// (saves reading it again on every page; a session changed since reads it anew).
    pub fn loaded_user(&self, user_id: &str) -> Option<store::User> {
        self.current().user.as_ref().filter(|u| u.id == user_id).cloned()
    }

    /// SHA-256 of the id of this stored session; `None` without one.
    pub fn id_hash(&self) -> Option<[u8; 32]> {
        self.current().id.as_ref().map(SessionId::hash)
    }

    /// Whether the doctor proved a card or FIDO authenticator in this session within the last
    /// `login.reauth_secs`.
    pub fn recently_proven(&self) -> bool {
        let now = self.inner.state.clock.unix();
        let window = self.inner.state.config.login.reauth_secs;
        self.current().reauth_at.is_some_and(|at| at <= now && now - at <= window)
    }

    /// Records a card or FIDO proof that did not move the session (a presence check that
    /// authorises linking).
    pub async fn mark_proven(&self) -> store::Result<()> {
        let now = self.inner.state.clock.unix();
        let hash = self.id_hash();
        if let Some(hash) = hash {
            self.inner.state.store.session_mark_proven(&hash, now).await?;
            self.current().reauth_at = Some(now);
        }
        Ok(())
    }

    /// Signs `login` in through `clinic`'s certificate: the session moves to a new id (docs/design.md
    /// §3.2, new privilege) or, without one, is created, bound to that certificate, with a new
    /// absolute expiry and no earlier proof with an authenticator.
    pub async fn sign_in(&self, login: LoginState, clinic: &ClinicContext) -> store::Result<()> {
        let user_id = login.user_id.clone();
        let data = Data { login: Some(login) };
        let json = serde_json::to_string(&data).map_err(|e| store::Error::Database(sqlx::Error::Encode(Box::new(e))))?;
        let now = self.inner.state.clock.unix();
        let absolute_expires_at = now + self.inner.state.config.login.session_absolute_secs;
        let expires_at = (now + self.inner.state.config.login.session_idle_secs).min(absolute_expires_at);
        let binding = device_binding(clinic);
        let store = &self.inner.state.store;
        let from = self.current().id.as_ref().map(SessionId::hash);
        let mut to = SessionId::random();
        let mut row = SessionSignIn {
            id_hash: to.hash(),
            data: &json,
            user_id: &user_id,
            client_cert_sha256: binding,
            expires_at,
            absolute_expires_at,
        };
        let moved = match from {
            Some(from) => store.session_sign_in_move(&from, &row, now).await?,
            None => false,
        };
        if !moved {
            // A collision of 256-bit random ids does not happen, but never overwrite a session.
            while !store.session_create(&row, now).await? {
                to = SessionId::random();
                row.id_hash = to.hash();
            }
        }
        *self.current() =
            Current { id: Some(to), data, reauth_at: None, absolute_expires_at: Some(absolute_expires_at), user: None, cookie: CookieChange::Set };
        Ok(())
    }

    /// Ends the session: the stored row goes and the browser is told to drop the cookie.
    pub async fn sign_out(&self) -> store::Result<()> {
        let id = self.current().id.take();
        if let Some(id) = id {
            self.inner.state.store.session_delete(&id.hash()).await?;
        }
        *self.current() = Current::none(CookieChange::Clear);
        Ok(())
    }

    /// A new id for this stored session, for a transaction that also does something else (the
    /// opening of a signing session); `None` without a stored session.
    pub(super) fn rotation(&self) -> Option<Rotation> {
        let from = self.current().id.as_ref()?.hash();
        let to = SessionId::random();
        let expires_at = self.idle_expiry();
        Some(Rotation { step: SessionMove { from, to: to.hash(), expires_at }, to })
    }

    /// Adopts the id a committed transaction moved this session to (after a presence check,
    /// which the move recorded as the session's latest proof).
    pub(super) fn moved(&self, rotation: Rotation) {
        let now = self.inner.state.clock.unix();
        let mut current = self.current();
        current.id = Some(rotation.to);
        current.reauth_at = Some(now);
        current.cookie = CookieChange::Set;
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BrowserSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        // Fail closed: a route reached without the layer is a wiring bug.
        parts.extensions.get::<BrowserSession>().cloned().ok_or_else(|| AppError::internal("session layer did not run"))
    }
}

/// Middleware: loads the session named by the cookie (a live one bound to this request's client
/// certificate only), hands it to the handlers, pushes its idle expiry forward (never past the
/// absolute expiry), and sets or clears the cookie on the way out.
pub(super) async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let now = state.clock.unix();
    let idle = state.config.login.session_idle_secs;
    // Fail closed: the clinic gate runs before this layer on every browser route.
    let Some(clinic) = req.extensions().get::<ClinicContext>().cloned() else {
        return AppError::internal("session layer before the clinic gate").into_response();
    };
    let mut current = Current::none(CookieChange::Keep);
    if let Some(id) = id_from(req.headers()) {
        let hash = id.hash();
        match state.store.session_load(&hash, now).await {
            Ok(Some(loaded)) => {
                // Data that does not decode (an older format) is a session without a login.
                let data: Data = serde_json::from_str(&loaded.data).unwrap_or_default();
                if loaded.client_cert_sha256.as_slice() != device_binding(&clinic).as_slice() {
                    // A cookie carried to another device: no session here, and on the record. The
                    // session itself stays usable on the device it belongs to.
                    let event = AuditEvent::BrowserSessionRefused {
                        clinic_id: clinic.clinic_id.clone(),
                        user_id: data.login.map(|l| l.user_id),
                        reason: "device_mismatch",
                    };
                    if let Err(e) = state.store.audit(&event, now).await {
                        return AppError::from(e).into_response();
                    }
                } else {
                    let next_expiry = (now + idle).min(loaded.absolute_expires_at);
                    if loaded.expires_at < next_expiry - REFRESH_SECS
                        && let Err(e) = state.store.session_touch(&hash, next_expiry, now).await
                    {
                        return AppError::from(e).into_response();
                    }
                    current = Current {
                        id: Some(id),
                        data,
                        reauth_at: loaded.reauth_at,
                        absolute_expires_at: Some(loaded.absolute_expires_at),
                        user: loaded.user,
                        cookie: CookieChange::Keep,
                    };
                }
            }
            // Unknown or expired: the request has no session. The cookie is left alone: a
            // concurrent request of the same browser may have just set a newer one.
            Ok(None) => {}
            Err(e) => return AppError::from(e).into_response(),
        }
    }
    let session = BrowserSession { inner: Arc::new(Inner { state, current: Mutex::new(current) }) };
    req.extensions_mut().insert(session.clone());
    let mut res = next.run(req).await;
    let (change, value) = {
        let current = session.current();
        (current.cookie, current.id.as_ref().map(SessionId::encode))
    };
    let cookie = match (change, value) {
        (CookieChange::Set, Some(id)) => format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"),
        (CookieChange::Clear, _) | (CookieChange::Set, None) => {
            format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
        }
        (CookieChange::Keep, _) => return res,
    };
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            res.headers_mut().append(SET_COOKIE, v);
            res
        }
        Err(_) => AppError::internal("session cookie not a header value").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn ids_are_random_and_survive_the_cookie() {
        let (a, b) = (SessionId::random(), SessionId::random());
        assert!(a != b);
        let encoded = a.encode();
        assert_eq!(encoded.len(), 43);
        assert!(SessionId::parse(&encoded) == Some(a.clone()));
        assert_ne!(a.hash(), a.0, "the database sees a hash, not the id");
    }

    #[test]
    fn only_a_well_formed_id_under_our_name_is_taken() {
        let id = SessionId::random().encode();
        let found = id_from(&headers(&[&format!("lang=en; {SESSION_COOKIE}={id}; other=1")]));
        assert_eq!(found.map(|i| i.encode()), Some(id.clone()));
        // A second Cookie header counts too.
        assert!(id_from(&headers(&["lang=en", &format!("{SESSION_COOKIE}={id}")])).is_some());
        for bad in [
            format!("ninsho={id}"),
            format!("{SESSION_COOKIE}={}", &id[1..]),
            format!("{SESSION_COOKIE}={id}A"),
            format!("{SESSION_COOKIE}={}", id.replace(|c: char| c.is_ascii_alphanumeric(), "+")),
            SESSION_COOKIE.to_owned(),
            String::new(),
        ] {
            assert!(id_from(&headers(&[&bad])).is_none(), "{bad}");
        }
    }
}
