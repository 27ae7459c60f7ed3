//! Faults of the gateway process itself, as an operator meets them: `kill -9` and `SIGTERM` of a
//! gateway *process* (not the in-process server of [`TestApp`]) while EMR clients issue and
//! consume signing tokens. Whatever the clients were answered as done must be in the audit log,
//! and the chain must verify, checked through `gateway admin audit verify` and `… export`.
//!
//! The process runs the `gateway` binary named by `NINSHO_GATEWAY_BIN` (tests/run.sh sets it to
//! the one it just built). Without it, this test binary runs itself as the gateway: the binary's
//! `main` is only `gateway::cli::run` (gateway/src/main.rs), which [`gateway_main`] calls the
//! same way, and a `target/debug/gateway` left from an older build could be stale.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::*;

/// Set in the environment of a re-executed test binary: the gateway's argv as a JSON array.
const AS_GATEWAY: &str = "NINSHO_TEST_AS_GATEWAY";
/// Concurrent EMR clients of the load.
const CLIENTS: usize = 8;
/// Successful answers (issues + consumes) before the fault.
const ANSWERS_BEFORE_FAULT: usize = 300;

/// The gateway's `main` when this binary is re-executed with [`AS_GATEWAY`] set; in a normal
/// test run it does nothing.
#[test]
fn gateway_main() {
    let Some(argv) = std::env::var_os(AS_GATEWAY) else { return };
    let argv: Vec<String> = serde_json::from_str(argv.to_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut input = std::io::BufReader::new(std::io::stdin());
    let code = runtime.block_on(gateway::cli::run(argv, &mut std::io::stdout(), &mut std::io::stderr(), &mut input));
    std::process::exit(code);
}

/// `gateway <args>` as a command.
pub(crate) fn gateway_command(args: &[&str]) -> Command {
    if let Some(bin) = std::env::var_os("NINSHO_GATEWAY_BIN") {
        let mut c = Command::new(bin);
        c.args(args);
        return c;
    }
    let mut argv = vec!["gateway".to_owned()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["faults::process::gateway_main", "--exact", "--nocapture", "--test-threads=1"]);
    c.env(AS_GATEWAY, serde_json::to_string(&argv).unwrap());
    c
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A seeded database with a live signing session for [`DOCTOR_LOGIN`], and an operator's
/// configuration file for it.
struct Setup {
    prepared: Prepared,
    config_file: PathBuf,
    port: u16,
    ops_port: u16,
}

impl Setup {
    async fn new(db: Db, drain_secs: u64) -> Self {
        let prepared = TestApp::builder(db).prepare().await;
        let p = &prepared;
        // Real time: the process runs on the system clock, and so does this session.
        let now = gateway::clock::Clock::unix(&gateway::clock::SystemClock);
        let user = p.store.user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
        let cfg = &p.config.signing_session;
        let new = gateway::store::NewSigningSession {
            user_id: &user.id,
            clinic_id: CLINIC,
            method: gateway::store::AuthMethod::Fido,
            authenticator_kind: "fido",
            authenticator_id: "test-credential",
            amr: &["hwk", "user", "mfa"],
            acr: "aal3",
            auth_time: now,
            absolute_secs: cfg.absolute_secs,
            idle_secs: cfg.idle_secs,
        };
        p.store.open_signing_session(&new, now, &Default::default()).await.unwrap();
        p.store.close().await;
        let (port, ops_port) = (free_port(), free_port());
        let config_file = p.dir.path().join("gateway.toml");
        let c = &p.config;
        let q = |path: &Path| format!("{:?}", path.display().to_string());
        std::fs::write(
            &config_file,
            format!(
                "data_dir = {data}\n\
                 [server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\nshutdown_drain_secs = {drain_secs}\n\
                 [tls]\ncert = {cert}\nkey = {key}\n\
                 [ops]\nlisten = \"127.0.0.1:{ops_port}\"\n\
                 [database]\nurl = {url:?}\nmax_connections = 8\nacquire_timeout_ms = 5000\n\
                 [login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n\
                 [log]\nformat = \"json\"\nlevel = \"info\"\n",
                data = q(&c.data_dir),
                cert = q(&c.tls.cert),
                key = q(&c.tls.key),
                url = c.database.url,
            ),
        )
        .unwrap();
        Self { prepared, config_file, port, ops_port }
    }

    fn config(&self) -> &str {
        self.config_file.to_str().unwrap()
    }

    /// Starts `gateway serve` and waits until it reports ready.
    async fn serve(&self, log_name: &str) -> GatewayProcess {
        let log = self.prepared.dir.path().join(log_name);
        let out = std::fs::File::create(&log).unwrap();
        let child = gateway_command(&["--config", self.config(), "serve"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut gw = GatewayProcess { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = format!("http://127.0.0.1:{}/readyz", self.ops_port);
        loop {
            if let Ok(res) = reqwest::get(&ready).await
                && res.status() == 200
            {
                return gw;
            }
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("the gateway exited with {status} before it was ready:\n{}", gw.log_text());
            }
            assert!(Instant::now() < deadline, "the gateway was not ready within 20 s:\n{}", gw.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `gateway admin <args>` to its end: (exit status, output).
    async fn admin(&self, args: &[&str]) -> (ExitStatus, String) {
        let mut all = vec!["--config", self.config(), "admin"];
        all.extend_from_slice(args);
        let mut cmd = gateway_command(&all);
        cmd.stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    }

    /// `audit verify` says intact; `audit export` gives the jtis of the successful
    /// `token_issued` and `token_consumed` rows.
    async fn audited(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let (status, out) = self.admin(&["audit", "verify"]).await;
        assert!(status.success() && out.contains("audit log intact"), "audit verify: {status}\n{out}");
        let file = self.prepared.dir.path().join("audit.jsonl");
        let path = file.to_str().unwrap();
        let (status, out) = self.admin(&["audit", "export", "--output", path, "--force"]).await;
        assert!(status.success(), "audit export: {status}\n{out}");
        let (mut issued, mut consumed) = (BTreeSet::new(), BTreeSet::new());
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            if row["outcome"] != "success" {
                continue;
            }
            let jti = row["detail"]["jti"].as_str().map(str::to_owned);
            match (row["event"].as_str(), jti) {
                (Some("token_issued"), Some(jti)) => assert!(issued.insert(jti), "one token_issued row per token"),
                (Some("token_consumed"), Some(jti)) => assert!(consumed.insert(jti), "one token_consumed row per token"),
                _ => {}
            }
        }
        (issued, consumed)
    }

    fn client(&self) -> reqwest::Client {
        let pki = &self.prepared.pki;
        let pem = format!("{}{}", pki.emr_a.cert_pem, pki.emr_a.key_pem);
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.server_ca.cert_pem().as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    async fn finish(self) {
        if let Some((admin, name)) = &self.prepared.pg_database {
            drop_database(admin, name).await;
        }
    }
}

struct GatewayProcess {
    child: Child,
    log: PathBuf,
}

impl GatewayProcess {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to end (at most `limit`).
    async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit within {limit:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the clients were answered.
#[derive(Default)]
struct Answers {
    /// Tokens answered 200 at issue: (jti, token).
    issued: Vec<(String, String)>,
    /// Tokens answered 200 at consume.
    consumed: Vec<String>,
    /// Any other status, with its body.
    other: Vec<(u16, String)>,
    /// Requests that failed at the connection level (no complete answer).
    broken: Vec<String>,
}

impl Answers {
    fn ok(&self) -> usize {
        self.issued.len() + self.consumed.len()
    }
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// One request: its status and body, or why no complete answer came.
async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<(u16, Value), String> {
    let res = client.post(url).json(body).send().await.map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// An EMR client issuing a token and consuming it, again and again, until a request gets no
/// complete answer (the gateway went away) or `stop` is set.
async fn emr_client(setup: Arc<Setup>, answers: Arc<Mutex<Answers>>, stop: Arc<AtomicBool>) {
    let client = setup.client();
    let (issue_url, consume_url) = (setup.url("/api/v1/signing-tokens"), setup.url("/api/v1/signing-tokens/consume"));
    let issue_body = json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN });
    while !stop.load(Ordering::Relaxed) {
        let token = match post(&client, &issue_url, &issue_body).await {
            Err(e) => {
                answers.lock().unwrap().broken.push(e);
                return;
            }
            Ok((200, body)) => {
                let token = body["token"].as_str().unwrap().to_owned();
                answers.lock().unwrap().issued.push((jti_of(&token), token.clone()));
                token
            }
            Ok((status, body)) => {
                answers.lock().unwrap().other.push((status, body.to_string()));
                continue;
            }
        };
        match post(&client, &consume_url, &json!({ "token": token })).await {
            Err(e) => {
                answers.lock().unwrap().broken.push(e);
                return;
            }
            Ok((200, body)) => {
                assert_eq!(body["clinic_id"], CLINIC);
                answers.lock().unwrap().consumed.push(jti_of(&token));
            }
            Ok((status, body)) => answers.lock().unwrap().other.push((status, body.to_string())),
        }
    }
}

/// Starts the clients and returns once they got `n` successful answers between them.
async fn load_until(
    setup: &Arc<Setup>,
    n: usize,
) -> (Arc<Mutex<Answers>>, Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..CLIENTS).map(|_| tokio::spawn(emr_client(setup.clone(), answers.clone(), stop.clone()))).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        {
            let a = answers.lock().unwrap();
            if a.ok() >= n && !a.consumed.is_empty() {
                break;
            }
            assert!(a.broken.is_empty() && a.other.is_empty(), "before the fault: {:?} {:?}", a.other, a.broken);
        }
        assert!(Instant::now() < deadline, "{n} answers did not come within 20 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (answers, stop, clients)
}

/// Every token answered as issued has its `token_issued` row and every token answered as
/// consumed its `token_consumed` row.
fn assert_all_audited(answers: &Answers, issued: &BTreeSet<String>, consumed: &BTreeSet<String>) {
    let unaudited_issues: Vec<&String> = answers.issued.iter().map(|(jti, _)| jti).filter(|j| !issued.contains(*j)).collect();
    let unaudited_consumes: Vec<&String> = answers.consumed.iter().filter(|j| !consumed.contains(*j)).collect();
    assert!(
        unaudited_issues.is_empty() && unaudited_consumes.is_empty(),
        "answered without an audit row: {} of {} issues {unaudited_issues:?}, {} of {} consumes {unaudited_consumes:?}",
        unaudited_issues.len(),
        answers.issued.len(),
        unaudited_consumes.len(),
        answers.consumed.len()
    );
}

/// kill -9 of the gateway process while 8 EMR clients issue and consume tokens: every answered
/// issue has its `token_issued` row and every answered consume its `token_consumed` row,
/// `audit verify` says intact, and the gateway restarted on the same database serves at once;
/// a token answered as issued and not consumed before the kill can still be consumed, one
/// answered as consumed cannot be consumed again.
async fn kill_9_under_token_load_loses_no_answered_audit_row(db: Db) {
    let setup = Arc::new(Setup::new(db, 0).await);
    let mut gw = setup.serve("gateway-1.log").await;
    let (answers, _stop, clients) = load_until(&setup, ANSWERS_BEFORE_FAULT).await;
    gw.signal(rustix::process::Signal::KILL);
    let status = gw.wait(Duration::from_secs(10)).await;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
    // With the process gone, every client ends on a request without a complete answer.
    for c in clients {
        c.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    assert!(answers.other.is_empty(), "only 200s and broken connections: {:?}", answers.other);
    assert_eq!(answers.broken.len(), CLIENTS);

    let (issued, consumed) = setup.audited().await;
    eprintln!(
        "killed: {} issues and {} consumes answered, {} token_issued and {} token_consumed rows",
        answers.issued.len(),
        answers.consumed.len(),
        issued.len(),
        consumed.len()
    );
    assert_all_audited(&answers, &issued, &consumed);

    // Back on the same database.
    let mut gw = setup.serve("gateway-2.log").await;
    let client = setup.client();
    let consume = |token: &str| {
        let (client, url, body) = (client.clone(), setup.url("/api/v1/signing-tokens/consume"), json!({ "token": token }));
        async move { post(&client, &url, &body).await.unwrap() }
    };
    let consumed_before: BTreeSet<&String> = answers.consumed.iter().collect();
    // A consume the kill cut off after its commit is in the log without an answer: pick a token
    // that was consumed neither as answered nor as audited.
    if let Some((_, token)) = answers.issued.iter().find(|(jti, _)| !consumed.contains(jti)) {
        let (status, body) = consume(token).await;
        assert_eq!(status, 200, "an issued token survives the crash: {body}");
    }
    let (_, token) = answers.issued.iter().find(|(jti, _)| consumed_before.contains(jti)).unwrap();
    let (status, body) = consume(token).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("token_already_used")), "{body}");
    let (status, body) =
        post(&client, &setup.url("/api/v1/signing-tokens"), &json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN }))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(consume(body["token"].as_str().unwrap()).await.0, 200);
    gw.signal(rustix::process::Signal::TERM);
    assert!(gw.wait(Duration::from_secs(15)).await.success(), "{}", gw.log_text());
    drop(gw);
    let (issued, consumed) = setup.audited().await;
    assert_all_audited(&answers, &issued, &consumed);
    Arc::into_inner(setup).unwrap().finish().await;
}

/// SIGTERM under the same load: requests in flight and those arriving during the drain delay
/// are answered in full (never a 5xx), the others fail at the connection level; every answer
/// has its audit row, the chain verifies, and the process exits 0.
async fn sigterm_under_token_load_answers_fully_or_not_at_all(db: Db) {
    let setup = Arc::new(Setup::new(db, 1).await);
    let mut gw = setup.serve("gateway.log").await;
    let (answers, _stop, clients) = load_until(&setup, ANSWERS_BEFORE_FAULT).await;
    let at_signal = answers.lock().unwrap().ok();
    gw.signal(rustix::process::Signal::TERM);
    let status = gw.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}:\n{}", gw.log_text());
    for c in clients {
        c.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    assert!(answers.other.is_empty(), "every complete answer is a 200: {:?}", answers.other);
    assert_eq!(answers.broken.len(), CLIENTS);
    // The listener served on through the drain delay.
    assert!(answers.ok() > at_signal, "answers after SIGTERM: {} then {}", at_signal, answers.ok());
    let (issued, consumed) = setup.audited().await;
    eprintln!(
        "terminated: {} answers at SIGTERM, {} in all ({} issues, {} consumes); {} token_issued and {} token_consumed rows",
        at_signal,
        answers.ok(),
        answers.issued.len(),
        answers.consumed.len(),
        issued.len(),
        consumed.len()
    );
    assert_all_audited(&answers, &issued, &consumed);
    drop(gw);
    Arc::into_inner(setup).unwrap().finish().await;
}

db_tests!(kill_9_under_token_load_loses_no_answered_audit_row, sigterm_under_token_load_answers_fully_or_not_at_all);
