//! `bench soak` (issue 16): a mixed load — signing tokens and their consumption, FIDO logins and
//! card logins — paced at half of a quickly measured maximum, for a long time, against a gateway
//! set up as `bench run` sets it up. Reports errors per kind, p99 per time bucket, and the
//! gateway's RSS over time with its least-squares slope, as a Markdown section (`## Soak`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use gateway::clock::{Clock as _, SystemClock};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::conn::{Conn, OpError, Target};
use crate::load::{self, Mode, Spec};
use crate::run::{self, Proc};
use crate::setup::{self, GatewayConfig};
use crate::workload::{self, CardKey, WorkerState, Workload};
use crate::{procstat, tlsconf};

/// The database of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoakDb {
    Sqlite,
    Postgres,
}

/// Options of `bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// The gateway binary (default: `gateway` next to this binary).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// Working directory for PKI, database, config and the gateway's log.
    #[arg(long, default_value = "target/bench-soak")]
    pub work: PathBuf,
    /// How long to run: `30m`, `90s`, `1h`, or plain seconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Total operations per second (default: half of a quick measured maximum of the mix).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of each closed-loop probe that measures the maximum (when --rate is not given).
    #[arg(long, default_value_t = 3.0)]
    pub probe: f64,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub db: SoakDb,
    /// PostgreSQL server URL (a database `ninsho_soak` is created and dropped).
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg: String,
    /// Doctors seeded, each with a live signing session.
    #[arg(long, default_value_t = 1_000)]
    pub doctors: u64,
    /// Connections issuing and consuming tokens.
    #[arg(long, default_value_t = 8)]
    pub token_workers: usize,
    /// Browser sessions logging in with FIDO (at most 256).
    #[arg(long, default_value_t = 4)]
    pub fido_workers: usize,
    /// Browser sessions logging in with a card (one card each, at most 64).
    #[arg(long, default_value_t = 4)]
    pub card_workers: usize,
    /// Length of a time-series bucket (default: 1 minute, or a tenth of a run under 10 minutes).
    #[arg(long, value_parser = parse_duration)]
    pub bucket: Option<Duration>,
    /// A Markdown file whose `## Soak` section to replace (or append) with the result.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Gateway log level.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Fail (exit non-zero) on any error; what tests/run.sh uses.
    #[arg(long)]
    pub strict: bool,
}

/// `30m`, `90s`, `2h`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, ""), |i| t.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 30m, 90s, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{text:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The kinds of operation, in report order.
const KINDS: [&str; 4] = ["token", "consume", "fido login", "card login"];
const TOKEN: usize = 0;
const CONSUME: usize = 1;
const FIDO: usize = 2;
const CARD: usize = 3;

/// Share of the operations per kind: tokens and their consumptions dominate, as in a clinic
/// where a doctor logs in once and then signs many prescriptions.
const SHARES: [f64; 4] = [0.4, 0.4, 0.1, 0.1];

/// What one time bucket saw.
struct Bucket {
    hist: Vec<Histogram<u64>>,
    errors: Vec<BTreeMap<String, u64>>,
}

/// Everything recorded, shared by the workers.
struct Recorder {
    start: Instant,
    bucket: Duration,
    buckets: Vec<Bucket>,
    total: Vec<Histogram<u64>>,
    errors: Vec<BTreeMap<String, u64>>,
    template: Histogram<u64>,
}

