//! `bench run`: the whole comparison in one process — ceilings, the peer, and the real gateway
//! binary on SQLite and PostgreSQL at two scales — then one table, printed and written to
//! `BENCHMARKS.md`. `--smoke` is the 2-second harness check run by `tests/run.sh`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use gateway::clock::{Clock as _, SystemClock};
use serde::Serialize;

use crate::ceiling::{self, CryptoRates};
use crate::conn::Target;
use crate::load::{self, LoadResult, Mode, Spec};
use crate::pgserver::{DbProbe, PgServer};
use crate::report;
use crate::setup::{self, GatewayConfig, PkiFiles};
use crate::signhash::{KeyCeiling, KeyKind, Signer};
use crate::workload::{CardKey, SignDoctor, Workload};
use crate::{procstat, tlsconf, verify};

/// Options of `bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The gateway binary (default: `gateway` next to this binary).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// Working directory for PKI, databases, configs and logs.
    #[arg(long, default_value = "target/bench-run")]
    pub work: PathBuf,
    /// Where to write the report (not written with --smoke).
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds per scenario.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Connections in keep-alive scenarios.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Connections in new-connection scenarios.
    #[arg(long, default_value_t = 16)]
    pub newconn_concurrency: usize,
    /// Browser sessions in the FIDO scenario (at most 256).
    #[arg(long, default_value_t = 32)]
    pub fido_concurrency: usize,
    /// Browser sessions in the card scenario, one card each (at most the small scale - 256).
    #[arg(long, default_value_t = 32)]
    pub card_concurrency: usize,
    /// Connections in the login-timing scenario (each attempt is one argon2id verification).
    #[arg(long, default_value_t = 8)]
    pub login_concurrency: usize,
    /// Rows at the small scale.
    #[arg(long, default_value_t = 1_000)]
    pub small: u64,
    /// Rows at the large scale (0 = skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub large: u64,
    /// Token rate for the latency-at-half-rate check (the target is p99 ≤ 10 ms at 5 000/s).
    #[arg(long, default_value_t = 5_000.0)]
    pub paced_rate: f64,
    /// PostgreSQL: `own` starts a server of the harness's own for the run (a fresh cluster under
    /// the work directory, tuned and durable, with pg_stat_statements: see `pgserver`); a URL uses
    /// that server (a database per scale is created and dropped); empty = skip.
    #[arg(long, env = "BENCH_DATABASE_URL", default_value = "own")]
    pub pg: String,
    /// Measure only the gateway on this database (`sqlite` or `postgres`; profiling runs).
    #[arg(long)]
    pub only_db: Option<String>,
    /// The peer's directory (`npm ci` done); skipped when absent or with --no-peer.
    #[arg(long, default_value = "bench/peer")]
    pub peer_dir: PathBuf,
    /// Skip the peer.
    #[arg(long)]
    pub no_peer: bool,
    /// Seconds per crypto measurement.
    #[arg(long, default_value_t = 1.0)]
    pub crypto_secs: f64,
    /// Gateway log level (`info` is the production default).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// 2-second harness check: trivial server and a gateway on SQLite (token, FIDO, card, page,
    /// and the remote signer's signHash), fails on any error; no peer, no PostgreSQL, no report.
    #[arg(long)]
    pub smoke: bool,
    /// Only the remote signer's signHash scenarios (issue 19) and their key ceilings, beside a
    /// gateway on SQLite; replaces the `## Remote signer: signHash` section of `--out` and keeps
    /// the rest of the file.
    #[arg(long)]
    pub sign_hash_only: bool,
    /// Doctors with a credential at the signer in the signHash scenarios.
    #[arg(long, default_value_t = 8)]
    pub sign_doctors: u64,
    /// EMR connections in the signHash scenarios (each also keeps one to the gateway).
    #[arg(long, default_value_t = 16)]
    pub sign_concurrency: usize,
    /// Skip the SoftHSM2 variant of the signHash scenarios.
    #[arg(long)]
    pub no_softhsm: bool,
}

/// One measured line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub server: String,
    pub scenario: String,
    pub db: String,
    pub rows: u64,
    pub mode: Mode,
    pub concurrency: usize,
    pub paced: Option<f64>,
    pub result: LoadResult,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub crypto: CryptoRates,
    pub rows: Vec<Row>,
    /// Gateway RSS right after start-up, per (db, rows), KiB.
    pub idle_rss: Vec<(String, u64, u64)>,
    pub peer_check: Option<String>,
    pub gateway_check: Vec<String>,
    /// Login timing per (db, rows): both distributions and their difference.
    pub login_timing: Vec<String>,
    pub seed_seconds: Vec<(String, u64, f64)>,
    pub args: String,
    pub notes: Vec<String>,
    /// The remote signer's signHash scenarios.
    pub signer: SignerResults,
}

