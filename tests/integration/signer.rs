//! The remote signer (docs/design.md §3.11) against the real gateway: CSC `info`,
//! `credentials/list|info` and `signatures/signHash` with signatures checked by the openssl
//! command line, in both key backends (software, PKCS#11 on SoftHSM2); every refusal with its CSC
//! error, no signature, the token still usable when the refusal came before the consume, and a
//! `signature_refused` row in the signer's audit log; single use across signer instances; the
//! audit chain's verification.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::helpers::*;
use crate::signer_harness::*;
use crate::tokens::open_session;

/// The CSC error of a refusal: (status, `error`, `error_description`); asserts that no signature
/// came with it.
fn refusal((status, body): (u16, Value)) -> (u16, String, String) {
    assert!(body.get("signatures").is_none(), "a refusal carries no signature: {body}");
    let text = |k: &str| body[k].as_str().unwrap_or_else(|| panic!("no {k} in {body}")).to_owned();
    (status, text("error"), text("error_description"))
}

/// Asserts a 400 `invalid_request` whose description contains `description`.
fn assert_invalid(answer: (u16, Value), description: &str, case: &str) {
    let (status, error, text) = refusal(answer);
    assert_eq!((status, error.as_str()), (400, "invalid_request"), "{case}: {text}");
    assert!(text.contains(description), "{case}: {text:?} should say {description:?}");
}

/// Asserts that `answer` is a success with one signature per item of `data`, each verified by
/// openssl under the credential's certificate (and not over another item).
fn assert_signed(answer: &(u16, Value), cert: &[u8], data: &[&[u8]], pss: bool) {
    assert_eq!(answer.0, 200, "{}", answer.1);
    let sigs = signatures(&answer.1);
    assert_eq!(sigs.len(), data.len());
    for (i, (sig, item)) in sigs.iter().zip(data).enumerate() {
        assert!(openssl_verifies(cert, item, sig, pss), "signature {i} verifies");
        assert!(!openssl_verifies(cert, b"something else", sig, pss), "signature {i} is over its own data only");
    }
}

/// The JWT's three parts.
fn parts(token: &str) -> [String; 3] {
    let p: Vec<&str> = token.split('.').collect();
    [p[0].to_owned(), p[1].to_owned(), p[2].to_owned()]
}

/// The token's `jti`, read without verification (test bookkeeping only).
fn jti(token: &str) -> String {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token).unwrap().claims["jti"].as_str().unwrap().to_owned()
}

/// The token's claims signed again, ES256 with `typ` and `kid`, under a P-256 key the gateway's
/// JWKS does not have.
fn forged(app: &TestApp, token: &str, kid: &str) -> String {
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token).unwrap().claims;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("ninsho-signing+jwt".into());
    header.kid = Some(kid.to_owned());
    // Any P-256 key that is not the gateway's: EMR B's TLS key.
    let key = jsonwebtoken::EncodingKey::from_ec_der(&app.pki.emr_b.key_der);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// The token with its header replaced by `header` (its signature no longer fits, which the
