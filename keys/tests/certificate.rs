//! Credential certificates and CSRs, checked with `openssl x509 -text`, `openssl verify` and
//! `openssl req -verify`.

mod common;

use common::{openssl, sign_and_check};
use keys::Backend;
use keys::certificate::{DoctorSubject, SigningCa, csr_pem, hpki_validity};
use time::macros::datetime;

fn subject(kanji: bool) -> DoctorSubject {
    DoctorSubject {
        name_romaji: "Sanjushi Kagurazaka".into(),
        name_kanji: kanji.then(|| "神楽坂　三十四".into()),
        organization: "NINSHO DEMO HOSPITAL".into(),
        serial: "Demo117120".into(),
    }
}

/// extnValue of the real MEDIS certificate's subjectDirectoryAttributes (docs/cards.md §2.5), 54 bytes.
fn real_hc_role_bytes() -> Vec<u8> {
    let mut bytes = vec![
        0x30, 0x34, 0x30, 0x32, 0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01, 0x31, 0x28, 0x31, 0x26, 0x30, 0x24,
        0xa0, 0x22, 0x31, 0x20, 0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01,
        0xa2, 0x10, 0x0c, 0x0e,
    ];
    bytes.extend_from_slice(b"Medical Doctor");
    assert_eq!(bytes.len(), 54);
    bytes
}

#[test]
fn issued_certificate_is_shaped_like_a_real_hpki_signing_certificate() {
    let now = datetime!(2026-06-01 09:00 UTC);
    let ca = SigningCa::generate_demo(now).unwrap();
    let (key, spki) = Backend::Software.generate_rsa("", 2048).unwrap();
    let (from, to) = hpki_validity(now, 5);
    let der = ca.issue(&spki, &subject(true), from, to).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&cert, openssl::x509::X509::from_der(&der).unwrap().to_pem().unwrap()).unwrap();
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let cert = cert.to_str().unwrap();

    let (ok, out) = openssl(&["verify", "-attime", "1780304400", "-CAfile", ca_file.to_str().unwrap(), cert]);
    assert!(ok && out.contains(": OK"), "{out}");
    // Before its first day and after its last it does not verify.
    let (ok, _) = openssl(&["verify", "-attime", "1780232399", "-CAfile", ca_file.to_str().unwrap(), cert]);
    assert!(!ok);

    let (ok, text) = openssl(&["x509", "-in", cert, "-noout", "-text", "-nameopt", "utf8,sep_comma_plus_space"]);
    assert!(ok, "{text}");
    let squashed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "Signature Algorithm: sha256WithRSAEncryption",
        "Issuer: C=JP, O=Ninsho Demo MEDIS-like, OU=Ninsho Demo HPKI CA, \
         CN=HPKI-01-NinshoDemoSignCA2-forNonRepudiation",
        "Subject: C=JP, O=NINSHO DEMO HOSPITAL, CN=Sanjushi Kagurazaka, serialNumber=Demo117120",
        // JST day boundaries, five years: as the real 2022-02-06 15:00:00Z → 2027-02-07 14:59:59Z.
        "Not Before: May 31 15:00:00 2026 GMT",
        "Not After : Jun 1 14:59:59 2031 GMT",
        "Public-Key: (2048 bit)",
        "X509v3 Key Usage: critical Non Repudiation X509v3",
        "X509v3 Certificate Policies: critical Policy: 1.2.392.100495.1.5.1.1.0.1 CPS:",
        "X509v3 Subject Directory Attributes:",
        "X509v3 Authority Key Identifier:",
        "X509v3 Subject Key Identifier:",
    ] {
        assert!(squashed.contains(expected), "missing {expected:?} in\n{text}");
    }
    // OpenSSL 3.0 prints a directoryName in its one-line form, non-ASCII bytes escaped.
    let kanji: String = "神楽坂　三十四".bytes().map(|b| format!("\\x{b:02X}")).collect();
    let san = format!(
        "X509v3 Subject Alternative Name: DirName:/C=JP/O=NINSHO DEMO HOSPITAL/CN={kanji}/serialNumber=Demo117120"
    );
    assert!(squashed.contains(&san), "missing {san:?} in\n{text}");
    assert!(!squashed.contains("Digital Signature"), "{text}");
    assert!(!squashed.contains("CA:TRUE"), "{text}");
    // The authority key id is the CA's subject key id.
    let (_, ca_text) = openssl(&["x509", "-in", ca_file.to_str().unwrap(), "-noout", "-ext", "subjectKeyIdentifier"]);
    let ca_ski = ca_text.lines().last().unwrap().trim().to_owned();
    assert!(squashed.contains(&format!("X509v3 Authority Key Identifier: {ca_ski}")), "{ca_ski}\n{text}");
    // hcRole: the very bytes of the real certificate, non-critical.
    let hc_role = real_hc_role_bytes();
    let ext = [&[0x06, 0x03, 0x55, 0x1d, 0x09, 0x04, 0x36][..], &hc_role].concat();
    assert!(der.windows(ext.len()).any(|w| w == ext), "subjectDirectoryAttributes: not the real bytes, or critical");

    // The key signs, and the certificate's key verifies it.
    let public = dir.path().join("pub.pem");
    let (ok, pem) = openssl(&["x509", "-in", cert, "-noout", "-pubkey"]);
    assert!(ok, "{pem}");
    std::fs::write(&public, pem).unwrap();
    sign_and_check(&Backend::Software, &key, &public, dir.path());
}

