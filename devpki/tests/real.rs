//! The real public HPKI and JPKI certificates and CRLs in `fixtures/real/` (sources in its README):
//! the facts the product relies on, and that `devpki::cards` makes certificates with the same
//! extension layout (which extensions, which critical, which name forms).

// Helpers outside #[test] functions assert too; clippy.toml's test allowance does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use devpki::cards::{CardSpec, Hpki, Jpki, MEDICAL_DOCTOR};
use devpki::hc_role_extension;
use sha2::{Digest, Sha256};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/real")
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

/// (file, SHA-256) of every fixture; the certificates' fingerprints are those of
/// `docs/cards.md` §1.5 and §2.1.
const FILES: [(&str, &str); 11] = [
    ("mhlw-hpki-root-ca-v2.der", "6ed2796b1b101736d952185787cb36da9ce80522cc8cb7b5ce728b61be1b674c"),
    ("medis-hpki-sign-ca2.der", "5f497e73f986c4503eb25eb94851a79193d2edc8f829f32e930a61f0b569e033"),
    ("medis-hpki-auth-ca2.der", "476b64ddd92129cad257906d206fff4e8e32390faf2f64892f6c810cfff54bc3"),
    ("medis-test-signer.der", "36a79ea645e43134e76e7dacdd6d7dedfa4ea1fd2d8fe45df092c823a0687e64"),
    ("medis-hpki-sign-ca2-2022-09-06.crl", "711438f8b5fc28d100f913e3d1d5a2fe94e50967bc3227e0be162cf48da37e2c"),
    ("mhlw-hpki-root-ca-v2-arl-2022-09-05.crl", "c941bc9ecda28aab33907a4b9e50b34318e9f5819901d827abc85078bda2c349"),
    ("jpki-auth-ca-2015.der", "4dcfc4ca0aaf9fb2a3081b3f0c991c320b3acc008667a341eeaec5af1d58ca7d"),
    ("jpki-auth-ca-2023.der", "64114f29620c24ed2631d46476a040e7ee740d956089c00b036a6a8118c322b5"),
    ("jpki-sign-ca-2015.der", "19645405a1fe14377434bd55957628ac4038557c542403a2243f21c706fc9355"),
    ("jpki-sign-ca-2019.der", "79679c33e4cc9319440f1ad120a597ff1844e2ef217063adb176966fd5e6fbeb"),
    ("jpki-sign-ca-2023.der", "d227f6cde11d35c5252178f106f843d24651944975413b539fa2fb68dbfa365f"),
];

#[test]
fn fingerprints_match_the_readme_and_every_fixture_is_listed() {
    for (name, sha256) in FILES {
        assert_eq!(hex::encode(Sha256::digest(fixture(name))), sha256, "{name}");
    }
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for (name, sha256) in FILES {
        assert!(readme.contains(&format!("`{name}`")) && readme.contains(sha256), "{name} not in README.md");
    }
}

// ---- decoding helpers ----------------------------------------------------------------------------

fn ext<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> Option<&'a x509_parser::extensions::X509Extension<'a>> {
    cert.extensions().iter().find(|e| e.oid.to_id_string() == oid)
}

fn policies(cert: &X509Certificate<'_>) -> Option<(bool, Vec<String>)> {
    let e = ext(cert, "2.5.29.32")?;
    let ParsedExtension::CertificatePolicies(p) = e.parsed_extension() else { panic!() };
    Some((e.critical, p.iter().map(|p| p.policy_id.to_id_string()).collect()))
}

fn key_usage(cert: &X509Certificate<'_>) -> (bool, u16) {
    let e = ext(cert, "2.5.29.15").unwrap();
    let ParsedExtension::KeyUsage(ku) = e.parsed_extension() else { panic!() };
    (e.critical, ku.flags)
}

/// A general name's form: `dir(C/O/OU/OU)`, `uri`, `other`.
fn kind(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DirectoryName(n) => format!("dir({})", name_form(n).join("/")),
        GeneralName::URI(_) => "uri".into(),
        GeneralName::OtherName(..) => "other".into(),
        _ => "other kind".into(),
    }
}

