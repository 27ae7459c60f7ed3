//! Signed clinic-agent releases (docs/design.md §3.14, decision 0018).
//!
//! A release is a binary and its **manifest**: a small JSON document naming the version, the
//! target, the binary's SHA-256 and size, and release notes in Japanese and English. The manifest's
//! exact bytes are signed with Ed25519 in the minisign format (a `.minisig` file beside it) by a
//! release key kept offline; the binary is bound to the signature through the manifest's hash.
//!
//! Who checks what:
//! - the gateway checks a release against its configured release public keys before it accepts it
//!   (`gateway admin agent-release publish`): [`verify_manifest`] and [`check_binary`];
//! - the agent checks what it downloads against the keys compiled into it ([`TrustedKeys`]: two
//!   slots, for rotation), the target it runs on and its own version: [`verify_update`], then
//!   [`check_binary`] (or [`BinaryCheck`] while streaming to disk).
//!
//! The order of the checks is the security argument: the signature is checked over the raw bytes
//! first, and only a manifest signed by a trusted key is parsed; a parse error after that is still
//! a refusal (a key holder's mistake), never a partial result.
//!
//! With the `sign` feature (default; the agent leaves it off) the crate also generates keys and
//! signs manifests ([`sign`]) for the `ninsho-release` tool.

#![forbid(unsafe_code)]

mod keys;
mod manifest;
#[cfg(feature = "sign")]
pub mod sign;
mod verify;

pub use keys::{KeyError, KeyId, PublicKey, Slot, TrustedKeys};
pub use manifest::{MAX_BINARY_BYTES, MAX_MANIFEST_BYTES, MAX_NOTES_CHARS, Manifest, ManifestError, Notes, Target, parse_version};
pub use semver::Version;
pub use verify::{BinaryCheck, MAX_SIGNATURE_BYTES, Refusal, check_binary, signature_key_id, verify_manifest, verify_update};

#[cfg(test)]
mod tests;
