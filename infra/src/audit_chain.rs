//! The keyed audit chain both services keep (docs/design.md §3.9, decision 0013): each row's
//! link is an HMAC under a key held outside the database, and Ed25519-signed checkpoints pin the
//! head at a moment. The tables and their queries belong to each service; the chain's one
//! definition, its keys and the checkpoint format live here.
//!
//! A checkpoint is one JSON line; the signature covers the JSON array
//! `["ninsho-audit-checkpoint/1", rows, head, keyed_from, at, key]`.

use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::secret_file::{read_existing_private_file, read_private_file};

const CONTEXT: &str = "ninsho-audit-checkpoint/1";

/// The audit key: the HMAC-SHA256 key of the keyed chain (docs/design.md §3.9). It is never stored in the
/// database, so whoever can write the database cannot recompute the links of rows they change.
#[derive(Clone)]
pub struct AuditKey(Hmac<Sha256>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl AuditKey {
    /// Length of the key in bytes.
    pub const LEN: usize = 32;

    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        if bytes.len() != Self::LEN {
            anyhow::bail!("the audit key must be 32 bytes (base64: 44 characters), got {}", bytes.len());
        }
        Ok(Self(Hmac::new_from_slice(bytes).map_err(|_| anyhow::anyhow!("invalid HMAC key"))?))
    }

    /// From base64 text (the configuration value or the key file's content).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
                let bytes = zeroize::Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| anyhow::anyhow!("the audit key is not valid base64"))?,
        );
        Self::from_bytes(&bytes)
    }
}

/// The canonical fields of a row: (seq, at, event, outcome, clinic, user, detail).
pub type RowFields<'a> = (i64, i64, &'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

/// A row's link from the previous row's link and the row's canonical fields: the one definition
/// of the chain, used by both append paths and by verification (docs/design.md §3.9).
///
/// Keyed rows: `HMAC-SHA256(audit key, prev || canonical(row))`. Rows written before keyed
/// chaining (`key` = `None`, kept only to verify them): `SHA-256(prev || canonical(row))`.
pub fn audit_link(key: Option<&AuditKey>, prev: &[u8], row: RowFields<'_>) -> Vec<u8> {
    // serde_json of a tuple of integers and strings is deterministic: a stable canonical form.
    let canonical = serde_json::to_vec(&row).unwrap_or_default();
    match key {
        Some(key) => {
            let mut mac = key.0.clone();
            mac.update(prev);
            mac.update(&canonical);
            mac.finalize().into_bytes().to_vec()
        }
        None => {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(&canonical);
            h.finalize().to_vec()
        }
    }
}

/// The Ed25519 key that signs checkpoints.
pub struct CheckpointKey(Ed25519KeyPair);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", self.public_key())
    }
}

impl CheckpointKey {
    /// Reads the key file (base64 PKCS#8), creating it with a new key if it does not exist.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_private_file(path, "audit checkpoint key", || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| anyhow::anyhow!("key generation failed"))?;
            Ok(Zeroizing::new(STANDARD.encode(pkcs8.as_ref())))
        })?;
        Self::from_text(path, &text)
    }

    /// Reads a configured key file (base64 PKCS#8), which must exist.
    pub fn from_existing_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_existing_private_file(path, "audit checkpoint key")?;
        Self::from_text(path, &text)
    }

    fn from_text(path: &Path, text: &str) -> anyhow::Result<Self> {
        let der = Zeroizing::new(
            STANDARD.decode(text.trim()).map_err(|_| anyhow::anyhow!("{}: the checkpoint key is not valid base64", path.display()))?,
        );
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(Self(pair))
    }

    /// The public key, base64url: what a checkpoint names and is verified with.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().as_ref())
    }
}

/// A signed statement of the chain's head at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Rows in the chain.
    pub rows: i64,
    /// Hex link of row `rows` (64 zeros for an empty chain).
    pub head: String,
    /// First keyed row (`None`: the chain had no keyed segment yet).
    pub keyed_from: Option<i64>,
    /// Unix seconds when it was taken.
    pub at: i64,
    /// The signing public key, base64url Ed25519.
    pub key: String,
    /// base64url Ed25519 signature.
    pub sig: String,
}

fn signed_bytes(rows: i64, head: &str, keyed_from: Option<i64>, at: i64, key: &str) -> Vec<u8> {
    serde_json::to_vec(&(CONTEXT, rows, head, keyed_from, at, key)).unwrap_or_default()
}

impl Checkpoint {
    /// As one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a saved checkpoint: the last non-empty line of `text`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).context("no checkpoint in the file")?;
        serde_json::from_str(line).context("not a checkpoint line")
    }
}


impl Checkpoint {
    /// Signs `head` (hex link of row `rows`) at `at` with `key`.
    pub fn sign(key: &CheckpointKey, rows: i64, head: String, keyed_from: Option<i64>, at: i64) -> Self {
        let public = key.public_key();
        let sig = key.0.sign(&signed_bytes(rows, &head, keyed_from, at, &public));
        Checkpoint { rows, head, keyed_from, at, key: public, sig: URL_SAFE_NO_PAD.encode(sig.as_ref()) }
    }

    /// Checks that `key` signed this checkpoint, unchanged. The rows it names are the caller's
    /// to compare with its log.
    pub fn check_signature(&self, key: &CheckpointKey) -> anyhow::Result<()> {
        if self.key != key.public_key() {
            anyhow::bail!("the checkpoint was signed by another key ({}), not this service's checkpoint key ({})", self.key, key.public_key());
        }
        let sig = URL_SAFE_NO_PAD.decode(&self.sig).map_err(|_| anyhow::anyhow!("the checkpoint signature is not base64url"))?;
        UnparsedPublicKey::new(&ED25519, key.0.public_key().as_ref())
            .verify(&signed_bytes(self.rows, &self.head, self.keyed_from, self.at, &self.key), &sig)
            .map_err(|_| anyhow::anyhow!("the checkpoint's signature does not verify: it was altered"))?;
        if self.rows < 0 {
            anyhow::bail!("the checkpoint names a negative row count");
        }
        Ok(())
    }
}