/// checks named by the case must catch before the signature is even looked at).
fn with_header(token: &str, header: Value) -> String {
    let [_, payload, sig] = parts(token);
    format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

async fn signs_hashes_that_verify_with_openssl(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::new(db)).await;
    let (emr_a, emr_other) = (&app.pki.emr_a, &app.pki.emr_other);

    let (status, info) = signer.call(emr_a, "info", &json!({})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["authType"], json!(["external"]));
    assert!(info["methods"].as_array().unwrap().contains(&json!("signatures/signHash")));
    assert!(info["signAlgorithms"]["algos"].as_array().unwrap().contains(&json!(RSA_PKCS1_SHA256)));

    // A caller lists only the credentials of the clinics it serves.
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v["credentialIDs"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let (status, list) = signer.call(emr_a, "credentials/list", &json!({})).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), [COLLEAGUE_CREDENTIAL, CREDENTIAL]);
    let (_, list) = signer.call(emr_other, "credentials/list", &json!({})).await;
    assert_eq!(ids(&list), [OTHER_CLINIC_CREDENTIAL]);
    let (_, list) = signer.call(emr_a, "credentials/list", &json!({ "userID": DOCTOR_REG_NO, "credentialInfo": true })).await;
    assert_eq!(ids(&list), [CREDENTIAL]);
    assert_eq!(list["credentialInfos"][0]["credentialID"], CREDENTIAL);
    let (_, list) = signer.call(emr_a, "credentials/list", &json!({ "userID": OTHER_DOCTOR_REG_NO })).await;
    assert_eq!(ids(&list), Vec::<String>::new(), "another clinic's doctor is not listed by userID either");

    // credentials/info with the chain, certificate details and how to authorise.
    let body = json!({ "credentialID": CREDENTIAL, "certificates": "chain", "certInfo": true, "authInfo": true });
    let (status, info) = signer.call(emr_a, "credentials/info", &body).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["authMode"], "explicit");
    assert_eq!(info["SCAL"], "2");
    assert_eq!(info["key"]["status"], "enabled");
    assert_eq!(info["key"]["len"], 2048);
    assert!(info["key"]["algo"].as_array().unwrap().contains(&json!(RSA_PKCS1_SHA256)));
    assert_eq!(info["cert"]["status"], "valid");
    assert!(info["cert"]["subjectDN"].as_str().unwrap().contains("Taro Yamada"), "{info}");
    assert!(!info["cert"]["issuerDN"].as_str().unwrap().is_empty());
    assert!(!info["cert"]["serialNumber"].as_str().unwrap().is_empty());
    for field in ["validFrom", "validTo"] {
        let t = info["cert"][field].as_str().unwrap();
        assert!(t.len() == 15 && t.ends_with('Z'), "{field} is GeneralizedTime: {t}");
    }
    assert_eq!(info["auth"]["mode"], "explicit");
    assert_eq!(info["auth"]["objects"][0]["id"], "SAD");
    let certs = certificates(&signer, CREDENTIAL).await;
    assert_eq!(certs.len(), 2, "the credential's certificate and its CA");
    let single = signer.call(emr_a, "credentials/info", &json!({ "credentialID": CREDENTIAL })).await.1;
    assert_eq!(single["cert"]["certificates"].as_array().unwrap().len(), 1, "certificates defaults to single");
    // The chain verifies with openssl as well: the leaf under the demo signing CA.
    let dir = tempfile::tempdir().unwrap();
    let pem = |der: &[u8]| format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(der));
    std::fs::write(dir.path().join("leaf.pem"), pem(&certs[0])).unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem(&certs[1])).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));

    // PKCS#1 v1.5: two documents under one token bound to both hashes.
    let docs: [&[u8]; 2] = [b"<Document>prescription 1</Document>", b"<Document>prescription 2</Document>"];
    let token = issue_token(&app, Some(&docs)).await;
    let answer = signer.sign(CREDENTIAL, &token, &docs).await;
    assert_signed(&answer, &certs[0], &docs, false);

    // RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32), with and without the explicit parameters.
    for params in [None, Some("MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIDAgEg")] {
        let doc: [&[u8]; 1] = [b"<Document>PSS</Document>"];
        let token = issue_token(&app, Some(&doc)).await;
        let mut body = sign_request(CREDENTIAL, &token, &doc);
        body["signAlgo"] = json!(RSA_PSS);
        if let Some(p) = params {
            body["signAlgoParams"] = json!(p);
        }
        let answer = signer.call(emr_a, "signatures/signHash", &body).await;
        assert_signed(&answer, &certs[0], &doc, true);
    }

    // Each signature operation is audited with the credential, the token's jti and the count.
    let created: Vec<Value> = signer.audit().await.into_iter().filter(|r| r["event"] == "signature_created").collect();
    assert_eq!(created.len(), 3);
    assert_eq!(created[0]["outcome"], "success");
    assert_eq!(created[0]["clinic_id"], CLINIC);
    assert_eq!(created[0]["detail"]["credential"], CREDENTIAL);
    assert_eq!(created[0]["detail"]["jti"], jti(&token), "the first was the two-document token's");
    assert_eq!((created[0]["detail"]["hashes"].as_i64(), created[2]["detail"]["hashes"].as_i64()), (Some(2), Some(1)));
    assert_eq!(created[2]["detail"]["sign_algo"], RSA_PSS);
    let log = signer.admin_ok(&["admin", "audit", "export"]).await;
    assert!(!log.contains(&token) && !log.contains(&parts(&token)[2]), "tokens are never logged");

    // The chain verifies; a changed row is found.
    let out = signer.admin_ok(&["admin", "audit", "verify"]).await;
    assert!(out.contains("audit log intact"), "{out}");
    let seq = created[1]["seq"].as_i64().unwrap();
    let changed = signer.execute(&format!("UPDATE audit_log SET detail = '{{\"hashes\":99}}' WHERE seq = {seq}")).await;
    assert_eq!(changed, 1);
    let (code, out, err) = signer.cli(&["admin", "audit", "verify"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("Modified {{ seq: {seq} }}")), "{err}");
    signer.stop().await;
    app.stop().await;
}

