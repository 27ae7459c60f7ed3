//! The running gateway: binds both listeners, runs the TLS accept loop that feeds axum, and
//! shuts down gracefully.
//!
//! The accept loop is ours (not `axum::serve`) so that every connection gets a handshake
//! timeout, the verified client certificate is attached to each request as [`PeerCert`],
//! handshake failures are counted by reason, connections are capped in all and per client IP,
//! and a connection without requests is closed after `server.idle_timeout_secs` (HTTP/2 PINGs
//! are answered by hyper and do not count; see [`crate::connections`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::connections::Admission;
use crate::http::{self, App, AppState};
use crate::metrics::Metrics;
use crate::password::PasswordHasher;
use crate::store::{AnchorKind, Store};
use crate::tls;

/// A gateway ready to serve: listeners bound, database migrated, TLS configured.
pub struct Application {
    main: TcpListener,
    ops: TcpListener,
    tls: Arc<GateTls>,
    state: AppState,
    /// Signs the periodic audit checkpoints; `None` when `audit.checkpoint_interval_secs` is 0.
    checkpoint_key: Option<Arc<crate::audit_checkpoint::CheckpointKey>>,
}

/// The main listener's TLS configuration, replaced as a whole when the anchors change; each new
/// connection takes the current one.
pub struct GateTls {
    identity: tls::Identity,
    current: ArcSwap<rustls::ServerConfig>,
    version: std::sync::Mutex<Vec<crate::store::AnchorVersion>>,
}

impl GateTls {
    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Rebuilds the configuration if the clinic or service anchors changed since the last build.
    /// A failure keeps the configuration in force and is logged by the caller.
    pub async fn refresh(&self, state: &AppState) -> anyhow::Result<bool> {
        let kinds = [AnchorKind::Clinic, AnchorKind::Service];
        let version = state.store.anchor_versions(&kinds).await?;
        if *self.version.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == version {
            return Ok(false);
        }
        let mut anchors = state.store.list_anchors(Some(AnchorKind::Clinic)).await?;
        anchors.extend(state.store.list_anchors(Some(AnchorKind::Service)).await?);
        let config = tls::server_config(&self.identity, &anchors, state.clock.clone())?;
        self.current.store(Arc::new(config));
        *self.version.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = version;
        Ok(true)
    }
}

