//! Development PKI: certificate authorities, TLS and card certificates, CRLs and PKCS#12 files, for
//! `gateway demo` and for tests. Production certificates come from real CAs; nothing here is used on
//! a request path, and the gateway only *reads* certificates at run time (`gateway::pki`).
//!
//! - [`Authority`] issues TLS certificates ([`LeafUsage::TlsServer`], [`LeafUsage::TlsClient`]) and
//!   simple card certificates, and CRLs; [`pkcs12`] packs a leaf for a browser.
//! - [`hc_role_extension`] is the HPKI role extension exactly as real HPKI certificates carry it.

mod authority;
mod der;
mod hc_role;
mod pkcs12;

pub use authority::{Authority, Leaf, LeafSpec, LeafUsage};
pub use hc_role::hc_role_extension;
pub use pkcs12::pkcs12;

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// PKCS#12 encoding failed.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// A PEM input could not be read.
    #[error("PEM: {0}")]
    Pem(String),
}

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 (TLS certificates).
    EcP256,
    /// RSA-2048 (smart-card certificates, as on real JPKI and HPKI cards).
    Rsa2048,
}
