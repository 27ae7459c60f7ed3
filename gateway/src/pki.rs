//! Reading certificate, CRL and PKCS#12 files (`gateway admin …`, CRL downloads). Generating
//! certificates for `gateway demo` and tests is the `devpki` crate's job; nothing here makes
//! certificates.

use anyhow::bail;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::tls::PeerCert;

fn is_pem(bytes: &[u8]) -> bool {
    bytes.starts_with(b"-----BEGIN")
}

/// Every certificate of a PEM file (in file order), or the one DER certificate, unparsed.
fn certificates_der(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    if !is_pem(bytes) {
        return Ok(vec![bytes.to_vec()]);
    }
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("not a PEM certificate file: {e}"))?;
    if ders.is_empty() {
        bail!("no certificate found");
    }
    Ok(ders)
}

/// Reads the first certificate from PEM or DER bytes without interpreting it (card certificates
/// are checked by `card::verify`, which reports unreadable ones itself).
pub fn read_certificate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(certificates_der(bytes)?.swap_remove(0))
}

/// Reads every certificate of a PEM file (leaf first), or one DER certificate; each must parse.
pub fn read_certificates(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let ders = certificates_der(bytes)?;
    for der in &ders {
        PeerCert::from_der(der)?;
    }
    Ok(ders)
}

/// Reads one certificate from PEM or DER bytes; it must parse.
pub fn parse_certificate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let der = read_certificate(bytes)?;
    PeerCert::from_der(&der)?;
    Ok(der)
}

/// Reads a CRL from PEM or DER bytes and checks that it parses.
pub fn parse_crl(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let der = if is_pem(bytes) {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(|e| anyhow::anyhow!("no PEM CRL found: {e}"))?.to_vec()
    } else {
        bytes.to_vec()
    };
    x509_parser::parse_x509_crl(&der).map_err(|e| anyhow::anyhow!("not a valid CRL: {e}"))?;
    Ok(der)
}

/// Errors reading a PKCS#12 file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The file could not be opened or holds no certificate.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
}

/// The leaf certificate (DER) of a PKCS#12 file; errors say whether the password was wrong.
pub fn pkcs12_leaf(data: &[u8], password: &str) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| PkiError::Pkcs12(format!("cannot open (wrong password or not a PKCS#12 file): {e}")))?;
    if let Some(first) = store.private_key_chain().and_then(|(_, chain)| chain.certs().first()) {
        return Ok(first.as_der().to_vec());
    }
    store
        .entries()
        .find_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        })
        .ok_or_else(|| PkiError::Pkcs12("the file holds no certificate".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use devpki::{Authority, KeyAlg, LeafSpec, LeafUsage, pkcs12};
    use time::OffsetDateTime;

    #[test]
    fn pkcs12_round_trips_and_refuses_a_wrong_password() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = Authority::new("Test CA", "", KeyAlg::EcP256, now).unwrap();
        let leaf = ca.issue(&LeafSpec::new("clinic", LeafUsage::TlsClient, now, 30)).unwrap();
        let p12 = pkcs12(&leaf, &[ca.cert_der()], "clinic", "secret").unwrap();
        assert_eq!(pkcs12_leaf(&p12, "secret").unwrap(), leaf.cert_der);
        assert!(pkcs12_leaf(&p12, "wrong").is_err());
    }
}
