//! The running signer: the mTLS listener (the shared `infra` gate and connection loop) and the
//! ops listener, with the gateway's drain-then-stop shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::credentials::Keyring;
use crate::gateway::GatewayClient;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::sad::Jwks;
use crate::store::Store;

/// A signer ready to serve: listeners bound, database current, keys and TLS loaded.
pub struct Application {
    main: TcpListener,
    ops: TcpListener,
    acceptor: TlsAcceptor,
    state: AppState,
}

/// The client-certificate trust of the main listener: the CAs of `tls.client_ca_file`, no
/// revocation list (each caller is also registered by certificate fingerprint, and disabling it
/// refuses it at once).
fn client_trust(path: &std::path::Path) -> anyhow::Result<trust::TrustStore> {
    if path.as_os_str().is_empty() {
        anyhow::bail!("tls.client_ca_file must name the CAs of the callers' client certificates");
    }
    let certs = infra::tls::read_pem_certs(path)?;
    let specs = certs
        .iter()
        .map(|c| trust::AnchorSpec { certificate: c.to_vec(), revocation: trust::Revocation::None, policies: trust::Policies::Any })
        .collect();
    Ok(trust::TrustStore::new(specs))
}

impl Application {
    /// Reads the keys and certificates, connects to the database (which must be migrated:
    /// `ninsho-signer migrate`), binds both listeners.
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let identity = infra::tls::Identity::load(&config.tls.cert_file, &config.tls.key_file)
            .context("tls.cert_file / tls.key_file (the signer's server certificate)")?;
        let tls = infra::tls::server_config(&identity, client_trust(&config.tls.client_ca_file)?, clock.clone())?;
        let gateway = GatewayClient::new(&config)?;
        let audit_key = config.audit_key(false)?;
        let keyring = match config.keys.backend {
            crate::config::KeyBackendKind::Software => Keyring::new(config.key_backend()?, Some(config.key_kek()?))?,
            crate::config::KeyBackendKind::Pkcs11 => Keyring::new(config.key_backend()?, None)?,
        };
        let url = config.database_url()?;
        let store = Store::connect(&url, config.database.max_connections, Duration::from_millis(config.database.acquire_timeout_ms))
            .await?
            .with_audit_key(audit_key);
        match store.schema_status().await? {
            infra::db::SchemaStatus::Current => {}
            other => anyhow::bail!("the signer's database is not at this version's schema ({other:?}): run `ninsho-signer migrate`"),
        }
        let main = TcpListener::bind(config.server.listen).await.with_context(|| format!("binding {}", config.server.listen))?;
        let ops = TcpListener::bind(config.ops.listen).await.with_context(|| format!("binding {}", config.ops.listen))?;
        let jwks = Arc::new(Jwks::new(config.gateway.jwks_refresh_min_secs, config.gateway.jwks_max_age_secs));
        let doc_signing = Arc::new(http::DocSigning::new(&config)?);
        let verify_anchors = Arc::new(http::Anchors::new(&config)?);
        let state = AppState {
            doc_signing,
            verify_anchors,
            config: Arc::new(config),
            store,
            gateway,
            jwks,
            keyring: Arc::new(keyring),
            clock,
            metrics: Metrics::new(),
            draining: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self { main, ops, acceptor: TlsAcceptor::from(Arc::new(tls)), state })
    }

    /// The main listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.main.local_addr().unwrap_or_else(|_| self.state.config.server.listen)
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| self.state.config.ops.listen)
    }

    /// The shared state (tests).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes; then `/readyz` fails while the listener serves on for
    /// `server.shutdown_drain_secs`, then it stops accepting and lets open requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { main, ops, acceptor, state } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut ops_stop = stop_rx.clone();
        let ops_router = http::ops_router(state.clone());
        let ops_task = tokio::spawn(async move {
            axum::serve(ops, ops_router).with_graceful_shutdown(async move {
                let _ = ops_stop.wait_for(|s| *s).await;
            })
            .await
        });
        tracing::info!(addr = %main.local_addr()?, db = state.store.backend_name(), keys = state.keyring.kind().as_str(), "signer listening");
        let router = http::router(state.clone());
        let limits = &state.config.server;
        let admission =
            infra::connections::Admission::new(limits.max_connections, limits.max_connections_per_ip, state.metrics.connections_open());
        let timeouts = infra::serve::Timeouts {
            handshake: Duration::from_secs(limits.handshake_timeout_secs),
            header: Duration::from_secs(limits.header_timeout_secs),
            idle: Duration::from_secs(limits.idle_timeout_secs),
        };
        let events = Arc::new(Events(state.metrics.clone()));
        let drain_secs = limits.shutdown_drain_secs;
        let draining = state.draining.clone();
        let metrics = state.metrics.clone();
        let stop_accepting = async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            metrics.set_ready(false);
            tracing::info!(drain_secs, "shutting down: unready now, still serving while load balancers take this instance out");
            tokio::time::sleep(Duration::from_secs(drain_secs)).await;
        };
        let listener = infra::serve::Listener { tcp: main, admission, router, timeouts };
        listener.run(|| acceptor.clone(), events, &stop_tx, stop_accepting).await;
        let _ = ops_task.await;
        state.store.close().await;
        Ok(())
    }
}

struct Events(Metrics);

impl infra::serve::Events for Events {
    fn handshake_failed(&self, reason: &'static str, _remote: SocketAddr) {
        self.0.handshake_failure(reason);
    }

    fn idle_closed(&self) {
        self.0.idle_closed();
    }

    fn connection_refused(&self, reason: &'static str) {
        self.0.connection_refused(reason);
    }
}

pub use infra::serve::shutdown_signal;
