//! The signer's Prometheus metrics, served on the ops listener at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    endpoint: &'static str,
    outcome: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Handles to every metric.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<Request, Counter>,
    signatures: Counter,
    consume_seconds: Histogram,
    handshake_failures: Family<Reason, Counter>,
    connections_refused: Family<Reason, Counter>,
    connections_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    idle_closed: Counter,
    ready: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Request, Counter>::default();
        registry.register("ninsho_signer_requests", "CSC API requests by endpoint, outcome and CSC error", requests.clone());
        let signatures = Counter::default();
        registry.register("ninsho_signer_signatures", "Signatures produced (one per hash)", signatures.clone());
        let consume_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register("ninsho_signer_consume_seconds", "Round trip of a token consume at the gateway", consume_seconds.clone());
        let handshake_failures = Family::<Reason, Counter>::default();
        registry.register("ninsho_signer_tls_handshake_failures", "Failed TLS handshakes by reason", handshake_failures.clone());
        let connections_refused = Family::<Reason, Counter>::default();
        registry.register("ninsho_signer_connections_refused", "Connections refused before the handshake", connections_refused.clone());
        let connections_open = Gauge::default();
        registry.register("ninsho_signer_connections_open", "Open connections of the main listener", connections_open.clone());
        let idle_closed = Counter::default();
        registry.register("ninsho_signer_connections_idle_closed", "Connections closed for being idle", idle_closed.clone());
        let ready = Gauge::default();
        registry.register("ninsho_signer_ready", "1 when this instance answers /readyz with 200", ready.clone());
        Self {
            registry: Arc::new(registry),
            requests,
            signatures,
            consume_seconds,
            handshake_failures,
            connections_refused,
            connections_open,
            idle_closed,
            ready,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A CSC request's answer; `error` is the CSC error code or `""`.
    pub fn request(&self, endpoint: &'static str, error: Option<&'static str>) {
        let outcome = if error.is_some() { "refused" } else { "ok" };
        self.requests.get_or_create(&Request { endpoint, outcome, error: error.unwrap_or("") }).inc();
    }

    /// `n` signatures made.
    pub fn signed(&self, n: usize) {
        self.signatures.inc_by(n as u64);
    }

    /// A consume took `seconds`.
    pub fn consume_took(&self, seconds: f64) {
        self.consume_seconds.observe(seconds);
    }

    /// A failed handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&Reason { reason }).inc();
    }

    /// A connection refused by the caps.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&Reason { reason }).inc();
    }

    /// The open-connections gauge, for `infra::connections::Admission`.
    pub fn connections_open(&self) -> Gauge<i64, std::sync::atomic::AtomicI64> {
        self.connections_open.clone()
    }

    /// An idle connection closed.
    pub fn idle_closed(&self) {
        self.idle_closed.inc();
    }

    /// Readiness as the last `/readyz` saw it.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }
}
