//! signDoc and document verification at the remote signer (docs/design.md §3.12) against the real
//! gateway and a local TSA: the signed prescription verifies with `xmlsec1` (the independent
//! XMLDSig oracle), with `ninsho-signer verify FILE` and with `POST /api/v1/verify`; every refusal
//! before the consume leaves the token usable and is audited; revoked or stale revocation data
//! signs nothing; a signer without a TSA offers no signDoc.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::signer_harness::*;
use crate::tokens::open_session;

/// The sample unsigned prescription the demo signs (signer/data/sample-prescription.xml).
pub const SAMPLE: &[u8] = include_bytes!("../../signer/data/sample-prescription.xml");

/// A signDoc request for `documents` with the profile's parameters.
pub fn sign_doc_request(credential: &str, sad: &str, documents: &[&[u8]]) -> Value {
    json!({
        "credentialID": credential,
        "SAD": sad,
        "documents": documents.iter().map(|d| json!({
            "document": STANDARD.encode(d),
            "signature_format": "X",
            "conformance_level": "AdES-B-LT",
            "signed_envelope_property": "Internally detached",
            "signAlgo": RSA_PKCS1_SHA256,
        })).collect::<Vec<_>>(),
        "operationMode": "S",
    })
}

/// The signed documents of a successful answer.
fn signed_documents(answer: &(u16, Value)) -> Vec<Vec<u8>> {
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["DocumentWithSignature"]
        .as_array()
        .unwrap_or_else(|| panic!("no DocumentWithSignature: {}", answer.1))
        .iter()
        .map(|d| STANDARD.decode(d.as_str().unwrap()).unwrap())
        .collect()
}

/// `xmlsec1 --verify` of `document` with the signer's certificate `cert_der` (the XMLDSig core:
/// references and signature value), the profile's id attributes registered. Ok, or its output.
pub fn xmlsec1_verifies(document: &[u8], cert_der: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (doc, cert) = (dir.path().join("signed.xml"), dir.path().join("signer.pem"));
    std::fs::write(&doc, document).unwrap();
    std::fs::write(&cert, certificate_pem(cert_der)).unwrap();
    let out = std::process::Command::new("xmlsec1")
        .args(["--verify", "--id-attr:id", "PrescriptionDocument", "--id-attr:Id", "KeyInfo", "--id-attr:Id", "SignedProperties"])
        .args(["--enabled-reference-uris", "same-doc", "--pubkey-cert-pem"])
        .arg(&cert)
        .arg(&doc)
        .output()
        .expect("xmlsec1 is installed (tests/run.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && text.contains("OK") { Ok(()) } else { Err(text) }
}

/// A DER certificate as PEM.
pub fn certificate_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

async fn a_signed_prescription_verifies_with_xmlsec1_and_our_verifier(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup { signdoc: true, ..SignerSetup::new(db) }).await;
    let emr_a = &app.pki.emr_a;

    let (status, info) = signer.call(emr_a, "info", &json!({})).await;
    assert_eq!(status, 200, "{info}");
    assert!(info["methods"].as_array().unwrap().contains(&json!("signatures/signDoc")), "{info}");

    let sad = issue_token(&app, Some(&[SAMPLE])).await;
    let answer = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await;
    let documents = signed_documents(&answer);
    assert_eq!(documents.len(), 1);
    let signed = &documents[0];
    let text = String::from_utf8(signed.clone()).unwrap();
    for part in ["PrescriptionSign", "SigningCertificateV2", "EncapsulatedTimeStamp", "TimeStampValidationData", "CRLValues"] {
        assert!(text.contains(part), "the signed document has {part}");
    }

    // The independent oracle, with the credential's certificate.
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    xmlsec1_verifies(signed, &cert).unwrap_or_else(|e| panic!("xmlsec1 refuses our signature:\n{e}\n{text}"));
    let tampered = text.replacen("<PrescriptionDocument id=\"PrescriptionDocument\">U", "<PrescriptionDocument id=\"PrescriptionDocument\">V", 1);
    assert_ne!(tampered, text);
    assert!(xmlsec1_verifies(tampered.as_bytes(), &cert).is_err(), "xmlsec1 refuses a changed prescription");

    // ninsho-signer verify FILE, with the configured anchors.
    let file = signer.path("signed.xml");
    std::fs::write(&file, signed).unwrap();
    let (code, out, err) = signer.cli(&["verify", &file]).await;
    assert_eq!(code, 0, "verify FILE: {out}{err}");
    assert!(out.contains("Valid") && out.contains("有効"), "{out}");
    let bad = signer.path("tampered.xml");
    std::fs::write(&bad, &tampered).unwrap();
    let (code, out, _) = signer.cli(&["verify", &bad, "--json"]).await;
    assert_eq!(code, 1, "a changed prescription fails: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verdict"], "invalid", "{report}");

    // POST /api/v1/verify: the same verdicts.
    let verify = |document: Vec<u8>| {
        let client = signer.client(emr_a);
        let url = format!("https://localhost:{}/api/v1/verify", signer.port);
        async move {
            let res = client.post(url).json(&json!({ "document": STANDARD.encode(document) })).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, report) = verify(signed.clone()).await;
    assert_eq!((status, report["verdict"].as_str()), (200, Some("valid")), "{report}");
    let (status, report) = verify(tampered.into_bytes()).await;
    assert_eq!((status, report["verdict"].as_str()), (200, Some("invalid")), "{report}");

    // Single use, and audited once.
    let again = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await;
    assert_eq!(again.0, 400, "{}", again.1);
    assert!(again.1["error_description"].as_str().unwrap().contains("already used"), "{}", again.1);
    let rows = signer.audit().await;
    let created: Vec<&Value> = rows.iter().filter(|r| r["event"] == "signature_created").collect();
    assert_eq!(created.len(), 1, "{rows:?}");
    assert_eq!((created[0]["detail"]["signature_format"].as_str(), created[0]["detail"]["documents"].as_i64()), (Some("X"), Some(1)));
    assert_eq!(signer.refusals().await, ["sad_replayed"]);
    signer.stop().await;
    app.stop().await;
}

