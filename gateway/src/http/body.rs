//! Request bodies are read whole, up to `server.max_body_bytes`, before any handler runs.
//!
//! Reading here rather than in the extractors matters for HTTP/1.1: a handler that refuses a
//! request without reading its body (the clinic gate, the same-origin check) would otherwise leave
//! unread bytes in front of the next request, and hyper then closes a connection whose response
//! it had already sent as keep-alive, so a client's next request on it fails. Read here, every
//! accepted body is consumed and the connection stays usable.
//!
//! A body over the limit is answered 413. Up to [`DRAIN_BYTES`] beyond the limit are read and
//! thrown away first, so an ordinary client that sent a little too much gets its answer on a
//! connection that stays usable (HTTP/1.1) and a stream that ends normally (HTTP/2). A larger
//! body is not read: the answer comes at once, on HTTP/1.1 with `Connection: close` (the unread
//! rest makes the connection unusable), on HTTP/2 followed by a reset of that stream only, with
//! NO_ERROR, which RFC 9113 §8.1 tells clients not to take as a failure of the response.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

use super::AppState;
use super::error::AppError;
use super::i18n::Lang;
use super::refusal::Refusal;

/// How much of an oversized body is read and discarded so the connection or stream can go on.
const DRAIN_BYTES: usize = 1024 * 1024;

/// What reading a body gave.
enum Read {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit; `drained` if it was read to its end (and thrown away).
    TooLarge { drained: bool },
    /// The client broke the body off.
    Broken,
}

/// The layer: buffers the body within the limit and the time allowed, or refuses the request.
pub(super) async fn read_whole_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, mut body) = req.into_parts();
    // The routes that carry an OQS file take one of `oqs.max_file_bytes` (docs/design.md §3.13).
    let limit = if super::agent::carries_file(&parts.method, parts.uri.path()) {
        state.config.oqs.body_limit()
    } else {
        state.config.server.max_body_bytes
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let drain_bound = u64::try_from(limit.saturating_add(DRAIN_BYTES)).unwrap_or(u64::MAX);
    if declared.is_some_and(|n| n > drain_bound) {
        return holding(too_large(&parts, false), body);
    }
    // A body that trickles in would hold the connection (and its slot under the caps) open.
    let allowed = Duration::from_secs(state.config.server.header_timeout_secs);
    let refusal = match tokio::time::timeout(allowed, read(&mut body, limit)).await {
        Ok(Read::Whole(bytes)) => return next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Read::TooLarge { drained }) => too_large(&parts, drained),
        // The client is unlikely to read any answer; this one closes the connection.
        Ok(Read::Broken) => refuse(&parts, Refusal::BodyIncomplete, true),
        Err(_) => refuse(&parts, Refusal::BodyTimeout, true),
    };
    holding(refusal, body)
}

/// Keeps the request body, unread, until the response has been sent. Dropped earlier, hyper
/// would reset an HTTP/2 stream with CANCEL before the response went out, and the client would
/// see a reset instead of the answer; dropped after, the reset is NO_ERROR (h2 does this).
fn holding(res: Response, request_body: Body) -> Response {
    res.map(|response_body| Body::new(Holding { response_body, _request_body: request_body }))
}

/// A response body that owns the request body until it is dropped itself. It forwards the size
/// hint, so a refusal keeps its `Content-Length` (a generic frame map would lose it and send
/// HTTP/1.1 chunked).
struct Holding {
    response_body: Body,
    _request_body: Body,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.response_body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.response_body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.response_body.size_hint()
    }
}

/// Reads `body` whole if it is at most `limit` bytes; past that, discards up to [`DRAIN_BYTES`]
/// more to find its end, keeping nothing.
async fn read(body: &mut Body, limit: usize) -> Read {
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Read::Broken };
        // Trailers carry no body bytes.
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total <= limit {
            kept.extend_from_slice(&data);
        } else if total > limit.saturating_add(DRAIN_BYTES) {
            return Read::TooLarge { drained: false };
        }
    }
    if total > limit { Read::TooLarge { drained: true } } else { Read::Whole(Bytes::from(kept)) }
}

fn too_large(parts: &Parts, drained: bool) -> Response {
    refuse(parts, Refusal::PayloadTooLarge, !drained)
}

/// A refusal in the form the caller reads: JSON for the service API and for JSON requests of the
/// browser (WebAuthn and card ceremonies), a page otherwise. With `close`, an HTTP/1.x
/// connection is closed after it, because part of the body is still unread.
fn refuse(parts: &Parts, refusal: Refusal, close: bool) -> Response {
    let path = parts.uri.path();
    let api = path.starts_with("/api/") || path.starts_with("/.well-known/");
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let lang = Lang::from_request(&parts.headers, parts.uri.query());
    let mut res = if api {
        // The service API speaks English (see `api.rs`).
        AppError::Json(refusal, Lang::En).into_response()
    } else if json {
        AppError::Json(refusal, lang).into_response()
    } else {
        AppError::Page(refusal, lang).into_response()
    };
    if close && parts.version < Version::HTTP_2 {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
