//! A local RFC 3161 time-stamping authority for tests and the demo — never a production TSA (the
//! national e-prescription service expects an accredited one): its own CA (RSA-2048, named
//! "Ninsho Demo TSA CA"), a TSA certificate with the critical `timeStamping` extended key usage,
//! replies signed with RSA PKCS#1 v1.5 and SHA-256 carrying ESSCertIDv2, and a CRL of its CA.
//! [`Responder::serve`] answers `POST` `application/timestamp-query` over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cmpv2::status::{PkiFailureInfoValues, PkiStatus, PkiStatusInfo};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos};
use der::asn1::{GeneralizedTime, OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_tsp::{Accuracy, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::oid;

/// The demo TSA's policy: an OID under the private-enterprise arc reserved for examples
/// (RFC 5612 §2: 1.3.6.1.4.1.32473), never a real TSA policy.
pub const DEMO_POLICY: &str = "1.3.6.1.4.1.32473.3161.1";

/// Why the responder cannot be made or loaded.
#[derive(Debug, thiserror::Error)]
#[error("demo TSA: {0}")]
pub struct ResponderError(String);

fn err(what: &str) -> impl Fn(String) -> ResponderError + '_ {
    move |e| ResponderError(format!("{what}: {e}"))
}

/// How [`Responder::generate_with`] makes the TSA certificate (tests make unfit ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// extendedKeyUsage timeStamping, critical (false: no EKU at all).
    pub time_stamping_eku: bool,
    /// Days the TSA certificate is valid from `now`.
    pub valid_days: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self { time_stamping_eku: true, valid_days: 3650 }
    }
}

/// The local TSA.
pub struct Responder {
    ca_pem: String,
    ca_key_pem: String,
    ca_issuer: Issuer<'static, KeyPair>,
    tsa_der: Vec<u8>,
    tsa_pem: String,
    tsa_key: PKey<Private>,
    tsa_key_pem: String,
    serial: AtomicU64,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

fn unix_to_offset(unix: i64) -> Result<time::OffsetDateTime, ResponderError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| ResponderError(format!("time: {e}")))
}

fn rsa_key() -> Result<(KeyPair, String), ResponderError> {
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(|e| err("RSA key")(e.to_string()))?;
    let pkey = PKey::from_rsa(rsa).map_err(|e| err("RSA key")(e.to_string()))?;
    let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().map_err(|e| err("RSA key")(e.to_string()))?)
        .map_err(|e| err("RSA key")(e.to_string()))?;
    let pair = KeyPair::from_pem(&pem).map_err(|e| err("RSA key")(e.to_string()))?;
    Ok((pair, pem))
}