async fn refusals_before_the_consume_change_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::new(db)).await;
    let doc: [&[u8]; 1] = [b"<Document>refusals</Document>"];
    let token = issue_token(&app, Some(&doc)).await;
    let good = sign_request(CREDENTIAL, &token, &doc);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        change(&mut body);
        body
    };
    let [header, payload, sig] = parts(&token);
    let real_header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&header).unwrap()).unwrap();
    let kid = real_header["kid"].as_str().unwrap().to_owned();
    // One character of the signature changed (in the middle: the last one carries spare bits).
    let mut tampered_sig = sig.clone().into_bytes();
    tampered_sig[20] = if tampered_sig[20] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{header}.{payload}.{}", String::from_utf8(tampered_sig).unwrap());
    let other_hash = STANDARD.encode(Sha256::digest(b"a document the doctor did not authorise"));
    let good_hash = good["hashes"][0].clone();
    let emr_a = &app.pki.emr_a;
    let emr_b = &app.pki.emr_b;

    // (case, caller, body, status, error_description contains, audited reason)
    let cases: Vec<(&str, &devpki::Leaf, Value, u16, &str, &str)> = vec![
        ("tampered signature", emr_a, with(&|b| b["SAD"] = json!(tampered)), 400, "Invalid parameter SAD: bad signature", "sad_invalid"),
        // The gateway's claims under a key the JWKS does not have, with the gateway's kid: changed
        // claims cannot be signed by anyone else, so they fail the same way.
        ("forged with the gateway's kid", emr_a, with(&|b| b["SAD"] = json!(forged(&app, &token, &kid))), 400, "bad signature", "sad_invalid"),
        ("unknown kid", emr_a, with(&|b| b["SAD"] = json!(forged(&app, &token, "not-a-gateway-key"))), 400, "unknown kid", "sad_invalid"),
        // The header is checked before any key: another typ, alg or a key in the header is refused
        // for that reason (the signature, no longer matching, is not reached).
        (
            "wrong typ",
            emr_a,
            with(&|b| b["SAD"] = json!(with_header(&token, json!({ "alg": "ES256", "typ": "JWT", "kid": kid })))),
            400,
            "not a signing token (typ)",
            "sad_invalid",
        ),
        (
            "alg HS256",
            emr_a,
            with(&|b| b["SAD"] = json!(with_header(&token, json!({ "alg": "HS256", "typ": "ninsho-signing+jwt", "kid": kid })))),
            400,
            "algorithm is not ES256",
            "sad_invalid",
        ),
        (
            "key in the header",
            emr_a,
            with(&|b| {
                b["SAD"] = json!(with_header(&token, json!({ "alg": "ES256", "typ": "ninsho-signing+jwt", "kid": kid, "jku": "https://evil.example/jwks" })))
            }),
            400,
            "key material or extensions in the header",
            "sad_invalid",
        ),
        ("not a JWT", emr_a, with(&|b| b["SAD"] = json!("not-a-token")), 400, "not a JWT", "sad_invalid"),
        ("hash not the token's", emr_a, with(&|b| b["hashes"] = json!([other_hash])), 400, "Hash is not authorized by the SAD", "hash_not_authorized"),
        (
            "token's hash and another",
            emr_a,
            with(&|b| b["hashes"] = json!([good_hash, other_hash])),
            400,
            "Hash is not authorized by the SAD",
            "hash_not_authorized",
        ),
        // The same hash twice: the set equals the token's, but two signatures exceed its one.
        (
            "more hashes than num_signatures",
            emr_a,
            with(&|b| b["hashes"] = json!([good_hash, good_hash])),
            400,
            "Numbers of signatures is too high",
            "too_many_signatures",
        ),
        (
            "another doctor's credential",
            emr_a,
            with(&|b| b["credentialID"] = json!(COLLEAGUE_CREDENTIAL)),
            400,
            "not the credential of the SAD's doctor",
            "other_doctor",
        ),
        (
            "another clinic's credential",
            emr_a,
            with(&|b| b["credentialID"] = json!(OTHER_CLINIC_CREDENTIAL)),
            400,
            "Invalid parameter credentialID",
            "unknown_credential",
        ),
        ("unknown credential", emr_a, with(&|b| b["credentialID"] = json!("cred-none")), 400, "Invalid parameter credentialID", "unknown_credential"),
        ("bound to EMR A, presented by EMR B", emr_b, good.clone(), 400, "issued to another client certificate", "cnf_mismatch"),
        ("unknown hash algorithm", emr_a, with(&|b| b["hashAlgorithmOID"] = json!("1.2.840.113549.2.5")), 400, "Invalid parameter hashAlgorithmOID", "hash_algorithm"),
        ("unknown signAlgo", emr_a, with(&|b| b["signAlgo"] = json!("1.2.840.10045.4.3.2")), 400, "Invalid parameter signAlgo", "sign_algorithm"),
        ("PSS parameters not offered", emr_a, with(&|b| {
            b["signAlgo"] = json!(RSA_PSS);
            b["signAlgoParams"] = json!("MAA=");
        }), 400, "Invalid parameter signAlgoParams", "sign_algorithm"),
        ("malformed base64", emr_a, with(&|b| b["hashes"] = json!(["not base64!"])), 400, "Invalid Base64 hash string parameter", "bad_base64"),
        ("base64url instead of base64", emr_a, with(&|b| b["hashes"] = json!([URL_SAFE_NO_PAD.encode([0xfb; 32])])), 400, "Invalid Base64", "bad_base64"),
        ("digest of 20 bytes", emr_a, with(&|b| b["hashes"] = json!([STANDARD.encode([1u8; 20])])), 400, "Invalid digest value length", "digest_length"),
        ("no hashes", emr_a, with(&|b| b["hashes"] = json!([])), 400, "Empty hash array", "no_hashes"),
        (
            "more hashes than the signer takes",
            emr_a,
            with(&|b| b["hashes"] = json!(vec![good_hash.clone(); 65])),
            400,
            "Numbers of signatures is too high",
            "too_many_hashes",
        ),
        ("operationMode A", emr_a, with(&|b| b["operationMode"] = json!("A")), 400, "Invalid parameter operationMode", "operation_mode"),
        ("no SAD", emr_a, with(&|b| _ = b.as_object_mut().unwrap().remove("SAD")), 400, "Missing (or invalid type) string parameter SAD", "malformed_request"),
        ("hashes not an array", emr_a, with(&|b| b["hashes"] = json!("AAAA")), 400, "Missing (or invalid type) array parameter hashes", "malformed_request"),
    ];
    let mut expected_reasons = Vec::new();
    for (case, caller, body, status, description, reason) in &cases {
        let answer = signer.call(caller, "signatures/signHash", body).await;
        assert_eq!(answer.0, *status, "{case}: {}", answer.1);
        assert_invalid(answer, description, case);
        expected_reasons.push(reason.to_string());
    }
    // Another clinic's credential gets the very answer an unknown one gets: nothing tells a
    // caller that it exists.
    let other = signer.call(emr_a, "signatures/signHash", &with(&|b| b["credentialID"] = json!(OTHER_CLINIC_CREDENTIAL))).await;
    let unknown = signer.call(emr_a, "signatures/signHash", &with(&|b| b["credentialID"] = json!("cred-none"))).await;
    assert_eq!(other, unknown);
    expected_reasons.extend(["unknown_credential".to_owned(), "unknown_credential".to_owned()]);

    // An oversized body: 413 before any check.
    let big = with(&|b| b["clientData"] = json!("x".repeat(300 * 1024)));
    let (status, error, _) = refusal(signer.call(emr_a, "signatures/signHash", &big).await);
    assert_eq!((status, error.as_str()), (413, "invalid_request"));
    expected_reasons.push("malformed_request".to_owned());
    // Not JSON.
    let res = signer
        .client(emr_a)
        .post(format!("https://localhost:{}/csc/v2/signatures/signHash", signer.port))
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    expected_reasons.push("malformed_request".to_owned());

    // Every refusal is audited, in order, and the ones that had verified the SAD name its jti.
    let rows: Vec<Value> = signer.audit().await.into_iter().filter(|r| r["event"] == "signature_refused").collect();
    let reasons: Vec<String> = rows.iter().map(|r| r["detail"]["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, expected_reasons);
    let cnf = rows.iter().find(|r| r["detail"]["reason"] == "cnf_mismatch").unwrap();
    assert_eq!((&cnf["detail"]["jti"], &cnf["detail"]["client"], &cnf["clinic_id"]), (&json!(jti(&token)), &json!("emr-b"), &json!(CLINIC)));
    let forged_row = &rows[1];
    assert_eq!(forged_row["detail"]["jti"], Value::Null, "an unverified token names nothing");
    assert!(signer.audit().await.iter().all(|r| r["event"] != "signature_created"), "nothing was signed");

    // None of them consumed the token: it signs now.
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    assert_signed(&signer.sign(CREDENTIAL, &token, &doc).await, &cert, &doc, false);
    signer.stop().await;
    app.stop().await;
}

async fn the_hashes_must_be_the_tokens_as_a_set(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    let docs: [&[u8]; 2] = [b"<Document>one</Document>", b"<Document>two</Document>"];
    let token = issue_token(&app, Some(&docs)).await;
    // A subset of the authorised hashes is refused: the token authorises exactly its set.
    assert_invalid(signer.sign(CREDENTIAL, &token, &docs[..1]).await, "Hash is not authorized by the SAD", "subset");
    // The set in another order is the same set.
    let reversed: [&[u8]; 2] = [docs[1], docs[0]];
    assert_signed(&signer.sign(CREDENTIAL, &token, &reversed).await, &cert, &reversed, false);

    // A token without hashes authorises none (SCAL2: the hashes are bound to the SAD).
    let unbound = issue_token(&app, None).await;
    assert_invalid(signer.sign(CREDENTIAL, &unbound, &docs[..1]).await, "Hash is not authorized by the SAD", "unbound");
    assert_eq!(signer.refusals().await, ["hash_not_authorized", "hashes_not_bound"]);
    signer.stop().await;
    app.stop().await;
}

async fn sads_of_another_issuer_audience_or_time_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    // A token with other `iss` or `aud` cannot be made under the gateway's key, so these two
    // signers expect other values of the gateway's real tokens instead: each exercises its check
    // (jsonwebtoken's iss and aud validation) on a correctly signed token.
    let other_iss = TestSigner::spawn(&app, SignerSetup { issuer: Some("https://gateway.example".into()), ..SignerSetup::minimal(db) }).await;
    let other_aud =
        TestSigner::spawn(&app, SignerSetup { audience: Some("urn:ninsho:another-signer".into()), ..SignerSetup::minimal(db) }).await;
    let doc: [&[u8]; 1] = [b"<Document>time</Document>"];
    let token = issue_token(&app, Some(&doc)).await;

    assert_invalid(other_iss.sign(CREDENTIAL, &token, &doc).await, "Invalid parameter SAD: wrong issuer", "iss");
    assert_invalid(other_aud.sign(CREDENTIAL, &token, &doc).await, "Invalid parameter SAD: wrong audience", "aud");
    assert_eq!(other_iss.refusals().await, ["sad_invalid"]);
    assert_eq!(other_aud.refusals().await, ["sad_invalid"]);

    // Expired: exp is iat + 120 s. The clock moves; nothing sleeps.
    app.clock.advance(time::Duration::seconds(120));
    assert_invalid(signer.sign(CREDENTIAL, &token, &doc).await, "SAD expired", "expired");
    // Not yet valid: nbf is the issuing second.
    app.clock.advance(time::Duration::seconds(-121));
    assert_invalid(signer.sign(CREDENTIAL, &token, &doc).await, "not yet valid", "nbf");
    assert_eq!(signer.refusals().await, ["sad_expired", "sad_not_yet_valid"]);

    // Back in its lifetime, the token was consumed by none of those and signs.
    app.clock.advance(time::Duration::seconds(1));
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    assert_signed(&signer.sign(CREDENTIAL, &token, &doc).await, &cert, &doc, false);
    for s in [signer, other_iss, other_aud] {
        s.stop().await;
    }
    app.stop().await;
}

