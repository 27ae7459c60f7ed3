//! `ninsho-signer verify` against signatures made by OpenSSL's command line (an independent
//! implementation) and by the signer's own key backend, with certificates from the demo
//! signing CA and a certificate that is not a signing one.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support code")]

use std::process::Command;

use base64::Engine as _;
use keys::certificate::{DoctorSubject, SigningCa, hpki_validity};
use time::OffsetDateTime;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn verify(args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["ninsho-signer".to_owned(), "verify".to_owned()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = signer::cli::run(argv, &mut out, &mut err).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

struct Fixture {
    dir: tempfile::TempDir,
    now: OffsetDateTime,
}

impl Fixture {
    /// A demo CA, a doctor's software key and its HPKI-shaped certificate, the key as PEM for
    /// the openssl command line, and a data file.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = SigningCa::generate_demo(now).unwrap();
        let (stored, spki) = keys::Backend::Software.generate_rsa("cred-1", 2048).unwrap();
        let keys::StoredKey::Software { pkcs8 } = &stored else { unreachable!() };
        let subject = DoctorSubject {
            name_romaji: "Taro Yamada".into(),
            name_kanji: Some("山田　太郎".into()),
            organization: "Demo Clinic".into(),
            serial: "cred-1".into(),
        };
        let (from, to) = hpki_validity(now, 5);
        let cert = ca.issue(&spki, &subject, from, to).unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(p("cert.pem"), pem("CERTIFICATE", &cert)).unwrap();
        std::fs::write(p("key.pem"), pem("PRIVATE KEY", pkcs8)).unwrap();
        std::fs::write(p("data.txt"), "処方箋 2026-12-06\n").unwrap();
        Fixture { dir, now }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn at(&self) -> String {
        self.now.unix_timestamp().to_string()
    }
}

#[tokio::test]
async fn a_signature_made_by_openssl_verifies_with_the_whole_report() {
    let f = Fixture::new();
    openssl(&["dgst", "-sha256", "-sign", &f.path("key.pem"), "-out", &f.path("sig.bin"), &f.path("data.txt")]);
    let (code, out, err) =
        verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("sig.bin"), "--data", &f.path("data.txt"), "--ca", &f.path("ca.pem"), "--at", &f.at()]).await;
    assert_eq!(code, 0, "{out}{err}");
    for expected in [
        "OK   signature (1.2.840.113549.1.1.11)",
        "OK   keyUsage critical, nonRepudiation",
        "OK   certificatePolicies 1.2.392.100495.1.5.1.1.0.1 (HPKI signing), critical",
        "OK   hcRole: Medical Doctor",
        "OK   path to",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
}

#[tokio::test]
async fn pss_signatures_by_openssl_verify_and_the_base64_form_is_read() {
    let f = Fixture::new();
    openssl(&[
        "dgst", "-sha256", "-sign", &f.path("key.pem"), "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
        "-out", &f.path("sig.bin"), &f.path("data.txt"),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(f.path("sig.bin")).unwrap());
    std::fs::write(f.path("sig.b64"), b64).unwrap();
    let (code, out, _) = verify(&[
        "--cert", &f.path("cert.pem"), "--signature", &f.path("sig.b64"), "--data", &f.path("data.txt"),
        "--sign-algo", "1.2.840.113549.1.1.10", "--at", &f.at(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn a_changed_signature_or_data_fails_and_says_which_check() {
    let f = Fixture::new();
    openssl(&["dgst", "-sha256", "-sign", &f.path("key.pem"), "-out", &f.path("sig.bin"), &f.path("data.txt")]);
    let mut sig = std::fs::read(f.path("sig.bin")).unwrap();
    sig[10] ^= 1;
    std::fs::write(f.path("bad.bin"), &sig).unwrap();
    let (code, out, err) = verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("bad.bin"), "--data", &f.path("data.txt"), "--at", &f.at()]).await;
    assert_eq!(code, 1);
    assert!(out.contains("FAIL signature"), "{out}");
    assert!(err.contains("did not pass every check"), "{err}");
    std::fs::write(f.path("other.txt"), "another prescription").unwrap();
    let (code, out, _) = verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("sig.bin"), "--data", &f.path("other.txt"), "--at", &f.at()]).await;
    assert_eq!(code, 1);
    assert!(out.contains("FAIL signature"), "{out}");
}

#[tokio::test]
async fn a_certificate_that_is_not_a_signing_certificate_fails() {
    let f = Fixture::new();
    // A TLS client certificate: digitalSignature, no HPKI policy, no hcRole.
    openssl(&[
        "req", "-x509", "-new", "-key", &f.path("key.pem"), "-subj", "/CN=not a doctor", "-days", "30",
        "-addext", "keyUsage=critical,digitalSignature", "-out", &f.path("tls.pem"),
    ]);
    openssl(&["dgst", "-sha256", "-sign", &f.path("key.pem"), "-out", &f.path("sig.bin"), &f.path("data.txt")]);
    let (code, out, _) = verify(&["--cert", &f.path("tls.pem"), "--signature", &f.path("sig.bin"), "--data", &f.path("data.txt"), "--ca", &f.path("ca.pem")]).await;
    assert_eq!(code, 1);
    assert!(out.contains("OK   signature"), "{out}");
    for failed in ["FAIL keyUsage", "FAIL certificatePolicies", "FAIL hcRole", "FAIL path"] {
        assert!(out.contains(failed), "missing {failed:?} in\n{out}");
    }
}

#[tokio::test]
async fn outside_its_validity_the_certificate_fails() {
    let f = Fixture::new();
    openssl(&["dgst", "-sha256", "-sign", &f.path("key.pem"), "-out", &f.path("sig.bin"), &f.path("data.txt")]);
    let later = (f.now.unix_timestamp() + 6 * 366 * 86_400).to_string();
    let (code, out, _) =
        verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("sig.bin"), "--data", &f.path("data.txt"), "--ca", &f.path("ca.pem"), "--at", &later]).await;
    assert_eq!(code, 1);
    assert!(out.contains("FAIL valid"), "{out}");
    assert!(out.contains("FAIL path"), "{out}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error() {
    let f = Fixture::new();
    std::fs::write(f.path("sig.bin"), b"x").unwrap();
    let (code, _, err) = verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("sig.bin"), "--hash", "AAAA"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("SHA-256 (32 bytes)"), "{err}");
    let (code, _, err) = verify(&["--cert", &f.path("data.txt"), "--signature", &f.path("sig.bin"), "--data", &f.path("data.txt")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not a certificate"), "{err}");
    let (code, _, err) = verify(&["--cert", &f.path("cert.pem"), "--signature", &f.path("sig.bin")]).await;
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("--data") || err.contains("--hash"), "{err}");
}