/// What the signHash scenarios measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignerResults {
    /// RSA-2048 signing ceiling of each key backend.
    pub ceilings: Vec<(KeyKind, KeyCeiling)>,
    pub runs: Vec<SignerRun>,
    pub checks: Vec<String>,
    pub notes: Vec<String>,
}

/// One key backend's signHash measurements.
#[derive(Debug, Clone, Serialize)]
pub struct SignerRun {
    pub keys: KeyKind,
    pub doctors: u64,
    pub concurrency: usize,
    /// Token at the gateway + signHash, per operation.
    pub with_token: LoadResult,
    /// signHash alone, tokens issued ahead.
    pub sign_only: LoadResult,
    /// Mean consume round trip as the signer measured it (ms), in each measurement.
    pub consume_ms_with_token: f64,
    pub consume_ms_sign_only: f64,
    /// Tokens issued ahead and how fast.
    pub pre_issued: usize,
    pub pre_issue_rate: f64,
    /// signDoc of the sample prescription (tokens issued ahead, the local TSA over HTTP); the
    /// signer's mean consume round trip in it (ms).
    pub sign_doc: Option<LoadResult>,
    pub consume_ms_sign_doc: f64,
    /// The document's own work in-process, one thread, no network (signed documents/s).
    pub document_pipeline: Option<f64>,
}

