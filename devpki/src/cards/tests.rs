//! The generated card PKIs decoded with x509-parser (layout) and checked by OpenSSL (`openssl x509`,
//! `openssl verify` with CRLs), at a fixed time.

use std::path::Path;
use std::process::Command;

use ::time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::*;
use crate::hc_role_extension;

/// 2030-01-01T00:00:00Z: every test PKI is made around this instant, and OpenSSL checks at it.
const NOW: i64 = 1_893_456_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

/// The extension with `oid` (dotted); panics if missing or repeated.
fn ext<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> &'a X509Extension<'a> {
    let found: Vec<_> = cert.extensions().iter().filter(|e| e.oid.to_id_string() == oid).collect();
    assert_eq!(found.len(), 1, "{oid}: {found:?}");
    found[0]
}

fn has_ext(cert: &X509Certificate<'_>, oid: &str) -> bool {
    cert.extensions().iter().any(|e| e.oid.to_id_string() == oid)
}

/// (policy OIDs, CPS qualifier count) of a critical certificatePolicies; panics if not critical.
fn critical_policies(cert: &X509Certificate<'_>) -> Vec<String> {
    let e = ext(cert, "2.5.29.32");
    assert!(e.critical, "certificatePolicies must be critical");
    let ParsedExtension::CertificatePolicies(policies) = e.parsed_extension() else { panic!("{e:?}") };
    for p in policies {
        let q = p.policy_qualifiers.as_ref().expect("CPS qualifier");
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].policy_qualifier_id.to_id_string(), "1.3.6.1.5.5.7.2.1");
        assert!(q[0].qualifier.starts_with(&[0x16]), "CPS is an IA5String");
    }
    policies.iter().map(|p| p.policy_id.to_id_string()).collect()
}

/// Key usage bits; panics unless the extension is critical.
fn critical_key_usage(cert: &X509Certificate<'_>) -> u16 {
    let e = ext(cert, "2.5.29.15");
    assert!(e.critical, "keyUsage must be critical");
    let ParsedExtension::KeyUsage(ku) = e.parsed_extension() else { panic!() };
    ku.flags
}

const DIGITAL_SIGNATURE: u16 = 1;
const NON_REPUDIATION: u16 = 1 << 1;
const CERT_SIGN_CRL_SIGN: u16 = (1 << 5) | (1 << 6);

fn basic_constraints_ca(cert: &X509Certificate<'_>) -> bool {
    let e = ext(cert, "2.5.29.19");
    assert!(e.critical);
    let ParsedExtension::BasicConstraints(bc) = e.parsed_extension() else { panic!() };
    bc.ca
}

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    let ParsedExtension::SubjectKeyIdentifier(id) = ext(cert, "2.5.29.14").parsed_extension() else { panic!() };
    id.0.to_vec()
}

/// (key id, issuer name, serial) of the authorityKeyIdentifier.
fn aki(cert: &X509Certificate<'_>) -> (Vec<u8>, Option<String>, Option<Vec<u8>>) {
    let ParsedExtension::AuthorityKeyIdentifier(a) = ext(cert, "2.5.29.35").parsed_extension() else { panic!() };
    let issuer = a.authority_cert_issuer.as_ref().map(|names| match names.as_slice() {
        [GeneralName::DirectoryName(n)] => n.to_string(),
        other => panic!("{other:?}"),
    });
    (a.key_identifier.as_ref().unwrap().0.to_vec(), issuer, a.authority_cert_serial.map(<[u8]>::to_vec))
}

