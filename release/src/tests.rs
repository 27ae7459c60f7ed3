//! The release checks against real keys and signatures (minisign), no fakes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::sign::{self, NewKeyPair, Password};
use crate::*;

fn key() -> NewKeyPair {
    sign::generate(Password::None).unwrap()
}

const BINARY: &[u8] = b"\x7fELF pretend agent binary";

fn release(pair: &NewKeyPair, version: &str) -> (Vec<u8>, String) {
    let m = sign::manifest_for(BINARY, version, "x86_64-unknown-linux-gnu", "不具合の修正", "Bug fixes").unwrap();
    sign::sign_manifest(&pair.secret_text, Password::None, &m).unwrap()
}

fn linux() -> Target {
    "x86_64-unknown-linux-gnu".parse().unwrap()
}

#[test]
fn a_good_signature_verifies_and_the_binary_matches() {
    let pair = key();
    let (bytes, sig) = release(&pair, "1.2.3");
    let m = verify_manifest(&bytes, &sig, std::slice::from_ref(&pair.public)).unwrap();
    assert_eq!(m.version, Version::new(1, 2, 3));
    assert_eq!(m.target, linux());
    assert_eq!(m.size, BINARY.len() as u64);
    assert_eq!(m.notes.ja, "不具合の修正");
    check_binary(&m, BINARY).unwrap();
    // The file forms round-trip: minisign.pub text and the one-line key.
    assert_eq!(PublicKey::decode(&pair.public_text).unwrap(), pair.public);
    assert_eq!(PublicKey::from_base64(pair.public.to_base64()).unwrap().key_id(), pair.public.key_id());
    assert_eq!(signature_key_id(&sig), Some(pair.public.key_id()));
}

