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

use std::future::Future;

use tokio::net::TcpListener;

pub use config::{Args, Config, ConfigError, DEFAULT_PORT};

/// Serves the agent on `listener` until `shutdown` completes.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let cards = cards::Cards::start()?;
    let state = http::AppState::new(cards, config.allowed_origins.clone(), port);
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
