//! HTTP: the main (mTLS) router with its middleware stack, and the ops router.
//!
//! Request path on the main listener, outermost first:
//! request id → trace span → metrics → security headers → whole body read (within
//! `server.max_body_bytes`) → **clinic gate** → same-origin check → session → route. The gate
//! runs for every route, so no handler can skip the clinic check.

mod agent;
mod agent_release;
pub mod api;
mod body;
mod card;
mod ceremony;
mod error;
mod extract;
mod fido;
mod i18n;
mod link;
mod login;
mod manage;
mod oidc;
pub mod ops;
mod pages;
mod refusal;
mod session;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, AppError};
pub use extract::{ClinicContext, CurrentDoctor};
pub use i18n::{Lang, Msg};
pub use refusal::{ApiRefusal, Refusal};
pub use session::{BrowserSession, LoginState};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::{Metrics, Route};
use crate::password::PasswordHasher;
use crate::store::{self, AuditEvent, Store};
use crate::tls::PeerCert;

/// Name of the browser-session cookie. The `__Host-` prefix makes browsers insist on Secure,
/// Path=/ and no Domain, so no sibling host can set or read it.
pub const SESSION_COOKIE: &str = "__Host-ninsho";

/// Everything handlers share.
pub struct App {
    /// Configuration, checked at start-up.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The injected clock.
    pub clock: SharedClock,
    /// Prometheus metrics (docs/metrics.md).
    pub metrics: Metrics,
    /// Password hashing.
    pub passwords: PasswordHasher,
    /// The WebAuthn relying party.
    pub fido: ::fido::Service,
    /// Signing-token keys.
    pub token_keys: crate::tokens::TokenKeys,
    /// Group commit of issued tokens and hot-path audit events.
    pub group_commit: crate::group_commit::GroupCommit,
    /// Parsed HPKI/JPKI trust stores, rebuilt when the anchors change.
    pub card_trust: crate::card_trust::TrustCache,
    /// Set on shutdown: `/readyz` answers 503 while the listener drains.
    pub draining: std::sync::atomic::AtomicBool,
    /// Failed TLS handshakes of the current window, audited in aggregate.
    pub handshake_failures: crate::handshake_audit::HandshakeFailures,
    /// Wake-ups of the OQS relay's long-polls.
    pub oqs_signals: crate::oqs::Signals,
    /// The clinics' OpenID Connect providers (docs/design.md §3.17).
    pub upstream: crate::oidc::Upstream,
}

impl App {
    /// Appends an audit event stamped with the current time through the group commit (hot
    /// paths; see `group_commit`) and waits until it is committed.
    pub async fn audit(&self, event: AuditEvent) -> std::result::Result<(), crate::group_commit::NotCommitted> {
        self.group_commit.audit(event, self.clock.unix()).await
    }

    /// Writes the failed handshakes counted so far as audit rows, one per reason and source, in
    /// one transaction. When that fails the counts are kept for the next window, so none is lost.
    pub async fn audit_handshake_failures(&self) -> crate::store::Result<()> {
        let now = self.clock.unix();
        let Some(window) = self.handshake_failures.take(now) else {
            return Ok(());
        };
        let events: Vec<_> = window.events().into_iter().map(|e| (e, now)).collect();
        let written = self.store.audit_batch(&events).await;
        if written.is_err() {
            self.handshake_failures.give_back(window);
        }
        written
    }
}