async fn a_sad_signs_once_on_any_signer_instance(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    // Two instances sharing nothing but the gateway: their own databases, keys and JWKS caches.
    let first = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let second = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let doc: [&[u8]; 1] = [b"<Document>once</Document>"];
    let token = issue_token(&app, Some(&doc)).await;
    let cert = certificates(&first, CREDENTIAL).await.remove(0);
    assert_signed(&first.sign(CREDENTIAL, &token, &doc).await, &cert, &doc, false);
    assert_invalid(second.sign(CREDENTIAL, &token, &doc).await, "Invalid parameter SAD: already used", "replay on another instance");
    assert_invalid(first.sign(CREDENTIAL, &token, &doc).await, "Invalid parameter SAD: already used", "replay on the same instance");
    let replay = second.audit().await.into_iter().find(|r| r["event"] == "signature_refused").unwrap();
    assert_eq!((&replay["detail"]["reason"], &replay["detail"]["jti"]), (&json!("sad_replayed"), &json!(jti(&token))));
    assert_eq!(first.refusals().await, ["sad_replayed"]);

    // At the same moment on both: exactly one signs.
    let token = issue_token(&app, Some(&doc)).await;
    let (a, b) = tokio::join!(first.sign(CREDENTIAL, &token, &doc), second.sign(CREDENTIAL, &token, &doc));
    let signed = [&a, &b].iter().filter(|r| r.0 == 200).count();
    assert_eq!(signed, 1, "{a:?} {b:?}");
    let refused = if a.0 == 200 { b } else { a };
    assert_invalid(refused, "already used", "concurrent replay");
    first.stop().await;
    second.stop().await;
    app.stop().await;
}

