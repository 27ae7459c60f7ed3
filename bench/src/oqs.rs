//! `bench oqs` (issue 21): the OQS relay end to end through real processes — the gateway binary on
//! SQLite or PostgreSQL, the clinic agent binary (`card-agent --relay`) with the clinic's
//! certificate — and real folders, with this process as both ends: closed-loop EMR clients that
//! enqueue a request file, long-poll until it is answered and repeat, and the OQS terminal, which
//! watches `req` (file-system events plus a tight rescan), consumes each request and writes the
//! simulator's answer (`oqs_sim::answer`) into `res` at once.
//!
//! Being the terminal in-process gives the two splits of the added latency on one clock: enqueue
//! → the request file appears in `req`, and the answer written in `res` → the EMR has it. Results
//! are printed as JSON; `--out` replaces (or appends) the `## OQS relay` section of a Markdown file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gateway::clock::{Clock as _, SystemClock};
use hdrhistogram::Histogram;
use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use crate::conn::{self, Conn, OpError, Target};
use crate::run::{self, Proc};
use crate::setup::{self, GatewayConfig, PkiFiles};
use crate::{procstat, tlsconf};

/// The heading of this scenario's section in `BENCHMARKS.md`.
pub const HEADING: &str = "## OQS relay";

/// The database behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OqsDb {
    Sqlite,
    Postgres,
}

impl OqsDb {
    fn label(self) -> &'static str {
        match self {
            OqsDb::Sqlite => "sqlite",
            OqsDb::Postgres => "postgres",
        }
    }
}

/// Options of `bench oqs`.
#[derive(Debug, Clone, clap::Args)]
pub struct OqsArgs {
    /// The gateway binary (default: `gateway` next to this binary).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// The clinic agent binary (default: `card-agent` next to this binary).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Working directory for PKI, databases, configs, the agent's data directory and logs.
    #[arg(long, default_value = "target/bench-oqs")]
    pub work: PathBuf,
    /// Where the `req` and `res` folders are made (default: a fresh folder under /dev/shm, a
    /// tmpfs, when it exists; else under --work). Removed at the end.
    #[arg(long)]
    pub folders: Option<PathBuf>,
    /// Where the agent's data directory (key, `relay.toml`, journal, archive) goes, one per
    /// database, kept across its settle times as one clinic PC's agent (default: --work).
    #[arg(long)]
    pub agent_data: Option<PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 6.0)]
    pub duration: f64,
    /// Warm-up seconds per run.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Concurrent EMR clients, one run each (each enqueues, long-polls until answered, repeats).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub clients: Vec<usize>,
    /// The agent's `settle_ms` (how long an answer must stay unchanged before it is read), one
    /// agent start each; 500 is the product's default.
    #[arg(long, value_delimiter = ',', default_value = "500,20")]
    pub settle_ms: Vec<u64>,
    /// The agent's `rescan_secs` (2 is the product's default).
    #[arg(long, default_value_t = 2)]
    pub rescan_secs: u64,
    /// Databases behind the gateway.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "sqlite,postgres")]
    pub db: Vec<OqsDb>,
    /// PostgreSQL server URL (a database `ninsho_bench_oqs` is created and dropped); empty = skip.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg: String,
    /// The in-process terminal's rescan of `req` besides file-system events, milliseconds.
    #[arg(long, default_value_t = 2)]
    pub terminal_rescan_ms: u64,
    /// A Markdown file whose `## OQS relay` section to replace (or append) with the result.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Gateway and agent log level (`info` is the production default).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// A few-second harness check (SQLite, settle 20 ms, 4 clients for 1.5 s); fails on
    /// any error or an unanswered run; writes no report.
    #[arg(long)]
    pub smoke: bool,
}

/// A latency distribution, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dist {
    pub n: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Dist {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            n: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    fn triple(&self) -> String {
        if self.n == 0 {
            return "–".into();
        }
        format!("{:.1} / {:.1} / {:.1}", self.p50_ms, self.p90_ms, self.p99_ms)
    }
}

