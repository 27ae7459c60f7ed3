//! Prometheus metrics served on the ops listener. Every metric, its labels and what it means are
//! listed in `docs/metrics.md`; `deploy/monitoring/` holds the dashboard and alert rules built on
//! them.
//!
//! Labels are drawn from fixed sets (reason and error codes, methods, status classes), matched
//! route templates (never a raw path) and trust-anchor fingerprints, so their number is bounded,
//! and never name a person: no login IDs, user ids, names, certificate subjects or tokens
//! (docs/design.md §6). Recording on the request paths allocates nothing: label values are
//! `&'static str` or the route template's shared string, and the metrics without labels are
//! plain atomic counters.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::{Outcome, PoolUsage, QueueDepth, RelayHolder, RevocationPolicy, TrustAnchor};

/// Request latencies, seconds: 0.5 ms to 10 s (a login's argon2 check takes tenths of a second).
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Waits for a database connection or SQLite's write lock, seconds: 10 µs to 5 s (a PostgreSQL
/// wait ends at `database.acquire_timeout_ms`, 1 s by default).
const WAIT_BUCKETS: [f64; 14] =
    [0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0, 5.0];
/// Messages in one group commit (at most 256 tokens and 512 other events, see `group_commit`).
const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 768.0];
/// Group-commit durations and waits, seconds: 0.1 ms to 5 s.
const COMMIT_BUCKETS: [f64; 13] = [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The route a request matched: its template (`/api/v1/signing-sessions/{id}`), never the raw
/// path, or `other` when no route matched. Cloning shares the router's string.
#[derive(Clone, Debug)]
pub struct Route(Option<MatchedPath>);

impl Route {
    /// No route matched (the fallback: unknown paths).
    pub const OTHER: Route = Route(None);

    /// The route `path` matched.
    pub fn matched(path: MatchedPath) -> Self {
        Self(Some(path))
    }

    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("other", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// An HTTP method as a label: the standard ones by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Which signing-token operation a refusal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOperation {
    /// `POST /api/v1/signing-tokens`.
    Issue,
    /// `POST /api/v1/signing-tokens/consume`.
    Consume,
}

impl TokenOperation {
    fn as_str(self) -> &'static str {
        match self {
            TokenOperation::Issue => "issue",
            TokenOperation::Consume => "consume",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    route: Route,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    method: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenRefusalLabels {
    operation: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrlLabels {
    kind: &'static str,
    /// The anchor's fingerprint (first 16 hex digits of its SHA-256).
    anchor: String,
    /// The CA the CRL is for: the first 16 hex digits of the SHA-256 of its DER subject name
    /// (the anchor's own, or a sub-CA's). A hash, so no certificate subject becomes a label.
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClinicLabels {
    clinic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    clinic: String,
    status: &'static str,
}

/// The OQS queue as the last sweep read it; ages are worked out at each scrape.
#[derive(Debug, Default)]
struct OqsSnapshot {
    /// (clinic, status, requests, oldest created_at).
    depths: Vec<(String, &'static str, i64, i64)>,
    /// (clinic, agent last seen).
    agents: Vec<(String, i64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnchorLabels {
    kind: &'static str,
    anchor: String,
}

/// The first 16 hex digits of a SHA-256: short, still unique among a handful of anchors.
fn short(hex: &str) -> String {
    hex.chars().take(16).collect()
}

/// [`short`] SHA-256 of the DER subject name of a certificate, or `unknown`.
fn subject_hash(cert_der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(cert_der) {
        Ok((_, cert)) => short(&trust::sha256_hex(cert.subject().as_raw())),
        Err(_) => "unknown".to_owned(),
    }
}

/// What the store records: audit rows committed, audit transactions that failed, and the wait
/// for its write path (a PostgreSQL connection, or SQLite's write lock). Cheap to clone; a
/// default one counts into nothing registered (commands and tools).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    audit_rows: Family<EventLabels, Counter>,
    audit_failures: Counter,
    wait: Histogram,
    timeouts: Counter,
    gate_cache: Family<CacheLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            audit_rows: Family::default(),
            audit_failures: Counter::default(),
            wait: wait_histogram(),
            timeouts: Counter::default(),
            gate_cache: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Counts the audit rows of one committed transaction, by event name and outcome. Batches
    /// hold runs of one kind (a group commit of issued tokens), so each run is one label lookup.
    pub(crate) fn audit_written(&self, rows: &[(&'static str, &'static str)]) {
        let mut rest = rows;
        while let Some(&(event, outcome)) = rest.first() {
            let run = rest.iter().take_while(|r| **r == (event, outcome)).count();
            self.audit_rows.get_or_create(&EventLabels { event, outcome }).inc_by(run as u64);
            rest = &rest[run..];
        }
    }

    /// Counts a transaction holding audit rows that did not commit.
    pub(crate) fn audit_failed(&self) {
        self.audit_failures.inc();
    }

    /// Records how long a request waited for the write path's connection or lock.
    pub(crate) fn waited(&self, wait: Duration) {
        self.wait.observe(wait.as_secs_f64());
    }

    /// Counts a wait that gave up (`database.acquire_timeout_ms` passed).
    pub(crate) fn timed_out(&self) {
        self.timeouts.inc();
    }

    /// Counts a lookup of the gate cache (`clinic_cert`, `service_client`): a `hit`, a `miss`,
    /// or a `bypass` (the cache not in use while its listener is away, decision 0020).
    pub(crate) fn gate_cache(&self, cache: &'static str, result: &'static str) {
        self.gate_cache.get_or_create(&CacheLabels { cache, result }).inc();
    }

    /// The lookups of the gate cache counted so far with these labels.
    #[cfg(test)]
    pub(crate) fn gate_cache_count(&self, cache: &'static str, result: &'static str) -> u64 {
        self.gate_cache.get_or_create(&CacheLabels { cache, result }).get()
    }
}

/// What the group commit records per transaction: its size, how long it took, and how long its
/// oldest message had waited by then. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommitMetrics {
    size: Histogram,
    duration: Histogram,
    wait: Histogram,
}

impl Default for GroupCommitMetrics {
    fn default() -> Self {
        Self { size: Histogram::new(BATCH_BUCKETS), duration: Histogram::new(COMMIT_BUCKETS), wait: Histogram::new(COMMIT_BUCKETS) }
    }
}

impl GroupCommitMetrics {
    /// Records one transaction of `messages` (tokens, consumptions and events) that took
    /// `duration` (with its retry, if any), the oldest of them queued `oldest_wait` before it
    /// was answered.
    pub fn transaction(&self, messages: usize, duration: Duration, oldest_wait: Duration) {
        self.size.observe(messages as f64);
        self.duration.observe(duration.as_secs_f64());
        self.wait.observe(oldest_wait.as_secs_f64());
    }
}

/// Every metric of one gateway process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<LatencyLabels>,
    handshake_failures: Family<ReasonLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    lockouts: Counter,
    password_verifications: Counter,
    tokens_issued: Counter,
    tokens_consumed: Counter,
    token_refusals: Family<TokenRefusalLabels, Counter>,
    audit_rows: Family<EventLabels, Counter>,
    audit_failures: Counter,
    group_commit: GroupCommitMetrics,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_wait: HistogramFamily<PoolLabels>,
    pool_timeouts: Family<PoolLabels, Counter>,
    gate_cache: Family<CacheLabels, Counter>,
    ready: Gauge,
    readiness_checks: Family<ResultLabels, Counter>,
    /// nextUpdate (Unix seconds) of every CRL, as last read from the anchors; the seconds left
    /// are worked out at each scrape.
    crls: Mutex<Vec<(CrlLabels, i64)>>,
    crl_seconds_left: Family<CrlLabels, Gauge>,
    crl_missing: Family<AnchorLabels, Gauge>,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_idle_closed: Counter,
    connections_open: Gauge,
    oqs_enqueued: Counter,
    oqs_answered: Counter,
    oqs_expired: Counter,
    oqs: Mutex<OqsSnapshot>,
    oqs_queue: Family<QueueLabels, Gauge>,
    oqs_oldest_age: Family<ClinicLabels, Gauge>,
    oqs_agent_seen_age: Family<ClinicLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("ninsho");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("http_requests", "HTTP requests of the main listener by matched route and status", requests.clone());
        let latency = HistogramFamily::<LatencyLabels>::new_with_constructor(latency_histogram);
        r.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response, by method, matched route and status class",
            latency.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        r.register("tls_handshake_failures", "Failed TLS handshakes by reason", handshake_failures.clone());
        let logins = Family::<LoginLabels, Counter>::default();
        r.register(
            "logins",
            "Doctor login attempts by method (password, fido, hpki, jpki, card), outcome and reason code",
            logins.clone(),
        );
        let lockouts = Counter::default();
        r.register(
            "login_lockouts",
            "Login IDs locked after login.max_failures failed password checks (at login or at a password change)",
            lockouts.clone(),
        );
        let password_verifications = Counter::default();
        r.register(
            "password_verifications",
            "argon2id password verifications run (one per reserved login attempt, known login ID or not)",
            password_verifications.clone(),
        );
        let tokens_issued = Counter::default();
        r.register("signing_tokens_issued", "Signing tokens issued (their audit rows committed)", tokens_issued.clone());
        let tokens_consumed = Counter::default();
        r.register("signing_tokens_consumed", "Signing tokens consumed (their audit rows committed)", tokens_consumed.clone());
        let token_refusals = Family::<TokenRefusalLabels, Counter>::default();
        r.register(
            "signing_token_refusals",
            "Requests to issue or consume a signing token answered with an error, by operation and the answer's error code",
            token_refusals.clone(),
        );
        let audit_rows = Family::<EventLabels, Counter>::default();
        r.register("audit_rows_written", "Audit rows committed, by event and outcome", audit_rows.clone());
        let audit_failures = Counter::default();
        r.register(
            "audit_commit_failures",
            "Transactions holding audit rows that did not commit (each attempt; the requests behind them get 503 unless a retry commits)",
            audit_failures.clone(),
        );
        let group_commit = GroupCommitMetrics::default();
        r.register(
            "group_commit_batch_size",
            "Messages (issued tokens, consumptions, audit events) written per group-commit transaction",
            group_commit.size.clone(),
        );
        r.register(
            "group_commit_duration_seconds",
            "Time a group-commit transaction took, its one retry included",
            group_commit.duration.clone(),
        );
        r.register(
            "group_commit_wait_seconds",
            "Per group-commit transaction, how long its oldest message waited from being queued to being answered",
            group_commit.wait.clone(),
        );
        let pool_connections = Family::<PoolStateLabels, Gauge>::default();
        r.register(
            "db_pool_connections",
            "Open database connections of each pool, by state (idle, in_use), at scrape time",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        r.register("db_pool_max_connections", "Most connections each database pool opens", pool_max.clone());
        let pool_wait = HistogramFamily::<PoolLabels>::new_with_constructor(wait_histogram);
        r.register(
            "db_pool_acquire_wait_seconds",
            "Wait for a database connection (pool postgres) or for SQLite's one writer (pool sqlite_write) on the request paths",
            pool_wait.clone(),
        );
        let pool_timeouts = Family::<PoolLabels, Counter>::default();
        r.register(
            "db_pool_acquire_timeouts",
            "Waits for a database connection that gave up after database.acquire_timeout_ms (the request got 503)",
            pool_timeouts.clone(),
        );
        let gate_cache = Family::<CacheLabels, Counter>::default();
        for cache in ["clinic_cert", "service_client"] {
            for result in ["hit", "miss", "bypass"] {
                drop(gate_cache.get_or_create(&CacheLabels { cache, result }));
            }
        }
        r.register(
            "gate_cache_lookups",
            "Lookups of the gate cache (cache clinic_cert, service_client) by result: hit, miss (read from the database), bypass (the cache's listener not connected)",
            gate_cache.clone(),
        );
        let ready = Gauge::default();
        r.register(
            "ready",
            "1 when the last readiness check (/readyz) passed; 0 when it failed, before the first one, and once shutting down",
            ready.clone(),
        );
        let readiness_checks = Family::<ResultLabels, Counter>::default();
        r.register("readiness_checks", "Readiness checks (/readyz) by result (ready, unready)", readiness_checks.clone());
        // Counters of a fixed label set start at 0, so the first event is an increase.
        for result in ["ready", "unready"] {
            drop(readiness_checks.get_or_create(&ResultLabels { result }));
        }
        let crl_seconds_left = Family::<CrlLabels, Gauge>::default();
        r.register(
            "crl_seconds_until_next_update",
            "Seconds from now (the gateway's clock) to each stored CRL's nextUpdate; negative: stale, certificates under it are refused",
            crl_seconds_left.clone(),
        );
        let crl_missing = Family::<AnchorLabels, Gauge>::default();
        r.register(
            "trust_anchor_crl_missing",
            "1 for an anchor with revocation policy crl and no CRL of its own (its certificates are refused)",
            crl_missing.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        for refusal in [crate::connections::Refusal::GlobalLimit, crate::connections::Refusal::PerIpLimit] {
            drop(connections_refused.get_or_create(&ReasonLabels { reason: refusal.reason() }));
        }
        r.register(
            "connections_refused",
            "Connections of the main listener refused before the TLS handshake, by reason (global_limit, per_ip_limit)",
            connections_refused.clone(),
        );
        let connections_idle_closed = Counter::default();
        r.register(
            "connections_idle_closed",
            "Connections of the main listener closed after server.idle_timeout_secs without a request",
            connections_idle_closed.clone(),
        );
        let connections_open = Gauge::default();
        r.register("connections_open", "Open connections of the main listener", connections_open.clone());
        let oqs_enqueued = Counter::default();
        r.register("oqs_requests_enqueued", "OQS requests queued by EMRs (their audit rows committed)", oqs_enqueued.clone());
        let oqs_answered = Counter::default();
        r.register("oqs_requests_answered", "OQS requests whose answer the clinic agent uploaded", oqs_answered.clone());
        let oqs_expired = Counter::default();
        r.register("oqs_requests_expired", "OQS requests expired unanswered by this instance's sweep", oqs_expired.clone());
        let oqs_queue = Family::<QueueLabels, Gauge>::default();
        r.register(
            "oqs_queue_requests",
            "Live OQS requests per clinic and status (queued: waiting for the agent; delivered: waiting for the terminal), as of the last sweep",
            oqs_queue.clone(),
        );
        let oqs_oldest_age = Family::<ClinicLabels, Gauge>::default();
        r.register(
            "oqs_oldest_request_age_seconds",
            "Age of each clinic's oldest live OQS request, at scrape time (the queue as of the last sweep)",
            oqs_oldest_age.clone(),
        );
        let oqs_agent_seen_age = Family::<ClinicLabels, Gauge>::default();
        r.register(
            "oqs_agent_last_seen_age_seconds",
            "Seconds since each clinic's relaying agent last called the gateway, at scrape time",
            oqs_agent_seen_age.clone(),
        );
        Self {
            registry: r,
            requests,
            latency,
            handshake_failures,
            logins,
            lockouts,
            password_verifications,
            tokens_issued,
            tokens_consumed,
            token_refusals,
            audit_rows,
            audit_failures,
            group_commit,
            pool_connections,
            pool_max,
            pool_wait,
            pool_timeouts,
            gate_cache,
            ready,
            readiness_checks,
            crls: Mutex::new(Vec::new()),
            crl_seconds_left,
            crl_missing,
            connections_refused,
            connections_idle_closed,
            connections_open,
            oqs_enqueued,
            oqs_answered,
            oqs_expired,
            oqs: Mutex::new(OqsSnapshot::default()),
            oqs_queue,
            oqs_oldest_age,
            oqs_agent_seen_age,
        }
    }

    /// Counts a queued OQS request.
    pub fn oqs_enqueued(&self) {
        self.oqs_enqueued.inc();
    }

    /// Counts an answered OQS request.
    pub fn oqs_answered(&self) {
        self.oqs_answered.inc();
    }

    /// Counts an OQS request expired by this instance.
    pub fn oqs_expired(&self) {
        self.oqs_expired.inc();
    }

    /// Publishes the OQS queue and the relaying agents as read by a sweep (replacing what was
    /// published before).
    pub fn observe_oqs(&self, depths: &[QueueDepth], holders: &[RelayHolder]) {
        let status = |s: &str| match s {
            "queued" => "queued",
            "delivered" => "delivered",
            _ => "other",
        };
        let snapshot = OqsSnapshot {
            depths: depths.iter().map(|d| (d.clinic_id.clone(), status(&d.status), d.requests, d.oldest)).collect(),
            agents: holders.iter().map(|h| (h.clinic_id.clone(), h.last_seen)).collect(),
        };
        *self.oqs.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// Counts a finished request of the main listener and records its latency.
    pub fn request(&self, route: Route, method: &'static str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.clone(), status }).inc();
        let labels = LatencyLabels { method, route, status_class: status_class(status) };
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
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

    /// Counts a login attempt: `method` is `password` for the login form, else the presence
    /// check's (`fido`, `hpki`, `jpki`, or `card` before the card's kind is known); `reason` is
    /// the refusal's code, or a success's note (`counter_regression_allowed`), `none` without.
    pub fn login(&self, method: &'static str, outcome: Outcome, reason: Option<&'static str>) {
        let labels = LoginLabels { method, outcome: outcome.into(), reason: reason.unwrap_or("none") };
        self.logins.get_or_create(&labels).inc();
    }

    /// Counts a login ID locked by a failed password check.
    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    /// The counter the password hasher increments per verification ([`crate::password::PasswordHasher::counting`]).
    pub fn password_verifications(&self) -> Counter {
        self.password_verifications.clone()
    }

    /// Counts an issued signing token.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// Counts a consumed signing token.
    pub fn token_consumed(&self) {
        self.tokens_consumed.inc();
    }

    /// Counts an issue or consume request answered with the error `code`.
    pub fn token_refused(&self, operation: TokenOperation, code: &'static str) {
        self.token_refusals.get_or_create(&TokenRefusalLabels { operation: operation.as_str(), code }).inc();
    }

    /// What the store records, for a store whose write path is the pool `pool` (`postgres` or
    /// `sqlite_write`; see [`crate::store::Store::with_metrics`]).
    pub fn store(&self, pool: &'static str) -> StoreMetrics {
        let labels = PoolLabels { pool };
        StoreMetrics {
            audit_rows: self.audit_rows.clone(),
            audit_failures: self.audit_failures.clone(),
            wait: self.pool_wait.get_or_create(&labels).clone(),
            timeouts: self.pool_timeouts.get_or_create(&labels).clone(),
            gate_cache: self.gate_cache.clone(),
        }
    }

    /// What the group commit records.
    pub fn group_commit(&self) -> GroupCommitMetrics {
        self.group_commit.clone()
    }

    /// Publishes the outcome of a readiness check.
    pub fn readiness_checked(&self, ready: bool) {
        self.set_ready(ready);
        self.readiness_checks.get_or_create(&ResultLabels { result: if ready { "ready" } else { "unready" } }).inc();
    }

    /// Sets the readiness gauge (shutdown sets it to 0 at once, before any check).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Publishes the CRL state of every anchor (replacing what was published before): whether
    /// an anchor that needs a CRL has none, and the nextUpdate of each CRL, from which every
    /// scrape works out the seconds left.
    pub fn observe_anchors(&self, anchors: &[TrustAnchor]) {
        let mut crls = Vec::new();
        self.crl_missing.clear();
        for a in anchors {
            let anchor = short(&a.fingerprint);
            let kind = a.kind.as_str();
            let missing = a.revocation == RevocationPolicy::Crl && a.crl_der.is_none();
            self.crl_missing.get_or_create(&AnchorLabels { kind, anchor: anchor.clone() }).set(i64::from(missing));
            if let Some(next) = a.crl_next_update.or_else(|| {
                a.crl_der.as_deref().and_then(|c| trust::inspect_crl(c).ok()).and_then(|i| i.next_update)
            }) {
                crls.push((CrlLabels { kind, anchor: anchor.clone(), issuer: subject_hash(&a.cert_der) }, next));
            }
            for sub in &a.sub_crls {
                crls.push((CrlLabels { kind, anchor: anchor.clone(), issuer: short(&sub.issuer_sha256) }, sub.next_update));
            }
        }
        *self.crls.lock().unwrap_or_else(PoisonError::into_inner) = crls;
    }

    /// The Prometheus text exposition at `now` (the gateway's clock, which also judges CRLs),
    /// with the database pools as `pools` report them.
    pub fn render(&self, now: i64, pools: &[PoolUsage]) -> String {
        for p in pools {
            let in_use = p.open.saturating_sub(p.idle);
            self.pool_connections.get_or_create(&PoolStateLabels { pool: p.pool, state: "idle" }).set(i64::from(p.idle));
            self.pool_connections.get_or_create(&PoolStateLabels { pool: p.pool, state: "in_use" }).set(i64::from(in_use));
            self.pool_max.get_or_create(&PoolLabels { pool: p.pool }).set(i64::from(p.max));
        }
        // Held while encoding, so a concurrent scrape cannot clear the gauges half-way.
        let crls = self.crls.lock().unwrap_or_else(PoisonError::into_inner);
        self.crl_seconds_left.clear();
        for (labels, next) in crls.iter() {
            self.crl_seconds_left.get_or_create(labels).set(next.saturating_sub(now));
        }
        let oqs = self.oqs.lock().unwrap_or_else(PoisonError::into_inner);
        self.oqs_queue.clear();
        self.oqs_oldest_age.clear();
        self.oqs_agent_seen_age.clear();
        let mut oldest = std::collections::BTreeMap::<&str, i64>::new();
        for (clinic, status, requests, created) in &oqs.depths {
            self.oqs_queue.get_or_create(&QueueLabels { clinic: clinic.clone(), status }).set(*requests);
            let entry = oldest.entry(clinic).or_insert(*created);
            *entry = (*entry).min(*created);
        }
        for (clinic, created) in oldest {
            self.oqs_oldest_age.get_or_create(&ClinicLabels { clinic: clinic.to_owned() }).set(now.saturating_sub(created).max(0));
        }
        for (clinic, seen) in &oqs.agents {
            self.oqs_agent_seen_age.get_or_create(&ClinicLabels { clinic: clinic.clone() }).set(now.saturating_sub(*seen).max(0));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn requests_are_labelled_by_template_method_and_status_class() {
        let m = Metrics::new();
        m.request(Route::OTHER, method_label(&Method::GET), 404, Duration::from_millis(3));
        m.request(Route::OTHER, method_label(&Method::from_bytes(b"BREW").unwrap()), 404, Duration::from_millis(3));
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_http_requests_total{route="other",status="404"} 2"#), "{text}");
        assert!(
            text.contains(r#"ninsho_http_request_duration_seconds_bucket{le="0.005",method="GET",route="other",status_class="4xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"ninsho_http_request_duration_seconds_count{method="other",route="other",status_class="4xx"} 1"#), "{text}");
    }

    #[test]
    fn audit_rows_are_counted_per_event_in_runs() {
        let m = Metrics::new();
        let store = m.store("postgres");
        let (issued, consumed, refused) = (("token_issued", "success"), ("token_consumed", "success"), ("token_consumed", "failure"));
        store.audit_written(&[issued, issued, consumed, refused, issued]);
        store.audit_written(&[]);
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_audit_rows_written_total{event="token_issued",outcome="success"} 3"#), "{text}");
        assert!(text.contains(r#"ninsho_audit_rows_written_total{event="token_consumed",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"ninsho_audit_rows_written_total{event="token_consumed",outcome="failure"} 1"#), "{text}");
        // The store's wait histogram is the registered one, under its pool.
        store.waited(Duration::from_micros(20));
        store.timed_out();
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_db_pool_acquire_wait_seconds_count{pool="postgres"} 1"#), "{text}");
        assert!(text.contains(r#"ninsho_db_pool_acquire_wait_seconds_bucket{le="0.00005",pool="postgres"} 1"#), "{text}");
        assert!(text.contains(r#"ninsho_db_pool_acquire_timeouts_total{pool="postgres"} 1"#), "{text}");
    }

    #[test]
    fn gate_cache_lookups_are_counted_and_every_metric_documented() {
        let m = Metrics::new();
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_gate_cache_lookups_total{cache="service_client",result="bypass"} 0"#), "{text}");
        let store = m.store("postgres");
        store.gate_cache("clinic_cert", "hit");
        store.gate_cache("clinic_cert", "hit");
        store.gate_cache("clinic_cert", "miss");
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_gate_cache_lookups_total{cache="clinic_cert",result="hit"} 2"#), "{text}");
        assert!(text.contains(r#"ninsho_gate_cache_lookups_total{cache="clinic_cert",result="miss"} 1"#), "{text}");
        assert_eq!(store.gate_cache_count("clinic_cert", "hit"), 2);
        // docs/metrics.md names every family (tests/integration/metrics.rs checks a live scrape too).
        let doc = include_str!("../../docs/metrics.md");
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (family, kind) = line.split_once(' ').unwrap();
            let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
            assert!(doc.contains(&format!("`{name}`")), "docs/metrics.md does not describe {name}");
        }
    }

    #[test]
    fn crl_seconds_left_follow_the_clock_of_each_scrape() {
        let m = Metrics::new();
        let mut crls = m.crls.lock().unwrap();
        crls.push((CrlLabels { kind: "clinic", anchor: "ab".into(), issuer: "cd".into() }, 1_000));
        drop(crls);
        let at = |now| line(&m.render(now, &[]), "ninsho_crl_seconds_until_next_update{").unwrap().to_owned();
        assert_eq!(at(400), r#"ninsho_crl_seconds_until_next_update{kind="clinic",anchor="ab",issuer="cd"} 600"#);
        assert_eq!(at(1_060), r#"ninsho_crl_seconds_until_next_update{kind="clinic",anchor="ab",issuer="cd"} -60"#);
    }

    #[test]
    fn pools_report_idle_and_in_use() {
        let m = Metrics::new();
        let text = m.render(0, &[PoolUsage { pool: "postgres", open: 5, idle: 2, max: 10 }]);
        assert!(text.contains(r#"ninsho_db_pool_connections{pool="postgres",state="in_use"} 3"#), "{text}");
        assert!(text.contains(r#"ninsho_db_pool_connections{pool="postgres",state="idle"} 2"#), "{text}");
        assert!(text.contains(r#"ninsho_db_pool_max_connections{pool="postgres"} 10"#), "{text}");
    }

    #[test]
    fn logins_and_token_refusals_carry_codes_only() {
        let m = Metrics::new();
        m.login("password", Outcome::Failure, Some("bad_password"));
        m.login("fido", Outcome::Success, None);
        m.token_refused(TokenOperation::Consume, "token_already_used");
        let text = m.render(0, &[]);
        assert!(text.contains(r#"ninsho_logins_total{method="password",outcome="failure",reason="bad_password"} 1"#), "{text}");
        assert!(text.contains(r#"ninsho_logins_total{method="fido",outcome="success",reason="none"} 1"#), "{text}");
        assert!(text.contains(r#"ninsho_signing_token_refusals_total{operation="consume",code="token_already_used"} 1"#), "{text}");
    }
}
