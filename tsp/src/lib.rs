//! RFC 3161 time-stamps (docs/design.md §3.12): the request the signer sends to its configured
//! time-stamping authority, the checks on the reply, and the verification of a time-stamp token
//! found in a signed document (its CMS signature, its message imprint, the TSA certificate's path
//! to a configured anchor with the `timeStamping` extended key usage).
//!
//! The ASN.1 is the RustCrypto `cms`, `x509-tsp` and `cmpv2` types; signatures are checked with
//! OpenSSL. The CMS signature check is written here (RFC 5652 §5.4: the DER of the signed
//! attributes as a SET OF, the `messageDigest` over the TSTInfo, the `contentType`) because no
//! maintained Rust crate verifies a SignedData against a certificate; the ESS signing-certificate
//! attribute binds the TSA's certificate (RFC 5816, or RFC 2634's SHA-1 form).
//!
//! With the `responder` feature, [`responder`] is a local TSA with its own CA for tests and the
//! demo.
#![forbid(unsafe_code)]

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Sequence};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Verifier;
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

#[cfg(feature = "responder")]
pub mod responder;

/// SHA-256 (`2.16.840.1.101.3.4.2.1`), the only imprint algorithm the signer asks for.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";

/// Object identifiers used here.
pub(crate) mod oid {
    use der::asn1::ObjectIdentifier as Oid;
    pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub const TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    pub const SIGNING_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.12");
    pub const SIGNING_CERTIFICATE_V2: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const RSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
    pub const RSA_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    pub const RSA_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    pub const RSA_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    pub const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    pub const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    pub const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
}

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
    /// TSTInfo nonce (big-endian bytes), if any.
    pub nonce: Option<Vec<u8>>,
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

fn malformed(what: &str) -> impl Fn(der::Error) -> TspError + '_ {
    move |e| TspError::Malformed(format!("{what}: {e}"))
}

/// An unsigned integer as a positive ASN.1 INTEGER.
pub(crate) fn positive_int(bytes: &[u8]) -> Result<Int, der::Error> {
    let trimmed: &[u8] = {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
        &bytes[first..]
    };
    let mut out = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    if out.is_empty() {
        out.push(0);
    }
    Int::new(&out)
}

/// The magnitude of a positive INTEGER, without the sign octet.
fn int_bytes(i: &Int) -> Vec<u8> {
    let b = i.as_bytes();
    match b {
        [0, rest @ ..] if !rest.is_empty() => rest.to_vec(),
        _ => b.to_vec(),
    }
}

pub(crate) fn sha256_algorithm() -> AlgorithmIdentifierOwned {
    // SHA-2 AlgorithmIdentifiers with NULL parameters, as OpenSSL and most TSAs write them.
    AlgorithmIdentifierOwned { oid: oid::SHA256, parameters: Some(Any::null()) }
}

/// A TimeStampReq (DER) for the SHA-256 imprint `digest`, with `nonce` and certReq = true.
pub fn request(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    let build = || -> Result<Vec<u8>, der::Error> {
        TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint { hash_algorithm: sha256_algorithm(), hashed_message: OctetString::new(digest.to_vec())? },
            req_policy: None,
            nonce: Some(positive_int(&nonce.to_be_bytes())?),
            cert_req: true,
            extensions: None,
        }
        .to_der()
    };
    // Encoding fixed-size values cannot fail; an empty request would be refused by any TSA.
    build().unwrap_or_default()
}

/// The token (ContentInfo, DER) of a TimeStampResp `reply` to [`request`]`(digest, nonce)`: status
/// granted, the token's imprint is `digest` with SHA-256, its nonce is `nonce`, and its signature
/// verifies under the certificate it names. Not the TSA's path: see [`verify`].
pub fn accept_reply(reply: &[u8], digest: &[u8; 32], nonce: u64) -> Result<(Vec<u8>, TokenInfo), TspError> {
    let resp = TimeStampResp::from_der(reply).map_err(malformed("TimeStampResp"))?;
    use cmpv2::status::PkiStatus;
    if !matches!(resp.status.status, PkiStatus::Accepted | PkiStatus::GrantedWithMods) {
        let text: Vec<String> = resp.status.status_string.iter().flatten().map(|s| s.as_str().to_owned()).collect();
        return Err(TspError::Rejected(format!("status {:?} {}", resp.status.status, text.join("; ")).trim().to_owned()));
    }
    let token = resp.time_stamp_token.ok_or_else(|| TspError::Malformed("a granted reply without a token".into()))?;
    let token = token.to_der().map_err(malformed("token"))?;
    let info = inspect(&token)?;
    if info.imprint_algorithm != SHA256_OID || info.imprint != digest {
        return Err(TspError::Mismatch("the token's message imprint is not the request's".into()));
    }
    let expected = int_bytes(&positive_int(&nonce.to_be_bytes()).map_err(malformed("nonce"))?);
    if info.nonce.as_deref() != Some(expected.as_slice()) {
        return Err(TspError::Mismatch("the token's nonce is not the request's".into()));
    }
    Ok((token, info))
}