/// One measured run: a database, a settle time, a number of EMR clients.
#[derive(Debug, Clone, Serialize)]
pub struct OqsRun {
    pub db: String,
    pub settle_ms: u64,
    pub clients: usize,
    /// Requests answered (and read by their EMR client) in the measured window.
    pub answered: u64,
    /// Requests answered in the whole run (warm-up and the requests in flight at the end too).
    pub answered_total: u64,
    pub seconds: f64,
    /// Relayed requests per second.
    pub rate: f64,
    /// Enqueue sent → answer received by the EMR client.
    pub round_trip: Dist,
    /// `POST …/oqs/requests` → `202`.
    pub enqueue: Dist,
    /// Enqueue sent → the request file appeared in `req` (seen by the terminal).
    pub to_req: Dist,
    /// Answer written in `res` → the EMR client has it (its long-poll returned `answered`).
    pub from_res: Dist,
    /// The terminal's own time: request seen → answer written.
    pub terminal: Dist,
    /// Failed requests by kind (all of the run, warm-up included).
    pub errors: BTreeMap<String, u64>,
    /// CPU time per relayed request over the window, microseconds.
    pub gateway_cpu_us_per_op: f64,
    pub agent_cpu_us_per_op: f64,
    /// This process: the EMR clients and the terminal.
    pub bench_cpu_us_per_op: f64,
    /// The whole machine (the database server too).
    pub machine_cpu_us_per_op: f64,
    pub agent_rss_end_kib: u64,
}

impl OqsRun {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything `bench oqs` measured (its JSON output).
#[derive(Debug, Clone, Serialize)]
pub struct OqsReport {
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub seconds: f64,
    pub args: String,
    /// Where `req` and `res` were, and on what file system.
    pub folders: String,
    /// Where the agent's data directory (journal, archive) was, and on what file system.
    pub agent_data: String,
    pub request_bytes: usize,
    pub answer_bytes: usize,
    pub rescan_secs: u64,
    pub runs: Vec<OqsRun>,
    pub checks: Vec<String>,
    pub notes: Vec<String>,
}

/// When the terminal saw a request and wrote its answer, by request file name.
#[derive(Debug, Default, Clone, Copy)]
struct Stamp {
    seen: Option<Instant>,
    written: Option<Instant>,
}

type Stamps = Arc<Mutex<HashMap<String, Stamp>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The OQS terminal in this process: a thread that answers every request file in `req` at once.
struct Terminal {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _watcher: notify::RecommendedWatcher,
    stamps: Stamps,
    errors: Arc<AtomicU64>,
    answer_bytes: Arc<AtomicU64>,
}

impl Terminal {
    /// Watches `req` (events, and a listing every `rescan`); each request file is read, removed
    /// and answered under its paired name in `res` with one write (as the simulator does).
    fn start(req: &Path, res: &Path, rescan: Duration) -> anyhow::Result<Self> {
        let stamps: Stamps = Arc::default();
        let (wake, woken) = mpsc::channel::<()>();
        let seen = stamps.clone();
        // The event is the moment the file appeared: stamp it in the watcher's thread. Only
        // creations and changes wake the terminal: listing `req` itself raises access events on
        // the folder, which would make the terminal list it again at once, in a loop.
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let at = Instant::now();
            let Ok(event) = &event else {
                let _ = wake.send(());
                return;
            };
            if !matches!(event.kind, notify::EventKind::Create(_) | notify::EventKind::Modify(_) | notify::EventKind::Any) {
                return;
            }
            let mut stamped = false;
            {
                let mut stamps = lock(&seen);
                for path in &event.paths {
                    if let Some(name) = path.file_name().and_then(|n| n.to_str())
                        && oqs_sim::is_request_name(name)
                    {
                        stamps.entry(name.to_owned()).or_default().seen.get_or_insert(at);
                        stamped = true;
                    }
                }
            }
            if stamped {
                let _ = wake.send(());
            }
        })?;
        notify::Watcher::watch(&mut watcher, req, notify::RecursiveMode::NonRecursive)?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let answer_bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, stamps, errors, answer_bytes) = (stop.clone(), stamps.clone(), errors.clone(), answer_bytes.clone());
            let (req, res) = (req.to_owned(), res.to_owned());
            std::thread::Builder::new().name("oqs-terminal".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = woken.recv_timeout(rescan);
                    while woken.try_recv().is_ok() {}
                    if let Err(e) = answer_all(&req, &res, &stamps, &answer_bytes) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("   terminal: {e:#}");
                    }
                }
            })?
        };
        Ok(Self { stop, thread: Some(thread), _watcher: watcher, stamps, errors, answer_bytes })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One pass over `req`: answers every request file there.
fn answer_all(req: &Path, res: &Path, stamps: &Mutex<HashMap<String, Stamp>>, answer_bytes: &AtomicU64) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(req).with_context(|| format!("list {}", req.display()))? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !oqs_sim::is_request_name(&name) {
            continue;
        }
        let listed = Instant::now();
        let path = entry.path();
        let request = match std::fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        let answer = match oqs_sim::answer(&name, &request, SystemClock.now()) {
            oqs_sim::Outcome::Answer(a) => a,
            oqs_sim::Outcome::NoAnswer => bail!("{name}: the simulator gives no answer"),
        };
        let answer_name = oqs_sim::answer_name(&name).with_context(|| format!("{name}: no answer name"))?;
        let target = res.join(&answer_name);
        std::fs::write(&target, &answer).with_context(|| format!("write {}", target.display()))?;
        let written = Instant::now();
        answer_bytes.store(answer.len() as u64, Ordering::Relaxed);
        let mut stamps = lock(stamps);
        let stamp = stamps.entry(name).or_default();
        stamp.seen.get_or_insert(listed);
        stamp.written = Some(written);
    }
    Ok(())
}

