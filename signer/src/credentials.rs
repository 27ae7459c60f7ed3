//! Doctors' keys in the configured backend (`keys` crate): creating them, and signing with a
//! stored credential. Software keys are kept sealed under the key-encryption key, the
//! credential's id bound into the seal, and are opened only to sign.

use keys::{SignAlgorithm, StoredKey};

use crate::store::{Credential, KeyBackend};

/// The configured key backend, with the KEK that seals software keys.
pub struct Keyring {
    backend: keys::Backend,
    kek: Option<infra::kek::Kek>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("backend", &self.backend.name()).finish()
    }
}

/// A key as the store keeps it.
#[derive(Debug)]
pub struct NewKey {
    /// Backend.
    pub backend: KeyBackend,
    /// Sealed PKCS#8 or CKA_ID.
    pub key_ref: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
}

impl Keyring {
    /// `kek` is needed for the software backend.
    pub fn new(backend: keys::Backend, kek: Option<infra::kek::Kek>) -> anyhow::Result<Self> {
        if matches!(backend, keys::Backend::Software) && kek.is_none() {
            anyhow::bail!("software keys need a key-encryption key");
        }
        Ok(Self { backend, kek })
    }

    /// The backend's kind.
    pub fn kind(&self) -> KeyBackend {
        match self.backend {
            keys::Backend::Software => KeyBackend::Software,
            keys::Backend::Pkcs11(_) => KeyBackend::Pkcs11,
        }
    }

    /// The underlying backend (CSRs and certificates are made from it).
    pub fn backend(&self) -> &keys::Backend {
        &self.backend
    }

    /// Generates an RSA key for credential `id` in the backend.
    pub fn create(&self, id: &str, bits: u32) -> anyhow::Result<NewKey> {
        let (stored, spki) = self.backend.generate_rsa(id, bits)?;
        let key_ref = match (&stored, &self.kek) {
            (StoredKey::Software { pkcs8 }, Some(kek)) => kek.seal(id, pkcs8)?,
            (StoredKey::Pkcs11 { id }, _) => id.clone(),
            (StoredKey::Software { .. }, None) => anyhow::bail!("software keys need a key-encryption key"),
        };
        Ok(NewKey { backend: self.kind(), key_ref, spki })
    }

    /// The stored key of `credential` as the backend takes it. A credential of another backend
    /// than the configured one is refused, never tried.
    pub fn stored_key(&self, credential: &Credential) -> anyhow::Result<StoredKey> {
        if credential.backend != self.kind() {
            anyhow::bail!(
                "credential {} lives in the {} backend, but this signer runs the {} backend",
                credential.id,
                credential.backend.as_str(),
                self.kind().as_str()
            );
        }
        Ok(match (&self.kek, credential.backend) {
            (Some(kek), KeyBackend::Software) => StoredKey::Software { pkcs8: kek.open(&credential.id, &credential.key_ref)? },
            (_, KeyBackend::Pkcs11) => StoredKey::Pkcs11 { id: credential.key_ref.clone() },
            (None, KeyBackend::Software) => anyhow::bail!("software keys need a key-encryption key"),
        })
    }

    /// Signs each SHA-256 digest with `credential`'s key, in order. Blocking: call it off the
    /// async threads.
    pub fn sign(&self, credential: &Credential, alg: SignAlgorithm, digests: &[Vec<u8>]) -> anyhow::Result<Vec<Vec<u8>>> {
        let key = self.stored_key(credential)?;
        digests.iter().map(|d| Ok(self.backend.sign_digest(&key, alg, d)?)).collect()
    }
}