/// The shape of a certificate's extensions: for each, its OID, criticality and the forms inside
/// (name kinds of alternative names and distribution points, the parts of authorityKeyIdentifier).
fn shape(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| {
            let detail = match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => san.general_names.iter().map(kind).collect::<Vec<_>>().join("+"),
                ParsedExtension::CRLDistributionPoints(points) => points
                    .iter()
                    .map(|p| match &p.distribution_point {
                        Some(DistributionPointName::FullName(names)) => names.iter().map(kind).collect::<Vec<_>>().join("+"),
                        _ => "other form".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                ParsedExtension::AuthorityKeyIdentifier(a) => format!(
                    "keyid={} issuer={} serial={}",
                    a.key_identifier.is_some(),
                    a.authority_cert_issuer.is_some(),
                    a.authority_cert_serial.is_some()
                ),
                ParsedExtension::CertificatePolicies(p) => format!("{} policy, qualifiers={}", p.len(), p[0].policy_qualifiers.is_some()),
                _ => String::new(),
            };
            format!("{} critical={} {detail}", e.oid.to_id_string(), e.critical)
        })
        .collect();
    out.sort();
    out
}

/// Attribute types of a name in order (`C`, `O`, `OU`, `CN`, `serialNumber`).
fn name_form(name: &x509_parser::x509::X509Name<'_>) -> Vec<&'static str> {
    name.iter_attributes()
        .map(|a| match a.attr_type().to_id_string().as_str() {
            "2.5.4.6" => "C",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "2.5.4.3" => "CN",
            "2.5.4.5" => "serialNumber",
            _ => "?",
        })
        .collect()
}

const NON_REPUDIATION: u16 = 1 << 1;
const CERT_SIGN_CRL_SIGN: u16 = (1 << 5) | (1 << 6);

// ---- facts -----------------------------------------------------------------------------------------

#[test]
fn medis_cas_and_the_test_signer_mark_certificate_policies_critical() {
    let sign_ca = fixture("medis-hpki-sign-ca2.der");
    let auth_ca = fixture("medis-hpki-auth-ca2.der");
    let signer = fixture("medis-test-signer.der");
    assert_eq!(policies(&parse(&sign_ca)), Some((true, vec!["1.2.392.100495.1.5.1.1.3.1".into()])));
    assert_eq!(policies(&parse(&auth_ca)), Some((true, vec!["1.2.392.100495.1.5.1.2.3.1".into()])));
    assert_eq!(policies(&parse(&signer)), Some((true, vec!["1.2.392.100495.1.5.1.1.0.1".into()])));
    for ca in [&sign_ca, &auth_ca] {
        assert_eq!(key_usage(&parse(ca)), (true, CERT_SIGN_CRL_SIGN));
    }
    let root = fixture("mhlw-hpki-root-ca-v2.der");
    let root = parse(&root);
    assert_eq!(policies(&root), None);
    assert_eq!(root.subject().as_raw(), root.issuer().as_raw());
    assert_eq!(name_form(root.subject()), ["C", "O", "OU", "OU"]);
    assert_eq!(root.subject().to_string(), "C=JP, O=Ministry of Health, Labour and Welfare, OU=Director-General for Policy Planning and Evaluation, OU=MHLW HPKI Root CA V2");
    assert_eq!(parse(&sign_ca).issuer().as_raw(), root.subject().as_raw());
    assert_eq!(parse(&auth_ca).issuer().as_raw(), root.subject().as_raw());
}

#[test]
fn the_test_signer_is_a_nonrepudiation_medical_doctor_certificate() {
    let der = fixture("medis-test-signer.der");
    let signer = parse(&der);
    let ca = fixture("medis-hpki-sign-ca2.der");
    assert_eq!(signer.issuer().as_raw(), parse(&ca).subject().as_raw());
    assert_eq!(key_usage(&signer), (true, NON_REPUDIATION));
    let role = ext(&signer, "2.5.29.9").unwrap();
    assert!(!role.critical);
    assert_eq!(role.value, hc_role_extension(MEDICAL_DOCTOR).content());
    assert_eq!(name_form(signer.subject()), ["C", "O", "CN", "serialNumber"]);
    assert_eq!(signer.subject().to_string(), "C=JP, O=MEDIS UNIVERSITY HOSPITAL, CN=Sanjushi Kagurazaka, serialNumber=Test117120");
    assert_eq!(signer.raw_serial(), [0x01, 0x5E]);
    let Some(ParsedExtension::SubjectAlternativeName(san)) = ext(&signer, "2.5.29.17").map(|e| e.parsed_extension()) else {
        panic!()
    };
    let [GeneralName::DirectoryName(kanji)] = san.general_names.as_slice() else { panic!("{san:?}") };
    let values: Vec<&str> = kanji.iter_attributes().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(values, ["JP", "医療情報大学病院", "神楽坂　三十四", "Test117120"]);
    assert!(ext(&signer, "2.5.29.19").is_none() && ext(&signer, "2.5.29.37").is_none());
}

#[test]
fn jpki_cas_have_the_j_lis_form() {
    for (name, purpose, kanji) in [
        ("jpki-auth-ca-2015.der", "user authentication", "利用者証明用"),
        ("jpki-auth-ca-2023.der", "user authentication", "利用者証明用"),
        ("jpki-sign-ca-2015.der", "digital signature", "署名用"),
        ("jpki-sign-ca-2019.der", "digital signature", "署名用"),
        ("jpki-sign-ca-2023.der", "digital signature", "署名用"),
    ] {
        let der = fixture(name);
        let cert = parse(&der);
        let dn = format!("C=JP, O=JPKI, OU=JPKI for {purpose}, OU=Japan Agency for Local Authority Information Systems");
        assert_eq!(cert.subject().to_string(), dn, "{name}");
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw(), "{name}");
        assert_eq!(key_usage(&cert), (true, CERT_SIGN_CRL_SIGN), "{name}");
        assert_eq!(policies(&cert), None, "{name}");
        assert!(ext(&cert, "2.5.29.35").is_none(), "{name}");
        let Some(ParsedExtension::CRLDistributionPoints(points)) = ext(&cert, "2.5.29.31").map(|e| e.parsed_extension()) else {
            panic!()
        };
        let [point] = points.points.as_slice() else { panic!() };
        let Some(DistributionPointName::FullName(names)) = &point.distribution_point else { panic!() };
        let [GeneralName::DirectoryName(dp)] = names.as_slice() else { panic!("{name}: {names:?}") };
        assert_eq!(dp.to_string(), dn);
        let Some(ParsedExtension::SubjectAlternativeName(san)) = ext(&cert, "2.5.29.17").map(|e| e.parsed_extension()) else {
            panic!()
        };
        let [GeneralName::DirectoryName(alt)] = san.general_names.as_slice() else { panic!() };
        let values: Vec<&str> = alt.iter_attributes().map(|a| a.as_str().unwrap()).collect();
        let unit = format!("公的個人認証サービス{kanji}");
        assert_eq!(values, ["JP", "公的個人認証サービス", &unit, "地方公共団体情報システム機構"]);
    }
}

