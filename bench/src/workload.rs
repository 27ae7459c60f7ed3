//! What each scenario sends: the requests of one operation, and the per-worker state some
//! scenarios need (a logged-in browser session with a linked authenticator or card).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hyper::header::{COOKIE, HeaderValue, ORIGIN, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conn::{Conn, OpError, Reply, Target, empty, with_body};
use gateway::check::soft::SoftAuthenticator;

/// The gateway's browser-session cookie.
const SESSION_COOKIE: &str = "__Host-ninsho";

/// A doctor a FIDO worker logs in as, with the registration code that lets it link its
/// software authenticator.
#[derive(Debug, Clone)]
pub struct FidoUser {
    pub login_id: String,
    pub code: String,
}

/// A doctor a card worker logs in as, the registration code that links its card, and which of
/// the run's cards it holds.
#[derive(Debug, Clone)]
pub struct CardUser {
    pub login_id: String,
    pub code: String,
    pub card: usize,
}

/// A test card as the load generator uses it: certificate and private key.
pub struct CardKey {
    pub cert_der: Vec<u8>,
    pub key: RsaKeyPair,
}

impl CardKey {
    pub fn from_leaf(leaf: &devpki::Leaf) -> anyhow::Result<Self> {
        Ok(Self {
            cert_der: leaf.cert_der.clone(),
            key: RsaKeyPair::from_pkcs8(&leaf.key_der)
                .map_err(|_| anyhow::anyhow!("card key does not parse"))?,
        })
    }

    /// What the card agent answers for a challenge: the canonical client data, signed by the
    /// card (RSA-2048 PKCS#1 v1.5, SHA-256), with the card's certificate.
    fn answer(&self, challenge: &Value) -> Result<Value, OpError> {
        let field = |k: &str| {
            challenge[k]
                .as_str()
                .ok_or_else(|| OpError(format!("card_challenge_{k}")))
        };
        let data =
            card::ClientData::new(card::CardKind::Hpki, field("challenge")?, field("origin")?)
                .map_err(|_| OpError("card_client_data".into()))?
                .to_bytes();
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &data, &mut sig)
            .map_err(|_| OpError("card_sign".into()))?;
        Ok(json!({
            "client_data": URL_SAFE_NO_PAD.encode(&data),
            "signature": URL_SAFE_NO_PAD.encode(&sig),
            "certificate": URL_SAFE_NO_PAD.encode(&self.cert_der),
            "chain": [],
        }))
    }
}

/// A scenario's operation.
pub enum Workload {
    /// `GET path`, expecting 200 (login page, trivial server).
    Get { path: String },
    /// `POST /api/v1/signing-tokens` for a random doctor `d1..=dN` of `clinic`.
    Token { clinic: String, doctors: u64 },
    /// A signing token for a random doctor, then its consumption by the same EMR client (the
    /// soak's token pair).
    TokenConsume { clinic: String, doctors: u64 },
    /// The peer's `POST /token` (client credentials, tls_client_auth).
    PeerToken { body: Bytes },
    /// FIDO login: `/fido/auth/start` + `/fido/auth/finish` for the worker's doctor.
    Fido {
        users: Vec<FidoUser>,
        password: String,
        origin: String,
    },
    /// A refused password login: `POST /login` with a wrong password for a random one of
    /// `login_ids` (existing doctors, or IDs that do not exist), expecting the 403 page. The
    /// login-timing scenario runs it once per kind of ID and compares the two.
    FailedLogin {
        login_ids: Arc<Vec<String>>,
        origin: String,
    },
    /// The remote signer's signHash (issue 19), as an EMR backend does it: a signing token bound
    /// to one SHA-256 digest from the gateway (`gateway`, the worker's own connection), then
    /// `signatures/signHash` of that digest at the signer (the target) for a random one of
    /// `doctors`. The signer verifies the token, consumes it at the gateway, signs (RSA-2048
    /// PKCS#1 v1.5) and audits.
    SignHash {
        gateway: Target,
        clinic: String,
        doctors: Arc<Vec<SignDoctor>>,
    },
    /// signHash alone: each operation takes one of `tokens`, issued before the clock starts.
    SignHashOnly {
        tokens: Arc<std::sync::Mutex<Vec<PreIssued>>>,
    },
    /// signDoc of `document` (base64): each operation takes one of `tokens`, bound to the
    /// document's SHA-256 and issued before the clock starts.
    SignDocOnly {
        tokens: Arc<std::sync::Mutex<Vec<PreIssued>>>,
        document: Arc<String>,
    },
    /// Card login: `/auth/card/challenge` + `/auth/card/finish` for the worker's doctor, the
    /// client data signed in-process with the worker's card key.
    Card {
        users: Vec<CardUser>,
        cards: Arc<Vec<CardKey>>,
        password: String,
        origin: String,
    },
}