impl Recorder {
    fn new(start: Instant, bucket: Duration) -> anyhow::Result<Self> {
        // 1 µs .. 60 s at 2 significant digits: a p99 per bucket needs no more.
        let template = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).context("histogram")?;
        Ok(Self {
            start,
            bucket,
            buckets: Vec::new(),
            total: vec![template.clone(); KINDS.len()],
            errors: vec![BTreeMap::new(); KINDS.len()],
            template,
        })
    }

    fn bucket_at(&mut self, at: Instant) -> &mut Bucket {
        let i = (at.saturating_duration_since(self.start).as_secs_f64()
            / self.bucket.as_secs_f64()) as usize;
        while self.buckets.len() <= i {
            self.buckets.push(Bucket {
                hist: vec![self.template.clone(); KINDS.len()],
                errors: vec![BTreeMap::new(); KINDS.len()],
            });
        }
        &mut self.buckets[i]
    }

    /// One operation of `kind`, due at `due`, done at `done`.
    fn record(&mut self, kind: usize, due: Instant, done: Instant, result: &Result<(), OpError>) {
        match result {
            Ok(()) => {
                let us = u64::try_from(done.saturating_duration_since(due).as_micros())
                    .unwrap_or(u64::MAX)
                    .clamp(1, 60_000_000);
                let _ = self.total[kind].record(us);
                let _ = self.bucket_at(done).hist[kind].record(us);
            }
            Err(OpError(e)) => {
                *self.errors[kind].entry(e.clone()).or_insert(0) += 1;
                *self.bucket_at(done).errors[kind].entry(e.clone()).or_insert(0) += 1;
            }
        }
    }
}

/// One RSS sample: seconds since the start, KiB.
type RssSample = (f64, u64);

/// The result of a soak.
pub struct SoakResult {
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub db: SoakDb,
    pub doctors: u64,
    pub duration: Duration,
    pub bucket: Duration,
    /// Measured closed-loop maxima: token pairs/s, FIDO logins/s, card logins/s.
    pub probe: Option<[f64; 3]>,
    pub target_rate: f64,
    pub workers: [usize; 3],
    recorder: Recorder,
    pub rss: Vec<RssSample>,
    pub gateway_cpu_cores: f64,
}

impl SoakResult {
    pub fn error_count(&self) -> u64 {
        self.recorder.errors.iter().flat_map(|m| m.values()).sum()
    }

    pub fn ops(&self) -> u64 {
        self.recorder.total.iter().map(|h| h.len()).sum()
    }
}

/// A worker's pace: its first due time and the interval between operations.
struct Pace {
    first: Instant,
    interval: Duration,
    end: Instant,
}

async fn ensure_conn<'a>(
    conn: &'a mut Option<Conn>,
    target: &Target,
) -> Result<&'a mut Conn, OpError> {
    if conn.is_none() {
        *conn = Some(target.connect().await?);
    }
    conn.as_mut().ok_or_else(|| OpError("connect".into()))
}

/// Issues a token and consumes it, each on its own due time, over one kept-alive connection.
async fn token_worker(
    target: Target,
    first: u64,
    doctors: u64,
    mut rng: u64,
    pace: Pace,
    rec: Arc<Mutex<Recorder>>,
) {
    let mut conn: Option<Conn> = None;
    let mut due = pace.first;
    while due < pace.end {
        tokio::time::sleep_until(due).await;
        let issued = match ensure_conn(&mut conn, &target).await {
            Ok(c) => {
                workload::issue_token(&target, c, setup::CLINIC, first, doctors, &mut rng).await
            }
            Err(e) => Err(e),
        };
        let done = Instant::now();
        let record = |kind, due, done, r: &Result<(), OpError>| {
            if let Ok(mut rec) = rec.lock() {
                rec.record(kind, due, done, r);
            }
        };
        match issued {
            Ok(token) => {
                record(TOKEN, due, done, &Ok(()));
                // The consumption is due half an interval later (a signer's round trip).
                let consume_due = (due + pace.interval / 2).max(done);
                tokio::time::sleep_until(consume_due).await;
                let result = match ensure_conn(&mut conn, &target).await {
                    Ok(c) => workload::consume_token(&target, c, &token).await,
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    conn = None;
                }
                record(CONSUME, consume_due, Instant::now(), &result);
            }
            Err(e) => {
                conn = None;
                record(TOKEN, due, done, &Err(e));
            }
        }
        due += pace.interval;
    }
}

/// Runs `workload`'s operation (a FIDO or card login) on its pace.
async fn login_worker(
    kind: usize,
    target: Target,
    workload: Arc<Workload>,
    mut state: WorkerState,
    pace: Pace,
    rec: Arc<Mutex<Recorder>>,
) {
    let mut conn: Option<Conn> = None;
    let mut due = pace.first;
    while due < pace.end {
        tokio::time::sleep_until(due).await;
        let result = match ensure_conn(&mut conn, &target).await {
            Ok(c) => workload.op(&mut state, &target, c).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            conn = None;
        }
        if let Ok(mut rec) = rec.lock() {
            rec.record(kind, due, Instant::now(), &result);
        }
        due += pace.interval;
    }
}

