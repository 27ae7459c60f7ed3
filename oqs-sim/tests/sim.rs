#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The simulator's contract: the pure answer functions for every scenario, then the `oqs-sim` binary
//! on temporary folders.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oqs_sim::{
    CHARACTER_CODE_UTF8, FORMAT_ERROR_CODE, FORMAT_ERROR_MESSAGE, Family, Outcome, REQUESTED_ERROR_CODE, SEGMENT_ERROR,
    SEGMENT_SUCCESS, answer, answer_name, family, is_request_name,
};
use time::macros::datetime;

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>";
const EPS: &str = "EPSsiDMP01req_20260401A001.xml";
const OQS: &str = "OQSsiquc01req_20260401B001.xml";

/// A request as a clinic system writes it.
fn request(institution: &str, identifier: &str) -> Vec<u8> {
    format!(
        "{DECLARATION}\n<XmlMsg>\n  <MessageHeader>\n    <MedicalInstitutionCode>{institution}</MedicalInstitutionCode>\n    \
         <ArbitraryFileIdentifier>{identifier}</ArbitraryFileIdentifier>\n  </MessageHeader>\n  <MessageBody>\n    \
         <PrescriptionInfo>PERvY3VtZW50Lz4=</PrescriptionInfo>\n    <IssueType>1</IssueType>\n  </MessageBody>\n</XmlMsg>\n"
    )
    .into_bytes()
}

/// The answer's bytes; panics on [`Outcome::NoAnswer`].
fn answered(outcome: Outcome) -> String {
    match outcome {
        Outcome::Answer(bytes) => String::from_utf8(bytes).expect("answers are UTF-8"),
        Outcome::NoAnswer => panic!("expected an answer"),
    }
}

/// The text of the element at `path` (child names from the root `XmlMsg`), `""` for an empty one.
fn field(doc: &roxmltree::Document<'_>, path: &[&str]) -> Option<String> {
    let mut node = doc.root_element();
    assert_eq!(node.tag_name().name(), "XmlMsg");
    for name in path {
        node = node.children().find(|n| n.is_element() && n.tag_name().name() == *name)?;
    }
    Some(node.text().unwrap_or("").to_owned())
}

fn header(doc: &roxmltree::Document<'_>, name: &str) -> String {
    field(doc, &["MessageHeader", name]).unwrap_or_else(|| panic!("no MessageHeader/{name}"))
}

fn body(doc: &roxmltree::Document<'_>, name: &str) -> String {
    field(doc, &["MessageBody", name]).unwrap_or_else(|| panic!("no MessageBody/{name}"))
}

#[test]
fn answer_names_pair_with_request_names() {
    assert_eq!(answer_name(EPS).as_deref(), Some("EPSsiDMP01res_20260401A001.xml"));
    assert_eq!(answer_name(OQS).as_deref(), Some("OQSsiquc01res_20260401B001.xml"));
    assert_eq!(answer_name("OQSmuimm01req_x_y-z.xml").as_deref(), Some("OQSmuimm01res_x_y-z.xml"));
    assert_eq!(answer_name("EPSreqreq_1.xml").as_deref(), Some("EPSreqres_1.xml"));
    assert_eq!(family(EPS), Some(Family::Prescription));
    assert_eq!(family(OQS), Some(Family::Qualification));
    for not_a_request in [
        ".ninsho-EPSsiDMP01req_1.xml.tmp",
        ".ninsho-0123.tmp",
        "EPSsiDMP01req_1.xml.tmp",
        "EPSsiDMP01req_1.XML",
        "EPSsiDMP01res_1.xml",
        "EPSreq_1.xml",
        "XYZsiDMP01req_1.xml",
        "epssiDMP01req_1.xml",
        "EPSsi-DMP01req_1.xml",
        "EPSsiDMP01req_.xml",
        "EPSsiDMP01req_-1.xml",
        "EPSsiDMP01req_1 2.xml",
        "EPSsiDMP01req_1.2.xml",
        "EPSsiDMP01req_１.xml",
        "EPSsiDMP01req1.xml",
        "notes.txt",
        "",
    ] {
        assert_eq!(answer_name(not_a_request), None, "{not_a_request:?}");
        assert!(!is_request_name(not_a_request), "{not_a_request:?}");
    }
}