pub(crate) struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the process has ended.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub(crate) fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in {grace:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway binary: `given`, else `gateway` next to this binary.
pub(crate) fn gateway_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("gateway"),
    };
    if !bin.exists() {
        bail!(
            "no gateway binary at {} (build it, or pass --gateway)",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) async fn wait_port(port: u16, proc: &mut Proc, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!("{} exited with {status} before listening", proc.name);
        }
        if Instant::now() > deadline {
            bail!("{} not listening on {port} after {secs} s", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("start {name}"))?;
    Ok(Proc {
        child,
        name: name.to_owned(),
    })
}

struct Ctx {
    args: RunArgs,
    pki: PkiFiles,
    emr: Arc<rustls::ClientConfig>,
    emr_fresh: Arc<rustls::ClientConfig>,
    clinic: Arc<rustls::ClientConfig>,
    clinic_fresh: Arc<rustls::ClientConfig>,
    rows: Vec<Row>,
    /// The PostgreSQL server behind the gateway being measured, when the harness runs it.
    db: Option<DbProbe>,
    /// Per paced run on the harness's own PostgreSQL server: its commits held by a slow WAL flush.
    stalls: Vec<String>,
}

impl Ctx {
    fn spec(&self, mode: Mode, concurrency: usize, rate: Option<f64>, pid: Option<u32>) -> Spec {
        Spec {
            concurrency,
            warmup: Duration::from_secs_f64(self.args.warmup),
            duration: Duration::from_secs_f64(self.args.duration),
            mode,
            rate,
            server_pid: pid,
            second_pid: None,
            db: self.db.clone(),
        }
    }

    /// A target on `port`. Keep-alive clients get a session store of their own per target, so
    /// no server is offered another's tickets (every server here is `localhost`).
    fn target(&self, port: u16, clinic: bool, mode: Mode) -> Target {
        let tls = match (clinic, mode) {
            (false, Mode::KeepAlive) => tlsconf::own_sessions(&self.emr),
            (false, Mode::NewConnection) => self.emr_fresh.clone(),
            (true, Mode::KeepAlive) => tlsconf::own_sessions(&self.clinic),
            (true, Mode::NewConnection) => self.clinic_fresh.clone(),
        };
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host: "localhost".into(),
            tls,
        }
    }

    #[allow(clippy::too_many_arguments, reason = "a table row's coordinates")]
    async fn measure(
        &mut self,
        server: &str,
        scenario: &str,
        db: &str,
        rows: u64,
        target: &Target,
        workload: Workload,
        spec: Spec,
    ) -> anyhow::Result<LoadResult> {
        eprintln!(
            "-- {server} {scenario} {db} rows={rows} {} c={}{}",
            spec.mode.label(),
            spec.concurrency,
            spec.rate.map(|r| format!(" rate={r}")).unwrap_or_default()
        );
        let result = load::run(target, Arc::new(workload), &spec).await?;
        if let (Some(rate), Some(probe)) = (spec.rate, &self.db) {
            // The measured window ends as the run returns (within its teardown's milliseconds).
            let to = SystemClock.now();
            let from = to - spec.duration;
            let log = std::fs::read_to_string(&probe.log).unwrap_or_default();
            let s = crate::pgserver::commit_stalls(&log, from, to);
            self.stalls.push(format!(
                "{server} {scenario} on {db}, {rows} rows, paced {rate}/s: commits over 20 ms in the measured window {}, \
                 WAL flushes they waited on {}, longest {:.0} ms",
                s.commits,
                s.flushes,
                s.max_ms,
            ));
        }
        eprintln!(
            "   {:.0}/s p50 {:.2} p90 {:.2} p99 {:.2} max {:.1} ms, errors {}, cpu {:.0} µs/op, rss {} MiB",
            result.rate,
            result.p50_ms,
            result.p90_ms,
            result.p99_ms,
            result.max_ms,
            result.errors_text(),
            result.server_cpu_us_per_op,
            result.server_rss_end_kib / 1024
        );
        self.rows.push(Row {
            server: server.into(),
            scenario: scenario.into(),
            db: db.into(),
            rows,
            mode: spec.mode,
            concurrency: spec.concurrency,
            paced: spec.rate,
            result: result.clone(),
        });
        Ok(result)
    }
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs everything; returns an error if a smoke check failed.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    gateway::install_crypto_provider();
    let started = Instant::now();
    let now = SystemClock.now();
    let gateway_bin = gateway_binary(args.gateway.as_deref())?;
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    let work = std::fs::canonicalize(&args.work)?;
    let pki = setup::make_pki(&work.join("pki"), now)?;
    let cards = Arc::new(setup::CardPki::new(args.card_concurrency, now)?);
    let load_before = load_average();
    let crypto = if args.smoke || args.sign_hash_only {
        CryptoRates::default()
    } else {
        eprintln!("-- crypto ceilings");
        let secs = Duration::from_secs_f64(args.crypto_secs);
        let cards = cards.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<CryptoRates> {
            let mut rates = ceiling::crypto_rates(secs)?;
            (rates.card_verify_1, rates.card_verify_all) =
                ceiling::card_verify_rates(secs, &cards)?;
            Ok(rates)
        })
        .await??
    };
    let mut ctx = Ctx {
        emr: tlsconf::client(&pki.server_ca, &pki.emr_cert, &pki.emr_key, true)?,
        emr_fresh: tlsconf::client(&pki.server_ca, &pki.emr_cert, &pki.emr_key, false)?,
        clinic: tlsconf::client(&pki.server_ca, &pki.clinic_cert, &pki.clinic_key, true)?,
        clinic_fresh: tlsconf::client(&pki.server_ca, &pki.clinic_cert, &pki.clinic_key, false)?,
        args: args.clone(),
        pki,
        rows: Vec::new(),
        stalls: Vec::new(),
        db: None,
    };
    let exe = std::env::current_exe()?;
    let mut notes = Vec::new();

    // --- trivial mTLS server -------------------------------------------------------------------
    if !args.sign_hash_only {
        let port = free_port()?;
        let mut p = spawn(
            "trivial server",
            Command::new(&exe)
                .arg("trivial-server")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--cert")
                .arg(&ctx.pki.server_chain)
                .arg("--key")
                .arg(&ctx.pki.server_key)
                .arg("--client-ca")
                .arg(&ctx.pki.service_ca),
            &work.join("trivial.log"),
        )?;
        wait_port(port, &mut p, 10).await?;
        let pid = Some(p.pid());
        let modes: &[Mode] = if args.smoke {
            &[Mode::KeepAlive]
        } else {
            &[Mode::KeepAlive, Mode::NewConnection]
        };
        for &mode in modes {
            let c = if mode == Mode::KeepAlive {
                args.concurrency
            } else {
                args.newconn_concurrency
            };
            let t = ctx.target(port, false, mode);
            let spec = ctx.spec(mode, c, None, pid);
            ctx.measure(
                "trivial",
                "constant body",
                "-",
                0,
                &t,
                Workload::Get { path: "/".into() },
                spec,
            )
            .await?;
        }
        p.stop(Duration::from_secs(2));
    }

    // --- peer -----------------------------------------------------------------------------------
    let mut peer_check = None;
    let peer_ready = ctx
        .args
        .peer_dir
        .join("node_modules/oidc-provider/package.json");
    if args.smoke || args.no_peer || args.sign_hash_only {
    } else if !peer_ready.exists() {
        notes.push(format!(
            "peer skipped: {} missing (run `npm ci` in {})",
            peer_ready.display(),
            ctx.args.peer_dir.display()
        ));
    } else {
        let port = free_port()?;
        let resource = "urn:ninsho:remote-signer";
        let mut p = spawn(
            "peer",
            Command::new("node")
                .arg(ctx.args.peer_dir.join("server.mjs"))
                .env("NODE_ENV", "production")
                .env("PEER_PORT", port.to_string())
                .env("PEER_CERT", &ctx.pki.server_chain)
                .env("PEER_KEY", &ctx.pki.server_key)
                .env("PEER_CA", &ctx.pki.service_ca)
                .env("PEER_CLIENT_CERT", &ctx.pki.emr_cert)
                .env("PEER_RESOURCE", resource),
            &work.join("peer.log"),
        )?;
        wait_port(port, &mut p, 30).await?;
        let body = format!("grant_type=client_credentials&client_id=bench-emr&resource={resource}");
        let der = gateway::pki::parse_certificate(&std::fs::read(&ctx.pki.emr_cert)?)?;
        let checked = verify::token(
            &ctx.target(port, false, Mode::KeepAlive),
            "/jwks",
            "/token",
            "application/x-www-form-urlencoded",
            &body,
            "access_token",
            &der,
        )
        .await
        .context("peer token check")?;
        peer_check = Some(format!(
            "one peer token checked before measuring: typ `{}`, ES256 signature valid under its `/jwks` (kid `{}`), `cnf.x5t#S256` = SHA-256 of our client certificate, {} bytes",
            checked.typ, checked.kid, checked.bytes
        ));
        for mode in [Mode::KeepAlive, Mode::NewConnection] {
            let c = if mode == Mode::KeepAlive {
                args.concurrency
            } else {
                args.newconn_concurrency
            };
            let t = ctx.target(port, false, mode);
            let spec = ctx.spec(mode, c, None, Some(p.pid()));
            ctx.measure(
                "peer",
                "token",
                "memory",
                0,
                &t,
                Workload::PeerToken {
                    body: Bytes::from(body.clone()),
                },
                spec,
            )
            .await?;
        }
        p.stop(Duration::from_secs(5));
    }

    // --- the gateway ----------------------------------------------------------------------------
    let mut idle_rss = Vec::new();
    let mut gateway_check = Vec::new();
    let mut login_timing = Vec::new();
    let mut seed_seconds = Vec::new();
    let mut signer = SignerResults::default();
    let mut dbs = vec!["sqlite"];
    let mut own_pg = None;
    let mut pg_url = args.pg.clone();
    if !args.smoke && !args.sign_hash_only && !args.pg.is_empty() && args.only_db.as_deref() != Some("sqlite") {
        dbs.push("postgres");
        if args.pg == "own" {
            eprintln!("-- starting the benchmark's own PostgreSQL server");
            let server = PgServer::start(&work.join("pg"), free_port()?).await?;
            notes.push(server.describe());
            pg_url = server.url();
            own_pg = Some(server);
        } else {
            notes.push(pg_settings(&args.pg).await?);
        }
    }
    let small = if args.smoke {
        args.small.min(300)
    } else {
        args.small
    };
    let mut scales = vec![small];
    if !args.smoke && !args.sign_hash_only && args.large > 0 {
        scales.push(args.large);
    }
    if let Some(only) = &args.only_db {
        dbs.retain(|d| d == only);
    }
    for db in dbs {
        for &rows in &scales {
            let dir = work.join(format!("gw-{db}-{rows}"));
            std::fs::create_dir_all(&dir)?;
            let db_url = match db {
                "sqlite" => format!("sqlite://{}", dir.join("gateway.db").display()),
                _ => pg_database(&pg_url, &format!("ninsho_bench_{rows}"), true).await?,
            };
            let argon2_kib = 8 * 1024;
            eprintln!("-- seeding {db} with {rows} doctors");
            let seeded = setup::seed(
                &db_url,
                &dir,
                &ctx.pki,
                &cards,
                rows,
                setup::FIDO_POOL as usize,
                ctx.args.card_concurrency,
                argon2_kib,
                now.unix_timestamp(),
            )
            .await?;
            eprintln!("   {:.1} s", seeded.seconds);
            seed_seconds.push((db.to_owned(), rows, seeded.seconds));
            let cfg = GatewayConfig {
                data_dir: dir.clone(),
                port: free_port()?,
                ops_port: free_port()?,
                db_url: db_url.clone(),
                max_connections: 16,
                argon2_kib,
                log_level: args.log_level.clone(),
            };
            let config_path = setup::write_config(&cfg, &ctx.pki)?;
            let mut gw = spawn(
                "gateway",
                Command::new(&gateway_bin)
                    .arg("serve")
                    .arg("--config")
                    .arg(&config_path),
                &dir.join("gateway.log"),
            )?;
            ctx.db = own_pg.as_ref().filter(|_| db == "postgres").map(|s| DbProbe { postmaster: s.pid(), admin_url: s.url(), log: s.log() });
            let result = if args.sign_hash_only {
                wait_port(cfg.port, &mut gw, 60).await
            } else {
                gateway_scenarios(
                    &mut ctx,
                    &mut gw,
                    &cfg,
                    db,
                    rows,
                    &seeded,
                    rows == small,
                    &cards,
                    &mut idle_rss,
                    &mut gateway_check,
                    &mut login_timing,
                )
                .await
            };
            // The remote signer beside the small SQLite gateway.
            let result = match result {
                Ok(()) if db == "sqlite" && rows == small => {
                    signer_scenarios(&mut ctx, &exe, &work, &gw, cfg.port, rows, &mut signer).await
                }
                other => other,
            };
            gw.stop(Duration::from_secs(35));
            ctx.db = None;
            if db == "postgres" {
                let _ = pg_database(&pg_url, &format!("ninsho_bench_{rows}"), false).await;
            }
            if let Err(e) = result {
                if let Some(server) = own_pg.take() {
                    server.stop();
                }
                return Err(e);
            }
        }
    }
    if let Some(server) = own_pg.take() {
        server.stop();
    }
    // Slow commits in the paced windows: the WAL flush's tail, which decides their p99.
    notes.extend(ctx.stalls.iter().map(|s| {
        format!("PostgreSQL's log (commits that ended within 5 ms of each other waited on one WAL flush): {s}.")
    }));

    let m = Measurements {
        date: now.date().to_string(),
        machine: procstat::machine_description(),
        load_before,
        crypto,
        rows: ctx.rows,
        idle_rss,
        peer_check,
        gateway_check,
        login_timing,
        seed_seconds,
        args: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        notes,
        signer,
    };
    std::fs::write(work.join("results.json"), serde_json::to_vec_pretty(&m)?)?;
    if args.smoke {
        let bad: Vec<String> = m
            .rows
            .iter()
            .filter(|r| r.result.ops == 0 || r.result.error_count() > 0)
            .map(|r| {
                format!(
                    "{} {} {}: {} ops, errors {}",
                    r.server,
                    r.scenario,
                    r.mode.label(),
                    r.result.ops,
                    r.result.errors_text()
                )
            })
            .collect();
        println!(
            "bench smoke: {} scenarios in {:.1} s",
            m.rows.len(),
            started.elapsed().as_secs_f64()
        );
        if !bad.is_empty() {
            bail!("bench smoke failed:\n{}", bad.join("\n"));
        }
        return Ok(());
    }
    if args.sign_hash_only {
        let section = report::signer_section(&m, Some(started.elapsed()));
        println!("{section}");
        let old = std::fs::read_to_string(&args.out).unwrap_or_default();
        let text = crate::soak::replace_heading(&old, report::SIGNER_HEADING, &section);
        std::fs::write(&args.out, &text).with_context(|| format!("write {}", args.out.display()))?;
        eprintln!("written to {} (raw numbers: {})", args.out.display(), work.join("results.json").display());
        return Ok(());
    }
    let mut text = report::markdown(&m, started.elapsed());
    println!("{text}");
    // A soak result (`bench soak --out`) is a separate, longer run: keep it.
    if let Some(soak) = std::fs::read_to_string(&args.out)
        .ok()
        .and_then(|old| crate::soak::section(&old).map(str::to_owned))
    {
        text = crate::soak::replace_section(&text, &soak);
    }
    std::fs::write(&args.out, &text).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "written to {} (raw numbers: {})",
        args.out.display(),
        work.join("results.json").display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "internal step of run()")]
