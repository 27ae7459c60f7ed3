//! Verdicts remembered per presented chain (decision 0025).
//!
//! A TLS client or a card presents the same certificates again and again, and a full validation
//! costs far more than the TLS handshake's own signature checks (OpenSSL decodes every certificate
//! and its key, builds a store context and checks every signature and CRL of the path). A
//! [`TrustStore`](crate::TrustStore) is immutable: every anchor or CRL change builds a new one,
//! whose verdicts start empty. So a validation's outcome depends only on what was presented, the
//! purpose, the checks asked for, and the time; and on time only through comparisons with the
//! validity bounds of the certificates and CRLs it can see. A success at `t` therefore holds for
//! every `t'` from `t` up to (not including) the first of those bounds at or after `t`: in that
//! window no certificate or CRL changes between "not yet valid", "valid" and "expired", so a fresh
//! validation would see exactly what the first one saw.
//!
//! Only successes are kept (a refusal is recomputed, and stays a refusal). An entry also ends
//! [`MAX_AGE_SECS`] after it was made, and never serves a time before it was made.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::{Checks, Purpose, Validated};

/// How long an entry may serve at most, whatever its bounds: the cost of one full validation per
/// chain every few minutes is nothing, and it caps what a mistake in the reasoning above could keep.
pub(crate) const MAX_AGE_SECS: i64 = 300;

/// Entries kept at most. Each holds the path's certificates (a few KiB). When full, expired entries
/// go first, then all of them: a client beyond this many distinct chains only costs validations.
const CAPACITY: usize = 1024;

/// What a verdict was asked for: a SHA-256 over the purpose, the checks and every presented
/// certificate, each length-prefixed and in the order given.
pub(crate) type Key = [u8; 32];

struct Entry {
    from: i64,
    until: i64,
    validated: Validated,
}

#[derive(Default)]
pub(crate) struct Verdicts {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Verdicts {
    pub(crate) fn key(leaf: &[u8], intermediates: &[Vec<u8>], purpose: Purpose, checks: Checks) -> Key {
        let mut h = Sha256::new();
        h.update([
            purpose as u8,
            u8::from(checks.time),
            u8::from(checks.revocation),
            u8::from(checks.policies),
            u8::from(checks.end_entity),
        ]);
        for der in std::iter::once(leaf).chain(intermediates.iter().map(Vec::as_slice)) {
            h.update((der.len() as u64).to_be_bytes());
            h.update(der);
        }
        h.finalize().into()
    }

    /// The remembered success for `key`, if one was made at or before `at` and holds at `at`.
    pub(crate) fn get(&self, key: &Key, at: i64) -> Option<Validated> {
        let entries = self.lock();
        let entry = entries.get(key)?;
        (entry.from <= at && at < entry.until).then(|| entry.validated.clone())
    }

    /// Remembers a success made at `at` that holds until `until` (exclusive).
    pub(crate) fn put(&self, key: Key, at: i64, until: i64, validated: &Validated) {
        let until = until.min(at.saturating_add(MAX_AGE_SECS));
        if until <= at {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.retain(|_, e| e.until > at);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, Entry { from: at, until, validated: validated.clone() });
    }

    /// Number of remembered successes.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // Each change is one insert, retain or clear: a panic cannot leave the map half-changed.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first of `bounds` at or after `at`, if any: where a verdict made at `at` stops holding.
pub(crate) fn first_bound_from(at: i64, bounds: impl IntoIterator<Item = i64>) -> Option<i64> {
    bounds.into_iter().filter(|&b| b >= at).min()
}
