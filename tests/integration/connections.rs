//! Connections of the main listener, through real clients over real mTLS: 413 for oversized
//! bodies on HTTP/1.1 and HTTP/2, idle connections closed although they answer PINGs, caps on
//! connections in all and per IP, HTTP/1.1 connections still usable after a refused request.
//! And the modes of the files that hold secrets.
//!
//! The network tests run on both databases (the gateway behind them is the whole one). The idle
//! test waits in real time: the limit is a network timeout of the accept loop, not the
//! gateway's clock, which governs sessions and tokens only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use reqwest::Version;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::helpers::{CLINIC, DOCTOR_LOGIN, DOCTOR_PASSWORD, Db, TestApp, db_tests};

db_tests!(
    oversized_bodies_get_a_413_answer_on_http1_and_http2,
    http1_connection_stays_usable_after_a_request_whose_body_was_not_wanted,
    idle_http2_connection_is_closed_while_answering_pings_and_an_active_one_is_not,
    connections_over_the_caps_are_refused_and_a_closed_one_frees_its_slot,
);

/// `server.max_body_bytes` in these tests.
const BODY_LIMIT: usize = 4096;

/// The most the gateway reads of an oversized body to keep the connection (gateway/src/http/body.rs).
const DRAIN_BYTES: usize = 1024 * 1024;

async fn app_with_body_limit(db: Db) -> TestApp {
    TestApp::builder(db).with_config(|c| c.server.max_body_bytes = BODY_LIMIT).spawn().await
}

/// A reqwest client presenting `leaf`, speaking only HTTP/2 (prior knowledge) or only HTTP/1.1.
fn client(app: &TestApp, leaf: &devpki::Leaf, http2: bool) -> reqwest::Client {
    let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
    let b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(app.pki.server_ca.cert_pem().as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], app.port)));
    let b = if http2 { b.http2_prior_knowledge() } else { b.http1_only() };
    b.build().unwrap()
}

/// A rustls client configuration presenting `leaf` and offering `alpn`.
fn tls_config(app: &TestApp, leaf: &devpki::Leaf, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(app.pki.server_ca.cert_der().to_vec())).unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(leaf.cert_der.clone())], key)
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to the gateway from the local address `from` (any 127.x address).
async fn tls_from(app: &TestApp, config: &Arc<rustls::ClientConfig>, from: [u8; 4]) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], app.port))).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// One HTTP/1.1 response read off a raw stream.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the next response (the gateway's all carry a Content-Length); `None` when the server
/// has closed the connection instead.
async fn read_response(r: &mut (impl AsyncBufRead + Unpin)) -> Option<RawResponse> {
    let mut status_line = String::new();
    if r.read_line(&mut status_line).await.unwrap_or(0) == 0 {
        return None;
    }
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect(&status_line);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut res = RawResponse { status, headers, body: String::new() };
    let len: usize = res.header("content-length").expect("a Content-Length").parse().unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.unwrap();
    res.body = String::from_utf8(body).unwrap();
    Some(res)
}

fn form_head(path: &str, origin: Option<&str>, len: usize) -> String {
    let origin = origin.map(|o| format!("origin: {o}\r\n")).unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\n{origin}content-type: application/x-www-form-urlencoded\r\ncontent-length: {len}\r\n\r\n"
    )
}

const GET_LOGIN: &[u8] = b"GET /login HTTP/1.1\r\nhost: localhost\r\n\r\n";

