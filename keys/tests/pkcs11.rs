//! The PKCS#11 backend against SoftHSM2, each test in its own process with its own token store
//! (`keys::testing`), checked with the `openssl` command line and OpenSC's `pkcs11-tool`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a failed step is a failed test")]

mod common;

use std::process::Command;

use common::{cli_verifies, openssl, sha256, sign_and_check, write_spki_pem};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use keys::certificate::{DoctorSubject, SigningCa, csr_pem};
use keys::testing::{SOFTHSM2_MODULE, TOKEN_LABEL, USER_PIN, in_softhsm_process};
use keys::{Backend, KeyError, Pkcs11Backend, Pkcs11Config, SignAlgorithm, StoredKey};
use secrecy::SecretString;

fn open(config: &Pkcs11Config) -> Backend {
    Backend::Pkcs11(Pkcs11Backend::open(config).unwrap())
}

fn id(key: &StoredKey) -> Vec<u8> {
    let StoredKey::Pkcs11 { id } = key else { panic!("{key:?}") };
    id.clone()
}

#[test]
fn signatures_verify_with_the_openssl_cli() {
    let Some(hsm) = in_softhsm_process("signatures_verify_with_the_openssl_cli") else { return };
    let backend = open(&hsm.config());
    assert_eq!(backend.name(), "pkcs11");
    let (key, spki) = backend.generate_rsa("doctor-1", 2048).unwrap();
    assert_eq!(id(&key).len(), 16);
    assert_eq!(backend.public_key(&key).unwrap(), spki);
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public.pem");
    write_spki_pem(&spki, &public);
    let (ok, text) = openssl(&["pkey", "-pubin", "-in", public.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok && text.contains("Public-Key: (2048 bit)") && text.contains("65537"), "{text}");
    sign_and_check(&backend, &key, &public, dir.path());

    // A second backend on the same token (shared login) finds the key by its id alone.
    let again = open(&hsm.config());
    let by_id = StoredKey::Pkcs11 { id: id(&key) };
    let signature = again.sign_digest(&by_id, SignAlgorithm::RsaPkcs1Sha256, &sha256(b"x"));
    assert!(cli_verifies(dir.path(), &public, SignAlgorithm::RsaPkcs1Sha256, b"x", &signature.unwrap()));
}

#[test]
fn signs_from_several_threads_at_once() {
    let Some(hsm) = in_softhsm_process("signs_from_several_threads_at_once") else { return };
    let backend = open(&hsm.config());
    let (key, spki) = backend.generate_rsa("doctor-2", 2048).unwrap();
    let public = openssl::pkey::PKey::public_key_from_der(&spki).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (backend, key, public) = (&backend, &key, &public);
            scope.spawn(move || {
                for i in 0..10u8 {
                    let message = [t, i];
                    let alg = if i % 2 == 0 { SignAlgorithm::RsaPkcs1Sha256 } else { SignAlgorithm::RsaPssSha256 };
                    let signature = backend.sign_digest(key, alg, &sha256(&message)).unwrap();
                    let sha256_md = openssl::hash::MessageDigest::sha256();
                    let mut verifier = openssl::sign::Verifier::new(sha256_md, public).unwrap();
                    if alg == SignAlgorithm::RsaPssSha256 {
                        verifier.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
                        verifier.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(32)).unwrap();
                    }
                    assert!(verifier.verify_oneshot(&signature, &message).unwrap(), "thread {t} signature {i}");
                }
            });
        }
    });
}

#[test]
fn private_key_is_not_extractable() {
    let Some(hsm) = in_softhsm_process("private_key_is_not_extractable") else { return };
    let backend = open(&hsm.config());
    let (key, _) = backend.generate_rsa("doctor-3", 2048).unwrap();

    // Our own look at the object, through the module directly (the backend's login is shared).
    let ctx = Pkcs11::new(SOFTHSM2_MODULE).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN_LABEL)
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let found = session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(id(&key))]).unwrap();
    assert_eq!(found.len(), 1);
    let private = found[0];
    let info = session
        .get_attribute_info(private, &[AttributeType::PrivateExponent, AttributeType::Prime1, AttributeType::Value])
        .unwrap();
    assert!(matches!(info[0], AttributeInfo::Sensitive), "{info:?}");
    assert!(matches!(info[1], AttributeInfo::Sensitive), "{info:?}");
    assert!(!matches!(info[2], AttributeInfo::Available(_)), "{info:?}");
    let values = session.get_attributes(private, &[AttributeType::PrivateExponent, AttributeType::Value]).unwrap();
    assert!(values.is_empty(), "secret values came out: {} attributes", values.len());
    let flags = session
        .get_attributes(
            private,
            &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable, AttributeType::Token, AttributeType::Private],
        )
        .unwrap();
    for flag in flags {
        match flag {
            Attribute::Extractable(v) => assert!(!v),
            Attribute::Sensitive(v) | Attribute::AlwaysSensitive(v) | Attribute::NeverExtractable(v)
            | Attribute::Token(v) | Attribute::Private(v) => assert!(v, "{flag:?}"),
            other => panic!("{other:?}"),
        }
    }

    // The independent oracle: OpenSC's pkcs11-tool, in its own process, sees the token on disk.
    let out = Command::new("pkcs11-tool")
        .args(["--module", SOFTHSM2_MODULE, "--token-label", TOKEN_LABEL, "--login", "--pin", USER_PIN, "-O"])
        .env("SOFTHSM2_CONF", hsm.conf_path())
        .output()
        .expect("pkcs11-tool (apt-get install opensc)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let private_entry = text
        .split("Private Key Object")
        .skip(1)
        .find(|entry| entry.contains("doctor-3"))
        .unwrap_or_else(|| panic!("no private key labelled doctor-3:\n{text}"));
    let access = private_entry.lines().find(|l| l.trim_start().starts_with("Access:")).unwrap();
    assert!(access.contains("sensitive") && access.contains("never extractable"), "{access}");
    assert!(private_entry.contains(&keys_hex(&id(&key))), "{private_entry}");
    let usage = private_entry.lines().find(|l| l.trim_start().starts_with("Usage:")).unwrap();
    assert!(usage.contains("sign"), "{usage}");
}

