#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The relay's file-system side (`card_agent::relay`) on real temporary folders: at-most-once delivery across restarts
//! and crashes, complete-answer detection, finishing, the set-up page's access check and the res watcher.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use card_agent::relay::folders::{
    AccessProblem, AfterUpload, Answer, DeliverStep, Delivery, FolderConfig, FolderError, Folders, MAX_ANSWER_BYTES,
    check_access,
};
use card_agent::relay::watch::ResWatcher;
use tempfile::TempDir;
use time::macros::date;

const SETTLE: Duration = Duration::from_secs(2);
const REQ_NAME: &str = "EPSsiDMP01req_r-1.xml";
const RES_NAME: &str = "EPSsiDMP01res_r-1.xml";
const REQUEST: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Request><Id>r-1</Id></Request>\n";
const ANSWER: &[u8] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Answer><Result>処方箋 OK</Result></Answer>\n".as_bytes();

struct Fixture {
    _dir: TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["req", "res", "archive"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        Fixture { _dir: dir, root }
    }

    fn req(&self) -> PathBuf {
        self.root.join("req")
    }

    fn res(&self) -> PathBuf {
        self.root.join("res")
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    fn config(&self, after_upload: AfterUpload) -> FolderConfig {
        FolderConfig { req: self.req(), res: self.res(), after_upload, settle: SETTLE }
    }

    fn open(&self) -> Folders {
        Folders::open(self.config(AfterUpload::Archive(self.root.join("archive"))), &self.state()).unwrap()
    }

    fn open_deleting(&self) -> Folders {
        Folders::open(self.config(AfterUpload::Delete), &self.state()).unwrap()
    }
}

/// File names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Delivers `REQUEST` as r-1 and simulates the terminal: consumes the request, writes the whole answer.
fn delivered_and_answered(fx: &Fixture) -> Folders {
    let mut folders = fx.open();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::Written);
    fs::remove_file(fx.req().join(REQ_NAME)).unwrap();
    fs::write(fx.res().join(RES_NAME), ANSWER).unwrap();
    folders
}

/// Scans twice, `SETTLE` apart, and returns the second scan's answers.
fn settled_scan(folders: &mut Folders) -> Vec<Answer> {
    let t0 = Instant::now();
    assert!(folders.scan(t0).is_empty(), "first sight is never complete");
    folders.scan(t0 + SETTLE)
}

#[test]
fn deliver_writes_exactly_the_content_under_the_final_name() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::Written);
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()], "no temporary file remains");
    assert_eq!(fs::read(fx.req().join(REQ_NAME)).unwrap(), REQUEST);
    let pending = folders.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, "r-1");
    assert_eq!(pending[0].request_name, REQ_NAME);
    assert_eq!(pending[0].answer_name, RES_NAME);
    assert!(!pending[0].reported);
}

#[test]
fn a_second_delivery_of_an_id_writes_nothing_even_after_a_restart_or_the_end() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    // The terminal consumed the request: a second write would be a second prescription request.
    fs::remove_file(fx.req().join(REQ_NAME)).unwrap();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert_eq!(folders.deliver("r-1", "EPSsiDMP01req_other.xml", b"<x/>").unwrap(), Delivery::AlreadyDelivered);
    assert!(names(&fx.req()).is_empty());

    drop(folders);
    let mut folders = fx.open();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert!(names(&fx.req()).is_empty());
    assert_eq!(folders.pending().len(), 1, "still pending after the restart");

    // Over (finished or abandoned) and restarted: still never written again.
    folders.abandon("r-1").unwrap();
    assert!(folders.pending().is_empty());
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    drop(folders);
    let mut folders = fx.open();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert!(names(&fx.req()).is_empty());
    assert!(folders.pending().is_empty());
}

#[test]
fn ids_differing_only_in_case_are_separate_requests() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    assert_eq!(folders.deliver("abc", "EPSsiDMP01req_abc.xml", b"<a/>").unwrap(), Delivery::Written);
    assert_eq!(folders.deliver("ABC", "EPSsiDMP01req_ABC2.xml", b"<b/>").unwrap(), Delivery::Written);
    drop(folders);
    let folders = fx.open();
    let ids: Vec<String> = folders.pending().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["ABC", "abc"]);
}

