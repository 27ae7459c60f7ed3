//! In-process tests of the simulated card: the state machine without PC/SC, and the whole client
//! (`authenticate`, `detect`) driven against it for every profile.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::card::{HPKI_ATR, JPKI_ATR, JPKI_TOKEN, Profile, SimCard, SimConfig};
use super::files::SimFiles;
use crate::hpki::{self, SignStyle};
use crate::testutil::hex;
use crate::{AuthOptions, CardKind, Error, Pin, PinStatus};

fn key_and_cert(cn: &str) -> (RsaPrivateKey, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    let rsa = RsaPrivateKey::from_pkcs8_der(&key.serialize_der()).unwrap();
    (rsa, cert.der().to_vec())
}

fn card(profile: Profile) -> (SimCard, Vec<u8>) {
    let (auth_key, auth_cert) = key_and_cert("auth");
    let files = SimFiles {
        auth_cert: auth_cert.clone(),
        auth_key,
        ca_cert: Some(vec![0x30, 0x03, 0x02, 0x01, 0x07]),
        sign: None,
        sign_ca_cert: None,
    };
    let config = SimConfig {
        profile,
        files,
        pin: b"1234".to_vec(),
        sign_pin: b"SIGN1234".to_vec(),
        hpki_auth_aid: hpki::JMA_AUTH_AID.to_vec(),
    };
    (SimCard::new(config), auth_cert)
}

fn verifies(cert: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (_, cert) = X509Certificate::from_der(cert).unwrap();
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, signature)
        .is_ok()
}

fn sw(card: &mut SimCard, apdu: &str) -> String {
    let r = card.process(&hex(apdu));
    format!("{:02X} {:02X}", r[r.len() - 2], r[r.len() - 1])
}

#[test]
fn every_profile_authenticates_in_process() {
    for (profile, kind) in [
        (Profile::Jpki, CardKind::Jpki),
        (Profile::Hpki(SignStyle::CardPadded), CardKind::Hpki),
        (Profile::Hpki(SignStyle::HostPadded), CardKind::Hpki),
    ] {
        let (mut card, cert) = card(profile);
        assert_eq!(crate::detect(&mut card).unwrap(), Some(kind));
        let signed =
            crate::authenticate(&mut card, kind, &Pin::new("1234".into()), b"msg").unwrap();
        assert_eq!(signed.certificate, cert);
        assert!(verifies(&cert, b"msg", &signed.signature), "{profile:?}");
        let status = crate::pin_status(&mut card, kind, &AuthOptions::default()).unwrap();
        assert_eq!(status, PinStatus::TriesLeft(kind.pin_max_tries()));
    }
}

#[test]
fn atrs_are_well_formed_t1_and_the_jpki_one_is_a_my_number_card() {
    for atr in [&JPKI_ATR[..], &HPKI_ATR[..]] {
        assert_eq!(atr[0], 0x3B, "direct convention");
        // TCK: the XOR of T0..TCK is zero (ISO 7816-3 §8.2.5); required when T=1 is offered.
        assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0, "{atr:02X?}");
    }
    let juki = [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14];
    assert_ne!(JPKI_ATR[..], juki, "the 住基カード ATR OpenSC's table matches");
    assert_eq!(JPKI_ATR[1] & 0x0F, 10, "ten historical bytes");
}

