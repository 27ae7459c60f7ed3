//! Faults an operator meets: a database that stops answering, one that takes no writes. The
//! gateway answers fast and clearly (503 `unavailable`, never 500), reports unready, claims
//! nothing done that was not committed, and recovers by itself. `process`: kill -9 and SIGTERM of
//! a gateway process under token load.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) mod process;

/// A PostgreSQL server of the test's own, on a free port, that it can stop and start again.
struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// Creates and starts a throwaway cluster (trust authentication, no fsync) as user postgres.
    fn start_new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status().unwrap().success());
        let data = dir.path().join("data");
        let initdb = bin.join("initdb");
        run_as_postgres(&[initdb.to_str().unwrap(), "-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "--no-sync"]);
        let pg = Self { dir, bin, port };
        pg.start();
        pg
    }

    fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.path().join("data");
        let mut all = vec![pg_ctl.to_str().unwrap(), "-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        run_as_postgres(&all);
    }

    fn start(&self) {
        let log = self.dir.path().join("pg.log");
        let options = format!(
            // fsync off (the machine does not crash, only the server stops); commits stay
            // synchronous, so an immediate stop loses nothing committed.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&["-l", log.to_str().unwrap(), "-w", "-o", &options, "start"]);
    }

    /// Stops at once, as a crash or a failover would: connections break mid-use.
    fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_ctl)
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn run_as_postgres(args: &[&str]) {
    let out = Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().expect("runuser");
    assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

async fn issue(app: &TestApp, client: &reqwest::Client) -> (u16, Value, Duration) {
    let started = Instant::now();
    let res = client
        .post(app.url("/api/v1/signing-tokens"))
        .json(&json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").is_some();
    let body: Value = res.json().await.unwrap();
    if status == 503 {
        assert!(retry_after, "a 503 says when to retry");
    }
    (status, body, started.elapsed())
}

async fn ready(app: &TestApp) -> (u16, Duration) {
    let started = Instant::now();
    let status = reqwest::get(format!("http://127.0.0.1:{}/readyz", app.ops_port)).await.unwrap().status().as_u16();
    (status, started.elapsed())
}

/// A PostgreSQL outage during use: token requests get a fast 503 `unavailable` (within 2 s),
/// `/readyz` says unready within a second and a half, the doctor's login page gets a 503 page in
/// both languages, and once the server is back the gateway serves again without a restart.
#[tokio::test]
async fn a_postgresql_outage_is_answered_fast_and_recovered_from() {
    let pg = OwnPostgres::start_new();
    let app = TestApp::builder(Db::Postgres)
        .on_postgres_server(&pg.admin_url())
        .with_config(|c| c.database.acquire_timeout_ms = 1000)
        .spawn()
        .await;
    let emr = app.client(Some(&app.pki.emr_a));
    let sid = crate::tokens::open_session(&app).await;
    let (status, body, _) = issue(&app, &emr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ready(&app).await.0, 200);

    pg.stop();
    for _ in 0..3 {
        let (status, body, took) = issue(&app, &emr).await;
        assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
    }
    let (status, took) = ready(&app).await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_millis(1500), "readyz answered in {took:?}");
    // What an operator's alerts see (docs/metrics.md): unready, and requests that gave up
    // waiting for a connection.
    let m = crate::metrics::Scrape::of(&app).await;
    assert_eq!(m.value("ninsho_ready", &[]), 0.0);
    assert!(m.value("ninsho_db_pool_acquire_timeouts_total", &[("pool", "postgres")]) >= 1.0, "{}", app.metrics().await);
    let page = app.clinic_client().get(app.url("/methods")).send().await.unwrap();
    // The browser session lookup needs the database too.
    assert_eq!(page.status(), 503);
    let text = page.text().await.unwrap();
    assert!(text.contains("データベースに接続できません") && text.contains("cannot reach its database"), "{text}");

    pg.start();
    // Back without a restart: the pool reconnects on the next requests.
    let mut served = false;
    for _ in 0..20 {
        if issue(&app, &emr).await.0 == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "the gateway serves again once PostgreSQL is back");
    assert_eq!(ready(&app).await.0, 200);
    let m = crate::metrics::Scrape::of(&app).await;
    assert_eq!(m.value("ninsho_ready", &[]), 1.0);
    assert_eq!(m.value("ninsho_readiness_checks_total", &[("result", "unready")]), 1.0);
    // The session opened before the outage is still the doctor's.
    let live = app.store().signing_session(&sid).await.unwrap();
    assert!(live.ended_at.is_none());
    app.stop().await;
}

/// A SQLite database file that cannot be written (here: immutable, which binds root too) is
/// refused at start with a clear reason, instead of starting and answering every login and token
/// with an error.
#[tokio::test]
async fn a_database_that_takes_no_writes_is_refused_at_start() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let file = app.config.data_dir.join("gateway.db");
    let _immutable = Immutable::set(&file);
    let mut config = app.config.clone();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let refused = gateway::Application::build(config, Arc::new(app.clock.clone())).await;
    let why = format!("{:#}", refused.err().expect("a database that takes no writes is refused at start"));
    assert!(why.contains("does not take writes") || why.contains("readonly") || why.contains("read-only"), "{why}");
    drop(_immutable);
    app.stop().await;
}

/// `chattr +i` on a file for the guard's life.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &std::path::Path) -> Self {
        assert!(Command::new("chattr").arg("+i").arg(path).status().unwrap().success(), "chattr +i {}", path.display());
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Shutdown: `/readyz` fails at once while the listener still serves new connections for
/// `server.shutdown_drain_secs`; then it stops accepting.
#[tokio::test]
async fn shutdown_reports_unready_first_and_keeps_serving_while_draining() {
    let mut app = TestApp::builder(Db::Sqlite).with_config(|c| c.server.shutdown_drain_secs = 3).spawn().await;
    assert_eq!(ready(&app).await.0, 200);
    app.begin_stop();
    // The signal reaches the server task on its next poll.
    let mut unready = false;
    for _ in 0..50 {
        if ready(&app).await.0 == 503 {
            unready = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(unready, "readyz fails as soon as shutdown begins");
    // A new connection is still served during the drain.
    let res = app.clinic_client().get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let port = app.port;
    app.stop().await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "no longer accepting");
}
