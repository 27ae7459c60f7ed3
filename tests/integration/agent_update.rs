//! The clinic agent updates itself (docs/design.md §3.15, decision 0019) with real binaries and a
//! real gateway on each database: two builds of the agent (tests/build-update-agents.sh, run by
//! tests/run.sh) — 1.0.0 trusting test release keys 1 and 2, and 9.0.0 trusting key 2 only (the
//! key rotation) — and the gateway's release channel. The test plays the service manager: when
//! the agent exits, it starts the binary at the same path again.
//!
//! Shown: a good update end to end (はい, download, checks, self-test, swap, exit, restart, the new
//! version at the gateway); each refusal names its reason and changes nothing on disk (bad
//! signature, unknown key, tampered or truncated binary, an old release relabelled as new, a
//! replayed release older than one verified before, wrong target); a failing self-test swaps
//! nothing; a new binary that never becomes healthy, or crashes at start twice, is rolled back; a
//! crash at each step leaves a working agent; the rotated build refuses the old key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use release::sign::{self, NewKeyPair, Password};
use serde_json::Value;

use crate::agent_releases::publish;
use crate::helpers::*;
use crate::oqs_relay::{Proc, start_with_line};

/// Where tests/build-update-agents.sh put the agent builds.
fn bins() -> PathBuf {
    let dir = std::env::var("NINSHO_TEST_AGENT_UPDATE_BINS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .unwrap()
                .join("agent-update-bins")
        });
    assert!(
        dir.join("card-agent-1.0.0").exists(),
        "{} has no agent builds: run tests/build-update-agents.sh (tests/run.sh does)",
        dir.display()
    );
    dir
}

fn v1() -> PathBuf {
    bins().join("card-agent-1.0.0")
}

fn v9() -> PathBuf {
    bins().join("card-agent-9.0.0-rotated")
}

/// A committed test release key (tests/fixtures/release-test-key-N.*; never a real one).
fn test_key(n: u8) -> NewKeyPair {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let public_text =
        std::fs::read_to_string(dir.join(format!("release-test-key-{n}.pub"))).unwrap();
    let secret_text =
        std::fs::read_to_string(dir.join(format!("release-test-key-{n}.key"))).unwrap();
    let public = release::PublicKey::decode(&public_text).unwrap();
    NewKeyPair {
        public_text,
        secret_text,
        public,
    }
}

/// The target the agent builds run on, as their self-test says.
fn target() -> String {
    let out = Command::new(v1()).arg("--self-test").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .skip_while(|w| *w != "target")
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Publishes `binary` as `version` for `target`, signed with `key`, through the admin CLI.
async fn release(app: &TestApp, key: &NewKeyPair, version: &str, target: &str, binary: &[u8]) {
    let m = sign::manifest_for(
        binary,
        version,
        target,
        "不具合を修正しました。",
        "Fixes bugs.",
    )
    .unwrap();
    let (manifest, signature) = sign::sign_manifest(&key.secret_text, Password::None, &m).unwrap();
    let (code, out) = publish(
        app,
        &format!("r-{version}-{target}"),
        &manifest,
        &signature,
        binary,
    )
    .await;
    assert_eq!(code, 0, "{out}");
}

/// A gateway trusting test keys 1, 2 and 3, with room for a debug agent binary.
async fn gateway(db: Db) -> TestApp {
    let keys: Vec<String> = (1..=3)
        .map(|n| test_key(n).public.to_base64().to_owned())
        .collect();
    TestApp::builder(db)
        .with_config(move |c| {
            c.agent_releases.public_keys = keys;
            c.agent_releases.max_binary_bytes = 256 * 1024 * 1024;
        })
        .spawn()
        .await
}

/// Raw changes to the gateway's release rows: what a compromised gateway or database could serve.
async fn sql(app: &TestApp, statement: &str, blob: Option<Vec<u8>>) {
    let url = &app.config.database.url;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let q = sqlx::query(sqlx::AssertSqlSafe(statement.replace("$1", "?")));
        match blob {
            Some(b) => q.bind(b).execute(&pool).await.unwrap(),
            None => q.execute(&pool).await.unwrap(),
        };
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let q = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()));
        match blob {
            Some(b) => q.bind(b).execute(&pool).await.unwrap(),
            None => q.execute(&pool).await.unwrap(),
        };
        pool.close().await;
    }
}