#[test]
fn jpki_file_system() {
    let (mut card, _) = card(Profile::Jpki);
    assert_eq!(card.atr(), JPKI_ATR);
    assert_eq!(
        sw(&mut card, "00 A4 02 0C 02 00 06"),
        "6A 82",
        "no EF before the AP is selected"
    );
    assert_eq!(
        sw(&mut card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"),
        "90 00"
    );
    assert_eq!(sw(&mut card, "00 A4 02 0C 02 00 06"), "90 00");
    let token = card.process(&hex("00 B0 00 00 20"));
    assert_eq!(&token[..32], JPKI_TOKEN);
    assert_eq!(
        sw(&mut card, "00 B0 00 20 01"),
        "6B 00",
        "offset beyond EOF"
    );
    assert_eq!(sw(&mut card, "00 B0 80 00 01"), "6A 81", "SFI addressing");
    assert_eq!(
        sw(&mut card, "00 A4 02 0C 02 00 1B"),
        "90 00",
        "EF 001B exists for OpenSC"
    );
    assert_eq!(sw(&mut card, "00 20 00 80"), "63 C5");
    assert_eq!(
        sw(&mut card, "00 B0 00 00 01"),
        "69 81",
        "a PIN EF is not readable"
    );
    assert_eq!(
        sw(&mut card, "00 A4 02 0C 02 00 01"),
        "6A 82",
        "no signing certificate configured"
    );
    assert_eq!(sw(&mut card, "00 A4 02 0C 02 12 34"), "6A 82");
    assert_eq!(sw(&mut card, "00 FF 00 00"), "6D 00");
    assert_eq!(sw(&mut card, "A0 A4 00 00"), "6E 00");
    assert_eq!(sw(&mut card, "00 A4"), "67 00");
    assert_eq!(
        sw(&mut card, "00 A4 02 0C 05 00 06"),
        "67 00",
        "Lc larger than the data"
    );
}

#[test]
fn jpki_sign_needs_the_pin_and_the_key_ef() {
    let (mut card, _) = card(Profile::Jpki);
    let di = crate::crypto::sha256_digest_info(b"m");
    let sign = |card: &mut SimCard| {
        let mut cmd = hex("80 2A 00 80 33");
        cmd.extend_from_slice(&di);
        cmd.push(0);
        let r = card.process(&cmd);
        (
            r.len(),
            format!("{:02X} {:02X}", r[r.len() - 2], r[r.len() - 1]),
        )
    };
    sw(&mut card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01");
    sw(&mut card, "00 A4 02 0C 02 00 17");
    assert_eq!(sign(&mut card), (2, "69 82".into()));
    sw(&mut card, "00 A4 02 0C 02 00 18");
    assert_eq!(sw(&mut card, "00 20 00 80 04 31 32 33 34"), "90 00");
    assert_eq!(sw(&mut card, "00 20 00 80"), "90 00", "verified");
    sw(&mut card, "00 A4 02 0C 02 00 17");
    assert_eq!(sign(&mut card), (258, "90 00".into()));
    card.reset();
    sw(&mut card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01");
    sw(&mut card, "00 A4 02 0C 02 00 17");
    assert_eq!(
        sign(&mut card),
        (2, "69 82".into()),
        "reset forgets the PIN"
    );
}

#[test]
fn jpki_lock_survives_reset() {
    let (mut card, _) = card(Profile::Jpki);
    sw(&mut card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01");
    sw(&mut card, "00 A4 02 0C 02 00 18");
    assert_eq!(sw(&mut card, "00 20 00 80 04 30 30 30 30"), "63 C2");
    assert_eq!(sw(&mut card, "00 20 00 80 04 30 30 30 30"), "63 C1");
    assert_eq!(sw(&mut card, "00 20 00 80 04 30 30 30 30"), "63 C0");
    assert_eq!(sw(&mut card, "00 20 00 80 04 31 32 33 34"), "63 C0");
    card.reset();
    let err =
        crate::authenticate(&mut card, CardKind::Jpki, &Pin::new("1234".into()), b"m").unwrap_err();
    assert!(matches!(err, Error::PinLocked));
}

#[test]
fn hpki_applications_and_partial_selection() {
    let (mut card, _) = card(Profile::Hpki(SignStyle::HostPadded));
    assert_eq!(card.atr(), HPKI_ATR);
    let first = card.process(&hex("00 A4 04 00 05 E8 28 BD 08 0F 00"));
    assert_eq!(first[4..20], hpki::JMA_SIGNATURE_AID);
    let next = card.process(&hex("00 A4 04 02 05 E8 28 BD 08 0F 00"));
    assert_eq!(next[4..20], hpki::JMA_AUTH_AID);
    assert_eq!(sw(&mut card, "00 A4 04 02 05 E8 28 BD 08 0F 00"), "6A 82");
    assert_eq!(sw(&mut card, "00 A4 04 0C 03 E8 28 BC"), "6A 82");
    assert_eq!(
        sw(&mut card, "00 20 00 80"),
        "6A 86",
        "HPKI verifies with P2 88"
    );
    assert_eq!(sw(&mut card, "00 20 00 88"), "63 CF");
    assert_eq!(
        sw(&mut card, "00 22 41 B6 04 84 02 00 0D"),
        "6A 88",
        "no such key"
    );
    assert_eq!(sw(&mut card, "00 22 41 B6 02 84 00"), "6A 80");
    assert_eq!(sw(&mut card, "00 22 41 A4 04 84 02 00 0C"), "6A 86");
    let mut pso = hex("00 2A 9E 9A 00 01 00");
    pso.extend_from_slice(&[0u8; 256]);
    pso.extend_from_slice(&[0, 0]);
    let r = card.process(&pso);
    assert_eq!(r, vec![0x69, 0x85], "PSO before MSE");
    sw(&mut card, "00 22 41 B6 04 84 02 00 0C");
    assert_eq!(card.process(&pso), vec![0x69, 0x82], "PSO before VERIFY");
    assert_eq!(sw(&mut card, "00 20 00 88 04 31 32 33 34"), "90 00");
    assert_eq!(card.process(&pso), vec![0x6A, 0x80], "not a type-1 block");
    assert_eq!(sw(&mut card, "80 2A 00 80 01 00 00"), "6E 00");
}

#[test]
fn hpki_signature_application_needs_a_fresh_pin_per_signature() {
    let (sign_key, sign_cert) = key_and_cert("sign");
    let (auth_key, auth_cert) = key_and_cert("auth");
    let files = SimFiles {
        auth_cert,
        auth_key,
        ca_cert: None,
        sign: Some((sign_cert, sign_key)),
        sign_ca_cert: None,
    };
    let mut card = SimCard::new(SimConfig {
        profile: Profile::Hpki(SignStyle::CardPadded),
        files,
        pin: b"1234".to_vec(),
        sign_pin: b"5678".to_vec(),
        hpki_auth_aid: hpki::JMA_AUTH_AID.to_vec(),
    });
    let mut sign = hex("80 2A 00 80 33");
    sign.extend_from_slice(&crate::crypto::sha256_digest_info(b"m"));
    sign.push(0);
    sw(
        &mut card,
        "00 A4 04 0C 10 E8 28 BD 08 0F A0 00 00 03 91 00 00 00 00 00 01",
    );
    assert_eq!(sw(&mut card, "00 20 00 88 04 35 36 37 38"), "90 00");
    sw(&mut card, "00 A4 02 0C 02 00 0C");
    assert_eq!(card.process(&sign).len(), 258);
    assert_eq!(card.process(&sign), vec![0x69, 0x82]);
}

#[test]
fn parses_extended_apdus() {
    let (mut card, _) = card(Profile::Jpki);
    sw(&mut card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01");
    sw(&mut card, "00 A4 02 0C 02 00 06");
    let r = card.process(&hex("00 B0 00 00 00 00 20"));
    assert_eq!(r.len(), 34);
    assert_eq!(sw(&mut card, "00 A4 02 0C 00 00 02 00 0A"), "90 00");
    assert_eq!(sw(&mut card, "00 A4 02 0C 00 00 02 00"), "67 00");
}