async fn gateway_scenarios(
    ctx: &mut Ctx,
    gw: &mut Proc,
    cfg: &GatewayConfig,
    db: &str,
    rows: u64,
    seeded: &setup::Seeded,
    full: bool,
    cards: &setup::CardPki,
    idle_rss: &mut Vec<(String, u64, u64)>,
    gateway_check: &mut Vec<String>,
    login_timing: &mut Vec<String>,
) -> anyhow::Result<()> {
    wait_port(cfg.port, gw, 60).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gw.pid();
    idle_rss.push((db.to_owned(), rows, procstat::rss_kib(pid).unwrap_or(0)));
    let smoke = ctx.args.smoke;
    let token = || Workload::Token {
        clinic: setup::CLINIC.into(),
        doctors: seeded.doctors,
    };
    if full {
        let der = gateway::pki::parse_certificate(&std::fs::read(&ctx.pki.emr_cert)?)?;
        let checked = verify::token(
            &ctx.target(cfg.port, false, Mode::KeepAlive),
            "/.well-known/jwks.json",
            "/api/v1/signing-tokens",
            "application/json",
            &format!(r#"{{"clinic_id":"{}","doctor_id":"d1"}}"#, setup::CLINIC),
            "token",
            &der,
        )
        .await
        .context("gateway token check")?;
        gateway_check.push(format!(
            "{db}: typ `{}`, {} bytes",
            checked.typ, checked.bytes
        ));
    }
    let c = ctx.args.concurrency;
    let t = ctx.target(cfg.port, false, Mode::KeepAlive);
    let spec = ctx.spec(Mode::KeepAlive, c, None, Some(pid));
    let max = ctx
        .measure("gateway", "token", db, rows, &t, token(), spec)
        .await?
        .rate;
    if !full {
        return Ok(());
    }
    if !smoke {
        // The target rate, then half of what this run reached: latency at half load.
        for rate in [ctx.args.paced_rate, (max / 2.0).round().max(1.0)] {
            let spec = ctx.spec(Mode::KeepAlive, c, Some(rate), Some(pid));
            ctx.measure("gateway", "token", db, rows, &t, token(), spec)
                .await?;
        }
        let t = ctx.target(cfg.port, false, Mode::NewConnection);
        let spec = ctx.spec(
            Mode::NewConnection,
            ctx.args.newconn_concurrency,
            None,
            Some(pid),
        );
        ctx.measure("gateway", "token", db, rows, &t, token(), spec)
            .await?;
    }
    let fido_c = ctx.args.fido_concurrency.min(seeded.fido_users.len());
    let t = ctx.target(cfg.port, true, Mode::KeepAlive);
    let workload = Workload::Fido {
        users: seeded.fido_users.clone(),
        password: setup::PASSWORD.into(),
        origin: format!("https://localhost:{}", cfg.port),
    };
    let spec = ctx.spec(Mode::KeepAlive, fido_c, None, Some(pid));
    ctx.measure("gateway", "fido login", db, rows, &t, workload, spec)
        .await?;
    let workload = Workload::Card {
        users: seeded.card_users.clone(),
        cards: Arc::new(
            cards
                .cards
                .iter()
                .map(CardKey::from_leaf)
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        password: setup::PASSWORD.into(),
        origin: format!("https://localhost:{}", cfg.port),
    };
    let spec = ctx.spec(Mode::KeepAlive, seeded.card_users.len(), None, Some(pid));
    ctx.measure("gateway", "card login", db, rows, &t, workload, spec)
        .await?;
    login_timing.push(measure_login_timing(ctx, cfg.port, pid, db, rows, seeded).await?);
    let t = ctx.target(cfg.port, true, Mode::NewConnection);
    let spec = ctx.spec(
        Mode::NewConnection,
        ctx.args.newconn_concurrency,
        None,
        Some(pid),
    );
    ctx.measure(
        "gateway",
        "handshake + login page",
        db,
        rows,
        &t,
        Workload::Get {
            path: "/login".into(),
        },
        spec,
    )
    .await?;
    Ok(())
}

/// The remote signer's signHash (issue 19) beside the gateway on `gateway_port`: for software keys
/// and (when installed) SoftHSM2, the backend's RSA-2048 ceiling, then token + signHash per
/// operation, then signHash alone with tokens issued ahead.
async fn signer_scenarios(
    ctx: &mut Ctx,
    exe: &Path,
    work: &Path,
    gw: &Proc,
    gateway_port: u16,
    rows: u64,
    out: &mut SignerResults,
) -> anyhow::Result<()> {
    let mut kinds = vec![KeyKind::Software];
    if ctx.args.no_softhsm {
    } else if crate::signhash::softhsm2_available() {
        kinds.push(KeyKind::SoftHsm2);
    } else {
        out.notes.push("SoftHSM2 skipped: its module or softhsm2-util is not installed (apt-get install softhsm2)".into());
    }
    let doctors = if ctx.args.smoke { ctx.args.sign_doctors.min(2) } else { ctx.args.sign_doctors };
    let doctors = doctors.clamp(1, rows);
    let c = if ctx.args.smoke { ctx.args.sign_concurrency.min(4) } else { ctx.args.sign_concurrency };
    for keys in kinds {
        eprintln!("-- signer with {}: set-up ({doctors} credentials)", keys.label());
        let dir = work.join(format!("signer-{}", if keys == KeyKind::Software { "software" } else { "softhsm2" }));
        let signer = Signer::start(exe, &dir, &ctx.pki, gateway_port, keys, doctors).await?;
        let result = signer_measure(ctx, &signer, gw, gateway_port, rows, keys, c, out).await;
        signer.stop();
        result?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "internal step of signer_scenarios()")]
async fn signer_measure(
    ctx: &mut Ctx,
    signer: &Signer,
    gw: &Proc,
    gateway_port: u16,
    rows: u64,
    keys: KeyKind,
    c: usize,
    out: &mut SignerResults,
) -> anyhow::Result<()> {
    let server = format!("signer ({})", keys.label());
    let gateway = ctx.target(gateway_port, false, Mode::KeepAlive);
    let target = ctx.target(signer.port, false, Mode::KeepAlive);
    let first: &SignDoctor = signer.doctors.first().context("no signer credentials")?;
    let check = crate::signhash::check_one(&gateway, &target, first).await.context("signHash check")?;
    out.checks.push(format!("{}: {check}", keys.label()));
    if !ctx.args.smoke {
        let secs = ctx.args.crypto_secs.max(2.0);
        eprintln!("-- {} RSA-2048 ceiling ({secs} s per measurement)", keys.label());
        let ceiling = signer.key_ceiling(secs)?;
        eprintln!("   {:.0}/s on 1 thread, {:.0}/s on {}", ceiling.one, ceiling.all, ceiling.threads);
        out.ceilings.push((keys, ceiling));
    }
    let spec = |ctx: &Ctx| {
        let mut spec = ctx.spec(Mode::KeepAlive, c, None, Some(signer.proc.pid()));
        spec.second_pid = Some(gw.pid());
        spec
    };
    let workload = Workload::SignHash {
        gateway: gateway.clone(),
        clinic: setup::CLINIC.into(),
        doctors: signer.doctors.clone(),
    };
    let before = signer.consume_seconds().await?;
    let s = spec(ctx);
    let with_token = ctx.measure(&server, "token + signHash", "sqlite", rows, &target, workload, s).await?;
    let after = signer.consume_seconds().await?;
    let consume_ms_with_token = mean_ms(before, after);
    // Enough tokens for three times the rate just measured over the warm-up and the window.
    let secs = ctx.args.warmup + ctx.args.duration;
    let count = ((with_token.rate * 3.0 * secs) as usize + 200).min(300_000);
    eprintln!("-- issuing {count} tokens ahead");
    let started = Instant::now();
    let tokens = crate::signhash::pre_issue(&gateway, &signer.doctors, count, 16, None).await?;
    let pre_issue_rate = count as f64 / started.elapsed().as_secs_f64();
    let workload = Workload::SignHashOnly { tokens: Arc::new(std::sync::Mutex::new(tokens)) };
    let before = signer.consume_seconds().await?;
    let s = spec(ctx);
    let sign_only = ctx.measure(&server, "signHash (tokens issued ahead)", "sqlite", rows, &target, workload, s).await?;
    let after = signer.consume_seconds().await?;
    let consume_ms_sign_only = mean_ms(before, after);
    // signDoc (software keys): the sample prescription, time-stamped by the local TSA.
    let (mut sign_doc, mut consume_ms_sign_doc, mut document_pipeline) = (None, 0.0, None);
    if keys == KeyKind::Software {
        let secs_pipeline = if ctx.args.smoke { 0.5 } else { ctx.args.crypto_secs.max(2.0) };
        let rate = tokio::task::spawn_blocking(move || crate::signhash::document_pipeline_rate(secs_pipeline)).await??;
        eprintln!("   signed-document pipeline in-process: {rate:.0}/s on 1 thread");
        document_pipeline = Some(rate);
        let digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), crate::signhash::SAMPLE_PRESCRIPTION)).into();
        let count = ((sign_only.rate.min(1000.0) * secs) as usize + 200).min(100_000);
        eprintln!("-- issuing {count} tokens for the sample prescription ahead");
        let tokens = crate::signhash::pre_issue(&gateway, &signer.doctors, count, 16, Some(digest)).await?;
        let document = Arc::new(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::signhash::SAMPLE_PRESCRIPTION));
        let workload = Workload::SignDocOnly { tokens: Arc::new(std::sync::Mutex::new(tokens)), document };
        let before = signer.consume_seconds().await?;
        let s = spec(ctx);
        sign_doc = Some(ctx.measure(&server, "signDoc (tokens issued ahead, local TSA)", "sqlite", rows, &target, workload, s).await?);
        consume_ms_sign_doc = mean_ms(before, signer.consume_seconds().await?);
    }
    out.runs.push(SignerRun {
        keys,
        doctors: signer.doctors.len() as u64,
        concurrency: c,
        with_token,
        sign_only,
        consume_ms_with_token,
        consume_ms_sign_only,
        pre_issued: count,
        pre_issue_rate,
        sign_doc,
        consume_ms_sign_doc,
        document_pipeline,
    });
    Ok(())
}