#[test]
fn a_prescription_request_is_answered_with_an_id_and_an_access_code() {
    let at = datetime!(2026-04-01 09:30:15 +9);
    let text = answered(answer(EPS, &request("1312345678", "A001"), at));
    assert!(text.starts_with(DECLARATION), "{text}");
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "MedicalInstitutionCode"), "1312345678");
    assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "A001");
    assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_SUCCESS);
    assert_eq!(header(&doc, "ErrorCode"), "");
    assert_eq!(header(&doc, "ErrorMessage"), "");
    assert_eq!(header(&doc, "CharacterCodeIdentifier"), CHARACTER_CODE_UTF8);
    assert_eq!(header(&doc, "ProcessExecutionTime"), "20260401093015");
    assert_eq!(body(&doc, "ProcessingResultStatus"), "1");
    assert_eq!(body(&doc, "ProcessingResultCode"), "");
    assert_eq!(body(&doc, "ProcessingResultMessage"), "");
    let id = body(&doc, "PrescriptionId");
    assert_eq!(id.len(), 36, "{id}");
    for (i, c) in id.chars().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            assert_eq!(c, '-', "{id}");
        } else {
            assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
        }
    }
    let code = body(&doc, "AccessCode");
    assert!(code.len() == 16 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let checks = doc.descendants().find(|n| n.has_tag_name("CheckResultList")).unwrap();
    assert_eq!(checks.children().filter(roxmltree::Node::is_element).count(), 0);

    // The same request gets the same answer (but for the time); another request another prescription.
    let again = answered(answer(EPS, &request("1312345678", "A001"), datetime!(2026-04-01 09:31:00 +9)));
    let again = roxmltree::Document::parse(&again).unwrap();
    assert_eq!(body(&again, "PrescriptionId"), id);
    assert_eq!(body(&again, "AccessCode"), code);
    let other = answered(answer("EPSsiDMP01req_20260401A002.xml", &request("1312345678", "A002"), at));
    let other = roxmltree::Document::parse(&other).unwrap();
    assert_ne!(body(&other, "PrescriptionId"), id);
    assert_ne!(body(&other, "AccessCode"), code);
}

#[test]
fn a_check_identifier_gets_one_check_result() {
    let text = answered(answer(EPS, &request("1312345678", "CHECK-1"), datetime!(2026-04-01 09:30:15 +9)));
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_SUCCESS);
    let checks = doc.descendants().find(|n| n.has_tag_name("CheckResultList")).unwrap();
    let items: Vec<_> = checks.children().filter(roxmltree::Node::is_element).collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].tag_name().name(), "CheckResult");
    let message = items[0].children().find(|n| n.has_tag_name("CheckResultMessage")).unwrap().text().unwrap();
    assert!(!message.is_ascii(), "{message}");
}

#[test]
fn a_qualification_request_is_answered_with_a_qualification() {
    let request = format!(
        "{DECLARATION}<XmlMsg><MessageHeader><MedicalInstitutionCode>0112345678</MedicalInstitutionCode>\
         <ArbitraryFileIdentifier>B001</ArbitraryFileIdentifier><ReferenceClassification>2</ReferenceClassification>\
         </MessageHeader><MessageBody><QualificationConfirmSearchInfo><InsurerNumber>01130012</InsurerNumber>\
         <InsuredCardSymbol>記号</InsuredCardSymbol><InsuredIdentificationNumber>987</InsuredIdentificationNumber>\
         <Birthdate>19700102</Birthdate></QualificationConfirmSearchInfo></MessageBody></XmlMsg>"
    );
    let text = answered(answer(OQS, request.as_bytes(), datetime!(2026-04-01 23:59:59 +9)));
    assert!(text.starts_with(DECLARATION), "{text}");
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "MedicalInstitutionCode"), "0112345678");
    assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "B001");
    assert_eq!(header(&doc, "ReferenceClassification"), "2");
    assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_SUCCESS);
    assert_eq!(header(&doc, "ErrorCode"), "");
    assert_eq!(header(&doc, "CharacterCodeIdentifier"), CHARACTER_CODE_UTF8);
    assert_eq!(header(&doc, "ProcessExecutionTime"), "20260401235959");
    assert_eq!(header(&doc, "QualificationConfirmationDate"), "20260401");
    assert_eq!(body(&doc, "ProcessingResultStatus"), "1");
    assert_eq!(body(&doc, "QualificationValidity"), "1");
    let result = |name| field(&doc, &["MessageBody", "ResultList", "ResultOfQualificationConfirmation", name]).unwrap();
    assert_eq!(result("InsurerNumber"), "01130012");
    assert_eq!(result("InsuredCardSymbol"), "記号");
    assert_eq!(result("InsuredIdentificationNumber"), "987");
    assert_eq!(result("Birthdate"), "19700102");
    assert!(!result("Name").is_empty());
    assert!(field(&doc, &["MessageBody", "PrescriptionId"]).is_none());
}

