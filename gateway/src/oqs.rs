//! The OQS relay's rules and signals (docs/design.md §3.13): which file names and contents may
//! travel to a clinic's OQS terminal, and the in-process wake-ups of long-polls.
//!
//! A long-poll waits on its clinic's [`Signals`] (woken by a change made through this instance)
//! and looks at the database every `oqs.sweep_ms` as well, for changes made through another
//! instance: the database is the only truth, a wake-up only saves the wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// Longest interface prefix and identifier of an OQS file name accepted.
const MAX_PREFIX: usize = 32;
const MAX_ID: usize = 64;

/// Why a file cannot travel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    /// The name is not `<EPS|OQS><interface>req_<id>.xml` (or the `res` form for answers).
    #[error("the file name must look like EPSsiDMP01req_<id>.xml or OQS…req_<id>.xml (letters, digits, '-', '_'; no folders)")]
    BadName,
    /// Over `oqs.max_file_bytes`.
    #[error("the file is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Empty, not UTF-8 or not well-formed XML (the parser's reason), or with a DTD.
    #[error("the file is not well-formed XML: {0}")]
    NotXml(String),
    /// Well-formed, but its root is not `XmlMsg`.
    #[error("the file's root element must be XmlMsg, not {0}")]
    NotXmlMsg(String),
}

/// Which way a file travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the EMR into `req`.
    Request,
    /// From `res` back to the EMR.
    Answer,
}

impl Direction {
    fn marker(self) -> &'static str {
        match self {
            Self::Request => "req_",
            Self::Answer => "res_",
        }
    }
}

/// Checks an OQS file name: `EPS` or `OQS`, the rest of the interface name (letters and digits),
/// `req_` (or `res_`), an identifier (letters, digits, `-`, `_`), `.xml`. Nothing else can pass, so
/// no name can reach outside the folder or collide with the agent's temporary names.
pub fn check_name(name: &str, direction: Direction) -> Result<(), FileRefusal> {
    split_name(name, direction).map(|_| ()).ok_or(FileRefusal::BadName)
}

/// `(interface, identifier)` of a well-formed name.
fn split_name(name: &str, direction: Direction) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".xml")?;
    let (prefix, id) = stem.split_once(direction.marker())?;
    let interface_ok = (prefix.starts_with("EPS") || prefix.starts_with("OQS"))
        && (4..=MAX_PREFIX).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric());
    let id_ok = (1..=MAX_ID).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (interface_ok && id_ok).then_some((prefix, id))
}

/// The name the terminal gives the answer to the request `request_name`.
pub fn answer_name(request_name: &str) -> Option<String> {
    let (prefix, id) = split_name(request_name, Direction::Request)?;
    Some(format!("{prefix}res_{id}.xml"))
}

/// Checks a file's content: within `max` bytes, UTF-8, well-formed XML without a DTD, rooted at
/// `XmlMsg`. Only the form is checked; the terminal judges the message.
pub fn check_content(content: &[u8], max: usize) -> Result<(), FileRefusal> {
    if content.len() > max {
        return Err(FileRefusal::TooLarge { max });
    }
    let text = std::str::from_utf8(content).map_err(|_| FileRefusal::NotXml("not UTF-8".to_owned()))?;
    // roxmltree refuses DTDs unless allowed: no entity expansion can run here.
    let doc = roxmltree::Document::parse(text).map_err(|e| FileRefusal::NotXml(e.to_string()))?;
    let root = doc.root_element().tag_name().name();
    if root != "XmlMsg" {
        return Err(FileRefusal::NotXmlMsg(root.chars().take(64).collect()));
    }
    Ok(())
}

