//! RFC 3161 against OpenSSL's `ts` command, the independent implementation: our responder's replies
//! verify with `openssl ts -verify`, OpenSSL's replies (its own TSA, made with openssl commands)
//! are accepted by `accept_reply` and `verify`, OpenSSL's queries are answered by our responder;
//! every bad token is refused with its code; the HTTP client against the responder and against
//! servers that answer wrongly.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use trust::{AnchorSpec, Policies, Revocation, TrustStore};
use tsp::responder::{Options, Responder};

/// A fixed time: 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn store(anchor_der: Vec<u8>, crls: Option<Vec<Vec<u8>>>) -> TrustStore {
    let revocation = crls.map_or(Revocation::None, Revocation::Crl);
    TrustStore::new(vec![AnchorSpec { certificate: anchor_der, revocation, policies: Policies::Any }])
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    openssl::x509::X509::from_pem(pem.as_bytes()).unwrap().to_der().unwrap()
}

#[test]
fn our_replies_verify_with_openssl_and_with_us() {
    let tsa = Responder::generate(NOW).unwrap();
    let data = b"<ds:SignatureValue>abc</ds:SignatureValue>";
    let digest = tsp::sha256(data);
    let reply = tsa.respond(&tsp::request(&digest, 0x8000_0000_0000_0001), NOW);
    let (token, info) = tsp::accept_reply(&reply, &digest, 0x8000_0000_0000_0001).unwrap();
    assert_eq!((info.gen_time, info.policy.as_str(), info.imprint.as_slice()), (NOW, tsp::responder::DEMO_POLICY, digest.as_slice()));
    assert_eq!(info.tsa_certificate, tsa.tsa_cert_der());

    let anchors = store(tsa.ca_der(), Some(vec![tsa.crl_der(NOW).unwrap()]));
    let verified = tsp::verify(&token, data, &anchors, &[]).unwrap();
    assert_eq!(verified, info);

    // OpenSSL's verdict on a reply of the same TSA, checked at NOW (-attime).
    let (live, now) = (&tsa, NOW);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), data).unwrap();
    std::fs::write(d.join("ca.pem"), live.ca_pem()).unwrap();
    std::fs::write(d.join("tsa.pem"), live.tsa_cert_pem()).unwrap();
    std::fs::write(d.join("reply.tsr"), live.respond(&tsp::request(&digest, 7), now)).unwrap();
    let out = openssl(d, &["ts", "-verify", "-data", "data", "-in", "reply.tsr", "-CAfile", "ca.pem", "-untrusted", "tsa.pem", "-attime", &NOW.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verification: OK"));
    // And a query written by OpenSSL is answered.
    openssl(d, &["ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "q.tsq"]);
    let reply = live.respond(&std::fs::read(d.join("q.tsq")).unwrap(), now);
    std::fs::write(d.join("reply2.tsr"), &reply).unwrap();
    let out = openssl(d, &["ts", "-verify", "-queryfile", "q.tsq", "-in", "reply2.tsr", "-CAfile", "ca.pem", "-attime", &NOW.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verification: OK"));
}

/// An OpenSSL TSA in `dir`: CA, TSA certificate (timeStamping, critical), ts.cnf (recipe of
/// tests/run.sh's environment: `openssl ts -reply`).
fn openssl_tsa(dir: &Path) {
    openssl(dir, &[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=OpenSSL Test TSA CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=OpenSSL Test TSA"]);
    std::fs::write(dir.join("ext.cnf"), "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n").unwrap();
    openssl(dir, &["x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tsa.pem", "-days", "30", "-extfile", "ext.cnf"]);
    std::fs::write(
        dir.join("ts.cnf"),
        "[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\nserial = serial\nsigner_cert = tsa.pem\nsigner_key = tsa.key\n\
         signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\ness_cert_id_alg = sha256\n\
         ess_cert_id_chain = no\n",
    )
    .unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
}

/// The TSA certificate's notBefore + 1 h (openssl makes them valid from its wall clock).
fn inside_validity(dir: &Path) -> i64 {
    let pem = std::fs::read(dir.join("tsa.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let diff = epoch.diff(cert.not_before()).unwrap();
    i64::from(diff.days) * 86_400 + i64::from(diff.secs) + 3600
}

#[test]
fn openssl_replies_are_accepted_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_tsa(d);
    let data = b"stamped by another implementation";
    std::fs::write(d.join("data"), data).unwrap();
    let digest = tsp::sha256(data);
    std::fs::write(d.join("q.tsq"), tsp::request(&digest, 42)).unwrap();
    openssl(d, &["ts", "-reply", "-config", "ts.cnf", "-queryfile", "q.tsq", "-out", "r.tsr"]);
    let reply = std::fs::read(d.join("r.tsr")).unwrap();
    let (token, info) = tsp::accept_reply(&reply, &digest, 42).unwrap();
    assert_eq!(info.policy, "1.2.3.4.1");
    let ca = pem_to_der(&std::fs::read_to_string(d.join("ca.pem")).unwrap());
    let verified = tsp::verify(&token, data, &store(ca.clone(), None), &[]).unwrap();
    assert!(verified.gen_time >= inside_validity(d) - 3600);
    // Another request's nonce or digest: the reply does not answer it.
    assert_eq!(tsp::accept_reply(&reply, &digest, 43).unwrap_err().code(), "timestamp_mismatch");
    assert_eq!(tsp::accept_reply(&reply, &tsp::sha256(b"other"), 42).unwrap_err().code(), "timestamp_mismatch");
    // A TSA certificate without the timeStamping EKU is not trusted for time-stamping.
    // (OpenSSL's own TSA will not answer with such a certificate; ours does, and is refused.)
    let unfit = Responder::generate_with(NOW, Options { time_stamping_eku: false, ..Options::default() }).unwrap();
    let reply = unfit.respond(&tsp::request(&digest, 1), NOW);
    let (token, _) = tsp::accept_reply(&reply, &digest, 1).unwrap();
    let err = tsp::verify(&token, data, &store(unfit.ca_der(), None), &[]).unwrap_err();
    assert_eq!(err.code(), "timestamp_untrusted", "{err}");
}

#[test]
fn bad_tokens_are_refused_with_their_reason() {
    let tsa = Responder::generate(NOW).unwrap();
    let data = b"the signature value";
    let digest = tsp::sha256(data);
    let (token, _) = tsp::accept_reply(&tsa.respond(&tsp::request(&digest, 5), NOW), &digest, 5).unwrap();
    let anchors = store(tsa.ca_der(), None);
    // Over other data.
    assert_eq!(tsp::verify(&token, b"another value", &anchors, &[]).unwrap_err(), tsp::TspError::ImprintMismatch);
    // Another TSA's anchors.
    let other = Responder::generate(NOW).unwrap();
    assert_eq!(tsp::verify(&token, data, &store(other.ca_der(), None), &[]).unwrap_err().code(), "timestamp_untrusted");
    // A flipped byte inside the TSTInfo (the genTime's last digit): the messageDigest fails.
    let mut tampered = token.clone();
    let at = tampered.windows(15).position(|w| w.ends_with(b"Z") && w[..14].iter().all(u8::is_ascii_digit)).unwrap() + 13;
    tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
    assert_eq!(tsp::inspect(&tampered).unwrap_err().code(), "timestamp_bad_signature");
    // A flipped byte in the signature.
    let mut bad_sig = token.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    assert_eq!(tsp::inspect(&bad_sig).unwrap_err().code(), "timestamp_bad_signature");
    // Garbage and truncation.
    assert_eq!(tsp::inspect(b"not DER").unwrap_err().code(), "timestamp_malformed");
    assert_eq!(tsp::inspect(&token[..token.len() / 2]).unwrap_err().code(), "timestamp_malformed");
    // A TSA certificate expired at genTime.
    let short = Responder::generate_with(NOW, Options { valid_days: 1, ..Options::default() }).unwrap();
    let later = NOW + 3 * 86_400;
    let (token, _) = tsp::accept_reply(&short.respond(&tsp::request(&digest, 9), later), &digest, 9).unwrap();
    let err = tsp::verify(&token, data, &store(short.ca_der(), None), &[]).unwrap_err();
    assert!(matches!(err, tsp::TspError::Untrusted(trust::PathError::Expired { .. })), "{err}");
    // A rejection, and a SHA-1 imprint.
    let rejected = tsa.respond(b"garbage", NOW);
    assert_eq!(tsp::accept_reply(&rejected, &digest, 1).unwrap_err().code(), "timestamp_rejected");
    let sha1_query = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), data).unwrap();
        openssl(dir.path(), &["ts", "-query", "-data", "data", "-sha1", "-cert", "-out", "q.tsq"]);
        std::fs::read(dir.path().join("q.tsq")).unwrap()
    };
    assert_eq!(tsp::accept_reply(&tsa.respond(&sha1_query, NOW), &digest, 1).unwrap_err().code(), "timestamp_rejected");
}

#[tokio::test]
async fn the_client_asks_over_http_and_refuses_what_is_not_a_reply() {
    let tsa = Arc::new(Responder::generate(NOW).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(tsa.clone().serve(listener, || NOW));
    let client = tsp::Client::new(&url, std::time::Duration::from_secs(5)).unwrap();
    let digest = tsp::sha256(b"value");
    let (token, info) = client.stamp(&digest).await.unwrap();
    assert_eq!(info.gen_time, NOW);
    tsp::verify(&token, b"value", &store(tsa.ca_der(), None), &[]).unwrap();
    server.abort();

    // Servers that answer something else.
    for (status, content_type, body) in [
        (500u16, "application/timestamp-reply", Vec::new()),
        (200, "text/html", b"<html/>".to_vec()),
        (200, "application/timestamp-reply", vec![0u8; 70 * 1024]),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move { (axum::http::StatusCode::from_u16(status).unwrap(), [(axum::http::header::CONTENT_TYPE, content_type)], body) }
        });
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = tsp::Client::new(&url, std::time::Duration::from_secs(5)).unwrap();
        let err = client.stamp(&digest).await.unwrap_err();
        assert_eq!(err.code(), "tsa_unavailable", "{status} {content_type}: {err}");
        server.abort();
    }
    // Nobody listening.
    let client = tsp::Client::new("http://127.0.0.1:9/", std::time::Duration::from_secs(2)).unwrap();
    assert_eq!(client.stamp(&digest).await.unwrap_err().code(), "tsa_unavailable");
}