/// Each distribution point as "dir:NAME" or "uri:URL".
fn crl_points(cert: &X509Certificate<'_>) -> Vec<String> {
    let e = ext(cert, "2.5.29.31");
    assert!(!e.critical);
    let ParsedExtension::CRLDistributionPoints(points) = e.parsed_extension() else { panic!("{e:?}") };
    points
        .iter()
        .flat_map(|p| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => names.iter().map(general_name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn general_name(n: &GeneralName<'_>) -> String {
    match n {
        GeneralName::DirectoryName(name) => format!("dir:{}", utf8_name(name)),
        GeneralName::URI(uri) => format!("uri:{uri}"),
        GeneralName::OtherName(oid, value) => format!("other:{}:{}", oid.to_id_string(), hex::encode(value)),
        other => panic!("{other:?}"),
    }
}

/// A name as "C=JP, O=…" with UTF8String values readable (x509-parser's Display escapes them).
fn utf8_name(name: &X509Name<'_>) -> String {
    name.iter_attributes()
        .map(|a| {
            let short = match a.attr_type().to_id_string().as_str() {
                "2.5.4.6" => "C",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.3" => "CN",
                "2.5.4.5" => "serialNumber",
                other => panic!("{other}"),
            };
            format!("{short}={}", a.as_str().unwrap())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let e = ext(cert, "2.5.29.17");
    assert!(!e.critical);
    let ParsedExtension::SubjectAlternativeName(san) = e.parsed_extension() else { panic!("{e:?}") };
    san.general_names.iter().map(general_name).collect()
}

fn hc_role_value(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    has_ext(cert, "2.5.29.9").then(|| {
        let e = ext(cert, "2.5.29.9");
        assert!(!e.critical, "subjectDirectoryAttributes is not critical on real cards");
        e.value.to_vec()
    })
}

fn rsa_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    match cert.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => Some(rsa.key_size()),
        _ => None,
    }
}

#[test]
fn names_encode_the_same_through_rcgen_and_by_hand() {
    let hpki = Hpki::new(now()).unwrap();
    let jpki = Jpki::new(now()).unwrap();
    for ca in [hpki.root(), hpki.sign_ca(), hpki.auth_ca(), jpki.auth_ca(), jpki.sign_ca()] {
        let cert = parse(ca.cert_der());
        assert_eq!(cert.subject().as_raw(), ca.name.der().unwrap().as_slice());
        assert_eq!(cert.issuer().as_raw(), ca.issuer_name.der().unwrap().as_slice());
    }
    // Two OUs stay two RDNs in order, as in the MHLW and J-LIS names.
    assert_eq!(
        utf8_name(parse(hpki.root().cert_der()).subject()),
        "C=JP, O=Ninsho Test Ministry of Health-like, OU=Ninsho Test Director-General for Policy Planning, OU=Ninsho Test HPKI Root CA V2"
    );
    assert!(Name::new(&[(Attr::C, "日本")]).der().is_err());
    assert!(Name::new(&[(Attr::C, "日本")]).rcgen().is_err());
}

#[test]
fn hpki_hierarchy_has_the_real_layout() {
    let hpki = Hpki::new(now()).unwrap();
    let root = parse(hpki.root().cert_der());
    let sign_ca = parse(hpki.sign_ca().cert_der());
    let auth_ca = parse(hpki.auth_ca().cert_der());

    // Root: self-signed, C/O/OU/OU, no policies, the AKI names itself.
    assert_eq!(root.subject().as_raw(), root.issuer().as_raw());
    assert!(basic_constraints_ca(&root));
    assert_eq!(critical_key_usage(&root), CERT_SIGN_CRL_SIGN);
    assert!(!has_ext(&root, "2.5.29.32"));
    let root_ski = ski(&root);
    assert_eq!(root_ski.len(), 20);
    assert_eq!(aki(&root), (root_ski.clone(), Some(root.subject().to_string()), Some(root.raw_serial().to_vec())));
    assert_eq!(
        alt_names(&root),
        ["dir:C=JP, O=Ninsho Test 厚生労働省相当（テスト）, OU=政策統括官（テスト）, OU=Ninsho Test ＨＰＫＩルート認証局Ｖ２（テスト）"]
    );
    let root_dn = utf8_name(root.subject());
    assert_eq!(
        crl_points(&root),
        [format!("dir:{root_dn}, CN=RARL"), "uri:http://hpki.ninsho-test.example/repository/rlist/rarl2.crl".into()]
    );

    // MEDIS-like CAs: critical CA policy, AKI = root key id + root name + root serial.
    for (ca, cn, policy) in [
        (&sign_ca, "HPKI-01-NinshoTestSignCA2-forNonRepudiation", HPKI_SIGN_CA_POLICY),
        (&auth_ca, "HPKI-01-NinshoTestAuthCA2-forAuthentication-forIndividual", HPKI_AUTH_CA_POLICY),
    ] {
        assert_eq!(utf8_name(ca.subject()), format!("C=JP, O=Ninsho Test MEDIS-like, OU=Ninsho Test HPKI CA, CN={cn}"));
        assert_eq!(ca.issuer().as_raw(), root.subject().as_raw());
        assert!(basic_constraints_ca(ca));
        assert_eq!(critical_key_usage(ca), CERT_SIGN_CRL_SIGN);
        assert_eq!(critical_policies(ca), [policy]);
        assert_eq!(aki(ca), (root_ski.clone(), Some(root.subject().to_string()), Some(root.raw_serial().to_vec())));
        assert_eq!(
            crl_points(ca),
            [format!("dir:{root_dn}, CN=SARL"), "uri:http://hpki.ninsho-test.example/repository/rlist/sarl2.crl".into()]
        );
        assert!(!has_ext(ca, "2.5.29.17"));
        assert_eq!(rsa_bits(ca), Some(2048));
    }

    // End entities.
    let spec = CardSpec::new(now()).id("Test117120");
    let card = hpki.card(&spec).unwrap();
    let auth = parse(&card.auth.cert_der);
    let sign = parse(&card.sign.cert_der);
    assert_eq!(card.auth_ca, hpki.auth_ca().cert_der());
    assert_eq!(card.sign_ca, hpki.sign_ca().cert_der());
    for (cert, ca, key_usage, policy, crl) in [
        (&auth, &auth_ca, DIGITAL_SIGNATURE, HPKI_AUTH_POLICY, "uri:http://cert.ninsho-test.example/auth/crl-auth2.crl"),
        (&sign, &sign_ca, NON_REPUDIATION, HPKI_SIGN_POLICY, "uri:http://cert.ninsho-test.example/sign/crl-sign2.crl"),
    ] {
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        assert_eq!(utf8_name(cert.subject()), "C=JP, O=NINSHO TEST CLINIC, CN=YAMADA TARO, serialNumber=Test117120");
        assert_eq!(alt_names(cert), ["dir:C=JP, O=ニンショウテスト内科クリニック, CN=山田　太郎, serialNumber=Test117120"]);
        assert_eq!(critical_key_usage(cert), key_usage);
        assert_eq!(critical_policies(cert), [policy]);
        assert_eq!(crl_points(cert), [crl]);
        assert_eq!(aki(cert), (ski(ca), Some(root.subject().to_string()), Some(ca.raw_serial().to_vec())));
        assert_eq!(ski(cert).len(), 20);
        assert!(!has_ext(cert, "2.5.29.19"), "no basicConstraints on real HPKI end entities");
        assert!(!has_ext(cert, "2.5.29.37"), "no extendedKeyUsage on real HPKI end entities");
        assert_eq!(hc_role_value(cert).unwrap(), hc_role_extension(MEDICAL_DOCTOR).content());
        assert_eq!(rsa_bits(cert), Some(2048));
        assert_eq!(cert.validity().not_before.timestamp(), NOW - 86_400);
        assert_eq!(cert.validity().not_after.timestamp(), NOW + 5 * 365 * 86_400);
    }
    assert_ne!(card.auth.serial, card.sign.serial);
    assert_eq!(cert_serial(&card.auth.cert_der), card.auth.serial);
}

fn cert_serial(der: &[u8]) -> Vec<u8> {
    parse(der).raw_serial().iter().copied().skip_while(|&b| b == 0).collect()
}

#[test]
fn jpki_cas_and_cards_have_the_real_layout() {
    let jpki = Jpki::new(now()).unwrap();
    for (ca, purpose, kanji) in
        [(jpki.auth_ca(), "user authentication", "利用者証明用"), (jpki.sign_ca(), "digital signature", "署名用")]
    {
        let cert = parse(ca.cert_der());
        let dn = format!(
            "C=JP, O=Ninsho Test JPKI, OU=JPKI for {purpose}, OU=Ninsho Test Agency for Local Authority Information Systems"
        );
        assert_eq!(utf8_name(cert.subject()), dn);
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
        assert!(basic_constraints_ca(&cert));
        assert_eq!(critical_key_usage(&cert), CERT_SIGN_CRL_SIGN);
        assert_eq!(
            alt_names(&cert),
            [format!(
                "dir:C=JP, O=公的個人認証サービス（Ninsho Test）, OU=公的個人認証サービス{kanji}（テスト）, OU=地方公共団体情報システム機構相当（Ninsho Test）"
            )]
        );
        assert_eq!(crl_points(&cert), [format!("dir:{dn}")], "a directory entry only, no URL");
        assert!(!has_ext(&cert, "2.5.29.35"), "J-LIS CAs have no authorityKeyIdentifier");
        assert!(!has_ext(&cert, "2.5.29.32"));
        assert_eq!(ski(&cert).len(), 20);
    }
    let card = jpki.card(&CardSpec::new(now())).unwrap();
    let auth = parse(&card.auth.cert_der);
    let sign = parse(&card.sign.cert_der);
    let auth_ca = parse(jpki.auth_ca().cert_der());
    let sign_ca = parse(jpki.sign_ca().cert_der());
    for (cert, ca, key_usage, policy) in
        [(&auth, &auth_ca, DIGITAL_SIGNATURE, JPKI_AUTH_POLICY), (&sign, &sign_ca, NON_REPUDIATION, JPKI_SIGN_POLICY)]
    {
        let subject = utf8_name(cert.subject());
        let id = subject.strip_prefix("C=JP, CN=").unwrap();
        assert!(id.len() == 21 && id.starts_with("NT"), "opaque identifier {id:?}");
        assert_eq!(critical_key_usage(cert), key_usage);
        assert_eq!(critical_policies(cert), [policy]);
        assert_eq!(crl_points(cert), [format!("dir:{}", utf8_name(ca.subject()))]);
        assert_eq!(aki(cert), (ski(ca), None, None));
        assert!(!has_ext(cert, "2.5.29.9"), "no hcRole on JPKI");
    }
    assert!(!has_ext(&auth, "2.5.29.17"), "the user-authentication certificate carries no personal data");
    // value [0] EXPLICIT UTF8String
    let name = hex::encode([&[0xA0, 17, 0x0C, 15][..], "山田　太郎".as_bytes()].concat());
    assert_eq!(alt_names(&sign), [format!("other:{JPKI_NAME_OTHER_NAME}:{name}")]);
    assert_ne!(utf8_name(auth.subject()), utf8_name(sign.subject()));
}

#[test]
fn knobs_for_negative_tests() {
    let hpki = Hpki::new(now()).unwrap();
    let jpki = Jpki::new(now()).unwrap();
    let spec = CardSpec::new(now());

    let unknown = hpki.auth_cert(&spec.clone().policy(UNKNOWN_POLICY)).unwrap();
    assert_eq!(critical_policies(&parse(&unknown.cert_der)), [UNKNOWN_POLICY]);
    let unknown = jpki.auth_cert(&spec.clone().policy(UNKNOWN_POLICY)).unwrap();
    assert_eq!(critical_policies(&parse(&unknown.cert_der)), [UNKNOWN_POLICY]);
    assert!(matches!(hpki.auth_cert(&spec.clone().policy("not.an.oid")), Err(PkiError::Oid(_))));

    let staff = hpki.auth_cert(&spec.clone().role(None)).unwrap();
    assert_eq!(hc_role_value(&parse(&staff.cert_der)), None);
    let pharmacist = hpki.auth_cert(&spec.clone().role(Some(PHARMACIST))).unwrap();
    assert_eq!(hc_role_value(&parse(&pharmacist.cert_der)).unwrap(), hc_role_extension(PHARMACIST).content());

    let ec = hpki.auth_cert(&spec.clone().key(KeyAlg::EcP256)).unwrap();
    assert_eq!(rsa_bits(&parse(&ec.cert_der)), None);
    let weak = jpki.auth_cert(&spec.clone().key(KeyAlg::Rsa1024)).unwrap();
    assert_eq!(rsa_bits(&parse(&weak.cert_der)), Some(1024));
    // The weak key still signs, as a card would, so a verifier must refuse it by size.
    assert_eq!(weak.sign_rsa_sha256(b"m").unwrap().len(), 128);
    assert!(ec.sign_rsa_sha256(b"m").is_err());

    let expired = spec.clone().validity(now() - Duration::days(30), now() - Duration::days(1));
    let cert = hpki.auth_cert(&expired).unwrap();
    assert_eq!(parse(&cert.cert_der).validity().not_after.timestamp(), NOW - 86_400);

    // A second PKI is told apart by its names.
    let rogue = Hpki::with(&CaOptions::new(now()).label("Rogue")).unwrap();
    assert!(utf8_name(parse(rogue.root().cert_der()).subject()).contains("Rogue HPKI Root CA V2"));
    let old = CaOptions::new(now()).validity(now() - Duration::days(3650), now() - Duration::days(1));
    assert_eq!(parse(Jpki::with(&old).unwrap().auth_ca().cert_der()).validity().not_after.timestamp(), NOW - 86_400);
    assert!(matches!(Jpki::with(&CaOptions { key: KeyAlg::Rsa1024, ..CaOptions::new(now()) }), Err(PkiError::Key(_))));
}

#[test]
fn crls_carry_number_window_and_serials() {
    let jpki = Jpki::new(now()).unwrap();
    let card = jpki.auth_cert(&CardSpec::new(now())).unwrap();
    let spec = CrlSpec::new(now()).revoke(&card.serial).number(42);
    let der = jpki.auth_ca().crl(&spec).unwrap();
    let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(crl.issuer().as_raw(), parse(jpki.auth_ca().cert_der()).subject().as_raw());
    assert_eq!(crl.crl_number().map(|n| n.to_u64_digits()), Some(vec![42]));
    assert_eq!(crl.last_update().timestamp(), NOW - 3600);
    assert_eq!(crl.next_update().map(|t| t.timestamp()), Some(NOW + 4 * 86_400));
    let revoked: Vec<Vec<u8>> = crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].iter().copied().skip_while(|&b| b == 0).collect::<Vec<_>>(), card.serial);
    let aki = crl.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    });
    assert_eq!(aki, Some(ski(&parse(jpki.auth_ca().cert_der()))));
}

