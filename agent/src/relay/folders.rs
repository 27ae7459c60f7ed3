//! The two folders shared with the OQS terminal, and the journal that makes each request file appear at most once.
//!
//! The relay writes a request as `req/<file_name>` (`EPSsiDMP01req_<id>.xml`); the terminal consumes it and writes its
//! answer as `res/<answer name>` (`EPSsiDMP01res_<id>.xml`: `req_` becomes `res_` right after the interface prefix).
//! The folders are usually SMB shares, so nothing here relies on file-system notifications (see [`super::watch`]) or on
//! anything but plain files and renames.
//!
//! # At most once
//!
//! Every request id gets a journal entry in `state_dir/journal/<id>.json`, written durably (temporary file, fsync, rename,
//! fsync of the folder) BEFORE anything is written into `req`. The request itself is written under a temporary name
//! outside the OQS pattern (`.ninsho-<id>.tmp`), fsynced, and only then given its final name without replacing anything.
//! [`Folders::open`] finishes or settles a delivery that a crash interrupted (see there), never writing a second copy.
//! When a request is over ([`Folders::finish`], [`Folders::abandon`]) its entry is dropped and a small marker
//! `journal/done/<id>.json` is kept, so that a late `deliver` of the same id still answers
//! [`Delivery::AlreadyDelivered`]: at most once ever, not only while the request is pending.
//!
//! Journal and marker file names are the id with each capital letter written as `_` and the lower-case letter (`aB` is
//! `a_b`), so ids that differ only in case stay apart on Windows, whose file names ignore case.
//!
//! # Complete answers
//!
//! A terminal may write an answer under its final name in pieces. [`Folders::scan`] returns an answer only when an earlier
//! scan saw the same size and modification time at least [`FolderConfig::settle`] before, and the bytes are well-formed
//! XML. Answers over [`MAX_ANSWER_BYTES`] are never read: [`Folders::oversized`] lists them so the caller can fail the
//! request (and then [`Folders::abandon`] it).
//!
//! One `Folders` per state directory: two processes sharing one journal are not guarded against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Answers larger than this are not read (see [`Folders::oversized`]).
pub const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;

/// Longest accepted request file name (file systems allow 255; the shares' own limits may be lower).
const MAX_NAME_LEN: usize = 200;

/// Where the OQS terminal's folders are and what to do with an answer once the gateway has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderConfig {
    /// The folder the terminal reads requests from.
    pub req: PathBuf,
    /// The folder the terminal writes answers into.
    pub res: PathBuf,
    /// What [`Folders::finish`] does with an answer file.
    pub after_upload: AfterUpload,
    /// How long an answer's size and modification time must stay unchanged before it is read.
    pub settle: Duration,
}

/// What happens to an answer file after the gateway accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterUpload {
    /// Move the answer into `<dir>/<YYYY-MM-DD>/` (created as needed); a name already there gets a numeric suffix.
    Archive(PathBuf),
    /// Delete the answer.
    Delete,
}

/// What [`Folders::deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request file is now in `req`.
    Written,
    /// The journal already knows this id (pending or over): nothing was touched.
    AlreadyDelivered,
}

/// A delivered request whose answer has not been finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The request id.
    pub id: String,
    /// The request file's name in `req`.
    pub request_name: String,
    /// The answer file's name expected in `res`.
    pub answer_name: String,
    /// Whether [`Folders::mark_reported`] recorded that the gateway knows it was delivered.
    pub reported: bool,
}

/// A complete answer found by [`Folders::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The request id.
    pub id: String,
    /// The answer file's name in `res`.
    pub file_name: String,
    /// The file's bytes: well-formed UTF-8 XML.
    pub content: Vec<u8>,
}

/// An answer file over [`MAX_ANSWER_BYTES`], seen by the last [`Folders::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// The request id.
    pub id: String,
    /// The answer file's name in `res`.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A failure of the folders or of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// A file-system operation failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "writing the request file".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A journal file that cannot be read as an entry: left in place for a person to look at.
    #[error("corrupt journal entry {}: {reason}", .path.display())]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of that name is already in `req`, or another pending request uses that name.
    #[error("request file name already taken: {0}")]
    NameTaken(String),
    /// Not an OQS request file name (`(EPS|OQS)<interface>req_<rest>.xml`), or not the answer of that request.
    #[error("not an OQS request file name: {0:?}")]
    InvalidName(String),
    /// Not a request id (`[A-Za-z0-9-]`, 1 to 64 characters).
    #[error("not a request id: {0:?}")]
    InvalidId(String),
    /// No pending request has this id.
    #[error("no pending request with id {0}")]
    UnknownId(String),
}

/// Where a test may stop [`Folders::deliver_until`], as a crash would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverStep {
    /// The journal entry says "writing"; nothing is in `req` yet.
    Journaled,
    /// The temporary file is written and fsynced; the final name does not exist.
    TempWritten,
    /// The final name exists (hard link) and the temporary file too.
    Linked,
    /// The final name exists, the temporary file is gone; the journal still says "writing".
    Renamed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Writing,
    Delivered,
}

/// One journal file: `journal/<stem>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    version: u32,
    id: String,
    request_name: String,
    answer_name: String,
    state: State,
    /// The temporary name in `req`.
    temp_name: String,
    /// Size and SHA-256 of the request, so that recovery never completes a half-written temporary file.
    size: u64,
    sha256: String,
    reported: bool,
}

