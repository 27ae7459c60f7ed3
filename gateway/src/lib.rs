//! Ninsho Gateway: the authentication server in front of remote signing for electronic
//! prescriptions. It admits clinic devices by TLS client certificate, signs doctors in, checks
//! their presence with an HPKI card, a My Number card or FIDO, and opens short-lived signing
//! sessions for the EMR backend.
//!
//! `main.rs` is thin: configuration and the CLI live in [`cli`], the server in [`server`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod assurance;
pub mod audit_checkpoint;
pub mod card_trust;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
mod demo_clinic;
pub mod enrollment;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod group_commit;
pub mod handshake_audit;
pub mod http;
pub mod login_id;
pub mod metrics;
pub mod oidc;
pub mod oqs;
pub mod password;
pub mod pki;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;

pub use infra::{clock, connections};
pub use server::Application;

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // jsonwebtoken picks no backend on its own when more than one is compiled in; be explicit.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
