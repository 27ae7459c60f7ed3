//! The e-prescription signature against independent oracles: every document signed here verifies
//! with `xmlsec1` (Debian's, installed by tests/run.sh; a missing one fails the test), documents
//! signed by `xmlsec1` verify here, and both refuse the same tampered documents; the XAdES
//! checks (time-stamp, certificate path, revocation at signing time, nonRepudiation, hcRole)
//! report each problem with its code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keys::certificate::{DoctorSubject, SigningCa};
use openssl::pkey::{PKey, Private};
use time::OffsetDateTime;
use tsp::responder::Responder;
use xades::{Prepared, ValidationData, Verdict, VerifyPolicy};

/// 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

const SAMPLE: &[u8] = include_bytes!("../../signer/data/sample-prescription.xml");

struct Pki {
    ca: SigningCa,
    key: PKey<Private>,
    cert: Vec<u8>,
    tsa: Responder,
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn subject() -> DoctorSubject {
    DoctorSubject {
        name_romaji: "Taro Yamada".into(),
        name_kanji: Some("山田　太郎".into()),
        organization: "NINSHO NAIKA CLINIC".into(),
        serial: "Test000001".into(),
    }
}

impl Pki {
    fn new() -> Pki {
        let ca = SigningCa::generate_demo(at(NOW - 86_400)).unwrap();
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let cert = ca.issue(&key.public_key_to_der().unwrap(), &subject(), at(NOW - 86_400), at(NOW + 365 * 86_400)).unwrap();
        Pki { ca, key, cert, tsa: Responder::generate(NOW - 86_400).unwrap() }
    }

    fn ca_der(&self) -> Vec<u8> {
        self.ca.cert_der().to_vec()
    }