#[test]
fn demo_ca_is_shaped_like_the_medis_signing_ca() {
    let ca = SigningCa::generate_demo(datetime!(2026-06-01 09:00 UTC)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, ca.cert_pem()).unwrap();
    let (ok, text) = openssl(&["x509", "-in", file.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    let squashed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "CN = HPKI-01-NinshoDemoSignCA2-forNonRepudiation",
        "Public-Key: (2048 bit)",
        "X509v3 Basic Constraints: critical CA:TRUE, pathlen:0",
        "X509v3 Key Usage: critical Certificate Sign, CRL Sign",
        "X509v3 Certificate Policies: critical Policy: 1.2.392.100495.1.5.1.1.3.1",
        "Not Before: May 31 15:00:00 2026 GMT",
    ] {
        assert!(squashed.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn a_loaded_ca_issues_the_same_way() {
    let now = datetime!(2026-06-01 09:00 UTC);
    let demo = SigningCa::generate_demo(now).unwrap();
    let ca = SigningCa::load(demo.cert_pem(), demo.key_pem()).unwrap();
    assert_eq!(ca.cert_der(), demo.cert_der());
    let (_, spki) = Backend::Software.generate_rsa("", 2048).unwrap();
    let der = ca.issue(&spki, &subject(false), now, now + time::Duration::days(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, ca_file) = (dir.path().join("c.pem"), dir.path().join("ca.pem"));
    std::fs::write(&cert, openssl::x509::X509::from_der(&der).unwrap().to_pem().unwrap()).unwrap();
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let (ok, out) =
        openssl(&["verify", "-attime", "1780304400", "-CAfile", ca_file.to_str().unwrap(), cert.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (_, text) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(!text.contains("Subject Alternative Name"), "no kanji name, no SAN:\n{text}");

    // Another CA's key, a key that is not PEM, a public key that is not RSA: clear errors.
    let other = SigningCa::generate_demo(now).unwrap();
    let err = SigningCa::load(demo.cert_pem(), other.key_pem()).err().unwrap();
    assert_eq!(err.to_string(), "certificate: the CA private key does not belong to the CA certificate");
    assert!(SigningCa::load(demo.cert_pem(), "junk").is_err());
    let p256 = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&p256).unwrap();
    let ec_spki = openssl::pkey::PKey::from_ec_key(ec).unwrap().public_key_to_der().unwrap();
    let err = ca.issue(&ec_spki, &subject(false), now, now + time::Duration::days(1)).unwrap_err();
    assert!(err.to_string().starts_with("not an RSA SubjectPublicKeyInfo"), "{err}");
    let err = ca.issue(&spki, &subject(false), now, now - time::Duration::days(3)).unwrap_err();
    assert!(err.to_string().contains("not_after"), "{err}");
}

#[test]
fn csr_verifies_with_openssl_req() {
    let (key, spki) = Backend::Software.generate_rsa("", 2048).unwrap();
    let pem = csr_pem(&Backend::Software, &key, &subject(true)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("req.pem");
    std::fs::write(&file, &pem).unwrap();
    let (ok, out) = openssl(&["req", "-in", file.to_str().unwrap(), "-verify", "-noout", "-text",
        "-nameopt", "utf8,sep_comma_plus_space"]);
    assert!(ok && out.contains("verify OK"), "{out}");
    let subject = "Subject: C=JP, O=NINSHO DEMO HOSPITAL, CN=Sanjushi Kagurazaka, serialNumber=Demo117120";
    assert!(out.contains(subject), "{out}");
    assert!(out.contains("sha256WithRSAEncryption"), "{out}");
    // The request carries the key the backend holds.
    let req = openssl::x509::X509Req::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(req.public_key().unwrap().public_key_to_der().unwrap(), spki);
    // A tampered request does not verify.
    let mut der = req.to_der().unwrap();
    let at = der.windows(7).position(|w| w == b"Sanjush").unwrap();
    der[at] = b'T';
    std::fs::write(&file, openssl::x509::X509Req::from_der(&der).unwrap().to_pem().unwrap()).unwrap();
    let (ok, out) = openssl(&["req", "-in", file.to_str().unwrap(), "-verify", "-noout"]);
    assert!(!ok || !out.contains("verify OK"), "{out}");
}
