//! The OQS relay end to end through real processes and real folders (docs/design.md §3.13): the
//! gateway (in-process, real mTLS) on each database, the clinic agent binary with the clinic's
//! certificate, the OQS terminal simulator binary on a `req` and a `res` folder. The EMR's
//! requests are answered; restarts of the agent and of the gateway in the middle lose nothing and
//! write nothing twice; a request never answered expires with its reason; answers are archived once.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::*;

/// A workspace binary: from `NINSHO_TEST_<NAME>_BIN`, else beside this test binary's folder
/// (`target/debug/`), where `cargo build --workspace` puts it.
pub(crate) fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --workspace --all-features` (or set {env})", path.display());
    path
}

/// A child process killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits (bounded) for a line on stdout starting with `ready`.
pub(crate) fn start(cmd: Command, ready: &str, log: &Path) -> Proc {
    start_with_line(cmd, ready, log).0
}

/// [`start`], also returning the ready line.
pub(crate) fn start_with_line(mut cmd: Command, ready: &str, log: &Path) -> (Proc, String) {
    let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&ready) {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("not ready; log: {}", std::fs::read_to_string(log).unwrap_or_default()));
    (Proc(child), line)
}

pub(crate) fn request_xml(id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?><XmlMsg><MessageHeader><MedicalInstitutionCode>1311234567</MedicalInstitutionCode><ArbitraryFileIdentifier>{id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><IssueType>1</IssueType></MessageBody></XmlMsg>"#
    )
}

struct Setup {
    dir: tempfile::TempDir,
    relay_toml: PathBuf,
    req: PathBuf,
    res: PathBuf,
    archive: PathBuf,
}

fn setup(app: &TestApp) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (req, res, archive, state) = (dir.path().join("req"), dir.path().join("res"), dir.path().join("archive"), dir.path().join("state"));
    for d in [&req, &res] {
        std::fs::create_dir_all(d).unwrap();
    }
    let identity = dir.path().join("client.pem");
    std::fs::write(&identity, format!("{}{}", app.pki.clinic_client.cert_pem, app.pki.clinic_client.key_pem)).unwrap();
    let ca = dir.path().join("gateway-ca.pem");
    std::fs::write(&ca, app.pki.server_ca.cert_pem()).unwrap();
    let relay_toml = dir.path().join("relay.toml");
    let toml = format!(
        "gateway = \"{}\"\ngateway_ca = {:?}\nidentity = {:?}\nclinic_id = \"{CLINIC}\"\nreq = {:?}\nres = {:?}\narchive = {:?}\nstate_dir = {:?}\nrescan_secs = 1\nsettle_ms = 200\n",
        app.origin(),
        ca,
        identity,
        req,
        res,
        archive,
        state
    );
    std::fs::write(&relay_toml, toml).unwrap();
    Setup { dir, relay_toml, req, res, archive }
}

fn agent_cmd(s: &Setup) -> Command {
    let mut cmd = Command::new(workspace_bin("card-agent", "NINSHO_TEST_AGENT_BIN"));
    cmd.args(["--allow-origin", "https://localhost", "--port", "0", "--relay"]).arg(&s.relay_toml);
    cmd.arg("--data-dir").arg(s.dir.path().join("data"));
    cmd.env("CARD_AGENT_LOG", "info");
    cmd
}

pub(crate) fn sim_cmd(req: &Path, res: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_bin("oqs-sim", "NINSHO_TEST_OQS_SIM_BIN"));
    cmd.arg("--req").arg(req).arg("--res").arg(res).args(["--delay-ms", "50", "--poll-ms", "50"]).args(extra);
    cmd
}

pub(crate) async fn enqueue(app: &TestApp, emr: &reqwest::Client, name: &str, ident: &str) -> String {
    let body = json!({ "file_name": name, "content": STANDARD.encode(request_xml(ident)) });
    let res = emr.post(app.url(&format!("/api/v1/clinics/{CLINIC}/oqs/requests"))).json(&body).send().await.unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{answer}");
    answer["request_id"].as_str().unwrap().to_owned()
}

/// Waits (bounded, by long-polls) for the request to end.
pub(crate) async fn ended(app: &TestApp, emr: &reqwest::Client, id: &str) -> Value {
    for _ in 0..6 {
        let st: Value = emr.get(app.url(&format!("/api/v1/oqs/requests/{id}?wait=10"))).send().await.unwrap().json().await.unwrap();
        if ["answered", "failed", "expired"].contains(&st["status"].as_str().unwrap_or_default()) {
            return st;
        }
    }
    panic!("request {id} did not end");
}

pub(crate) fn answer_text(st: &Value) -> String {
    String::from_utf8(STANDARD.decode(st["response"]["content"].as_str().unwrap()).unwrap()).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push(entry.file_name().unwrap().to_string_lossy().into_owned());
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

async fn requests_are_relayed_through_the_agent_and_the_terminal(db: Db) {
    let mut app = TestApp::spawn(db).await;
    let s = setup(&app);
    let log = s.dir.path().join("processes.log");
    let _sim = start(sim_cmd(&s.req, &s.res, &[]), "oqs-sim watching", &log);
    let mut agent = start(agent_cmd(&s), "card-agent listening", &log);
    let emr = app.client(Some(&app.pki.emr_a));

    let ok = enqueue(&app, &emr, "EPSsiDMP01req_000000000001.xml", "R1").await;
    let err = enqueue(&app, &emr, "EPSsiDMP01req_000000000002.xml", "ERROR-R2").await;
    let st = ended(&app, &emr, &ok).await;
    assert_eq!(st["status"], "answered", "{st}; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(st["response"]["file_name"], "EPSsiDMP01res_000000000001.xml");
    let text = answer_text(&st);
    assert!(text.contains("<ArbitraryFileIdentifier>R1</ArbitraryFileIdentifier>") && text.contains("<SegmentOfResult>1</SegmentOfResult>"), "{text}");
    let st = ended(&app, &emr, &err).await;
    assert_eq!(st["status"], "answered");
    assert!(answer_text(&st).contains("<SegmentOfResult>9</SegmentOfResult>"), "the terminal's error result is relayed as an answer");

    // The agent stops in the middle; what is queued meanwhile is relayed after it comes back.
    drop(agent);
    let during = enqueue(&app, &emr, "EPSsiDMP01req_000000000003.xml", "R3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st: Value = emr.get(app.url(&format!("/api/v1/oqs/requests/{during}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(st["status"], "queued", "nobody takes it while the agent is away");
    agent = start(agent_cmd(&s), "card-agent listening", &log);
    let st = ended(&app, &emr, &during).await;
    assert_eq!(st["status"], "answered", "{st}");
    assert!(answer_text(&st).contains("<ArbitraryFileIdentifier>R3</ArbitraryFileIdentifier>"));

    // The gateway restarts in the middle: a request queued just before and one just after are
    // both relayed, once each (the agent reconnects with backoff).
    let before = enqueue(&app, &emr, "EPSsiDMP01req_000000000004.xml", "R4").await;
    app.restart().await;
    let after = enqueue(&app, &emr, "EPSsiDMP01req_000000000005.xml", "R5").await;
    for (id, ident) in [(&before, "R4"), (&after, "R5")] {
        let st = ended(&app, &emr, id).await;
        assert_eq!(st["status"], "answered", "{st}; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
        assert!(answer_text(&st).contains(&format!("<ArbitraryFileIdentifier>{ident}</ArbitraryFileIdentifier>")));
    }

    // A request the terminal never answers expires, and says why.
    let silent = enqueue(&app, &emr, "EPSsiDMP01req_000000000006.xml", "NOANSWER-R6").await;
    let mut delivered = false;
    for _ in 0..100 {
        let st: Value = emr.get(app.url(&format!("/api/v1/oqs/requests/{silent}"))).send().await.unwrap().json().await.unwrap();
        if st["status"] == "delivered" {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the silent request reaches req");
    app.clock.advance(time::Duration::seconds(app.config.oqs.answer_timeout_secs));
    let st: Value = emr.get(app.url(&format!("/api/v1/oqs/requests/{silent}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((st["status"].as_str(), st["reason"].as_str()), (Some("expired"), Some("no_answer")), "{st}");

    // Each request was written into req once, and each answer archived once; nothing is left
    // but the silent request's file, which the terminal never took.
    let audit = app.store().audit_tail(500).await.unwrap();
    for id in [&ok, &err, &during, &before, &after, &silent] {
        let delivered = audit.iter().filter(|r| r.event == "oqs_delivered" && r.detail["request_id"] == id.as_str()).count();
        assert_eq!(delivered, 1, "{id} delivered once");
    }
    // The agent archives after the gateway has the answer: wait (bounded) for the last one.
    for _ in 0..50 {
        if files_under(&s.archive).len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(files_under(&s.archive), (1..=5).map(|n| format!("EPSsiDMP01res_00000000000{n}.xml")).collect::<Vec<_>>());
    assert!(files_under(&s.res).is_empty(), "res {:?}", files_under(&s.res));
    assert!(files_under(&s.req).iter().all(|f| f.starts_with("EPSsiDMP01req_000000000006")), "req {:?}", files_under(&s.req));
    drop(agent);
    app.stop().await;
}

async fn an_answer_written_in_pieces_is_uploaded_whole(db: Db) {
    let app = TestApp::spawn(db).await;
    let s = setup(&app);
    let log = s.dir.path().join("processes.log");
    let _sim = start(sim_cmd(&s.req, &s.res, &["--partial-ms", "700"]), "oqs-sim watching", &log);
    let _agent = start(agent_cmd(&s), "card-agent listening", &log);
    let emr = app.client(Some(&app.pki.emr_a));
    let id = enqueue(&app, &emr, "EPSsiDMP01req_00000000000p.xml", "P1").await;
    let st = ended(&app, &emr, &id).await;
    assert_eq!(st["status"], "answered", "{st}");
    let text = answer_text(&st);
    assert!(text.trim_end().ends_with("</XmlMsg>"), "the whole answer, not its first half: {text}");
    app.stop().await;
}

db_tests!(requests_are_relayed_through_the_agent_and_the_terminal, an_answer_written_in_pieces_is_uploaded_whole);