/// ESSCertIDv2 (RFC 5816).
#[derive(Sequence)]
struct EssCertIdV2 {
    /// Absent: SHA-256 (the DEFAULT).
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

/// SigningCertificateV2 (RFC 5035).
#[derive(Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

/// ESSCertID (RFC 2634): a SHA-1 certificate hash.
#[derive(Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

/// SigningCertificate (RFC 2634).
#[derive(Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

fn digest_of(alg: &ObjectIdentifier) -> Option<MessageDigest> {
    match *alg {
        oid::SHA256 => Some(MessageDigest::sha256()),
        oid::SHA384 => Some(MessageDigest::sha384()),
        oid::SHA512 => Some(MessageDigest::sha512()),
        _ => None,
    }
}

fn hash(alg: MessageDigest, data: &[u8]) -> Result<Vec<u8>, TspError> {
    openssl::hash::hash(alg, data).map(|d| d.to_vec()).map_err(|e| TspError::Malformed(format!("hash: {e}")))
}

/// The single value of the signed attribute `oid`, DER.
fn attribute(info: &SignerInfo, attr: ObjectIdentifier) -> Option<Vec<u8>> {
    let attrs = info.signed_attrs.as_ref()?;
    let found: Vec<_> = attrs.iter().filter(|a| a.oid == attr).collect();
    match found.as_slice() {
        [one] if one.values.len() == 1 => one.values.iter().next().and_then(|v| v.to_der().ok()),
        _ => None,
    }
}

/// Reads a token and checks its CMS signature under the certificate its SignerInfo names (which it
/// must carry), without checking what it stamps or the TSA's path.
pub fn inspect(token: &[u8]) -> Result<TokenInfo, TspError> {
    let content = ContentInfo::from_der(token).map_err(malformed("ContentInfo"))?;
    if content.content_type != oid::SIGNED_DATA {
        return Err(TspError::Malformed("the token is not a CMS SignedData".into()));
    }
    let signed = SignedData::from_der(&content.content.to_der().map_err(malformed("SignedData"))?).map_err(malformed("SignedData"))?;
    if signed.encap_content_info.econtent_type != oid::TST_INFO {
        return Err(TspError::Malformed("the SignedData does not hold a TSTInfo".into()));
    }
    let econtent = signed.encap_content_info.econtent.as_ref().ok_or_else(|| TspError::Malformed("no TSTInfo content".into()))?;
    let tst_der = econtent.value();
    let tst = TstInfo::from_der(tst_der).map_err(malformed("TSTInfo"))?;
    let certificates: Vec<Vec<u8>> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(cert) => cert.to_der().ok(),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err(TspError::Malformed("a time-stamp token has exactly one SignerInfo".into()));
    };
    let tsa_certificate = find_signer_certificate(signer, &certificates)?;
    check_signer(signer, tst_der, &tsa_certificate)?;
    let gen_time = i64::try_from(tst.gen_time.to_unix_duration().as_secs()).map_err(|_| TspError::Malformed("genTime out of range".into()))?;
    Ok(TokenInfo {
        gen_time,
        serial: hex::encode(int_bytes(&tst.serial_number)),
        policy: tst.policy.to_string(),
        imprint_algorithm: tst.message_imprint.hash_algorithm.oid.to_string(),
        imprint: tst.message_imprint.hashed_message.as_bytes().to_vec(),
        nonce: tst.nonce.as_ref().map(int_bytes),
        tsa_certificate,
        certificates,
    })
}

