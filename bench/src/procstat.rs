//! Process and machine CPU time and memory from `/proc` (Linux only).

use std::time::Duration;

/// Clock ticks per second for `/proc/<pid>/stat`. `getconf CLK_TCK`, 100 when unavailable
/// (the value on every Linux architecture we run on).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User + system CPU time a process has used so far (`utime + stime`, fields 14 and 15).
pub fn process_cpu(pid: u32, ticks: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// `utime stime cutime cstime` and the parent id of a process (fields 14–17 and 4).
fn stat_fields(pid: u32) -> Option<([u64; 4], u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(([n(11)?, n(12)?, n(13)?, n(14)?], fields.get(1)?.parse().ok()?))
}

/// CPU time of a process tree one level deep (a server and its worker processes, such as
/// PostgreSQL's postmaster and backends): the parent's own and collected children's time, plus
/// each live child's own time.
pub fn tree_cpu(parent: u32, ticks: u64) -> Option<Duration> {
    let (own, _) = stat_fields(parent)?;
    let mut total = own.iter().sum::<u64>();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some((t, ppid)) = stat_fields(pid)
            && ppid == parent
        {
            total += t[0] + t[1];
        }
    }
    Some(Duration::from_secs_f64(total as f64 / ticks as f64))
}

/// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Busy CPU time of the whole machine (every core; `/proc/stat` first line minus idle and
/// iowait), to attribute the database server's and the generator's work too.
pub fn machine_busy(ticks: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum::<u64>();
    Some(Duration::from_secs_f64(busy as f64 / ticks as f64))
}

/// One line per distinct processor model, with the core count, from `/proc/cpuinfo`.
pub fn machine_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{} GiB RAM", kib / 1024 / 1024))
        .unwrap_or_default();
    format!("{model}, {cores} logical cores, {mem}")
}