/// A clinic PC: the agent's executable (a copy of a build), its relay set up for the test gateway.
struct Pc {
    dir: tempfile::TempDir,
    exe: PathBuf,
    relay_toml: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

impl Pc {
    fn new(app: &TestApp, build: &Path) -> Pc {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let (req, res, state) = (p.join("req"), p.join("res"), p.join("state"));
        for d in [&req, &res, &p.join("bin")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let exe = p.join("bin").join("card-agent");
        std::fs::copy(build, &exe).unwrap();
        let identity = p.join("client.pem");
        std::fs::write(
            &identity,
            format!(
                "{}{}",
                app.pki.clinic_client.cert_pem, app.pki.clinic_client.key_pem
            ),
        )
        .unwrap();
        let ca = p.join("gateway-ca.pem");
        std::fs::write(&ca, app.pki.server_ca.cert_pem()).unwrap();
        let relay_toml = p.join("relay.toml");
        let pc = Pc {
            exe,
            relay_toml,
            data: p.join("data"),
            log: p.join("agent.log"),
            dir,
        };
        pc.point_at(&app.origin(), &identity, &ca, &req, &res, &state);
        pc
    }

    fn point_at(
        &self,
        gateway: &str,
        identity: &Path,
        ca: &Path,
        req: &Path,
        res: &Path,
        state: &Path,
    ) {
        let toml = format!(
            "gateway = \"{gateway}\"\ngateway_ca = {ca:?}\nidentity = {identity:?}\nclinic_id = \"{CLINIC}\"\nreq = {req:?}\nres = {res:?}\nstate_dir = {state:?}\n"
        );
        std::fs::write(&self.relay_toml, toml).unwrap();
    }

    /// Points the relay (and so the updater) at a gateway that is not there, or back.
    fn gateway_reachable(&self, app: &TestApp, reachable: bool) {
        let p = self.dir.path();
        let origin = if reachable {
            app.origin()
        } else {
            "https://127.0.0.1:9".to_owned()
        };
        self.point_at(
            &origin,
            &p.join("client.pem"),
            &p.join("gateway-ca.pem"),
            &p.join("req"),
            &p.join("res"),
            &p.join("state"),
        );
    }

    fn cmd(&self, crash_at: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "--allow-origin",
            "https://localhost",
            "--port",
            "0",
            "--update-health-secs",
            "10",
            "--relay",
        ])
        .arg(&self.relay_toml)
        .arg("--data-dir")
        .arg(&self.data)
        .env("CARD_AGENT_LOG", "info")
        .env_remove("NINSHO_AGENT_CRASH_AT");
        if let Some(step) = crash_at {
            cmd.env("NINSHO_AGENT_CRASH_AT", step);
        }
        cmd
    }

