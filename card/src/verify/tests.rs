//! Tests with generated HPKI-like (root → intermediate → card) and JPKI-like (CA → card) PKIs,
//! RSA-2048 throughout, hcRole encoded byte for byte like the real MEDIS certificate.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, RevokedCertParams, RsaKeySize, SerialNumber, SigningKey,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::CardKind;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const ORIGIN: &str = "https://gateway.clinic.example:8443";
const CHALLENGE: [u8; 32] = [7; 32];

fn rsa() -> KeyPair {
    KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap()
}

/// The extnValue of subjectDirectoryAttributes with one hcRole, laid out exactly as on the real
/// MEDIS certificate (docs/cards.md §2.5); short-form lengths, so roles up to 89 bytes.
fn hc_role_ext(role: &str) -> Vec<u8> {
    let n = role.len();
    assert!(n + 38 < 0x80);
    let mut v = vec![0x30, (n + 38) as u8, 0x30, (n + 36) as u8];
    v.extend([0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01]);
    v.extend([
        0x31,
        (n + 26) as u8,
        0x31,
        (n + 24) as u8,
        0x30,
        (n + 22) as u8,
    ]);
    v.extend([0xA0, (n + 20) as u8, 0x31, (n + 18) as u8]);
    v.extend([
        0xA0, 0x0C, 0x06, 0x0A, 0x2A, 0x83, 0x08, 0x86, 0x91, 0x0F, 0x01, 0x06, 0x01, 0x01,
    ]);
    v.extend([0xA2, (n + 2) as u8, 0x0C, n as u8]);
    v.extend(role.as_bytes());
    v
}

struct Ca {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str, serial: u64, parent: Option<&Ca>, key: KeyPair) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.serial_number = Some(SerialNumber::from(serial));
    p.distinguished_name.push(DnType::CountryName, "JP");
    p.distinguished_name.push(DnType::OrganizationName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = NOW - Duration::days(3650);
    p.not_after = NOW + Duration::days(3650);
    p.key_identifier_method = KeyIdMethod::Sha256;
    // Issued CAs name their issuer's key, as RFC 5280 §4.2.1.1 requires (and strict validation checks).
    p.use_authority_key_identifier_extension = parent.is_some();
    let der = match parent {
        None => p.self_signed(&key).unwrap().der().to_vec(),
        Some(parent) => p.signed_by(&key, &parent.issuer).unwrap().der().to_vec(),
    };
    Ca {
        der,
        issuer: Issuer::new(p, key),
    }
}

/// How an end-entity certificate differs from a good card certificate.
#[derive(Clone)]
struct Leaf {
    role: Option<&'static str>,
    serial: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_usages: Vec<KeyUsagePurpose>,
    eku: Vec<ExtendedKeyUsagePurpose>,
    /// certificatePolicies OIDs; `None`: the authentication policy of the issuer's card kind.
    policies: Option<Vec<&'static str>>,
}

/// Test policy OIDs under the real authentication and signing arcs (docs/cards.md).
const HPKI_AUTH_TEST: &str = "1.2.392.100495.1.5.1.2.1.1";
const HPKI_SIGN_TEST: &str = "1.2.392.100495.1.5.1.1.0.1";
const JPKI_AUTH: &str = "1.2.392.200149.8.5.1.3.30";

/// certificatePolicies (2.5.29.32) with bare PolicyInformation entries, marked critical as real HPKI
/// and JPKI certificates mark it. Hand-made DER: short forms only, for test OIDs.
fn policies_ext(oids: &[&str]) -> CustomExtension {
    let mut infos = Vec::new();
    for oid in oids {
        let arcs: Vec<u64> = oid.split('.').map(|a| a.parse().unwrap()).collect();
        let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut chunk = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                chunk.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            chunk.reverse();
            body.extend(chunk);
        }
        infos.extend([0x30, (body.len() + 2) as u8, 0x06, body.len() as u8]);
        infos.extend(body);
    }
    let mut value = vec![0x30, infos.len() as u8];
    value.extend(infos);
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 32], value);
    ext.set_criticality(true);
    ext
}

