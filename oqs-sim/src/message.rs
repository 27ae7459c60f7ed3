//! The answers the terminal writes, as a pure function of the request file's name and bytes and of
//! the time of processing.
//!
//! Every answer starts with `<?xml version="1.0" encoding="UTF-8" standalone="no"?>` and is an
//! `XmlMsg` with a `MessageHeader` and a `MessageBody`. The header echoes the request's
//! `MedicalInstitutionCode` and `ArbitraryFileIdentifier` and adds `ProcessExecutionTime`
//! (`yyyyMMddHHmmss`, in the offset of the time given), `SegmentOfResult`, `ErrorCode`, `ErrorMessage`
//! and `CharacterCodeIdentifier` `0` (UTF-8 in the OQS code table, where `1` is Shift_JIS: the
//! simulator always writes UTF-8). Qualification (`OQS…`) answers also carry
//! `QualificationConfirmationDate` (`yyyyMMdd`) and echo `ReferenceClassification` when the request
//! has one.

use roxmltree::{Document, Node};
use time::OffsetDateTime;

use crate::name::{Family, RequestName};

/// What the terminal does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Write these bytes into the answer folder under the paired name.
    Answer(Vec<u8>),
    /// Consume the request and never answer it.
    NoAnswer,
}

/// `SegmentOfResult` of a processed request.
pub const SEGMENT_SUCCESS: &str = "1";
/// `SegmentOfResult` of a request the terminal could not process: 9, 異常終了 (see the README).
pub const SEGMENT_ERROR: &str = "9";
/// `CharacterCodeIdentifier` of every answer: `0` is UTF-8 (`1` would be Shift_JIS).
pub const CHARACTER_CODE_UTF8: &str = "0";
/// `ErrorCode` of an answer to a request whose format is wrong.
pub const FORMAT_ERROR_CODE: &str = "E1001";
/// How `ErrorMessage` starts in an answer to a request whose format is wrong; the reason follows.
pub const FORMAT_ERROR_MESSAGE: &str = "要求ファイルの形式に誤りがあります。";
/// `ErrorCode` of the error answer asked for by an `ArbitraryFileIdentifier` starting with [`ERROR_PREFIX`].
pub const REQUESTED_ERROR_CODE: &str = "E9001";
/// An `ArbitraryFileIdentifier` starting with this asks for an error answer.
pub const ERROR_PREFIX: &str = "ERROR";
/// An `ArbitraryFileIdentifier` starting with this asks for no answer at all.
pub const NO_ANSWER_PREFIX: &str = "NOANSWER";
/// An `ArbitraryFileIdentifier` starting with this asks for an e-prescription answer with one check result.
pub const CHECK_PREFIX: &str = "CHECK";

/// The answer of the terminal to the request file `request_name` holding `request`, processed at `at`.
///
/// - `request_name` not a request name (see [`crate::answer_name`]): [`Outcome::NoAnswer`], the terminal
///   does not look at such files.
/// - `ArbitraryFileIdentifier` starting with [`NO_ANSWER_PREFIX`]: [`Outcome::NoAnswer`].
/// - Request not UTF-8, not well-formed XML, root not `XmlMsg`, no `MessageHeader`, or a
///   `MedicalInstitutionCode` missing or not 10 digits: an error answer ([`SEGMENT_ERROR`],
///   [`FORMAT_ERROR_CODE`], a message starting with [`FORMAT_ERROR_MESSAGE`]).
/// - `ArbitraryFileIdentifier` starting with [`ERROR_PREFIX`]: an error answer ([`SEGMENT_ERROR`],
///   [`REQUESTED_ERROR_CODE`], a Japanese message).
/// - Otherwise a success answer ([`SEGMENT_SUCCESS`], empty `ErrorCode` and `ErrorMessage`): for `EPS…`
///   requests `ProcessingResultStatus` 1, empty `ProcessingResultCode` and `ProcessingResultMessage`, a
///   `PrescriptionId` (a UUID derived from the request name, institution and identifier, so the same
///   request always gets the same one), a 16-digit `AccessCode` derived likewise, and a `CheckResultList`
///   that is empty, or holds one duplicate-medication result when the identifier starts with
///   [`CHECK_PREFIX`]; for `OQS…` requests a valid qualification (`QualificationValidity` 1) with one
///   synthetic `ResultOfQualificationConfirmation`, echoing the insurance fields of the request's
///   `QualificationConfirmSearchInfo` when it has them.
pub fn answer(request_name: &str, request: &[u8], at: OffsetDateTime) -> Outcome {
    let Some(name) = RequestName::parse(request_name) else {
        return Outcome::NoAnswer;
    };
    let (fields, malformed) = match read(request) {
        Ok(fields) => (fields, None),
        Err(Malformed { fields, reason }) => (fields, Some(reason)),
    };
    let identifier = fields.identifier.as_deref().unwrap_or("");
    if identifier.starts_with(NO_ANSWER_PREFIX) {
        return Outcome::NoAnswer;
    }
    let mut xml = Xml::new();
    xml.open("XmlMsg");
    if let Some(reason) = malformed {
        let message = format!("{FORMAT_ERROR_MESSAGE}（{reason}）");
        header(&mut xml, name.family, &fields, at, Some((FORMAT_ERROR_CODE, &message)));
        xml.empty("MessageBody");
    } else if identifier.starts_with(ERROR_PREFIX) {
        let message = match name.family {
            Family::Prescription => "電子処方箋管理サービスで処理できませんでした。時間をおいて再度実行してください。",
            Family::Qualification => "オンライン資格確認等システムで処理できませんでした。時間をおいて再度実行してください。",
        };
        header(&mut xml, name.family, &fields, at, Some((REQUESTED_ERROR_CODE, message)));
        xml.empty("MessageBody");
    } else {
        header(&mut xml, name.family, &fields, at, None);
        match name.family {
            Family::Prescription => prescription_body(&mut xml, request_name, &fields),
            Family::Qualification => qualification_body(&mut xml, &fields),
        }
    }
    xml.close("XmlMsg");
    Outcome::Answer(xml.finish())
}