#[test]
fn the_crls_are_the_cas_and_the_root_arl_covers_cas_only() {
    let crl_der = fixture("medis-hpki-sign-ca2-2022-09-06.crl");
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    let ca = fixture("medis-hpki-sign-ca2.der");
    assert_eq!(crl.issuer().as_raw(), parse(&ca).subject().as_raw());
    assert_eq!(crl.crl_number().map(|n| n.to_u64_digits()), Some(vec![1470]));
    assert_eq!(crl.iter_revoked_certificates().count(), 29);
    assert!(crl.iter_revoked_certificates().all(|r| r.raw_serial() != [0x01, 0x5E]), "the test signer is not revoked");

    let arl_der = fixture("mhlw-hpki-root-ca-v2-arl-2022-09-05.crl");
    let (_, arl) = CertificateRevocationList::from_der(&arl_der).unwrap();
    let root = fixture("mhlw-hpki-root-ca-v2.der");
    assert_eq!(arl.issuer().as_raw(), parse(&root).subject().as_raw());
    assert_eq!(arl.crl_number().map(|n| n.to_u64_digits()), Some(vec![3269]));
    let idp = arl.extensions().iter().find(|e| e.oid.to_id_string() == "2.5.29.28").unwrap();
    assert!(idp.critical);
    let ParsedExtension::IssuingDistributionPoint(idp) = idp.parsed_extension() else { panic!() };
    assert!(idp.only_contains_ca_certs);
    let Some(DistributionPointName::FullName(names)) = &idp.distribution_point else { panic!() };
    let [GeneralName::DirectoryName(name)] = names.as_slice() else { panic!() };
    assert!(name.to_string().ends_with("OU=MHLW HPKI Root CA V2, CN=SARL"), "{name}");
}