#[test]
fn a_tampered_manifest_is_a_bad_signature() {
    let pair = key();
    let (bytes, sig) = release(&pair, "1.2.3");
    let tampered = String::from_utf8(bytes.clone()).unwrap().replace("1.2.3", "9.2.3");
    let err = verify_manifest(tampered.as_bytes(), &sig, std::slice::from_ref(&pair.public)).unwrap_err();
    assert_eq!(err, Refusal::BadSignature { key_id: pair.public.key_id() });
    // One byte more (a trailing newline) is other bytes too.
    let mut longer = bytes;
    longer.push(b'\n');
    let err = verify_manifest(&longer, &sig, std::slice::from_ref(&pair.public)).unwrap_err();
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn a_tampered_trusted_comment_is_a_bad_signature() {
    let pair = key();
    let (bytes, sig) = release(&pair, "1.2.3");
    let sig = sig.replace("ninsho-agent 1.2.3", "ninsho-agent 7.7.7");
    let err = verify_manifest(&bytes, &sig, std::slice::from_ref(&pair.public)).unwrap_err();
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn another_key_is_an_unknown_key() {
    let (signer, other) = (key(), key());
    let (bytes, sig) = release(&signer, "1.2.3");
    let err = verify_manifest(&bytes, &sig, std::slice::from_ref(&other.public)).unwrap_err();
    assert_eq!(err, Refusal::UnknownKey { key_id: signer.public.key_id() });
    assert!(err.to_string().contains(&signer.public.key_id().to_string()), "{err}");
    assert_eq!(verify_manifest(&bytes, &sig, &[]).unwrap_err().code(), "unknown_key");
}

#[test]
fn a_signature_under_a_known_key_id_with_another_key_is_a_bad_signature() {
    // Someone re-labels a signature of their own key with a trusted key's id.
    let (trusted, attacker) = (key(), key());
    let (bytes, sig) = release(&attacker, "1.2.3");
    let mut lines: Vec<String> = sig.lines().map(str::to_owned).collect();
    let mut raw = STANDARD.decode(&lines[1]).unwrap();
    raw[2..10].copy_from_slice(&trusted.public.key_id().0);
    lines[1] = STANDARD.encode(&raw);
    let relabelled = lines.join("\n") + "\n";
    let err = verify_manifest(&bytes, &relabelled, std::slice::from_ref(&trusted.public)).unwrap_err();
    assert_eq!(err, Refusal::BadSignature { key_id: trusted.public.key_id() });
}

#[test]
fn the_second_slot_verifies_and_says_so() {
    let (old, new) = (key(), key());
    let slots = TrustedKeys::from_slots(old.public.to_base64(), new.public.to_base64()).unwrap();
    let (bytes, sig) = release(&new, "2.0.0");
    let m = verify_manifest(&bytes, &sig, slots.as_slice()).unwrap();
    assert_eq!(m.version, Version::new(2, 0, 0));
    assert_eq!(slots.slot_of(new.public.key_id()), Some(Slot::Secondary));
    assert_eq!(slots.slot_of(old.public.key_id()), Some(Slot::Primary));
    // The primary alone does not trust the new key.
    let primary_only = TrustedKeys::from_slots(old.public.to_base64(), "").unwrap();
    assert_eq!(verify_manifest(&bytes, &sig, primary_only.as_slice()).unwrap_err().code(), "unknown_key");
}

#[test]
fn slots_refuse_nothing_twice_and_garbage() {
    let pair = key();
    let b64 = pair.public.to_base64();
    assert_eq!(TrustedKeys::from_slots("", b64).unwrap_err(), KeyError::None);
    assert!(matches!(TrustedKeys::from_slots(b64, b64).unwrap_err(), KeyError::Duplicate(_)));
    assert!(matches!(TrustedKeys::from_slots("RWSnot a key", "").unwrap_err(), KeyError::Malformed(_)));
    // A secret key's base64 is not a public key.
    let secret_line = pair.secret_text.lines().nth(1).unwrap();
    assert!(matches!(TrustedKeys::from_slots(secret_line, "").unwrap_err(), KeyError::Malformed(_)));
    assert!(matches!(PublicKey::parse_list(&[b64, b64], 4).unwrap_err(), KeyError::Duplicate(_)));
    assert!(matches!(PublicKey::parse_list::<&str>(&[], 4).unwrap_err(), KeyError::None));
}

#[test]
fn malformed_signature_text_is_refused_as_such() {
    let pair = key();
    let (bytes, sig) = release(&pair, "1.2.3");
    let trusted = std::slice::from_ref(&pair.public);
    for bad in [
        String::new(),
        "untrusted comment: x\n".to_owned(),
        "untrusted comment: x\nnot base64!!\ntrusted comment: y\nAAAA\n".to_owned(),
        sig.lines().take(2).collect::<Vec<_>>().join("\n"),
        // The trusted comment line without its prefix.
        sig.replace("trusted comment: ", "comment: "),
        "x".repeat(MAX_SIGNATURE_BYTES + 1),
    ] {
        let err = verify_manifest(&bytes, &bad, trusted).unwrap_err();
        assert_eq!(err.code(), "malformed_signature", "{bad:?}: {err}");
    }
    // A legacy (non-prehashed, "Ed") signature is refused, not verified.
    let mut lines: Vec<String> = sig.lines().map(str::to_owned).collect();
    let mut raw = STANDARD.decode(&lines[1]).unwrap();
    raw[1] = b'd';
    lines[1] = STANDARD.encode(&raw);
    let err = verify_manifest(&bytes, &lines.join("\n"), trusted).unwrap_err();
    assert_eq!(err.code(), "malformed_signature");
}

#[test]
fn signed_garbage_is_a_malformed_manifest() {
    let pair = key();
    let trusted = std::slice::from_ref(&pair.public);
    let sign = |text: &str| sign::sign_bytes(&pair.secret_text, Password::None, text.as_bytes(), "t").unwrap();
    let good = r#"{"version":"1.0.0","target":"x86_64-pc-windows-msvc","sha256":"0000000000000000000000000000000000000000000000000000000000000000","size":1,"notes":{"ja":"あ","en":"a"}}"#;
    assert!(verify_manifest(good.as_bytes(), &sign(good), trusted).is_ok());
    for bad in [
        "not json".to_owned(),
        good.replace(r#""size":1"#, r#""size":1,"extra":true"#),
        good.replace(r#""size":1"#, r#""size":1,"size":2"#),
        good.replace("1.0.0", "1.0"),
        good.replace("1.0.0", "v1.0.0"),
        good.replace("1.0.0", "1.0.0-rc.1"),
        good.replace("1.0.0", "1.0.0+build"),
        good.replace("x86_64-pc-windows-msvc", "../../etc"),
        good.replace("x86_64-pc-windows-msvc", "X86_64-PC-WINDOWS-MSVC"),
        good.replace("00000000000000000000000000000000", "0000000000000000000000000000000"),
        good.replace("0000000000000000000000000000000000000000000000000000000000000000", &"A".repeat(64)),
        good.replace(r#""size":1"#, r#""size":0"#),
        good.replace(r#""ja":"あ""#, r#""ja":"  ""#),
        good.replace(r#","en":"a""#, ""),
        good.replace(r#""en":"a""#, r#""en":"a\u0007""#),
    ] {
        let err = verify_manifest(bad.as_bytes(), &sign(&bad), trusted).unwrap_err();
        assert_eq!(err.code(), "malformed_manifest", "{bad}: {err}");
    }
}

#[test]
fn size_and_hash_mismatches_are_refused() {
    let pair = key();
    let (bytes, sig) = release(&pair, "1.2.3");
    let m = verify_manifest(&bytes, &sig, std::slice::from_ref(&pair.public)).unwrap();
    let mut longer = BINARY.to_vec();
    longer.push(0);
    assert_eq!(check_binary(&m, &longer).unwrap_err(), Refusal::SizeMismatch { expected: m.size, actual: m.size + 1 });
    assert_eq!(check_binary(&m, &BINARY[1..]).unwrap_err().code(), "size_mismatch");
    let mut flipped = BINARY.to_vec();
    flipped[0] ^= 1;
    assert_eq!(check_binary(&m, &flipped).unwrap_err().code(), "hash_mismatch");
    // Streaming: refused as soon as too much arrives, and the whole binary in pieces is fine.
    let mut stream = BinaryCheck::new(&m);
    stream.update(BINARY).unwrap();
    assert_eq!(stream.update(b"x").unwrap_err().code(), "size_mismatch");
    let mut stream = BinaryCheck::new(&m);
    for chunk in BINARY.chunks(3) {
        stream.update(chunk).unwrap();
    }
    stream.finish().unwrap();
}

#[test]
fn an_update_must_be_newer_and_for_this_target() {
    let pair = key();
    let slots = TrustedKeys::from_slots(pair.public.to_base64(), "").unwrap();
    let (bytes, sig) = release(&pair, "1.2.3");
    let m = verify_update(&bytes, &sig, &slots, &linux(), &Version::new(1, 2, 2)).unwrap();
    assert_eq!(m.version, Version::new(1, 2, 3));
    for current in [Version::new(1, 2, 3), Version::new(1, 10, 0)] {
        let err = verify_update(&bytes, &sig, &slots, &linux(), &current).unwrap_err();
        assert_eq!(err.code(), "not_newer", "{current}");
    }
    let windows: Target = "x86_64-pc-windows-msvc".parse().unwrap();
    let err = verify_update(&bytes, &sig, &slots, &windows, &Version::new(0, 1, 0)).unwrap_err();
    assert_eq!(err.code(), "wrong_target");
}

#[test]
fn an_encrypted_key_signs_only_with_its_password() {
    let pair = sign::generate(Password::Given("correct horse".to_owned())).unwrap();
    assert!(sign::needs_password(&pair.secret_text).unwrap());
    let m = sign::manifest_for(BINARY, "1.0.0", "x86_64-unknown-linux-gnu", "あ", "a").unwrap();
    assert!(sign::sign_manifest(&pair.secret_text, Password::Given("wrong".to_owned()), &m).is_err());
    assert!(sign::sign_manifest(&pair.secret_text, Password::None, &m).is_err());
    let (bytes, sig) = sign::sign_manifest(&pair.secret_text, Password::Given("correct horse".to_owned()), &m).unwrap();
    verify_manifest(&bytes, &sig, std::slice::from_ref(&pair.public)).unwrap();
    assert!(!sign::needs_password(&key().secret_text).unwrap());
}