const JOURNAL_VERSION: u32 = 1;

/// A marker in `journal/done/`: the request is over.
#[derive(Debug, Serialize)]
struct Done<'a> {
    id: &'a str,
    outcome: &'a str,
}

/// What a scan last saw of an answer file.
#[derive(Debug, Clone)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
    /// A warning about this version of the file (unreadable, not XML) was logged.
    warned: bool,
}

/// The request and answer folders with their journal.
#[derive(Debug)]
pub struct Folders {
    config: FolderConfig,
    journal: PathBuf,
    done: PathBuf,
    entries: BTreeMap<String, Entry>,
    seen: HashMap<String, Seen>,
    oversized: BTreeMap<String, Oversized>,
    /// Ids whose answer file could not be looked at (warned once until it can).
    unreadable: HashSet<String>,
}

impl Folders {
    /// Opens (creating, mode 0700 on unix) the journal under `state_dir/journal/` and recovers interrupted deliveries.
    ///
    /// An entry still "writing" means a crash between journaling and the end of the delivery:
    /// - the temporary file is in `req` and the final name is not: the rename never happened. If the temporary file
    ///   holds the whole request (size and SHA-256 as journaled) it is renamed now and the entry becomes delivered; if
    ///   not (the crash came while writing it) it is removed and the entry dropped: nothing was delivered, and a later
    ///   `deliver` of that id writes it;
    /// - the temporary file is gone: the rename happened (the terminal may have consumed the file): delivered;
    /// - both exist: the temporary file is removed: delivered.
    ///
    /// Fails on a corrupt journal file (naming it), or when `req` cannot be looked at while a delivery needs recovery
    /// (a share not connected yet): the caller tries again later.
    pub fn open(config: FolderConfig, state_dir: &Path) -> Result<Self, FolderError> {
        fs::create_dir_all(state_dir).map_err(io_err("creating the state folder", state_dir))?;
        let journal = state_dir.join("journal");
        let done = journal.join("done");
        private_dir(&journal)?;
        private_dir(&done)?;
        let mut folders = Folders {
            config,
            journal,
            done,
            entries: BTreeMap::new(),
            seen: HashMap::new(),
            oversized: BTreeMap::new(),
            unreadable: HashSet::new(),
        };
        let mut loaded = Vec::new();
        let mut removed_any = false;
        let listing = fs::read_dir(&folders.journal).map_err(io_err("listing the journal", &folders.journal))?;
        for item in listing {
            let item = item.map_err(io_err("listing the journal", &folders.journal))?;
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "relay journal: ignoring a file whose name is not UTF-8");
                continue;
            };
            if path.is_dir() {
                continue;
            }
            if name.ends_with(".json.tmp") {
                // An entry rewrite that never reached its rename: the entry itself is intact.
                fs::remove_file(&path).map_err(io_err("removing an unfinished journal write", &path))?;
                removed_any = true;
            } else if let Some(stem) = name.strip_suffix(".json") {
                let entry = read_entry(&path, stem)?;
                let marker = folders.done.join(&name);
                if exists(&marker).map_err(io_err("looking at the journal", &marker))? {
                    // `finish` or `abandon` stopped between the marker and dropping the entry.
                    fs::remove_file(&path).map_err(io_err("removing a finished journal entry", &path))?;
                    removed_any = true;
                } else {
                    loaded.push(entry);
                }
            } else {
                tracing::warn!(path = %path.display(), "relay journal: ignoring an unexpected file");
            }
        }
        if removed_any {
            sync_dir(&folders.journal).map_err(io_err("syncing the journal folder", &folders.journal))?;
        }
        for entry in loaded {
            let entry = match entry.state {
                State::Delivered => Some(entry),
                State::Writing => folders.recover(entry)?,
            };
            if let Some(entry) = entry {
                folders.entries.insert(entry.id.clone(), entry);
            }
        }
        Ok(folders)
    }

    /// The configuration this was opened with.
    pub fn config(&self) -> &FolderConfig {
        &self.config
    }

    /// Delivers request `id` into `req` as `file_name`, at most once ever per id, across crashes and restarts.
    ///
    /// `id` must match `[A-Za-z0-9-]{1,64}`, `file_name` the OQS pattern
    /// `^(EPS|OQS)[A-Za-z0-9]+req_[A-Za-z0-9][A-Za-z0-9_-]*\.xml$` (at most 200 characters).
    /// If the journal knows `id` (pending or over): `AlreadyDelivered`, nothing touched. If `req/file_name` exists, or
    /// another pending request has that name: `NameTaken`, nothing written. Otherwise the journal entry is written
    /// durably, then the request under a temporary name (fsynced), which is then given the final name without replacing
    /// anything (a hard link, or where the share has none a rename after checking the name is free).
    ///
    /// On an error nothing is left in `req` and the entry is dropped, so the id may be delivered again; if dropping it
    /// fails too, the next [`Folders::open`] settles it. Once the file has its final name the delivery counts: a failure
    /// to record "delivered" afterwards is only logged (the next `open` records it).
    pub fn deliver(&mut self, id: &str, file_name: &str, content: &[u8]) -> Result<Delivery, FolderError> {
        self.deliver_inner(id, file_name, content, None)
    }

    /// [`Folders::deliver`] stopped after `step`, as a crash would stop it: for the crash-recovery tests.
    #[doc(hidden)]
    pub fn deliver_until(
        &mut self,
        id: &str,
        file_name: &str,
        content: &[u8],
        step: DeliverStep,
    ) -> Result<Delivery, FolderError> {
        self.deliver_inner(id, file_name, content, Some(step))
    }

    fn deliver_inner(
        &mut self,
        id: &str,
        file_name: &str,
        content: &[u8],
        stop: Option<DeliverStep>,
    ) -> Result<Delivery, FolderError> {
        validate_id(id)?;
        let answer_name = answer_name_for(file_name)?;
        if self.entries.contains_key(id) || self.is_done(id)? {
            return Ok(Delivery::AlreadyDelivered);
        }
        if self.entries.values().any(|e| e.request_name == file_name || e.answer_name == answer_name) {
            return Err(FolderError::NameTaken(file_name.to_owned()));
        }
        let target = self.config.req.join(file_name);
        if exists(&target).map_err(io_err("looking at the req folder", &target))? {
            return Err(FolderError::NameTaken(file_name.to_owned()));
        }
        let entry = Entry {
            version: JOURNAL_VERSION,
            id: id.to_owned(),
            request_name: file_name.to_owned(),
            answer_name,
            state: State::Writing,
            temp_name: temp_name(id),
            size: content.len() as u64,
            sha256: sha256_hex(content),
            reported: false,
        };
        self.write_entry(&entry)?;
        self.entries.insert(id.to_owned(), entry.clone());
        if stop == Some(DeliverStep::Journaled) {
            return Ok(Delivery::Written);
        }

        let temp = self.config.req.join(&entry.temp_name);
        if let Err(err) = write_synced(&temp, content) {
            self.undo_delivery(id, &temp);
            return Err(io_err("writing the request file", &temp)(err));
        }
        if stop == Some(DeliverStep::TempWritten) {
            return Ok(Delivery::Written);
        }
        match link_no_replace(&temp, &target) {
            Ok(Placed::Linked) => {
                if stop == Some(DeliverStep::Linked) {
                    return Ok(Delivery::Written);
                }
                if let Err(err) = fs::remove_file(&temp) {
                    tracing::warn!(path = %temp.display(), %err, "relay: could not remove the temporary request file");
                }
            }
            Ok(Placed::Renamed) => {}
            Ok(Placed::Taken) => {
                self.undo_delivery(id, &temp);
                return Err(FolderError::NameTaken(file_name.to_owned()));
            }
            Err(err) => {
                self.undo_delivery(id, &temp);
                return Err(io_err("naming the request file", &target)(err));
            }
        }
        sync_share_dir(&self.config.req);
        if stop == Some(DeliverStep::Renamed) {
            return Ok(Delivery::Written);
        }
        let mut entry = entry;
        entry.state = State::Delivered;
        if let Err(err) = self.write_entry(&entry) {
            tracing::warn!(%err, id, "relay: request delivered but not yet journaled as such (the next start records it)");
        }
        self.entries.insert(id.to_owned(), entry);
        Ok(Delivery::Written)
    }

    /// Takes back a delivery that failed before its file got the final name.
    fn undo_delivery(&mut self, id: &str, temp: &Path) {
        if let Err(err) = fs::remove_file(temp)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %temp.display(), %err, "relay: could not remove the temporary request file");
        }
        match self.remove_entry(id) {
            Ok(()) => {
                self.entries.remove(id);
            }
            Err(err) => tracing::warn!(%err, id, "relay: failed delivery still journaled (settled at the next start)"),
        }
    }

    /// Delivered requests whose answer is not finished yet, by id.
    pub fn pending(&self) -> Vec<Pending> {
        self.entries
            .values()
            .filter(|e| e.state == State::Delivered)
            .map(|e| Pending {
                id: e.id.clone(),
                request_name: e.request_name.clone(),
                answer_name: e.answer_name.clone(),
                reported: e.reported,
            })
            .collect()
    }

    /// Records durably that the gateway has been told `id` was delivered, so a restart does not report it again.
    pub fn mark_reported(&mut self, id: &str) -> Result<(), FolderError> {
        let Some(entry) = self.entries.get(id) else {
            return Err(FolderError::UnknownId(id.to_owned()));
        };
        if entry.reported {
            return Ok(());
        }
        let mut entry = entry.clone();
        entry.reported = true;
        self.write_entry(&entry)?;
        self.entries.insert(id.to_owned(), entry);
        Ok(())
    }

    /// Looks in `res` for the answers of pending requests and returns the complete ones.
    ///
    /// An answer is complete when an earlier scan saw the same size and modification time at least `settle` before
    /// `now`, and its bytes are well-formed XML (UTF-8, parsed by roxmltree; a DTD is allowed). A complete answer is
    /// returned by every scan until [`Folders::finish`] or [`Folders::abandon`], so a failed upload is retried by the
    /// next scan. Files of unknown ids are not looked at. An unreadable or not well-formed file is skipped with one
    /// warning per version of the file; one over [`MAX_ANSWER_BYTES`] is not read, and listed by [`Folders::oversized`].
    pub fn scan(&mut self, now: Instant) -> Vec<Answer> {
        let wanted: Vec<(String, String)> = self
            .entries
            .values()
            .filter(|e| e.state == State::Delivered)
            .map(|e| (e.id.clone(), e.answer_name.clone()))
            .collect();
        let entries = &self.entries;
        self.seen.retain(|id, _| entries.contains_key(id));
        self.oversized.retain(|id, _| entries.contains_key(id));
        self.unreadable.retain(|id| entries.contains_key(id));

        let mut answers = Vec::new();
        for (id, name) in wanted {
            let path = self.config.res.join(&name);
            let meta = match fs::metadata(&path) {
                Ok(meta) => {
                    self.unreadable.remove(&id);
                    meta
                }
                Err(err) => {
                    self.seen.remove(&id);
                    self.oversized.remove(&id);
                    if err.kind() == io::ErrorKind::NotFound {
                        self.unreadable.remove(&id);
                    } else if self.unreadable.insert(id.clone()) {
                        tracing::warn!(path = %path.display(), %err, "relay: cannot look at an answer file");
                    }
                    continue;
                }
            };
            if !meta.is_file() {
                if self.unreadable.insert(id.clone()) {
                    tracing::warn!(path = %path.display(), "relay: the answer's name in res is not a file");
                }
                continue;
            }
            let len = meta.len();
            let modified = meta.modified().ok();
            if len > MAX_ANSWER_BYTES {
                self.seen.remove(&id);
                let over = Oversized { id: id.clone(), file_name: name.clone(), size: len };
                if self.oversized.insert(id.clone(), over).is_none_or(|before| before.size != len) {
                    tracing::warn!(path = %path.display(), size = len, limit = MAX_ANSWER_BYTES, "relay: answer too large");
                }
                continue;
            }
            self.oversized.remove(&id);
            let Some(seen) = self.seen.get_mut(&id).filter(|s| s.len == len && s.modified == modified) else {
                self.seen.insert(id, Seen { len, modified, since: now, warned: false });
                continue;
            };
            if now.saturating_duration_since(seen.since) < self.config.settle {
                continue;
            }
            let content = match read_capped(&path) {
                Ok(content) => content,
                Err(err) => {
                    if !seen.warned {
                        seen.warned = true;
                        tracing::warn!(path = %path.display(), %err, "relay: cannot read an answer file");
                    }
                    continue;
                }
            };
            let unchanged = fs::metadata(&path).is_ok_and(|m| m.len() == len && m.modified().ok() == modified);
            if content.len() as u64 != len || !unchanged {
                // Written to while being read: observe it again.
                self.seen.remove(&id);
                continue;
            }
            if !well_formed_xml(&content) {
                if !seen.warned {
                    seen.warned = true;
                    tracing::warn!(path = %path.display(), "relay: answer file unchanged but not well-formed XML; waiting");
                }
                continue;
            }
            answers.push(Answer { id, file_name: name, content });
        }
        answers
    }

    /// When the earliest answer file that is waiting out its settle time will have settled, if one is: the
    /// caller scans again then instead of a whole rescan interval later.
    pub fn next_settled(&self, now: Instant) -> Option<Instant> {
        self.seen.values().map(|s| s.since + self.config.settle).filter(|at| *at > now).min()
    }

    /// Answer files over [`MAX_ANSWER_BYTES`] seen by the last [`Folders::scan`]: the caller fails these requests and
    /// [`Folders::abandon`]s them (the file stays in `res` for a person to look at).
    pub fn oversized(&self) -> Vec<Oversized> {
        self.oversized.values().cloned().collect()
    }

    /// After the gateway accepted `answer`: archives it into the dated folder for `today` or deletes it, as configured,
    /// then drops the journal entry durably (keeping the id's "done" marker).
    ///
    /// An archive name already taken gets a suffix (`EPSsiDMP01res_x.1.xml`, `.2`, …): nothing is overwritten. An
    /// archive on another volume is written by copying (fsynced) and then removing the original. An answer file already
    /// gone is not an error. Finishing an id that is already over is a no-op.
    pub fn finish(&mut self, answer: &Answer, today: time::Date) -> Result<(), FolderError> {
        validate_id(&answer.id)?;
        let Some(entry) = self.entries.get(&answer.id) else {
            if self.is_done(&answer.id)? {
                return Ok(());
            }
            return Err(FolderError::UnknownId(answer.id.clone()));
        };
        if entry.answer_name != answer.file_name {
            return Err(FolderError::InvalidName(answer.file_name.clone()));
        }
        let source = self.config.res.join(&entry.answer_name);
        match &self.config.after_upload {
            AfterUpload::Archive(dir) => {
                archive(&source, dir, today, &entry.answer_name)?;
            }
            AfterUpload::Delete => match fs::remove_file(&source) {
                Ok(()) => sync_share_dir(&self.config.res),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %source.display(), "relay: answer file already gone at finish");
                }
                Err(err) => return Err(io_err("deleting the answer file", &source)(err)),
            },
        }
        self.close(&answer.id, "finished")
    }

    /// The gateway says request `id` is over (expired, failed): drops it from the journal so it is no longer scanned for
    /// (keeping the "done" marker, so it is never delivered again). A late answer file is left in `res` untouched.
    /// An id that is not pending is a no-op.
    pub fn abandon(&mut self, id: &str) -> Result<(), FolderError> {
        validate_id(id)?;
        if !self.entries.contains_key(id) {
            return Ok(());
        }
        self.close(id, "abandoned")
    }

    /// Marks `id` done (durably), then drops its entry.
    fn close(&mut self, id: &str, outcome: &str) -> Result<(), FolderError> {
        let marker = serde_json::to_vec(&Done { id, outcome }).map_err(|err| FolderError::Io {
            action: "encoding a journal marker",
            path: self.done.clone(),
            source: io::Error::other(err),
        })?;
        write_durably(&self.done, &format!("{}.json", stem(id)), &marker)?;
        self.remove_entry(id)?;
        self.entries.remove(id);
        self.seen.remove(id);
        self.oversized.remove(id);
        self.unreadable.remove(id);
        Ok(())
    }

    /// Whether `id` is over; an error (rather than `false`) when that cannot be known, so nothing is written twice.
    fn is_done(&self, id: &str) -> Result<bool, FolderError> {
        let marker = self.done.join(format!("{}.json", stem(id)));
        exists(&marker).map_err(io_err("looking at the journal", &marker))
    }

    fn entry_path(&self, id: &str) -> PathBuf {
        self.journal.join(format!("{}.json", stem(id)))
    }

    fn write_entry(&self, entry: &Entry) -> Result<(), FolderError> {
        let bytes = serde_json::to_vec_pretty(entry).map_err(|err| FolderError::Io {
            action: "encoding a journal entry",
            path: self.entry_path(&entry.id),
            source: io::Error::other(err),
        })?;
        write_durably(&self.journal, &format!("{}.json", stem(&entry.id)), &bytes)
    }

    fn remove_entry(&self, id: &str) -> Result<(), FolderError> {
        let path = self.entry_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err("removing a journal entry", &path)(err)),
        }
        sync_dir(&self.journal).map_err(io_err("syncing the journal folder", &self.journal))
    }

    /// Settles an entry left "writing" by a crash (see [`Folders::open`]); `None` when it is dropped.
    fn recover(&mut self, mut entry: Entry) -> Result<Option<Entry>, FolderError> {
        let req = &self.config.req;
        let meta = fs::metadata(req).map_err(io_err("looking at the req folder to recover a delivery", req))?;
        if !meta.is_dir() {
            return Err(FolderError::Io {
                action: "looking at the req folder to recover a delivery",
                path: req.clone(),
                source: io::Error::other("not a folder"),
            });
        }
        let temp = req.join(&entry.temp_name);
        let target = req.join(&entry.request_name);
        let temp_exists = exists(&temp).map_err(io_err("looking at the req folder", &temp))?;
        let target_exists = exists(&target).map_err(io_err("looking at the req folder", &target))?;
        if temp_exists && !target_exists {
            let bytes = fs::read(&temp).map_err(io_err("reading the temporary request file", &temp))?;
            let complete = bytes.len() as u64 == entry.size && sha256_hex(&bytes) == entry.sha256;
            if !complete {
                tracing::warn!(id = %entry.id, path = %temp.display(),
                    "relay: a crash interrupted writing a request file; removed it, the request was not delivered");
                fs::remove_file(&temp).map_err(io_err("removing an incomplete request file", &temp))?;
                sync_share_dir(req);
                self.remove_entry(&entry.id)?;
                return Ok(None);
            }
            match link_no_replace(&temp, &target).map_err(io_err("naming the request file", &target))? {
                Placed::Linked | Placed::Taken => {
                    fs::remove_file(&temp).map_err(io_err("removing the temporary request file", &temp))?;
                }
                Placed::Renamed => {}
            }
            sync_share_dir(req);
            tracing::info!(id = %entry.id, "relay: completed a delivery interrupted by a crash");
        } else if temp_exists {
            fs::remove_file(&temp).map_err(io_err("removing the temporary request file", &temp))?;
            sync_share_dir(req);
        }
        entry.state = State::Delivered;
        self.write_entry(&entry)?;
        Ok(Some(entry))
    }
}

