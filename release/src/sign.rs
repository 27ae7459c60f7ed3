//! Key generation and signing (the `sign` feature): what the `ninsho-release` tool does on the
//! release manager's offline machine. The secret key is a minisign secret key file, encrypted
//! with a password (scrypt) unless generated with none for tests.

use sha2::{Digest as _, Sha256};

use crate::keys::PublicKey;
use crate::manifest::{Manifest, ManifestError, Notes, Target, parse_version};

/// Why key generation or signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The minisign library refused (wrong password, corrupt key, …).
    #[error("{0}")]
    Minisign(String),
    /// The manifest would not be valid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl From<minisign::PError> for SignError {
    fn from(e: minisign::PError) -> Self {
        SignError::Minisign(e.to_string())
    }
}

/// A new key pair as file texts: the public key (`minisign.pub` form) and the secret key
/// (`minisign.key` form), plus the parsed public key.
pub struct NewKeyPair {
    /// The `minisign.pub` text.
    pub public_text: String,
    /// The `minisign.key` text (encrypted under the password, if one was given).
    pub secret_text: String,
    /// The public key.
    pub public: PublicKey,
}

/// The password of a secret key.
pub enum Password {
    /// The key is not encrypted (tests, or a key kept on an encrypted offline medium).
    None,
    /// This password.
    Given(String),
    /// Ask on the terminal (minisign's prompt).
    Prompt,
}

/// Generates a key pair, the secret key encrypted under `password` unless [`Password::None`].
pub fn generate(password: Password) -> Result<NewKeyPair, SignError> {
    let pair = match password {
        Password::Given(p) => minisign::KeyPair::generate_encrypted_keypair(Some(p))?,
        Password::Prompt => minisign::KeyPair::generate_encrypted_keypair(None)?,
        Password::None => minisign::KeyPair::generate_unencrypted_keypair()?,
    };
    let public_box = pair.pk.to_box()?;
    let public_text = public_box.to_string();
    let public = PublicKey::decode(&public_text).map_err(|e| SignError::Minisign(e.to_string()))?;
    let comment = format!("ninsho agent release key {}", public.key_id());
    let secret_text = pair.sk.to_box(Some(&comment))?.to_string();
    Ok(NewKeyPair { public_text, secret_text, public })
}

/// Whether a secret key file's text needs a password: `false` when it reads as an unencrypted
/// key (anything else is taken as encrypted, and decrypting it then says what is wrong).
pub fn needs_password(secret_text: &str) -> Result<bool, SignError> {
    let sk_box = minisign::SecretKeyBox::from_string(secret_text)?;
    Ok(minisign::SecretKey::from_unencrypted_box(sk_box).is_err())
}

/// Signs `bytes` exactly with the secret key in `secret_text`, decrypted with `password`.
/// Returns the signature file's text. `trusted_comment` is signed too.
pub fn sign_bytes(secret_text: &str, password: Password, bytes: &[u8], trusted_comment: &str) -> Result<String, SignError> {
    let sk_box = minisign::SecretKeyBox::from_string(secret_text)?;
    let sk = match password {
        Password::Given(p) => minisign::SecretKey::from_box(sk_box, Some(p))?,
        Password::Prompt => minisign::SecretKey::from_box(sk_box, None)?,
        Password::None => minisign::SecretKey::from_unencrypted_box(sk_box)?,
    };
    let signature = minisign::sign(None, &sk, bytes, Some(trusted_comment), Some("ninsho agent release manifest"))?;
    Ok(signature.to_string())
}

/// The manifest of `binary`: its hash and size, with the given version, target and notes.
pub fn manifest_for(binary: &[u8], version: &str, target: &str, notes_ja: &str, notes_en: &str) -> Result<Manifest, SignError> {
    let manifest = Manifest {
        version: parse_version(version)?,
        target: target.parse::<Target>()?,
        sha256: hex::encode(Sha256::digest(binary)),
        size: u64::try_from(binary.len()).unwrap_or(u64::MAX),
        notes: Notes { ja: notes_ja.to_owned(), en: notes_en.to_owned() },
    };
    manifest.check()?;
    Ok(manifest)
}

/// Signs a manifest: its bytes as [`Manifest::to_bytes`] writes them and the signature text.
/// The trusted comment names the version and target (minisign prints it on verification).
pub fn sign_manifest(secret_text: &str, password: Password, manifest: &Manifest) -> Result<(Vec<u8>, String), SignError> {
    let bytes = manifest.to_bytes();
    let comment = format!("ninsho-agent {} {}", manifest.version, manifest.target);
    let signature = sign_bytes(secret_text, password, &bytes, &comment)?;
    Ok((bytes, signature))
}
