//! Reading PKCS#12 files (`gateway admin clinic-cert add client.p12`). Generating certificates for
//! `gateway demo` and tests is the `devpki` crate's job; nothing here makes certificates.

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