impl Leaf {
    fn good(serial: u64) -> Leaf {
        Leaf {
            role: None,
            serial,
            not_before: NOW - Duration::days(30),
            not_after: NOW + Duration::days(365),
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            eku: Vec::new(),
            policies: None,
        }
    }
    fn role(mut self, role: &'static str) -> Leaf {
        self.role = Some(role);
        self
    }
    fn issue(&self, by: &Ca) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "JP");
        p.distinguished_name
            .push(DnType::CommonName, format!("CARD-{:04}", self.serial));
        p.serial_number = Some(SerialNumber::from(self.serial));
        p.not_before = self.not_before;
        p.not_after = self.not_after;
        p.key_usages = self.key_usages.clone();
        p.extended_key_usages = self.eku.clone();
        p.use_authority_key_identifier_extension = true;
        if let Some(role) = self.role {
            p.custom_extensions = vec![CustomExtension::from_oid_content(
                &[2, 5, 29, 9],
                hc_role_ext(role),
            )];
        }
        let policies = self.policies.clone().unwrap_or_else(|| {
            if std::ptr::eq(by, &pki().jpki_ca) { vec![JPKI_AUTH] } else { vec![HPKI_AUTH_TEST] }
        });
        if !policies.is_empty() {
            p.custom_extensions.push(policies_ext(&policies));
        }
        p.signed_by(&pki().card_key, &by.issuer)
            .unwrap()
            .der()
            .to_vec()
    }
}

struct Pki {
    card_key: KeyPair,
    hpki_root: Ca,
    hpki_int: Ca,
    jpki_ca: Ca,
    other_root: Ca,
}

/// Key generation is the slow part: one PKI for all tests.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let hpki_root = ca("MHLW-like HPKI Root", 1, None, rsa());
        let hpki_int = ca("MEDIS-like HPKI Auth CA", 2, Some(&hpki_root), rsa());
        Pki {
            card_key: rsa(),
            jpki_ca: ca("JPKI-like auth CA", 3, None, rsa()),
            other_root: ca("Someone else", 4, None, rsa()),
            hpki_root,
            hpki_int,
        }
    })
}

fn crl(by: &Ca, revoked: &[u64], next_update: OffsetDateTime) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: NOW - Duration::days(1),
        next_update,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: NOW - Duration::days(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&by.issuer)
    .unwrap()
    .der()
    .to_vec()
}

fn fresh() -> OffsetDateTime {
    NOW + Duration::days(6)
}

/// HPKI anchors: the root, with the root's ARL and the intermediate's CRL.
fn hpki_store(
    revoked_cards: &[u64],
    revoked_cas: &[u64],
    next_update: OffsetDateTime,
) -> TrustStore {
    let p = pki();
    TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.hpki_root.der.clone(),
            revocation: Revocation::Crl(vec![
                crl(&p.hpki_root, revoked_cas, fresh()),
                crl(&p.hpki_int, revoked_cards, next_update),
            ]),
            policies: default_policies(CardKind::Hpki),
        }],
    )
}

fn jpki_store() -> TrustStore {
    TrustStore::new(
        CardKind::Jpki,
        [Anchor {
            certificate: pki().jpki_ca.der.clone(),
            revocation: Revocation::None,
            policies: default_policies(CardKind::Jpki),
        }],
    )
}

fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"ninsho.card.auth","card":"{kind}","challenge":"{}","origin":"{origin}"}}"#,
        URL_SAFE_NO_PAD.encode(challenge)
    )
    .into_bytes()
}

fn response(cert: Vec<u8>, chain: Vec<Vec<u8>>, client_data: Vec<u8>) -> CardResponse {
    CardResponse {
        signature: pki().card_key.sign(&client_data).unwrap(),
        client_data,
        certificate: cert,
        chain,
    }
}

fn expected(kind: CardKind) -> Expected<'static> {
    Expected {
        kind,
        challenge: &CHALLENGE,
        origin: ORIGIN,
    }
}

fn hpki_login(
    leaf: &Leaf,
    store: &TrustStore,
    policy: &Policy,
) -> Result<VerifiedCard, VerifyError> {
    let p = pki();
    let r = response(
        leaf.issue(&p.hpki_int),
        vec![p.hpki_int.der.clone()],
        client_data("hpki", &CHALLENGE, ORIGIN),
    );
    verify(&r, &expected(CardKind::Hpki), store, policy, NOW)
}

fn doctor() -> Leaf {
    Leaf::good(101).role(MEDICAL_DOCTOR)
}

