//! Limits on a main listener's connections: how many may be open (in all and per client IP),
//! and how long one may stay open without a request.
//!
//! Both are enforced by each service's accept loop and [`crate::serve`]; they are process-local on
//! purpose (a connection lives in one process), unlike the limits of the application, which live
//! in the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a connection was refused (the `reason` label of `ninsho_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` are open.
    GlobalLimit,
    /// `server.max_connections_per_ip` are open from this address.
    PerIpLimit,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::GlobalLimit => "global_limit",
            Refusal::PerIpLimit => "per_ip_limit",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open connections and admits a new one only under both caps. A slot is taken at
/// accept, before the TLS handshake (the expensive part), and given back when the [`Permit`]
/// drops.
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
    all_closed: Notify,
    open: Gauge,
}

impl Admission {
    /// Caps of `max_total` connections, `max_per_ip` from one address; `open` mirrors the count.
    pub fn new(max_total: usize, max_per_ip: usize, open: Gauge) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, counts: Mutex::default(), all_closed: Notify::new(), open })
    }

    /// Takes a slot for a connection from `ip`, or says which cap is reached. Addresses are
    /// counted exactly (an IPv6 client with many addresses is bounded by the global cap).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Refusal::GlobalLimit);
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::PerIpLimit);
        }
        *from_ip += 1;
        counts.total += 1;
        self.open.set(i64::try_from(counts.total).unwrap_or(i64::MAX));
        Ok(Permit { admission: self.clone(), ip })
    }

    /// Resolves once no connection holds a slot (graceful shutdown waits on it).
    pub async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the await is seen.
            notified.as_mut().enable();
            if self.counts.lock().unwrap_or_else(PoisonError::into_inner).total == 0 {
                return;
            }
            notified.await;
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
        counts.total = counts.total.saturating_sub(1);
        self.open.set(i64::try_from(counts.total).unwrap_or(i64::MAX));
        if counts.total == 0 {
            self.all_closed.notify_waiters();
        }
    }
}

/// One admitted connection's slot; dropping it frees the slot.
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

/// When a connection last finished a request, and how many it is serving now. Only requests
/// count: hyper answers HTTP/2 PINGs itself, so a client (or a middlebox) that only pings never
/// touches this and its connection still goes idle.
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    /// A connection that has just been opened.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: AtomicUsize::new(0), last: Mutex::new(Instant::now()) })
    }

    /// Marks a request as started; the returned guard marks it finished when dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let busy = self.in_flight.load(Ordering::SeqCst) > 0;
            let now = Instant::now();
            // While a request runs the connection is not idle; look again a full period later.
            let deadline = if busy { now + limit } else { *self.last.lock().unwrap_or_else(PoisonError::into_inner) + limit };
            if !busy && deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One request in flight on a connection (see [`Activity::request`]).
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_over_the_limit_and_free_on_drop() {
        let admission = Admission::new(3, 2, Gauge::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::PerIpLimit));
        let _b1 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::GlobalLimit));
        drop(a1);
        assert_eq!(admission.open.get(), 2);
        let _a3 = admission.admit(a).unwrap();
    }
}
