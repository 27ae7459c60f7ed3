//! Failed TLS handshakes, audited in aggregate (docs/design.md §3.9).
//!
//! A handshake failure comes before any authentication, so one audit row per failure would let
//! anyone turn a flood of bad handshakes into a flood of database writes. Failures are counted in
//! memory per (reason, source address) instead, and written once per window as one row per pair
//! with its count. Memory is bounded: past [`MAX_SOURCES`] pairs in a window, further sources
//! are counted under the source `other`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::AuditEvent;

/// Distinct (reason, source) pairs kept per window before new sources fold into `other`.
pub const MAX_SOURCES: usize = 1024;

/// The source of pairs past [`MAX_SOURCES`].
const OTHER: &str = "other";

/// Handshake failures counted since the last [`HandshakeFailures::take`].
#[derive(Default)]
pub struct HandshakeFailures {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Start of the window (unix seconds); `None` while nothing was counted.
    since: Option<i64>,
    counts: HashMap<(&'static str, String), u64>,
}

impl Window {
    fn add(&mut self, reason: &'static str, source: String, count: u64, since: i64) {
        self.since = Some(self.since.map_or(since, |s| s.min(since)));
        let key = if self.counts.len() < MAX_SOURCES || self.counts.contains_key(&(reason, source.clone())) {
            (reason, source)
        } else {
            (reason, OTHER.to_owned())
        };
        *self.counts.entry(key).or_default() += count;
    }
}

/// What one window held: written as audit events, or given back when that failed.
#[must_use = "a taken window is audited or given back"]
pub struct Taken {
    since: i64,
    until: i64,
    counts: Vec<((&'static str, String), u64)>,
}

impl Taken {
    /// One `tls_handshake_failed` event per (reason, source), in that order.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.counts
            .iter()
            .map(|((reason, source), count)| AuditEvent::HandshakesFailed {
                reason,
                source: source.clone(),
                count: *count,
                since: self.since,
                until: self.until,
            })
            .collect()
    }
}

impl HandshakeFailures {
    /// Counts one failure; never touches the database.
    pub fn record(&self, reason: &'static str, source: IpAddr, now: i64) {
        // A poisoned lock only means another thread panicked mid-count; the counts stay usable.
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.add(reason, source.to_canonical().to_string(), 1, now);
    }

    /// Takes the counts so far (`None` when there were none), starting a new window.
    pub fn take(&self, now: i64) -> Option<Taken> {
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = w.since.take()?;
        let mut counts: Vec<_> = std::mem::take(&mut w.counts).into_iter().collect();
        counts.sort_unstable();
        Some(Taken { since, until: now, counts })
    }

    /// Gives back a window whose audit rows could not be written, so the next window carries
    /// its counts (from its start) instead of losing them.
    pub fn give_back(&self, taken: Taken) {
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((reason, source), count) in taken.counts {
            w.add(reason, source, count, taken.since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(events: &[AuditEvent]) -> Vec<(String, u64)> {
        events
            .iter()
            .map(|e| match e {
                AuditEvent::HandshakesFailed { reason, source, count, .. } => (format!("{reason} {source}"), *count),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    #[test]
    fn failures_are_counted_per_reason_and_source() {
        let f = HandshakeFailures::default();
        assert!(f.take(100).is_none(), "nothing counted, nothing to write");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        f.record("no_certificate", a, 10);
        f.record("no_certificate", a, 11);
        f.record("unknown_ca", a, 12);
        f.record("no_certificate", b, 13);
        let taken = f.take(60).unwrap();
        assert_eq!((taken.since, taken.until), (10, 60));
        assert_eq!(
            counts(&taken.events()),
            [("no_certificate 192.0.2.1".to_owned(), 2), ("no_certificate 192.0.2.2".to_owned(), 1), ("unknown_ca 192.0.2.1".to_owned(), 1)]
        );
        assert!(f.take(120).is_none(), "a take starts a new window");
    }

    #[test]
    fn a_flood_from_many_sources_stays_bounded() {
        let f = HandshakeFailures::default();
        for i in 0..(MAX_SOURCES as u32 + 500) {
            f.record("protocol", IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 1);
        }
        let events = f.take(60).unwrap().events();
        assert_eq!(events.len(), MAX_SOURCES + 1);
        let total: u64 = counts(&events).iter().map(|(_, c)| c).sum();
        assert_eq!(total, MAX_SOURCES as u64 + 500, "every failure is still counted");
        assert!(counts(&events).contains(&("protocol other".to_owned(), 500)));
    }

    #[test]
    fn a_window_given_back_is_carried_into_the_next() {
        let f = HandshakeFailures::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        f.record("expired", a, 5);
        let taken = f.take(60).unwrap();
        f.record("expired", a, 70);
        f.give_back(taken);
        let next = f.take(120).unwrap();
        assert_eq!((next.since, next.until), (5, 120));
        assert_eq!(counts(&next.events()), [("expired 192.0.2.1".to_owned(), 2)]);
    }
}