fn serial() -> Result<SerialNumber, ResponderError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| err("random")(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

impl Responder {
    /// A new TSA (CA and TSA certificate) valid from `now` (Unix seconds).
    pub fn generate(now: i64) -> Result<Self, ResponderError> {
        Self::generate_with(now, Options::default())
    }

    /// [`Responder::generate`] with `options`.
    pub fn generate_with(now: i64, options: Options) -> Result<Self, ResponderError> {
        let now = unix_to_offset(now)?;
        let (ca_key, ca_key_pem) = rsa_key()?;
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "JP");
        dn.push(DnType::OrganizationName, "Ninsho Demo");
        dn.push(DnType::CommonName, "Ninsho Demo TSA CA");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = now - time::Duration::hours(1);
        ca.not_after = now + time::Duration::days(7300);
        ca.serial_number = Some(serial()?);
        ca.key_identifier_method = KeyIdMethod::Sha256;
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("CA certificate")(e.to_string()))?;
        let ca_pem = ca_cert.pem();
        let ca_issuer = Issuer::new(ca, ca_key);

        let (tsa_key, tsa_key_pem) = rsa_key()?;
        let mut tsa = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "JP");
        dn.push(DnType::OrganizationName, "Ninsho Demo");
        dn.push(DnType::CommonName, "Ninsho Demo TimeStampServer01");
        tsa.distinguished_name = dn;
        tsa.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if options.time_stamping_eku {
            // extendedKeyUsage, critical, timeStamping alone (RFC 3161 §2.3).
            let mut eku = CustomExtension::from_oid_content(&[2, 5, 29, 37], vec![0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08]);
            eku.set_criticality(true);
            tsa.custom_extensions.push(eku);
        }
        tsa.use_authority_key_identifier_extension = true;
        tsa.not_before = now - time::Duration::hours(1);
        tsa.not_after = now + time::Duration::days(options.valid_days);
        tsa.serial_number = Some(serial()?);
        let tsa_cert = tsa.signed_by(&tsa_key, &ca_issuer).map_err(|e| err("TSA certificate")(e.to_string()))?;
        Self::assemble(ca_pem, ca_key_pem, ca_issuer, tsa_cert.der().to_vec(), tsa_cert.pem(), &tsa_key_pem)
    }

    /// A TSA from its files: the CA certificate and key, the TSA certificate and key (PEM).
    pub fn from_pem(ca_pem: &str, ca_key_pem: &str, tsa_pem: &str, tsa_key_pem: &str) -> Result<Self, ResponderError> {
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| err("CA key")(e.to_string()))?;
        let ca_issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| err("CA certificate")(e.to_string()))?;
        let tsa = openssl::x509::X509::from_pem(tsa_pem.as_bytes()).map_err(|e| err("TSA certificate")(e.to_string()))?;
        let tsa_der = tsa.to_der().map_err(|e| err("TSA certificate")(e.to_string()))?;
        Self::assemble(ca_pem.to_owned(), ca_key_pem.to_owned(), ca_issuer, tsa_der, tsa_pem.to_owned(), tsa_key_pem)
    }

    fn assemble(
        ca_pem: String,
        ca_key_pem: String,
        ca_issuer: Issuer<'static, KeyPair>,
        tsa_der: Vec<u8>,
        tsa_pem: String,
        tsa_key_pem: &str,
    ) -> Result<Self, ResponderError> {
        let tsa_key = PKey::private_key_from_pem(tsa_key_pem.as_bytes()).map_err(|e| err("TSA key")(e.to_string()))?;
        let public = openssl::x509::X509::from_der(&tsa_der)
            .and_then(|c| c.public_key())
            .map_err(|e| err("TSA certificate")(e.to_string()))?;
        if !public.public_eq(&tsa_key) {
            return Err(ResponderError("the TSA key does not belong to the TSA certificate".into()));
        }
        Ok(Self { ca_pem, ca_key_pem, ca_issuer, tsa_der, tsa_pem, tsa_key, tsa_key_pem: tsa_key_pem.to_owned(), serial: AtomicU64::new(1) })
    }

    /// The CA certificate, PEM (the anchor relying parties configure).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        openssl::x509::X509::from_pem(self.ca_pem.as_bytes()).and_then(|c| c.to_der()).unwrap_or_default()
    }

    /// The CA's private key, PEM (secret).
    pub fn ca_key_pem(&self) -> &str {
        &self.ca_key_pem
    }

    /// The TSA certificate, PEM.
    pub fn tsa_cert_pem(&self) -> &str {
        &self.tsa_pem
    }

    /// The TSA certificate, DER.
    pub fn tsa_cert_der(&self) -> &[u8] {
        &self.tsa_der
    }

    /// The TSA's private key, PEM (secret).
    pub fn tsa_key_pem(&self) -> &str {
        &self.tsa_key_pem
    }

    /// A CRL of the TSA CA listing nothing: thisUpdate `now` less five minutes, nextUpdate a day
    /// after `now`.
    pub fn crl_der(&self, now: i64) -> Result<Vec<u8>, ResponderError> {
        let now = unix_to_offset(now)?;
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(1),
            crl_number: serial()?,
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca_issuer).map_err(|e| err("CRL")(e.to_string()))?.der().to_vec())
    }

    /// The TimeStampResp (DER) to `request` at `now`: granted with a token, or a rejection
    /// (badDataFormat for a malformed request, badAlg for an imprint that is not SHA-256/384/512).
    pub fn respond(&self, request: &[u8], now: i64) -> Vec<u8> {
        let reply = match TimeStampReq::from_der(request) {
            Err(_) => rejection(PkiFailureInfoValues::BadDataFormat, "the request is not a DER TimeStampReq"),
            Ok(req) => {
                let len = match req.message_imprint.hash_algorithm.oid {
                    oid::SHA256 => Some(32),
                    oid::SHA384 => Some(48),
                    oid::SHA512 => Some(64),
                    _ => None,
                };
                if len != Some(req.message_imprint.hashed_message.as_bytes().len()) {
                    rejection(PkiFailureInfoValues::BadAlg, "the imprint must be SHA-256, SHA-384 or SHA-512")
                } else {
                    match self.token(&req, now) {
                        Ok(token) => granted(token),
                        Err(_) => rejection(PkiFailureInfoValues::SystemFailure, "the time-stamp could not be made"),
                    }
                }
            }
        };
        reply.unwrap_or_default()
    }

    fn token(&self, req: &TimeStampReq, now: i64) -> Result<ContentInfo, ResponderError> {
        let e = |what: &'static str| move |x: der::Error| ResponderError(format!("{what}: {x}"));
        let tsa = Certificate::from_der(&self.tsa_der).map_err(e("TSA certificate"))?;
        let gen_time = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(u64::try_from(now).unwrap_or(0)))
            .map_err(e("genTime"))?;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let tst = TstInfo {
            version: TspVersion::V1,
            policy: der::asn1::ObjectIdentifier::new(DEMO_POLICY).map_err(|x| ResponderError(format!("policy: {x}")))?,
            message_imprint: req.message_imprint.clone(),
            serial_number: crate::positive_int(&serial.to_be_bytes()).map_err(e("serial"))?,
            gen_time,
            accuracy: Some(Accuracy { seconds: Some(1), millis: None, micros: None }),
            ordering: false,
            nonce: req.nonce.clone(),
            tsa: None,
            extensions: None,
        };
        let tst_der = tst.to_der().map_err(e("TSTInfo"))?;
        let sha256 = |data: &[u8]| crate::sha256(data).to_vec();
        let attribute = |oid, value: Any| -> Result<Attribute, der::Error> {
            let mut values = SetOfVec::new();
            values.insert(value)?;
            Ok(Attribute { oid, values })
        };
        // ESSCertIDv2 with the default SHA-256: SEQUENCE { SEQUENCE OF { SEQUENCE { certHash } } }.
        let cert_id = OctetString::new(sha256(&self.tsa_der)).map_err(e("certHash"))?.to_der().map_err(e("certHash"))?;
        let ess = der_sequence(&der_sequence(&der_sequence(&cert_id)));
        let mut attrs = SetOfVec::new();
        attrs.insert(attribute(oid::CONTENT_TYPE, Any::from_der(&oid::TST_INFO.to_der().map_err(e("attr"))?).map_err(e("attr"))?).map_err(e("attr"))?)
            .map_err(e("attr"))?;
        let digest = OctetString::new(sha256(&tst_der)).map_err(e("digest"))?;
        attrs.insert(attribute(oid::MESSAGE_DIGEST, Any::from_der(&digest.to_der().map_err(e("attr"))?).map_err(e("attr"))?).map_err(e("attr"))?)
            .map_err(e("attr"))?;
        attrs.insert(attribute(oid::SIGNING_CERTIFICATE_V2, Any::from_der(&ess).map_err(e("attr"))?).map_err(e("attr"))?).map_err(e("attr"))?;
        let to_sign = attrs.to_der().map_err(e("signed attributes"))?;
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &self.tsa_key).map_err(|x| ResponderError(x.to_string()))?;
        signer.update(&to_sign).map_err(|x| ResponderError(x.to_string()))?;
        let signature = signer.sign_to_vec().map_err(|x| ResponderError(x.to_string()))?;
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tsa.tbs_certificate.issuer.clone(),
                serial_number: tsa.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: crate::sha256_algorithm(),
            signed_attrs: Some(attrs),
            signature_algorithm: AlgorithmIdentifierOwned { oid: oid::RSA_SHA256, parameters: Some(Any::null()) },
            signature: OctetString::new(signature).map_err(e("signature"))?,
            unsigned_attrs: None,
        };
        let mut digest_algorithms = SetOfVec::new();
        digest_algorithms.insert(crate::sha256_algorithm()).map_err(e("digestAlgorithms"))?;
        let certificates = if req.cert_req {
            let mut set = SetOfVec::new();
            set.insert(CertificateChoices::Certificate(tsa)).map_err(e("certificates"))?;
            Some(CertificateSet(set))
        } else {
            None
        };
        let mut signer_infos = SetOfVec::new();
        signer_infos.insert(signer_info).map_err(e("signerInfos"))?;
        let signed = SignedData {
            version: CmsVersion::V3,
            digest_algorithms,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: oid::TST_INFO,
                econtent: Some(Any::from_der(&OctetString::new(tst_der).map_err(e("eContent"))?.to_der().map_err(e("eContent"))?).map_err(e("eContent"))?),
            },
            certificates,
            crls: None,
            signer_infos: SignerInfos(signer_infos),
        };
        let content = Any::from_der(&signed.to_der().map_err(e("SignedData"))?).map_err(e("SignedData"))?;
        Ok(ContentInfo { content_type: oid::SIGNED_DATA, content })
    }

    /// Answers `POST` requests with `Content-Type: application/timestamp-query` on `listener`
    /// (HTTP/1.1, any path) until the task is dropped; `clock` gives the genTime.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, clock: impl Fn() -> i64 + Send + Sync + 'static) -> std::io::Result<()> {
        use axum::http::{HeaderMap, StatusCode, header};
        let clock = Arc::new(clock);
        let app = axum::Router::new().fallback(move |method: axum::http::Method, headers: HeaderMap, body: axum::body::Bytes| {
            let (tsa, clock) = (self.clone(), clock.clone());
            async move {
                let query = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some("application/timestamp-query");
                if method != axum::http::Method::POST || !query {
                    return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], b"POST an application/timestamp-query".to_vec());
                }
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/timestamp-reply")], tsa.respond(&body, clock()))
            }
        });
        axum::serve(listener, app).await
    }
}

/// The DER of a SEQUENCE holding `content` (already DER).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - first) as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
    out
}

fn granted(token: ContentInfo) -> Result<Vec<u8>, der::Error> {
    TimeStampResp { status: PkiStatusInfo { status: PkiStatus::Accepted, status_string: None, fail_info: None }, time_stamp_token: Some(token) }
        .to_der()
}

fn rejection(why: PkiFailureInfoValues, text: &'static str) -> Result<Vec<u8>, der::Error> {
    let text = der::asn1::Utf8StringRef::new(text)?;
    TimeStampResp {
        status: PkiStatusInfo { status: PkiStatus::Rejection, status_string: Some(vec![text]), fail_info: Some(why.into()) },
        time_stamp_token: None,
    }
    .to_der()
}