#[test]
fn hpki_doctor_through_intermediate_with_crls() {
    let leaf = doctor();
    let cert = leaf.issue(&pki().hpki_int);
    let v = hpki_login(
        &leaf,
        &hpki_store(&[999], &[998], fresh()),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(v.kind, CardKind::Hpki);
    assert_eq!(v.hc_role.as_deref(), Some("Medical Doctor"));
    assert!(v.revocation_checked);
    assert_eq!(v.cert.serial_hex, "65");
    assert_eq!(v.cert.cert_sha256, sha256_hex(&cert));
    assert_eq!(v.anchor_sha256, sha256_hex(&pki().hpki_root.der));
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    assert_eq!(v.cert.spki_sha256, sha256_hex(parsed.public_key().raw));
    assert_eq!(v.cert.issuer, "C=JP, O=MEDIS-like HPKI Auth CA");
    assert_eq!(v.cert.issuer_sha256, sha256_hex(parsed.issuer().as_raw()));
    assert_eq!(v.cert.not_after, leaf.not_after.replace_nanosecond(0).unwrap());
    // The role extension is byte for byte the real card's.
    let ext = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.9")
        .unwrap();
    assert_eq!(ext.value, hc_role_ext("Medical Doctor"));
    assert_eq!(ext.value.len(), 54);
}

#[test]
fn the_card_key_read_before_verification_is_the_verified_one() {
    let leaf = doctor();
    let cert = leaf.issue(&pki().hpki_int);
    let v = hpki_login(&leaf, &hpki_store(&[999], &[998], fresh()), &Policy::default()).unwrap();
    let key = card_key(&cert).unwrap();
    assert_eq!(key, CardKey { issuer_sha256: v.cert.issuer_sha256, serial_hex: v.cert.serial_hex });
    // Nothing is trusted: another issuer's certificate has its own key, and bytes that are no
    // certificate, or a certificate with bytes after it, have none.
    let other = Leaf::good(101).role(MEDICAL_DOCTOR).issue(&pki().hpki_root);
    assert_ne!(card_key(&other).unwrap().issuer_sha256, key.issuer_sha256);
    assert_eq!(card_key(&cert[..cert.len() - 1]), None);
    assert_eq!(card_key(&[cert.clone(), vec![0]].concat()), None);
}

#[test]
fn hpki_intermediate_missing_or_wrong_anchor_is_untrusted() {
    let p = pki();
    let cert = doctor().issue(&p.hpki_int);
    let store = hpki_store(&[], &[], fresh());
    let r = response(
        cert.clone(),
        Vec::new(),
        client_data("hpki", &CHALLENGE, ORIGIN),
    );
    let err = verify(
        &r,
        &expected(CardKind::Hpki),
        &store,
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::UntrustedIssuer { .. }),
        "{err:?}"
    );

    let other = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.other_root.der.clone(),
            revocation: Revocation::None,
            policies: default_policies(CardKind::Hpki),
        }],
    );
    let r = response(
        cert,
        vec![p.hpki_int.der.clone()],
        client_data("hpki", &CHALLENGE, ORIGIN),
    );
    let err = verify(
        &r,
        &expected(CardKind::Hpki),
        &other,
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer");
    // No anchors at all.
    let empty = TrustStore::new(CardKind::Hpki, []);
    let err = verify(
        &r,
        &expected(CardKind::Hpki),
        &empty,
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer");
    // A JPKI store for an HPKI login.
    let err = verify(
        &r,
        &expected(CardKind::Hpki),
        &jpki_store(),
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer");
}

#[test]
fn intermediate_as_anchor_also_works() {
    let p = pki();
    let store = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.hpki_int.der.clone(),
            revocation: Revocation::Crl(vec![crl(&p.hpki_int, &[], fresh())]),
            policies: default_policies(CardKind::Hpki),
        }],
    );
    let r = response(
        doctor().issue(&p.hpki_int),
        Vec::new(),
        client_data("hpki", &CHALLENGE, ORIGIN),
    );
    let v = verify(
        &r,
        &expected(CardKind::Hpki),
        &store,
        &Policy::default(),
        NOW,
    )
    .unwrap();
    assert!(v.revocation_checked);
}

#[test]
fn hpki_roles() {
    let store = hpki_store(&[], &[], fresh());
    let pharmacist = Leaf::good(102).role("Pharmacist");
    assert_eq!(
        hpki_login(&pharmacist, &store, &Policy::default()).unwrap_err(),
        VerifyError::RoleNotAccepted {
            role: "Pharmacist".into()
        }
    );
    let both = Policy {
        accepted_roles: vec!["Medical Doctor".into(), "Pharmacist".into()],
        require_role: true,
    };
    assert_eq!(
        hpki_login(&pharmacist, &store, &both)
            .unwrap()
            .hc_role
            .as_deref(),
        Some("Pharmacist")
    );
    let none = Leaf::good(103);
    assert_eq!(
        hpki_login(&none, &store, &Policy::default()).unwrap_err(),
        VerifyError::RoleMissing
    );
    let lax = Policy {
        require_role: false,
        ..Policy::default()
    };
    assert_eq!(hpki_login(&none, &store, &lax).unwrap().hc_role, None);
    // require_role = false does not let another profession in.
    assert_eq!(
        hpki_login(&pharmacist, &store, &lax).unwrap_err().code(),
        "role_not_accepted"
    );
}

