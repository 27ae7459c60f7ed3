//! The real `card-agent` binary against `card-sim` cards on a real, isolated pcscd (vpcd reader in a
//! private network namespace, `card::sim::harness`). Needs root and the packages in card/README.md.
//! Each test starts its own sandbox and agent (port 0; the agent prints its address when listening),
//! and waits for cards by polling `GET /v1/status` against a deadline.

// Helpers outside #[test] functions assert too; clippy.toml's test allowance does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use card::hpki::SignStyle;
use card::sim::Profile;
use card::sim::harness::{Sandbox, SimArgs, SimProcess};
use card::CardKind;
use devpki::KeyAlg;
use devpki::cards::{CardSpec, Hpki, Jpki};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

const ORIGIN: &str = "https://gateway.clinic.example:8443";
const DEADLINE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

// ---- PKI ------------------------------------------------------------------------------------------

/// A card's PEM files in the simulator's layout.
struct CardFiles {
    dir: tempfile::TempDir,
    cert: Vec<u8>,
    ca: Vec<u8>,
}

/// A card of `kind` with certificates shaped like real ones (`devpki::cards`: HPKI or JPKI hierarchy,
/// authentication and signing certificate and key) and the authentication key `key`. The validity is
/// fixed around 2030-01-01 (nothing here checks it).
fn card_files(kind: CardKind, key: KeyAlg) -> Res<CardFiles> {
    let dir = tempfile::tempdir()?;
    let now = time::OffsetDateTime::from_unix_timestamp(1_893_456_000)?;
    let spec = CardSpec::new(now).key(key);
    let card = match kind {
        CardKind::Jpki => Jpki::new(now)?.card(&spec)?,
        CardKind::Hpki => Hpki::new(now)?.card(&spec)?,
    };
    card.write_sim_dir(dir.path())?;
    Ok(CardFiles {
        dir,
        cert: card.auth.cert_der,
        ca: card.auth_ca,
    })
}

fn sim_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agent-card-sim"))
}

fn insert(sandbox: &Sandbox, slot: u8, profile: Profile, files: &CardFiles) -> Res<SimProcess> {
    Ok(sandbox.insert_card(
        sim_binary(),
        slot,
        &SimArgs::new(profile, files.dir.path(), "1234"),
    )?)
}

// ---- the agent process and a minimal HTTP/1.1 client ----------------------------------------------

struct Agent {
    child: Child,
    addr: String,
}

impl Agent {
    /// Starts `card-agent --port 0` talking to the pcscd socket `socket`; returns once it listens.
    fn start(socket: &Path) -> Res<Agent> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_card-agent"))
            .args(["--port", "0", "--allow-origin", ORIGIN])
            // No set-up: a data directory that holds no relay configuration.
            .env("XDG_DATA_HOME", std::env::temp_dir().join(format!("card-agent-test-{}", std::process::id())))
            .env(card::sim::harness::SOCKET_ENV, socket)
            .env("CARD_AGENT_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(DEADLINE)?;
        let addr = line
            .trim()
            .strip_prefix("card-agent listening on http://")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        Ok(Agent { child, addr })
    }

    fn sandboxed(sandbox: &Sandbox) -> Res<Agent> {
        Agent::start(&sandbox.pcsc_env().1)
    }