/// For the set-up page: checks that both folders exist and are folders, that a file can be created, written, renamed
/// and removed in `req`, and created, read back, renamed and removed in `res`, and that they are not the same folder
/// (also when reached by two paths: a file made in `req` must not appear in `res`). Probe files are named outside the
/// OQS pattern (`.ninsho-probe-….tmp`) and nothing is left behind.
pub fn check_access(req: &Path, res: &Path) -> Result<(), AccessProblem> {
    match fs::metadata(req) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(AccessProblem::ReqNotDirectory),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(AccessProblem::ReqMissing),
        Err(err) => return Err(AccessProblem::ReqNotWritable(err.to_string())),
    }
    match fs::metadata(res) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(AccessProblem::ResNotDirectory),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(AccessProblem::ResMissing),
        Err(err) => return Err(AccessProblem::ResNotReadable(err.to_string())),
    }
    if req == res || matches!((fs::canonicalize(req), fs::canonicalize(res)), (Ok(a), Ok(b)) if a == b) {
        return Err(AccessProblem::SameFolder);
    }
    probe_req(req, res)?;
    probe_res(res)
}

static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn probe_names() -> (String, String) {
    let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (format!(".ninsho-probe-{pid}-{n}.tmp"), format!(".ninsho-probe-{pid}-{n}-renamed.tmp"))
}