/// The request file the EMR sends (the shape of tests/integration/oqs_relay.rs).
fn request_xml(ident: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?><XmlMsg><MessageHeader><MedicalInstitutionCode>1311234567</MedicalInstitutionCode><ArbitraryFileIdentifier>{ident}</ArbitraryFileIdentifier></MessageHeader><MessageBody><IssueType>1</IssueType></MessageBody></XmlMsg>"#
    )
}

/// One answered request, as its EMR client saw it.
struct Sample {
    done: Instant,
    round_trip: Duration,
    enqueue: Duration,
    stamp: Stamp,
    sent: Instant,
    received: Instant,
}

#[derive(Default)]
struct ClientOutcome {
    samples: Vec<Sample>,
    errors: BTreeMap<String, u64>,
}

async fn ensure<'a>(conn: &'a mut Option<Conn>, target: &Target) -> Result<&'a mut Conn, OpError> {
    if conn.is_none() {
        *conn = Some(target.connect().await?);
    }
    conn.as_mut().ok_or_else(|| OpError("connect".into()))
}

/// One request through the relay: enqueue, long-poll until it ends, check the answer.
async fn relay_one(conn: &mut Conn, target: &Target, file_name: &str, ident: &str) -> Result<(Duration, Instant), OpError> {
    let body = serde_json::json!({ "file_name": file_name, "content": STANDARD.encode(request_xml(ident)) });
    let sent = Instant::now();
    let req = conn::with_body(
        target.request(Method::POST, &format!("/api/v1/clinics/{}/oqs/requests", setup::CLINIC)),
        "application/json",
        Bytes::from(body.to_string()),
    )?;
    let reply = conn.send(req).await?;
    if reply.status != hyper::StatusCode::ACCEPTED {
        return Err(OpError::status("enqueue", reply.status));
    }
    let enqueued = sent.elapsed();
    let v: Value = serde_json::from_slice(&reply.body).map_err(|_| OpError("enqueue_json".into()))?;
    let id = v["request_id"].as_str().ok_or_else(|| OpError("enqueue_json".into()))?.to_owned();
    loop {
        let req = conn::empty(target.request(Method::GET, &format!("/api/v1/oqs/requests/{id}?wait=20")))?;
        let reply = conn.send(req).await?;
        let received = Instant::now();
        if reply.status != hyper::StatusCode::OK {
            return Err(OpError::status("status", reply.status));
        }
        let v: Value = serde_json::from_slice(&reply.body).map_err(|_| OpError("status_json".into()))?;
        match v["status"].as_str() {
            Some("answered") => {
                check_answer(&v, file_name, ident)?;
                return Ok((enqueued, received));
            }
            Some("queued" | "delivered") => continue,
            Some(other) => {
                return Err(OpError(format!("{other}_{}", v["reason"].as_str().unwrap_or("-"))));
            }
            None => return Err(OpError("status_json".into())),
        }
    }
}

/// The answer is the terminal's answer to this request: paired name, identifier echoed, success.
fn check_answer(v: &Value, file_name: &str, ident: &str) -> Result<(), OpError> {
    let wrong = || OpError("wrong_answer".into());
    if v["response"]["file_name"].as_str() != oqs_sim::answer_name(file_name).as_deref() {
        return Err(wrong());
    }
    let content = STANDARD.decode(v["response"]["content"].as_str().ok_or_else(wrong)?).map_err(|_| wrong())?;
    let text = String::from_utf8(content).map_err(|_| wrong())?;
    if !text.contains(&format!("<ArbitraryFileIdentifier>{ident}</ArbitraryFileIdentifier>"))
        || !text.contains(&format!("<SegmentOfResult>{}</SegmentOfResult>", oqs_sim::SEGMENT_SUCCESS))
    {
        return Err(wrong());
    }
    Ok(())
}

