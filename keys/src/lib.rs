//! The remote signer's key backends and its credential certificates (docs/design.md §3.11). No HTTP, no SQL,
//! no clock: the signer (`signer/`) stores what [`StoredKey`] holds, passes `now` in, and calls
//! these blocking functions from `spawn_blocking`.
//!
//! - [`Backend::Software`]: RSA keys generated and used by OpenSSL. The private key leaves this crate
//!   as PKCS#8 DER in [`StoredKey::Software`]; the signer seals it under its key-encryption key
//!   before storing it. This crate never writes it anywhere.
//! - [`Backend::Pkcs11`]: RSA keys generated inside a PKCS#11 token (SoftHSM2 in tests), marked
//!   sensitive and never extractable; only their `CKA_ID` leaves the token ([`StoredKey::Pkcs11`]).
//! - [`certificate`]: the doctor's CSR (for a real CA) and, from the demo's or a configured signing
//!   CA, a certificate shaped like a real HPKI signing certificate.
//!
//! Both backends sign a *pre-computed* SHA-256 digest (CSC `signHash`), producing exactly what
//! signing the original message with SHA-256 produces.

pub mod certificate;
mod pkcs11;
mod software;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::PathBuf;

pub use pkcs11::{Pkcs11Backend, Pkcs11Config};

/// Signature algorithms the signer offers (CSC `signAlgo` OIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, `sha256WithRSAEncryption` (1.2.840.113549.1.1.11): the
    /// e-prescription signature.
    RsaPkcs1Sha256,
    /// RSASSA-PSS (1.2.840.113549.1.1.10) with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
}

impl SignAlgorithm {
    /// Every algorithm, in the order the signer lists them.
    pub const ALL: [SignAlgorithm; 2] = [SignAlgorithm::RsaPkcs1Sha256, SignAlgorithm::RsaPssSha256];

    /// The dotted OID CSC clients send as `signAlgo`.
    pub fn oid(self) -> &'static str {
        match self {
            SignAlgorithm::RsaPkcs1Sha256 => "1.2.840.113549.1.1.11",
            SignAlgorithm::RsaPssSha256 => "1.2.840.113549.1.1.10",
        }
    }

    /// The algorithm of a dotted OID; `None` for any other.
    pub fn from_oid(oid: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.oid() == oid)
    }
}

/// The PSS salt length, in bytes: the SHA-256 output length (RFC 8017 §9.1 recommends hLen).
pub(crate) const PSS_SALT_LEN: usize = 32;
/// The length of a SHA-256 digest.
pub(crate) const SHA256_LEN: usize = 32;

/// What the signer stores to find a key again.
pub enum StoredKey {
    /// The PKCS#8 DER private key. Secret: the signer seals it before storing it; it is zeroed when
    /// dropped.
    Software { pkcs8: zeroize::Zeroizing<Vec<u8>> },
    /// The `CKA_ID` shared by the key pair's two objects on the token. Not secret.
    Pkcs11 { id: Vec<u8> },
}

impl StoredKey {
    /// The backend this key belongs to ([`Backend::name`]).
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoredKey::Software { .. } => "software",
            StoredKey::Pkcs11 { .. } => "pkcs11",
        }
    }
}

impl std::fmt::Debug for StoredKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredKey::Software { pkcs8 } => write!(f, "StoredKey::Software({} bytes, redacted)", pkcs8.len()),
            StoredKey::Pkcs11 { id } => write!(f, "StoredKey::Pkcs11(id {})", hex(id)),
        }
    }
}

/// Where the signer's keys live. `Send + Sync`: one value serves every thread.
pub enum Backend {
    /// OpenSSL in this process.
    Software,
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Backend),
}

/// RSA key sizes this crate generates: 2048 (HPKI's), 3072 and 4096 bits.
pub const RSA_KEY_SIZES: [u32; 3] = [2048, 3072, 4096];