const PROBE_BYTES: &[u8] = b"Ninsho Gateway folder check\n";

fn probe_req(req: &Path, res: &Path) -> Result<(), AccessProblem> {
    let (first, second) = probe_names();
    let (first, second) = (req.join(first), req.join(second));
    let cleanup = |paths: &[&Path]| {
        for path in paths {
            let _ = fs::remove_file(path);
        }
    };
    if let Err(err) = create_probe(&first) {
        cleanup(&[&first]);
        return Err(AccessProblem::ReqNotWritable(err.to_string()));
    }
    if let Some(name) = first.file_name()
        && res.join(name).exists()
    {
        cleanup(&[&first]);
        return Err(AccessProblem::SameFolder);
    }
    if let Err(err) = fs::rename(&first, &second) {
        cleanup(&[&first, &second]);
        return Err(AccessProblem::ReqCannotRename(err.to_string()));
    }
    if let Err(err) = fs::remove_file(&second) {
        cleanup(&[&second]);
        return Err(AccessProblem::ReqNotWritable(err.to_string()));
    }
    Ok(())
}

fn probe_res(res: &Path) -> Result<(), AccessProblem> {
    let (first, second) = probe_names();
    let (first, second) = (res.join(first), res.join(second));
    let cleanup = |paths: &[&Path]| {
        for path in paths {
            let _ = fs::remove_file(path);
        }
    };
    if let Err(err) = fs::read_dir(res) {
        return Err(AccessProblem::ResNotReadable(err.to_string()));
    }
    if let Err(err) = create_probe(&first) {
        cleanup(&[&first]);
        return Err(AccessProblem::ResCannotMove(err.to_string()));
    }
    match fs::read(&first) {
        Ok(bytes) if bytes == PROBE_BYTES => {}
        Ok(_) => {
            cleanup(&[&first]);
            return Err(AccessProblem::ResNotReadable("the file read back differs from what was written".into()));
        }
        Err(err) => {
            cleanup(&[&first]);
            return Err(AccessProblem::ResNotReadable(err.to_string()));
        }
    }
    if let Err(err) = fs::rename(&first, &second) {
        cleanup(&[&first, &second]);
        return Err(AccessProblem::ResCannotMove(err.to_string()));
    }
    if let Err(err) = fs::remove_file(&second) {
        cleanup(&[&second]);
        return Err(AccessProblem::ResCannotMove(err.to_string()));
    }
    Ok(())
}

