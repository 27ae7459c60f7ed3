//! The load generator: `C` concurrent workers over mTLS (HTTP/1.1), each either keeping its
//! connection alive or opening a new one (full handshake) per operation, for a warm-up and then
//! a fixed measured duration, optionally paced to a fixed total rate.
//!
//! An *operation* is what a scenario counts: one request for token issuance, a start + finish
//! pair for the logins. Latency is per operation, measured from the moment it was due (the
//! scheduled time when paced, so a stalled server cannot hide queueing: no coordinated
//! omission). Errors are counted by kind; a failed keep-alive connection is replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::pgserver::{self, DbProbe, StatementStat};
use crate::procstat;
use crate::conn::{Conn, OpError, Target};
use crate::workload::{WorkerState, Workload};

/// Connection reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One connection per worker for the whole run.
    KeepAlive,
    /// A new TCP + TLS (full handshake) + HTTP connection per operation.
    NewConnection,
}

impl Mode {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::NewConnection => "new-conn",
        }
    }
}

/// One run's parameters.
#[derive(Clone)]
pub struct Spec {
    /// Concurrent workers (= connections).
    pub concurrency: usize,
    /// Unmeasured lead-in.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Connection reuse.
    pub mode: Mode,
    /// Total operations per second across workers; `None` = as fast as possible (closed loop).
    pub rate: Option<f64>,
    /// Server process whose CPU and memory to sample.
    pub server_pid: Option<u32>,
    /// A second server process whose CPU to sample (the gateway behind the remote signer).
    pub second_pid: Option<u32>,
    /// The PostgreSQL server behind the server, whose CPU and statements to sample.
    pub db: Option<DbProbe>,
}

/// What one run measured (the JSON output of `bench load`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Operations completed in the measured window.
    pub ops: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Operations per second.
    pub rate: f64,
    /// Latency percentiles and maximum, milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// Server CPU time in the window (user + system), seconds.
    pub server_cpu_s: f64,
    /// Server CPU time per operation, microseconds.
    pub server_cpu_us_per_op: f64,
    /// Whole-machine busy CPU time per operation, microseconds (includes database and generator).
    pub machine_cpu_us_per_op: f64,
    /// Server RSS at the end, KiB.
    pub server_rss_end_kib: u64,
    /// The second server's CPU time per operation, microseconds (0 without one).
    #[serde(default)]
    pub second_cpu_us_per_op: f64,
    /// The PostgreSQL server's CPU time per operation, microseconds (0 without one).
    #[serde(default)]
    pub db_cpu_us_per_op: f64,
    /// The statements the PostgreSQL server ran in the window, busiest first.
    #[serde(default)]
    pub db_statements: Vec<StatementStat>,
}

impl LoadResult {
    /// Errors as `kind×n, …`, or `0`.
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".to_owned();
        }
        self.errors
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Total failed operations.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct WorkerOutcome {
    hist: Histogram<u64>,
    ops: u64,
    errors: BTreeMap<String, u64>,
}