#[test]
fn an_existing_target_is_name_taken_and_nothing_changes() {
    let fx = Fixture::new();
    fs::write(fx.req().join(REQ_NAME), b"someone else's").unwrap();
    let mut folders = fx.open();
    let err = folders.deliver("r-1", REQ_NAME, REQUEST).unwrap_err();
    assert!(matches!(err, FolderError::NameTaken(ref name) if name == REQ_NAME), "{err:?}");
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()]);
    assert_eq!(fs::read(fx.req().join(REQ_NAME)).unwrap(), b"someone else's");
    assert!(folders.pending().is_empty());
    assert_eq!(names(&fx.state().join("journal")), vec!["done".to_owned()], "no journal entry left");

    // Once the name is free, the same id can be delivered: nothing was delivered before.
    fs::remove_file(fx.req().join(REQ_NAME)).unwrap();
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::Written);

    // A pending request's name is taken even after the terminal consumed its file.
    fs::remove_file(fx.req().join(REQ_NAME)).unwrap();
    let err = folders.deliver("r-2", REQ_NAME, REQUEST).unwrap_err();
    assert!(matches!(err, FolderError::NameTaken(_)), "{err:?}");
    assert!(names(&fx.req()).is_empty());
}

#[test]
fn bad_names_and_ids_are_refused() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    for name in [
        "../x",
        "a/b.xml",
        "x.xml",
        "EPSreq_x.xml",
        "../EPSsiDMP01req_x.xml",
        "EPSsiDMP01req_a/b.xml",
        "EPSsiDMP01req_x.xml/",
        "EPSsiDMP01res_x.xml",
        ".ninsho-r-1.tmp",
    ] {
        let err = folders.deliver("r-1", name, REQUEST).unwrap_err();
        assert!(matches!(err, FolderError::InvalidName(_)), "{name:?}: {err:?}");
    }
    let too_long = "a".repeat(65);
    for id in ["", "a b", "../x", "a/b", "a_b", "é", too_long.as_str()] {
        let err = folders.deliver(id, REQ_NAME, REQUEST).unwrap_err();
        assert!(matches!(err, FolderError::InvalidId(_)), "{id:?}: {err:?}");
    }
    assert!(names(&fx.req()).is_empty());
    assert!(folders.pending().is_empty());
    assert_eq!(folders.deliver(&"a".repeat(64), REQ_NAME, REQUEST).unwrap(), Delivery::Written);
}

#[test]
fn journal_folder_is_private() {
    let fx = Fixture::new();
    let _folders = fx.open();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(fx.state().join("journal")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn reported_is_remembered_across_restarts() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    folders.deliver("r-2", "EPSsiDMP01req_r-2.xml", REQUEST).unwrap();
    folders.mark_reported("r-1").unwrap();
    folders.mark_reported("r-1").unwrap();
    assert!(matches!(folders.mark_reported("nope").unwrap_err(), FolderError::UnknownId(_)));
    drop(folders);
    let folders = fx.open();
    let reported: Vec<(String, bool)> = folders.pending().into_iter().map(|p| (p.id, p.reported)).collect();
    assert_eq!(reported, [("r-1".to_owned(), true), ("r-2".to_owned(), false)]);
}

/// A crash after the journal entry, before anything in req: the rename cannot be told from one that happened and was
/// consumed, so the request counts as delivered and is never written.
#[test]
fn crash_before_the_temporary_file_counts_as_delivered() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver_until("r-1", REQ_NAME, REQUEST, DeliverStep::Journaled).unwrap();
    drop(folders);
    let mut folders = fx.open();
    assert!(names(&fx.req()).is_empty());
    assert_eq!(folders.pending().len(), 1);
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert!(names(&fx.req()).is_empty());
}

#[test]
fn crash_before_the_rename_is_completed_at_open() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver_until("r-1", REQ_NAME, REQUEST, DeliverStep::TempWritten).unwrap();
    assert_eq!(names(&fx.req()), vec![".ninsho-r-1.tmp".to_owned()], "the temporary name is outside the OQS pattern");
    drop(folders);
    let mut folders = fx.open();
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()]);
    assert_eq!(fs::read(fx.req().join(REQ_NAME)).unwrap(), REQUEST);
    assert_eq!(folders.pending().len(), 1);
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    // Open again: nothing more happens.
    drop(folders);
    let folders = fx.open();
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()]);
    assert_eq!(folders.pending().len(), 1);
}