fn create_probe(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(PROBE_BYTES)?;
    file.sync_all()
}

/// Why [`check_access`] refused the folders. The `String`s are the system's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessProblem {
    /// The req folder does not exist (or its share is not connected).
    ReqMissing,
    /// The req path is a file, not a folder.
    ReqNotDirectory,
    /// A file cannot be created, written or removed in req.
    ReqNotWritable(String),
    /// A file in req cannot be renamed.
    ReqCannotRename(String),
    /// The res folder does not exist (or its share is not connected).
    ResMissing,
    /// The res path is a file, not a folder.
    ResNotDirectory,
    /// The res folder cannot be listed, or a file in it cannot be read.
    ResNotReadable(String),
    /// A file in res cannot be created, renamed (moved) or removed.
    ResCannotMove(String),
    /// req and res are the same folder.
    SameFolder,
}

impl AccessProblem {
    /// Whether the problem is with `res` (else with `req`, or both for [`AccessProblem::SameFolder`]).
    pub fn concerns_res(&self) -> bool {
        matches!(
            self,
            AccessProblem::ResMissing | AccessProblem::ResNotDirectory | AccessProblem::ResNotReadable(_) | AccessProblem::ResCannotMove(_)
        )
    }

    /// For clinic staff, in Japanese.
    pub fn message_ja(&self) -> String {
        match self {
            AccessProblem::ReqMissing => "req フォルダ（処方箋の依頼ファイルを置くフォルダ）が見つかりません。\
                パスが正しいか、共有フォルダに接続できているかを確認してください。"
                .into(),
            AccessProblem::ReqNotDirectory => {
                "req に指定したパスはフォルダではなくファイルです。フォルダを指定してください。".into()
            }
            AccessProblem::ReqNotWritable(detail) => format!(
                "req フォルダにファイルを書き込めません。このパソコンのユーザーに書き込み権限があるか確認してください: {detail}"
            ),
            AccessProblem::ReqCannotRename(detail) => format!(
                "req フォルダの中でファイル名を変更できません。変更（名前の変更・削除）の権限があるか確認してください: {detail}"
            ),
            AccessProblem::ResMissing => "res フォルダ（オンライン資格確認端末が応答ファイルを置くフォルダ）が見つかりません。\
                パスが正しいか、共有フォルダに接続できているかを確認してください。"
                .into(),
            AccessProblem::ResNotDirectory => {
                "res に指定したパスはフォルダではなくファイルです。フォルダを指定してください。".into()
            }
            AccessProblem::ResNotReadable(detail) => format!(
                "res フォルダのファイルを読み取れません。このパソコンのユーザーに読み取り権限があるか確認してください: {detail}"
            ),
            AccessProblem::ResCannotMove(detail) => format!(
                "res フォルダの応答ファイルを移動・削除できません。変更（作成・名前の変更・削除）の権限があるか確認してください: {detail}"
            ),
            AccessProblem::SameFolder => {
                "req と res に同じフォルダが指定されています。依頼用と応答用に別々のフォルダを指定してください。".into()
            }
        }
    }