#[test]
fn validity_period() {
    let store = hpki_store(&[], &[], fresh());
    let mut expired = doctor();
    expired.not_before = NOW - Duration::days(400);
    expired.not_after = NOW - Duration::days(1);
    match hpki_login(&expired, &store, &Policy::default()).unwrap_err() {
        VerifyError::Expired { not_after } => assert_eq!(not_after, NOW - Duration::days(1)),
        e => panic!("{e:?}"),
    }
    let mut early = doctor();
    early.not_before = NOW + Duration::days(1);
    match hpki_login(&early, &store, &Policy::default()).unwrap_err() {
        VerifyError::NotYetValid { not_before } => assert_eq!(not_before, NOW + Duration::days(1)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn revocation() {
    let leaf = doctor();
    // The card itself on the intermediate's CRL.
    assert_eq!(
        hpki_login(&leaf, &hpki_store(&[101], &[], fresh()), &Policy::default()).unwrap_err(),
        VerifyError::Revoked
    );
    // The intermediate on the root's ARL.
    assert_eq!(
        hpki_login(&leaf, &hpki_store(&[], &[2], fresh()), &Policy::default()).unwrap_err(),
        VerifyError::Revoked
    );
    // A CRL past nextUpdate fails closed.
    let stale = NOW - Duration::hours(1);
    assert_eq!(
        hpki_login(&leaf, &hpki_store(&[], &[], stale), &Policy::default()).unwrap_err(),
        VerifyError::CrlStale { next_update: stale }
    );
    // Policy crl, but no CRL for the card's issuer: refused.
    let p = pki();
    let only_arl = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.hpki_root.der.clone(),
            revocation: Revocation::Crl(vec![crl(&p.hpki_root, &[], fresh())]),
            policies: default_policies(CardKind::Hpki),
        }],
    );
    assert_eq!(
        hpki_login(&leaf, &only_arl, &Policy::default()).unwrap_err(),
        VerifyError::NoCrl
    );
    // A CRL signed by someone else is not authoritative: also no CRL.
    let forged = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.hpki_root.der.clone(),
            revocation: Revocation::Crl(vec![crl(&p.other_root, &[], fresh())]),
            policies: default_policies(CardKind::Hpki),
        }],
    );
    assert_eq!(
        hpki_login(&leaf, &forged, &Policy::default()).unwrap_err(),
        VerifyError::NoCrl
    );
}

#[test]
fn jpki_with_card_chain_and_policy_none() {
    let p = pki();
    let cert = Leaf::good(201).issue(&p.jpki_ca);
    // The card returns its CA (EF 000B) as chain; it is only a path candidate.
    let r = response(
        cert.clone(),
        vec![p.jpki_ca.der.clone()],
        client_data("jpki", &CHALLENGE, ORIGIN),
    );
    let v = verify(
        &r,
        &expected(CardKind::Jpki),
        &jpki_store(),
        &Policy::default(),
        NOW,
    )
    .unwrap();
    assert!(!v.revocation_checked);
    assert_eq!(v.hc_role, None);
    // A role-less policy does not matter for JPKI, nor does a role extension.
    let r = response(cert, Vec::new(), client_data("jpki", &CHALLENGE, ORIGIN));
    assert!(
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW
        )
        .is_ok()
    );
}

#[test]
fn a_card_ca_is_never_an_anchor() {
    let p = pki();
    // A self-made CA passed in the chain does not make its certificate trusted.
    let cert = Leaf::good(202).issue(&p.other_root);
    let r = response(
        cert,
        vec![p.other_root.der.clone()],
        client_data("jpki", &CHALLENGE, ORIGIN),
    );
    let err = verify(
        &r,
        &expected(CardKind::Jpki),
        &jpki_store(),
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "untrusted_issuer");
}