/// Least-squares slope of `samples` in MiB per hour.
pub fn slope_mib_per_hour(samples: &[RssSample]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    // KiB per second → MiB per hour.
    Some(sxy / sxx * 3600.0 / 1024.0)
}

/// Sets up the PKI, the database and the gateway as `bench run` does, runs the soak, writes the
/// section; fails with --strict on any error.
pub async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    gateway::install_crypto_provider();
    let now = SystemClock.now();
    let gateway_bin = run::gateway_binary(args.gateway.as_deref())?;
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    let work = std::fs::canonicalize(&args.work)?;
    let fido_workers = args.fido_workers.min(setup::FIDO_POOL as usize);
    let card_workers = args.card_workers.min(setup::CARD_POOL as usize);
    // Twice the workers: the probe links authenticators and cards for its own doctors (a
    // registration code links once), the soak for the others.
    let fido_users = (2 * fido_workers).min(setup::FIDO_POOL as usize);
    let card_users = (2 * card_workers).min(setup::CARD_POOL as usize);
    // Tokens go to the doctors after the login pools.
    if args.doctors <= setup::FIDO_POOL + setup::CARD_POOL {
        bail!(
            "--doctors must be more than {} (the FIDO and card pools)",
            setup::FIDO_POOL + setup::CARD_POOL
        );
    }
    let pki = setup::make_pki(&work.join("pki"), now)?;
    let cards = setup::CardPki::new(card_users, now)?;
    let load_before = run::load_average();
    let dir = work.join("gateway");
    std::fs::create_dir_all(&dir)?;
    let db_url = match args.db {
        SoakDb::Sqlite => format!("sqlite://{}", dir.join("gateway.db").display()),
        SoakDb::Postgres => run::pg_database(&args.pg, "ninsho_soak", true).await?,
    };
    let argon2_kib = 8 * 1024;
    eprintln!("-- seeding {:?} with {} doctors", args.db, args.doctors);
    let seeded = setup::seed(
        &db_url,
        &dir,
        &pki,
        &cards,
        args.doctors,
        fido_users,
        card_users,
        argon2_kib,
        now.unix_timestamp(),
    )
    .await?;
    let cfg = GatewayConfig {
        data_dir: dir.clone(),
        port: run::free_port()?,
        ops_port: run::free_port()?,
        db_url,
        max_connections: 16,
        argon2_kib,
        log_level: args.log_level.clone(),
    };
    let config_path = setup::write_config(&cfg, &pki)?;
    let mut gw = run::spawn(
        "gateway",
        Command::new(&gateway_bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path),
        &dir.join("gateway.log"),
    )?;
    let emr = tlsconf::client(&pki.server_ca, &pki.emr_cert, &pki.emr_key, true)?;
    let clinic = tlsconf::client(&pki.server_ca, &pki.clinic_cert, &pki.clinic_key, true)?;
    let result = drive(&args, &mut gw, &cfg, &seeded, &cards, emr, clinic, now).await;
    gw.stop(Duration::from_secs(35));
    if args.db == SoakDb::Postgres {
        let _ = run::pg_database(&args.pg, "ninsho_soak", false).await;
    }
    let mut result = result?;
    result.load_before = load_before;
    let text = markdown(&result);
    println!("{text}");
    if let Some(out) = &args.out {
        let old = std::fs::read_to_string(out).unwrap_or_default();
        std::fs::write(out, replace_section(&old, &text))
            .with_context(|| format!("write {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    if args.strict && (result.error_count() > 0 || result.ops() == 0) {
        bail!(
            "soak: {} operations, {} errors",
            result.ops(),
            result.error_count()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "internal step of soak()")]
async fn drive(
    args: &SoakArgs,
    gw: &mut Proc,
    cfg: &GatewayConfig,
    seeded: &setup::Seeded,
    cards: &setup::CardPki,
    emr: Arc<rustls::ClientConfig>,
    clinic: Arc<rustls::ClientConfig>,
    now: time::OffsetDateTime,
) -> anyhow::Result<SoakResult> {
    run::wait_port(cfg.port, gw, 60).await?;
    let pid = gw.pid();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], cfg.port));
    let target = |tls: &Arc<rustls::ClientConfig>| Target {
        addr,
        host: "localhost".into(),
        tls: tlsconf::own_sessions(tls),
    };
    let (emr_t, clinic_t) = (target(&emr), target(&clinic));
    let origin = format!("https://localhost:{}", cfg.port);
    let workers = [
        args.token_workers.max(1),
        args.fido_workers.min(seeded.fido_users.len() / 2).max(1),
        args.card_workers.min(seeded.card_users.len() / 2).max(1),
    ];
    let card_keys = Arc::new(
        cards
            .cards
            .iter()
            .map(CardKey::from_leaf)
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    // The first half of the doctors with codes soak, the second half is the probe's.
    let fido_of = |users: &[workload::FidoUser]| {
        Arc::new(Workload::Fido {
            users: users.to_vec(),
            password: setup::PASSWORD.into(),
            origin: origin.clone(),
        })
    };
    let card_of = |users: &[workload::CardUser]| {
        Arc::new(Workload::Card {
            users: users.to_vec(),
            cards: card_keys.clone(),
            password: setup::PASSWORD.into(),
            origin: origin.clone(),
        })
    };
    let fido = fido_of(&seeded.fido_users[..workers[1]]);
    let card = card_of(&seeded.card_users[..workers[2]]);

    // The maximum of the mix: each kind alone, closed loop; the mix's capacity is where the
    // shares' time fractions add up to one.
    let (probe, target_rate) = match args.rate {
        Some(rate) => (None, rate),
        None => {
            let spec = |c| Spec {
                concurrency: c,
                warmup: Duration::from_secs_f64(args.probe / 4.0),
                duration: Duration::from_secs_f64(args.probe),
                mode: Mode::KeepAlive,
                rate: None,
                server_pid: Some(pid),
                second_pid: None,
                db: None,
            };
            let pairs = Arc::new(Workload::TokenConsume {
                clinic: setup::CLINIC.into(),
                doctors: seeded.doctors,
            });
            eprintln!("-- probing the maximum ({} s per kind)", args.probe);
            let p = load::run(&emr_t, pairs, &spec(workers[0] * 2)).await?;
            let f = load::run(&clinic_t, fido_of(&seeded.fido_users[workers[1]..]), &spec(workers[1])).await?;
            let c = load::run(&clinic_t, card_of(&seeded.card_users[workers[2]..]), &spec(workers[2])).await?;
            let probe = [p.rate, f.rate, c.rate];
            eprintln!(
                "   token pairs {:.0}/s, FIDO logins {:.0}/s, card logins {:.0}/s",
                probe[0], probe[1], probe[2]
            );
            if probe.iter().any(|r| *r <= 0.0) {
                bail!("a probe completed no operation: {probe:?}");
            }
            // Seconds of gateway time per mixed operation; a token pair is two operations.
            let per_op = SHARES[TOKEN] / probe[0] + SHARES[FIDO] / probe[1] + SHARES[CARD] / probe[2];
            (Some(probe), (0.5 / per_op).max(1.0))
        }
    };
    let bucket = args.bucket.unwrap_or(if args.duration >= Duration::from_secs(600) {
        Duration::from_secs(60)
    } else {
        (args.duration / 10).max(Duration::from_millis(500))
    });
    eprintln!(
        "-- soak: {:.0} ops/s for {:?} (buckets of {:?})",
        target_rate, args.duration, bucket
    );

    // Per-worker state (a logged-in browser with its authenticator or card) before the clock.
    let mut fido_states = Vec::new();
    for i in 0..workers[1] {
        fido_states.push(fido.prepare(i, &clinic_t).await.context("FIDO worker")?);
    }
    let mut card_states = Vec::new();
    for i in 0..workers[2] {
        card_states.push(card.prepare(i, &clinic_t).await.context("card worker")?);
    }
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + args.duration;
    let rec = Arc::new(Mutex::new(Recorder::new(start, bucket)?));
    let interval = |share: f64, n: usize| {
        Duration::from_secs_f64(n as f64 / (target_rate * share).max(0.001))
    };
    let mut tasks = Vec::new();
    let pair_iv = interval(SHARES[TOKEN], workers[0]);
    for i in 0..workers[0] {
        let pace = Pace {
            first: start + pair_iv.mul_f64(i as f64 / workers[0] as f64),
            interval: pair_iv,
            end,
        };
        let rng = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
        // Tokens for the doctors who do not log in during the soak: a login supersedes the
        // doctor's signing session, and a token of the ended session is then refused at consume
        // (`session_ended`, as it should be), which is not what the soak measures.
        let first = setup::FIDO_POOL + setup::CARD_POOL + 1;
        tasks.push(tokio::spawn(token_worker(
            emr_t.clone(),
            first,
            seeded.doctors.saturating_sub(first - 1).max(1),
            rng,
            pace,
            rec.clone(),
        )));
    }
    for (kind, workload, states) in [(FIDO, &fido, fido_states), (CARD, &card, card_states)] {
        let n = states.len();
        let iv = interval(SHARES[kind], n);
        for (i, state) in states.into_iter().enumerate() {
            let pace = Pace {
                first: start + iv.mul_f64(i as f64 / n as f64),
                interval: iv,
                end,
            };
            tasks.push(tokio::spawn(login_worker(
                kind,
                clinic_t.clone(),
                workload.clone(),
                state,
                pace,
                rec.clone(),
            )));
        }
    }

    // RSS every tenth of a bucket (at most every 10 s), and the gateway's CPU time.
    let ticks = procstat::clock_ticks();
    tokio::time::sleep_until(start).await;
    let cpu0 = procstat::process_cpu(pid, ticks);
    let every = (bucket / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval_at(start, every);
    let mut last_report = start;
    loop {
        let at = tick.tick().await;
        if at > end {
            break;
        }
        if let Some(kib) = procstat::rss_kib(pid) {
            rss.push((at.duration_since(start).as_secs_f64(), kib));
        }
        if at.duration_since(last_report) >= Duration::from_secs(60) {
            last_report = at;
            if let Ok(r) = rec.lock() {
                let errors: u64 = r.errors.iter().flat_map(|m| m.values()).sum();
                let ops: u64 = r.total.iter().map(|h| h.len()).sum();
                eprintln!(
                    "   {:>5.0} s: {ops} ops, {errors} errors, RSS {} MiB",
                    at.duration_since(start).as_secs_f64(),
                    rss.last().map_or(0, |s| s.1 / 1024)
                );
            }
        }
    }
    let cpu1 = procstat::process_cpu(pid, ticks);
    for t in tasks {
        t.await.context("soak worker")?;
    }
    let recorder = Arc::into_inner(rec)
        .context("workers ended")?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a soak worker panicked"))?;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(SoakResult {
        date: now.date().to_string(),
        machine: procstat::machine_description(),
        load_before: String::new(),
        db: args.db,
        doctors: seeded.doctors,
        duration: args.duration,
        bucket,
        probe,
        target_rate,
        workers,
        recorder,
        rss,
        gateway_cpu_cores: cpu / args.duration.as_secs_f64(),
    })
}

