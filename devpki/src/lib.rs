//! Development PKI: certificate authorities, TLS and card certificates, CRLs and PKCS#12 files, for
//! `gateway demo` and for tests. Production certificates come from real CAs; nothing here is used on
//! a request path, and the gateway only *reads* certificates at run time (`gateway::pki`).
//!
//! - [`Authority`] issues TLS certificates ([`LeafUsage::TlsServer`], [`LeafUsage::TlsClient`]) and
//!   simple card certificates, and CRLs; [`pkcs12`] packs a leaf for a browser.
//! - [`cards`] makes HPKI and JPKI hierarchies and card certificates with the extension layout of
//!   real ones (critical certificatePolicies, hcRole, directoryName CRL points), with knobs for
//!   negative tests, and CRLs ([`CrlSpec`]); [`Leaf::sign_rsa_sha256`] signs as a card does.
//! - [`hc_role_extension`] is the HPKI role extension exactly as real HPKI certificates carry it.

mod authority;
pub mod cards;
mod der;
mod files;
mod hc_role;
mod keys;
mod pkcs12;

pub use authority::{Authority, CrlNumber, CrlSpec, IssuingPoint, Leaf, LeafSpec, LeafUsage};
pub use files::write_file;
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
    /// Key generation or encoding failed, or the algorithm cannot do what was asked.
    #[error("key: {0}")]
    Key(String),
    /// Not an object identifier in dotted form.
    #[error("not an object identifier: {0:?}")]
    Oid(String),
    /// A name attribute cannot be encoded as asked (for example a non-printable country).
    #[error("name: {0}")]
    Name(String),
}

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 (TLS certificates; on a card certificate, a key no real card has).
    EcP256,
    /// RSA-2048 (smart-card certificates, as on real JPKI and HPKI cards).
    Rsa2048,
    /// RSA-4096 (allowed for HPKI cards by the JAHIS guideline).
    Rsa4096,
    /// RSA-1024: too weak, for refusal tests only. Leaves only: no CA can have it here.
    Rsa1024,
}
