//! The TLS gate both services run on their main listener: the rustls server configuration with a
//! mandatory client certificate validated per anchor by the `trust` crate, the verified peer
//! certificate as [`PeerCert`], and handshake-failure reasons. Which anchors to trust is each
//! service's choice (the gateway's live in its database, the signer's in a file).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::{CertificateError, ServerConfig};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;

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
/// expiry follows the service's injected clock like everything else.
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

/// The server's own certificate chain and key, read once at start.
#[derive(Clone, Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Reads the chain (PEM, leaf first) and the key (PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Identity> {
        let chain = read_pem_certs(cert_path)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        Ok(Identity { chain, key: Arc::new(key) })
    }

    /// Reads the files like [`Identity::load`] and checks that the key belongs to the first
    /// certificate, naming both files otherwise: `serve` runs this before it binds or connects.
    pub fn check_files(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
        let identity = Identity::load(cert_path, key_path)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(identity.key.clone_key())
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        rustls::sign::CertifiedKey::new(identity.chain, signing_key).keys_match().map_err(|e| {
            anyhow::anyhow!("{} does not belong to the certificate in {}: {e}", key_path.display(), cert_path.display())
        })
    }
}

/// Checks client certificates against the service's anchors, each anchor with its own revocation
/// policy and CRLs (the `trust` crate, decision 0012). Built anew, with a new [`ServerConfig`],
/// whenever the anchors change.
#[derive(Debug)]
pub struct GateVerifier {
    trust: trust::TrustStore,
    hints: Vec<rustls::DistinguishedName>,
    clock: SharedClockDebug,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for GateVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let intermediates: Vec<Vec<u8>> = intermediates.iter().map(|c| c.to_vec()).collect();
        // The service's clock, like every other time decision (rustls's `now` comes from the same
        // clock through `ClockTime`).
        match self.trust.validate(end_entity, &intermediates, self.clock.0.unix(), trust::Purpose::ClientTls) {
            Ok(_) => Ok(rustls::server::danger::ClientCertVerified::assertion()),
            Err(e) => Err(rustls::Error::InvalidCertificate(certificate_error(e))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// rustls's error for a refused client certificate; the ones rustls has no name for carry our
/// [`trust::PathError`], whose code [`handshake_failure_reason`] reports.
fn certificate_error(e: trust::PathError) -> CertificateError {
    use trust::PathError as P;
    match e {
        P::Expired { .. } => CertificateError::Expired,
        P::NotYetValid { .. } => CertificateError::NotValidYet,
        P::Revoked { .. } => CertificateError::Revoked,
        P::UnknownIssuer { .. } => CertificateError::UnknownIssuer,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}

/// Builds a main listener's configuration: the server identity, and client certificates required
/// and verified against `trust` (which must hold at least one anchor), each anchor with its own
/// revocation policy. No session resumption; ALPN h2 and HTTP/1.1.
pub fn server_config(identity: &Identity, trust: trust::TrustStore, clock: SharedClock) -> anyhow::Result<ServerConfig> {
    if trust.is_empty() {
        anyhow::bail!("no usable trust anchor for client certificates");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let hints = trust.subjects().map(|s| rustls::DistinguishedName::from(s.to_vec())).collect();
    let verifier = GateVerifier {
        trust,
        hints,
        clock: SharedClockDebug(clock.clone()),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_details(provider, Arc::new(ClockTime(SharedClockDebug(clock))))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
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
            CertificateError::Other(other) => match other.0.downcast_ref::<trust::PathError>() {
                Some(trust::PathError::RevocationUnknown { .. } | trust::PathError::CrlStale { .. }) => "revocation_unknown",
                Some(p) => p.code(),
                None => "bad_certificate",
            },
            _ => "bad_certificate",
        },
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => "incompatible",
        _ => "protocol",
    }
}