impl Application {
    /// Connects to the database, migrates it, builds TLS from the configured server certificate
    /// and the stored trust anchors, and binds both listeners.
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        // The configured files before anything else: the database URL (its file, `database.require`),
        // then the server certificate and key, so a wrong path or a key of another certificate
        // stops start-up naming the files, before a port is taken or the database touched.
        let url = config.database_url()?;
        tls::Identity::check_files(&config.tls.cert, &config.tls.key).context("server certificate (tls.cert, tls.key)")?;
        let acquire = std::time::Duration::from_millis(config.database.acquire_timeout_ms);
        let store = Store::connect_with(&url, config.database.max_connections, acquire)
            .await
            .with_context(|| format!("database {}", crate::config::redact_url(&url)))?;
        store.migrate().await.context("migrations")?;
        // A database that reads but does not take writes (a read-only SQLite file or directory, a
        // PostgreSQL standby) would answer every login and token with an error: refuse to start.
        store.probe_commit().await.context(
            "the database does not take writes (read-only SQLite file or directory, or a PostgreSQL standby?)",
        )?;
        let main = TcpListener::bind(config.server.listen).await.with_context(|| format!("bind {}", config.server.listen))?;
        Self::with_parts(config, store, clock, main).await
    }

    /// Like [`Application::build`], with an already connected and migrated store and a bound
    /// main listener (tests bind port 0 first to learn the public URL).
    pub async fn with_parts(config: Config, store: Store, clock: SharedClock, main: TcpListener) -> anyhow::Result<Self> {
        // The audit key links every row (docs/design.md §3.9); a missing or malformed one stops start-up,
        // and so does a log that still waits for `gateway admin audit rekey`.
        let metrics = Metrics::new();
        let store = store.with_audit_key(config.audit_key().context("audit key")?).with_metrics(&metrics);
        if store.audit_head().await?.keyed_from.is_none() {
            anyhow::bail!(
                "the audit log was written before keyed chaining: stop older instances and run `gateway admin audit rekey` once (docs/design.md §3.9)"
            );
        }
        let checkpoint_key = match config.audit.checkpoint_interval_secs {
            0 => None,
            _ => Some(Arc::new(config.audit_checkpoint_key().context("audit checkpoint key")?)),
        };
        let identity = tls::Identity::load(&config.tls.cert, &config.tls.key)?;
        let version = store.anchor_versions(&[AnchorKind::Clinic, AnchorKind::Service]).await?;
        let anchors = store.list_anchors(None).await?;
        let tls_config = tls::server_config(&identity, &anchors, clock.clone())?;
        let tls = Arc::new(GateTls {
            identity,
            current: ArcSwap::from_pointee(tls_config),
            version: std::sync::Mutex::new(version),
        });
        let ops = TcpListener::bind(config.ops.listen).await.with_context(|| format!("bind {}", config.ops.listen))?;
        let passwords = PasswordHasher::with_concurrency(
            config.login.argon2_memory_kib,
            config.login.argon2_iterations,
            config.password_hash_concurrency(),
        )?
        .counting(metrics.password_verifications());
        // What the memory limit of a container must leave room for (decision 0014).
        tracing::info!(
            password_hash_concurrency = passwords.concurrency(),
            argon2_memory_kib = config.login.argon2_memory_kib,
            "password hashing: at most this many at once, each holding argon2_memory_kib"
        );
        let fido = fido::Service::new(&config.fido_config()).context("fido")?;
        let s = &config.signing_session;
        if s.beyond_aal3 {
            // docs/design.md §3.7: longer lifetimes are an explicit, visible choice.
            tracing::warn!(
                absolute_secs = s.absolute_secs,
                idle_secs = s.idle_secs,
                aal3 = !s.exceeds_aal3(),
                "signing_session.beyond_aal3 is set: signing sessions may outlive the AAL3 re-authentication bounds (12 h / 15 min) and are then issued as acr=aal2"
            );
        }
        let kek = config.token_kek().context("token key-encryption key")?;
        let publish_retired = config.tokens.max_ttl_secs + 2 * i64::try_from(config.tokens.key_refresh_secs).unwrap_or(60) + 60;
        let token_keys = crate::tokens::TokenKeys::load(&store, kek, publish_retired, clock.unix()).await.context("token keys")?;
        // The same key opens the clinics' OpenID Connect client secrets (docs/design.md §3.17).
        let upstream = crate::oidc::Upstream::new(config.token_kek().context("token key-encryption key")?).context("upstream sign-in")?;
        let group_commit = crate::group_commit::GroupCommit::start(store.clone(), metrics.group_commit());
        let state = AppState(Arc::new(App {
            config,
            store,
            clock,
            metrics,
            passwords,
            fido,
            token_keys,
            group_commit,
            card_trust: crate::card_trust::TrustCache::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            handshake_failures: crate::handshake_audit::HandshakeFailures::default(),
            oqs_signals: crate::oqs::Signals::default(),
            upstream,
        }));
        state.metrics.observe_anchors(&anchors);
        Ok(Self { main, ops, tls, state, checkpoint_key })
    }

    /// Address of the mTLS listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.main.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Address of the ops listener.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The shared state (tests reach the store and clock through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes; then `/readyz` fails while the listener serves on for
    /// `server.shutdown_drain_secs`, and then it stops accepting and lets open requests finish
    /// (up to 30 s).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { main, ops, tls, state, checkpoint_key } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let ops_router = http::ops::router(state.clone());
        let mut ops_stop = stop_rx.clone();
        let ops_task = tokio::spawn(async move {
            axum::serve(ops, ops_router)
                .with_graceful_shutdown(async move {
                    let _ = ops_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let purge = tokio::spawn(purge_loop(state.clone(), stop_rx.clone()));
        let key_refresh = tokio::spawn(key_refresh_loop(state.clone(), stop_rx.clone()));
        let crl_refresh = tokio::spawn(crl_refresh_loop(state.clone(), stop_rx.clone()));
        let trust_refresh = tokio::spawn(trust_refresh_loop(state.clone(), tls.clone(), stop_rx.clone()));
        let handshake_audit = tokio::spawn(handshake_audit_loop(state.clone(), stop_rx.clone()));
        let oqs_sweep = tokio::spawn(oqs_sweep_loop(state.clone(), stop_rx.clone()));
        let checkpoints = checkpoint_key.map(|key| tokio::spawn(checkpoint_loop(state.clone(), key, stop_rx.clone())));
        tracing::info!(addr = %main.local_addr()?, ops = %ops_task_addr(&state), db = state.store.backend_name(), "gateway listening");

        let router = http::router(state.clone());
        let limits = &state.config.server;
        let admission = Admission::new(limits.max_connections, limits.max_connections_per_ip, state.metrics.connections_open());
        let timeouts = infra::serve::Timeouts {
            handshake: Duration::from_secs(limits.handshake_timeout_secs),
            header: Duration::from_secs(limits.header_timeout_secs),
            idle: Duration::from_secs(limits.idle_timeout_secs),
        };
        let events = Arc::new(ConnectionEvents(state.clone()));
        // Resolves `server.shutdown_drain_secs` after `shutdown` did, having set `draining`.
        let drain_secs = limits.shutdown_drain_secs;
        let drain_state = state.clone();
        let stop_accepting = async move {
            shutdown.await;
            drain_state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            drain_state.metrics.set_ready(false);
            tracing::info!(drain_secs, "shutting down: unready now, still serving while load balancers take this instance out");
            tokio::time::sleep(Duration::from_secs(drain_secs)).await;
            // Long-polls (the OQS relay's) end now rather than hold the stop for their wait.
            drain_state.oqs_signals.close();
        };
        let listener = infra::serve::Listener { tcp: main, admission, router, timeouts };
        listener.run(|| tls.acceptor(), events, &stop_tx, stop_accepting).await;
        let _ = ops_task.await;
        let _ = purge.await;
        let _ = key_refresh.await;
        let _ = crl_refresh.await;
        let _ = trust_refresh.await;
        let _ = handshake_audit.await;
        let _ = oqs_sweep.await;
        if let Some(checkpoints) = checkpoints {
            let _ = checkpoints.await;
        }
        state.group_commit.flush().await;
        state.store.close().await;
        Ok(())
    }
}

fn ops_task_addr(state: &AppState) -> SocketAddr {
    state.config.ops.listen
}

/// The gateway's side of a connection's events: metrics, and the aggregated audit of handshake
/// failures.
struct ConnectionEvents(AppState);

impl infra::serve::Events for ConnectionEvents {
    fn handshake_failed(&self, reason: &'static str, remote: SocketAddr) {
        self.0.metrics.handshake_failure(reason);
        self.0.handshake_failures.record(reason, remote.ip(), self.0.clock.unix());
    }

    fn idle_closed(&self) {
        self.0.metrics.connection_idle_closed();
    }

    fn connection_refused(&self, reason: &'static str) {
        self.0.metrics.connection_refused(reason);
    }
}

/// Deletes expired sessions, stale lockout counters, expired ceremony states and card challenges
/// once a minute.
async fn purge_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let horizon = state.config.login.failure_window_secs.max(state.config.login.lockout_secs);
        if let Err(e) = state.store.purge_expired(state.clock.unix(), horizon).await {
            tracing::warn!(error = %e, "purging expired sessions failed");
        }
        if let Err(e) = state.store.purge_expired_ceremonies(state.clock.unix()).await {
            tracing::warn!(error = %e, "purging expired WebAuthn ceremonies failed");
        }
        if let Err(e) = state.store.purge_expired_oidc_flows(state.clock.unix()).await {
            tracing::warn!(error = %e, "purging expired OpenID Connect flows failed");
        }
        if let Err(e) = state.store.purge_expired_card_challenges(state.clock.unix()).await {
            tracing::warn!(error = %e, "purging expired card challenges failed");
        }
        // Token ids are needed only until their token expires; keep a day for investigations.
        if let Err(e) = state.store.purge_issued_tokens(state.clock.unix() - 86_400).await {
            tracing::warn!(error = %e, "purging issued token ids failed");
        }
    }
}

