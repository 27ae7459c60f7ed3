//! Batched audit appends for hot paths (token issue and consume).
//!
//! Every append takes the audit chain's head row, which serialises appends across instances. At
//! thousands of tokens per second that would be a global lock on the hot path, so those events go
//! through this sink: a channel to one writer task per instance, which appends whatever has
//! queued up in one transaction. A full channel makes callers wait (back-pressure) rather than
//! drop events. Login and administrative events keep appending synchronously.

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEvent, Store};

/// Events queued before senders wait.
const CAPACITY: usize = 16 * 1024;
/// Most events in one transaction.
const MAX_BATCH: usize = 512;

enum Msg {
    Event(AuditEvent, i64),
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditSink {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Queues `event` (stamped `now`).
    pub async fn record(&self, event: AuditEvent, now: i64) {
        if self.tx.send(Msg::Event(event, now)).await.is_err() {
            tracing::error!("audit writer has stopped; event lost");
        }
    }

    /// Waits until everything queued before this call is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Msg>) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e, at) => events.push((e, at)),
                Msg::Flush(done) => flushes.push(done),
            }
            if events.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !events.is_empty() {
            write(&store, &events).await;
            events.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write(store: &Store, events: &[(AuditEvent, i64)]) {
    // One retry covers a transient failure (a failover, a busy SQLite file); after that the
    // events are reported as lost, loudly.
    for attempt in 0..2 {
        match store.audit_batch(events).await {
            Ok(()) => return,
            Err(e) if attempt == 0 => {
                tracing::warn!(error = %e, "audit batch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => tracing::error!(error = %e, lost = events.len(), "audit batch failed; events lost"),
        }
    }
}
