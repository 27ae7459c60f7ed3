//! Replays the committed fuzz corpora (fuzz/corpus/xades_verify, fuzz/corpus/xades_prepare)
//! through the fuzz target bodies under the stable test suite; `make_seeds` (ignored) writes the
//! seeds and the fixed certificate they use.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};

fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

#[test]
fn verify_corpus_replays() {
    for file in corpus("xades_verify") {
        xades::fuzzing::verify_document(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn prepare_corpus_replays() {
    for file in corpus("xades_prepare") {
        xades::fuzzing::prepare_document(&std::fs::read(&file).unwrap());
    }
}

/// Writes the seeds: the sample prescription unsigned and signed (B-LT), and the certificate
/// `xades::fuzzing::prepare_document` uses.
#[test]
#[ignore = "writes the committed seeds; run by hand with --ignored"]
fn make_seeds() {
    use keys::certificate::{DoctorSubject, SigningCa};
    use openssl::pkey::PKey;
    const NOW: i64 = 1_780_272_000;
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read(root.join("../signer/data/sample-prescription.xml")).unwrap();
    let ca = SigningCa::generate_demo(at(NOW - 86_400)).unwrap();
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let subject = DoctorSubject { name_romaji: "Taro Yamada".into(), name_kanji: None, organization: "Fuzz Clinic".into(), serial: "Fuzz000001".into() };
    let cert = ca.issue(&key.public_key_to_der().unwrap(), &subject, at(NOW - 86_400), at(NOW + 86_400 * 365)).unwrap();
    std::fs::write(root.join("tests/data/doctor.der"), &cert).unwrap();
    let prepared = xades::Prepared::new(&sample, &cert, NOW).unwrap();
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&key).unwrap();
    ctx.sign_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1).unwrap();
    ctx.set_signature_md(openssl::md::Md::sha256()).unwrap();
    let mut value = Vec::new();
    ctx.sign_to_vec(&prepared.signed_info_digest(), &mut value).unwrap();
    let signed = prepared.with_signature(&value).unwrap();
    let tsa = tsp::responder::Responder::generate(NOW).unwrap();
    let imprint = signed.timestamp_imprint();
    let (token, _) = tsp::accept_reply(&tsa.respond(&tsp::request(&imprint, 1), NOW), &imprint, 1).unwrap();
    let signer = xades::ValidationData { certificates: vec![ca.cert_der().to_vec()], crls: vec![ca.crl(at(NOW - 60), at(NOW + 86_400), &[]).unwrap()] };
    let tsa_data = xades::ValidationData { certificates: vec![tsa.ca_der()], crls: vec![tsa.crl_der(NOW).unwrap()] };
    let basic = signed.basic();
    let complete = signed.complete(&token, &signer, &tsa_data).unwrap();
    for (dir, name, bytes) in [
        ("xades_verify", "signed-b-lt.xml", &complete),
        ("xades_verify", "signed-b-b.xml", &basic),
        ("xades_prepare", "sample-prescription.xml", &sample),
    ] {
        let d = root.join("../fuzz/corpus").join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    }
}
