//! HTTP surface (docs/design.md §3.5): `GET /v1/hello` (any origin: name and version only),
//! `GET /v1/status`, `POST /v1/sign`, CORS preflight with Private Network
//! Access, the origin gate, and the JSON error format `{"error", "tries_left"?, "message", "message_en"}`.
//!
//! Gates, in order, on every request: the Host header must name the loopback listener (defeats DNS
//! rebinding: a page on `evil.example` resolving to 127.0.0.1 would send `Host: evil.example`); the
//! Origin header must be an allowed gateway origin (refused requests get no CORS headers, so the page
//! cannot even read the refusal). `POST /v1/sign` must be `application/json` (not a CORS-safelisted
//! type, so browsers always preflight it) and its body's `origin` must equal the Origin header.
//!
//! Never logged: request bodies (they carry the PIN), the challenge, certificates. The request log
//! line has method, path, status and, for errors, the error code.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use card::pcsc::ReaderStatus;
use card::{CardKind, ClientData, Pin};
use serde_json::json;

use crate::cards::Cards;

/// Largest accepted request body; a sign request is a few hundred bytes.
const BODY_LIMIT: usize = 4096;
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    cards: Cards,
    allowed_origins: Vec<String>,
    /// Accepted Host header values: `127.0.0.1:<port>` and `localhost:<port>`.
    hosts: Vec<String>,
}

impl AppState {
    /// State for a listener on `port` allowing `allowed_origins`.
    pub fn new(cards: Cards, allowed_origins: Vec<String>, port: u16) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                cards,
                allowed_origins,
                hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            }),
        }
    }
}

/// The agent's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status).options(preflight))
        .route("/v1/sign", post(sign).options(preflight))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        // Outside the origin gate on purpose: answers every origin (see `hello`).
        .route("/v1/hello", get(hello).options(hello))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// The agent's error codes (docs/design.md §3.5, plus `bad_request`), with ja/en messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// No reader, or the PC/SC service is not running.
    NoReader,
    /// Readers, but none has a card.
    NoCard,
    /// A card, but not of the requested kind.
    WrongCard,
    /// The PIN does not have the card kind's format; nothing was sent to the card.
    PinFormat,
    /// Wrong PIN; `tries_left` says how many remain.
    WrongPin,
    /// The PIN is blocked.
    PinLocked,
    /// The card was pulled during the operation.
    CardRemoved,
    /// Any other card or reader failure.
    CardError,
    /// Origin not allowed, missing, or not equal to the body's origin; or a foreign Host.
    OriginNotAllowed,
    /// Malformed request (JSON, card kind, challenge, content type, path).
    BadRequest,
}

impl ErrorCode {
    /// The JSON `error` value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::PinFormat => StatusCode::BAD_REQUEST,
            ErrorCode::WrongPin => StatusCode::UNAUTHORIZED,
            ErrorCode::OriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::NoCard | ErrorCode::WrongCard | ErrorCode::CardRemoved => {
                StatusCode::CONFLICT
            }
            ErrorCode::PinLocked => StatusCode::LOCKED,
            ErrorCode::CardError => StatusCode::BAD_GATEWAY,
            ErrorCode::NoReader => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn messages(self) -> (&'static str, &'static str) {
        match self {
            ErrorCode::NoReader => (
                "カードリーダーが見つかりません。リーダーの接続とPC/SCサービスを確認してください。",
                "No card reader found. Check the reader connection and the PC/SC service.",
            ),
            ErrorCode::NoCard => (
                "カードが挿入されていません。カードをリーダーに挿入してください。",
                "No card in the reader. Insert the card.",
            ),
            ErrorCode::WrongCard => (
                "選択した種類のカードではありません。正しいカードを挿入してください。",
                "The card is not of the selected type. Insert the right card.",
            ),
            ErrorCode::PinFormat => (
                "暗証番号の形式が正しくありません。",
                "The PIN does not have the required format.",
            ),
            ErrorCode::WrongPin => ("暗証番号が違います。", "Wrong PIN."),
            ErrorCode::PinLocked => (
                "暗証番号がロックされています。カードの発行元で解除の手続きをしてください。",
                "The PIN is locked. Ask the card issuer to unlock it.",
            ),
            ErrorCode::CardRemoved => (
                "処理中にカードが抜かれました。カードを挿入し直してもう一度お試しください。",
                "The card was removed during the operation. Reinsert it and try again.",
            ),
            ErrorCode::CardError => (
                "カードの読み取りに失敗しました。カードを挿入し直してもう一度お試しください。",
                "The card could not be used. Reinsert it and try again.",
            ),
            ErrorCode::OriginNotAllowed => (
                "このページからカードエージェントは利用できません。",
                "This page is not allowed to use the card agent.",
            ),
            ErrorCode::BadRequest => ("リクエストが正しくありません。", "Malformed request."),
        }
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    tries_left: Option<u8>,
    /// Appended to both messages (never user input).
    detail: Option<String>,
}

impl ApiError {
    fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            tries_left: None,
            detail: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }
}