/// Seconds into the run: whole seconds, tenths under a minute.
fn seconds(s: f64) -> String {
    if s < 60.0 { format!("{s:.1} s") } else { format!("{s:.0} s") }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    errors
        .iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && (s % 60.0).abs() < 1e-6 {
        format!("{} min", s / 60.0)
    } else {
        format!("{s} s")
    }
}

/// The `## Soak` section.
pub fn markdown(r: &SoakResult) -> String {
    let mut s = String::new();
    let secs = r.duration.as_secs_f64();
    let rec = &r.recorder;
    let _ = writeln!(s, "## Soak\n");
    let _ = writeln!(
        s,
        "Generated by `bench soak` (issue 16) on {} — {}; load average before: {}. \
         {} for {} on {}, {} doctors, against the gateway binary set up as `bench run` sets it up. \
         Mix (shares of operations): token issue {:.0} %, consume of that token {:.0} %, FIDO login {:.0} %, card login {:.0} %; \
         {} token connections (issue, then consume), {} FIDO and {} card browser sessions, all keep-alive, paced (latency from the moment an operation was due).\n",
        r.date,
        r.machine,
        r.load_before,
        match r.probe {
            Some(_) => format!("Target {:.0} ops/s, half of the measured maximum of the mix,", r.target_rate),
            None => format!("Target {:.0} ops/s (given),", r.target_rate),
        },
        human(r.duration),
        match r.db {
            SoakDb::Sqlite => "SQLite",
            SoakDb::Postgres => "PostgreSQL",
        },
        r.doctors,
        SHARES[TOKEN] * 100.0,
        SHARES[CONSUME] * 100.0,
        SHARES[FIDO] * 100.0,
        SHARES[CARD] * 100.0,
        r.workers[0],
        r.workers[1],
        r.workers[2],
    );
    if let Some(p) = r.probe {
        let _ = writeln!(
            s,
            "Maximum measured before the soak (closed loop, each kind alone): {:.0} token pairs/s, {:.0} FIDO logins/s, {:.0} card logins/s.\n",
            p[0], p[1], p[2]
        );
    }
    let _ = writeln!(
        s,
        "| kind | ops | ops/s | p50 ms | p99 ms | max ms | errors |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|---|");
    for (k, name) in KINDS.iter().enumerate() {
        let h = &rec.total[k];
        let _ = writeln!(
            s,
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {} |",
            h.len(),
            h.len() as f64 / secs,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            errors_text(&rec.errors[k])
        );
    }
    let total_errors: u64 = rec.errors.iter().flat_map(|m| m.values()).sum();
    let ops: u64 = rec.total.iter().map(|h| h.len()).sum();
    let _ = writeln!(
        s,
        "\n**{ops} operations ({:.1}/s), {total_errors} errors.** Gateway CPU: {:.2} cores on average.\n",
        ops as f64 / secs,
        r.gateway_cpu_cores
    );
    let _ = writeln!(s, "p99 (ms) per {} of the run:\n", human(r.bucket));
    let _ = writeln!(
        s,
        "| from | token | consume | fido login | card login | ops | errors |"
    );
    let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|---|");
    for (i, b) in rec.buckets.iter().enumerate() {
        let from = r.bucket.mul_f64(i as f64);
        if from >= r.duration {
            break;
        }
        let p99 = |k: usize| {
            if b.hist[k].is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2}", ms(b.hist[k].value_at_quantile(0.99)))
            }
        };
        let mut errors = BTreeMap::new();
        for (k, m) in b.errors.iter().enumerate() {
            for (e, n) in m {
                *errors.entry(format!("{} {e}", KINDS[k])).or_insert(0) += n;
            }
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            seconds(from.as_secs_f64()),
            p99(TOKEN),
            p99(CONSUME),
            p99(FIDO),
            p99(CARD),
            b.hist.iter().map(|h| h.len()).sum::<u64>(),
            errors_text(&errors)
        );
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let (Some(first), Some(last)) = (r.rss.first(), r.rss.last()) {
        let max = r.rss.iter().map(|s| s.1).max().unwrap_or(0);
        let half = &r.rss[r.rss.len() / 2..];
        let slope = |v: Option<f64>| v.map_or("–".to_owned(), |x| format!("{x:+.2}"));
        let _ = writeln!(
            s,
            "\nGateway RSS: {:.1} MiB at the start, {:.1} MiB at the end, {:.1} MiB at most ({} samples). \
             Least-squares slope: **{} MiB/hour** over the whole run, {} MiB/hour over its second half.\n",
            mib(first.1),
            mib(last.1),
            mib(max),
            r.rss.len(),
            slope(slope_mib_per_hour(&r.rss)),
            slope(slope_mib_per_hour(half)),
        );
        // At most ~30 points for the table.
        let step = r.rss.len().div_ceil(30).max(1);
        let points: Vec<String> = r
            .rss
            .iter()
            .step_by(step)
            .map(|(t, kib)| format!("{}: {:.1}", seconds(*t), mib(*kib)))
            .collect();
        let _ = writeln!(s, "RSS (MiB) over time: {}.", points.join(" · "));
    }
    s
}

