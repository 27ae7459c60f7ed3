//! Prometheus metrics served on the ops listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrlLabels {
    kind: &'static str,
    /// The anchor's fingerprint (first 16 hex digits).
    anchor: String,
    /// The CA the CRL is for.
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnchorLabels {
    kind: &'static str,
    anchor: String,
}

/// All counters of one gateway process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    logins: Family<OutcomeLabels, Counter>,
    password_verifications: Counter,
    crl_seconds_left: Family<CrlLabels, Gauge>,
    crl_missing: Family<AnchorLabels, Gauge>,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_idle_closed: Counter,
    connections_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ninsho");
        let requests = Family::<RouteLabels, Counter>::default();
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by matched route and status", requests.clone());
        registry.register("tls_handshake_failures", "Failed TLS handshakes by reason", handshake_failures.clone());
        registry.register("logins", "Doctor login attempts by outcome", logins.clone());
        let password_verifications = Counter::default();
        registry.register(
            "password_verifications",
            "argon2id password verifications run (one per reserved login attempt, known login ID or not)",
            password_verifications.clone(),
        );
        let crl_seconds_left = Family::<CrlLabels, Gauge>::default();
        let crl_missing = Family::<AnchorLabels, Gauge>::default();
        registry.register(
            "crl_seconds_until_next_update",
            "Seconds until each stored CRL's nextUpdate (negative: stale, certificates under it are refused)",
            crl_seconds_left.clone(),
        );
        registry.register(
            "trust_anchor_crl_missing",
            "1 for an anchor with revocation policy crl and no CRL of its own (its certificates are refused)",
            crl_missing.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        let connections_idle_closed = Counter::default();
        let connections_open = Gauge::default();
        registry.register(
            "connections_refused",
            "Connections of the main listener refused before the TLS handshake, by reason (global_limit, per_ip_limit)",
            connections_refused.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Connections of the main listener closed after server.idle_timeout_secs without a request",
            connections_idle_closed.clone(),
        );
        registry.register("connections_open", "Open connections of the main listener", connections_open.clone());
        Self {
            registry,
            requests,
            handshake_failures,
            logins,
            password_verifications,
            crl_seconds_left,
            crl_missing,
            connections_refused,
            connections_idle_closed,
            connections_open,
        }
    }

    /// Counts a finished request.
    pub fn request(&self, route: &str, status: u16) {
        self.requests.get_or_create(&RouteLabels { route: route.to_owned(), status }).inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a connection refused before its handshake.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a connection closed for idleness.
    pub fn connection_idle_closed(&self) {
        self.connections_idle_closed.inc();
    }

    /// The gauge of open connections (kept by the connection admission, which knows the count).
    pub fn connections_open(&self) -> Gauge {
        self.connections_open.clone()
    }

    /// Counts a login attempt.
    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The counter the password hasher increments per verification ([`crate::password::PasswordHasher::counting`]).
    pub fn password_verifications(&self) -> Counter {
        self.password_verifications.clone()
    }

    /// Publishes the CRL freshness of every anchor (replacing what was published before).
    pub fn observe_anchors(&self, anchors: &[crate::store::TrustAnchor], now: i64) {
        self.crl_seconds_left.clear();
        self.crl_missing.clear();
        for a in anchors {
            let anchor: String = a.fingerprint.chars().take(16).collect();
            let kind = a.kind.as_str();
            let missing = a.revocation == crate::store::RevocationPolicy::Crl && a.crl_der.is_none();
            self.crl_missing.get_or_create(&AnchorLabels { kind, anchor: anchor.clone() }).set(i64::from(missing));
            if let Some(next) = a.crl_next_update.or_else(|| {
                a.crl_der.as_deref().and_then(|c| trust::inspect_crl(c).ok()).and_then(|i| i.next_update)
            }) {
                let labels = CrlLabels { kind, anchor: anchor.clone(), issuer: a.subject.clone() };
                self.crl_seconds_left.get_or_create(&labels).set(next - now);
            }
            for sub in &a.sub_crls {
                let labels = CrlLabels { kind, anchor: anchor.clone(), issuer: sub.issuer_subject.clone() };
                self.crl_seconds_left.get_or_create(&labels).set(sub.next_update - now);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
