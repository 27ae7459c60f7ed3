//! Browser sessions (DESIGN §3.2): a random 256-bit id in a `__Host-` cookie; the database keeps
//! only SHA-256 of the id, the login and the expiry, so sessions survive restarts and are shared
//! by every instance.
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

use super::{AppState, SESSION_COOKIE};
use super::error::AppError;
use crate::store::{self, SessionMove};

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
    cookie: CookieChange,
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
        // Never the id (DESIGN §6).
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

    fn expiry(&self) -> (i64, i64) {
        let now = self.inner.state.clock.unix();
        (now, now + self.inner.state.config.login.session_idle_secs)
    }

    /// The login this session carries, if any.
    pub fn login(&self) -> Option<LoginState> {
        self.current().data.login.clone()
    }

    /// SHA-256 of the id of this stored session; `None` without one.
    pub fn id_hash(&self) -> Option<[u8; 32]> {
        self.current().id.as_ref().map(SessionId::hash)
    }

    /// Signs `login` in: the session moves to a new id (DESIGN §3.2, new privilege) or, without
    /// one, is created.
    pub async fn sign_in(&self, login: LoginState) -> store::Result<()> {
        let data = Data { login: Some(login) };
        let json = serde_json::to_string(&data).map_err(|e| store::Error::Database(sqlx::Error::Encode(Box::new(e))))?;
        let (now, expires_at) = self.expiry();
        let store = &self.inner.state.store;
        let from = self.current().id.as_ref().map(SessionId::hash);
        let mut to = SessionId::random();
        let moved = match from {
            Some(from) => {
                let step = SessionMove { from, to: to.hash(), expires_at };
                store.session_move(&step, Some(&json), now).await?
            }
            None => false,
        };
        if !moved {
            // A collision of 256-bit random ids does not happen, but never overwrite a session.
            while !store.session_create(&to.hash(), &json, expires_at, now).await? {
                to = SessionId::random();
            }
        }
        *self.current() = Current { id: Some(to), data, cookie: CookieChange::Set };
        Ok(())
    }

    /// Ends the session: the stored row goes and the browser is told to drop the cookie.
    pub async fn sign_out(&self) -> store::Result<()> {
        let id = self.current().id.take();
        if let Some(id) = id {
            self.inner.state.store.session_delete(&id.hash()).await?;
        }
        *self.current() = Current { id: None, data: Data::default(), cookie: CookieChange::Clear };
        Ok(())
    }

    /// A new id for this stored session, for a transaction that also does something else (the
    /// opening of a signing session); `None` without a stored session.
    pub(super) fn rotation(&self) -> Option<Rotation> {
        let from = self.current().id.as_ref()?.hash();
        let to = SessionId::random();
        let (_, expires_at) = self.expiry();
        Some(Rotation { step: SessionMove { from, to: to.hash(), expires_at }, to })
    }

    /// Adopts the id a committed transaction moved this session to.
    pub(super) fn moved(&self, rotation: Rotation) {
        let mut current = self.current();
        current.id = Some(rotation.to);
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

/// Middleware: loads the session named by the cookie (a live one only), hands it to the
/// handlers, pushes its idle expiry forward, and sets or clears the cookie on the way out.
pub(super) async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let now = state.clock.unix();
    let idle = state.config.login.session_idle_secs;
    let mut current = Current { id: None, data: Data::default(), cookie: CookieChange::Keep };
    if let Some(id) = id_from(req.headers()) {
        let hash = id.hash();
        match state.store.session_load(&hash, now).await {
            Ok(Some((json, expires_at))) => {
                // Data that does not decode (an older format) is a session without a login.
                current.data = serde_json::from_str(&json).unwrap_or_default();
                if expires_at < now + idle - REFRESH_SECS
                    && let Err(e) = state.store.session_touch(&hash, now + idle, now).await
                {
                    return AppError::from(e).into_response();
                }
                current.id = Some(id);
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
