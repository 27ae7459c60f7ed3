//! The benchmark's own PostgreSQL server (issue 25): a cluster in the run's working directory,
//! started for the run and stopped after it, so other users of a shared server neither disturb
//! the figures nor are disturbed by them.
//!
//! It is tuned like a small production server for this machine (shared buffers, WAL sizes and
//! checkpoints spread out) and keeps every durability setting on: `fsync`, `synchronous_commit`,
//! `full_page_writes`. `pg_stat_statements` is preloaded so the report can say where a
//! request's database time goes, and the harness samples the CPU time of the whole server
//! (postmaster and backends).
//! Statements over 20 ms are logged, so a paced window's p99 can be told apart from the WAL
//! flush's tail (`commit_stalls`).

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::procstat;

/// Settings beyond initdb's defaults, reported with the results. A small production server on
/// a 2-core machine with plenty of memory; nothing here trades durability for speed.
pub const SETTINGS: &[(&str, &str)] = &[
    // Room for the 1 M-doctor database whole (1.4 GB with its indexes), under a quarter of the
    // machine's 23 GiB (the starting point PostgreSQL's documentation gives a dedicated server).
    // With 1 GB the 1 M-row window spent its time evicting dirty pages and reading pages back
    // from the OS cache: a server sized below its working set, not the cost of a token.
    ("shared_buffers", "4GB"),
    ("effective_cache_size", "12GB"),
    ("work_mem", "16MB"),
    ("maintenance_work_mem", "256MB"),
    ("wal_buffers", "16MB"),
    ("max_wal_size", "4GB"),
    ("min_wal_size", "1GB"),
    ("checkpoint_timeout", "15min"),
    ("checkpoint_completion_target", "0.9"),
    ("random_page_cost", "1.1"),
    ("max_connections", "200"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("shared_preload_libraries", "pg_stat_statements"),
    ("pg_stat_statements.max", "1000"),
    ("pg_stat_statements.track", "top"),
    // Statements over 20 ms go to the server's log with their end time, which is how the report
    // counts commits held by a slow WAL flush in a paced window (`commit_stalls`).
    ("log_min_duration_statement", "20ms"),
    ("log_timezone", "UTC"),
];

/// `BENCH_PG_SETTINGS` (`name=value,…`): settings added for a side measurement, never for the
/// reported rows of a full run unless the report says so (it lists them with the others).
fn extra_settings() -> Vec<String> {
    std::env::var("BENCH_PG_SETTINGS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| s.contains('='))
        .map(str::to_owned)
        .collect()
}

/// A running cluster of the harness.
pub struct PgServer {
    child: Child,
    port: u16,
    data: PathBuf,
    /// Where the server writes its log (beside the data directory).
    log: PathBuf,
    version: String,
}

/// The directory of the newest installed PostgreSQL's programs (`initdb`, `postgres`).
fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// The user and group id of `postgres`: the server refuses to run as root.
fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").arg(flag).arg("postgres").output()?;
        if !out.status.success() {
            bail!("no `postgres` user to run the benchmark's PostgreSQL server as (running as root)");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgServer {
    /// Creates a fresh cluster under `dir` (removing an earlier one) and starts it on `port`.
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let bin = bin_dir().context("PostgreSQL's server programs (initdb, postgres) are not installed")?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let data = dir.join("data");
        let ids = if is_root() {
            let ids = postgres_ids()?;
            std::os::unix::fs::chown(dir, Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        let as_postgres = |cmd: &mut Command| {
            if let Some((uid, gid)) = ids {
                cmd.uid(uid).gid(gid);
            }
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_postgres(&mut initdb);
        let out = initdb.output().context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-c", &format!("port={port}")])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())]);
        for (name, value) in SETTINGS {
            postgres.args(["-c", &format!("{name}={value}")]);
        }
        // Extra settings for a side measurement (e.g. `synchronous_commit=off`), reported.
        let extra = extra_settings();
        for setting in &extra {
            postgres.args(["-c", setting]);
        }
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
        }
        postgres.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        as_postgres(&mut postgres);
        let child = postgres.spawn().context("start postgres")?;
        let mut server = Self { child, port, data, log: log_path, version: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.admin().await {
                Ok(mut conn) => {
                    use sqlx::Connection as _;
                    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut conn).await?;
                    let (v,): (String,) = sqlx::query_as("SHOW server_version").fetch_one(&mut conn).await?;
                    server.version = v;
                    conn.close().await?;
                    return Ok(server);
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context(format!("the benchmark's PostgreSQL server (log: {})", server.log.display()));
                }
                Err(_) => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        bail!("postgres exited with {status}; see {}", server.log.display());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The URL of the `postgres` database (creating and dropping the benchmark's databases).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn admin(&self) -> anyhow::Result<sqlx::PgConnection> {
        use sqlx::Connection as _;
        Ok(sqlx::PgConnection::connect(&self.url()).await?)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log (beside the data directory).
    pub fn log(&self) -> PathBuf {
        self.log.clone()
    }

    /// What the report says of this server.
    pub fn describe(&self) -> String {
        let settings = SETTINGS
            .iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .chain(extra_settings().iter().map(|s| s.replacen('=', " = ", 1)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "PostgreSQL {} started by the harness for this run (its own cluster under the work directory, \
             reached over TCP on 127.0.0.1, on the same machine as the gateway and the load generator): {settings}.",
            self.version
        )
    }

    /// Fast shutdown (SIGINT): waits for the server to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("postgres ({}) did not stop in 30 s; killing it", self.data.display());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the load loop samples of a PostgreSQL server: its processes' CPU and its statements.
#[derive(Debug, Clone)]
pub struct DbProbe {
    pub postmaster: u32,
    pub admin_url: String,
    /// The server's log (`commit_stalls` reads it).
    pub log: PathBuf,
}

/// Commits that took over 20 ms in a window, from the server's log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitStalls {
    /// Slow commits that ended in the window.
    pub commits: usize,
    /// Groups of them that ended within 5 ms of each other: each group waited on one WAL flush.
    pub flushes: usize,
    /// The longest, in milliseconds.
    pub max_ms: f64,
}

/// Reads `log` (the default `log_line_prefix`, `%m [%p] `, in UTC) for `COMMIT`s over
/// `log_min_duration_statement` that ended between `from` and `to`.
pub fn commit_stalls(log: &str, from: time::OffsetDateTime, to: time::OffsetDateTime) -> CommitStalls {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let mut ends = Vec::new();
    let mut stalls = CommitStalls::default();
    for line in log.lines() {
        let Some((stamp, rest)) = line.split_once(" UTC ") else { continue };
        let Some(ms) = rest.split_once("duration: ").and_then(|(_, d)| d.strip_suffix(" ms  statement: COMMIT")) else {
            continue;
        };
        let (Ok(at), Ok(ms)) = (time::PrimitiveDateTime::parse(stamp, &format), ms.parse::<f64>()) else { continue };
        let at = at.assume_utc();
        if at < from || at > to {
            continue;
        }
        stalls.commits += 1;
        stalls.max_ms = stalls.max_ms.max(ms);
        ends.push(at);
    }
    ends.sort();
    stalls.flushes = ends.windows(2).filter(|w| w[1] - w[0] > time::Duration::milliseconds(5)).count() + usize::from(!ends.is_empty());
    stalls
}

/// One statement's share of a measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatementStat {
    /// The normalised statement text, shortened.
    pub query: String,
    /// Executions in the window.
    pub calls: u64,
    /// Execution time in the server, milliseconds (planning included).
    pub time_ms: f64,
}

/// Cumulative statement counters, by query id.
pub type Statements = HashMap<i64, StatementStat>;

impl DbProbe {
    /// CPU time of the postmaster and every backend: the live processes' own time, plus what
    /// the postmaster has collected of its exited children.
    pub fn cpu(&self, ticks: u64) -> Option<Duration> {
        procstat::tree_cpu(self.postmaster, ticks)
    }

    /// The statement counters now (`pg_stat_statements`).
    pub async fn statements(&self) -> anyhow::Result<Statements> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        let rows: Vec<(i64, String, i64, f64)> = sqlx::query_as(
            "SELECT queryid, query, calls, total_exec_time + total_plan_time FROM pg_stat_statements WHERE queryid IS NOT NULL",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        Ok(rows
            .into_iter()
            .map(|(id, query, calls, time)| (id, StatementStat { query, calls: calls as u64, time_ms: time }))
            .collect())
    }
}

/// The statements run between two snapshots, busiest first.
pub fn window(before: &Statements, after: &Statements) -> Vec<StatementStat> {
    let mut out: Vec<StatementStat> = after
        .iter()
        .filter_map(|(id, a)| {
            let (calls0, time0) = before.get(id).map_or((0, 0.0), |b| (b.calls, b.time_ms));
            let calls = a.calls.saturating_sub(calls0);
            (calls > 0).then(|| StatementStat {
                query: shorten(&a.query),
                calls,
                time_ms: (a.time_ms - time0).max(0.0),
            })
        })
        .filter(|s| !s.query.contains("pg_stat_statements"))
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then(b.time_ms.total_cmp(&a.time_ms)));
    out
}

/// One line of at most 110 characters.
fn shorten(query: &str) -> String {
    let flat = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 110 {
        flat
    } else {
        format!("{}…", flat.chars().take(109).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as PostgreSQL 15 writes them with the default `log_line_prefix` and
    /// `log_min_duration_statement`.
    const LOG: &str = "\
2026-12-07 14:45:29.559 UTC [21743] LOG:  duration: 43.810 ms  statement: COMMIT
2026-12-07 14:45:34.743 UTC [21801] LOG:  duration: 121.858 ms  statement: COMMIT
2026-12-07 14:45:34.746 UTC [21750] LOG:  duration: 122.523 ms  statement: COMMIT
2026-12-07 14:45:34.747 UTC [21748] LOG:  duration: 123.823 ms  statement: COMMIT
2026-12-07 14:45:35.000 UTC [21737] LOG:  duration: 161.320 ms  execute sqlx_s_1: ANALYZE
2026-12-07 14:45:37.319 UTC [21805] LOG:  duration: 39.583 ms  statement: COMMIT
2026-12-07 14:45:37.319 UTC [21747] LOG:  duration: 50.415 ms  statement: COMMIT
\tSTATEMENT:  COMMIT
2026-12-07 14:45:48.955 UTC [21802] LOG:  duration: 32.152 ms  statement: COMMIT
";

    fn at(hms: &str) -> time::OffsetDateTime {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        time::PrimitiveDateTime::parse(&format!("2026-12-07 {hms}"), &format).expect("test time").assume_utc()
    }

    #[test]
    fn slow_commits_in_the_window_are_grouped_by_flush() {
        let s = commit_stalls(LOG, at("14:45:30"), at("14:45:40"));
        assert_eq!(s, CommitStalls { commits: 5, flushes: 2, max_ms: 123.823 });
    }

    #[test]
    fn a_window_without_slow_commits_reports_none() {
        assert_eq!(commit_stalls(LOG, at("14:45:49"), at("14:46:00")), CommitStalls::default());
        assert_eq!(commit_stalls("", at("14:45:00"), at("14:46:00")), CommitStalls::default());
    }
}