async fn refusals_before_the_consume_leave_the_token_usable(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup { signdoc: true, ..SignerSetup::new(db) }).await;
    let emr_a = &app.pki.emr_a;
    let sad = issue_token(&app, Some(&[SAMPLE])).await;
    let good = sign_doc_request(CREDENTIAL, &sad, &[SAMPLE]);
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let mut digests = good.clone();
    digests["documentDigests"] = json!([{ "hashes": ["AAAA"], "hashAlgorithmOID": SHA256_OID }]);
    let other: &[u8] = b"<Document><Prescription/></Document>";
    let cases = [
        (with("/documents/0/signature_format", json!("C")), "signature_format", "signature_format"),
        (with("/documents/0/conformance_level", json!("AdES-B-B")), "conformance_level", "conformance_level"),
        (with("/documents/0/signed_envelope_property", json!("Enveloped")), "signed_envelope_property", "signed_envelope_property"),
        (with("/documents/0/signAlgo", json!(RSA_PSS)), "signAlgo", "sign_algorithm"),
        (with("/documents/0/document", json!("not base64!")), "Base64", "bad_base64"),
        (with("/documents", json!([])), "documents", "no_documents"),
        (digests, "documentDigests", "document_digests"),
        (sign_doc_request(CREDENTIAL, &sad, &[other]), "not authorized", "hash_not_authorized"),
        (sign_doc_request(CREDENTIAL, &sad, &[SAMPLE, SAMPLE]), "too high", "too_many_signatures"),
    ];
    let mut reasons = Vec::new();
    for (body, description, reason) in cases {
        let (status, answer) = signer.call(emr_a, "signatures/signDoc", &body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")), "{reason}: {answer}");
        let text = answer["error_description"].as_str().unwrap();
        assert!(text.contains(description), "{reason}: {text:?} should say {description:?}");
        assert!(answer.get("DocumentWithSignature").is_none());
        reasons.push(reason);
    }
    // A document that is not an e-prescription, under a token bound to it: refused before the
    // consume, so that token still signs a hash.
    let sad_other = issue_token(&app, Some(&[other])).await;
    let (status, answer) = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad_other, &[other])).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error_description"].as_str().unwrap().contains("documents[0]"), "{answer}");
    reasons.push("document_structure");
    let (status, answer) = signer.sign(CREDENTIAL, &sad_other, &[other]).await;
    assert_eq!(status, 200, "the refused signDoc left its token usable: {answer}");
    // The first token, after all its refusals, still signs the document.
    signed_documents(&signer.call(emr_a, "signatures/signDoc", &good).await);
    assert_eq!(signer.refusals().await, reasons);
    signer.stop().await;
    app.stop().await;
}