/// The carried certificate the SignerInfo's sid names.
fn find_signer_certificate(signer: &SignerInfo, certificates: &[Vec<u8>]) -> Result<Vec<u8>, TspError> {
    for der in certificates {
        let Ok(cert) = Certificate::from_der(der) else { continue };
        let tbs = &cert.tbs_certificate;
        let matches = match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => ias.issuer == tbs.issuer && ias.serial_number == tbs.serial_number,
            SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
                .extensions
                .iter()
                .flatten()
                .any(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.14") && e.extn_value.as_bytes().ends_with(ski.0.as_bytes())),
        };
        if matches {
            return Ok(der.clone());
        }
    }
    Err(TspError::Malformed("the token does not carry the TSA's certificate (ask with certReq)".into()))
}

/// RFC 5652 §5.4 and RFC 3161 §2.4.2: content type, message digest, the ESS signing-certificate
/// binding, and the signature over the DER of the signed attributes.
fn check_signer(signer: &SignerInfo, tst_der: &[u8], cert_der: &[u8]) -> Result<(), TspError> {
    let bad = |m: &str| TspError::BadSignature(m.to_owned());
    let digest = digest_of(&signer.digest_alg.oid).ok_or_else(|| bad("the SignerInfo's digest algorithm is not SHA-256, SHA-384 or SHA-512"))?;
    let attrs = signer.signed_attrs.as_ref().ok_or_else(|| bad("no signed attributes"))?;
    let content_type = attribute(signer, oid::CONTENT_TYPE).ok_or_else(|| bad("no contentType attribute"))?;
    if ObjectIdentifier::from_der(&content_type).ok() != Some(oid::TST_INFO) {
        return Err(bad("the contentType attribute is not id-ct-TSTInfo"));
    }
    let message_digest = attribute(signer, oid::MESSAGE_DIGEST).ok_or_else(|| bad("no messageDigest attribute"))?;
    let message_digest = OctetString::from_der(&message_digest).map_err(|_| bad("messageDigest is not an OCTET STRING"))?;
    if message_digest.as_bytes() != hash(digest, tst_der)?.as_slice() {
        return Err(bad("the messageDigest attribute is not the TSTInfo's digest"));
    }
    // The signing-certificate attribute must name this certificate (its first ESSCertID).
    if let Some(v2) = attribute(signer, oid::SIGNING_CERTIFICATE_V2) {
        let v2 = SigningCertificateV2::from_der(&v2).map_err(|_| bad("malformed SigningCertificateV2"))?;
        let first = v2.certs.first().ok_or_else(|| bad("an empty SigningCertificateV2"))?;
        let alg = first.hash_algorithm.as_ref().map_or(Some(MessageDigest::sha256()), |a| digest_of(&a.oid)).ok_or_else(|| bad("ESSCertIDv2 with an unsupported hash"))?;
        if first.cert_hash.as_bytes() != hash(alg, cert_der)?.as_slice() {
            return Err(bad("ESSCertIDv2 names another certificate than the signer's"));
        }
    } else if let Some(v1) = attribute(signer, oid::SIGNING_CERTIFICATE) {
        let v1 = SigningCertificate::from_der(&v1).map_err(|_| bad("malformed SigningCertificate"))?;
        let first = v1.certs.first().ok_or_else(|| bad("an empty SigningCertificate"))?;
        if first.cert_hash.as_bytes() != hash(MessageDigest::sha1(), cert_der)?.as_slice() {
            return Err(bad("ESSCertID names another certificate than the signer's"));
        }
    } else {
        return Err(bad("no signing-certificate attribute (RFC 3161 §2.4.2)"));
    }
    // The signed attributes are signed as a DER SET OF, not with the [0] IMPLICIT tag they carry.
    let signed_bytes = attrs.to_der().map_err(|_| bad("signed attributes do not encode"))?;
    let key = openssl::x509::X509::from_der(cert_der)
        .and_then(|c| c.public_key())
        .map_err(|e| TspError::Malformed(format!("TSA certificate: {e}")))?;
    verify_signature(&key, &signer.signature_algorithm, digest, &signed_bytes, signer.signature.as_bytes())
}