    /// For clinic staff, in English.
    pub fn message_en(&self) -> String {
        match self {
            AccessProblem::ReqMissing => "The req folder (where prescription request files are placed) was not found. \
                Check the path, and that this PC is connected to the shared folder."
                .into(),
            AccessProblem::ReqNotDirectory => "The path given for req is a file, not a folder. Choose a folder.".into(),
            AccessProblem::ReqNotWritable(detail) => {
                format!("Files cannot be written in the req folder. Check that this PC's user may write there: {detail}")
            }
            AccessProblem::ReqCannotRename(detail) => format!(
                "Files in the req folder cannot be renamed. Check that this PC's user may modify (rename, delete) files there: {detail}"
            ),
            AccessProblem::ResMissing => "The res folder (where the OQS terminal places answer files) was not found. \
                Check the path, and that this PC is connected to the shared folder."
                .into(),
            AccessProblem::ResNotDirectory => "The path given for res is a file, not a folder. Choose a folder.".into(),
            AccessProblem::ResNotReadable(detail) => {
                format!("Files in the res folder cannot be read. Check that this PC's user may read there: {detail}")
            }
            AccessProblem::ResCannotMove(detail) => format!(
                "Answer files in the res folder cannot be moved or deleted. \
                Check that this PC's user may modify (create, rename, delete) files there: {detail}"
            ),
            AccessProblem::SameFolder => {
                "req and res are the same folder. Choose separate folders for requests and answers.".into()
            }
        }
    }
}