/// `old` with its `## Soak` section (up to the next `## ` heading) replaced by `section`, or
/// with `section` appended.
pub fn replace_section(old: &str, section: &str) -> String {
    replace_heading(old, "## Soak", section)
}

/// [`replace_section`] for the section under any `## ` heading (the signer's section too).
pub fn replace_heading(old: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = find_heading(old, heading) else {
        let base = old.trim_end();
        return if base.is_empty() {
            format!("{section}\n")
        } else {
            format!("{base}\n\n{section}\n")
        };
    };
    let after = &old[start + 1..];
    let end = after
        .find("\n## ")
        .map_or(old.len(), |i| start + 1 + i + 1);
    let rest = old[end..].trim_start_matches('\n');
    let before = old[..start].trim_end();
    let mut out = format!("{before}\n\n{section}\n");
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}

/// The byte offset of the newline before a line that is exactly `heading` (or 0 for the first
/// line).
fn find_heading(text: &str, heading: &str) -> Option<usize> {
    if text.starts_with(&format!("{heading}\n")) {
        return Some(0);
    }
    text.find(&format!("\n{heading}\n"))
}

/// The `## Soak` section of `text`, if any (kept when `bench run` rewrites the file).
pub fn section(text: &str) -> Option<&str> {
    heading_section(text, "## Soak")
}