#[test]
fn client_data_checks() {
    let p = pki();
    let cert = Leaf::good(203).issue(&p.jpki_ca);
    let run = |cd: Vec<u8>| {
        let r = response(cert.clone(), Vec::new(), cd);
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW,
        )
    };
    assert!(run(client_data("jpki", &CHALLENGE, ORIGIN)).is_ok());
    assert_eq!(
        run(client_data("jpki", &CHALLENGE, "https://evil.example")).unwrap_err(),
        VerifyError::OriginMismatch {
            expected: ORIGIN.into(),
            found: "https://evil.example".into()
        }
    );
    assert_eq!(
        run(client_data("jpki", &[8; 32], ORIGIN)).unwrap_err(),
        VerifyError::ChallengeMismatch
    );
    assert_eq!(
        run(client_data("hpki", &CHALLENGE, ORIGIN)).unwrap_err(),
        VerifyError::CardKindMismatch {
            expected: CardKind::Jpki,
            found: "hpki".into()
        }
    );
    assert_eq!(
        run(client_data("fido", &CHALLENGE, ORIGIN))
            .unwrap_err()
            .code(),
        "card_kind_mismatch"
    );
    let c = URL_SAFE_NO_PAD.encode(CHALLENGE);
    let typed =
        format!(r#"{{"type":"webauthn.get","card":"jpki","challenge":"{c}","origin":"{ORIGIN}"}}"#);
    assert_eq!(
        run(typed.into_bytes()).unwrap_err(),
        VerifyError::TypeMismatch
    );
    // Same meaning, other spelling: refused.
    for bad in [
        format!(
            r#"{{"type": "ninsho.card.auth","card":"jpki","challenge":"{c}","origin":"{ORIGIN}"}}"#
        ),
        format!(
            r#"{{"card":"jpki","type":"ninsho.card.auth","challenge":"{c}","origin":"{ORIGIN}"}}"#
        ),
        format!(
            r#"{{"type":"ninsho.card.auth","card":"jpki","challenge":"{c}","origin":"{ORIGIN}"}} "#
        ),
        format!(
            r#"{{"type":"ninsho.card.auth","card":"\u006apki","challenge":"{c}","origin":"{ORIGIN}"}}"#
        ),
        format!(
            r#"{{"type":"ninsho.card.auth","card":"jpki","challenge":"{c}","origin":"{ORIGIN}","x":1}}"#
        ),
        format!(r#"{{"type":"ninsho.card.auth","card":"jpki","challenge":"{c}"}}"#),
        format!(
            r#"{{"type":"ninsho.card.auth","card":"jpki","challenge":"{c}=","origin":"{ORIGIN}"}}"#
        ),
        "[]".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            run(bad.clone().into_bytes()).unwrap_err().code(),
            "client_data_malformed",
            "{bad}"
        );
    }
}

#[test]
fn signature_must_cover_these_client_data() {
    let p = pki();
    let cert = Leaf::good(204).issue(&p.jpki_ca);
    let mut r = response(cert, Vec::new(), client_data("jpki", &[9; 32], ORIGIN));
    // Signature over other client data, presented with the expected client data.
    r.client_data = client_data("jpki", &CHALLENGE, ORIGIN);
    assert_eq!(
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW
        )
        .unwrap_err(),
        VerifyError::BadSignature
    );
    r.signature.clear();
    assert_eq!(
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW
        )
        .unwrap_err(),
        VerifyError::BadSignature
    );
    r.certificate.truncate(100);
    assert_eq!(
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW
        )
        .unwrap_err()
        .code(),
        "cert_malformed"
    );
}

#[test]
fn key_usage_and_eku() {
    let p = pki();
    let run = |leaf: Leaf| {
        let r = response(
            leaf.issue(&p.jpki_ca),
            Vec::new(),
            client_data("jpki", &CHALLENGE, ORIGIN),
        );
        verify(
            &r,
            &expected(CardKind::Jpki),
            &jpki_store(),
            &Policy::default(),
            NOW,
        )
    };
    let mut signing_only = Leaf::good(205);
    signing_only.key_usages = vec![KeyUsagePurpose::ContentCommitment];
    assert_eq!(run(signing_only).unwrap_err(), VerifyError::SigningCertificate);
    let mut no_ku = Leaf::good(206);
    no_ku.key_usages.clear();
    assert_eq!(run(no_ku).unwrap_err().code(), "key_usage");
    let mut client_auth = Leaf::good(207);
    client_auth.eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
    assert!(run(client_auth).is_ok());
    let mut any = Leaf::good(208);
    any.eku = vec![
        ExtendedKeyUsagePurpose::Any,
        ExtendedKeyUsagePurpose::EmailProtection,
    ];
    assert!(run(any).is_ok());
    let mut email = Leaf::good(209);
    email.eku = vec![ExtendedKeyUsagePurpose::EmailProtection];
    assert_eq!(run(email).unwrap_err().code(), "key_usage");
}

