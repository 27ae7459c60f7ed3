//! What each scenario sends: the requests of one operation, and the per-worker state some
//! scenarios need (a logged-in browser session with a linked authenticator).

use bytes::Bytes;
use hyper::header::{COOKIE, HeaderValue, ORIGIN, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::load::{Conn, OpError, Reply, Target, empty, with_body};
use crate::soft::SoftAuthenticator;

/// The gateway's browser-session cookie.
const SESSION_COOKIE: &str = "__Host-ninsho";

/// A doctor a FIDO worker logs in as, with the registration code that lets it link its
/// software authenticator.
#[derive(Debug, Clone)]
pub struct FidoUser {
    pub login_id: String,
    pub code: String,
}

/// A scenario's operation.
pub enum Workload {
    /// `GET path`, expecting 200 (login page, trivial server).
    Get { path: String },
    /// `POST /api/v1/signing-tokens` for a random doctor `d1..=dN` of `clinic`.
    Token { clinic: String, doctors: u64 },
    /// The peer's `POST /token` (client credentials, tls_client_auth).
    PeerToken { body: Bytes },
    /// FIDO login: `/fido/auth/start` + `/fido/auth/finish` for the worker's doctor.
    Fido {
        users: Vec<FidoUser>,
        password: String,
        origin: String,
    },
}

/// Per-worker state.
pub enum WorkerState {
    None,
    /// xorshift64 state for picking doctors.
    Rng(u64),
    Fido(Box<FidoWorker>),
}

/// A logged-in doctor's browser with a linked authenticator.
pub struct FidoWorker {
    cookie: Option<HeaderValue>,
    auth: SoftAuthenticator,
    origin: HeaderValue,
}

impl FidoWorker {
    fn post(
        &self,
        target: &Target,
        path: &str,
        body: Value,
    ) -> Result<hyper::Request<http_body_util::Full<Bytes>>, OpError> {
        let mut b = target
            .request(Method::POST, path)
            .header(ORIGIN, self.origin.clone());
        if let Some(c) = &self.cookie {
            b = b.header(COOKIE, c.clone());
        }
        with_body(b, "application/json", Bytes::from(body.to_string()))
    }

    fn keep_cookie(&mut self, reply: &Reply) {
        for v in reply.headers.get_all(SET_COOKIE) {
            if let Some(pair) = v.to_str().ok().and_then(|s| s.split(';').next())
                && pair
                    .strip_prefix(SESSION_COOKIE)
                    .is_some_and(|rest| rest.starts_with('='))
            {
                self.cookie = HeaderValue::from_str(pair).ok();
            }
        }
    }

    async fn call(
        &mut self,
        target: &Target,
        conn: &mut Conn,
        what: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, OpError> {
        let reply = conn.send(self.post(target, path, body)?).await?;
        self.keep_cookie(&reply);
        if reply.status != StatusCode::OK {
            return Err(OpError::status(what, reply.status));
        }
        serde_json::from_slice(&reply.body).map_err(|_| OpError(format!("{what}_json")))
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn expect_ok(reply: &Reply, what: &str) -> Result<(), OpError> {
    if reply.status == StatusCode::OK {
        Ok(())
    } else {
        Err(OpError::status(what, reply.status))
    }
}

impl Workload {
    /// Per-worker set-up, before the measurement starts.
    pub async fn prepare(&self, index: usize, target: &Target) -> anyhow::Result<WorkerState> {
        match self {
            Workload::Get { .. } | Workload::PeerToken { .. } => Ok(WorkerState::None),
            Workload::Token { .. } => Ok(WorkerState::Rng(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            )),
            Workload::Fido {
                users,
                password,
                origin,
            } => {
                let user = users.get(index).ok_or_else(|| {
                    anyhow::anyhow!("only {} FIDO users were seeded", users.len())
                })?;
                let mut w = FidoWorker {
                    cookie: None,
                    auth: SoftAuthenticator::new(origin, "localhost")?,
                    origin: HeaderValue::from_str(origin)?,
                };
                let mut conn = target
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("connect: {}", e.0))?;
                let form = format!(
                    "login_id={}&password={}",
                    user.login_id,
                    password.replace(' ', "+")
                );
                let req = with_body(
                    target
                        .request(Method::POST, "/login")
                        .header(ORIGIN, w.origin.clone()),
                    "application/x-www-form-urlencoded",
                    Bytes::from(form),
                )
                .map_err(|e| anyhow::anyhow!(e.0))?;
                let reply = conn
                    .send(req)
                    .await
                    .map_err(|e| anyhow::anyhow!("login: {}", e.0))?;
                if reply.status != StatusCode::SEE_OTHER {
                    anyhow::bail!("login of {} answered {}", user.login_id, reply.status);
                }
                w.keep_cookie(&reply);
                let err = |e: OpError| anyhow::anyhow!("linking: {}", e.0);
                let options = w
                    .call(
                        target,
                        &mut conn,
                        "register_start",
                        "/fido/register/start",
                        json!({ "code": user.code }),
                    )
                    .await
                    .map_err(err)?;
                let credential = w.auth.create(&options)?;
                w.call(
                    target,
                    &mut conn,
                    "register_finish",
                    "/fido/register/finish",
                    json!({ "credential": credential, "name": "bench" }),
                )
                .await
                .map_err(err)?;
                Ok(WorkerState::Fido(Box::new(w)))
            }
        }
    }

    /// One operation on `conn`.
    pub async fn op(
        &self,
        state: &mut WorkerState,
        target: &Target,
        conn: &mut Conn,
    ) -> Result<(), OpError> {
        match (self, state) {
            (Workload::Get { path }, _) => {
                let reply = conn.send(empty(target.request(Method::GET, path))?).await?;
                expect_ok(&reply, "get")
            }
            (Workload::Token { clinic, doctors }, WorkerState::Rng(s)) => {
                let n = xorshift(s) % doctors.max(&1) + 1;
                let body = format!(r#"{{"clinic_id":"{clinic}","doctor_id":"d{n}"}}"#);
                let req = with_body(
                    target.request(Method::POST, "/api/v1/signing-tokens"),
                    "application/json",
                    Bytes::from(body),
                )?;
                let reply = conn.send(req).await?;
                expect_ok(&reply, "token")
            }
            (Workload::PeerToken { body }, _) => {
                let req = with_body(
                    target.request(Method::POST, "/token"),
                    "application/x-www-form-urlencoded",
                    body.clone(),
                )?;
                let reply = conn.send(req).await?;
                expect_ok(&reply, "token")
            }
            (Workload::Fido { .. }, WorkerState::Fido(w)) => {
                let options = w
                    .call(target, conn, "fido_start", "/fido/auth/start", json!({}))
                    .await?;
                let assertion = w
                    .auth
                    .get(&options)
                    .map_err(|_| OpError("soft_authenticator".into()))?;
                w.call(
                    target,
                    conn,
                    "fido_finish",
                    "/fido/auth/finish",
                    json!({ "credential": assertion }),
                )
                .await?;
                Ok(())
            }
            _ => Err(OpError("worker_state".into())),
        }
    }
}