/// [`section`] for the section under any `## ` heading.
pub fn heading_section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let start = find_heading(text, heading)?;
    let body = &text[start..];
    let body = body.strip_prefix('\n').unwrap_or(body);
    let end = body[1..].find("\n## ").map_or(body.len(), |i| i + 1);
    Some(body[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn slope_is_mib_per_hour() {
        // 1 MiB per minute = 60 MiB/hour.
        let samples: Vec<RssSample> = (0..10).map(|i| (i as f64 * 60.0, 1024 * (100 + i))).collect();
        let slope = slope_mib_per_hour(&samples).unwrap_or(f64::NAN);
        assert!((slope - 60.0).abs() < 1e-9, "{slope}");
        let flat: Vec<RssSample> = (0..10).map(|i| (i as f64, 5000)).collect();
        assert_eq!(slope_mib_per_hour(&flat), Some(0.0));
        assert_eq!(slope_mib_per_hour(&flat[..2]), None);
    }

    #[test]
    fn the_soak_section_is_replaced_or_appended() {
        let doc = "# Benchmarks\n\nintro\n\n## Results\n\ntable\n";
        let added = replace_section(doc, "## Soak\n\nfirst\n");
        assert_eq!(added, "# Benchmarks\n\nintro\n\n## Results\n\ntable\n\n## Soak\n\nfirst\n");
        let replaced = replace_section(&added, "## Soak\n\nsecond\n");
        assert_eq!(replaced, "# Benchmarks\n\nintro\n\n## Results\n\ntable\n\n## Soak\n\nsecond\n");
        let middle = "# B\n\n## Soak\n\nold\n\n## Notes\n\nn\n";
        assert_eq!(replace_section(middle, "## Soak\n\nnew"), "# B\n\n## Soak\n\nnew\n\n## Notes\n\nn\n");
        assert_eq!(section(middle), Some("## Soak\n\nold"));
        assert_eq!(section(&replaced), Some("## Soak\n\nsecond"));
        assert_eq!(section(doc), None);
    }

    /// `bench run --sign-hash-only` replaces the signer's section and leaves the soak alone.
    #[test]
    fn the_signer_section_is_replaced_alone() {
        let signer = crate::report::SIGNER_HEADING;
        let doc = format!("# B\n\n## Soak\n\nsoak\n\n{signer}\n\nold\n\n### What limits it\n\nprose\n");
        let replaced = replace_heading(&doc, signer, &format!("{signer}\n\nnew\n"));
        assert_eq!(replaced, format!("# B\n\n## Soak\n\nsoak\n\n{signer}\n\nnew\n"));
        assert_eq!(section(&replaced), Some("## Soak\n\nsoak"));
        assert_eq!(heading_section(&doc, "## Nothing"), None);
    }
}