    /// Starts the binary at the executable's path (as the service manager does).
    fn start(&self, crash_at: Option<&str>) -> Agent {
        let (proc, line) = start_with_line(self.cmd(crash_at), "card-agent listening", &self.log);
        let base = line
            .trim()
            .strip_prefix("card-agent listening on ")
            .unwrap()
            .to_owned();
        Agent {
            proc,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Runs the binary once to its end (a start that rolls back exits before it listens).
    fn run_to_exit(&self) -> std::process::ExitStatus {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = self
            .cmd(None)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_exit(&mut child, &self.log)
    }

    fn update_dir(&self) -> PathBuf {
        self.data.join("update")
    }

    fn pending(&self) -> Option<Value> {
        std::fs::read(self.update_dir().join("pending.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The executable is the build `build`, and nothing of an update lies around.
    fn assert_runs(&self, build: &Path, case: &str) {
        assert_eq!(
            std::fs::read(&self.exe).unwrap(),
            std::fs::read(build).unwrap(),
            "{case}: the executable"
        );
        let mut leftovers: Vec<String> = std::fs::read_dir(self.update_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        leftovers.retain(|n| {
            n.ends_with(".part")
                || n.starts_with("card-agent-")
                || n == "pending.json"
                || n.ends_with(".tmp")
        });
        assert!(leftovers.is_empty(), "{case}: leftovers {leftovers:?}");
        assert!(
            !self.exe.with_file_name(".card-agent.new").exists(),
            "{case}: .card-agent.new left"
        );
    }
}

fn wait_exit(child: &mut std::process::Child, log: &Path) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < until,
            "the agent did not exit; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Agent {
    proc: Proc,
    base: String,
    http: reqwest::Client,
}

impl Agent {
    async fn status_page(&self) -> String {
        let res = self
            .http
            .get(format!("{}/status?lang=en", self.base))
            .send()
            .await
            .unwrap();
        res.text().await.unwrap()
    }

    /// Waits until the status page's update section contains one of `any`; returns the page.
    async fn wait_page(&self, any: &[&str], log: &Path) -> String {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let page = self.status_page().await;
            if any.iter().any(|s| page.contains(s)) {
                return page;
            }
            assert!(
                Instant::now() < until,
                "status page never showed {any:?}: {page}\nlog: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Answers the offer (はい = yes) as the page's form does.
    async fn answer(&self, yes: bool) {
        let page = self.status_page().await;
        let at = page.find("name=\"token\" value=\"").unwrap() + "name=\"token\" value=\"".len();
        let token = page[at..].split('"').next().unwrap().to_owned();
        let answer = if yes { "yes" } else { "no" };
        let res = self
            .http
            .post(format!("{}/update", self.base))
            .header("origin", &self.base)
            .form(&[
                ("token", token.as_str()),
                ("answer", answer),
                ("lang", "en"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 303);
    }

    /// Waits for the agent to exit by itself.
    fn exits(mut self, log: &Path) -> std::process::ExitStatus {
        wait_exit(&mut self.proc.0, log)
    }
}

const OFFER: &str = "A new version of the tool has been released. Update now?";
const NOT_UPDATED: &str = "Not updated to v";

/// The agent's row at the gateway.
async fn agent_row(app: &TestApp) -> gateway::store::AgentSeen {
    let agents = app.store().list_agents().await.unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    agents.into_iter().next().unwrap()
}

/// Waits until the gateway's agent list shows `version` and the update step `step outcome`.
async fn wait_row(
    app: &TestApp,
    version: &str,
    step: &str,
    outcome: &str,
) -> gateway::store::AgentSeen {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let agents = app.store().list_agents().await.unwrap();
        if let Some(a) = agents.first()
            && a.version == version
            && a.update_step.as_deref() == Some(step)
            && a.update_outcome.as_deref() == Some(outcome)
        {
            return a.clone();
        }
        assert!(
            Instant::now() < until,
            "agent list never showed {version} {step} {outcome}: {agents:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_good_update_restarts_as_the_new_version_and_the_rotated_key_holds(db: Db) {
    let app = gateway(db).await;
    let target = target();
    let new_binary = std::fs::read(v9()).unwrap();
    // Signed with the key in the 1.0.0 build's second slot: the rotation's first half.
    release(&app, &test_key(2), "9.0.0", &target, &new_binary).await;
    let pc = Pc::new(&app, &v1());
    let agent = pc.start(None);
    let page = agent.wait_page(&[OFFER], &pc.log).await;
    assert!(
        page.contains("Version v1.0.0")
            && page.contains("Version v9.0.0")
            && page.contains("Fixes bugs."),
        "{page}"
    );
    let ja = agent
        .http
        .get(format!("{}/status", agent.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ja.contains("新しいツールがリリースされています。更新しますか?")
            && ja.contains("不具合を修正しました。"),
        "{ja}"
    );
    // A foreign Origin or a wrong token changes nothing.
    let res = agent
        .http
        .post(format!("{}/update", agent.base))
        .header("origin", "https://evil.example")
        .form(&[("answer", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let res = agent
        .http
        .post(format!("{}/update", agent.base))
        .header("origin", &agent.base)
        .form(&[("token", "x"), ("answer", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(agent.status_page().await.contains(OFFER));

    agent.answer(true).await;
    let status = agent.exits(&pc.log);
    assert!(status.success(), "exit 0 for the service manager: {status}");
    assert!(
        pc.log_text().contains("ready; the tool exits"),
        "{}",
        pc.log_text()
    );
    assert_eq!(
        std::fs::read(&pc.exe).unwrap(),
        new_binary,
        "the new binary is in place"
    );
    assert_eq!(
        std::fs::read(update_previous(&pc.exe)).unwrap(),
        std::fs::read(v1()).unwrap(),
        "the previous one is kept"
    );
    assert_eq!(pc.pending().unwrap()["version"], "9.0.0");

    // The service manager starts it again: the new version proves healthy and says so.
    let agent = pc.start(None);
    let row = wait_row(&app, "9.0.0", "restart", "success").await;
    assert_eq!(row.update_version.as_deref(), Some("9.0.0"));
    assert!(
        pc.pending().is_none(),
        "pending.json is cleared once healthy"
    );
    assert!(agent.status_page().await.contains("Version v9.0.0"));
    let (code, out) = crate::agent_releases::admin(&app, &["agent", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("\t9.0.0\t") && out.contains("update 9.0.0 restart success"),
        "{out}"
    );
    drop(agent);

    // The rotation's second half: the 9.0.0 build trusts key 2 only; a release signed with the
    // old key 1 is refused, and nothing changes.
    release(&app, &test_key(1), "9.1.0", &target, b"#!/bin/sh\nexit 0\n").await;
    let agent = pc.start(None);
    let page = agent.wait_page(&[NOT_UPDATED], &pc.log).await;
    assert!(page.contains("unknown_key"), "{page}");
    drop(agent);
    pc.assert_runs(&v9(), "old key after rotation");
    app.stop().await;
}

fn update_previous(exe: &Path) -> PathBuf {
    exe.with_file_name("card-agent.previous")
}

async fn refused_releases_change_nothing_and_say_why(db: Db) {
    let app = gateway(db).await;
    let target = target();
    let binary = std::fs::read(v9()).unwrap();
    let pc = Pc::new(&app, &v1());
    let clear = || sql(&app, "DELETE FROM agent_releases", None);

    // (case, set up the gateway, answer はい first, the code the page must name)
    // Unknown key: key 3 is trusted by the gateway, not by the agent.
    release(&app, &test_key(3), "2.0.0", &target, &binary).await;
    check_refused(&pc, "unknown key", false, "unknown_key").await;
    clear().await;
    // Bad signature: the manifest's bytes changed after signing (in the gateway's database).
    release(&app, &test_key(1), "2.0.0", &target, &binary).await;
    let m = sign::manifest_for(&binary, "2.0.0", &target, "改ざん", "Tampered.").unwrap();
    sql(
        &app,
        "UPDATE agent_releases SET manifest = $1",
        Some(m.to_bytes()),
    )
    .await;
    check_refused(&pc, "bad signature", false, "bad_signature").await;
    clear().await;
    // Tampered binary: one byte differs from the signed hash.
    release(&app, &test_key(1), "2.0.0", &target, &binary).await;
    let mut tampered = binary.clone();
    tampered[1000] ^= 1;
    sql(
        &app,
        "UPDATE agent_releases SET content = $1",
        Some(tampered),
    )
    .await;
    check_refused(&pc, "tampered binary", true, "hash_mismatch").await;
    // Truncated download: half the bytes.
    sql(
        &app,
        "UPDATE agent_releases SET content = $1",
        Some(binary[..binary.len() / 2].to_vec()),
    )
    .await;
    check_refused(&pc, "truncated", true, "size_mismatch").await;
    clear().await;
    // An old signed release relabelled as newer (equal to the agent's version, then older).
    for (signed_as, code) in [("1.0.0", "not_newer"), ("0.9.0", "not_newer")] {
        release(&app, &test_key(1), signed_as, &target, &binary).await;
        sql(
            &app,
            "UPDATE agent_releases SET version = '3.0.0', major = 3, minor = 0, patch = 0",
            None,
        )
        .await;
        check_refused(
            &pc,
            &format!("signed {signed_as}, offered as 3.0.0"),
            false,
            code,
        )
        .await;
        clear().await;
    }
    // Wrong target: a release for another platform offered as this one's.
    release(
        &app,
        &test_key(1),
        "2.0.0",
        "x86_64-pc-windows-msvc",
        &binary,
    )
    .await;
    sql(
        &app,
        &format!("UPDATE agent_releases SET target = '{target}'"),
        None,
    )
    .await;
    check_refused(&pc, "wrong target", false, "wrong_target").await;
    clear().await;
    // A new binary whose self-test fails is not swapped in. Its manifest and bytes were verified,
    // so 5.0.0 is now the highest release verified here: a replayed older one (4.0.0, newer than
    // the agent itself) is refused after it.
    let failing =
        format!("#!/bin/sh\necho card-agent self-test ok: version 5.0.0 target {target}\nexit 3\n");
    release(&app, &test_key(1), "5.0.0", &target, failing.as_bytes()).await;
    check_refused(&pc, "failing self-test", true, "self-test failed").await;
    let row = agent_row(&app).await;
    assert_eq!(
        (row.update_step.as_deref(), row.update_outcome.as_deref()),
        (Some("self_test"), Some("failure")),
        "{row:?}"
    );
    assert!(!update_previous(&pc.exe).exists(), "nothing was swapped");
    clear().await;
    release(&app, &test_key(1), "4.0.0", &target, &binary).await;
    check_refused(&pc, "replayed older release", false, "not_newer").await;
    assert!(
        pc.log_text().contains("not newer than 5.0.0"),
        "{}",
        pc.log_text()
    );
    let row = agent_row(&app).await;
    assert_eq!(
        (
            row.version.as_str(),
            row.update_step.as_deref(),
            row.update_outcome.as_deref()
        ),
        ("1.0.0", Some("verify"), Some("failure"))
    );
    app.stop().await;
}

/// Starts the agent, (answers はい,) waits for the refusal naming `code`; nothing changed on disk.
async fn check_refused(pc: &Pc, case: &str, accept: bool, code: &str) {
    let agent = pc.start(None);
    if accept {
        agent.wait_page(&[OFFER], &pc.log).await;
        agent.answer(true).await;
    }
    let page = agent.wait_page(&[NOT_UPDATED], &pc.log).await;
    assert!(
        page.contains(code) && page.contains("nothing was changed"),
        "{case}: expected {code}: {page}"
    );
    drop(agent);
    pc.assert_runs(&v1(), case);
}

async fn an_update_that_never_becomes_healthy_is_rolled_back(db: Db) {
    let app = gateway(db).await;
    let target = target();
    release(
        &app,
        &test_key(2),
        "9.0.0",
        &target,
        &std::fs::read(v9()).unwrap(),
    )
    .await;

    // Not healthy within the bound (it cannot reach the gateway).
    let pc = Pc::new(&app, &v1());
    let agent = pc.start(None);
    agent.wait_page(&[OFFER], &pc.log).await;
    agent.answer(true).await;
    assert!(agent.exits(&pc.log).success());
    pc.gateway_reachable(&app, false);
    let agent = pc.start(None);
    assert!(
        agent.exits(&pc.log).success(),
        "exits after putting the previous binary back"
    );
    assert!(
        pc.log_text().contains("did not become healthy within 10 s"),
        "{}",
        pc.log_text()
    );
    pc.gateway_reachable(&app, true);
    let agent = pc.start(None);
    let row = wait_row(&app, "1.0.0", "rollback", "success").await;
    assert!(
        row.update_detail
            .unwrap_or_default()
            .contains("did not become healthy")
    );
    // The release that failed here is not offered for installation again.
    let page = agent.wait_page(&["did not work on this PC"], &pc.log).await;
    assert!(page.contains("Version v1.0.0"), "{page}");
    drop(agent);
    pc.assert_runs(&v1(), "rolled back after the bound");
    sql(&app, "DELETE FROM agents", None).await;

    // Crashes at start twice (before it could prove itself): the third start rolls back.
    let pc = Pc::new(&app, &v1());
    let agent = pc.start(None);
    agent.wait_page(&[OFFER], &pc.log).await;
    agent.answer(true).await;
    assert!(agent.exits(&pc.log).success());
    for attempt in 1..=2 {
        let agent = pc.start(Some("probation"));
        assert!(!agent.exits(&pc.log).success(), "crash {attempt}");
        assert_eq!(pc.pending().unwrap()["attempts"], attempt);
    }
    assert!(
        pc.run_to_exit().success(),
        "the third start rolls back and exits"
    );
    assert!(pc.pending().is_none());
    let agent = pc.start(None);
    wait_row(&app, "1.0.0", "rollback", "success").await;
    drop(agent);
    pc.assert_runs(&v1(), "rolled back after two crashes");
    app.stop().await;
}

async fn a_crash_at_each_step_leaves_a_working_agent(db: Db) {
    let app = gateway(db).await;
    let target = target();
    release(
        &app,
        &test_key(2),
        "9.0.0",
        &target,
        &std::fs::read(v9()).unwrap(),
    )
    .await;
    for step in [
        "download",
        "verified",
        "self_tested",
        "new_copied",
        "previous_kept",
        "pending_written",
        "replaced",
    ] {
        let pc = Pc::new(&app, &v1());
        let agent = pc.start(Some(step));
        agent.wait_page(&[OFFER], &pc.log).await;
        agent.answer(true).await;
        let status = agent.exits(&pc.log);
        assert!(!status.success(), "{step}: the crash");
        assert!(
            pc.log_text().contains(&format!("crashing at {step}")),
            "{step}: {}",
            pc.log_text()
        );
        // The service manager starts whatever is at the path.
        let agent = pc.start(None);
        if step == "replaced" {
            // The new binary was in place: it proves itself and the update completes.
            wait_row(&app, "9.0.0", "restart", "success").await;
            assert!(pc.pending().is_none());
            drop(agent);
            pc.assert_runs(&v9(), step);
            continue;
        }
        // Else the old binary runs, cleans up, and the same release can be installed after all.
        agent.wait_page(&[OFFER], &pc.log).await;
        pc.assert_runs(&v1(), step);
        agent.answer(true).await;
        assert!(agent.exits(&pc.log).success(), "{step}: the retried update");
        let agent = pc.start(None);
        wait_row(&app, "9.0.0", "restart", "success").await;
        drop(agent);
        pc.assert_runs(&v9(), step);
        // The next case's agent starts from 1.0.0 again.
        sql(&app, "DELETE FROM agents", None).await;
    }
    app.stop().await;
}

db_tests!(
    a_good_update_restarts_as_the_new_version_and_the_rotated_key_holds,
    refused_releases_change_nothing_and_say_why,
    an_update_that_never_becomes_healthy_is_rolled_back,
    a_crash_at_each_step_leaves_a_working_agent,
);