fn keys_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn csr_and_certificate_for_a_token_key() {
    let Some(hsm) = in_softhsm_process("csr_and_certificate_for_a_token_key") else { return };
    let backend = open(&hsm.config());
    let (key, spki) = backend.generate_rsa("doctor-4", 2048).unwrap();
    let subject = DoctorSubject {
        name_romaji: "Sanjushi Kagurazaka".into(),
        name_kanji: Some("神楽坂　三十四".into()),
        organization: "NINSHO DEMO HOSPITAL".into(),
        serial: "Demo117120".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let csr = dir.path().join("req.pem");
    std::fs::write(&csr, csr_pem(&backend, &key, &subject).unwrap()).unwrap();
    let (ok, out) = openssl(&["req", "-in", csr.to_str().unwrap(), "-verify", "-noout"]);
    assert!(ok && out.contains("verify OK"), "{out}");

    // A certificate for the token's key, and a signature checked with the key taken from it.
    let now = time::macros::datetime!(2026-06-01 09:00 UTC);
    let ca = SigningCa::generate_demo(now).unwrap();
    let (from, to) = keys::certificate::hpki_validity(now, 5);
    let cert = ca.issue(&spki, &subject, from, to).unwrap();
    let cert_pem = dir.path().join("cert.pem");
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&cert_pem, openssl::x509::X509::from_der(&cert).unwrap().to_pem().unwrap()).unwrap();
    std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
    let (ca_pem, cert_pem) = (ca_pem.to_str().unwrap(), cert_pem.to_str().unwrap());
    let (ok, out) = openssl(&["verify", "-attime", "1780304400", "-CAfile", ca_pem, cert_pem]);
    assert!(ok, "{out}");
    let public = dir.path().join("from-cert.pem");
    let (ok, pem) = openssl(&["x509", "-in", cert_pem, "-noout", "-pubkey"]);
    assert!(ok, "{pem}");
    std::fs::write(&public, pem).unwrap();
    sign_and_check(&backend, &key, &public, dir.path());
}

#[test]
fn bad_input_is_a_clear_error() {
    let Some(hsm) = in_softhsm_process("bad_input_is_a_clear_error") else { return };
    // The wrong PIN first: after a good login in this process the token would be logged in already.
    let wrong = Pkcs11Config { pin: SecretString::from("9999"), ..hsm.config() };
    let err = Pkcs11Backend::open(&wrong).unwrap_err();
    assert!(matches!(err, KeyError::WrongPin { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the PKCS#11 token \"ninsho-test\" refused the user PIN");
    assert!(!format!("{err:?}").contains("9999"));

    let unknown = Pkcs11Config { token_label: "no-such-token".into(), ..hsm.config() };
    let err = Pkcs11Backend::open(&unknown).unwrap_err();
    assert_eq!(err.to_string(), "no PKCS#11 token labelled \"no-such-token\"");

    let backend = open(&hsm.config());
    // A second opener with another PIN is refused too, although the token is logged in.
    let err = Pkcs11Backend::open(&wrong).unwrap_err();
    assert!(matches!(err, KeyError::WrongPin { .. }), "{err:?}");

    let missing = StoredKey::Pkcs11 { id: vec![0xab; 16] };
    let err = backend.sign_digest(&missing, SignAlgorithm::RsaPkcs1Sha256, &[0; 32]).unwrap_err();
    assert_eq!(err.to_string(), format!("no RSA key with CKA_ID {} on the PKCS#11 token", "ab".repeat(16)));
    assert!(matches!(backend.public_key(&missing).unwrap_err(), KeyError::KeyNotFound { .. }));

    let (key, _) = backend.generate_rsa("doctor-5", 2048).unwrap();
    let err = backend.sign_digest(&key, SignAlgorithm::RsaPssSha256, &[0; 20]).unwrap_err();
    assert!(matches!(err, KeyError::DigestLength { len: 20 }), "{err:?}");
    let err = backend.generate_rsa("x", 1024).unwrap_err();
    assert!(matches!(err, KeyError::KeySize { bits: 1024 }), "{err:?}");
    let software_key = Backend::Software.generate_rsa("", 2048).unwrap().0;
    let err = backend.sign_digest(&software_key, SignAlgorithm::RsaPkcs1Sha256, &[0; 32]).unwrap_err();
    assert!(matches!(err, KeyError::WrongBackend { key: "software", backend: "pkcs11" }), "{err:?}");
}

#[test]
fn a_missing_module_is_a_clear_error() {
    let config = Pkcs11Config {
        module: "/nonexistent/libpkcs11.so".into(),
        token_label: TOKEN_LABEL.into(),
        pin: SecretString::from(USER_PIN),
    };
    let err = Pkcs11Backend::open(&config).unwrap_err();
    assert_eq!(err.to_string(), "PKCS#11 module /nonexistent/libpkcs11.so: no such file");
    // A file that is not a shared library.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.so");
    std::fs::write(&bogus, b"not a library").unwrap();
    let err = Pkcs11Backend::open(&Pkcs11Config { module: bogus, ..config }).unwrap_err();
    assert!(matches!(err, KeyError::Module { .. }) && err.to_string().contains("cannot load"), "{err}");
}