impl std::fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message_en())
    }
}

impl std::error::Error for AccessProblem {}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FolderError {
    let path = path.to_path_buf();
    move |source| FolderError::Io { action, path, source }
}

fn validate_id(id: &str) -> Result<(), FolderError> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(FolderError::InvalidId(id.to_owned())) }
}

/// Checks an OQS request file name and gives its answer's name (`req_` → `res_` after the interface prefix).
fn answer_name_for(file_name: &str) -> Result<String, FolderError> {
    let invalid = || FolderError::InvalidName(file_name.to_owned());
    if file_name.len() > MAX_NAME_LEN {
        return Err(invalid());
    }
    let rest = file_name.strip_prefix("EPS").or_else(|| file_name.strip_prefix("OQS")).ok_or_else(invalid)?;
    // The interface part has no '_': the first '_' ends "req_".
    let underscore = rest.find('_').ok_or_else(invalid)?;
    let interface = rest[..underscore].strip_suffix("req").ok_or_else(invalid)?;
    if interface.is_empty() || !interface.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid());
    }
    let tail = rest[underscore + 1..].strip_suffix(".xml").ok_or_else(invalid)?;
    let mut bytes = tail.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(invalid());
    }
    let prefix_len = file_name.len() - rest.len();
    Ok(format!("{}{interface}res_{tail}.xml", &file_name[..prefix_len]))
}

/// The id as a file-name stem that stays distinct where file names ignore case: `A` → `_a`.
fn stem(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn temp_name(id: &str) -> String {
    format!(".ninsho-{}.tmp", stem(id))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn well_formed_xml(bytes: &[u8]) -> bool {
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    std::str::from_utf8(bytes).is_ok_and(|text| roxmltree::Document::parse_with_options(text, options).is_ok())
}

fn read_entry(path: &Path, file_stem: &str) -> Result<Entry, FolderError> {
    let corrupt = |reason: String| FolderError::CorruptJournal { path: path.to_path_buf(), reason };
    let bytes = fs::read(path).map_err(io_err("reading a journal entry", path))?;
    let entry: Entry = serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?;
    if entry.version != JOURNAL_VERSION {
        return Err(corrupt(format!("unknown version {}", entry.version)));
    }
    validate_id(&entry.id).map_err(|err| corrupt(err.to_string()))?;
    if stem(&entry.id) != file_stem {
        return Err(corrupt(format!("holds id {:?}, which does not match the file name", entry.id)));
    }
    let answer = answer_name_for(&entry.request_name).map_err(|err| corrupt(err.to_string()))?;
    if answer != entry.answer_name || entry.temp_name != temp_name(&entry.id) {
        return Err(corrupt("names do not match the request".into()));
    }
    Ok(entry)
}

/// Creates `dir` if needed, readable by its owner only on unix.
fn private_dir(dir: &Path) -> Result<(), FolderError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder.create(dir).map_err(io_err("creating the journal folder", dir))?;
        let meta = fs::metadata(dir).map_err(io_err("looking at the journal folder", dir))?;
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("restricting the journal folder", dir))?;
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(io_err("creating the journal folder", dir))?;
    Ok(())
}

/// Writes `dir/name` atomically and durably: `dir/name.tmp`, fsync, rename over `dir/name`, fsync of `dir`.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), FolderError> {
    let temp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    write_synced(&temp, bytes).map_err(io_err("writing a journal file", &temp))?;
    fs::rename(&temp, &path).map_err(io_err("renaming a journal file", &path))?;
    sync_dir(dir).map_err(io_err("syncing the journal folder", dir))
}