    /// RSASSA-PKCS1-v1_5 over an already computed SHA-256.
    fn sign_digest(key: &PKey<Private>, digest: &[u8]) -> Vec<u8> {
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key).unwrap();
        ctx.sign_init().unwrap();
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1).unwrap();
        ctx.set_signature_md(openssl::md::Md::sha256()).unwrap();
        let mut out = Vec::new();
        ctx.sign_to_vec(digest, &mut out).unwrap();
        out
    }

    /// Signs `document` at `time` with `cert`/`key`, time-stamped by the test TSA at `time`,
    /// with the CA's CRL (revoking `revoked` serials) issued at `time`.
    fn sign_with(&self, document: &[u8], cert: &[u8], key: &PKey<Private>, time: i64, revoked: &[Vec<u8>]) -> Vec<u8> {
        let prepared = Prepared::new(document, cert, time).unwrap();
        let value = Self::sign_digest(key, &prepared.signed_info_digest());
        let signed = prepared.with_signature(&value).unwrap();
        let token = self.stamp(&signed.timestamp_imprint(), time);
        let crl = self.ca.crl(at(time - 60), at(time + 7 * 86_400), revoked).unwrap();
        let signer = ValidationData { certificates: vec![self.ca_der()], crls: vec![crl] };
        let tsa = ValidationData { certificates: vec![self.tsa.ca_der()], crls: vec![self.tsa.crl_der(time).unwrap()] };
        signed.complete(&token, &signer, &tsa).unwrap()
    }

    fn sign(&self, document: &[u8]) -> Vec<u8> {
        self.sign_with(document, &self.cert, &self.key, NOW, &[])
    }

    fn stamp(&self, imprint: &[u8; 32], time: i64) -> Vec<u8> {
        tsp::accept_reply(&self.tsa.respond(&tsp::request(imprint, 1), time), imprint, 1).unwrap().0
    }

    fn verify(&self, document: &[u8]) -> xades::Report {
        let (signer, tsa) = (vec![self.ca_der()], vec![self.tsa.ca_der()]);
        xades::verify(document, &VerifyPolicy { signer_anchors: &signer, tsa_anchors: &tsa, at: None })
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// `xmlsec1 --verify` with the signer's certificate: Ok, or what it printed.
fn xmlsec1(document: &[u8], cert: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doc.xml"), document).unwrap();
    std::fs::write(dir.path().join("signer.pem"), pem(cert)).unwrap();
    let out = Command::new("xmlsec1")
        .args(["--verify", "--id-attr:id", "PrescriptionDocument", "--id-attr:Id", "KeyInfo", "--id-attr:Id", "SignedProperties"])
        .args(["--enabled-reference-uris", "same-doc", "--pubkey-cert-pem", "signer.pem", "doc.xml"])
        .current_dir(dir.path())
        .output()
        .expect("xmlsec1 is installed (tests/run.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(()) } else { Err(text) }
}

fn failed_codes(report: &xades::Report) -> Vec<String> {
    report.failures().map(|c| c.code.clone()).collect()
}

#[test]
fn our_signature_verifies_with_xmlsec1_and_with_us() {
    let pki = Pki::new();
    let prepared = Prepared::new(SAMPLE, &pki.cert, NOW).unwrap();
    let value = Pki::sign_digest(&pki.key, &prepared.signed_info_digest());
    let signed = prepared.with_signature(&value).unwrap();
    xmlsec1(&signed.basic(), &pki.cert).unwrap();
    let document = pki.sign(SAMPLE);
    xmlsec1(&document, &pki.cert).unwrap();
    let report = pki.verify(&document);
    assert_eq!(report.verdict, Verdict::Valid, "{report}");
    assert_eq!(report.hc_roles, ["Medical Doctor"]);
    assert_eq!((report.signing_time, report.timestamp_time), (Some(NOW), Some(NOW)));
    let text = report.to_string();
    assert!(text.contains("有効 / Valid"), "{text}");
    assert_eq!(report.to_json()["verdict"], "valid");
    // Everything outside the new PrescriptionSign is byte for byte the document as sent.
    let s = String::from_utf8(document).unwrap();
    let start = s.find("<PrescriptionSign>").unwrap();
    let end = s.find("</PrescriptionSign>").unwrap() + "</PrescriptionSign>".len();
    let unsigned = String::from_utf8(SAMPLE.to_vec()).unwrap();
    assert_eq!(format!("{}{}", &s[..start], &s[end..]), unsigned);
    // Signing it again is refused.
    assert!(matches!(Prepared::new(s.as_bytes(), &pki.cert, NOW), Err(xades::DocumentError::AlreadySigned)));
}

#[test]
fn unsigned_documents_that_are_not_prescriptions_are_refused() {
    let pki = Pki::new();
    let cases: [(&str, &str); 6] = [
        ("<Document><Prescription/></Document>", "PrescriptionManagement"),
        ("<Other/>", "Document"),
        ("not xml", "well-formed"),
        ("<!DOCTYPE Document [<!ENTITY x \"y\">]><Document/>", "DTD"),
        (
            "<Document><Prescription><PrescriptionManagement/><PrescriptionDocument id=\"PrescriptionDocument\">!!</PrescriptionDocument></Prescription></Document>",
            "base64",
        ),
        (
            "<Document><Prescription><PrescriptionManagement id=\"PrescriptionDocument\"/><PrescriptionDocument id=\"PrescriptionDocument\">QQ==</PrescriptionDocument></Prescription></Document>",
            "twice",
        ),
    ];
    for (doc, says) in cases {
        let err = Prepared::new(doc.as_bytes(), &pki.cert, NOW).err().unwrap_or_else(|| panic!("{doc} was accepted"));
        assert!(err.to_string().contains(says), "{doc}: {err}");
    }
    // A value that is not the key's.
    let prepared = Prepared::new(SAMPLE, &pki.cert, NOW).unwrap();
    assert!(prepared.with_signature(&[0u8; 256]).is_err());
    // A time-stamp over another value.
    let prepared = Prepared::new(SAMPLE, &pki.cert, NOW).unwrap();
    let value = Pki::sign_digest(&pki.key, &prepared.signed_info_digest());
    let signed = prepared.with_signature(&value).unwrap();
    let other = pki.stamp(&[7u8; 32], NOW);
    assert!(signed.complete(&other, &ValidationData::default(), &ValidationData::default()).is_err());
}

/// Each tampered variant is refused by us with its code, and (for the XMLDSig core) by xmlsec1.
#[test]
fn tampered_documents_are_refused_by_both() {
    let pki = Pki::new();
    let good = String::from_utf8(pki.sign(SAMPLE)).unwrap();
    let other = Pki::new();
    let csv_start = good.find("<PrescriptionDocument id=\"PrescriptionDocument\">").unwrap() + 48;
    let mut changed_csv = good.clone();
    changed_csv.replace_range(csv_start..csv_start + 1, "V");
    let signing_time = good.find("<xades:SigningTime>").unwrap() + "<xades:SigningTime>".len();
    let mut changed_time = good.clone();
    changed_time.replace_range(signing_time..signing_time + 4, "2025");
    let cert_b64 = STANDARD.encode(&pki.cert);
    let swapped = good.replace(&cert_b64, &STANDARD.encode(&other.cert));
    let stamp_start = good.find("<xades:SignatureTimeStamp").unwrap();
    let stamp_end = good.find("</xades:SignatureTimeStamp>").unwrap() + "</xades:SignatureTimeStamp>".len();
    let no_stamp = format!("{}{}", &good[..stamp_start], &good[stamp_end..]);
    let token_start = good.find("<xades:EncapsulatedTimeStamp>").unwrap() + "<xades:EncapsulatedTimeStamp>".len();
    let token_end = good.find("</xades:EncapsulatedTimeStamp>").unwrap();
    let foreign = STANDARD.encode(pki.stamp(&[9u8; 32], NOW));
    let other_stamp = format!("{}{foreign}{}", &good[..token_start], &good[token_end..]);
    let broken_reference = good.replacen("URI=\"#PrescriptionDocument\"", "URI=\"#Nowhere\"", 1);
    // A wrapped copy of the signed prescription beside a changed one with the same id.
    let pd_start = good.find("<PrescriptionDocument").unwrap();
    let pd_end = good.find("</PrescriptionDocument>").unwrap() + "</PrescriptionDocument>".len();
    let original = &good[pd_start..pd_end];
    let wrapped = good.replacen(original, &format!("{}<Wrapper>{original}</Wrapper>", original.replacen("\">U", "\">V", 1)), 1);
    let cases: [(&str, &str, String, bool); 7] = [
        ("changed prescription CSV", "digest_mismatch", changed_csv, true),
        ("changed SigningTime", "digest_mismatch", changed_time, true),
        ("swapped certificate", "bad_signature", swapped, true),
        ("removed time-stamp", "no_timestamp", no_stamp, false),
        ("time-stamp over another value", "timestamp_imprint_mismatch", other_stamp, false),
        ("broken reference", "broken_reference", broken_reference, true),
        ("duplicate id (signature wrapping)", "duplicate_id", wrapped, true),
    ];
    for (what, code, document, core) in cases {
        let report = pki.verify(document.as_bytes());
        assert_eq!(report.verdict, Verdict::Invalid, "{what}: {report}");
        assert!(failed_codes(&report).iter().any(|c| c == code), "{what}: expected {code} in {:?}\n{report}", failed_codes(&report));
        let oracle = xmlsec1(document.as_bytes(), &pki.cert);
        // xmlsec1 checks the XMLDSig core only: it agrees on every core change, and accepts the
        // XAdES-only ones (the time-stamp is ours to judge).
        assert_eq!(oracle.is_err(), core, "{what}: xmlsec1 said {oracle:?}");
    }
}

#[test]
fn certificate_problems_at_signing_time_are_reported() {
    let pki = Pki::new();
    // Revoked before signing.
    let serial = openssl::x509::X509::from_der(&pki.cert).unwrap().serial_number().to_bn().unwrap().to_vec();
    let revoked = pki.sign_with(SAMPLE, &pki.cert, &pki.key, NOW, &[serial]);
    let report = pki.verify(&revoked);
    assert!(failed_codes(&report).contains(&"revoked".to_owned()), "{report}");
    // Expired at signing time: a certificate that ended the day before.
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let expired = pki.ca.issue(&key.public_key_to_der().unwrap(), &subject(), at(NOW - 30 * 86_400), at(NOW - 2 * 86_400)).unwrap();
    let report = pki.verify(&pki.sign_with(SAMPLE, &expired, &key, NOW, &[]));
    assert!(failed_codes(&report).contains(&"expired".to_owned()), "{report}");
    // Untrusted TSA: verified against another TSA's anchor.
    let document = pki.sign(SAMPLE);
    let other = Responder::generate(NOW).unwrap();
    let (signer, tsa) = (vec![pki.ca_der()], vec![other.ca_der()]);
    let report = xades::verify(&document, &VerifyPolicy { signer_anchors: &signer, tsa_anchors: &tsa, at: None });
    assert!(failed_codes(&report).contains(&"timestamp_untrusted".to_owned()), "{report}");
    // No HPKI anchor configured: the path fails.
    let report = xades::verify(&document, &VerifyPolicy { signer_anchors: &[], tsa_anchors: &[pki.tsa.ca_der()], at: None });
    assert_eq!(report.verdict, Verdict::Invalid, "{report}");
}

/// A certificate without nonRepudiation and hcRole (an ordinary TLS-style leaf from openssl), in a
/// signature made by xmlsec1 — another implementation — over a template of the profile.
#[test]
fn a_signature_made_by_xmlsec1_verifies_here_and_unfit_certificates_are_reported() {
    let pki = Pki::new();
    // The template: our signature shape with empty digests and value, filled in by xmlsec1.
    let prepared = Prepared::new(SAMPLE, &pki.cert, NOW).unwrap();
    let value = Pki::sign_digest(&pki.key, &prepared.signed_info_digest());
    let ours = String::from_utf8(prepared.with_signature(&value).unwrap().basic()).unwrap();
    let template = blank(&ours);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("template.xml"), &template).unwrap();
    std::fs::write(d.join("key.pem"), pki.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let signed = xmlsec1_sign(d, "template.xml", "key.pem");
    // The XMLDSig core of the other implementation's signature (its digests, its value) verifies
    // here; what it cannot add (B-B: no time-stamp, no embedded CRLs) is all that is reported.
    let report = pki.verify(&signed);
    let core: Vec<&xades::Check> = report.checks.iter().filter(|c| c.name.starts_with("reference:") || c.name == "signature_value").collect();
    assert!(core.len() == 4 && core.iter().all(|c| c.ok), "{report}");
    assert_eq!(failed_codes(&report), ["no_timestamp", "revocation_unknown"], "{report}");

    // The same with a default-namespace Document, CRLF line ends and other attribute order.
    let variant = String::from_utf8(SAMPLE.to_vec())
        .unwrap()
        .replace("\n", "\r\n")
        .replace("<Document xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" id=\"Document\" xsi:noNamespaceSchemaLocation=\"EP.xsd\">",
                 "<Document xsi:noNamespaceSchemaLocation=\"EP.xsd\"   id=\"Document\"\r\n   xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">");
    let prepared = Prepared::new(variant.as_bytes(), &pki.cert, NOW).unwrap();
    let value = Pki::sign_digest(&pki.key, &prepared.signed_info_digest());
    let ours = String::from_utf8(prepared.with_signature(&value).unwrap().basic()).unwrap();
    xmlsec1(ours.as_bytes(), &pki.cert).unwrap();
    std::fs::write(d.join("variant.xml"), blank(&ours)).unwrap();
    let signed = xmlsec1_sign(d, "variant.xml", "key.pem");
    let report = pki.verify(&signed);
    assert_eq!(failed_codes(&report), ["no_timestamp", "revocation_unknown"], "{report}");

    // An openssl-made certificate: no nonRepudiation, no hcRole.
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let plain = plain_certificate(&key);
    let document = pki.sign_with(SAMPLE, &plain, &key, NOW, &[]);
    let report = pki.verify(&document);
    let codes = failed_codes(&report);
    for code in ["no_non_repudiation", "no_hc_role"] {
        assert!(codes.contains(&code.to_owned()), "{code}: {report}");
    }
}

/// The document with every DigestValue and the SignatureValue emptied: an xmlsec1 template.
fn blank(signed: &str) -> String {
    let mut out = String::new();
    let mut rest = signed;
    for tag in ["ds:DigestValue", "ds:DigestValue", "ds:DigestValue", "ds:SignatureValue"] {
        let open = rest.find(&format!("<{tag}")).unwrap();
        let after_open = open + rest[open..].find('>').unwrap() + 1;
        let close = after_open + rest[after_open..].find(&format!("</{tag}>")).unwrap();
        out.push_str(&rest[..after_open]);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

fn xmlsec1_sign(dir: &Path, template: &str, key: &str) -> Vec<u8> {
    let out = Command::new("xmlsec1")
        .args(["--sign", "--id-attr:id", "PrescriptionDocument", "--id-attr:Id", "KeyInfo", "--id-attr:Id", "SignedProperties"])
        .args(["--enabled-reference-uris", "same-doc", "--privkey-pem", key, "--output", "signed.xml", template])
        .current_dir(dir)
        .output()
        .expect("xmlsec1 is installed (tests/run.sh installs it)");
    assert!(out.status.success(), "xmlsec1 --sign: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join("signed.xml")).unwrap()
}

/// A self-signed certificate without keyUsage or hcRole, made by the openssl library.
fn plain_certificate(key: &PKey<Private>) -> Vec<u8> {
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "Not a doctor").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::from_unix(NOW - 86_400).unwrap()).unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::from_unix(NOW + 86_400).unwrap()).unwrap();
    b.set_serial_number(&openssl::bn::BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}