// ---- OpenSSL as an independent check -------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (tests/run.sh installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn crl_pem(der: &[u8]) -> String {
    use std::fmt::Write as _;
    let b64 = base64_encode(der);
    let mut pem = String::from("-----BEGIN X509 CRL-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
    }
    pem.push_str("-----END X509 CRL-----\n");
    pem
}

/// Standard base64 (RFC 4648 §4), for the CRL PEM files openssl reads.
fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn openssl_prints_the_layout_and_accepts_the_chains_with_crls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |name: &str, data: &str| std::fs::write(d.join(name), data).unwrap();
    let at = NOW.to_string();
    let hpki = Hpki::new(now()).unwrap();
    let jpki = Jpki::new(now()).unwrap();
    let spec = CardSpec::new(now());
    let hpki_card = hpki.card(&spec).unwrap();
    let jpki_card = jpki.card(&spec).unwrap();
    let hpki_revoked = hpki.auth_cert(&spec).unwrap();
    let jpki_revoked = jpki.auth_cert(&spec).unwrap();
    w("hpki-root.pem", hpki.root().cert_pem());
    w("hpki-auth-ca.pem", hpki.auth_ca().cert_pem());
    w("hpki-sign-ca.pem", hpki.sign_ca().cert_pem());
    w("hpki-auth.pem", &hpki_card.auth.cert_pem);
    w("hpki-sign.pem", &hpki_card.sign.cert_pem);
    w("hpki-revoked.pem", &hpki_revoked.cert_pem);
    w("jpki-auth-ca.pem", jpki.auth_ca().cert_pem());
    w("jpki-sign-ca.pem", jpki.sign_ca().cert_pem());
    w("jpki-auth.pem", &jpki_card.auth.cert_pem);
    w("jpki-sign.pem", &jpki_card.sign.cert_pem);
    w("jpki-revoked.pem", &jpki_revoked.cert_pem);
    let crl = |ca: &CardCa, revoked: &[&[u8]]| {
        let spec = revoked.iter().fold(CrlSpec::new(now()), |s, r| s.revoke(r));
        crl_pem(&ca.crl(&spec).unwrap())
    };
    let arls = hpki.root_arls(&CrlSpec::new(now())).unwrap();
    w("hpki-rarl.pem", &crl_pem(&arls[0]));
    w("hpki-sarl.pem", &crl_pem(&arls[1]));
    w("hpki-auth-crl.pem", &crl(hpki.auth_ca(), &[&hpki_revoked.serial]));
    w("hpki-sign-crl.pem", &crl(hpki.sign_ca(), &[]));
    w("jpki-auth-crl.pem", &crl(jpki.auth_ca(), &[&jpki_revoked.serial]));
    w("jpki-sign-crl.pem", &crl(jpki.sign_ca(), &[]));

    // openssl x509 -text shows the extensions as on real certificates.
    let (ok, text) = openssl(d, &["x509", "-in", "hpki-sign.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    for line in [
        "X509v3 Certificate Policies: critical",
        "Policy: 1.2.392.100495.1.5.1.1.0.1",
        "CPS: http://www.ninsho-test.example/8_hpki/",
        "X509v3 Key Usage: critical\n                Non Repudiation\n",
        "X509v3 Subject Directory Attributes:",
        "URI:http://cert.ninsho-test.example/sign/crl-sign2.crl",
        "DirName:/C=JP/O=Ninsho Test Ministry of Health-like/OU=Ninsho Test Director-General for Policy Planning/OU=Ninsho Test HPKI Root CA V2",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let (ok, text) = openssl(d, &["x509", "-in", "jpki-auth.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("X509v3 Certificate Policies: critical\n                Policy: 1.2.392.200149.8.5.1.3.30"), "{text}");
    assert!(text.contains("Full Name:\n                  DirName:C = JP, O = Ninsho Test JPKI, OU = JPKI for user authentication"), "{text}");

    // openssl verify accepts every chain, strictly, with every CRL checked...
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "-x509_strict", "-attime", &at, "-crl_check_all"];
        args.extend_from_slice(extra);
        openssl(d, &args)
    };
    let hpki_crls = [
        "-CRLfile", "hpki-rarl.pem", "-CRLfile", "hpki-sarl.pem", "-CRLfile", "hpki-auth-crl.pem", "-CRLfile", "hpki-sign-crl.pem",
    ];
    for (ca, leaf) in [("hpki-auth-ca.pem", "hpki-auth.pem"), ("hpki-sign-ca.pem", "hpki-sign.pem")] {
        let (ok, out) = verify(&[&["-CAfile", "hpki-root.pem", "-untrusted", ca][..], &hpki_crls, &[leaf]].concat());
        assert!(ok && out.contains(&format!("{leaf}: OK")), "{out}");
    }
    let jpki_crls = ["-CRLfile", "jpki-auth-crl.pem", "-CRLfile", "jpki-sign-crl.pem"];
    for (ca, leaf) in [("jpki-auth-ca.pem", "jpki-auth.pem"), ("jpki-sign-ca.pem", "jpki-sign.pem")] {
        let (ok, out) = verify(&[&["-CAfile", ca][..], &jpki_crls, &[leaf]].concat());
        assert!(ok && out.contains(&format!("{leaf}: OK")), "{out}");
    }
    // ... refuses the revoked ones ...
    let (ok, out) = verify(&[&["-CAfile", "hpki-root.pem", "-untrusted", "hpki-auth-ca.pem"][..], &hpki_crls, &["hpki-revoked.pem"]].concat());
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify(&[&["-CAfile", "jpki-auth-ca.pem"][..], &jpki_crls, &["jpki-revoked.pem"]].concat());
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    // ... wants the intermediate CA's CRL (no CRL for it: unable to get certificate CRL) ...
    let (ok, out) = verify(&[
        "-CAfile", "hpki-root.pem", "-untrusted", "hpki-auth-ca.pem", "-CRLfile", "hpki-rarl.pem", "-CRLfile", "hpki-sarl.pem",
        "hpki-auth.pem",
    ]);
    assert!(!ok && out.contains("unable to get certificate CRL"), "{out}");
    // ... and, like the real MHLW ARLs, the CAs' ARL does not cover the root itself (its
    // issuingDistributionPoint names sarl2.crl, the root's distribution point is rarl2.crl).
    let (ok, out) = verify(&[
        "-CAfile", "hpki-root.pem", "-untrusted", "hpki-auth-ca.pem", "-CRLfile", "hpki-sarl.pem", "-CRLfile", "hpki-auth-crl.pem",
        "hpki-auth.pem",
    ]);
    assert!(!ok && out.contains("different CRL scope"), "{out}");
    let (ok, text) = openssl(d, &["crl", "-in", "hpki-sarl.pem", "-noout", "-text"]);
    assert!(ok && text.contains("Issuing Distribution Point: critical") && text.contains("Only CA Certificates"), "{text}");
    assert!(text.contains("URI:http://hpki.ninsho-test.example/repository/rlist/sarl2.crl"), "{text}");
    // After the CRLs' nextUpdate, it refuses.
    let later = (NOW + 5 * 86_400).to_string();
    let (ok, out) = openssl(d, &["verify", "-attime", &later, "-crl_check", "-CAfile", "jpki-auth-ca.pem", "-CRLfile", "jpki-auth-crl.pem", "jpki-auth.pem"]);
    assert!(!ok && out.contains("CRL has expired"), "{out}");
    // The signing and authentication hierarchies are separate: a signing certificate does not chain
    // to the authentication CA.
    let (ok, out) = openssl(d, &["verify", "-attime", &at, "-CAfile", "jpki-auth-ca.pem", "jpki-sign.pem"]);
    assert!(!ok, "{out}");
}

#[test]
fn a_card_is_written_in_the_simulator_layout() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let card = Jpki::new(now()).unwrap().card(&CardSpec::new(now())).unwrap();
    card.write_sim_dir(dir.path()).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("auth-cert.pem"), card.auth.cert_pem);
    assert_eq!(read("auth-key.pem"), card.auth.key_pem);
    assert_eq!(read("ca-cert.pem"), card.auth_ca_pem);
    assert_eq!(read("sign-cert.pem"), card.sign.cert_pem);
    assert_eq!(read("sign-key.pem"), card.sign.key_pem);
    assert_eq!(read("sign-ca-cert.pem"), card.sign_ca_pem);
    for key in ["auth-key.pem", "sign-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}
