//! The Ninsho remote signer (docs/design.md §3.11): holds each doctor's signing key in software
//! or on a PKCS#11 token and signs, over the CSC API v2, only what a live single-use signing
//! token from the Ninsho Gateway allows.
//!
//! `main.rs` is thin: the CLI is [`cli`], the server [`server`], the API [`http`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod sad;
pub mod server;
pub mod store;
pub mod validation;
pub mod verify;

pub use infra::clock;
pub use server::Application;

/// Installs aws-lc-rs as the process-wide rustls provider and jsonwebtoken's backend. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
