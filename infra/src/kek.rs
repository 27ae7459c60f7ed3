//! The key-encryption key (KEK) that seals private keys kept in a database: the gateway's token
//! signing keys and the signer's software credential keys. AES-256-GCM, the key's id as
//! associated data, so a sealed key moved to another row does not open.

use std::path::Path;

use anyhow::{Context as _, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::secret_file::{random_bytes, read_private_file};

/// A key-encryption key (AES-256-GCM): the gateway's token signing keys and the signer's
/// software credential keys are stored sealed under one.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(***)")
    }
}

impl Kek {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        if bytes.len() != 32 {
            bail!("the key-encryption key must be 32 bytes (base64: 44 characters), got {}", bytes.len());
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| anyhow::anyhow!("invalid AES-256 key"))?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// From base64 text (the configuration value or the key file's content).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = Zeroizing::new(
            STANDARD.decode(text.trim()).context("the key-encryption key is not valid base64")?,
        );
        Self::from_bytes(&bytes)
    }

    /// Reads the KEK file, creating it (mode 0600, 32 random bytes) if it does not exist. A file
    /// readable by others is refused.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_private_file(path, "key-encryption key", || {
            let bytes = random_bytes::<32>()?;
            Ok(Zeroizing::new(STANDARD.encode(bytes.as_ref())))
        })?;
        Self::from_base64(&text)
    }

    /// Seals `plaintext`, bound to `kid` (authenticated, not encrypted: the key's id), as
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| anyhow::anyhow!("encrypting the signing key failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`Kek::seal`] sealed under the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed key {kid}: ciphertext too short");
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| anyhow::anyhow!("sealed key {kid} cannot be decrypted: wrong key-encryption key?"))?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}
