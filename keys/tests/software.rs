//! The software backend against the `openssl` command line.

mod common;


use common::{cli_verifies, openssl, sha256, sign_and_check, write_spki_pem};
use keys::{Backend, KeyError, SignAlgorithm, StoredKey};

#[test]
fn signatures_verify_with_the_openssl_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spki) = Backend::Software.generate_rsa("ignored", 2048).unwrap();
    assert_eq!(Backend::Software.public_key(&key).unwrap(), spki);
    let public = dir.path().join("public.pem");
    write_spki_pem(&spki, &public);
    sign_and_check(&Backend::Software, &key, &public, dir.path());
}

#[test]
fn pkcs1_equals_openssl_dgst_sign_over_the_message() {
    // PKCS#1 v1.5 is deterministic: the digest signature must be byte for byte what `openssl dgst
    // -sha256 -sign` makes from the whole message.
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = Backend::Software.generate_rsa("", 2048).unwrap();
    let StoredKey::Software { pkcs8 } = &key else { panic!() };
    let pem = openssl::pkey::PKey::private_key_from_pkcs8(pkcs8).unwrap().private_key_to_pem_pkcs8().unwrap();
    let key_file = dir.path().join("key.pem");
    let msg_file = dir.path().join("message");
    let sig_file = dir.path().join("sig");
    std::fs::write(&key_file, pem).unwrap();
    std::fs::write(&msg_file, b"<SignedInfo/>").unwrap();
    let (key_file, sig_file, msg_file) =
        (key_file.to_str().unwrap(), sig_file.to_str().unwrap(), msg_file.to_str().unwrap());
    let (ok, out) = openssl(&["dgst", "-sha256", "-sign", key_file, "-out", sig_file, msg_file]);
    assert!(ok, "{out}");
    let ours = Backend::Software.sign_digest(&key, SignAlgorithm::RsaPkcs1Sha256, &sha256(b"<SignedInfo/>")).unwrap();
    assert_eq!(ours, std::fs::read(sig_file).unwrap());
}

#[test]
fn bigger_keys_sign_too() {
    let dir = tempfile::tempdir().unwrap();
    let (key, spki) = Backend::Software.generate_rsa("", 3072).unwrap();
    let public = dir.path().join("public.pem");
    write_spki_pem(&spki, &public);
    let signature = Backend::Software.sign_digest(&key, SignAlgorithm::RsaPssSha256, &sha256(b"m")).unwrap();
    assert_eq!(signature.len(), 384);
    assert!(cli_verifies(dir.path(), &public, SignAlgorithm::RsaPssSha256, b"m", &signature));
}

#[test]
fn bad_input_is_a_clear_error() {
    let (key, _) = Backend::Software.generate_rsa("", 2048).unwrap();
    for len in [0, 20, 31, 33, 64] {
        let err = Backend::Software.sign_digest(&key, SignAlgorithm::RsaPkcs1Sha256, &vec![0; len]).unwrap_err();
        assert!(matches!(err, KeyError::DigestLength { len: l } if l == len), "{err:?}");
        assert_eq!(err.to_string(), format!("a SHA-256 digest is 32 bytes, got {len}"));
    }
    let err = Backend::Software.generate_rsa("", 1024).unwrap_err();
    assert!(matches!(err, KeyError::KeySize { bits: 1024 }), "{err:?}");
    let pkcs11_key = StoredKey::Pkcs11 { id: vec![1; 16] };
    let err = Backend::Software.sign_digest(&pkcs11_key, SignAlgorithm::RsaPkcs1Sha256, &[0; 32]).unwrap_err();
    assert_eq!(err.to_string(), "a pkcs11 key cannot be used with the software backend");
    let corrupt = StoredKey::Software { pkcs8: zeroize::Zeroizing::new(vec![0x30, 0x03, 0x02, 0x01, 0x00]) };
    let err = Backend::Software.sign_digest(&corrupt, SignAlgorithm::RsaPkcs1Sha256, &[0; 32]).unwrap_err();
    assert!(matches!(err, KeyError::BadStoredKey), "{err:?}");
    // An EC key is not a signer key.
    let p256 = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&p256).unwrap();
    let ec = openssl::pkey::PKey::from_ec_key(ec).unwrap().private_key_to_pkcs8().unwrap();
    let err = Backend::Software.public_key(&StoredKey::Software { pkcs8: ec.into() }).unwrap_err();
    assert!(matches!(err, KeyError::BadStoredKey), "{err:?}");
}