#[test]
fn crash_after_the_rename_marks_delivered_without_a_second_copy() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver_until("r-1", REQ_NAME, REQUEST, DeliverStep::Renamed).unwrap();
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()]);
    // The terminal consumed it before the restart.
    fs::remove_file(fx.req().join(REQ_NAME)).unwrap();
    drop(folders);
    let mut folders = fx.open();
    assert!(names(&fx.req()).is_empty(), "never written again");
    assert_eq!(folders.pending().len(), 1);
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert!(names(&fx.req()).is_empty());
}

#[test]
fn crash_with_both_names_removes_the_temporary_file() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver_until("r-1", REQ_NAME, REQUEST, DeliverStep::Linked).unwrap();
    let mut both = vec![".ninsho-r-1.tmp".to_owned(), REQ_NAME.to_owned()];
    both.sort();
    assert_eq!(names(&fx.req()), both);
    drop(folders);
    let folders = fx.open();
    assert_eq!(names(&fx.req()), vec![REQ_NAME.to_owned()]);
    assert_eq!(fs::read(fx.req().join(REQ_NAME)).unwrap(), REQUEST);
    assert_eq!(folders.pending().len(), 1);
}

#[test]
fn crash_while_writing_the_temporary_file_is_not_a_delivery() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver_until("r-1", REQ_NAME, REQUEST, DeliverStep::TempWritten).unwrap();
    let temp = fx.req().join(".ninsho-r-1.tmp");
    fs::write(&temp, &REQUEST[..10]).unwrap();
    drop(folders);
    let mut folders = fx.open();
    assert!(names(&fx.req()).is_empty(), "the half file is removed, never given the OQS name");
    assert!(folders.pending().is_empty());
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::Written);
    assert_eq!(fs::read(fx.req().join(REQ_NAME)).unwrap(), REQUEST);
}

#[test]
fn a_corrupt_journal_entry_is_an_error_naming_the_file() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    drop(folders);
    let entry = fx.state().join("journal").join("r-1.json");
    fs::write(&entry, b"{\"version\": 1, \"id\": ").unwrap();
    let err = Folders::open(fx.config(AfterUpload::Delete), &fx.state()).unwrap_err();
    assert!(matches!(err, FolderError::CorruptJournal { ref path, .. } if *path == entry), "{err:?}");
    assert!(err.to_string().contains("r-1.json"), "{err}");
    assert!(entry.exists(), "left for a person to look at");
}

#[test]
fn scan_waits_for_a_settled_and_well_formed_answer() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    let answer = fx.res().join(RES_NAME);
    let t0 = Instant::now();
    assert!(folders.scan(t0).is_empty(), "no answer yet");
    assert_eq!(folders.next_settled(t0), None, "nothing to wait for");

    // The terminal writes half the answer under its final name, flushes, and pauses.
    let half = &ANSWER[..ANSWER.len() / 2];
    fs::write(&answer, half).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::File::options().write(true).open(&answer).unwrap().set_modified(mtime).unwrap();
    assert!(folders.scan(t0 + SETTLE).is_empty(), "first sight");
    assert_eq!(folders.next_settled(t0 + SETTLE), Some(t0 + 2 * SETTLE), "look again when it has settled");
    assert!(folders.scan(t0 + 2 * SETTLE).is_empty(), "settled but not well-formed");
    assert_eq!(folders.next_settled(t0 + 2 * SETTLE), None, "a settled file waits for a change, not a time");
    assert!(folders.scan(t0 + 10 * SETTLE).is_empty(), "still not well-formed");

    // The rest arrives; same size would not hide it either: the modification time moves.
    fs::write(&answer, ANSWER).unwrap();
    fs::File::options().write(true).open(&answer).unwrap().set_modified(mtime + Duration::from_secs(1)).unwrap();
    let t1 = t0 + 11 * SETTLE;
    assert!(folders.scan(t1).is_empty(), "changed: first sight again");
    assert_eq!(folders.next_settled(t1), Some(t1 + SETTLE));
    assert!(folders.scan(t1 + SETTLE - Duration::from_millis(1)).is_empty(), "not settled yet");
    let answers = folders.scan(t1 + SETTLE);
    assert_eq!(answers, [Answer { id: "r-1".into(), file_name: RES_NAME.into(), content: ANSWER.to_vec() }]);
    // Returned again until finished (a failed upload is retried).
    assert_eq!(folders.scan(t1 + 2 * SETTLE).len(), 1);
}