/// Creates or truncates `path`, writes `bytes` and fsyncs.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Fsyncs a folder so a rename or removal in it survives a crash. Windows has no such call: nothing to do there.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// [`sync_dir`] on a shared folder: some network file systems refuse it, which is only logged.
fn sync_share_dir(dir: &Path) {
    if let Err(err) = sync_dir(dir) {
        tracing::debug!(path = %dir.display(), %err, "relay: folder fsync not done");
    }
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

enum Placed {
    /// `to` is a hard link to `from`, which still exists.
    Linked,
    /// `from` was renamed to `to`.
    Renamed,
    /// `to` already existed; nothing changed.
    Taken,
}

/// Gives `from` the name `to` without replacing anything: a hard link where the file system has them (atomic), else a
/// rename after checking that `to` is free (plain `rename` replaces on every platform; nobody else creates names in
/// `req`, so the window between the check and the rename is only a guard against a person's copy).
fn link_no_replace(from: &Path, to: &Path) -> io::Result<Placed> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(Placed::Linked),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Placed::Taken),
        Err(err) => {
            tracing::debug!(%err, "relay: no hard link in this folder; renaming");
            if exists(to)? {
                return Ok(Placed::Taken);
            }
            fs::rename(from, to)?;
            Ok(Placed::Renamed)
        }
    }
}

/// Reads a file, refusing one that grew past [`MAX_ANSWER_BYTES`] meanwhile.
fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut content = Vec::new();
    file.take(MAX_ANSWER_BYTES + 1).read_to_end(&mut content)?;
    if content.len() as u64 > MAX_ANSWER_BYTES {
        return Err(io::Error::other("answer grew over the size limit"));
    }
    Ok(content)
}

fn date_folder(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// `EPSsiDMP01res_x.xml` → `EPSsiDMP01res_x.<n>.xml`.
fn suffixed(name: &str, n: u32) -> String {
    match name.strip_suffix(".xml") {
        Some(base) => format!("{base}.{n}.xml"),
        None => format!("{name}.{n}"),
    }
}

/// Moves `source` into `dir/<date>/` under `name` or, when taken, the first free suffixed name. The target name is
/// reserved by creating it (never overwriting), then `source` is renamed onto the reservation, or copied into it when
/// the archive is on another volume.
fn archive(source: &Path, dir: &Path, today: time::Date, name: &str) -> Result<(), FolderError> {
    if !exists(source).map_err(io_err("looking at the answer file", source))? {
        tracing::warn!(path = %source.display(), "relay: answer file already gone at finish");
        return Ok(());
    }
    let day = dir.join(date_folder(today));
    fs::create_dir_all(&day).map_err(io_err("creating the archive folder", &day))?;
    let mut reserved = None;
    for n in 0..10_000u32 {
        let candidate = day.join(if n == 0 { name.to_owned() } else { suffixed(name, n) });
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(_) => {
                reserved = Some(candidate);
                break;
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_err("creating the archived answer", &candidate)(err)),
        }
    }
    let Some(target) = reserved else {
        return Err(FolderError::Io {
            action: "choosing an archive name",
            path: day.join(name),
            source: io::Error::other("every suffix is taken"),
        });
    };
    if let Err(err) = fs::rename(source, &target) {
        tracing::debug!(%err, "relay: answer not renamed into the archive; copying");
        if let Err(err) = copy_synced(source, &target) {
            let _ = fs::remove_file(&target);
            return Err(io_err("copying the answer into the archive", &target)(err));
        }
        if let Err(err) = fs::remove_file(source) {
            let _ = fs::remove_file(&target);
            return Err(io_err("removing the archived answer from res", source)(err));
        }
    }
    sync_share_dir(&day);
    if let Some(res) = source.parent() {
        sync_share_dir(res);
    }
    Ok(())
}

fn copy_synced(from: &Path, to: &Path) -> io::Result<()> {
    let mut reader = File::open(from)?;
    let mut writer = OpenOptions::new().write(true).truncate(true).open(to)?;
    io::copy(&mut reader, &mut writer)?;
    writer.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_names() {
        assert_eq!(answer_name_for("EPSsiDMP01req_abc-1.xml").unwrap(), "EPSsiDMP01res_abc-1.xml");
        assert_eq!(answer_name_for("OQSsiquc01req_a_b.xml").unwrap(), "OQSsiquc01res_a_b.xml");
        assert_eq!(answer_name_for("EPSreqreq_x.xml").unwrap(), "EPSreqres_x.xml");
        for bad in [
            "EPSreq_x.xml",
            "x.xml",
            "../EPSsiDMP01req_x.xml",
            "EPSsiDMP01req_../x.xml",
            "EPSsiDMP01req_a/b.xml",
            "EPSsiDMP01req_a\\b.xml",
            "EPSsiDMP01req_.xml",
            "EPSsiDMP01req__x.xml",
            "EPSsiDMP01req_x.XML",
            "EPSsiDMP01req_x.xml.tmp",
            "EPSsi_DMP01req_x.xml",
            "epssiDMP01req_x.xml",
            "EPSsiDMP01res_x.xml",
            "EPSsiDMP01req_x .xml",
            "EPSsiDMP01req_ｘ.xml",
            "",
        ] {
            assert!(answer_name_for(bad).is_err(), "{bad:?} accepted");
        }
        assert!(answer_name_for(&format!("EPSsiDMP01req_{}.xml", "a".repeat(190))).is_err());
    }

    #[test]
    fn stems_keep_case_apart() {
        assert_eq!(stem("abc-1"), "abc-1");
        assert_eq!(stem("aBc"), "a_bc");
        assert_ne!(stem("ABC").to_lowercase(), stem("abc").to_lowercase());
    }

    #[test]
    fn suffixes() {
        assert_eq!(suffixed("EPSsiDMP01res_x.xml", 2), "EPSsiDMP01res_x.2.xml");
    }
}