/// Expires overdue OQS requests (each with its reason and audit row), deletes those past
/// `oqs.retention_secs`, wakes the long-polls of the clinics concerned, and refreshes the queue
/// metrics, every `oqs.sweep_ms` (docs/design.md §3.13). Every instance runs it; the database
/// lets each request expire once.
async fn oqs_sweep_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.oqs.sweep_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = state.clock.unix();
        if let Err(e) = sweep_oqs(&state, now).await {
            tracing::warn!(error = %e, "expiring overdue OQS requests failed");
        }
        match (state.store.oqs_queue_depths().await, state.store.oqs_relay_holders().await) {
            (Ok(depths), Ok(holders)) => state.metrics.observe_oqs(&depths, &holders),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "reading the OQS queue for the metrics failed"),
        }
    }
}

/// Expires the OQS requests overdue at `now` and deletes the old ones; wakes the clinics' waiters.
pub async fn sweep_oqs(state: &AppState, now: i64) -> crate::store::Result<()> {
    let clinics = state.store.oqs_expire_due(now, now - state.config.oqs.retention_secs).await?;
    let mut woken = std::collections::HashSet::new();
    for clinic in clinics {
        state.metrics.oqs_expired();
        if woken.insert(clinic.clone()) {
            state.oqs_signals.clinic(&clinic).ended.notify_waiters();
        }
    }
    Ok(())
}