/// A doctor whose signing key the remote signer holds: the gateway login id (its token's
/// subject) and the signer's credential id.
#[derive(Debug, Clone)]
pub struct SignDoctor {
    pub login_id: String,
    pub credential: String,
}

/// A signing token issued before the clock starts, bound to one digest.
#[derive(Debug, Clone)]
pub struct PreIssued {
    pub credential: String,
    pub token: String,
    pub digest: [u8; 32],
}

/// Per-worker state.
pub enum WorkerState {
    None,
    /// xorshift64 state for picking doctors.
    Rng(u64),
    Fido(Box<FidoWorker>),
    Card(Box<CardWorker>),
    /// The signHash scenario's worker: its doctor picker and its own keep-alive connection to
    /// the gateway (the measured target is the signer).
    SignHash(Box<SignHashWorker>),
}

/// An EMR backend's worker in the signHash scenario.
pub struct SignHashWorker {
    rng: u64,
    gateway: Option<Conn>,
}

/// A doctor's browser: the session cookie and the origin it sends.
pub struct Browser {
    cookie: Option<HeaderValue>,
    origin: HeaderValue,
}

/// A logged-in doctor's browser with a linked authenticator.
pub struct FidoWorker {
    browser: Browser,
    auth: SoftAuthenticator,
}

/// A logged-in doctor's browser with a linked card.
pub struct CardWorker {
    browser: Browser,
    cards: Arc<Vec<CardKey>>,
    card: usize,
}

impl CardWorker {
    fn card(&self) -> Result<&CardKey, OpError> {
        self.cards
            .get(self.card)
            .ok_or_else(|| OpError("card_index".into()))
    }

    /// Challenge, agent answer, finish.
    async fn present(
        &mut self,
        target: &Target,
        conn: &mut Conn,
        challenge: Value,
    ) -> Result<(), OpError> {
        let ch = self
            .browser
            .call(
                target,
                conn,
                "card_challenge",
                "/auth/card/challenge",
                challenge,
            )
            .await?;
        let answer = self.card()?.answer(&ch)?;
        self.browser
            .call(target, conn, "card_finish", "/auth/card/finish", answer)
            .await?;
        Ok(())
    }
}

impl Browser {
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

    /// A new connection and a browser signed in on it with a password (before the clock starts).
    async fn sign_in(
        target: &Target,
        origin: &str,
        login_id: &str,
        password: &str,
    ) -> anyhow::Result<(Self, Conn)> {
        let mut browser = Self {
            cookie: None,
            origin: HeaderValue::from_str(origin)?,
        };
        let mut conn = target
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("connect: {}", e.0))?;
        browser.login(target, &mut conn, login_id, password).await?;
        Ok((browser, conn))
    }

    async fn login(
        &mut self,
        target: &Target,
        conn: &mut Conn,
        login_id: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let form = format!(
            "login_id={login_id}&password={}",
            password.replace(' ', "+")
        );
        let req = with_body(
            target
                .request(Method::POST, "/login")
                .header(ORIGIN, self.origin.clone()),
            "application/x-www-form-urlencoded",
            Bytes::from(form),
        )
        .map_err(|e| anyhow::anyhow!(e.0))?;
        let reply = conn
            .send(req)
            .await
            .map_err(|e| anyhow::anyhow!("login: {}", e.0))?;
        if reply.status != StatusCode::SEE_OTHER {
            anyhow::bail!("login of {login_id} answered {}", reply.status);
        }
        self.keep_cookie(&reply);
        Ok(())
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// `POST /api/v1/signing-tokens` for a random one of `doctors` doctors of `clinic` from
/// `d<first>` on.
fn token_request(
    target: &Target,
    clinic: &str,
    first: u64,
    doctors: u64,
    rng: &mut u64,
) -> Result<hyper::Request<http_body_util::Full<Bytes>>, OpError> {
    let n = xorshift(rng) % doctors.max(1) + first;
    let body = format!(r#"{{"clinic_id":"{clinic}","doctor_id":"d{n}"}}"#);
    with_body(
        target.request(Method::POST, "/api/v1/signing-tokens"),
        "application/json",
        Bytes::from(body),
    )
}

/// Issues a signing token for a random one of `doctors` doctors from `d<first>` on; returns the
/// token.
pub async fn issue_token(
    target: &Target,
    conn: &mut Conn,
    clinic: &str,
    first: u64,
    doctors: u64,
    rng: &mut u64,
) -> Result<String, OpError> {
    let reply = conn
        .send(token_request(target, clinic, first, doctors, rng)?)
        .await?;
    expect_ok(&reply, "token")?;
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|_| OpError("token_json".into()))?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| OpError("token_json".into()))
}

