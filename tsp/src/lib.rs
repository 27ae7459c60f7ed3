//! RFC 3161 time-stamps (docs/design.md §3.12): the request the signer sends to its configured
//! time-stamping authority, the checks on the reply, and the verification of a time-stamp token
//! found in a signed document (its CMS signature, its message imprint, the TSA certificate's path
//! to a configured anchor with the `timeStamping` extended key usage).
//!
//! With the `responder` feature, [`responder`] is a local TSA with its own CA for tests and the
//! demo.
#![forbid(unsafe_code)]

#[cfg(feature = "responder")]
pub mod responder;

/// SHA-256 (`2.16.840.1.101.3.4.2.1`), the only imprint algorithm the signer asks for.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";

/// What a verified (or inspected) time-stamp token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// TSTInfo genTime, Unix seconds.
    pub gen_time: i64,
    /// TSTInfo serialNumber, lowercase hex.
    pub serial: String,
    /// TSTInfo policy (dotted OID).
    pub policy: String,
    /// The message imprint's hash algorithm (dotted OID).
    pub imprint_algorithm: String,
    /// The message imprint.
    pub imprint: Vec<u8>,
    /// The TSA's certificate (DER): the one the SignerInfo names (ESSCertID / ESSCertIDv2).
    pub tsa_certificate: Vec<u8>,
    /// Every certificate the token carries (DER), the TSA's included.
    pub certificates: Vec<Vec<u8>>,
}

/// Why a reply or token was refused. [`TspError::code`] is stable (reports, metrics).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TspError {
    /// Not DER, or not the ASN.1 structure RFC 3161 / RFC 5652 define.
    #[error("malformed time-stamp: {0}")]
    Malformed(String),
    /// The TSA answered a status other than granted / grantedWithMods.
    #[error("the time-stamping authority refused: {0}")]
    Rejected(String),
    /// The reply's imprint or nonce is not the request's.
    #[error("the time-stamp answers another request: {0}")]
    Mismatch(String),
    /// The token's imprint is not over the data it is said to stamp.
    #[error("the time-stamp's message imprint does not match the stamped data")]
    ImprintMismatch,
    /// The CMS signature (or its signed attributes) does not verify under the TSA certificate.
    #[error("the time-stamp's signature does not verify: {0}")]
    BadSignature(String),
    /// The TSA certificate has no path to a configured TSA anchor, or is not fit for time-stamping.
    #[error("the time-stamping authority is not trusted: {0}")]
    Untrusted(trust::PathError),
    /// The TSA could not be reached or answered something else than a time-stamp reply.
    #[error("the time-stamping authority is unavailable: {0}")]
    Unavailable(String),
}

impl TspError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            TspError::Malformed(_) => "timestamp_malformed",
            TspError::Rejected(_) => "timestamp_rejected",
            TspError::Mismatch(_) => "timestamp_mismatch",
            TspError::ImprintMismatch => "timestamp_imprint_mismatch",
            TspError::BadSignature(_) => "timestamp_bad_signature",
            TspError::Untrusted(_) => "timestamp_untrusted",
            TspError::Unavailable(_) => "tsa_unavailable",
        }
    }
}

/// A TimeStampReq (DER) for the SHA-256 imprint `digest`, with `nonce` and certReq = true.
pub fn request(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    let _ = (digest, nonce);
    unimplemented!("helper: tsp request")
}

/// The token (ContentInfo, DER) of a TimeStampResp `reply` to [`request`]`(digest, nonce)`: status
/// granted, the token's imprint is `digest` with SHA-256, its nonce is `nonce`, and its signature
/// verifies under the certificate it names. Not the TSA's path: see [`verify`].
pub fn accept_reply(reply: &[u8], digest: &[u8; 32], nonce: u64) -> Result<(Vec<u8>, TokenInfo), TspError> {
    let _ = (reply, digest, nonce);
    unimplemented!("helper: tsp accept_reply")
}

/// Reads a token and checks its CMS signature under the certificate its SignerInfo names (which it
/// must carry), without checking what it stamps or the TSA's path.
pub fn inspect(token: &[u8]) -> Result<TokenInfo, TspError> {
    let _ = token;
    unimplemented!("helper: tsp inspect")
}

/// Verifies a token over `data` (the stamped bytes; the imprint must be their hash with the token's
/// algorithm, SHA-256 or stronger): [`inspect`], the imprint, and the TSA certificate's path to an
/// anchor of `anchors` at the token's genTime with the timeStamping purpose (`extra` holds
/// further CA certificates, e.g. a signed document's validation data).
pub fn verify(token: &[u8], data: &[u8], anchors: &trust::TrustStore, extra: &[Vec<u8>]) -> Result<TokenInfo, TspError> {
    let _ = (token, data, anchors, extra);
    unimplemented!("helper: tsp verify")
}

/// A time-stamping authority reached over HTTP (RFC 3161 §3.4: POST `application/timestamp-query`,
/// answer `application/timestamp-reply`).
pub struct Client {
    _private: (),
}

impl Client {
    /// A client for the TSA at `url` (http or https), each request bounded by `timeout`.
    pub fn new(url: &str, timeout: std::time::Duration) -> Result<Self, TspError> {
        let _ = (url, timeout);
        unimplemented!("helper: tsp Client::new")
    }

    /// A token over the SHA-256 imprint `digest`, with a fresh random nonce, checked by
    /// [`accept_reply`].
    pub async fn stamp(&self, digest: &[u8; 32]) -> Result<(Vec<u8>, TokenInfo), TspError> {
        let _ = digest;
        unimplemented!("helper: tsp Client::stamp")
    }
}
