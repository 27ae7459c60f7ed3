//! Replacing the agent's own executable, and putting the previous one back (docs/design.md
//! §3.15, decision 0019). Every step is a copy, a link or one rename in the executable's own
//! folder, ordered so that a crash between any two leaves a binary at the executable's path and a
//! `pending.json` that says what the next start must do.

use std::path::{Path, PathBuf};

use super::files::{self, Pending};

/// `<exe>.previous`: the binary that ran before the last update.
pub fn previous_path(exe: &Path) -> PathBuf {
    let mut p = exe.as_os_str().to_owned();
    p.push(".previous");
    PathBuf::from(p)
}

/// `.<name>.new` beside the executable: the new binary, copied onto the executable's file system
/// so that the final rename is atomic.
pub fn new_path(exe: &Path) -> PathBuf {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "card-agent".to_owned());
    exe.with_file_name(format!(".{name}.new"))
}

/// Marks a file executable (Unix; on Windows every `.exe` is).
pub fn set_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()?;
    set_executable(to)
}

/// The steps of [`install`], in order (named for the log and the crash tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The new binary is beside the executable (`.card-agent.new`).
    NewCopied,
    /// `<exe>.previous` holds the running binary.
    PreviousKept,
    /// `pending.json` is written.
    PendingWritten,
    /// The new binary is at the executable's path.
    Replaced,
}

impl Step {
    /// The step's name.
    pub fn name(self) -> &'static str {
        match self {
            Step::NewCopied => "new_copied",
            Step::PreviousKept => "previous_kept",
            Step::PendingWritten => "pending_written",
            Step::Replaced => "replaced",
        }
    }
}

/// Installs `staged` (verified, self-tested) as `exe`, keeping the running binary as
/// `<exe>.previous`. Order (each step durable before the next):
/// 1. copy the new binary to `.<name>.new` beside `exe`;
/// 2. keep the running one: hard link (or copy) `exe` to `<exe>.previous.tmp`, rename it over
///    `<exe>.previous` — `exe` itself never moves, so there is always a binary at its path;
/// 3. write `pending.json` (version, `<exe>.previous`, attempts 0);
/// 4. rename `.<name>.new` over `exe` (atomic on one file system; on Windows the running
///    executable is first renamed aside, which is allowed while it runs).
///
/// `at` is called after each step (the crash tests stop the process there).
pub fn install(
    staged: &Path,
    exe: &Path,
    dir: &Path,
    version: &str,
    at: &dyn Fn(Step),
) -> std::io::Result<()> {
    let new = new_path(exe);
    let previous = previous_path(exe);
    copy_synced(staged, &new)?;
    at(Step::NewCopied);
    keep_previous(exe, &previous)?;
    at(Step::PreviousKept);
    files::write_pending(
        dir,
        &Pending {
            version: version.to_owned(),
            exe: exe.to_owned(),
            previous,
            attempts: 0,
        },
    )?;
    at(Step::PendingWritten);
    replace(&new, exe)?;
    if let Some(folder) = exe.parent() {
        files::sync_dir(folder);
    }
    at(Step::Replaced);
    let _ = std::fs::remove_file(staged);
    Ok(())
}

fn keep_previous(exe: &Path, previous: &Path) -> std::io::Result<()> {
    let mut tmp = previous.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    // A hard link costs nothing and keeps the running inode; a copy where links are refused.
    if std::fs::hard_link(exe, &tmp).is_err() {
        copy_synced(exe, &tmp)?;
    }
    std::fs::rename(&tmp, previous)?;
    if let Some(folder) = exe.parent() {
        files::sync_dir(folder);
    }
    Ok(())
}

/// Puts `new` at `exe`'s path.
#[cfg(not(windows))]
fn replace(new: &Path, exe: &Path) -> std::io::Result<()> {
    std::fs::rename(new, exe)
}

/// Windows cannot replace a running executable, but it can rename it: the running one moves to
/// `<exe>.replaced` (removed at the next update), then the new one takes its name. A crash between
/// the two renames leaves no binary at `exe`; the copy in `<exe>.previous` is the way back
/// (decision 0019).
#[cfg(windows)]
fn replace(new: &Path, exe: &Path) -> std::io::Result<()> {
    let mut aside = exe.as_os_str().to_owned();
    aside.push(".replaced");
    let aside = PathBuf::from(aside);
    let _ = std::fs::remove_file(&aside);
    std::fs::rename(exe, &aside)?;
    std::fs::rename(new, exe)
}

/// Puts `<exe>.previous` back at `exe`'s path (the new binary did not become healthy), then
/// clears `pending.json`. A crash before the rename repeats the rollback at the next start (the
/// new binary still runs and `pending.json` is still there); after it, the old binary starts,
/// sees a `pending.json` that is not its version and clears it.
pub fn rollback(pending: &Pending, dir: &Path) -> std::io::Result<()> {
    if !pending.previous.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is missing", pending.previous.display()),
        ));
    }
    replace(&pending.previous, &pending.exe)?;
    if let Some(folder) = pending.exe.parent() {
        files::sync_dir(folder);
    }
    files::clear_pending(dir)
}

/// Removes a `.new` binary a crash left beside the executable (and, on Windows, the binary
/// renamed aside by the last swap, which no longer runs).
pub fn remove_new(exe: &Path) {
    let _ = std::fs::remove_file(new_path(exe));
    #[cfg(windows)]
    {
        let mut aside = exe.as_os_str().to_owned();
        aside.push(".replaced");
        let _ = std::fs::remove_file(PathBuf::from(aside));
    }
}