/// Mean of a histogram between two (sum, count) readings, in milliseconds.
fn mean_ms(before: (f64, f64), after: (f64, f64)) -> f64 {
    let n = after.1 - before.1;
    if n > 0.0 { 1000.0 * (after.0 - before.0) / n } else { 0.0 }
}

/// Login timing (issue 15): refused password logins for doctors that exist and for login IDs
/// that do not, one scenario each, and the difference of their latency distributions. Both
/// must cost one argon2id verification (the unknown ID against a dummy hash), so the
/// difference should be noise. Returns the line for the report.
async fn measure_login_timing(
    ctx: &mut Ctx,
    port: u16,
    pid: u32,
    db: &str,
    rows: u64,
    seeded: &setup::Seeded,
) -> anyhow::Result<String> {
    let ids = seeded.doctors.clamp(1, 1_000);
    let origin = format!("https://localhost:{port}");
    let t = ctx.target(port, true, Mode::KeepAlive);
    let c = ctx.args.login_concurrency;
    let mut measured = Vec::new();
    for (scenario, prefix) in [("login: wrong password", "d"), ("login: unknown ID", "nobody")] {
        let workload = Workload::FailedLogin {
            login_ids: Arc::new((1..=ids).map(|n| format!("{prefix}{n}")).collect()),
            origin: origin.clone(),
        };
        let spec = ctx.spec(Mode::KeepAlive, c, None, Some(pid));
        measured.push(ctx.measure("gateway", scenario, db, rows, &t, workload, spec).await?);
    }
    let (wrong, unknown) = (&measured[0], &measured[1]);
    let line = format!(
        "{db}, {rows} doctors: wrong password p50 {:.2} / p90 {:.2} / p99 {:.2} ms ({:.0}/s), \
         unknown login ID p50 {:.2} / p90 {:.2} / p99 {:.2} ms ({:.0}/s); \
         difference (unknown − wrong) p50 {:+.2} ms ({:+.1} %), p90 {:+.2} ms, p99 {:+.2} ms",
        wrong.p50_ms,
        wrong.p90_ms,
        wrong.p99_ms,
        wrong.rate,
        unknown.p50_ms,
        unknown.p90_ms,
        unknown.p99_ms,
        unknown.rate,
        unknown.p50_ms - wrong.p50_ms,
        100.0 * (unknown.p50_ms - wrong.p50_ms) / wrong.p50_ms.max(1e-9),
        unknown.p90_ms - wrong.p90_ms,
        unknown.p99_ms - wrong.p99_ms,
    );
    eprintln!("   login timing: {line}");
    Ok(line)
}

/// The PostgreSQL server's version and durability settings, for the report.
pub(crate) async fn pg_settings(admin_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))?;
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
    ] {
        let (value,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut conn)
            .await?;
        settings.push(format!("{name} = {value}"));
    }
    Ok(format!(
        "PostgreSQL server on the same machine: {}.",
        settings.join(", ")
    ))
}

/// Creates (`create`) or drops a database on the PostgreSQL server at `admin_url`; returns its URL.
pub(crate) async fn pg_database(admin_url: &str, name: &str, create: bool) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    if create {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
    }
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Ok(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}