#[test]
fn scan_notices_a_same_size_rewrite() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    let answer = fx.res().join(RES_NAME);
    let t0 = Instant::now();
    fs::write(&answer, b"<a>1</a>").unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::File::options().write(true).open(&answer).unwrap().set_modified(mtime).unwrap();
    assert!(folders.scan(t0).is_empty());
    fs::write(&answer, b"<a>2</a>").unwrap();
    fs::File::options().write(true).open(&answer).unwrap().set_modified(mtime + Duration::from_secs(1)).unwrap();
    assert!(folders.scan(t0 + SETTLE).is_empty(), "same size, new modification time: not settled");
    let answers = folders.scan(t0 + 2 * SETTLE);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].content, b"<a>2</a>");
}

#[test]
fn scan_ignores_answers_of_unknown_ids_and_non_utf8() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    fs::write(fx.res().join("EPSsiDMP01res_stranger.xml"), ANSWER).unwrap();
    fs::write(fx.res().join("notes.txt"), b"hello").unwrap();
    // Shift_JIS bytes: not UTF-8, so not returned.
    fs::write(fx.res().join(RES_NAME), b"<a>\x8f\x88\x95\xfb</a>").unwrap();
    assert!(settled_scan(&mut folders).is_empty());
    let t = Instant::now() + 10 * SETTLE;
    assert!(folders.scan(t).is_empty());
    assert_eq!(names(&fx.res()).len(), 3, "nothing touched");
}

#[test]
fn scan_reports_an_oversized_answer() {
    let fx = Fixture::new();
    let mut folders = fx.open();
    folders.deliver("r-1", REQ_NAME, REQUEST).unwrap();
    let answer = fx.res().join(RES_NAME);
    let file = fs::File::create(&answer).unwrap();
    file.set_len(MAX_ANSWER_BYTES + 1).unwrap();
    drop(file);
    assert!(settled_scan(&mut folders).is_empty());
    let over = folders.oversized();
    assert_eq!(over.len(), 1);
    assert_eq!((over[0].id.as_str(), over[0].file_name.as_str(), over[0].size), ("r-1", RES_NAME, MAX_ANSWER_BYTES + 1));
    folders.abandon("r-1").unwrap();
    assert!(folders.oversized().is_empty());
    assert!(answer.exists(), "left for a person to look at");
}

#[test]
fn finish_archives_into_a_dated_folder_with_a_suffix_on_a_clash() {
    let fx = Fixture::new();
    let mut folders = delivered_and_answered(&fx);
    let answers = settled_scan(&mut folders);
    assert_eq!(answers.len(), 1);
    let day = fx.root.join("archive").join("2026-03-09");
    fs::create_dir_all(&day).unwrap();
    fs::write(day.join(RES_NAME), b"an earlier answer").unwrap();
    folders.finish(&answers[0], date!(2026 - 03 - 09)).unwrap();
    assert!(names(&fx.res()).is_empty());
    assert_eq!(fs::read(day.join(RES_NAME)).unwrap(), b"an earlier answer", "never overwritten");
    assert_eq!(fs::read(day.join("EPSsiDMP01res_r-1.1.xml")).unwrap(), ANSWER);
    assert!(folders.pending().is_empty());
    assert!(folders.scan(Instant::now() + 100 * SETTLE).is_empty());
    // Finishing again is a no-op; after a restart the id is still over and never delivered again.
    folders.finish(&answers[0], date!(2026 - 03 - 09)).unwrap();
    drop(folders);
    let mut folders = fx.open();
    assert!(folders.pending().is_empty());
    assert_eq!(folders.deliver("r-1", REQ_NAME, REQUEST).unwrap(), Delivery::AlreadyDelivered);
    assert_eq!(names(&fx.state().join("journal")), vec!["done".to_owned()]);
}