async fn disabling_a_credential_or_a_caller_takes_effect_at_once(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let doc: [&[u8]; 1] = [b"<Document>disable</Document>"];
    let token = issue_token(&app, Some(&doc)).await;

    signer.admin_ok(&["admin", "credential", "disable", CREDENTIAL]).await;
    assert_invalid(signer.sign(CREDENTIAL, &token, &doc).await, "is disabled", "disabled credential");
    let (_, info) = signer.call(&app.pki.emr_a, "credentials/info", &json!({ "credentialID": CREDENTIAL })).await;
    assert_eq!(info["key"]["status"], "disabled");
    let (_, list) = signer.call(&app.pki.emr_a, "credentials/list", &json!({ "onlyValid": true })).await;
    assert_eq!(list["credentialIDs"], json!([]));
    signer.admin_ok(&["admin", "credential", "enable", CREDENTIAL]).await;

    // A disabled caller, an unregistered one (the gateway's signer certificate: same CA, never
    // added here): 403 access_denied, audited as refused API calls.
    signer.admin_ok(&["admin", "client", "disable", "emr-a"]).await;
    let (status, error, text) = refusal(signer.sign(CREDENTIAL, &token, &doc).await);
    assert_eq!((status, error.as_str()), (403, "access_denied"), "{text}");
    assert!(text.contains("disabled"), "{text}");
    let (status, error, text) = refusal(signer.call(&app.pki.signer, "signatures/signHash", &sign_request(CREDENTIAL, &token, &doc)).await);
    assert_eq!((status, error.as_str()), (403, "access_denied"), "{text}");
    assert!(text.contains("not registered"), "{text}");
    let (status, _, _) = refusal(signer.call(&app.pki.signer, "credentials/list", &json!({})).await);
    assert_eq!(status, 403);
    // A certificate from a CA the signer does not trust does not get past the handshake.
    let untrusted = signer
        .client(&app.pki.clinic_client)
        .post(format!("https://localhost:{}/csc/v2/info", signer.port))
        .json(&json!({}))
        .send()
        .await;
    assert!(untrusted.is_err(), "{untrusted:?}");
    signer.admin_ok(&["admin", "client", "enable", "emr-a"]).await;

    let audit = signer.audit().await;
    let refused: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["outcome"] == "failure")
        .map(|r| (r["event"].as_str().unwrap(), r["detail"]["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("signature_refused", "credential_disabled"),
            ("api_refused", "client_disabled"),
            ("api_refused", "client_unknown"),
            ("api_refused", "client_unknown"),
        ]
    );
    let admin_events: Vec<&str> = audit.iter().filter(|r| r["detail"]["actor"] == "admin").map(|r| r["event"].as_str().unwrap()).collect();
    assert!(admin_events.ends_with(&["credential_disabled", "credential_enabled", "client_disabled", "client_enabled"]), "{admin_events:?}");

    // Enabled again, both sign at once, with the same token.
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    assert_signed(&signer.sign(CREDENTIAL, &token, &doc).await, &cert, &doc, false);
    signer.stop().await;
    app.stop().await;
}