/// What the answer takes from the request.
#[derive(Debug, Default)]
struct Fields {
    institution: Option<String>,
    identifier: Option<String>,
    reference_classification: Option<String>,
    /// Children of `MessageBody/QualificationConfirmSearchInfo` with text, by name.
    search: Vec<(String, String)>,
}

impl Fields {
    fn search(&self, name: &str) -> Option<&str> {
        self.search.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }
}

/// A request the terminal rejects, with what could be read of it and why (in Japanese, for the message).
struct Malformed {
    fields: Fields,
    reason: &'static str,
}

/// Reads the fields of a request, or says why its format is wrong.
fn read(request: &[u8]) -> Result<Fields, Malformed> {
    let mut fields = Fields::default();
    let malformed = |fields, reason| Err(Malformed { fields, reason });
    let Ok(text) = std::str::from_utf8(request) else {
        return malformed(fields, "UTF-8 ではありません");
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // roxmltree refuses DTDs by default, so no entity tricks reach the simulator.
    let Ok(document) = Document::parse(text) else {
        return malformed(fields, "XML として読み取れません");
    };
    let root = document.root_element();
    if root.tag_name().name() != "XmlMsg" || root.tag_name().namespace().is_some() {
        return malformed(fields, "ルート要素が XmlMsg ではありません");
    }
    let Some(header) = child(root, "MessageHeader") else {
        return malformed(fields, "MessageHeader がありません");
    };
    fields.institution = child_text(header, "MedicalInstitutionCode");
    fields.identifier = child_text(header, "ArbitraryFileIdentifier");
    fields.reference_classification = child_text(header, "ReferenceClassification");
    if let Some(info) = child(root, "MessageBody").and_then(|body| child(body, "QualificationConfirmSearchInfo")) {
        fields.search = info
            .children()
            .filter(Node::is_element)
            .map(|n| (n.tag_name().name().to_owned(), n.text().unwrap_or("").trim().to_owned()))
            .collect();
    }
    match fields.institution.as_deref() {
        Some(code) if code.len() == 10 && code.bytes().all(|b| b.is_ascii_digit()) => Ok(fields),
        Some(_) => malformed(fields, "医療機関コードが10桁の数字ではありません"),
        None => malformed(fields, "医療機関コードがありません"),
    }
}

/// The first child element of `node` named `name` (no namespace).
fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name && n.tag_name().namespace().is_none())
}

/// The trimmed text of the child element `name` of `node`, empty if it has none, `None` if there is no such child.
fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(|n| n.text().unwrap_or("").trim().to_owned())
}

/// Writes the `MessageHeader`; `error` is the `ErrorCode` and `ErrorMessage` of an error answer.
fn header(xml: &mut Xml, family: Family, fields: &Fields, at: OffsetDateTime, error: Option<(&str, &str)>) {
    xml.open("MessageHeader");
    xml.leaf("ProcessExecutionTime", &date_time(at));
    if family == Family::Qualification {
        xml.leaf("QualificationConfirmationDate", &date(at));
    }
    xml.leaf("MedicalInstitutionCode", fields.institution.as_deref().unwrap_or(""));
    xml.leaf("ArbitraryFileIdentifier", fields.identifier.as_deref().unwrap_or(""));
    if family == Family::Qualification
        && let Some(classification) = &fields.reference_classification
    {
        xml.leaf("ReferenceClassification", classification);
    }
    let (segment, code, message) = match error {
        Some((code, message)) => (SEGMENT_ERROR, code, message),
        None => (SEGMENT_SUCCESS, "", ""),
    };
    xml.leaf("SegmentOfResult", segment);
    xml.leaf("ErrorCode", code);
    xml.leaf("ErrorMessage", message);
    xml.leaf("CharacterCodeIdentifier", CHARACTER_CODE_UTF8);
    xml.close("MessageHeader");
}