/// Runs `workload` against `target` as `spec` says.
pub async fn run(
    target: &Target,
    workload: Arc<Workload>,
    spec: &Spec,
) -> anyhow::Result<LoadResult> {
    let c = spec.concurrency.max(1);
    // Per-worker preparation (e.g. password login and linking an authenticator) happens before
    // the clock starts.
    let mut prepared = Vec::with_capacity(c);
    for chunk in (0..c).collect::<Vec<_>>().chunks(16) {
        let futs = chunk.iter().map(|&i| {
            let w = workload.clone();
            let t = target.clone();
            tokio::spawn(async move {
                w.prepare(i, &t)
                    .await
                    .with_context(|| format!("preparing worker {i}"))
            })
        });
        for f in futs.collect::<Vec<_>>() {
            prepared.push(f.await.context("prepare task")??);
        }
    }

    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(c as f64 / r.max(0.001)));
    // 1 µs .. 60 s at 3 significant digits.
    let template = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    let mut tasks = Vec::with_capacity(c);
    for (i, state) in prepared.into_iter().enumerate() {
        let (w, t, mode) = (workload.clone(), target.clone(), spec.mode);
        // Spread paced workers evenly over one interval.
        let offset = interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / c as f64));
        tasks.push(tokio::spawn(worker(
            w,
            t,
            state,
            mode,
            template.clone(),
            start + offset,
            measure_from,
            end,
            interval,
        )));
    }

    let ticks = procstat::clock_ticks();
    tokio::time::sleep_until(measure_from).await;
    let cpu0 = spec
        .server_pid
        .and_then(|p| procstat::process_cpu(p, ticks));
    let busy0 = procstat::machine_busy(ticks);
    let second0 = spec.second_pid.and_then(|p| procstat::process_cpu(p, ticks));
    let db0 = spec.db.as_ref().and_then(|d| d.cpu(ticks));
    let statements0 = match &spec.db {
        Some(d) => Some(d.statements().await.context("pg_stat_statements before the window")?),
        None => None,
    };
    tokio::time::sleep_until(end).await;
    let second1 = spec.second_pid.and_then(|p| procstat::process_cpu(p, ticks));
    let db1 = spec.db.as_ref().and_then(|d| d.cpu(ticks));
    let cpu1 = spec
        .server_pid
        .and_then(|p| procstat::process_cpu(p, ticks));
    let busy1 = procstat::machine_busy(ticks);
    let rss = spec.server_pid.and_then(procstat::rss_kib).unwrap_or(0);
    let db_statements = match (&spec.db, statements0) {
        (Some(d), Some(before)) => {
            pgserver::window(&before, &d.statements().await.context("pg_stat_statements after the window")?)
        }
        _ => Vec::new(),
    };

    let mut hist = template;
    let mut ops = 0;
    let mut errors = BTreeMap::new();
    for t in tasks {
        let out = t.await.context("worker task")?;
        hist.add(&out.hist).context("merge histograms")?;
        ops += out.ops;
        for (k, n) in out.errors {
            *errors.entry(k).or_insert(0) += n;
        }
    }
    let seconds = spec.duration.as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let busy = match (busy0, busy1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let second = match (second0, second1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let db = match (db0, db1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let per_op = |s: f64| if ops > 0 { s * 1e6 / ops as f64 } else { 0.0 };
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(LoadResult {
        ops,
        seconds,
        rate: ops as f64 / seconds,
        p50_ms: ms(hist.value_at_quantile(0.50)),
        p90_ms: ms(hist.value_at_quantile(0.90)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
        errors,
        server_cpu_s: cpu,
        server_cpu_us_per_op: per_op(cpu),
        machine_cpu_us_per_op: per_op(busy),
        server_rss_end_kib: rss,
        second_cpu_us_per_op: per_op(second),
        db_cpu_us_per_op: per_op(db),
        db_statements,
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn worker(
    workload: Arc<Workload>,
    target: Target,
    mut state: WorkerState,
    mode: Mode,
    mut hist: Histogram<u64>,
    first: Instant,
    measure_from: Instant,
    end: Instant,
    interval: Option<Duration>,
) -> WorkerOutcome {
    let mut ops = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut conn: Option<Conn> = None;
    let mut due = first;
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(due).await;
        } else {
            due = Instant::now();
        }
        if due >= end {
            break;
        }
        let result = async {
            if conn.is_none() {
                conn = Some(target.connect().await?);
            }
            let c = conn.as_mut().ok_or_else(|| OpError("connect".into()))?;
            workload.op(&mut state, &target, c).await
        }
        .await;
        let done = Instant::now();
        if mode == Mode::NewConnection || result.is_err() {
            conn = None;
        }
        // Counted by completion inside the window: a paced run that fell behind during the
        // warm-up still counts what it completes (its latency, from the due time, shows the lag).
        if done >= measure_from && done <= end {
            match result {
                Ok(()) => {
                    ops += 1;
                    let us = u64::try_from(done.duration_since(due).as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let _ = hist.record(us.min(60_000_000));
                }
                Err(OpError(kind)) => *errors.entry(kind).or_insert(0) += 1,
            }
        } else if let Err(OpError(_)) = result {
            // Warm-up errors are not counted but still back off a little.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(iv) = interval {
            due += iv;
        }
    }
    WorkerOutcome { hist, ops, errors }
}