/// Consumes `token` as the EMR client it was issued to (`/api/v1/signing-tokens/consume`).
pub async fn consume_token(target: &Target, conn: &mut Conn, token: &str) -> Result<(), OpError> {
    let req = with_body(
        target.request(Method::POST, "/api/v1/signing-tokens/consume"),
        "application/json",
        Bytes::from(json!({ "token": token }).to_string()),
    )?;
    let reply = conn.send(req).await?;
    if reply.status == StatusCode::OK {
        return Ok(());
    }
    // The error code tells a refused token (`session_ended`, `token_already_used`) from a failure.
    let code = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|b| b["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(OpError(format!("consume_{}_{code}", reply.status.as_u16())))
}

/// A digest-sized value from the worker's generator (distinct per operation; its content does
/// not matter to the signer).
fn digest(rng: &mut u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    for chunk in d.chunks_mut(8) {
        chunk.copy_from_slice(&xorshift(rng).to_le_bytes());
    }
    d
}

/// A signing token for `login_id` bound to `digest` (`hashes`: one unpadded base64url value).
pub async fn issue_bound_token(
    target: &Target,
    conn: &mut Conn,
    clinic: &str,
    login_id: &str,
    digest: &[u8; 32],
) -> Result<String, OpError> {
    let body = json!({ "clinic_id": clinic, "doctor_id": login_id, "hashes": [URL_SAFE_NO_PAD.encode(digest)] });
    let req = with_body(
        target.request(Method::POST, "/api/v1/signing-tokens"),
        "application/json",
        Bytes::from(body.to_string()),
    )?;
    let reply = conn.send(req).await?;
    expect_ok(&reply, "token")?;
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|_| OpError("token_json".into()))?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| OpError("token_json".into()))
}

/// `POST /csc/v2/signatures/signHash` of `digest` with `credential` under `token` (RSA with
/// SHA-256, PKCS#1 v1.5); returns the one signature. A refusal is counted by its CSC error code.
pub async fn sign_hash(
    target: &Target,
    conn: &mut Conn,
    credential: &str,
    token: &str,
    digest: &[u8; 32],
) -> Result<Vec<u8>, OpError> {
    let body = json!({
        "credentialID": credential,
        "SAD": token,
        "hashes": [STANDARD.encode(digest)],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
        "signAlgo": "1.2.840.113549.1.1.11",
    });
    let req = with_body(
        target.request(Method::POST, "/csc/v2/signatures/signHash"),
        "application/json",
        Bytes::from(body.to_string()),
    )?;
    let reply = conn.send(req).await?;
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status != StatusCode::OK {
        let code = answer["error"].as_str().unwrap_or_default();
        return Err(OpError(format!("signhash_{}_{code}", reply.status.as_u16())));
    }
    match answer["signatures"].as_array().map(Vec::as_slice) {
        Some([one]) => one
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| OpError("signhash_base64".into())),
        _ => Err(OpError("signhash_json".into())),
    }
}