/// The body of a successful e-prescription answer (registration style).
fn prescription_body(xml: &mut Xml, request_name: &str, fields: &Fields) {
    let seed = format!(
        "{request_name}\n{}\n{}",
        fields.institution.as_deref().unwrap_or(""),
        fields.identifier.as_deref().unwrap_or("")
    );
    xml.open("MessageBody");
    xml.leaf("ProcessingResultStatus", "1");
    xml.leaf("ProcessingResultCode", "");
    xml.leaf("ProcessingResultMessage", "");
    xml.leaf("PrescriptionId", &prescription_id(&seed));
    xml.leaf("AccessCode", &access_code(&seed));
    if fields.identifier.as_deref().unwrap_or("").starts_with(CHECK_PREFIX) {
        xml.open("CheckResultList");
        xml.open("CheckResult");
        xml.leaf("CheckCategory", "1");
        xml.leaf("CheckResultCode", "W0101");
        xml.leaf("CheckResultMessage", "他の医療機関で処方された薬剤と重複している可能性があります。");
        xml.leaf("DrugName", "シミュレーション錠１０ｍｇ");
        xml.close("CheckResult");
        xml.close("CheckResultList");
    } else {
        xml.empty("CheckResultList");
    }
    xml.close("MessageBody");
}

/// The body of a successful qualification answer: one valid, synthetic insurance qualification.
fn qualification_body(xml: &mut Xml, fields: &Fields) {
    let echo = |name, default| fields.search(name).unwrap_or(default).to_owned();
    xml.open("MessageBody");
    xml.leaf("ProcessingResultStatus", "1");
    xml.leaf("ProcessingResultCode", "");
    xml.leaf("ProcessingResultMessage", "");
    xml.leaf("QualificationValidity", "1");
    xml.open("ResultList");
    xml.open("ResultOfQualificationConfirmation");
    xml.leaf("InsuredCardClassification", "01");
    xml.leaf("InsurerNumber", &echo("InsurerNumber", "06139999"));
    xml.leaf("InsuredCardSymbol", &echo("InsuredCardSymbol", "シミュ"));
    xml.leaf("InsuredIdentificationNumber", &echo("InsuredIdentificationNumber", "1234"));
    xml.leaf("InsuredBranchNumber", &echo("InsuredBranchNumber", "00"));
    xml.leaf("PersonalFamilyClassification", "1");
    xml.leaf("Name", "試験　太郎");
    xml.leaf("NameKana", "ｼｹﾝ ﾀﾛｳ");
    xml.leaf("Sex1", "1");
    xml.leaf("Birthdate", &echo("Birthdate", "19800401"));
    xml.leaf("InsurerName", "シミュレーション健康保険組合");
    xml.leaf("QualificationDate", "20200401");
    xml.leaf("InsuredCardValidDate", "20200401");
    xml.leaf("InsuredPartialContributionRatio", "030");
    xml.close("ResultOfQualificationConfirmation");
    xml.close("ResultList");
    xml.close("MessageBody");
}

/// `yyyyMMddHHmmss` in the offset of `at`.
fn date_time(at: OffsetDateTime) -> String {
    format!("{}{:02}{:02}{:02}", date(at), at.hour(), at.minute(), at.second())
}

/// `yyyyMMdd` in the offset of `at`.
fn date(at: OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}", at.year(), u8::from(at.month()), at.day())
}

/// A UUID-shaped (version 4 layout, lower-case, 36 characters) identifier derived from `seed`.
fn prescription_id(seed: &str) -> String {
    let high = hash(0x6f71_732d_7369_6d31, seed.as_bytes());
    let low = hash(0x6f71_732d_7369_6d32, seed.as_bytes());
    let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// A 16-digit access code derived from `seed`.
fn access_code(seed: &str) -> String {
    format!("{:016}", hash(0x6f71_732d_7369_6d33, seed.as_bytes()) % 10_000_000_000_000_000)
}

/// FNV-1a over `bytes` from `seed`, then the SplitMix64 finaliser to spread the bits.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A small writer of indented XML with escaped text.
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn new() -> Self {
        Self { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"), depth: 0 }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn empty(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str("/>\n");
    }

    /// An element holding `text` (escaped); an empty element when `text` is empty.
    fn leaf(&mut self, name: &str, text: &str) {
        if text.is_empty() {
            self.empty(name);
            return;
        }
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        for c in text.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                '\r' => self.out.push_str("&#13;"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}
