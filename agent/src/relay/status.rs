//! What the relay is doing, for the agent's status page: the gateway connection and the last
//! relayed requests with their outcome. Kept in memory only (the journal is the durable record).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// How many relayed requests the status page lists.
const RECENT: usize = 20;

/// The gateway connection as the relay last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// The relay has not reached the gateway yet.
    Starting,
    /// The last call succeeded; the gateway named this clinic.
    Connected {
        /// The clinic's name at the gateway.
        clinic_name: String,
    },
    /// The last call failed; the relay retries with backoff.
    Failing {
        /// Why (never secrets: transport errors and gateway refusal codes).
        error: String,
    },
    /// The certificate belongs to another clinic; the relay does not relay.
    WrongClinic {
        /// The clinic the gateway named.
        named: String,
    },
}

/// One relayed request's last step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The request id.
    pub id: String,
    /// The request file's name.
    pub file_name: String,
    /// The last step: `written`, `answered`, `failed: …`, `over: …`.
    pub outcome: String,
    /// When (UTC, RFC 3339).
    pub at: String,
}

#[derive(Debug)]
struct Inner {
    running: bool,
    connection: Connection,
    recent: VecDeque<Relayed>,
}

/// Shared between the relay's tasks and the status page.
#[derive(Debug)]
pub struct RelayStatus {
    inner: Mutex<Inner>,
}

impl Default for RelayStatus {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner { running: false, connection: Connection::Starting, recent: VecDeque::new() }) }
    }
}

impl RelayStatus {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The relay started or stopped.
    pub fn set_running(&self, running: bool) {
        self.with(|i| {
            i.running = running;
            if running {
                i.connection = Connection::Starting;
            }
        });
    }

    /// Whether a relay runs.
    pub fn running(&self) -> bool {
        self.with(|i| i.running)
    }

    /// Records the connection's state.
    pub fn set_connection(&self, connection: Connection) {
        self.with(|i| i.connection = connection);
    }

    /// The connection's state.
    pub fn connection(&self) -> Connection {
        self.with(|i| i.connection.clone())
    }

    /// Records a request's step; the same request's earlier line is replaced.
    pub fn record(&self, id: &str, file_name: &str, outcome: impl Into<String>) {
        let at = stamp();
        let outcome = outcome.into();
        self.with(|i| {
            let previous = i.recent.iter().position(|r| r.id == id).and_then(|p| i.recent.remove(p));
            let file_name = match previous {
                Some(r) if file_name.is_empty() => r.file_name,
                _ => file_name.to_owned(),
            };
            i.recent.push_front(Relayed { id: id.to_owned(), file_name, outcome, at });
            i.recent.truncate(RECENT);
        });
    }

    /// The last relayed requests, newest first.
    pub fn recent(&self) -> Vec<Relayed> {
        self.with(|i| i.recent.iter().cloned().collect())
    }
}

fn stamp() -> String {
    #[allow(clippy::disallowed_methods, reason = "a display stamp on the status page; nothing is judged by it")]
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_one_line_with_its_last_step() {
        let s = RelayStatus::default();
        s.record("a", "EPSsiDMP01req_1.xml", "written");
        s.record("b", "EPSsiDMP01req_2.xml", "written");
        s.record("a", "", "answered");
        let recent = s.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!((recent[0].id.as_str(), recent[0].file_name.as_str(), recent[0].outcome.as_str()), ("a", "EPSsiDMP01req_1.xml", "answered"));
        for n in 0..30 {
            s.record(&n.to_string(), "f", "written");
        }
        assert_eq!(s.recent().len(), RECENT);
    }
}