/// Cheap-to-clone handle to [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The main router, with every layer.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // Browser routes: every one behind the clinic gate.
    let browser = Router::new()
        .merge(login::router())
        .merge(fido::router())
        .merge(card::router())
        .merge(manage::router())
        .merge(oidc::router())
        .route_layer(middleware::from_fn(tag_route))
        .layer(middleware::from_fn_with_state(state.clone(), session::layer))
        .layer(middleware::from_fn_with_state(state.clone(), same_origin))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), clinic_gate))
        .layer(middleware::from_fn(i18n::keep_language));
    // The pages' stylesheet and scripts: fixed files compiled in, the same for everyone, so they
    // are served before the clinic gate and without the database. The refusal pages of the gate
    // (403 device) and of an outage (503) keep the product's layout that way; the TLS handshake
    // still required a client certificate from a trusted chain.
    let assets = Router::new()
        .route("/assets/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::CSS) }))
        .route("/assets/common.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::COMMON_JS) }))
        .route("/assets/fido.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::FIDO_JS) }))
        .route("/assets/card.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::CARD_JS) }));
    // The clinic agent's API: behind the clinic gate (the clinic's certificate), JSON, no browser
    // session and no same-origin check (no browser calls it).
    let agent = agent::router()
        .route_layer(middleware::from_fn(tag_route))
        .layer(middleware::from_fn_with_state(state.clone(), clinic_gate));
    // Service-client API: authenticated per handler by `api::ServiceAuth`, not by the clinic gate.
    let api = api::router().route_layer(middleware::from_fn(tag_route));
    // The method page calls the card agent on the clinic PC (docs/design.md §3.5): its origin, and only
    // it, is added to connect-src. Config validation made it a loopback http origin.
    let csp = format!(
        "default-src 'self'; connect-src 'self' {}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        state.config.card.agent_origin()
    );
    let csp = HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ));
    Router::new()
        .merge(api)
        .merge(agent)
        .merge(assets)
        .merge(browser)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), body::read_whole_body))
        .layer(middleware::from_fn_with_state(csp, security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                // Method and path only: headers and bodies may carry secrets (docs/LOGGING.md).
                tracing::info_span!("request", request_id, method = %req.method(), path = req.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found(lang: Lang) -> Response {
    AppError::Page(Refusal::NotFound, lang).into_response()
}

/// Maps the verified client certificate to its clinic, or refuses with a page that names the
/// reason. Runs before every route of the main listener.
async fn clinic_gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let lang = Lang::from_request(req.headers(), req.uri().query());
    // The agent's API answers in JSON; the pages, with a page.
    let agent_api = req.uri().path().starts_with("/agent/");
    let Some(peer) = req.extensions().get::<PeerCert>().cloned() else {
        // The accept loop always inserts it; without it nothing is known about the client.
        return AppError::internal("request without a verified client certificate").into_response();
    };
    let refusal = match state.store.clinic_cert(&peer.fingerprint).await {
        Ok(binding) if binding.revoked => Some(Refusal::CertRevoked),
        Ok(binding) if !binding.clinic_enabled => Some(Refusal::ClinicDisabled),
        Ok(binding) => {
            req.extensions_mut().insert(ClinicContext {
                clinic_id: binding.clinic_id,
                clinic_name: binding.clinic_name,
                fingerprint: binding.fingerprint,
            });
            None
        }
        Err(store::Error::NotFound) => Some(Refusal::CertNotRegistered),
        Err(e) if agent_api => return ApiError::from(e).into_response(),
        Err(e) => return AppError::from(e).into_response(),
    };
    match refusal {
        None => next.run(req).await,
        Some(refusal) => {
            let reason = refusal.code();
            let event = AuditEvent::GateRefused { fingerprint: peer.fingerprint.clone(), reason };
            if let Err(e) = state.store.audit(&event, state.clock.unix()).await {
                return AppError::from(e).into_response();
            }
            tracing::info!(tls.fingerprint = %peer.fingerprint, reason, "clinic gate refused certificate");
            if agent_api {
                let refusal = match refusal {
                    Refusal::CertRevoked => ApiRefusal::AgentCertRevoked,
                    Refusal::ClinicDisabled => ApiRefusal::AgentClinicDisabled,
                    _ => ApiRefusal::AgentCertNotRegistered,
                };
                return ApiError::from(refusal).into_response();
            }
            AppError::Page(refusal, lang).into_response()
        }
    }
}

/// Refuses state-changing requests that do not carry this gateway's origin (CSRF defence in
/// depth on top of SameSite=Strict cookies). A missing Origin is refused too: browsers send it
/// on every POST.
async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let expected = state.config.public_origin();
    let ok = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|o| o == expected);
    if ok {
        next.run(req).await
    } else {
        let lang = Lang::from_request(req.headers(), req.uri().query());
        AppError::Page(Refusal::BadOrigin, lang).into_response()
    }
}

async fn security_headers(State(csp): State<HeaderValue>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp);
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not "no-referrer": under it browsers send `Origin: null` on POSTs (Fetch §3.1 "serializing a
    // request origin"), which the same-origin check must refuse. "same-origin" still sends no
    // referrer to any other site.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// The matched route, carried out on the response so the outer metrics layer can label it
/// (outer layers run before routing and cannot see `MatchedPath` on the request).
#[derive(Clone)]
struct RouteTag(MatchedPath);

async fn tag_route(path: MatchedPath, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.extensions_mut().insert(RouteTag(path));
    res
}

/// Counts every request of the main listener and records its latency, labelled with the matched
/// route's template (never the raw path, so the labels stay a fixed set: docs/metrics.md).
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let method = crate::metrics::method_label(req.method());
    let res = next.run(req).await;
    let route = res.extensions().get::<RouteTag>().map_or(Route::OTHER, |t| Route::matched(t.0.clone()));
    state.metrics.request(route, method, res.status().as_u16(), start.elapsed());
    res
}
