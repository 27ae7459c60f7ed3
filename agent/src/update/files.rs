//! The updater's small files in `DATA_DIR/update/` (docs/design.md §3.15), each written whole
//! (temporary file, sync, rename), so a crash leaves either the old or the new content.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `pending.json`: a swap is under way or done and the new binary has not yet proven healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The version being installed.
    pub version: String,
    /// The executable's path (the one the service manager starts).
    pub exe: PathBuf,
    /// Where the previous binary is kept.
    pub previous: PathBuf,
    /// Starts of the new binary so far (counted as each start begins).
    pub attempts: u32,
}

/// A report the gateway has not yet received (the rollback, made while it may be unreachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The step.
    pub step: String,
    /// The release's version.
    pub version: String,
    /// `success`, `failure` or `declined`.
    pub outcome: String,
    /// What happened.
    pub detail: String,
}

/// The update folder in the data directory.
pub fn update_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("update")
}

/// Writes `bytes` to `path` whole: a temporary file beside it, synced, renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename in `dir` durable (Unix; Windows has no directory handles to sync).
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `pending.json`.
pub fn pending_path(dir: &Path) -> PathBuf {
    dir.join("pending.json")
}

/// The pending swap, if any.
pub fn read_pending(dir: &Path) -> std::io::Result<Option<Pending>> {
    read_json(&pending_path(dir))
}

/// Records the pending swap.
pub fn write_pending(dir: &Path, pending: &Pending) -> std::io::Result<()> {
    write_atomic(
        &pending_path(dir),
        &serde_json::to_vec_pretty(pending).unwrap_or_default(),
    )
}

/// The swap is over (healthy, or rolled back).
pub fn clear_pending(dir: &Path) -> std::io::Result<()> {
    remove(&pending_path(dir))?;
    sync_dir(dir);
    Ok(())
}

/// The report waiting for the gateway, if any.
pub fn read_report(dir: &Path) -> std::io::Result<Option<Report>> {
    read_json(&dir.join("report.json"))
}

/// Keeps a report for the next time the gateway answers.
pub fn write_report(dir: &Path, report: &Report) -> std::io::Result<()> {
    write_atomic(
        &dir.join("report.json"),
        &serde_json::to_vec_pretty(report).unwrap_or_default(),
    )
}

/// The report was delivered.
pub fn clear_report(dir: &Path) -> std::io::Result<()> {
    remove(&dir.join("report.json"))
}

fn read_version(path: &Path) -> Option<release::Version> {
    let text = std::fs::read_to_string(path).ok()?;
    release::Version::parse(text.trim()).ok()
}

/// The highest release version whose manifest and binary this agent ever verified.
pub fn highest_verified(dir: &Path) -> Option<release::Version> {
    read_version(&dir.join("highest-verified"))
}

/// Raises the highest verified version to `v` (never lowers it).
pub fn record_verified(dir: &Path, v: &release::Version) -> std::io::Result<()> {
    if highest_verified(dir).is_some_and(|h| h >= *v) {
        return Ok(());
    }
    write_atomic(&dir.join("highest-verified"), format!("{v}\n").as_bytes())
}

/// The release that failed here (its self-test, or its first starts): not tried again.
pub fn failed_version(dir: &Path) -> Option<release::Version> {
    read_version(&dir.join("failed-version"))
}

/// Records a release that failed here.
pub fn record_failed(dir: &Path, v: &str) -> std::io::Result<()> {
    write_atomic(&dir.join("failed-version"), format!("{v}\n").as_bytes())
}

/// Where a download is written while it arrives.
pub fn download_part(dir: &Path) -> PathBuf {
    dir.join("download.part")
}

/// Where a verified download waits for its self-test and the swap.
pub fn staged(dir: &Path, version: &str) -> PathBuf {
    dir.join(format!(
        "card-agent-{version}{}",
        std::env::consts::EXE_SUFFIX
    ))
}

/// Removes what an interrupted download or swap left in the update folder (never the small
/// state files): partial downloads and staged binaries.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "download.part" || name.starts_with("card-agent-") || name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
