//! `card-agent`: the local program on the clinic PC that lets the gateway page use a card reader
//! (docs/design.md §3.5). HTTP on 127.0.0.1 for allowed gateway origins only; PC/SC on one worker thread.
//!
//! The PIN arrives in the request body, goes into a zeroizing [`card::Pin`], is sent to the card in
//! VERIFY, and is dropped; it is never logged, and no request body is logged at all.
#![forbid(unsafe_code)]

pub mod cards;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod relay;
pub mod setup;
pub mod update;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{Args, Config, ConfigError, DEFAULT_PORT, LogFormat};

/// The version this build reports (to the gateway, on the pages, in `--self-test`): the
/// package's, unless the build set `NINSHO_AGENT_VERSION` (agent/build.rs).
pub const VERSION: &str = env!("NINSHO_AGENT_BUILD_VERSION");

/// The target triple this build runs on (the releases it installs must name it).
pub const TARGET: &str = env!("NINSHO_AGENT_BUILD_TARGET");

/// Serves the agent on `listener` until `shutdown` completes: the card bridge for the gateway
/// page, and the set-up and status pages of the OQS relay run by `supervisor`.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    supervisor: Arc<relay::supervisor::Supervisor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_updater(config, listener, supervisor, None, shutdown).await
}

/// [`serve`], with the self-update's offer and answers on the status page (docs/design.md §3.15).
pub async fn serve_with_updater(
    config: &Config,
    listener: TcpListener,
    supervisor: Arc<relay::supervisor::Supervisor>,
    updater: Option<Arc<update::Updater>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let cards = cards::Cards::start()?;
    let state = http::AppState::new(cards, config.allowed_origins.clone(), port);
    let setup = setup::router(
        setup::SetupContext {
            target: setup_target(config),
            supervisor,
            version: VERSION,
            updater,
        },
        port,
    );
    axum::serve(listener, setup.merge(http::router(state)))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Where the set-up stores its results, and which gateway it asks.
pub fn setup_target(config: &Config) -> setup::Target {
    setup::Target {
        data_dir: config.data_dir.clone(),
        relay_file: setup::relay_file_path(&config.data_dir, config.relay.as_ref()),
        gateway: config.gateway.clone(),
        gateway_ca: config.gateway_ca.clone(),
    }
}