    /// Sends one request (`Connection: close`) and returns status, lowercase headers and body.
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Res<Reply> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no header end")?;
        let head = String::from_utf8(raw[..split].to_vec())?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .ok_or("no status")?
            .split(' ')
            .nth(1)
            .ok_or("no code")?
            .parse()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body = &raw[split + 4..];
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)?
        };
        Ok(Reply {
            status,
            headers,
            json,
        })
    }

    fn status(&self) -> Res<Reply> {
        self.raw("GET", "/v1/status", &[("Origin", ORIGIN)], b"")
    }

    fn sign(&self, card: &str, challenge: &[u8], pin: &str) -> Res<Reply> {
        let body = json!({"card": card, "challenge": URL_SAFE_NO_PAD.encode(challenge), "origin": ORIGIN, "pin": pin});
        self.raw(
            "POST",
            "/v1/sign",
            &[("Origin", ORIGIN), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Polls the status until `want` (card per reader, in reader order) is reported.
    fn wait_for(&self, want: &[&str]) -> Res {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let reply = self.status()?;
            let cards: Vec<String> = reply.json["readers"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| r["card"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if cards == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("status never became {want:?}; last {}", reply.json).into());
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    /// Asserts an error reply: status, code, ja and en messages.
    fn expect_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.error()), (status, code), "{self:?}");
        assert!(
            !self.json["message"].as_str().unwrap_or("").is_empty(),
            "{self:?}"
        );
        assert!(
            !self.json["message_en"].as_str().unwrap_or("").is_empty(),
            "{self:?}"
        );
    }
}

fn b64(v: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(v.as_str().unwrap_or("!"))
        .unwrap_or_default()
}

/// Checks a successful sign reply: exact client data, certificate, and an RSA PKCS#1 v1.5 SHA-256
/// signature that verifies (aws-lc-rs, independent of the simulator's `rsa` crate).
fn check_signed(reply: &Reply, card: &str, challenge: &[u8], files: &CardFiles, chain: &[Vec<u8>]) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    let obj = reply.json.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["certificate", "chain", "client_data", "signature"]);
    let client_data = b64(&reply.json["client_data"]);
    let expected = format!(
        r#"{{"type":"ninsho.card.auth","card":"{card}","challenge":"{}","origin":"{ORIGIN}"}}"#,
        URL_SAFE_NO_PAD.encode(challenge)
    );
    assert_eq!(String::from_utf8(client_data.clone()).unwrap(), expected);
    let cert = b64(&reply.json["certificate"]);
    assert_eq!(cert, files.cert);
    let got_chain: Vec<Vec<u8>> = reply.json["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64)
        .collect();
    assert_eq!(got_chain, chain);
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    let key = parsed.public_key().subject_public_key.data.as_ref();
    let signature = b64(&reply.json["signature"]);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(&client_data, &signature)
        .expect("signature verifies");
    assert!(
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
            .verify(b"other", &signature)
            .is_err()
    );
}

// ---- tests ---------------------------------------------------------------------------------------

#[test]
fn status_reports_none_jpki_hpki_unknown() -> Res {
    let sandbox = Sandbox::start()?;
    let agent = Agent::sandboxed(&sandbox)?;
    agent.wait_for(&["none", "none"])?;
    let reply = agent.status()?;
    assert_eq!(reply.json["readers"][0]["name"], "Virtual PCD 00 00");
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(reply.header("vary"), Some("Origin"));

    let files = card_files(CardKind::Jpki, KeyAlg::Rsa2048)?;
    let hpki_files = card_files(CardKind::Hpki, KeyAlg::Rsa2048)?;
    let _jpki = insert(&sandbox, 0, Profile::Jpki, &files)?;
    let hpki = insert(&sandbox, 1, Profile::Hpki(SignStyle::CardPadded), &hpki_files)?;
    agent.wait_for(&["jpki", "hpki"])?;
    drop(hpki);
    agent.wait_for(&["jpki", "none"])?;
    // An HPKI-style card whose application is outside the HPKI RID: neither kind.
    let mut other = SimArgs::new(
        Profile::Hpki(SignStyle::CardPadded),
        hpki_files.dir.path(),
        "1234",
    );
    other.hpki_aid = Some("A000000001020304".into());
    let _other = sandbox.insert_card(sim_binary(), 1, &other)?;
    agent.wait_for(&["jpki", "unknown"])?;
    Ok(())
}

#[test]
fn jpki_sign_and_pin_errors() -> Res {
    let sandbox = Sandbox::start()?;
    let agent = Agent::sandboxed(&sandbox)?;
    let files = card_files(CardKind::Jpki, KeyAlg::Rsa2048)?;
    let _card = insert(&sandbox, 0, Profile::Jpki, &files)?;
    agent.wait_for(&["jpki", "none"])?;

    let challenge = [0x5A; 32];
    let reply = agent.sign("jpki", &challenge, "1234")?;
    check_signed(
        &reply,
        "jpki",
        &challenge,
        &files,
        std::slice::from_ref(&files.ca),
    );

    // Asking for the other kind.
    agent
        .sign("hpki", &challenge, "1234")?
        .expect_error(409, "wrong_card");
    // Bad formats never reach the card: the next wrong PIN still has 2 tries left.
    for bad in ["123", "12345", "abcd", ""] {
        agent
            .sign("jpki", &challenge, bad)?
            .expect_error(400, "pin_format");
    }
    let reply = agent.sign("jpki", &challenge, "9999")?;
    reply.expect_error(401, "wrong_pin");
    assert_eq!(reply.json["tries_left"], 2);
    assert!(
        reply.json["message_en"]
            .as_str()
            .unwrap()
            .contains("2 tries left")
    );
    assert_eq!(
        agent.sign("jpki", &challenge, "9999")?.json["tries_left"],
        1
    );
    agent
        .sign("jpki", &challenge, "9999")?
        .expect_error(423, "pin_locked");
    agent
        .sign("jpki", &challenge, "1234")?
        .expect_error(423, "pin_locked");
    Ok(())
}