#[test]
fn finish_archives_into_a_new_dated_folder() {
    let fx = Fixture::new();
    let mut folders = delivered_and_answered(&fx);
    let answers = settled_scan(&mut folders);
    folders.finish(&answers[0], date!(2026 - 12 - 31)).unwrap();
    let day = fx.root.join("archive").join("2026-12-31");
    assert_eq!(names(&day), vec![RES_NAME.to_owned()]);
    assert_eq!(fs::read(day.join(RES_NAME)).unwrap(), ANSWER);
}

#[test]
fn finish_deletes_when_configured() {
    let fx = Fixture::new();
    drop(delivered_and_answered(&fx));
    let mut folders = fx.open_deleting();
    let answers = settled_scan(&mut folders);
    assert_eq!(answers.len(), 1);
    folders.finish(&answers[0], date!(2026 - 03 - 09)).unwrap();
    assert!(names(&fx.res()).is_empty());
    assert!(names(&fx.root.join("archive")).is_empty());
    assert!(folders.pending().is_empty());
}

#[test]
fn finish_refuses_an_unknown_id_or_a_foreign_name() {
    let fx = Fixture::new();
    let mut folders = delivered_and_answered(&fx);
    let stranger = Answer { id: "r-9".into(), file_name: RES_NAME.into(), content: ANSWER.to_vec() };
    assert!(matches!(folders.finish(&stranger, date!(2026 - 03 - 09)).unwrap_err(), FolderError::UnknownId(_)));
    let wrong = Answer { id: "r-1".into(), file_name: "EPSsiDMP01res_x.xml".into(), content: ANSWER.to_vec() };
    assert!(matches!(folders.finish(&wrong, date!(2026 - 03 - 09)).unwrap_err(), FolderError::InvalidName(_)));
    assert_eq!(names(&fx.res()), vec![RES_NAME.to_owned()]);
    assert_eq!(folders.pending().len(), 1);
}

#[test]
fn abandon_stops_scanning_and_leaves_a_late_answer() {
    let fx = Fixture::new();
    let mut folders = delivered_and_answered(&fx);
    folders.abandon("r-1").unwrap();
    folders.abandon("r-1").unwrap();
    folders.abandon("never-seen").unwrap();
    assert!(matches!(folders.abandon("../x").unwrap_err(), FolderError::InvalidId(_)));
    assert!(folders.pending().is_empty());
    assert!(settled_scan(&mut folders).is_empty());
    assert_eq!(fs::read(fx.res().join(RES_NAME)).unwrap(), ANSWER, "untouched");
    drop(folders);
    let mut folders = fx.open();
    assert!(folders.pending().is_empty());
    assert!(settled_scan(&mut folders).is_empty());
}

#[test]
fn check_access_accepts_good_folders_and_leaves_nothing() {
    let fx = Fixture::new();
    fs::write(fx.req().join("existing.txt"), b"x").unwrap();
    check_access(&fx.req(), &fx.res()).unwrap();
    assert_eq!(names(&fx.req()), vec!["existing.txt".to_owned()]);
    assert!(names(&fx.res()).is_empty());
}

#[test]
fn check_access_names_each_problem() {
    let fx = Fixture::new();
    let missing = fx.root.join("missing");
    let file = fx.root.join("file.txt");
    fs::write(&file, b"x").unwrap();
    assert_eq!(check_access(&missing, &fx.res()), Err(AccessProblem::ReqMissing));
    assert_eq!(check_access(&file, &fx.res()), Err(AccessProblem::ReqNotDirectory));
    assert_eq!(check_access(&fx.req(), &missing), Err(AccessProblem::ResMissing));
    assert_eq!(check_access(&fx.req(), &file), Err(AccessProblem::ResNotDirectory));
    assert_eq!(check_access(&fx.req(), &fx.req()), Err(AccessProblem::SameFolder));
    let dotted = fx.req().join(".");
    assert_eq!(check_access(&fx.req(), &dotted), Err(AccessProblem::SameFolder));
    #[cfg(unix)]
    {
        let link = fx.root.join("link-to-req");
        std::os::unix::fs::symlink(fx.req(), &link).unwrap();
        assert_eq!(check_access(&fx.req(), &link), Err(AccessProblem::SameFolder));
    }
    assert!(names(&fx.req()).is_empty());
    assert!(names(&fx.res()).is_empty());
}