#[test]
fn openssl_verifies_the_real_chain_on_the_day_of_the_sample() {
    let work = tempfile::tempdir().unwrap();
    let pem = |kind: &str, name: &str| {
        let out = Command::new("openssl")
            .args([kind, "-inform", "DER", "-in"])
            .arg(dir().join(name))
            .arg("-out")
            .arg(work.path().join(format!("{name}.pem")))
            .output()
            .expect("openssl must be installed (tests/run.sh installs it)");
        assert!(out.status.success(), "{out:?}");
    };
    for name in ["mhlw-hpki-root-ca-v2.der", "medis-hpki-sign-ca2.der", "medis-test-signer.der"] {
        pem("x509", name);
    }
    for name in ["medis-hpki-sign-ca2-2022-09-06.crl", "mhlw-hpki-root-ca-v2-arl-2022-09-05.crl"] {
        pem("crl", name);
    }
    let verify = |at: &str, extra: &[&str]| {
        let out = Command::new("openssl")
            .args(["verify", "-x509_strict", "-attime", at])
            .args(["-CAfile", "mhlw-hpki-root-ca-v2.der.pem", "-untrusted", "medis-hpki-sign-ca2.der.pem"])
            .args(extra)
            .arg("medis-test-signer.der.pem")
            .current_dir(work.path())
            .output()
            .unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    // 2022-09-08T00:00:00Z, inside both CRLs' windows.
    let day = "1662595200";
    let (ok, out) = verify(day, &[]);
    assert!(ok, "{out}");
    let (ok, out) = verify(day, &["-crl_check", "-CRLfile", "medis-hpki-sign-ca2-2022-09-06.crl.pem"]);
    assert!(ok, "{out}");
    // Checking every certificate, the root too, needs the root's own ARL (rarl2.crl), not in the sample:
    // the CAs' ARL is out of scope for the root.
    let all = ["-crl_check_all", "-CRLfile", "medis-hpki-sign-ca2-2022-09-06.crl.pem", "-CRLfile", "mhlw-hpki-root-ca-v2-arl-2022-09-05.crl.pem"];
    let (ok, out) = verify(day, &all);
    assert!(!ok && out.contains("error 44 at 2 depth lookup: different CRL scope"), "{out}");
    // Past the MEDIS CRL's nextUpdate (2022-09-10 18:00Z) the same check fails.
    let (ok, out) = verify("1662940800", &["-crl_check", "-CRLfile", "medis-hpki-sign-ca2-2022-09-06.crl.pem"]);
    assert!(!ok && out.contains("CRL has expired"), "{out}");
}

// ---- the generated PKIs have the same layout -------------------------------------------------------

#[test]
fn generated_certificates_have_the_layout_of_the_real_ones() {
    let now = time::OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
    let hpki = Hpki::new(now).unwrap();
    let jpki = Jpki::new(now).unwrap();
    let card = hpki.card(&CardSpec::new(now)).unwrap();
    let pairs: [(&str, Vec<u8>); 5] = [
        ("mhlw-hpki-root-ca-v2.der", hpki.root().cert_der().to_vec()),
        ("medis-hpki-sign-ca2.der", hpki.sign_ca().cert_der().to_vec()),
        ("medis-hpki-auth-ca2.der", hpki.auth_ca().cert_der().to_vec()),
        ("medis-test-signer.der", card.sign.cert_der.clone()),
        ("jpki-auth-ca-2023.der", jpki.auth_ca().cert_der().to_vec()),
    ];
    for (real, generated) in pairs {
        let real_der = fixture(real);
        let (real, generated) = (parse(&real_der), parse(&generated));
        assert_eq!(shape(&generated), shape(&real), "{real:?}");
        assert_eq!(name_form(generated.subject()), name_form(real.subject()));
        assert_eq!(name_form(generated.issuer()), name_form(real.issuer()));
    }
    assert_eq!(shape(&parse(jpki.sign_ca().cert_der())), shape(&parse(&fixture("jpki-sign-ca-2023.der"))));
}