#[test]
fn an_error_identifier_gets_an_error_answer() {
    for name in [EPS, OQS] {
        let text = answered(answer(name, &request("1312345678", "ERROR-timeout"), datetime!(2026-04-01 09:30:15 +9)));
        assert!(text.starts_with(DECLARATION), "{text}");
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(header(&doc, "MedicalInstitutionCode"), "1312345678");
        assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "ERROR-timeout");
        assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_ERROR);
        assert_eq!(header(&doc, "ErrorCode"), REQUESTED_ERROR_CODE);
        let message = header(&doc, "ErrorMessage");
        assert!(!message.is_empty() && !message.is_ascii(), "{message}");
        assert_eq!(header(&doc, "CharacterCodeIdentifier"), CHARACTER_CODE_UTF8);
        assert!(field(&doc, &["MessageBody", "PrescriptionId"]).is_none());
    }
}

#[test]
fn a_noanswer_identifier_is_never_answered() {
    for name in [EPS, OQS] {
        assert_eq!(answer(name, &request("1312345678", "NOANSWER-1"), datetime!(2026-04-01 09:30:15 +9)), Outcome::NoAnswer);
        // Even with a wrong institution code: the terminal stays silent.
        assert_eq!(answer(name, &request("123", "NOANSWER"), datetime!(2026-04-01 09:30:15 +9)), Outcome::NoAnswer);
    }
}

#[test]
fn a_name_that_is_not_a_request_is_not_answered() {
    let at = datetime!(2026-04-01 09:30:15 +9);
    assert_eq!(answer(".ninsho-1.tmp", &request("1312345678", "A001"), at), Outcome::NoAnswer);
    assert_eq!(answer("EPSsiDMP01res_1.xml", &request("1312345678", "A001"), at), Outcome::NoAnswer);
}

#[test]
fn a_malformed_request_gets_a_format_error() {
    let header_with = |inner: &str| {
        format!("{DECLARATION}<XmlMsg><MessageHeader>{inner}</MessageHeader><MessageBody/></XmlMsg>").into_bytes()
    };
    // Some cases below spoil this request, which is fine as it is.
    let good = request("1312345678", "V");
    let text = answered(answer(EPS, &good, datetime!(2026-04-01 09:30:15 +9)));
    assert_eq!(header(&roxmltree::Document::parse(&text).unwrap(), "SegmentOfResult"), SEGMENT_SUCCESS);
    let dtd = [DECLARATION.as_bytes(), b"<!DOCTYPE XmlMsg [<!ENTITY x \"y\">]>", &good[DECLARATION.len()..]].concat();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("not XML", b"this is not XML".to_vec(), "", "XML として"),
        ("truncated", request("1312345678", "T1")[..120].to_vec(), "", "XML として"),
        ("not UTF-8", b"<XmlMsg>\xff\xfe</XmlMsg>".to_vec(), "", "UTF-8"),
        ("a DTD", dtd, "", "XML として"),
        ("another root", String::from_utf8(good.clone()).unwrap().replace("XmlMsg>", "Msg>").into_bytes(), "", "XmlMsg"),
        ("a namespaced root", b"<XmlMsg xmlns=\"urn:x\"><MessageHeader/></XmlMsg>".to_vec(), "", "XmlMsg"),
        ("no header", b"<XmlMsg><MessageBody/></XmlMsg>".to_vec(), "", "MessageHeader"),
        ("no institution", header_with("<ArbitraryFileIdentifier>M1</ArbitraryFileIdentifier>"), "M1", "医療機関コードがありません"),
        ("9 digits", request("131234567", "M2"), "M2", "10桁"),
        ("11 digits", request("13123456789", "M3"), "M3", "10桁"),
        ("letters", request("13123456A8", "M4"), "M4", "10桁"),
        ("empty institution", request("", "M5"), "M5", "10桁"),
        ("full-width digits", request("１３１２３４５６７８", "M6"), "M6", "10桁"),
    ];
    for (what, request, identifier, reason) in cases {
        let text = answered(answer(EPS, &request, datetime!(2026-04-01 09:30:15 +9)));
        assert!(text.starts_with(DECLARATION), "{what}: {text}");
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_ERROR, "{what}");
        assert_eq!(header(&doc, "ErrorCode"), FORMAT_ERROR_CODE, "{what}");
        let message = header(&doc, "ErrorMessage");
        assert!(message.starts_with(FORMAT_ERROR_MESSAGE) && message.contains(reason), "{what}: {message}");
        assert_eq!(header(&doc, "ArbitraryFileIdentifier"), identifier, "{what}");
        assert_eq!(header(&doc, "CharacterCodeIdentifier"), CHARACTER_CODE_UTF8, "{what}");
    }
}