/// A folder nobody may write in, even root: /proc/self (the kernel refuses new files there). Root ignores permission
/// bits, so a `chmod 0500` folder proves nothing when the tests run as root (they do here); that case runs below only
/// when the process is really refused.
#[cfg(target_os = "linux")]
#[test]
fn check_access_reports_folders_that_refuse_writes() {
    let fx = Fixture::new();
    let proc_self = Path::new("/proc/self");
    assert!(matches!(check_access(proc_self, &fx.res()), Err(AccessProblem::ReqNotWritable(ref d)) if !d.is_empty()));
    assert!(matches!(check_access(&fx.req(), proc_self), Err(AccessProblem::ResCannotMove(ref d)) if !d.is_empty()));
    assert!(names(&fx.req()).is_empty(), "the req probe is removed before res is tried");
}

#[cfg(unix)]
#[test]
fn check_access_reports_a_read_only_folder_when_permissions_apply() {
    use std::os::unix::fs::PermissionsExt as _;
    let fx = Fixture::new();
    fs::set_permissions(fx.req(), fs::Permissions::from_mode(0o500)).unwrap();
    let privileged = fs::write(fx.req().join("probe"), b"x").is_ok();
    if privileged {
        eprintln!("skipped: this process ignores permission bits (root); /proc/self covers a read-only req instead");
        fs::set_permissions(fx.req(), fs::Permissions::from_mode(0o700)).unwrap();
        return;
    }
    assert!(matches!(check_access(&fx.req(), &fx.res()), Err(AccessProblem::ReqNotWritable(_))));
    fs::set_permissions(fx.req(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(fx.res(), fs::Permissions::from_mode(0o500)).unwrap();
    assert!(matches!(check_access(&fx.req(), &fx.res()), Err(AccessProblem::ResCannotMove(_))));
    fs::set_permissions(fx.res(), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(names(&fx.req()).is_empty());
    assert!(names(&fx.res()).is_empty());
}

#[test]
fn every_access_problem_has_a_message_in_both_languages() {
    let detail = "Permission denied (os error 13)".to_owned();
    let all = [
        AccessProblem::ReqMissing,
        AccessProblem::ReqNotDirectory,
        AccessProblem::ReqNotWritable(detail.clone()),
        AccessProblem::ReqCannotRename(detail.clone()),
        AccessProblem::ResMissing,
        AccessProblem::ResNotDirectory,
        AccessProblem::ResNotReadable(detail.clone()),
        AccessProblem::ResCannotMove(detail.clone()),
        AccessProblem::SameFolder,
    ];
    let mut seen = std::collections::HashSet::new();
    for problem in &all {
        let (ja, en) = (problem.message_ja(), problem.message_en());
        assert!(!ja.is_empty() && !en.is_empty(), "{problem:?}");
        assert!(ja.contains("req") || ja.contains("res"), "{ja}");
        assert!(en.contains("req") || en.contains("res"), "{en}");
        if matches!(problem, AccessProblem::ReqNotWritable(_) | AccessProblem::ResCannotMove(_)) {
            assert!(ja.contains(&detail) && en.contains(&detail), "{problem:?} shows the system's error");
        }
        assert!(seen.insert(ja.clone()), "two problems share a message: {ja}");
        assert_eq!(problem.to_string(), en);
    }
    assert!(AccessProblem::ReqMissing.message_ja().contains("req フォルダ"));
}

#[tokio::test]
async fn the_watcher_wakes_on_a_file_created_in_res() {
    let fx = Fixture::new();
    let watcher = ResWatcher::start(&fx.res()).unwrap();
    let notify = watcher.notified().clone();
    let res = fx.res();
    tokio::task::spawn_blocking(move || fs::write(res.join(RES_NAME), ANSWER).unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("woken within 5 s");
}

#[test]
fn the_watcher_cannot_start_on_a_missing_folder() {
    let fx = Fixture::new();
    assert!(ResWatcher::start(&fx.root.join("missing")).is_err());
}