/// `POST /csc/v2/signatures/signDoc` of one e-prescription `document` (base64) with
/// `credential` under `token`; returns the signed document (base64). A refusal is counted by its
/// CSC error code.
pub async fn sign_doc(target: &Target, conn: &mut Conn, credential: &str, token: &str, document: &str) -> Result<String, OpError> {
    let body = json!({
        "credentialID": credential,
        "SAD": token,
        "documents": [{
            "document": document,
            "signature_format": "X",
            "conformance_level": "AdES-B-LT",
            "signed_envelope_property": "Internally detached",
            "signAlgo": "1.2.840.113549.1.1.11",
        }],
    });
    let req = with_body(target.request(Method::POST, "/csc/v2/signatures/signDoc"), "application/json", Bytes::from(body.to_string()))?;
    let reply = conn.send(req).await?;
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status != StatusCode::OK {
        let code = answer["error"].as_str().unwrap_or_default();
        return Err(OpError(format!("signdoc_{}_{code}", reply.status.as_u16())));
    }
    match answer["DocumentWithSignature"].as_array().map(Vec::as_slice) {
        Some([one]) => one.as_str().map(str::to_owned).ok_or_else(|| OpError("signdoc_json".into())),
        _ => Err(OpError("signdoc_json".into())),
    }
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
            Workload::Get { .. } | Workload::PeerToken { .. } | Workload::SignHashOnly { .. } | Workload::SignDocOnly { .. } => {
                Ok(WorkerState::None)
            }
            Workload::SignHash { .. } => Ok(WorkerState::SignHash(Box::new(SignHashWorker {
                rng: 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
                gateway: None,
            }))),
            Workload::Token { .. }
            | Workload::TokenConsume { .. }
            | Workload::FailedLogin { .. } => Ok(WorkerState::Rng(
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
                let (browser, mut conn) =
                    Browser::sign_in(target, origin, &user.login_id, password).await?;
                let mut w = FidoWorker {
                    browser,
                    auth: SoftAuthenticator::new(origin, "localhost")?,
                };
                let err = |e: OpError| anyhow::anyhow!("linking: {}", e.0);
                let options = w
                    .browser
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
                w.browser
                    .call(
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
            Workload::Card {
                users,
                cards,
                password,
                origin,
            } => {
                let user = users.get(index).ok_or_else(|| {
                    anyhow::anyhow!("only {} card users were seeded", users.len())
                })?;
                let (browser, mut conn) =
                    Browser::sign_in(target, origin, &user.login_id, password).await?;
                let mut w = CardWorker {
                    browser,
                    cards: cards.clone(),
                    card: user.card,
                };
                w.present(
                    target,
                    &mut conn,
                    json!({ "card": "hpki", "purpose": "link", "code": user.code }),
                )
                .await
                .map_err(|e| anyhow::anyhow!("linking the card: {}", e.0))?;
                Ok(WorkerState::Card(Box::new(w)))
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
                let reply = conn.send(token_request(target, clinic, 1, *doctors, s)?).await?;
                expect_ok(&reply, "token")
            }
            (Workload::TokenConsume { clinic, doctors }, WorkerState::Rng(s)) => {
                let token = issue_token(target, conn, clinic, 1, *doctors, s).await?;
                consume_token(target, conn, &token).await
            }
            (Workload::FailedLogin { login_ids, origin }, WorkerState::Rng(s)) => {
                let n = (xorshift(s) % (login_ids.len().max(1) as u64)) as usize;
                let login_id = login_ids
                    .get(n)
                    .ok_or_else(|| OpError("no_login_ids".into()))?;
                let form = format!("login_id={login_id}&password=not+the+password");
                let origin =
                    HeaderValue::from_str(origin).map_err(|_| OpError("origin".into()))?;
                let req = with_body(
                    target.request(Method::POST, "/login").header(ORIGIN, origin),
                    "application/x-www-form-urlencoded",
                    Bytes::from(form),
                )?;
                let reply = conn.send(req).await?;
                if reply.status == StatusCode::FORBIDDEN {
                    Ok(())
                } else {
                    Err(OpError::status("failed_login", reply.status))
                }
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
                    .browser
                    .call(target, conn, "fido_start", "/fido/auth/start", json!({}))
                    .await?;
                let assertion = w
                    .auth
                    .get(&options)
                    .map_err(|_| OpError("soft_authenticator".into()))?;
                w.browser
                    .call(
                        target,
                        conn,
                        "fido_finish",
                        "/fido/auth/finish",
                        json!({ "credential": assertion }),
                    )
                    .await?;
                Ok(())
            }
            (
                Workload::SignHash {
                    gateway,
                    clinic,
                    doctors,
                },
                WorkerState::SignHash(w),
            ) => {
                let n = (xorshift(&mut w.rng) % (doctors.len().max(1) as u64)) as usize;
                let doctor = doctors.get(n).ok_or_else(|| OpError("no_doctors".into()))?;
                let digest = digest(&mut w.rng);
                if w.gateway.is_none() {
                    w.gateway = Some(gateway.connect().await?);
                }
                let gw = w.gateway.as_mut().ok_or_else(|| OpError("connect".into()))?;
                let token = match issue_bound_token(gateway, gw, clinic, &doctor.login_id, &digest).await {
                    Ok(t) => t,
                    Err(e) => {
                        w.gateway = None;
                        return Err(e);
                    }
                };
                sign_hash(target, conn, &doctor.credential, &token, &digest)
                    .await
                    .map(drop)
            }
            (Workload::SignHashOnly { tokens }, _) => {
                let next = tokens
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop()
                    .ok_or_else(|| OpError("tokens_exhausted".into()))?;
                sign_hash(target, conn, &next.credential, &next.token, &next.digest)
                    .await
                    .map(drop)
            }
            (Workload::SignDocOnly { tokens, document }, _) => {
                let next = tokens
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop()
                    .ok_or_else(|| OpError("tokens_exhausted".into()))?;
                sign_doc(target, conn, &next.credential, &next.token, document).await.map(drop)
            }
            (Workload::Card { .. }, WorkerState::Card(w)) => {
                w.present(target, conn, json!({ "card": "hpki" })).await
            }
            _ => Err(OpError("worker_state".into())),
        }
    }
}