async fn revoked_or_stale_revocation_data_signs_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup { signdoc: true, ..SignerSetup::new(db) }).await;
    let emr_a = &app.pki.emr_a;
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    let serial = x509_parser::parse_x509_certificate(&cert).unwrap().1.raw_serial_as_string().replace(':', "");

    // The signing CA revokes the doctor's certificate: refused before the consume.
    let crl = signer.path("signing-ca.crl");
    signer.admin_ok(&["admin", "ca", "crl", "--out", &crl, "--revoke-serial", &serial]).await;
    let sad = issue_token(&app, Some(&[SAMPLE])).await;
    let (status, answer) = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await;
    assert_eq!((status, answer["error_description"].as_str()), (400, Some("Signing certificate is revoked")), "{answer}");

    // A CRL past its nextUpdate (the CA's own, issued for last week): 503, nothing signed, the
    // token kept.
    let ca = keys::certificate::SigningCa::load(
        &std::fs::read_to_string(signer.path("signing-ca.pem")).unwrap(),
        &std::fs::read_to_string(signer.path("signing-ca.key")).unwrap(),
    )
    .unwrap();
    let now = app.clock.now();
    std::fs::write(&crl, ca.crl(now - time::Duration::days(8), now - time::Duration::days(1), &[]).unwrap()).unwrap();
    let sad = issue_token(&app, Some(&[SAMPLE])).await;
    let (status, answer) = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await;
    assert_eq!((status, answer["error"].as_str()), (503, Some("temporarily_unavailable")), "{answer}");
    // A current CRL again: the same token signs.
    signer.admin_ok(&["admin", "ca", "crl", "--out", &crl]).await;
    signed_documents(&signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await);
    assert_eq!(signer.refusals().await, ["certificate_revoked", "validation_data"]);
    signer.stop().await;
    app.stop().await;
}

async fn a_signer_without_a_tsa_offers_no_sign_doc(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let emr_a = &app.pki.emr_a;
    let (_, info) = signer.call(emr_a, "info", &json!({})).await;
    assert!(!info["methods"].as_array().unwrap().contains(&json!("signatures/signDoc")), "{info}");
    let sad = issue_token(&app, Some(&[SAMPLE])).await;
    let (status, answer) = signer.call(emr_a, "signatures/signDoc", &sign_doc_request(CREDENTIAL, &sad, &[SAMPLE])).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error_description"].as_str().unwrap().contains("time-stamping authority"), "{answer}");
    // Not consumed: the token signs the document's hash with signHash.
    let (status, answer) = signer.sign(CREDENTIAL, &sad, &[SAMPLE]).await;
    assert_eq!(status, 200, "{answer}");
    signer.stop().await;
    app.stop().await;
}

db_tests!(
    a_signed_prescription_verifies_with_xmlsec1_and_our_verifier,
    refusals_before_the_consume_leave_the_token_usable,
    revoked_or_stale_revocation_data_signs_nothing,
    a_signer_without_a_tsa_offers_no_sign_doc,
);