#[test]
fn echoed_values_are_escaped() {
    let request = request("1312345678", "a&amp;b&lt;c&gt;d\"e");
    let text = answered(answer(EPS, &request, datetime!(2026-04-01 09:30:15 +9)));
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "a&b<c>d\"e");
}

// ---- The binary on temporary folders ----

/// How long a process test waits for something that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

struct Folders {
    _dir: tempfile::TempDir,
    req: PathBuf,
    res: PathBuf,
}

fn folders() -> Folders {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("req");
    let res = dir.path().join("res");
    std::fs::create_dir(&req).unwrap();
    std::fs::create_dir(&res).unwrap();
    Folders { _dir: dir, req, res }
}

/// A running `oqs-sim`, killed when dropped.
struct Sim {
    child: Child,
}

impl Sim {
    /// Starts the binary on `folders` with `extra` flags and waits for its ready line.
    fn start(folders: &Folders, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oqs-sim"))
            .arg("--req")
            .arg(&folders.req)
            .arg("--res")
            .arg(&folders.res)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let sim = Self { child };
        let line = rx.recv_timeout(PATIENCE).expect("no ready line");
        assert_eq!(line, format!("oqs-sim watching {} -> {}\n", folders.req.display(), folders.res.display()));
        sim
    }

    /// Sends SIGTERM and waits for the exit status.
    #[cfg(unix)]
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        wait_until("the simulator to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every few milliseconds until it gives a value; panics after [`PATIENCE`].
fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drops a request into `req` as the clinic agent does: written under a temporary name, then renamed.
fn drop_request(req: &Path, name: &str, bytes: &[u8]) {
    let temp = req.join(format!(".ninsho-{name}.tmp"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, req.join(name)).unwrap();
}

/// Waits for a complete (well-formed) answer at `path` and returns it.
fn complete_answer(path: &Path) -> String {
    wait_until("a complete answer", || {
        let text = std::fs::read_to_string(path).ok()?;
        roxmltree::Document::parse(&text).is_ok().then_some(text)
    })
}

fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn the_binary_answers_a_request_and_consumes_it() {
    let folders = folders();
    let _sim = Sim::start(&folders, &["--delay-ms", "20", "--poll-ms", "10"]);
    drop_request(&folders.req, EPS, &request("1312345678", "R1"));
    let text = complete_answer(&folders.res.join("EPSsiDMP01res_20260401A001.xml"));
    assert!(text.starts_with(DECLARATION), "{text}");
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "R1");
    assert_eq!(header(&doc, "MedicalInstitutionCode"), "1312345678");
    assert_eq!(header(&doc, "SegmentOfResult"), SEGMENT_SUCCESS);
    assert_eq!(names_in(&folders.req), Vec::<String>::new());
    assert_eq!(names_in(&folders.res), ["EPSsiDMP01res_20260401A001.xml"]);
}

#[test]
fn the_binary_leaves_other_files_alone() {
    let folders = folders();
    let others = [".ninsho-EPSsiDMP01req_x.xml.tmp", "EPSsiDMP01req_x.xml.tmp", "EPSsiDMP01res_x.xml", "notes.txt"];
    for other in others {
        std::fs::write(folders.req.join(other), b"<XmlMsg/>").unwrap();
    }
    let _sim = Sim::start(&folders, &["--delay-ms", "0", "--poll-ms", "10"]);
    drop_request(&folders.req, OQS, &request("1312345678", "R2"));
    complete_answer(&folders.res.join("OQSsiquc01res_20260401B001.xml"));
    // The request was consumed in a later look than the one that first saw the other files.
    let mut left = others.map(String::from).to_vec();
    left.sort();
    assert_eq!(names_in(&folders.req), left);
    assert_eq!(names_in(&folders.res), ["OQSsiquc01res_20260401B001.xml"]);
}

#[test]
fn the_binary_consumes_a_noanswer_request_without_answering() {
    let folders = folders();
    let _sim = Sim::start(&folders, &["--delay-ms", "20", "--poll-ms", "10"]);
    drop_request(&folders.req, "EPSsiDMP01req_silent.xml", &request("1312345678", "NOANSWER-1"));
    wait_until("the request to be consumed", || names_in(&folders.req).is_empty().then_some(()));
    // A request picked up later, with the same delay, is answered after the silent one was handled.
    drop_request(&folders.req, "EPSsiDMP01req_loud.xml", &request("1312345678", "R3"));
    complete_answer(&folders.res.join("EPSsiDMP01res_loud.xml"));
    assert_eq!(names_in(&folders.res), ["EPSsiDMP01res_loud.xml"]);
}

#[test]
fn the_binary_drops_every_nth_request() {
    let folders = folders();
    let names = ["EPSsiDMP01req_1.xml", "EPSsiDMP01req_2.xml", "EPSsiDMP01req_3.xml", "EPSsiDMP01req_4.xml"];
    for (i, name) in names.iter().enumerate() {
        drop_request(&folders.req, name, &request("1312345678", &format!("D{i}")));
    }
    // All four are there at the first look, so they are counted in name order: 2 and 4 are dropped.
    let _sim = Sim::start(&folders, &["--delay-ms", "20", "--poll-ms", "10", "--drop-every", "2"]);
    complete_answer(&folders.res.join("EPSsiDMP01res_1.xml"));
    complete_answer(&folders.res.join("EPSsiDMP01res_3.xml"));
    assert_eq!(names_in(&folders.req), Vec::<String>::new());
    assert_eq!(names_in(&folders.res), ["EPSsiDMP01res_1.xml", "EPSsiDMP01res_3.xml"]);
}

/// Polls `path` until a partial answer (a non-empty prefix that is not well-formed) is seen; returns it.
fn partial_answer(path: &Path) -> Vec<u8> {
    wait_until("a partial answer", || {
        let bytes = std::fs::read(path).ok()?;
        let well_formed = std::str::from_utf8(&bytes).is_ok_and(|t| roxmltree::Document::parse(t).is_ok());
        (!bytes.is_empty() && !well_formed).then_some(bytes)
    })
}

#[test]
fn the_binary_writes_an_answer_in_two_parts() {
    let folders = folders();
    let _sim = Sim::start(&folders, &["--delay-ms", "0", "--poll-ms", "10", "--partial-ms", "700"]);
    drop_request(&folders.req, EPS, &request("1312345678", "P1"));
    let path = folders.res.join("EPSsiDMP01res_20260401A001.xml");
    let partial = partial_answer(&path);
    let complete = complete_answer(&path);
    assert!(complete.as_bytes().starts_with(&partial), "the partial answer is not a prefix of the complete one");
    assert!(partial.len() < complete.len());
}

#[cfg(unix)]
#[test]
fn sigterm_finishes_the_answer_being_written() {
    let folders = folders();
    let sim = Sim::start(&folders, &["--delay-ms", "0", "--poll-ms", "10", "--partial-ms", "1500"]);
    drop_request(&folders.req, EPS, &request("1312345678", "S1"));
    let path = folders.res.join("EPSsiDMP01res_20260401A001.xml");
    partial_answer(&path);
    let status = sim.terminate();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(header(&doc, "ArbitraryFileIdentifier"), "S1");
}

#[test]
fn the_binary_refuses_a_missing_folder() {
    let folders = folders();
    let missing = folders.req.join("nowhere");
    for (req, res) in [(&missing, &folders.res), (&folders.req, &missing)] {
        let output = Command::new(env!("CARGO_BIN_EXE_oqs-sim"))
            .arg("--req")
            .arg(req)
            .arg("--res")
            .arg(res)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("does not exist") && stderr.contains(&missing.display().to_string()), "{stderr}");
    }
}
