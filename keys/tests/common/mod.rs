//! The independent oracle for every test here: the `openssl` command line.

#![allow(dead_code, reason = "each test binary uses some of these")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a failed step is a failed test")]

use std::path::Path;
use std::process::Command;

use keys::SignAlgorithm;

/// Runs `openssl ARGS` and returns (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().expect("openssl (apt-get install openssl)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Writes SubjectPublicKeyInfo DER as a PEM file.
pub fn write_spki_pem(spki: &[u8], path: &Path) {
    let pem = openssl::pkey::PKey::public_key_from_der(spki).unwrap().public_key_to_pem().unwrap();
    std::fs::write(path, pem).unwrap();
}

/// `openssl dgst -sha256 -verify PUB -signature SIG MESSAGE` with the padding of `alg`.
pub fn cli_verifies(dir: &Path, public_pem: &Path, alg: SignAlgorithm, message: &[u8], signature: &[u8]) -> bool {
    let msg = dir.join("message");
    let sig = dir.join("signature");
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let mut args = vec!["dgst", "-sha256"];
    if alg == SignAlgorithm::RsaPssSha256 {
        for option in ["rsa_padding_mode:pss", "rsa_pss_saltlen:32", "rsa_mgf1_md:sha256"] {
            args.extend(["-sigopt", option]);
        }
    }
    args.extend(["-verify", public_pem.to_str().unwrap(), "-signature", sig.to_str().unwrap(), msg.to_str().unwrap()]);
    let (ok, out) = openssl(&args);
    assert_eq!(ok, out.contains("Verified OK"), "{out}");
    ok
}

/// SHA-256 of `message`.
pub fn sha256(message: &[u8]) -> Vec<u8> {
    openssl::sha::sha256(message).to_vec()
}

/// Signs with both algorithms and checks each signature with the command line; a signature with one
/// bit flipped must not verify.
pub fn sign_and_check(backend: &keys::Backend, key: &keys::StoredKey, public_pem: &Path, dir: &Path) {
    let message = "SJ1\n1,1,1234567,13,ニンショウ診療所\n5,1,山田 太郎".as_bytes();
    for alg in SignAlgorithm::ALL {
        let signature = backend.sign_digest(key, alg, &sha256(message)).unwrap();
        assert_eq!(signature.len(), 256, "{alg:?}");
        assert!(cli_verifies(dir, public_pem, alg, message, &signature), "{alg:?} must verify");
        let mut flipped = signature.clone();
        flipped[100] ^= 0x10;
        assert!(!cli_verifies(dir, public_pem, alg, message, &flipped), "{alg:?} with a flipped bit must not verify");
        assert!(!cli_verifies(dir, public_pem, alg, b"another message", &signature), "{alg:?} over another message");
    }
}
