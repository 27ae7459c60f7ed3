//! The release manifest: what a signature vouches for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest manifest accepted, in bytes (a real one is well under 10 KiB).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Largest binary a manifest may describe, in bytes (the gateway's own bound is configured and
/// usually lower).
pub const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;
/// Longest release note, per language, in characters.
pub const MAX_NOTES_CHARS: usize = 4000;

/// Why manifest bytes are not a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// A release: one binary for one target.
///
/// Strict on purpose: unknown or repeated keys are refused, the version is plain
/// `MAJOR.MINOR.PATCH` (no pre-release or build suffix: each version names one release and
/// orders unambiguously), and every field is checked ([`Manifest::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The agent's version (semantic versioning).
    pub version: semver::Version,
    /// The Rust target triple the binary runs on, e.g. `x86_64-pc-windows-msvc`.
    pub target: Target,
    /// SHA-256 of the binary, 64 lower-case hex digits.
    pub sha256: String,
    /// The binary's length in bytes.
    pub size: u64,
    /// What changed, for the clinic's staff and the operators.
    pub notes: Notes,
}

/// Release notes in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notes {
    /// 日本語.
    pub ja: String,
    /// English.
    pub en: String,
}

/// A target triple: lower-case letters, digits and `_`, in three or four parts joined by `-`
/// (it appears in URLs and file names, so nothing else is allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Target(String);

impl Target {
    /// The triple.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Target {
    type Error = ManifestError;

    fn try_from(s: String) -> Result<Self, ManifestError> {
        let parts: Vec<&str> = s.split('-').collect();
        let part_ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if s.len() > 64 || !(3..=4).contains(&parts.len()) || !parts.iter().all(part_ok) {
            return Err(ManifestError(format!(
                "target {s:?} is not a target triple such as x86_64-pc-windows-msvc (lower-case letters, digits, '_', \
                 3 or 4 parts joined by '-')"
            )));
        }
        Ok(Self(s))
    }
}

impl std::str::FromStr for Target {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, ManifestError> {
        Self::try_from(s.to_owned())
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.0
    }
}

impl Manifest {
    /// Parses and checks manifest bytes. Call it on signed bytes only ([`crate::verify_manifest`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError(format!("a manifest is at most {MAX_MANIFEST_BYTES} bytes")));
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError(format!("the manifest is not valid: {e}")))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks what serde's types do not: the version's form, the hash, the size, the notes.
    pub fn check(&self) -> Result<(), ManifestError> {
        check_version(&self.version)?;
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ManifestError("sha256 must be 64 lower-case hex digits".to_owned()));
        }
        if self.size == 0 || self.size > MAX_BINARY_BYTES {
            return Err(ManifestError(format!("size must be between 1 and {MAX_BINARY_BYTES} bytes")));
        }
        for (lang, text) in [("ja", &self.notes.ja), ("en", &self.notes.en)] {
            if text.trim().is_empty() {
                return Err(ManifestError(format!("notes.{lang} must not be empty")));
            }
            if text.chars().count() > MAX_NOTES_CHARS {
                return Err(ManifestError(format!("notes.{lang} is longer than {MAX_NOTES_CHARS} characters")));
            }
            if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(ManifestError(format!("notes.{lang} holds control characters")));
            }
        }
        Ok(())
    }

    /// The manifest as the signing tool writes it: pretty JSON with a final newline. (Verification
    /// never re-serialises: the signed bytes are what they are.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Whether this release is newer than `current` (an agent never moves back or sideways).
    pub fn is_newer_than(&self, current: &semver::Version) -> bool {
        self.version > *current
    }
}

/// A release version is `MAJOR.MINOR.PATCH` and nothing more.
pub fn check_version(v: &semver::Version) -> Result<(), ManifestError> {
    if !v.pre.is_empty() || !v.build.is_empty() {
        return Err(ManifestError(format!("version {v} must be MAJOR.MINOR.PATCH, without a pre-release or build suffix")));
    }
    Ok(())
}

/// Parses a release version (`MAJOR.MINOR.PATCH`).
pub fn parse_version(s: &str) -> Result<semver::Version, ManifestError> {
    let v = semver::Version::parse(s).map_err(|e| ManifestError(format!("version {s:?} is not MAJOR.MINOR.PATCH: {e}")))?;
    check_version(&v)?;
    Ok(v)
}