/// Regression, fuzz target `card_finish_json` (fuzz/corpus/card_finish_json/regression-array-body):
/// serde's derived struct form also took a JSON array of the values in field order.
#[test]
fn wire_form_is_an_object_only() {
    for body in [&b"[\"\",\"\",\"\"]"[..], br#"["e30","AQID","MAA",["MAA"]]"#] {
        assert!(serde_json::from_slice::<CardResponse>(body).is_err());
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(serde_json::from_value::<CardResponse>(value).is_err());
    }
    let object = serde_json::json!({"client_data": "e30", "signature": "AQID", "certificate": "MAA", "chain": ["MAA"]});
    assert!(serde_json::from_value::<CardResponse>(object).is_ok());
}

#[test]
fn wire_form_decodes() {
    let json = r#"{"client_data":"e30","signature":"AQID","certificate":"MAA","chain":["MAA"]}"#;
    let r: CardResponse = serde_json::from_str(json).unwrap();
    assert_eq!(r.client_data, b"{}");
    assert_eq!(r.signature, [1, 2, 3]);
    assert_eq!(r.chain, vec![vec![0x30, 0]]);
    for bad in [
        r#"{"client_data":"e30=","signature":"AQID","certificate":"MAA"}"#,
        r#"{"client_data":"e30","signature":"AQ+D","certificate":"MAA"}"#,
        r#"{"client_data":"e30","signature":"AQID","certificate":"MAA","pin":"1234"}"#,
        r#"{"client_data":"e30","signature":"AQID","certificate":"MAA","chain":["MAA","MAA","MAA","MAA","MAA"]}"#,
    ] {
        assert!(serde_json::from_str::<CardResponse>(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_unusable_anchor_refuses_only_its_own_cards() {
    let p = pki();
    let good = Anchor {
        certificate: p.jpki_ca.der.clone(),
        revocation: Revocation::None,
        policies: default_policies(CardKind::Jpki),
    };
    for (broken, cards_under_it) in [
        // Not a certificate: nothing can chain to it.
        (Anchor { certificate: vec![0x30, 0x00], revocation: Revocation::None, policies: default_policies(CardKind::Jpki) }, None),
        // A CRL that does not parse: the anchor's own cards are refused, nobody else's.
        (
            Anchor {
                certificate: p.other_root.der.clone(),
                revocation: Revocation::Crl(vec![vec![0x30, 0x00]]),
                policies: default_policies(CardKind::Jpki),
            },
            Some(&p.other_root),
        ),
    ] {
        let store = TrustStore::new(CardKind::Jpki, [good.clone(), broken]);
        assert_eq!(store.problems().len(), 1);
        assert_eq!(store.problems()[0].index, 1);
        let ok = response(Leaf::good(210).issue(&p.jpki_ca), Vec::new(), client_data("jpki", &CHALLENGE, ORIGIN));
        assert!(verify(&ok, &expected(CardKind::Jpki), &store, &Policy::default(), NOW).is_ok());
        if let Some(ca) = cards_under_it {
            let mut leaf = Leaf::good(211);
            leaf.policies = Some(vec![JPKI_AUTH]);
            let r = response(leaf.issue(ca), Vec::new(), client_data("jpki", &CHALLENGE, ORIGIN));
            assert_eq!(verify(&r, &expected(CardKind::Jpki), &store, &Policy::default(), NOW).unwrap_err().code(), "anchor_unusable");
        }
    }
    // Policy crl without any CRL yet (e.g. before the first fetch): its cards are refused as
    // "no CRL"; another anchor of the kind keeps working.
    let waiting = Anchor {
        certificate: p.other_root.der.clone(),
        revocation: Revocation::Crl(Vec::new()),
        policies: default_policies(CardKind::Jpki),
    };
    let store = TrustStore::new(CardKind::Jpki, [good, waiting]);
    assert!(store.problems().is_empty());
    let mut leaf = Leaf::good(212);
    leaf.policies = Some(vec![JPKI_AUTH]);
    let r = response(leaf.issue(&p.other_root), Vec::new(), client_data("jpki", &CHALLENGE, ORIGIN));
    assert_eq!(verify(&r, &expected(CardKind::Jpki), &store, &Policy::default(), NOW).unwrap_err(), VerifyError::NoCrl);
}

#[test]
fn critical_policies_are_read_and_checked() {
    let p = pki();
    let store = hpki_store(&[], &[], fresh());
    let login = |leaf: Leaf| hpki_login(&leaf, &store, &Policy::default());
    // The default leaf carries a critical certificatePolicies extension like real cards.
    let v = login(doctor()).unwrap();
    assert_eq!(v.policies, vec![HPKI_AUTH_TEST.to_owned()]);
    // A policy outside the authentication arc: refused, naming what it found.
    let mut unknown = doctor();
    unknown.policies = Some(vec!["1.2.3.4.5"]);
    assert_eq!(login(unknown).unwrap_err(), VerifyError::PolicyNotAllowed { found: vec!["1.2.3.4.5".into()] });
    // No policy at all.
    let mut none = doctor();
    none.policies = Some(vec![]);
    assert_eq!(login(none).unwrap_err().code(), "policy_not_allowed");
    // The signing certificate's policy (even with digitalSignature set): refused as a signing certificate.
    let mut signing = doctor();
    signing.policies = Some(vec![HPKI_SIGN_TEST]);
    assert_eq!(login(signing).unwrap_err(), VerifyError::SigningCertificate);
    // An operator's explicit `any` accepts an unknown policy.
    let any = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: p.hpki_root.der.clone(),
            revocation: Revocation::None,
            policies: Policies::Any,
        }],
    );
    let mut unknown = doctor();
    unknown.policies = Some(vec!["1.2.3.4.5"]);
    assert!(hpki_login(&unknown, &any, &Policy::default()).is_ok());
}

#[test]
fn explain_reports_every_problem() {
    let p = pki();
    // Expired *and* a pharmacist *and* revoked: each step says so; the verdict is the first failure.
    let mut leaf = Leaf::good(301).role("Pharmacist");
    leaf.not_before = NOW - Duration::days(400);
    leaf.not_after = NOW - Duration::days(1);
    let cert = leaf.issue(&p.hpki_int);
    let store = hpki_store(&[301], &[], fresh());
    let report = explain(
        &cert,
        std::slice::from_ref(&p.hpki_int.der),
        &store,
        &Policy::default(),
        NOW,
    );
    let outcome = |name| {
        report
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outcome.clone())
            .unwrap()
    };
    assert_eq!(outcome(StepName::Parse), Outcome::Pass);
    assert_eq!(outcome(StepName::Chain), Outcome::Pass);
    assert!(matches!(
        outcome(StepName::Validity),
        Outcome::Fail(VerifyError::Expired { .. })
    ));
    assert_eq!(outcome(StepName::KeyUsage), Outcome::Pass);
    assert!(matches!(
        outcome(StepName::Role),
        Outcome::Fail(VerifyError::RoleNotAccepted { .. })
    ));
    assert_eq!(
        outcome(StepName::Revocation),
        Outcome::Fail(VerifyError::Revoked)
    );
    // The verdict is the login's: OpenSSL checks revocation before validity periods.
    assert_eq!(report.verdict.as_ref().unwrap_err().code(), "revoked");
    let text = report.to_string();
    assert!(text.contains("FAIL (role_not_accepted)"), "{text}");
    assert!(text.contains("FAIL (expired)"), "{text}");
    assert!(text.contains("key          RSA 2048"), "{text}");
    assert!(text.contains("policies     1.2.392.100495.1.5.1.2.1.1"), "{text}");
    assert!(text.contains("verdict: refused: revoked"), "{text}");

    // JPKI under policy none: a warning, accepted.
    let cert = Leaf::good(302).issue(&p.jpki_ca);
    let report = explain(&cert, &[], &jpki_store(), &Policy::default(), NOW);
    assert!(report.verdict.is_ok());
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name == StepName::Revocation && s.outcome == Outcome::Warn)
    );
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name == StepName::Role && s.outcome == Outcome::Skip)
    );

    // Untrusted: chain fails, revocation skipped; garbage: parse fails.
    let report = explain(
        &Leaf::good(303).issue(&p.other_root),
        &[],
        &jpki_store(),
        &Policy::default(),
        NOW,
    );
    assert!(matches!(
        report.steps.iter().find(|s| s.name == StepName::Chain).unwrap().outcome,
        Outcome::Fail(VerifyError::UntrustedIssuer { .. })
    ));
    let report = explain(b"not a cert", &[], &jpki_store(), &Policy::default(), NOW);
    assert_eq!(report.steps.len(), 1);
    assert!(report.certificate.is_none());
}