async fn the_gateway_down_signs_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let cert = certificates(&signer, CREDENTIAL).await.remove(0);
    let doc: [&[u8]; 1] = [b"<Document>outage</Document>"];

    // A signer whose gateway is a closed port can fetch no keys: 503, and the token is untouched.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cut_off = TestSigner::spawn(&app, SignerSetup { gateway_url: Some(format!("https://localhost:{closed}/")), ..SignerSetup::minimal(db) }).await;
    let token = issue_token(&app, Some(&doc)).await;
    let answer = cut_off.sign(CREDENTIAL, &token, &doc).await;
    let (status, error, _) = refusal(answer);
    assert_eq!((status, error.as_str()), (503, "temporarily_unavailable"));
    assert_eq!(cut_off.refusals().await, ["gateway_unavailable"]);
    assert_signed(&signer.sign(CREDENTIAL, &token, &doc).await, &cert, &doc, false);

    // The gateway stops after this signer cached its keys: the SAD verifies offline, but without
    // the consume nothing is signed.
    let token = issue_token(&app, Some(&doc)).await;
    let emr_a = signer.client(&app.pki.emr_a);
    app.stop().await;
    let res = emr_a
        .post(format!("https://localhost:{}/csc/v2/signatures/signHash", signer.port))
        .json(&sign_request(CREDENTIAL, &token, &doc))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let (status, error, text) = refusal((503, res.json().await.unwrap()));
    assert_eq!((status, error.as_str()), (503, "temporarily_unavailable"), "{text}");
    assert!(text.contains("nothing was signed"), "{text}");
    let rows: Vec<Value> = signer.audit().await.into_iter().filter(|r| r["event"] == "signature_refused").collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0]["detail"]["reason"], &rows[0]["detail"]["jti"]), (&json!("gateway_unavailable"), &json!(jti(&token))));
    assert_eq!(signer.audit().await.iter().filter(|r| r["event"] == "signature_created").count(), 1);
    cut_off.stop().await;
    signer.stop().await;
}