/// A closed-loop EMR client: until `end`, enqueue a request, wait for its answer, repeat.
async fn client(target: Target, tag: String, n: usize, end: Instant, stamps: Stamps) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    while Instant::now() < end {
        seq += 1;
        let ident = format!("{tag}c{n}n{seq}");
        let file_name = format!("EPSsiDMP01req_{ident}.xml");
        let sent = Instant::now();
        let result = match ensure(&mut conn, &target).await {
            Ok(c) => relay_one(c, &target, &file_name, &ident).await,
            Err(e) => Err(e),
        };
        let stamp = lock(&stamps).remove(&file_name).unwrap_or_default();
        match result {
            Ok((enqueue, received)) => out.samples.push(Sample {
                done: received,
                round_trip: received - sent,
                enqueue,
                stamp,
                sent,
                received,
            }),
            Err(OpError(kind)) => {
                *out.errors.entry(kind).or_default() += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    out
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 3_600_000_000);
    let _ = h.record(us);
}

/// The processes a run samples.
struct Pids {
    gateway: u32,
    agent: u32,
}

struct CpuMark {
    gateway: Option<Duration>,
    agent: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<Duration>,
}

impl CpuMark {
    fn take(pids: &Pids, ticks: u64) -> Self {
        Self {
            gateway: procstat::process_cpu(pids.gateway, ticks),
            agent: procstat::process_cpu(pids.agent, ticks),
            bench: procstat::process_cpu(std::process::id(), ticks),
            machine: procstat::machine_busy(ticks),
        }
    }
}

fn per_op(before: Option<Duration>, after: Option<Duration>, ops: u64) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) if ops > 0 => (a.saturating_sub(b)).as_secs_f64() * 1e6 / ops as f64,
        _ => 0.0,
    }
}

/// One closed-loop run of `clients` EMR clients.
#[allow(clippy::too_many_arguments, reason = "a run's coordinates")]
async fn measure(
    target: &Target,
    terminal: &Terminal,
    pids: &Pids,
    db: OqsDb,
    settle_ms: u64,
    clients: usize,
    tag: &str,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<OqsRun> {
    eprintln!("-- oqs {} settle_ms={settle_ms} clients={clients}", db.label());
    let ticks = procstat::clock_ticks();
    let begin = Instant::now();
    let start = begin + warmup;
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..clients {
        tasks.spawn(client(target.clone(), tag.to_owned(), n, end, terminal.stamps.clone()));
    }
    tokio::time::sleep_until(start.into()).await;
    let before = CpuMark::take(pids, ticks);
    tokio::time::sleep_until(end.into()).await;
    let after = CpuMark::take(pids, ticks);
    let agent_rss_end_kib = procstat::rss_kib(pids.agent).unwrap_or(0);
    let mut outcomes = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    // Requests in flight at the end finish (they are not counted); a stuck one is an error.
    let drain = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(o) => outcomes.push(o),
                Err(_) => *errors.entry("client_panicked".into()).or_default() += 1,
            }
        }
    })
    .await;
    if drain.is_err() {
        *errors.entry("unfinished_after_60s".into()).or_default() += tasks.len() as u64;
        tasks.abort_all();
    }
    let (mut round_trip, mut enqueue, mut to_req, mut from_res, mut term) =
        (histogram()?, histogram()?, histogram()?, histogram()?, histogram()?);
    let mut answered = 0u64;
    let mut answered_total = 0u64;
    for o in outcomes {
        for (k, n) in o.errors {
            *errors.entry(k).or_default() += n;
        }
        answered_total += o.samples.len() as u64;
        for s in o.samples.iter().filter(|s| s.done >= start && s.done <= end) {
            answered += 1;
            record(&mut round_trip, s.round_trip);
            record(&mut enqueue, s.enqueue);
            match (s.stamp.seen, s.stamp.written) {
                (Some(seen), Some(written)) => {
                    record(&mut to_req, seen.saturating_duration_since(s.sent));
                    record(&mut from_res, s.received.saturating_duration_since(written));
                    record(&mut term, written.saturating_duration_since(seen));
                }
                _ => *errors.entry("terminal_not_stamped".into()).or_default() += 1,
            }
        }
    }
    let terminal_errors = terminal.errors.swap(0, Ordering::Relaxed);
    if terminal_errors > 0 {
        *errors.entry("terminal".into()).or_default() += terminal_errors;
    }
    let seconds = duration.as_secs_f64();
    let run = OqsRun {
        db: db.label().into(),
        settle_ms,
        clients,
        answered,
        answered_total,
        seconds,
        rate: answered as f64 / seconds,
        round_trip: Dist::of(&round_trip),
        enqueue: Dist::of(&enqueue),
        to_req: Dist::of(&to_req),
        from_res: Dist::of(&from_res),
        terminal: Dist::of(&term),
        errors,
        gateway_cpu_us_per_op: per_op(before.gateway, after.gateway, answered),
        agent_cpu_us_per_op: per_op(before.agent, after.agent, answered),
        bench_cpu_us_per_op: per_op(before.bench, after.bench, answered),
        machine_cpu_us_per_op: per_op(before.machine, after.machine, answered),
        agent_rss_end_kib,
    };
    eprintln!(
        "   {:.1}/s ({} answered) round trip p50 {:.1} p99 {:.1} ms; enqueue→req p50 {:.1} p99 {:.1} ms; res→EMR p50 {:.1} p99 {:.1} ms; errors {}; gateway {:.0} µs/op, agent {:.0} µs/op",
        run.rate,
        run.answered,
        run.round_trip.p50_ms,
        run.round_trip.p99_ms,
        run.to_req.p50_ms,
        run.to_req.p99_ms,
        run.from_res.p50_ms,
        run.from_res.p99_ms,
        run.errors_text(),
        run.gateway_cpu_us_per_op,
        run.agent_cpu_us_per_op
    );
    Ok(run)
}