#[test]
fn hpki_sign_in_both_styles() -> Res {
    let sandbox = Sandbox::start()?;
    let agent = Agent::sandboxed(&sandbox)?;
    let files = card_files(CardKind::Hpki, KeyAlg::Rsa2048)?;
    for style in [SignStyle::CardPadded, SignStyle::HostPadded] {
        let card = insert(&sandbox, 0, Profile::Hpki(style), &files)?;
        agent.wait_for(&["hpki", "none"])?;
        let challenge = [if style == SignStyle::CardPadded { 1 } else { 2 }; 32];
        let reply = agent.sign("hpki", &challenge, "1234")?;
        check_signed(&reply, "hpki", &challenge, &files, &[]);
        let reply = agent.sign("hpki", &challenge, "0000")?;
        reply.expect_error(401, "wrong_pin");
        assert_eq!(reply.json["tries_left"], 14);
        agent
            .sign("hpki", &challenge, "123")?
            .expect_error(400, "pin_format");
        drop(card);
        agent.wait_for(&["none", "none"])?;
    }
    Ok(())
}

#[test]
fn no_reader_no_card_removed_and_card_error() -> Res {
    // pcscd not running at all.
    let nowhere = tempfile::tempdir()?;
    let agent = Agent::start(&nowhere.path().join("pcscd.comm"))?;
    agent.status()?.expect_error(503, "no_reader");
    agent
        .sign("jpki", &[1; 32], "1234")?
        .expect_error(503, "no_reader");
    drop(agent);

    let sandbox = Sandbox::start()?;
    let agent = Agent::sandboxed(&sandbox)?;
    agent.wait_for(&["none", "none"])?;
    agent
        .sign("jpki", &[1; 32], "1234")?
        .expect_error(409, "no_card");

    // Pulled when the signing command arrives, after the PIN was verified.
    let files = card_files(CardKind::Jpki, KeyAlg::Rsa2048)?;
    let card = insert(&sandbox, 0, Profile::Jpki, &files)?;
    agent.wait_for(&["jpki", "none"])?;
    card.pull_on_ins(0x2A)?;
    agent
        .sign("jpki", &[1; 32], "1234")?
        .expect_error(409, "card_removed");
    agent.wait_for(&["none", "none"])?;
    drop(card);

    // A card answering an error status: RSA-4096 key, card-padded style, the 512-byte signature does
    // not fit the short Le of `80 2A 00 80` → SW 67 00.
    let big = card_files(CardKind::Hpki, KeyAlg::Rsa4096)?;
    let _card = insert(&sandbox, 0, Profile::Hpki(SignStyle::CardPadded), &big)?;
    agent.wait_for(&["hpki", "none"])?;
    agent
        .sign("hpki", &[1; 32], "1234")?
        .expect_error(502, "card_error");

    // pcscd goes away under a running agent.
    drop(sandbox);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = agent.status()?;
        if reply.error() == "no_reader" {
            reply.expect_error(503, "no_reader");
            break;
        }
        assert!(Instant::now() < deadline, "{reply:?}");
        std::thread::sleep(POLL);
    }
    Ok(())
}

