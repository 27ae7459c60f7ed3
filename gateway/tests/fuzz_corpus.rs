//! The committed fuzz corpus (fuzz/corpus/<target>/) replayed through the same functions the fuzz
//! targets call (README.md, "Fuzzing"). `make_seeds` (ignored; run by hand) writes the token key
//! fixture and the token seeds:
//! `cargo nextest run -p gateway --all-features --run-ignored only -E 'test(make_seeds)'`.

#![allow(clippy::unwrap_used, reason = "test helpers: a missing corpus or fixture file is a failed test")]

use std::path::{Path, PathBuf};

use gateway::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `target`'s corpus, through `body`.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        eprintln!("{}", file.display());
        body(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn card_finish_json_corpus() {
    replay("card_finish_json", fuzzing::card_finish_json);
}

#[test]
fn consume_jwt_corpus() {
    replay("consume_jwt", fuzzing::consume_jwt);
}

#[test]
fn a_token_of_the_fixture_key_is_accepted() {
    let setup = fuzzing::token_setup();
    let token = setup.keys.sign(&claims(fuzzing::NOW - 10, fuzzing::NOW + 60)).unwrap();
    setup.keys.verify(&token, fuzzing::ISSUER, fuzzing::AUDIENCE, fuzzing::NOW).unwrap();
    fuzzing::consume_jwt(token.as_bytes());
}

fn claims(nbf: i64, exp: i64) -> gateway::tokens::Claims {
    gateway::tokens::Claims {
        iss: fuzzing::ISSUER.into(),
        aud: fuzzing::AUDIENCE.into(),
        sub: "doctor-1".into(),
        clinic: "clinic-1".into(),
        sid: "session-1".into(),
        amr: vec!["pwd".into(), "hwk".into()],
        acr: "aal2".into(),
        auth_time: nbf,
        iat: nbf,
        nbf,
        exp,
        jti: gateway::tokens::new_jti(nbf),
        cnf: gateway::tokens::Confirmation { x5t_s256: "x5t".into() },
        medical_reg_no: Some("123456".into()),
        test: false,
        hashes: Some(vec!["aGFzaA".into()]),
        hash_alg: Some(gateway::tokens::SHA256_OID.into()),
        num_signatures: Some(1),
    }
}

/// Writes fuzz/fixtures/token-key.p8 (if missing) and tokens signed with it.
#[test]
#[ignore = "writes fuzz/fixtures and seeds; run by hand"]
fn make_seeds() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let key = fuzz_dir().join("fixtures/token-key.p8");
    if !key.exists() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
        std::fs::write(&key, pkcs8.as_ref()).unwrap();
    }
    let dir = fuzz_dir().join("corpus/consume_jwt");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = &fuzzing::token_setup().keys;
    let now = fuzzing::NOW;
    std::fs::write(dir.join("seed-valid"), keys.sign(&claims(now - 10, now + 60)).unwrap()).unwrap();
    std::fs::write(dir.join("seed-expired"), keys.sign(&claims(now - 120, now - 60)).unwrap()).unwrap();
    std::fs::write(dir.join("seed-not-yet-valid"), keys.sign(&claims(now + 60, now + 120)).unwrap()).unwrap();
    // HS256 with alg confusion in mind: a header naming another algorithm.
    std::fs::write(dir.join("seed-hs256"), "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln").unwrap();
}