async fn oversized_bodies_get_a_413_answer_on_http1_and_http2(db: Db) {
    let app = app_with_body_limit(db).await;
    for (http2, version) in [(false, Version::HTTP_11), (true, Version::HTTP_2)] {
        // The service API answers in JSON.
        let emr = client(&app, &app.pki.emr_a, http2);
        let big = json!({ "clinic_id": CLINIC, "doctor_id": "x".repeat(BODY_LIMIT) }).to_string();
        let res = emr
            .post(app.url("/api/v1/signing-tokens"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
        assert_eq!(res.version(), version);
        assert_eq!(res.status(), 413, "{version:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large", "{version:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("too large"), "{body}");

        // A body within the limit still reaches the handler, on the same client.
        let res = emr.post(app.url("/api/v1/signing-tokens")).json(&json!({ "clinic_id": CLINIC })).send().await.unwrap();
        assert_eq!(res.status(), 400, "{version:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "bad_request");

        // Far beyond what the gateway reads to find the end: the answer comes at once, and on
        // HTTP/2 the stream reset that follows (NO_ERROR) does not cost the client the answer.
        if http2 {
            let huge = "x".repeat(BODY_LIMIT + DRAIN_BYTES + 1);
            let res = emr
                .post(app.url("/api/v1/signing-tokens"))
                .header("content-type", "application/json")
                .body(huge)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
            assert_eq!(res.status(), 413);
            assert_eq!(res.json::<Value>().await.unwrap()["error"], "payload_too_large");
        }

        // The browser gets a page, in its language; then the same client signs in.
        let browser = client(&app, &app.pki.clinic_client, http2);
        let password = "p".repeat(BODY_LIMIT);
        let res = browser
            .post(app.url("/login"))
            .header("origin", app.origin())
            .form(&[("login_id", DOCTOR_LOGIN), ("password", password.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!((res.version(), res.status().as_u16()), (version, 413));
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(res.text().await.unwrap().contains("送信されたデータが大きすぎる"));
        let res = browser
            .post(app.url("/login?lang=en"))
            .header("origin", app.origin())
            .form(&[("login_id", DOCTOR_LOGIN), ("password", password.as_str())])
            .send()
            .await
            .unwrap();
        assert!(res.text().await.unwrap().contains("its body is too large"));
        let res = app.login(&browser, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
        assert!(res.status().is_redirection(), "{version:?}: {}", res.status());
    }
    app.stop().await;
}

async fn http1_connection_stays_usable_after_a_request_whose_body_was_not_wanted(db: Db) {
    let app = app_with_body_limit(db).await;
    let config = tls_config(&app, &app.pki.clinic_client, b"http/1.1");
    let (rd, mut wr) = tokio::io::split(tls_from(&app, &config, [127, 0, 0, 1]).await.unwrap());
    let mut rd = BufReader::new(rd);

    // A POST without Origin, which the same-origin check refuses without looking at the body.
    // The body follows its head a moment later, as from a client that sends the head first, so a
    // server that answers before reading the body has answered by the time it arrives.
    let body = format!("login_id={DOCTOR_LOGIN}&password={}", "x".repeat(1000));
    wr.write_all(form_head("/login", None, body.len()).as_bytes()).await.unwrap();
    wr.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    wr.write_all(body.as_bytes()).await.unwrap();
    wr.write_all(GET_LOGIN).await.unwrap();
    wr.flush().await.unwrap();
    let refused = read_response(&mut rd).await.expect("an answer to the refused request");
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("このページ以外から送信された"), "{}", refused.body);
    match read_response(&mut rd).await {
        Some(next) => assert_eq!(next.status, 200, "the next request on the connection is served"),
        None => assert_eq!(refused.header("connection"), Some("close"), "closed without saying so"),
    }

    // Oversized, but within what the gateway reads to find the end: 413, and the connection goes on.
    let over = "x".repeat(BODY_LIMIT + 10);
    wr.write_all(form_head("/login", Some(&app.origin()), over.len()).as_bytes()).await.unwrap();
    wr.write_all(over.as_bytes()).await.unwrap();
    wr.write_all(GET_LOGIN).await.unwrap();
    wr.flush().await.unwrap();
    let too_large = read_response(&mut rd).await.expect("an answer to the oversized request");
    assert_eq!(too_large.status, 413);
    assert!(too_large.body.contains("送信されたデータが大きすぎる"), "{}", too_large.body);
    let next = read_response(&mut rd).await.expect("the connection stays open after a drained body");
    assert_eq!(next.status, 200);

    // Far too large to read: answered at once with Connection: close, and closed.
    wr.write_all(form_head("/login", Some(&app.origin()), 100 * 1024 * 1024).as_bytes()).await.unwrap();
    wr.flush().await.unwrap();
    let too_large = read_response(&mut rd).await.expect("an answer before the body");
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.header("connection"), Some("close"));
    assert!(read_response(&mut rd).await.is_none(), "the connection is closed");
    app.stop().await;
}

/// An HTTP/2 connection (hyper's client) that PINGs the server every 200 ms and gives up on its
/// own if a PING goes unanswered for 500 ms. The task ends with the connection, returning when.
async fn h2_connection(
    app: &TestApp,
) -> (hyper::client::conn::http2::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<(Result<(), hyper::Error>, Instant)>) {
    let config = tls_config(app, &app.pki.clinic_client, b"h2");
    let tls = tls_from(app, &config, [127, 0, 0, 1]).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_timeout(Duration::from_millis(500))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let ended = conn.await;
        (ended, Instant::now())
    });
    (sender, task)
}

async fn h2_get(sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>, app: &TestApp) -> u16 {
    sender.ready().await.unwrap();
    let req = hyper::Request::get(app.url("/login")).body(Empty::new()).unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

async fn idle_http2_connection_is_closed_while_answering_pings_and_an_active_one_is_not(db: Db) {
    let app = TestApp::builder(db).with_config(|c| c.server.idle_timeout_secs = 1).spawn().await;
    let (mut idle, idle_conn) = h2_connection(&app).await;
    let (mut busy, busy_conn) = h2_connection(&app).await;
    assert_eq!(h2_get(&mut idle, &app).await, 200);
    let last_request = Instant::now();

    // The busy connection asks for a page every 300 ms, for well over the idle limit.
    let mut busy_last_request = Instant::now();
    while last_request.elapsed() < Duration::from_millis(2500) {
        assert_eq!(h2_get(&mut busy, &app).await, 200);
        busy_last_request = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!busy_conn.is_finished(), "a connection with requests stays open");
    assert!(idle_conn.is_finished(), "a connection with only PINGs for over the limit is closed");
    let (ended, at) = idle_conn.await.unwrap();
    // Ok: the server closed it (GOAWAY); an unanswered PING would have failed it on our side.
    ended.expect("closed by the server, every PING answered");
    assert!(at - last_request >= Duration::from_millis(800), "closed after {:?}, before the limit", at - last_request);

    // Left alone, the busy one goes the same way, the limit after its own last request.
    let (ended, at) = tokio::time::timeout(Duration::from_secs(5), busy_conn).await.expect("closed once idle").unwrap();
    ended.expect("closed by the server");
    let quiet = at - busy_last_request;
    assert!(quiet >= Duration::from_millis(800), "closed after {quiet:?}, before the limit");
    let metrics = app.metrics().await;
    assert!(metrics.contains("ninsho_connections_idle_closed_total 2"), "{metrics}");
    app.stop().await;
}

/// A TLS connection from `from` that got a page, or `None` if the server refused it.
async fn open(app: &TestApp, config: &Arc<rustls::ClientConfig>, from: [u8; 4]) -> Option<TlsStream<TcpStream>> {
    let mut tls = tls_from(app, config, from).await.ok()?;
    // With TLS 1.3 a refusal may show only on the first read.
    tls.write_all(GET_LOGIN).await.ok()?;
    let mut rd = BufReader::new(&mut tls);
    let res = read_response(&mut rd).await?;
    assert_eq!(res.status, 200);
    Some(tls)
}

/// Waits (bounded) until the gateway counts `n` open connections.
async fn open_connections(app: &TestApp, n: usize) {
    let want = format!("ninsho_connections_open {n}\n");
    for _ in 0..100 {
        if app.metrics().await.contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {n} open connections: {}", app.metrics().await);
}

async fn connections_over_the_caps_are_refused_and_a_closed_one_frees_its_slot(db: Db) {
    let app = TestApp::builder(db)
        .with_config(|c| {
            c.server.max_connections = 3;
            c.server.max_connections_per_ip = 2;
        })
        .spawn()
        .await;
    let config = tls_config(&app, &app.pki.clinic_client, b"http/1.1");
    let (a, b) = ([127, 0, 0, 1], [127, 0, 0, 2]);
    let a1 = open(&app, &config, a).await.expect("first from a");
    let _a2 = open(&app, &config, a).await.expect("second from a");
    assert!(open(&app, &config, a).await.is_none(), "a third from one address is refused");
    let _b1 = open(&app, &config, b).await.expect("another address, under the global cap");
    assert!(open(&app, &config, b).await.is_none(), "a fourth in all is refused");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"ninsho_connections_refused_total{reason="per_ip_limit"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ninsho_connections_refused_total{reason="global_limit"} 1"#), "{metrics}");

    drop(a1);
    open_connections(&app, 2).await;
    let _a3 = open(&app, &config, a).await.expect("the closed connection's slot is free again");
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_holding_secrets_are_created_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    // No umask: a file not created 0600 on purpose comes out readable by everyone.
    let umask = rustix::process::umask(rustix::fs::Mode::empty());
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let args = ["gateway", "demo", "--dir", demo.to_str().unwrap(), "--port", "18443", "--ops-port", "19090", "--no-serve"];
    let mut out = Vec::new();
    let code = gateway::cli::run(args.map(str::to_owned).to_vec(), &mut out, &mut std::io::stderr(), &mut std::io::empty()).await;
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    // The token key-encryption key is made on first start, from the configuration.
    gateway::config::Config::load(Some(&demo.join("gateway.toml"))).unwrap().token_kek().unwrap();
    // A database in use, with its write-ahead log and shared-memory index.
    let db = dir.path().join("fresh.db");
    let store = gateway::store::Store::connect(&format!("sqlite://{}", db.display()), 2).await.unwrap();
    store.migrate().await.unwrap();

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777;
    assert_eq!(mode(&demo.join("clinic/client.pem")), 0o666, "a public file shows the umask is off");
    let secrets = [
        "gateway.db",
        "token-kek",
        "demo-secrets.json",
        "tls/server.key",
        "clinic/ca.key",
        "clinic/client.key",
        "clinic/client.p12",
        "service/emr.key",
        "cards/hpki/auth-key.pem",
        "cards/hpki/sign-key.pem",
        "cards/jpki/auth-key.pem",
        "cards/jpki/sign-key.pem",
    ];
    for file in secrets.iter().map(|f| demo.join(f)).chain(["fresh.db", "fresh.db-wal", "fresh.db-shm"].map(|f| dir.path().join(f))) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store.close().await;
    rustix::process::umask(umask);
}
