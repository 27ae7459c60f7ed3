//! TLS for the main listener: the rustls server configuration with a mandatory client
//! certificate, the verified peer certificate as [`PeerCert`], and handshake-failure reasons.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::store::{AnchorKind, RevocationPolicy, TrustAnchor};

/// The verified leaf certificate the client presented, with the fields the gate needs parsed
/// once per connection.
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// Lowercase hex SHA-256 of the DER: the registration key (RFC 8705 `x5t#S256` uses the same hash).
    pub fingerprint: String,
    /// Subject DN, for operators.
    pub subject: String,
    /// Serial number, hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    /// The DER certificate.
    pub der: Arc<[u8]>,
}

/// A certificate that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct CertParseError(String);

impl PeerCert {
    /// Parses a DER certificate. Only *reads* fields: validation is rustls/webpki's job.
    pub fn from_der(der: &[u8]) -> Result<Self, CertParseError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertParseError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertParseError("trailing data after the certificate".into()));
        }
        Ok(Self {
            fingerprint: fingerprint(der),
            subject: cert.subject().to_string(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_after: cert.validity().not_after.timestamp(),
            der: Arc::from(der),
        })
    }
}

/// Lowercase hex SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Reads every certificate in a PEM file.
pub fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate found", path.display());
    }
    Ok(certs)
}

/// rustls asks this for the time when it checks validity and CRL freshness, so certificate
/// expiry follows the gateway's injected clock like everything else.
#[derive(Debug)]
struct ClockTime(SharedClockDebug);

struct SharedClockDebug(SharedClock);

impl std::fmt::Debug for SharedClockDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        u64::try_from(self.0.0.unix()).ok().map(|s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s)))
    }
}

/// Builds the main listener's configuration: server certificate from files, client
/// certificates required and verified against the clinic and service-client anchors with
/// their CRLs.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    anchors: &[TrustAnchor],
    clock: SharedClock,
) -> anyhow::Result<ServerConfig> {
    let chain = read_pem_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;

    let mut roots = RootCertStore::empty();
    let mut crls = Vec::new();
    let mut any_without_crl = false;
    for anchor in anchors.iter().filter(|a| matches!(a.kind, AnchorKind::Clinic | AnchorKind::Service)) {
        roots
            .add(CertificateDer::from(anchor.cert_der.clone()))
            .map_err(|e| anyhow::anyhow!("trust anchor {} ({}): {e}", anchor.fingerprint, anchor.subject))?;
        match (&anchor.crl_der, anchor.revocation) {
            (Some(crl), _) => crls.push(CertificateRevocationListDer::from(crl.clone())),
            (None, RevocationPolicy::None) => any_without_crl = true,
            // Fail closed: an anchor that promises a CRL but has none would accept revoked clients.
            (None, RevocationPolicy::Crl) => anyhow::bail!(
                "trust anchor {} ({}) has revocation policy crl but no CRL: gateway admin anchor set-crl",
                anchor.fingerprint,
                anchor.subject
            ),
        }
    }
    if roots.is_empty() {
        anyhow::bail!("no clinic trust anchor is configured: gateway admin anchor add --kind clinic CA.pem");
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        // A CRL past its nextUpdate no longer proves anything: refuse rather than trust it.
        .enforce_revocation_expiration();
    if any_without_crl {
        // Only issuers whose anchor says `revocation = none` lack a CRL; all others have one.
        verifier = verifier.allow_unknown_revocation_status();
    }
    let verifier = verifier.build()?;

    let mut config = ServerConfig::builder_with_details(provider, Arc::new(ClockTime(SharedClockDebug(clock))))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips the client-certificate check, so a
    // certificate revoked by a newer CRL or expired since would keep working. Every connection
    // is verified in full (and no ticket is minted for a client that never resumes).
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// Why a handshake failed, as a metrics label.
pub fn handshake_failure_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "not_yet_valid",
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "revocation_unknown",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => "wrong_purpose",
            _ => "bad_certificate",
        },
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => "incompatible",
        _ => "protocol",
    }
}
