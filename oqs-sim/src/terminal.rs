//! The terminal's linkage application: polls the request folder, consumes requests, writes answers.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::{OffsetDateTime, UtcOffset};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::message::{Outcome, answer};
use crate::name::{answer_name, is_request_name};

/// The terminal's local time zone (JST): answers carry local times, as the real terminal's do.
const JST: UtcOffset = time::macros::offset!(+9);

/// How the simulated terminal behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The request folder (`req`) the terminal polls.
    pub req: PathBuf,
    /// The answer folder (`res`) the terminal writes into.
    pub res: PathBuf,
    /// Time between picking up a request and writing its answer.
    pub delay: Duration,
    /// Time between two looks into the request folder (no file-system notifications: SMB shares give none).
    pub poll: Duration,
    /// Every Nth request (counting every request consumed, from 1) is consumed and never answered;
    /// `None` or `Some(0)`: none is dropped.
    pub drop_every: Option<u32>,
    /// Write each answer in two parts, about half the bytes then the rest this long after, in place
    /// under its final name; `None`: one write.
    pub partial: Option<Duration>,
}

impl Options {
    /// The default behaviour (answers 200 ms after pickup, polls every 100 ms, drops nothing, writes
    /// each answer at once) between the folders `req` and `res`.
    pub fn new(req: impl Into<PathBuf>, res: impl Into<PathBuf>) -> Self {
        Self {
            req: req.into(),
            res: res.into(),
            delay: Duration::from_millis(200),
            poll: Duration::from_millis(100),
            drop_every: None,
            partial: None,
        }
    }

    /// Checks that both folders exist; the error names the folder that does not.
    pub fn check(&self) -> io::Result<()> {
        check_folder(&self.req, "request")?;
        check_folder(&self.res, "answer")
    }
}

fn check_folder(path: &Path, what: &str) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            Err(io::Error::new(io::ErrorKind::NotADirectory, format!("the {what} folder {} is not a folder", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("the {what} folder {} does not exist", path.display())))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("the {what} folder {}: {e}", path.display()))),
    }
}

/// Runs the terminal until `shutdown` completes.
///
/// Every `options.poll` it lists the request folder; each file with a request name (see
/// [`crate::answer_name`]) is read, removed (the terminal consumes it) and, `options.delay` later,
/// answered under the paired name in the answer folder with [`crate::answer`] (unless the answer is
/// [`Outcome::NoAnswer`] or the request is dropped by `options.drop_every`). Other files are left alone.
/// A request is handled at most once: one that cannot be removed is not read again while it stays.
///
/// When `shutdown` completes it stops looking, lets the answers being written finish (the second
/// part of a partial write included) and returns; answers still waiting for their delay are not
/// written. Errors: only a missing folder at the start; later failures (a request that cannot be
/// read, an answer that cannot be written) are logged with `tracing` and the terminal goes on.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    options.check()?;
    let (stop, stopped) = watch::channel(false);
    let mut writers = JoinSet::new();
    let mut consumed: u64 = 0;
    // Requests that could not be removed: not handled again while they stay in the folder.
    let mut stuck: HashSet<String> = HashSet::new();
    let mut ticker = tokio::time::interval(options.poll.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        while let Some(done) = writers.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "answer task failed");
            }
        }
        let names = match list_requests(&options.req).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(folder = %options.req.display(), error = %e, "cannot list the request folder");
                continue;
            }
        };
        stuck.retain(|name| names.contains(name));
        for name in names {
            if stuck.contains(&name) {
                continue;
            }
            let path = options.req.join(&name);
            let request = match tokio::fs::read(&path).await {
                Ok(request) => request,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(request = %name, error = %e, "cannot read the request, trying again later");
                    continue;
                }
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(request = %name, error = %e, "cannot remove the request; it is handled once and left");
                    stuck.insert(name.clone());
                }
            }
            consumed += 1;
            if let Some(n) = options.drop_every.filter(|&n| n > 0)
                && consumed.is_multiple_of(u64::from(n))
            {
                tracing::info!(request = %name, count = consumed, "request dropped (--drop-every)");
                continue;
            }
            tracing::debug!(request = %name, bytes = request.len(), "request consumed");
            writers.spawn(answer_later(name, request, options.res.clone(), options.delay, options.partial, stopped.clone()));
        }
    }
    let _ = stop.send(true);
    while let Some(done) = writers.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "answer task failed");
        }
    }
    Ok(())
}

/// The request names in `folder`, sorted (so requests dropped in together are counted in name order).
async fn list_requests(folder: &Path) -> io::Result<Vec<String>> {
    let mut entries = tokio::fs::read_dir(folder).await?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !is_request_name(&name) {
            continue;
        }
        match entry.file_type().await {
            Ok(kind) if kind.is_file() => names.push(name),
            _ => {}
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Waits `delay`, then writes the answer to the request `name` into `res`; gives up if the terminal
/// stops during the delay.
async fn answer_later(
    name: String,
    request: Vec<u8>,
    res: PathBuf,
    delay: Duration,
    partial: Option<Duration>,
    mut stopped: watch::Receiver<bool>,
) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stopped.wait_for(|&stop| stop) => {
            tracing::info!(request = %name, "stopping: request left unanswered");
            return;
        }
    }
    let Outcome::Answer(body) = answer(&name, &request, wall_clock()) else {
        tracing::info!(request = %name, "request consumed, never answered");
        return;
    };
    let Some(answer_name) = answer_name(&name) else { return };
    let path = res.join(&answer_name);
    match write_answer(&path, &body, partial).await {
        Ok(()) => tracing::info!(request = %name, answer = %answer_name, "answered"),
        Err(e) => tracing::warn!(answer = %path.display(), error = %e, "cannot write the answer"),
    }
}

/// Writes `body` into `path` in place (no temporary name, as an SMB writer does): at once, or in two
/// parts `partial` apart, the first flushed so that readers see a truncated document meanwhile.
async fn write_answer(path: &Path, body: &[u8], partial: Option<Duration>) -> io::Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    match partial {
        None => file.write_all(body).await?,
        Some(pause) => {
            let (first, rest) = body.split_at(body.len() / 2);
            file.write_all(first).await?;
            file.flush().await?;
            tokio::time::sleep(pause).await;
            file.write_all(rest).await?;
        }
    }
    file.flush().await
}

/// The time an answer is stamped with: the wall clock, in JST.
#[allow(
    clippy::disallowed_methods,
    reason = "the simulator stamps answers with wall-clock time, as the terminal does; nothing else reads the clock"
)]
fn wall_clock() -> OffsetDateTime {
    OffsetDateTime::now_utc().to_offset(JST)
}
