//! PKCS#12 files for browsers and `clinic-cert add`.

use crate::{Leaf, PkiError};

/// A PKCS#12 file holding `leaf`, its key and `chain`, protected by `password`
/// (PBES2 with AES-256 and an HMAC-SHA-256 MAC: what current browsers and OpenSSL 3 accept).
pub fn pkcs12(leaf: &Leaf, chain: &[&[u8]], alias: &str, password: &str) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let err = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
    let mut certs = vec![Certificate::from_der(&leaf.cert_der).map_err(err)?];
    for c in chain {
        certs.push(Certificate::from_der(c).map_err(err)?);
    }
    let key = PrivateKey::from_der(&leaf.key_der).map_err(err)?;
    let local_key_id: Vec<u8> = rand::random::<[u8; 20]>().to_vec();
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)));
    store.writer(password).write().map_err(err)
}