impl From<card::Error> for ApiError {
    fn from(e: card::Error) -> ApiError {
        use card::Error as E;
        match e {
            E::NoReader | E::ServiceUnavailable => ApiError::new(ErrorCode::NoReader),
            E::NoCard => ApiError::new(ErrorCode::NoCard),
            E::WrongCard { .. } => ApiError::new(ErrorCode::WrongCard),
            E::PinFormat { kind, .. } => ApiError::new(ErrorCode::PinFormat).detail(match kind {
                CardKind::Jpki => "(4桁の数字 / exactly 4 digits)",
                CardKind::Hpki => "(4〜16文字の英数字記号 / 4 to 16 printable ASCII characters)",
            }),
            E::WrongPin { tries_left } => ApiError {
                tries_left: Some(tries_left),
                ..ApiError::new(ErrorCode::WrongPin)
            },
            E::PinLocked => ApiError::new(ErrorCode::PinLocked),
            E::CardRemoved | E::CardReset => ApiError::new(ErrorCode::CardRemoved),
            _ => ApiError::new(ErrorCode::CardError),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (ja, en) = self.code.messages();
        let (message, message_en) = match (&self.detail, self.tries_left) {
            (_, Some(n)) => (
                format!("{ja}残り{n}回です。"),
                format!("{en} {n} tries left."),
            ),
            (Some(d), None) => (format!("{ja}{d}"), format!("{en} {d}")),
            (None, None) => (ja.to_owned(), en.to_owned()),
        };
        let mut body = json!({
            "error": self.code.as_str(),
            "message": message,
            "message_en": message_en,
        });
        if let Some(n) = self.tries_left {
            body["tries_left"] = json!(n);
        }
        let mut response = (self.code.status(), Json(body)).into_response();
        // For logging only (see `log_request`); CORS headers are added by `gate` for allowed origins.
        response.extensions_mut().insert(self.code);
        response
    }
}

fn add_cors(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Host and Origin gate for every request; adds CORS headers to answers for allowed origins.
async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host_ok = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| state.inner.hosts.iter().any(|ok| ok == h));
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| state.inner.allowed_origins.iter().any(|ok| ok == o));
    let origin = match origin {
        Some(origin) if host_ok && allowed => origin,
        // No CORS headers: a foreign page cannot read the refusal. The log names what was refused
        // (Debug-escaped: it is whatever the client sent), so whoever set up the agent sees
        // which origin to add with --allow-origin.
        refused => {
            let host = request
                .headers()
                .get(header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
            let origin = refused.map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
            if host_ok {
                tracing::warn!(origin = ?origin, "refused a request from an origin not in --allow-origin");
            } else {
                tracing::warn!(host = ?host, origin = ?origin, "refused a request for a foreign Host");
            }
            return ApiError::new(ErrorCode::OriginNotAllowed).into_response();
        }
    };
    let mut response = next.run(request).await;
    add_cors(response.headers_mut(), origin);
    response
}