/// Whether an agent id is acceptable: 8 to 64 letters, digits and `-`.
pub fn valid_agent_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Wake-ups per clinic: `queue` when a request is queued (for the agent's long-poll), `ended`
/// when one ends (for the EMR's); and the instance's shutdown, which ends every long-poll.
#[derive(Debug, Default)]
pub struct Signals {
    clinics: Mutex<HashMap<String, Arc<ClinicSignals>>>,
    closed: AtomicBool,
    closing: Notify,
}

/// One clinic's wake-ups.
#[derive(Debug, Default)]
pub struct ClinicSignals {
    /// A request was queued.
    pub queue: Notify,
    /// A request ended.
    pub ended: Notify,
}

impl Signals {
    /// The clinic's wake-ups (made on first use; one small entry per clinic).
    pub fn clinic(&self, clinic_id: &str) -> Arc<ClinicSignals> {
        let mut map = self.clinics.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(clinic_id.to_owned()).or_default().clone()
    }

    /// Ends every long-poll now and every later one at once: the instance is stopping, and a
    /// held request would keep it from stopping (the client simply asks again, elsewhere).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closing.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves once [`Signals::close`] was called.
    async fn closed(&self) {
        loop {
            let closing = self.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.is_closed() {
                return;
            }
            closing.await;
        }
    }
}

/// Repeats `check` until it yields a value or `wait` has passed: after each miss it sleeps until
/// `notify` fires or `poll` passes, whichever is first. The wake-up is armed before each check,
/// so a change between the check and the sleep is not missed. It stops waiting (`None`) when the
/// instance closes its `signals`.
pub async fn long_poll<T, E, F, Fut>(signals: &Signals, notify: &Notify, wait: Duration, poll: Duration, mut check: F) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = check().await? {
            return Ok(Some(found));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || signals.is_closed() {
            return Ok(None);
        }
        let nap = poll.min(deadline - now);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(nap) => {}
            () = signals.closed() => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_oqs_pattern() {
        for good in ["EPSsiDMP01req_0123456789ab.xml", "OQSmuimm01req_x.xml", "EPSsiREG01req_a-b_c.xml"] {
            assert_eq!(check_name(good, Direction::Request), Ok(()), "{good}");
        }
        for bad in [
            "",
            "EPSsiDMP01res_1.xml",
            "../EPSsiDMP01req_1.xml",
            "EPSsiDMP01req_1.xml/x",
            "dir/EPSsiDMP01req_1.xml",
            "dir\\EPSsiDMP01req_1.xml",
            "EPSsiDMP01req_.xml",
            "EPSsiDMP01req_-1.xml",
            "EPSsiDMP01req_1.XML",
            "EPSsiDMP01req_1.xml.tmp",
            ".ninsho-1.tmp",
            "XYZsiDMP01req_1.xml",
            "EPSreq_1.xml",
            "EPSsi DMP01req_1.xml",
            "EPSsiDMP01req_1 2.xml",
            "EPSsiDMP01req_1/../2.xml",
            "EPSsiDMP01req_１.xml",
        ] {
            assert_eq!(check_name(bad, Direction::Request), Err(FileRefusal::BadName), "{bad:?}");
        }
        assert_eq!(check_name(&format!("EPS{}req_1.xml", "a".repeat(40)), Direction::Request), Err(FileRefusal::BadName));
        assert_eq!(check_name(&format!("EPSa1req_{}.xml", "1".repeat(65)), Direction::Request), Err(FileRefusal::BadName));
        assert_eq!(check_name("EPSsiDMP01res_1.xml", Direction::Answer), Ok(()));
    }

    #[test]
    fn answers_pair_with_requests() {
        assert_eq!(answer_name("EPSsiDMP01req_0123456789ab.xml").as_deref(), Some("EPSsiDMP01res_0123456789ab.xml"));
        assert_eq!(answer_name("OQSmuimm01req_req_1.xml").as_deref(), Some("OQSmuimm01res_req_1.xml"));
        assert_eq!(answer_name("EPSsiDMP01res_1.xml"), None);
    }

    #[test]
    fn content_must_be_a_well_formed_xml_message() {
        let ok = br#"<?xml version="1.0" encoding="UTF-8" standalone="no"?><XmlMsg><MessageHeader/><MessageBody/></XmlMsg>"#;
        assert_eq!(check_content(ok, 1024), Ok(()));
        assert_eq!(check_content(ok, 10), Err(FileRefusal::TooLarge { max: 10 }));
        assert!(matches!(check_content(b"", 1024), Err(FileRefusal::NotXml(_))));
        assert!(matches!(check_content(b"<XmlMsg>", 1024), Err(FileRefusal::NotXml(_))));
        assert!(matches!(check_content(b"\xff\xfe<XmlMsg/>", 1024), Err(FileRefusal::NotXml(_))));
        assert!(matches!(check_content(b"not xml at all", 1024), Err(FileRefusal::NotXml(_))));
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE XmlMsg [<!ENTITY a "aaaa">]><XmlMsg>&a;</XmlMsg>"#;
        assert!(matches!(check_content(dtd, 1024), Err(FileRefusal::NotXml(_))));
        assert_eq!(check_content(b"<Other/>", 1024), Err(FileRefusal::NotXmlMsg("Other".to_owned())));
    }

    #[test]
    fn agent_ids_are_short_and_plain() {
        assert!(valid_agent_id("0f8e2a8c-6a4c-4bd5-9a3c-5e1f0f3b1c2d"));
        assert!(!valid_agent_id("short"));
        assert!(!valid_agent_id("has space in it"));
        assert!(!valid_agent_id(&"a".repeat(65)));
    }

    #[tokio::test]
    async fn a_long_poll_wakes_on_the_signal_and_gives_up_at_its_deadline() {
        let notify = Arc::new(Notify::new());
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (n, f) = (notify.clone(), flag.clone());
        let setter = tokio::spawn(async move {
            tokio::task::yield_now().await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
            n.notify_waiters();
        });
        let signals = Signals::default();
        let found: Result<Option<()>, ()> = long_poll(&signals, &notify, Duration::from_secs(30), Duration::from_secs(30), || {
            let flag = flag.clone();
            async move { Ok(flag.load(std::sync::atomic::Ordering::SeqCst).then_some(())) }
        })
        .await;
        setter.await.unwrap();
        assert_eq!(found, Ok(Some(())));
        let none: Result<Option<()>, ()> =
            long_poll(&signals, &notify, Duration::ZERO, Duration::from_secs(1), || async { Ok(None) }).await;
        assert_eq!(none, Ok(None));
    }

    #[tokio::test]
    async fn closing_the_signals_ends_every_long_poll() {
        let signals = Arc::new(Signals::default());
        let clinic = signals.clinic("c1");
        let waiting = {
            let (signals, clinic) = (signals.clone(), clinic.clone());
            tokio::spawn(async move {
                long_poll(&signals, &clinic.queue, Duration::from_secs(3600), Duration::from_secs(3600), || async { Ok::<Option<()>, ()>(None) }).await
            })
        };
        tokio::task::yield_now().await;
        signals.close();
        assert_eq!(waiting.await.unwrap(), Ok(None));
        // Later ones end at once.
        let later = long_poll(&signals, &clinic.queue, Duration::from_secs(3600), Duration::from_secs(3600), || async { Ok::<Option<()>, ()>(None) });
        assert_eq!(later.await, Ok(None));
    }
}
