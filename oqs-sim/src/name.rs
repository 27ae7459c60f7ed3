//! Request and answer file names.
//!
//! The terminal pairs files by interface prefix and identifier: `EPSsiDMP01req_<id>.xml` is answered by
//! `EPSsiDMP01res_<id>.xml`. Only names of the form `^(EPS|OQS)[A-Za-z0-9]+req_[A-Za-z0-9][A-Za-z0-9_-]*\.xml$`
//! are requests; anything else in the request folder (a writer's temporary file, a stray note) is
//! ignored and left where it is.

/// The two families of interfaces the terminal serves, told apart by the first three letters of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `EPS…`: the e-prescription management service (電子処方箋管理サービス).
    Prescription,
    /// `OQS…`: online qualification confirmation (オンライン資格確認).
    Qualification,
}

/// A request file name split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestName<'a> {
    /// The family of the interface.
    pub family: Family,
    /// The interface prefix including the family, without `req_` (e.g. `EPSsiDMP01`).
    pub interface: &'a str,
    /// The identifier after `req_`, without `.xml`.
    pub id: &'a str,
}

impl<'a> RequestName<'a> {
    /// Splits `name` if it is a request name, `None` otherwise.
    pub fn parse(name: &'a str) -> Option<Self> {
        let stem = name.strip_suffix(".xml")?;
        // The interface part is alphanumeric, so the first `_` is the one that ends `req_`.
        let (head, id) = stem.split_once('_')?;
        let interface = head.strip_suffix("req")?;
        let (family, rest) = if let Some(rest) = interface.strip_prefix("EPS") {
            (Family::Prescription, rest)
        } else if let Some(rest) = interface.strip_prefix("OQS") {
            (Family::Qualification, rest)
        } else {
            return None;
        };
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut id_bytes = id.bytes();
        let first = id_bytes.next()?;
        if !first.is_ascii_alphanumeric() || !id_bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return None;
        }
        Some(Self { family, interface, id })
    }
}

/// Whether `name` is the name of a request file the terminal picks up.
pub fn is_request_name(name: &str) -> bool {
    RequestName::parse(name).is_some()
}

/// The family of the interface a request name belongs to, `None` if `name` is not a request name.
pub fn family(name: &str) -> Option<Family> {
    RequestName::parse(name).map(|n| n.family)
}

/// The name of the answer to the request file `request_name` (`…req_<id>.xml` → `…res_<id>.xml`), or
/// `None` if `request_name` is not a request name.
pub fn answer_name(request_name: &str) -> Option<String> {
    let name = RequestName::parse(request_name)?;
    Some(format!("{}res_{}.xml", name.interface, name.id))
}
