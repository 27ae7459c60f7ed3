//! The e-prescription signature (docs/design.md §3.12): an XMLDSig `Signature` with XAdES 1.3.2
//! qualifying properties inside `<PrescriptionSign>` of the prescription `<Document>`, referencing
//! its sibling elements by their lower-case `id` (internally detached), made B-LT with an RFC 3161
//! signature time-stamp and the validation data of both certificate paths.
//!
//! Signing is split so that the private key can live anywhere (the signer's key backends, or an
//! EMR's own signHash call):
//!
//! 1. [`Prepared::new`] checks the unsigned document and builds `SignedInfo` for a certificate and a
//!    signing time; [`Prepared::signed_info_digest`] is the SHA-256 to sign (RSASSA-PKCS1-v1_5).
//! 2. [`Prepared::with_signature`] places the signature value; [`Signed::timestamp_imprint`] is
//!    the SHA-256 a TSA must stamp.
//! 3. [`Signed::complete`] adds the time-stamp token and validation data and gives the document.
//!
//! [`verify`] checks any such document, ours or another implementation's, and reports every reason.
#![forbid(unsafe_code)]

mod build;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod report;
mod verify;
mod xml;

/// Why a document cannot be signed. Shown to the EMR (CSC `error_description`), so in English and
/// without document content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not well-formed XML, or a DTD / entity declaration (refused: no external or expanding entities).
    #[error("the document is not well-formed XML: {0}")]
    NotXml(String),
    /// Well-formed but not the e-prescription document structure.
    #[error("the document is not an e-prescription document: {0}")]
    Structure(String),
    /// The document is signed already (its `PrescriptionSign` holds a signature).
    #[error("the document is already signed")]
    AlreadySigned,
    /// The certificate, signature value, time-stamp or validation data given is unusable.
    #[error("invalid signing input: {0}")]
    Input(String),
}

/// Certificates and CRLs (DER) that make a path verifiable later (XAdES `CertificateValues` and
/// `RevocationValues`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationData {
    /// CA certificates of the path, issuing CA first, root last (the end entity is not repeated).
    pub certificates: Vec<Vec<u8>>,
    /// CRLs for the CAs of the path.
    pub crls: Vec<Vec<u8>>,
}

pub use build::{Prepared, SIGNATURE_ID, Signed};
pub use verify::{TIME_STAMP_SKEW_SECS, verify};
pub use xml::{MAX_DOCUMENT_BYTES, canonicalize_document};

/// What [`verify`] trusts.
pub struct VerifyPolicy<'a> {
    /// HPKI signing anchors (revocation comes from the document's embedded CRLs).
    pub signer_anchors: &'a [Vec<u8>],
    /// TSA anchors.
    pub tsa_anchors: &'a [Vec<u8>],
    /// The time to judge the signing certificate at; `None`: the time-stamp's genTime.
    pub at: Option<i64>,
}

/// The verdict of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Valid,
    /// A check failed: the signature must not be relied on.
    Invalid,
}

/// One check of a verification report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable name (`structure`, `reference:#PrescriptionDocument`, `signature_value`, …).
    pub name: String,
    /// Passed or not.
    pub ok: bool,
    /// Stable reason code when failed (`digest_mismatch`, `revoked`, …); empty when passed.
    pub code: String,
    /// What was found, in English.
    pub detail: String,
}

/// The report of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One verdict.
    pub verdict: Verdict,
    /// Every check run, in order.
    pub checks: Vec<Check>,
    /// Signer certificate subject, when found.
    pub signer_subject: Option<String>,
    /// hcRole values of the signer certificate.
    pub hc_roles: Vec<String>,
    /// SigningTime (Unix seconds), when found.
    pub signing_time: Option<i64>,
    /// The time-stamp's genTime, when verified.
    pub timestamp_time: Option<i64>,
}