/// Real public HPKI data (devpki/fixtures/real, sources in its README): the MEDIS test signing
/// certificate under the MEDIS signing CA and the MHLW root, with the MEDIS CRL and the root's ARL of
/// the day. Critical certificatePolicies pass path validation; the CRLs are checked for every CA
/// below the root (the ARL covers CAs only, and the anchor's own revocation is not ours to check).
#[test]
fn real_medis_chain_validates_and_its_signing_certificate_is_refused_for_login() {
    let real = |f: &str| std::fs::read(format!("{}/../devpki/fixtures/real/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let signer = real("medis-test-signer.der");
    let sign_ca = real("medis-hpki-sign-ca2.der");
    let at = datetime!(2022-09-08 00:00 UTC);
    let store = |policies: Policies| {
        TrustStore::new(
            CardKind::Hpki,
            [Anchor {
                certificate: real("mhlw-hpki-root-ca-v2.der"),
                revocation: Revocation::Crl(vec![
                    real("medis-hpki-sign-ca2-2022-09-06.crl"),
                    real("mhlw-hpki-root-ca-v2-arl-2022-09-05.crl"),
                ]),
                policies,
            }],
        )
    };
    let any = store(Policies::Any);
    assert!(any.problems().is_empty(), "{:?}", any.problems());
    let path = any
        .paths()
        .validate(&signer, std::slice::from_ref(&sign_ca), at.unix_timestamp(), trust::Purpose::CardAuth)
        .unwrap();
    assert!(path.revocation_checked);
    assert_eq!(path.crls.len(), 2);
    assert_eq!(path.policies, vec!["1.2.392.100495.1.5.1.1.0.1".to_owned()]);
    // After the CRLs' nextUpdate: refused, fail closed.
    let later = datetime!(2022-09-20 00:00 UTC).unix_timestamp();
    assert_eq!(
        any.paths().validate(&signer, std::slice::from_ref(&sign_ca), later, trust::Purpose::CardAuth).unwrap_err().code(),
        "crl_stale"
    );
    // A login with it: a signing certificate, said so.
    let hpki = store(default_policies(CardKind::Hpki));
    assert_eq!(
        check_certificate(&signer, std::slice::from_ref(&sign_ca), &hpki, &Policy::default(), at).unwrap_err(),
        VerifyError::SigningCertificate
    );
    // Without the intermediate: no path.
    assert_eq!(check_certificate(&signer, &[], &any, &Policy::default(), at).unwrap_err().code(), "signing_certificate");
    assert_eq!(
        any.paths().validate(&signer, &[], at.unix_timestamp(), trust::Purpose::CardAuth).unwrap_err().code(),
        "untrusted_issuer"
    );
}

/// Real-shaped cards (devpki): an HPKI authentication certificate under the root, with the CA ARL
/// and the issuing CA's CRL only (no ARL for the root itself), and a JPKI authentication certificate;
/// their signing certificates are refused as such.
#[test]
fn real_shaped_cards_log_in_and_their_signing_certificates_do_not() {
    use devpki::cards::{CardSpec, Hpki, Jpki};
    use devpki::CrlSpec;
    let hpki = Hpki::new(NOW).unwrap();
    let card = hpki.card(&CardSpec::new(NOW)).unwrap();
    let arls = hpki.root_arls(&CrlSpec::new(NOW)).unwrap();
    let store = TrustStore::new(
        CardKind::Hpki,
        [Anchor {
            certificate: hpki.root().cert_der().to_vec(),
            revocation: Revocation::Crl(vec![arls[1].clone(), hpki.auth_ca().crl(&CrlSpec::new(NOW)).unwrap()]),
            policies: default_policies(CardKind::Hpki),
        }],
    );
    let chain = vec![hpki.auth_ca().cert_der().to_vec()];
    let v = check_certificate(&card.auth.cert_der, &chain, &store, &Policy::default(), NOW).unwrap();
    assert!(v.revocation_checked);
    assert_eq!(v.hc_role.as_deref(), Some(MEDICAL_DOCTOR));
    let sign_chain = vec![hpki.sign_ca().cert_der().to_vec()];
    assert_eq!(
        check_certificate(&card.sign.cert_der, &sign_chain, &store, &Policy::default(), NOW).unwrap_err(),
        VerifyError::SigningCertificate
    );

    let jpki = Jpki::new(NOW).unwrap();
    let card = jpki.card(&CardSpec::new(NOW)).unwrap();
    let store = TrustStore::new(
        CardKind::Jpki,
        [Anchor {
            certificate: jpki.auth_ca().cert_der().to_vec(),
            revocation: Revocation::None,
            policies: default_policies(CardKind::Jpki),
        }],
    );
    assert!(check_certificate(&card.auth.cert_der, &[], &store, &Policy::default(), NOW).is_ok());
    assert_eq!(
        check_certificate(&card.sign.cert_der, &[], &store, &Policy::default(), NOW).unwrap_err(),
        VerifyError::SigningCertificate
    );
}