#[test]
fn origin_gate_preflight_and_bad_requests() -> Res {
    // No pcscd needed: all of this is decided before PC/SC.
    let nowhere = tempfile::tempdir()?;
    let agent = Agent::start(&nowhere.path().join("pcscd.comm"))?;
    let evil = "https://evil.example";

    // Preflight from an allowed origin, with and without the Private Network Access request header.
    let reply = agent.raw(
        "OPTIONS",
        "/v1/sign",
        &[
            ("Origin", ORIGIN),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
            ("Access-Control-Request-Private-Network", "true"),
        ],
        b"",
    )?;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        reply.header("access-control-allow-private-network"),
        Some("true")
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        reply
            .header("access-control-allow-headers")
            .unwrap()
            .contains("content-type")
    );
    let reply = agent.raw(
        "OPTIONS",
        "/v1/status",
        &[("Origin", ORIGIN), ("Access-Control-Request-Method", "GET")],
        b"",
    )?;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-private-network"), None);

    // Preflight and requests from elsewhere: refused, and without CORS headers.
    let refused = [
        agent.raw(
            "OPTIONS",
            "/v1/sign",
            &[
                ("Origin", evil),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Private-Network", "true"),
            ],
            b"",
        )?,
        agent.raw("GET", "/v1/status", &[("Origin", evil)], b"")?,
        agent.raw("GET", "/v1/status", &[], b"")?,
        agent.raw("GET", "/v1/status", &[("Origin", "null")], b"")?,
        agent.raw(
            "GET",
            "/v1/status",
            &[("Origin", &format!("{ORIGIN}/"))],
            b"",
        )?,
        // DNS rebinding: right Origin, foreign Host.
        agent.raw(
            "GET",
            "/v1/status",
            &[("Origin", ORIGIN), ("Host", "evil.example")],
            b"",
        )?,
    ];
    for reply in refused {
        reply.expect_error(403, "origin_not_allowed");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{reply:?}"
        );
        assert_eq!(reply.header("access-control-allow-private-network"), None);
    }
    let body = json!({"card": "jpki", "challenge": URL_SAFE_NO_PAD.encode([1; 32]), "origin": ORIGIN, "pin": "1234"});
    let reply = agent.raw(
        "POST",
        "/v1/sign",
        &[("Origin", evil), ("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )?;
    reply.expect_error(403, "origin_not_allowed");

    // Allowed Origin header, but the body names another origin (the one the card would sign).
    let post = |body: String, content_type: &str| {
        agent.raw(
            "POST",
            "/v1/sign",
            &[("Origin", ORIGIN), ("Content-Type", content_type)],
            body.as_bytes(),
        )
    };
    let mismatch = json!({"card": "jpki", "challenge": URL_SAFE_NO_PAD.encode([1; 32]), "origin": evil, "pin": "1234"});
    let reply = post(mismatch.to_string(), "application/json")?;
    reply.expect_error(403, "origin_not_allowed");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ORIGIN),
        "the page may read this refusal"
    );

    let challenge = URL_SAFE_NO_PAD.encode([1; 32]);
    for (body, content_type) in [
        ("{".to_owned(), "application/json"),
        (body.to_string(), "text/plain"),
        (json!({"card": "fido", "challenge": challenge, "origin": ORIGIN, "pin": "1234"}).to_string(), "application/json"),
        (json!({"card": "jpki", "challenge": "not base64!", "origin": ORIGIN, "pin": "1234"}).to_string(), "application/json"),
        (json!({"card": "jpki", "challenge": "AAAA", "origin": ORIGIN, "pin": "1234"}).to_string(), "application/json"),
        (json!({"card": "jpki", "challenge": challenge, "origin": ORIGIN}).to_string(), "application/json"),
        (json!({"card": "jpki", "challenge": challenge, "origin": ORIGIN, "pin": "1234", "x": 1}).to_string(), "application/json"),
        (json!({"card": "jpki", "challenge": challenge, "origin": ORIGIN, "pin": 1234}).to_string(), "application/json"),
    ] {
        post(body.clone(), content_type)?.expect_error(400, "bad_request");
    }
    agent
        .raw("GET", "/v1/nothing", &[("Origin", ORIGIN)], b"")?
        .expect_error(400, "bad_request");
    // A PIN of the wrong format is refused before PC/SC is even asked.
    post(
        json!({"card": "jpki", "challenge": challenge, "origin": ORIGIN, "pin": "12"}).to_string(),
        "application/json",
    )?
    .expect_error(400, "pin_format");
    Ok(())
}

#[test]
fn help_and_refused_configuration() -> Res {
    let out = Command::new(env!("CARGO_BIN_EXE_card-agent"))
        .arg("--help")
        .output()?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for flag in ["--allow-origin", "--port", "--config", "--bind", "--relay", "--data-dir", "--gateway", "--gateway-ca"] {
        assert!(help.contains(flag), "{help}");
    }
    for args in [
        vec!["--allow-origin", ORIGIN, "--bind", "0.0.0.0"],
        vec![],
        vec!["--allow-origin", "gateway.example"],
        vec!["--allow-origin", ORIGIN, "--gateway", "http://gateway.example"],
        vec!["--allow-origin", ORIGIN, "--gateway", "https://gateway.example/path"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_card-agent"))
            .args(&args)
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    Ok(())
}