async fn pkcs11_keys_sign_and_refuse(db: Db) {
    let module = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    // Re-runs this test in a child process that sees a fresh SoftHSM2 token store.
    let Some(hsm) = keys::testing::in_softhsm_process(&format!("signer::{module}::pkcs11_keys_sign_and_refuse")) else { return };
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup { keys: KeyBackend::Pkcs11(hsm.config()), ..SignerSetup::minimal(db) }).await;
    let listed = signer.admin_ok(&["admin", "credential", "list"]).await;
    assert!(listed.contains("pkcs11 RSA-2048"), "{listed}");
    let certs = certificates(&signer, CREDENTIAL).await;
    assert_eq!(certs.len(), 2);

    let docs: [&[u8]; 2] = [b"<Document>HSM 1</Document>", b"<Document>HSM 2</Document>"];
    let token = issue_token(&app, Some(&docs)).await;
    // Refusals before the consume leave the token usable.
    assert_invalid(signer.sign(CREDENTIAL, &token, &docs[..1]).await, "Hash is not authorized by the SAD", "subset");
    let by_b = signer.call(&app.pki.emr_b, "signatures/signHash", &sign_request(CREDENTIAL, &token, &docs)).await;
    assert_invalid(by_b, "issued to another client certificate", "cnf");
    assert_signed(&signer.sign(CREDENTIAL, &token, &docs).await, &certs[0], &docs, false);
    assert_invalid(signer.sign(CREDENTIAL, &token, &docs).await, "already used", "replay");

    let doc: [&[u8]; 1] = [b"<Document>HSM PSS</Document>"];
    let token = issue_token(&app, Some(&doc)).await;
    let mut body = sign_request(CREDENTIAL, &token, &doc);
    body["signAlgo"] = json!(RSA_PSS);
    assert_signed(&signer.call(&app.pki.emr_a, "signatures/signHash", &body).await, &certs[0], &doc, true);
    assert_eq!(signer.refusals().await, ["hash_not_authorized", "cnf_mismatch", "sad_replayed"]);
    let out = signer.admin_ok(&["admin", "audit", "verify"]).await;
    assert!(out.contains("audit log intact"), "{out}");
    signer.stop().await;
    app.stop().await;
}