fn verify_signature(
    key: &PKey<openssl::pkey::Public>,
    alg: &AlgorithmIdentifierOwned,
    digest: MessageDigest,
    data: &[u8],
    signature: &[u8],
) -> Result<(), TspError> {
    let bad = |m: String| TspError::BadSignature(m);
    let digest = match alg.oid {
        oid::RSA | oid::RSA_PSS => digest,
        oid::RSA_SHA256 | oid::ECDSA_SHA256 => MessageDigest::sha256(),
        oid::RSA_SHA384 | oid::ECDSA_SHA384 => MessageDigest::sha384(),
        oid::RSA_SHA512 | oid::ECDSA_SHA512 => MessageDigest::sha512(),
        other => return Err(bad(format!("unsupported signature algorithm {other}"))),
    };
    let run = || -> Result<bool, openssl::error::ErrorStack> {
        let mut verifier = Verifier::new(digest, key)?;
        if alg.oid == oid::RSA_PSS {
            verifier.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
            // The salt length as the signature says it (RSA_PSS_SALTLEN_AUTO).
            verifier.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(-2))?;
        }
        verifier.update(data)?;
        verifier.verify(signature)
    };
    match run() {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(bad("the signature over the signed attributes does not verify under the TSA's certificate".into())),
    }
}

/// Verifies a token over `data` (the stamped bytes; the imprint must be their hash with the token's
/// algorithm, SHA-256 or stronger): [`inspect`], the imprint, and the TSA certificate's path to an
/// anchor of `anchors` at the token's genTime with the timeStamping purpose (`extra` holds
/// further CA certificates, e.g. a signed document's validation data).
pub fn verify(token: &[u8], data: &[u8], anchors: &trust::TrustStore, extra: &[Vec<u8>]) -> Result<TokenInfo, TspError> {
    let info = inspect(token)?;
    let alg = ObjectIdentifier::new(&info.imprint_algorithm).map_err(|_| TspError::Malformed("imprint algorithm".into()))?;
    if alg == oid::SHA1 {
        return Err(TspError::Malformed("the message imprint uses SHA-1, which is too weak".into()));
    }
    let digest = digest_of(&alg).ok_or_else(|| TspError::Malformed(format!("unsupported imprint algorithm {alg}")))?;
    if hash(digest, data)? != info.imprint {
        return Err(TspError::ImprintMismatch);
    }
    let mut intermediates: Vec<Vec<u8>> = Vec::new();
    for c in info.certificates.iter().chain(extra) {
        if *c != info.tsa_certificate && !intermediates.contains(c) {
            intermediates.push(c.clone());
        }
    }
    intermediates.truncate(trust::MAX_INTERMEDIATES);
    anchors.validate(&info.tsa_certificate, &intermediates, info.gen_time, trust::Purpose::TimeStamping).map_err(TspError::Untrusted)?;
    Ok(info)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Most bytes read from a TSA's reply.
const MAX_REPLY: usize = 64 * 1024;

/// A time-stamping authority reached over HTTP (RFC 3161 §3.4: POST `application/timestamp-query`,
/// answer `application/timestamp-reply`).
pub struct Client {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl Client {
    /// A client for the TSA at `url` (http or https), each request bounded by `timeout`.
    pub fn new(url: &str, timeout: std::time::Duration) -> Result<Self, TspError> {
        let url = reqwest::Url::parse(url).map_err(|e| TspError::Unavailable(format!("TSA URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TspError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self { url, http })
    }

    /// A token over the SHA-256 imprint `digest`, with a fresh random nonce, checked by
    /// [`accept_reply`].
    pub async fn stamp(&self, digest: &[u8; 32]) -> Result<(Vec<u8>, TokenInfo), TspError> {
        let nonce: u64 = rand::random();
        let unavailable = |e: reqwest::Error| TspError::Unavailable(e.to_string());
        let mut res = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/timestamp-query")
            .body(request(digest, nonce))
            .send()
            .await
            .map_err(unavailable)?;
        if !res.status().is_success() {
            return Err(TspError::Unavailable(format!("the TSA answered HTTP {}", res.status())));
        }
        let content_type = res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/timestamp-reply") {
            return Err(TspError::Unavailable(format!("the TSA answered {content_type:?}, not application/timestamp-reply")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > MAX_REPLY {
                return Err(TspError::Unavailable(format!("the TSA's reply exceeds {MAX_REPLY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        accept_reply(&body, digest, nonce)
    }
}