/// Re-reads the token signing keys every `tokens.key_refresh_secs`, so a rotation made on any
/// instance (or by `gateway admin keys rotate`) reaches this one.
async fn key_refresh_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(state.config.tokens.key_refresh_secs));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = state.token_keys.refresh(&state.store, state.clock.unix()).await {
            tracing::warn!(error = %format!("{e:#}"), "refreshing token keys failed; keeping the current ones");
        }
    }
}

/// Re-reads the clinic and service anchors every `tls.trust_refresh_secs` and swaps in a new TLS
/// configuration when they changed (an anchor, a CRL, a URL-fetched CRL: on any instance), and
/// publishes every anchor's CRL freshness in the metrics. New connections use the new trust at
/// once; open connections were verified when they started.
async fn trust_refresh_loop(state: AppState, tls: Arc<GateTls>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(state.config.tls.trust_refresh_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match tls.refresh(&state).await {
            Ok(true) => tracing::info!("TLS trust anchors changed; new connections use them"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "refreshing TLS trust failed; keeping the current anchors"),
        }
        match state.store.list_anchors(None).await {
            Ok(anchors) => state.metrics.observe_anchors(&anchors),
            Err(e) => tracing::warn!(error = %e, "reading anchors for metrics failed"),
        }
    }
}

/// Fetches due CRLs from the URLs configured on trust anchors every `card.crl_refresh_secs`, and
/// a little before their nextUpdate (two periods ahead), so a CRL is replaced before it goes
/// stale. Every instance runs it; the store only ever replaces a CRL with a newer one.
async fn crl_refresh_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = state.config.card.crl_refresh_secs;
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the CRL HTTP client; CRLs from URLs will not be refreshed");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(period));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let margin = i64::try_from(period).unwrap_or(i64::MAX / 4).saturating_mul(2);
        if let Err(e) = crate::card_trust::refresh_crls(&state.store, &http, state.clock.unix(), margin).await {
            tracing::warn!(error = %e, "refreshing CRLs failed");
        }
    }
}

/// Logs a signed checkpoint of the audit chain's head (target `audit`) every
/// `audit.checkpoint_interval_secs`, so the log shipper keeps, outside the database, what the chain
/// looked like (docs/design.md §3.9). Every instance writes them; any one of them pins the chain.
/// Writes the failed TLS handshakes of each minute as aggregate audit rows, and the last
/// window's at shutdown.
async fn handshake_audit_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_secs(60);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if let Err(e) = state.audit_handshake_failures().await {
            tracing::warn!(error = %e, "auditing failed TLS handshakes failed; their counts are kept for the next window");
        }
        if stopping {
            return;
        }
    }
}

async fn checkpoint_loop(state: AppState, key: Arc<crate::audit_checkpoint::CheckpointKey>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.audit.checkpoint_interval_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match crate::audit_checkpoint::take(&state.store, &key, state.clock.unix()).await {
            Ok(c) => tracing::info!(target: "audit", checkpoint = %c.to_line(), rows = c.rows, "audit checkpoint"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "taking an audit checkpoint failed"),
        }
    }
}

pub use infra::serve::shutdown_signal;
