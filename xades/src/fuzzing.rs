//! Fuzz target bodies (feature `fuzzing`). The libFuzzer target in fuzz/fuzz_targets/ and the corpus
//! replay test (xades/tests/fuzz_corpus.rs) call these same functions, so every committed corpus
//! input also runs under the stable test suite. Each takes arbitrary bytes and must not panic.

use crate::{Verdict, VerifyPolicy};

/// `verify` of arbitrary bytes: never a panic, and with no anchors configured never `Valid` (a
/// signature nobody is trusted for cannot pass); every failed check carries a code.
pub fn verify_document(data: &[u8]) {
    let report = crate::verify(data, &VerifyPolicy { signer_anchors: &[], tsa_anchors: &[], at: None });
    assert_eq!(report.verdict, Verdict::Invalid, "a document verified without anchors");
    assert!(report.checks.iter().any(|c| !c.ok));
    assert!(report.checks.iter().all(|c| c.ok || !c.code.is_empty()), "a failed check without a code");
    let _ = report.to_json();
    let _ = report.to_string();
}

/// `Prepared::new` of arbitrary bytes as an unsigned document: never a panic; what it accepts has
/// a digest to sign.
pub fn prepare_document(data: &[u8]) {
    if let Ok(prepared) = crate::Prepared::new(data, CERTIFICATE, 1_780_272_000) {
        let _ = prepared.signed_info_digest();
    }
}

/// A fixed certificate for [`prepare_document`] (any parseable certificate: no key is used).
const CERTIFICATE: &[u8] = include_bytes!("../tests/data/doctor.der");
