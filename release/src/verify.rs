//! Checking a release: the manifest's signature, then the binary against the manifest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::keys::{KeyId, PublicKey};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, Target};

/// Longest signature file accepted, in bytes (a minisign signature is about 300).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// Why a release was refused. Every check fails closed: a refusal means "do not use this".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The signature text is not a minisign signature (or a legacy, non-prehashed one).
    #[error("the signature is malformed: {0}")]
    MalformedSignature(String),
    /// The signature names a key that is not trusted here.
    #[error("the release is signed with key {key_id}, which is not a trusted release key")]
    UnknownKey { key_id: KeyId },
    /// The signature does not verify under the trusted key it names: the manifest was changed
    /// after signing, or the signature belongs to other bytes.
    #[error("the signature does not match the manifest (key {key_id})")]
    BadSignature { key_id: KeyId },
    /// The signed bytes are not a valid manifest.
    #[error("the manifest is malformed: {0}")]
    MalformedManifest(String),
    /// The release is for another target.
    #[error("the release is for {offered}, not {expected}")]
    WrongTarget { expected: String, offered: String },
    /// The release is not newer than what runs (a downgrade, or an old manifest replayed).
    #[error("the release {offered} is not newer than {current}")]
    NotNewer { current: semver::Version, offered: semver::Version },
    /// The binary's length differs from the manifest's.
    #[error("the binary is {actual} bytes, the manifest says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    /// The binary's SHA-256 differs from the manifest's.
    #[error("the binary's SHA-256 is {actual}, the manifest says {expected}")]
    HashMismatch { expected: String, actual: String },
}

impl Refusal {
    /// A stable code for logs, audit rows and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MalformedSignature(_) => "malformed_signature",
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::MalformedManifest(_) => "malformed_manifest",
            Refusal::WrongTarget { .. } => "wrong_target",
            Refusal::NotNewer { .. } => "not_newer",
            Refusal::SizeMismatch { .. } => "size_mismatch",
            Refusal::HashMismatch { .. } => "hash_mismatch",
        }
    }
}

/// A parsed minisign signature with the key id it names.
struct ParsedSignature {
    inner: minisign_verify::Signature,
    key_id: KeyId,
}

/// Parses signature text: four lines (untrusted comment, signature, trusted comment, global
/// signature). Only the prehashed algorithm (`ED`, minisign's default since 0.8) is accepted.
fn parse_signature(text: &str) -> Result<ParsedSignature, Refusal> {
    let malformed = |why: &str| Refusal::MalformedSignature(why.to_owned());
    if text.len() > MAX_SIGNATURE_BYTES {
        return Err(malformed("longer than any minisign signature"));
    }
    let line = text.lines().nth(1).ok_or_else(|| malformed("expected four lines"))?;
    let bytes = STANDARD.decode(line.trim()).map_err(|_| malformed("the signature line is not base64"))?;
    if bytes.len() != 74 {
        return Err(malformed("the signature line has the wrong length"));
    }
    if bytes[..2] != *b"ED" {
        return Err(malformed("only prehashed Ed25519 signatures (minisign's default) are accepted"));
    }
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&bytes[2..10]);
    let inner = minisign_verify::Signature::decode(text).map_err(|e| Refusal::MalformedSignature(e.to_string()))?;
    Ok(ParsedSignature { inner, key_id: KeyId(key_id) })
}

/// The key id a signature names, if the text is a minisign signature (for messages and audit).
pub fn signature_key_id(text: &str) -> Option<KeyId> {
    parse_signature(text).ok().map(|s| s.key_id)
}

/// Verifies `signature` over the exact `manifest_bytes` with the key it names among `trusted`,
/// then parses the manifest. Nothing of the manifest is read before the signature verifies.
pub fn verify_manifest(manifest_bytes: &[u8], signature: &str, trusted: &[PublicKey]) -> Result<Manifest, Refusal> {
    let signature = parse_signature(signature)?;
    let Some(key) = trusted.iter().find(|k| k.key_id() == signature.key_id) else {
        return Err(Refusal::UnknownKey { key_id: signature.key_id });
    };
    if manifest_bytes.len() > MAX_MANIFEST_BYTES {
        // Larger than any manifest: not worth hashing.
        return Err(Refusal::MalformedManifest(format!("a manifest is at most {MAX_MANIFEST_BYTES} bytes")));
    }
    // allow_legacy = false: the non-prehashed form was refused above already; this says so twice.
    key.inner.verify(manifest_bytes, &signature.inner, false).map_err(|_| Refusal::BadSignature { key_id: key.key_id() })?;
    Manifest::parse(manifest_bytes).map_err(|e| Refusal::MalformedManifest(e.0))
}

/// What the agent runs on a release it was offered: [`verify_manifest`], then that the release
/// is for `target` and newer than `current` (no downgrade, no replayed old manifest).
pub fn verify_update(
    manifest_bytes: &[u8],
    signature: &str,
    trusted: &crate::TrustedKeys,
    target: &Target,
    current: &semver::Version,
) -> Result<Manifest, Refusal> {
    let manifest = verify_manifest(manifest_bytes, signature, trusted.as_slice())?;
    if manifest.target != *target {
        return Err(Refusal::WrongTarget { expected: target.to_string(), offered: manifest.target.to_string() });
    }
    if !manifest.is_newer_than(current) {
        return Err(Refusal::NotNewer { current: current.clone(), offered: manifest.version });
    }
    Ok(manifest)
}

/// Checks a whole binary against its (verified) manifest: the size, then the SHA-256.
pub fn check_binary(manifest: &Manifest, bytes: &[u8]) -> Result<(), Refusal> {
    let mut check = BinaryCheck::new(manifest);
    check.update(bytes)?;
    check.finish()
}

/// [`check_binary`] over a stream (the agent writes the download to disk as it arrives): refuses
/// as soon as more bytes arrive than the manifest announces.
#[derive(Clone)]
pub struct BinaryCheck {
    expected_size: u64,
    expected_sha256: String,
    seen: u64,
    hasher: Sha256,
}

impl BinaryCheck {
    /// A check against `manifest`.
    pub fn new(manifest: &Manifest) -> Self {
        Self { expected_size: manifest.size, expected_sha256: manifest.sha256.clone(), seen: 0, hasher: Sha256::new() }
    }

    /// The next bytes of the binary.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.seen = self.seen.saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        if self.seen > self.expected_size {
            return Err(Refusal::SizeMismatch { expected: self.expected_size, actual: self.seen });
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// The end of the binary: its length and hash must be the manifest's.
    pub fn finish(self) -> Result<(), Refusal> {
        if self.seen != self.expected_size {
            return Err(Refusal::SizeMismatch { expected: self.expected_size, actual: self.seen });
        }
        let actual = hex::encode(self.hasher.finalize());
        // Both are public (the manifest is signed, the binary is what was downloaded); the
        // constant-time comparison is only so that no one has to think about it.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(actual.as_bytes(), self.expected_sha256.as_bytes())) {
            return Err(Refusal::HashMismatch { expected: self.expected_sha256, actual });
        }
        Ok(())
    }
}