/// The ops listener: `/healthz`, `/readyz` (a committed write), and `/metrics` counting requests
/// by endpoint, outcome and CSC error, signatures, and consume round trips.
async fn the_ops_listener_reports_health_and_counts_requests(db: Db) {
    let app = TestApp::spawn(db).await;
    open_session(&app).await;
    let signer = TestSigner::spawn(&app, SignerSetup::minimal(db)).await;
    let ops = |path: &str| format!("http://127.0.0.1:{}{path}", signer.ops_port);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), ops(path));
        async move {
            let res = http.get(url).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get("/readyz").await, (200, "ready".to_owned()));

    let data: &[u8] = b"prescription for the metrics";
    let token = issue_token(&app, Some(&[data])).await;
    // A refusal before the consume (another hash), then the signature.
    let (status, _) = signer.sign(CREDENTIAL, &token, &[b"another document"]).await;
    assert_eq!(status, 400);
    let (status, body) = signer.sign(CREDENTIAL, &token, &[data]).await;
    assert_eq!(status, 200, "{body}");

    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "ninsho_signer_signatures_total 1",
        r#"ninsho_signer_requests_total{endpoint="signatures/signHash",outcome="ok",error=""} 1"#,
        r#"ninsho_signer_requests_total{endpoint="signatures/signHash",outcome="refused",error="invalid_request"} 1"#,
        "ninsho_signer_consume_seconds_count 1",
        "ninsho_signer_ready 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    signer.stop().await;
    app.stop().await;
}

db_tests!(
    signs_hashes_that_verify_with_openssl,
    refusals_before_the_consume_change_nothing,
    the_hashes_must_be_the_tokens_as_a_set,
    sads_of_another_issuer_audience_or_time_are_refused,
    a_sad_signs_once_on_any_signer_instance,
    disabling_a_credential_or_a_caller_takes_effect_at_once,
    the_gateway_down_signs_nothing,
    pkcs11_keys_sign_and_refuse,
    the_ops_listener_reports_health_and_counts_requests,
);
