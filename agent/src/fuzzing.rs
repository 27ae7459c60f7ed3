//! Fuzz target body (feature `fuzzing`): the libFuzzer target fuzz/fuzz_targets/agent_http.rs and the
//! corpus replay test (agent/tests/fuzz_corpus.rs) call the same function. It builds an HTTP request
//! from arbitrary bytes and sends it through the agent's real router in process, with a card worker
//! that is gone (no PC/SC), and checks the gates of docs/design.md §3.5 on the answer.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::handler::Handler as _;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, Request, StatusCode};

use crate::cards::Cards;
use crate::http::{AppState, router};

/// The port the fuzzed agent listens on (only the Host gate sees it).
pub const PORT: u16 = 18443;
/// The one allowed gateway origin.
pub const ORIGIN: &str = "https://gateway.clinic.example:8443";

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::OPTIONS, Method::PUT, Method::DELETE];
const PATHS: [&str; 3] = ["/v1/sign", "/v1/status", "/"];

/// A request from bytes: `method ‖ flags ‖ path ‖ fields`, where `fields` are newline-separated
/// values taken in order by whatever the flags make custom (path, Host, Origin, Content-Type), and
/// the rest is the body.
///
/// Flags: bits 0–1 Host (`127.0.0.1:PORT`, `localhost:PORT`, custom, none); bits 2–3 Origin
/// ([`ORIGIN`], custom, none, none); bits 4–5 Content-Type (`application/json`, custom, none, none);
/// bit 6 `Access-Control-Request-Private-Network: true`. The path byte picks one of the routes, or
/// (values past the list) a custom path.
pub fn request(data: &[u8]) -> Option<Request<Body>> {
    let [method, flags, path, rest @ ..] = data else {
        return None;
    };
    let mut fields = rest.splitn(5, |b| *b == b'\n');
    let mut custom = || fields.next().unwrap_or_default();
    let path = match PATHS.get(usize::from(*path)) {
        Some(p) => p.as_bytes(),
        None => custom(),
    };
    let mut builder = Request::builder()
        .method(METHODS[usize::from(*method) % METHODS.len()].clone())
        .uri(std::str::from_utf8(path).ok()?);
    let mut header = |name: HeaderName, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            builder = std::mem::take(&mut builder).header(name, value);
        }
    };
    match flags & 0b11 {
        0 => header(header::HOST, format!("127.0.0.1:{PORT}").as_bytes()),
        1 => header(header::HOST, format!("localhost:{PORT}").as_bytes()),
        2 => header(header::HOST, custom()),
        _ => {}
    }
    match (flags >> 2) & 0b11 {
        0 => header(header::ORIGIN, ORIGIN.as_bytes()),
        1 => header(header::ORIGIN, custom()),
        _ => {}
    }
    match (flags >> 4) & 0b11 {
        0 => header(header::CONTENT_TYPE, b"application/json"),
        1 => header(header::CONTENT_TYPE, custom()),
        _ => {}
    }
    if flags & 0x40 != 0 {
        header(HeaderName::from_static("access-control-request-private-network"), b"true");
    }
    let body = fields.next().unwrap_or_default().to_vec();
    builder.body(Body::from(body)).ok()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    })
}

fn app() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| router(AppState::new(Cards::stopped(), vec![ORIGIN.to_owned()], PORT)))
}

/// One request through the router. Without a card nothing succeeds but a preflight; CORS headers go
/// only to the allowed origin on the agent's own Host; every error is the JSON error format.
pub fn agent_http(data: &[u8]) {
    let Some(request) = request(data) else {
        return;
    };
    let origin = request.headers().get(header::ORIGIN).cloned();
    let host = request.headers().get(header::HOST).cloned();
    let method = request.method().clone();
    let service = axum::routing::any_service(app().clone());
    let (status, headers, body) = runtime().block_on(async {
        let response = service.call(request, ()).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await;
        (parts.status, parts.headers, body)
    });
    let body = match body {
        Ok(body) => body,
        Err(e) => panic!("response body: {e}"),
    };
    if let Some(allowed) = headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        assert_eq!(Some(allowed), origin.as_ref());
        assert_eq!(allowed, ORIGIN);
        let host = host.as_ref().and_then(|h| h.to_str().ok());
        assert!(host == Some(&format!("127.0.0.1:{PORT}")) || host == Some(&format!("localhost:{PORT}")));
    }
    if status.is_success() {
        assert_eq!((status, method), (StatusCode::NO_CONTENT, Method::OPTIONS));
        return;
    }
    if matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::METHOD_NOT_ALLOWED) {
        // The body limit and a route's wrong method are answered by axum, in its own format.
        return;
    }
    let error: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => panic!("{status}: error body is not JSON ({e}): {body:?}"),
    };
    assert!(error["error"].is_string() && error["message"].is_string() && error["message_en"].is_string(), "{error}");
}