/// CORS preflight (Fetch §3.2.3) with Private Network Access (WICG PNA §3.1): reached only for allowed
/// origins, because [`gate`] refuses the rest without CORS headers.
async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    if headers
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    response
}

/// `GET /v1/hello` (and its preflight): tells any page that a Ninsho card agent listens here,
/// with nothing but its name and version, so the gateway's page can tell "no agent" from "the
/// agent refuses this origin" and say which origin to allow. Answered for every origin (the
/// allowlist guards `/v1/status` and `/v1/sign`), but only for our own Host (DNS rebinding).
async fn hello(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| state.inner.hosts.iter().any(|ok| ok == h));
    if !host_ok {
        return ApiError::new(ErrorCode::OriginNotAllowed).into_response();
    }
    let mut response = if method == Method::OPTIONS {
        let mut r = preflight(headers).await;
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET"),
        );
        r
    } else {
        Json(json!({ "agent": "ninsho", "version": env!("CARGO_PKG_VERSION") })).into_response()
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::BadRequest).detail("(unknown path)")
}

fn reader_json(r: &ReaderStatus) -> serde_json::Value {
    json!({ "name": r.name, "card": r.card.as_str() })
}

async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let readers = state
        .inner
        .cards
        .status()
        .await
        .map_err(|_| ApiError::new(ErrorCode::CardError))??;
    Ok(Json(json!({
        "agent": "card-agent",
        "version": crate::VERSION,
        "readers": readers.iter().map(reader_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /v1/sign` body. `deny_unknown_fields`: a typo must not pass silently.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    card: String,
    challenge: String,
    origin: String,
    pin: PinField,
}

/// The PIN, moved straight into a zeroizing [`Pin`] (no copy of the `String` is left behind).
struct PinField(Pin);

impl<'de> serde::Deserialize<'de> for PinField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PinField, D::Error> {
        String::deserialize(d).map(|s| PinField(Pin::new(s)))
    }
}

async fn sign(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::new(ErrorCode::BadRequest).detail("(Content-Type: application/json)"));
    }
    let request: SignRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(ErrorCode::BadRequest).detail("(JSON: card, challenge, origin, pin)")
    })?;
    drop(body);
    // The gate already checked the header against the allowlist; the signed origin must be that one.
    let header_origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if header_origin != Some(request.origin.as_str()) {
        return Err(ApiError::new(ErrorCode::OriginNotAllowed).detail("(origin ≠ Origin header)"));
    }
    let kind: CardKind = request
        .card
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest).detail("(card: jpki | hpki)"))?;
    let valid_challenge = URL_SAFE_NO_PAD
        .decode(&request.challenge)
        .is_ok_and(|c| (16..=64).contains(&c.len()));
    if !valid_challenge {
        return Err(
            ApiError::new(ErrorCode::BadRequest).detail("(challenge: base64url, 16–64 bytes)")
        );
    }
    let client_data = ClientData::new(kind, &request.challenge, &request.origin)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest).detail("(challenge / origin)"))?;
    let pin = request.pin.0;
    // Refused before it reaches the card (docs/design.md §3.5); authenticate checks again.
    pin.check_format(kind)?;
    let message = client_data.to_bytes();
    let signed = state
        .inner
        .cards
        .sign(kind, pin, message.clone())
        .await
        .map_err(|_| ApiError::new(ErrorCode::CardError))??;
    Ok(Json(json!({
        "client_data": URL_SAFE_NO_PAD.encode(&message),
        "signature": URL_SAFE_NO_PAD.encode(&signed.signature),
        "certificate": URL_SAFE_NO_PAD.encode(&signed.certificate),
        "chain": signed.chain.iter().map(|c| URL_SAFE_NO_PAD.encode(c)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// One log line per request: method, path, status, error code, duration. Never the body or headers.
async fn log_request(request: Request, next: Next) -> Response {
    let method: Method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.extensions().get::<ErrorCode>().map(|c| c.as_str());
    tracing::info!(
        http.method = %method,
        http.path = %path,
        http.status = response.status().as_u16(),
        error = code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