impl Backend {
    /// `"software"` or `"pkcs11"` (the configuration spelling).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::Pkcs11(_) => "pkcs11",
        }
    }

    /// Generates an RSA key pair of `bits` (one of [`RSA_KEY_SIZES`]), public exponent 65537.
    /// Returns what to store and the public key as SubjectPublicKeyInfo DER. `label` names the key
    /// on a PKCS#11 token (`CKA_LABEL`); the software backend ignores it.
    pub fn generate_rsa(&self, label: &str, bits: u32) -> Result<(StoredKey, Vec<u8>), KeyError> {
        if !RSA_KEY_SIZES.contains(&bits) {
            return Err(KeyError::KeySize { bits });
        }
        match self {
            Backend::Software => software::generate_rsa(bits),
            Backend::Pkcs11(token) => token.generate_rsa(label, bits),
        }
    }

    /// The public key of `key`, SubjectPublicKeyInfo DER.
    pub fn public_key(&self, key: &StoredKey) -> Result<Vec<u8>, KeyError> {
        match (self, key) {
            (Backend::Software, StoredKey::Software { pkcs8 }) => software::public_key(pkcs8),
            (Backend::Pkcs11(token), StoredKey::Pkcs11 { id }) => token.public_key(id),
            _ => Err(self.wrong_backend(key)),
        }
    }

    /// Signs a SHA-256 digest (32 bytes) with `key`: the signature over the message the digest was
    /// computed from, as `openssl dgst -sha256 -sign` makes it.
    pub fn sign_digest(&self, key: &StoredKey, alg: SignAlgorithm, sha256_digest: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sha256_digest.len() != SHA256_LEN {
            return Err(KeyError::DigestLength { len: sha256_digest.len() });
        }
        match (self, key) {
            (Backend::Software, StoredKey::Software { pkcs8 }) => software::sign_digest(pkcs8, alg, sha256_digest),
            (Backend::Pkcs11(token), StoredKey::Pkcs11 { id }) => token.sign_digest(id, alg, sha256_digest),
            _ => Err(self.wrong_backend(key)),
        }
    }

    fn wrong_backend(&self, key: &StoredKey) -> KeyError {
        KeyError::WrongBackend { key: key.backend_name(), backend: self.name() }
    }
}

/// Why a key operation failed. Messages never contain key material or a PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `sign_digest` takes a SHA-256 digest: exactly 32 bytes.
    #[error("a SHA-256 digest is 32 bytes, got {len}")]
    DigestLength { len: usize },
    /// Not one of [`RSA_KEY_SIZES`].
    #[error("unsupported RSA key size {bits} (2048, 3072 or 4096 bits)")]
    KeySize { bits: u32 },
    /// A key of one backend given to the other.
    #[error("a {key} key cannot be used with the {backend} backend")]
    WrongBackend { key: &'static str, backend: &'static str },
    /// A stored software key that is not an RSA PKCS#8 private key (corrupt or unsealed wrongly).
    #[error("the stored software key is not an RSA PKCS#8 private key")]
    BadStoredKey,
    /// OpenSSL failed (key generation, signing, encoding).
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module {module}: {reason}")]
    Module { module: PathBuf, reason: String },
    /// No token with this label in any slot.
    #[error("no PKCS#11 token labelled {label:?}")]
    TokenNotFound { label: String },
    /// More than one token with this label: refusing to guess.
    #[error("{count} PKCS#11 tokens are labelled {label:?}; labels must be unique")]
    TokenAmbiguous { label: String, count: usize },
    /// The token refused the user PIN.
    #[error("the PKCS#11 token {label:?} refused the user PIN")]
    WrongPin { label: String },
    /// The token's user PIN is locked (too many wrong PINs).
    #[error("the user PIN of PKCS#11 token {label:?} is locked")]
    PinLocked { label: String },
    /// No RSA key pair with this `CKA_ID` on the token.
    #[error("no RSA key with CKA_ID {id} on the PKCS#11 token")]
    KeyNotFound { id: String },
    /// More than one key object of a kind with this `CKA_ID`: refusing to guess.
    #[error("{count} PKCS#11 objects have CKA_ID {id}")]
    KeyAmbiguous { id: String, count: usize },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {operation}: {source}")]
    Pkcs11 {
        operation: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },
    /// A public key that is not RSA SubjectPublicKeyInfo DER.
    #[error("not an RSA SubjectPublicKeyInfo: {0}")]
    BadPublicKey(String),
    /// A certificate, CSR or CA input could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
}

impl From<rcgen::Error> for KeyError {
    fn from(e: rcgen::Error) -> Self {
        KeyError::Certificate(e.to_string())
    }
}

impl From<devpki::PkiError> for KeyError {
    fn from(e: devpki::PkiError) -> Self {
        KeyError::Certificate(e.to_string())
    }
}

/// Whether `signature` is a valid `alg` signature over the SHA-256 `digest` under the RSA
/// public key `spki` (SubjectPublicKeyInfo DER). Errors only for unusable input (not RSA, a
/// digest of the wrong length).
pub fn verify_digest(spki: &[u8], alg: SignAlgorithm, digest: &[u8], signature: &[u8]) -> Result<bool, KeyError> {
    software::verify_digest(spki, alg, digest, signature)
}

/// Lower-case hex, for key ids in messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for alg in SignAlgorithm::ALL {
            assert_eq!(SignAlgorithm::from_oid(alg.oid()), Some(alg));
        }
        assert_eq!(SignAlgorithm::from_oid("1.2.840.113549.1.1.1"), None);
        assert_eq!(SignAlgorithm::from_oid(""), None);
    }

    #[test]
    fn backend_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Backend>();
        check::<StoredKey>();
    }

    #[test]
    fn stored_key_debug_redacts() {
        let key = StoredKey::Software { pkcs8: zeroize::Zeroizing::new(vec![0x30, 0x82, 0x04, 0xbe]) };
        assert_eq!(format!("{key:?}"), "StoredKey::Software(4 bytes, redacted)");
    }
}