/// The file system type of the mount holding `path` (`/proc/mounts`, longest matching prefix).
fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(point), Some(kind)) = (f.next(), f.next(), f.next()) else { continue };
        if path.starts_with(point) && best.as_ref().is_none_or(|(len, _)| point.len() > *len) {
            best = Some((point.len(), kind.to_owned()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// The agent's `relay.toml`, shaped as its set-up writes it (archive and state in its data
/// directory), with `settle_ms` as given.
#[allow(clippy::too_many_arguments, reason = "the file's fields")]
fn write_relay_toml(path: &Path, port: u16, pki: &PkiFiles, identity: &Path, req: &Path, res: &Path, data: &Path, rescan_secs: u64, settle_ms: u64) -> anyhow::Result<()> {
    let text = format!(
        "# Written by `bench oqs`.\ngateway = \"https://localhost:{port}\"\ngateway_ca = {:?}\nidentity = {:?}\nclinic_id = \"{}\"\nreq = {:?}\nres = {:?}\narchive = {:?}\nstate_dir = {:?}\nrescan_secs = {rescan_secs}\nsettle_ms = {settle_ms}\n",
        pki.server_ca.display().to_string(),
        identity.display().to_string(),
        setup::CLINIC,
        req.display().to_string(),
        res.display().to_string(),
        data.join("archive").display().to_string(),
        data.join("state").display().to_string(),
    );
    write_private(path, text.as_bytes())
}

/// Waits (bounded) for `needle` in the log file of `proc`.
async fn wait_log(proc: &mut Proc, log: &Path, needle: &str, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            bail!("{} exited with {status}; log {}", proc.name(), log.display());
        }
        if Instant::now() > deadline {
            bail!("no `{needle}` in {} after {secs} s", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A binary next to this one, or `given`.
fn sibling(given: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?.parent().context("binary directory")?.join(name),
    };
    if !bin.exists() {
        bail!("no {name} binary at {} (build it, or pass its path)", bin.display());
    }
    Ok(bin)
}

/// Runs `bench oqs`.
pub async fn oqs(mut args: OqsArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.db = vec![OqsDb::Sqlite];
        args.settle_ms = vec![20];
        args.clients = vec![4];
        args.duration = args.duration.min(1.5);
        args.warmup = args.warmup.min(0.5);
        args.out = None;
    }
    if args.clients.is_empty() || args.clients.contains(&0) || args.settle_ms.is_empty() {
        bail!("--clients and --settle-ms need at least one value, clients at least 1");
    }
    gateway::install_crypto_provider();
    let started = Instant::now();
    let now = SystemClock.now();
    let gateway_bin = run::gateway_binary(args.gateway.as_deref())?;
    let agent_bin = sibling(args.agent.as_deref(), "card-agent")?;
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    let work = std::fs::canonicalize(&args.work)?;
    let folders = match &args.folders {
        Some(f) => f.clone(),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from(format!("/dev/shm/ninsho-bench-oqs-{}", std::process::id())),
        None => work.join("folders"),
    };
    let _ = std::fs::remove_dir_all(&folders);
    std::fs::create_dir_all(&folders)?;
    let folders = std::fs::canonicalize(&folders)?;
    let agent_root = match &args.agent_data {
        Some(d) => {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d)?;
            std::fs::canonicalize(d)?
        }
        None => work.clone(),
    };
    let load_before = run::load_average();
    let pki = setup::make_pki(&work.join("pki"), now)?;
    let cards = setup::CardPki::new(1, now)?;
    let emr = tlsconf::client(&pki.server_ca, &pki.emr_cert, &pki.emr_key, true)?;
    let mut report = OqsReport {
        date: now.date().to_string(),
        machine: procstat::machine_description(),
        load_before,
        seconds: 0.0,
        args: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        folders: format!("{} ({})", folders.display(), fs_type(&folders)),
        agent_data: format!("{} ({})", agent_root.display(), fs_type(&agent_root)),
        request_bytes: request_xml("bench0c0n1").len(),
        answer_bytes: 0,
        rescan_secs: args.rescan_secs,
        runs: Vec::new(),
        checks: Vec::new(),
        notes: Vec::new(),
    };
    let mut dbs = Vec::new();
    for &db in &args.db {
        if db == OqsDb::Postgres {
            if args.pg.is_empty() {
                report.notes.push("PostgreSQL skipped: no server URL".into());
                continue;
            }
            match run::pg_settings(&args.pg).await {
                Ok(s) => report.notes.push(s),
                Err(e) => {
                    report.notes.push(format!("PostgreSQL skipped: {e:#}"));
                    continue;
                }
            }
        }
        if !dbs.contains(&db) {
            dbs.push(db);
        }
    }
    let mut result = Ok(());
    for db in dbs {
        result = one_database(&args, db, &gateway_bin, &agent_bin, &work, &agent_root, &folders, &pki, &cards, &emr, now, &mut report).await;
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&folders);
    if args.agent_data.is_some() {
        let _ = std::fs::remove_dir_all(&agent_root);
    }
    result?;
    report.seconds = started.elapsed().as_secs_f64();
    std::fs::write(work.join("results.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if args.smoke {
        let bad: Vec<String> = report
            .runs
            .iter()
            .filter(|r| r.answered == 0 || r.error_count() > 0)
            .map(|r| format!("{} settle {} clients {}: {} answered, errors {}", r.db, r.settle_ms, r.clients, r.answered, r.errors_text()))
            .collect();
        eprintln!("bench oqs smoke: {} runs in {:.1} s", report.runs.len(), report.seconds);
        if !bad.is_empty() {
            bail!("bench oqs smoke failed:\n{}", bad.join("\n"));
        }
        return Ok(());
    }
    if let Some(out) = &args.out {
        let text = markdown(&report);
        let old = std::fs::read_to_string(out).unwrap_or_default();
        std::fs::write(out, crate::soak::replace_heading(&old, HEADING, &text)).with_context(|| format!("write {}", out.display()))?;
        eprintln!("written to {} (raw numbers: {})", out.display(), work.join("results.json").display());
    }
    Ok(())
}

/// Seeds a database, starts the gateway on it and measures every settle time and client count.
#[allow(clippy::too_many_arguments, reason = "internal step of oqs()")]
async fn one_database(
    args: &OqsArgs,
    db: OqsDb,
    gateway_bin: &Path,
    agent_bin: &Path,
    work: &Path,
    agent_root: &Path,
    folders: &Path,
    pki: &PkiFiles,
    cards: &setup::CardPki,
    emr: &Arc<rustls::ClientConfig>,
    now: time::OffsetDateTime,
    report: &mut OqsReport,
) -> anyhow::Result<()> {
    let dir = work.join(format!("gw-{}", db.label()));
    std::fs::create_dir_all(&dir)?;
    let db_url = match db {
        OqsDb::Sqlite => format!("sqlite://{}", dir.join("gateway.db").display()),
        OqsDb::Postgres => run::pg_database(&args.pg, "ninsho_bench_oqs", true).await?,
    };
    let argon2_kib = 8 * 1024;
    eprintln!("-- seeding {}", db.label());
    setup::seed(&db_url, &dir, pki, cards, 1, 0, 0, argon2_kib, now.unix_timestamp()).await?;
    let cfg = GatewayConfig {
        data_dir: dir.clone(),
        port: run::free_port()?,
        ops_port: run::free_port()?,
        db_url,
        max_connections: 16,
        argon2_kib,
        log_level: args.log_level.clone(),
    };
    let config_path = setup::write_config(&cfg, pki)?;
    let mut gw = run::spawn("gateway", Command::new(gateway_bin).arg("serve").arg("--config").arg(&config_path), &dir.join("gateway.log"))?;
    let result = async {
        run::wait_port(cfg.port, &mut gw, 60).await?;
        for &settle_ms in &args.settle_ms {
            with_agent(args, db, settle_ms, agent_bin, agent_root, folders, pki, &gw, cfg.port, emr, report).await?;
        }
        anyhow::Ok(())
    }
    .await;
    gw.stop(Duration::from_secs(35));
    if db == OqsDb::Postgres {
        let _ = run::pg_database(&args.pg, "ninsho_bench_oqs", false).await;
    }
    result
}

/// Starts the terminal and an agent with `settle_ms`, checks one request, then measures each
/// client count; at the end every answer must be archived and both folders empty. The agent's
/// data directory (so its id) is one per database: a new agent id would be refused the clinic's
/// relay while the previous one was seen within `oqs.agent_hold_secs`.
#[allow(clippy::too_many_arguments, reason = "internal step of oqs()")]
async fn with_agent(
    args: &OqsArgs,
    db: OqsDb,
    settle_ms: u64,
    agent_bin: &Path,
    agent_root: &Path,
    folders: &Path,
    pki: &PkiFiles,
    gw: &Proc,
    port: u16,
    emr: &Arc<rustls::ClientConfig>,
    report: &mut OqsReport,
) -> anyhow::Result<()> {
    let label = format!("{}-settle{settle_ms}", db.label());
    let (req, res) = (folders.join(&label).join("req"), folders.join(&label).join("res"));
    for d in [&req, &res] {
        std::fs::create_dir_all(d)?;
    }
    let data = agent_root.join(format!("agent-{}", db.label()));
    std::fs::create_dir_all(&data)?;
    let archived_before = count_files(&data.join("archive"));
    let identity = data.join("client.pem");
    let pem = format!("{}{}", std::fs::read_to_string(&pki.clinic_cert)?, std::fs::read_to_string(&pki.clinic_key)?);
    write_private(&identity, pem.as_bytes())?;
    let relay_toml = data.join("relay.toml");
    write_relay_toml(&relay_toml, port, pki, &identity, &req, &res, &data, args.rescan_secs, settle_ms)?;
    let terminal = Terminal::start(&req, &res, Duration::from_millis(args.terminal_rescan_ms.max(1)))?;
    let log = data.join(format!("agent-settle{settle_ms}.log"));
    let mut agent = run::spawn(
        "card-agent",
        Command::new(agent_bin)
            .args(["--allow-origin", "https://localhost", "--port", "0", "--relay"])
            .arg(&relay_toml)
            .arg("--data-dir")
            .arg(&data)
            .env("CARD_AGENT_LOG", &args.log_level),
        &log,
    )?;
    let result = async {
        wait_log(&mut agent, &log, "card-agent listening", 30).await?;
        let target = Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            host: "localhost".into(),
            tls: tlsconf::own_sessions(emr),
        };
        // One request through everything before measuring, bounded.
        let first = tokio::time::timeout(Duration::from_secs(30), async {
            let mut conn = target.connect().await?;
            let started = Instant::now();
            let (name, ident) = (format!("EPSsiDMP01req_check{settle_ms}{}.xml", db.label()), format!("check{settle_ms}{}", db.label()));
            relay_one(&mut conn, &target, &name, &ident).await?;
            lock(&terminal.stamps).remove(&name);
            Ok::<_, OpError>(started.elapsed())
        })
        .await
        .map_err(|_| anyhow::anyhow!("{label}: the first request was not answered in 30 s; agent log {}", log.display()))?
        .map_err(|OpError(e)| anyhow::anyhow!("{label}: the first request failed: {e}; agent log {}", log.display()))?;
        report.answer_bytes = usize::try_from(terminal.answer_bytes.load(Ordering::Relaxed)).unwrap_or(0);
        let pids = Pids { gateway: gw.pid(), agent: agent.pid() };
        let mut total = 1u64;
        lock(&terminal.stamps).clear();
        for (i, &clients) in args.clients.iter().enumerate() {
            let tag = format!("b{settle_ms}{}r{i}", db.label());
            let run = measure(
                &target,
                &terminal,
                &pids,
                db,
                settle_ms,
                clients,
                &tag,
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.duration),
            )
            .await?;
            total += run.answered_total;
            report.runs.push(run);
            lock(&terminal.stamps).clear();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Every request the terminal answered was uploaded once and archived once.
        let settled = count_answered(&data, &res, &req, Duration::from_secs(10)).await;
        let archived = settled.archived.saturating_sub(archived_before);
        let fine = settled.folders_empty && archived as u64 == total;
        report.checks.push(format!(
            "{}, settle {settle_ms} ms: the first request answered in {:.0} ms (the paired answer, identifier echoed, `SegmentOfResult` 1); at the end {} answers archived by the agent for {} requests answered to the EMR clients, `req` and `res` {}{}",
            db.label(),
            first.as_secs_f64() * 1000.0,
            archived,
            total,
            if settled.folders_empty { "empty" } else { "NOT empty" },
            if fine { "" } else { " — MISMATCH" },
        ));
        if args.smoke && !fine {
            bail!("{label}: {archived} answers archived for {total} answered; folders empty: {}", settled.folders_empty);
        }
        anyhow::Ok(())
    }
    .await;
    agent.stop(Duration::from_secs(10));
    terminal.stop();
    result
}

struct Settled {
    archived: usize,
    folders_empty: bool,
}

/// Waits (bounded) until `req` and `res` are empty; counts the archived answers.
async fn count_answered(data: &Path, res: &Path, req: &Path, bound: Duration) -> Settled {
    let deadline = Instant::now() + bound;
    loop {
        let empty = count_files(res) == 0 && count_files(req) == 0;
        if empty || Instant::now() > deadline {
            return Settled { archived: count_files(&data.join("archive")), folders_empty: empty };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `## OQS relay` section.
pub fn markdown(r: &OqsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Generated by `bench oqs` (issue 21) on {} — {}. Load average before the run: {}. Whole run: {:.0} s. Command line: `bench {}`.\n",
        r.date, r.machine, r.load_before, r.seconds, r.args
    );
    let _ = writeln!(
        s,
        "The relay end to end through real processes: the gateway binary (its database below), the clinic agent binary (`card-agent --relay relay.toml --data-dir …`, \
         `relay.toml` shaped as its set-up writes it: archive and journal in its data directory, `rescan_secs = {}`, `settle_ms` as in the table) with the clinic's certificate, \
         and the `req` and `res` folders in {}; the agent's data directory (journal, archive) is in {}. \
         The bench process is both ends. **EMR clients** (mTLS, keep-alive, one connection each, closed loop): enqueue a {}-byte request file (`POST /api/v1/clinics/{{clinic}}/oqs/requests`), \
         long-poll `GET /api/v1/oqs/requests/{{id}}?wait=20` until it is answered, check the answer (paired name, identifier echoed, success), repeat. \
         **The OQS terminal** is a thread of the bench, not the `oqs-sim` binary: it watches `req` (inotify events through the `notify` crate, and a listing every 2 ms), \
         stamps the moment a request file appears, reads and removes it and writes the simulator's answer (`oqs_sim::answer`, {} bytes) under the paired name in `res` at once, in one write \
         as the simulator does, and stamps when the write is done. All times are on one monotonic clock. \
         **relayed/s**: requests answered and read by their EMR client in the measured window. **enqueue → in `req`**: from sending the enqueue to the terminal seeing the file. \
         **`res` → EMR**: from the answer written to the EMR client's long-poll returning it. The terminal's own time between the two (p99 at most {:.2} ms in any run) is in the round trip only. \
         CPU per request is each process's CPU time over the window divided by the requests relayed in it.\n",
        r.rescan_secs, r.folders, r.agent_data, r.request_bytes, r.answer_bytes,
        r.runs.iter().map(|x| x.terminal.p99_ms).fold(0.0, f64::max)
    );
    let _ = writeln!(
        s,
        "| database | settle_ms | EMR clients | relayed/s | answered | round trip p50 / p90 / p99 ms | enqueue → in `req` p50 / p90 / p99 ms | `res` → EMR p50 / p90 / p99 ms | enqueue (202) p50 ms | errors | gateway CPU µs/req | agent CPU µs/req | bench CPU µs/req |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|");
    for run in &r.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {:.0} | {:.0} | {:.0} |",
            run.db,
            run.settle_ms,
            run.clients,
            run.rate,
            run.answered,
            run.round_trip.triple(),
            run.to_req.triple(),
            run.from_res.triple(),
            run.enqueue.p50_ms,
            run.errors_text(),
            run.gateway_cpu_us_per_op,
            run.agent_cpu_us_per_op,
            run.bench_cpu_us_per_op,
        );
    }
    let _ = writeln!(s, "\n### Checks and notes\n");
    for line in r.checks.iter().chain(&r.notes) {
        let _ = writeln!(s, "- {line}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_request_names_and_answers_pair() {
        let name = "EPSsiDMP01req_b500sqliter0c3n17.xml";
        assert!(oqs_sim::is_request_name(name));
        assert_eq!(oqs_sim::answer_name(name).as_deref(), Some("EPSsiDMP01res_b500sqliter0c3n17.xml"));
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let oqs_sim::Outcome::Answer(answer) = oqs_sim::answer(name, request_xml("b500sqliter0c3n17").as_bytes(), at) else {
            panic!("no answer");
        };
        let v = serde_json::json!({ "response": { "file_name": "EPSsiDMP01res_b500sqliter0c3n17.xml", "content": STANDARD.encode(&answer) } });
        assert!(check_answer(&v, name, "b500sqliter0c3n17").is_ok());
        assert!(check_answer(&v, name, "other").is_err());
    }

    #[test]
    fn the_section_is_replaced_alone() {
        let doc = format!("# B\n\n## Soak\n\nsoak\n\n{HEADING}\n\nold\n\n### What limits it\n\nprose\n\n## Later\n\nx\n");
        let replaced = crate::soak::replace_heading(&doc, HEADING, &format!("{HEADING}\n\nnew\n"));
        assert_eq!(replaced, format!("# B\n\n## Soak\n\nsoak\n\n{HEADING}\n\nnew\n\n## Later\n\nx\n"));
    }
}
