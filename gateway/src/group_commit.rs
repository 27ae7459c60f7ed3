//! Group commit for the hot paths: issued-token records and their audit events.
//!
//! Every audit append takes the audit chain's head row, and on SQLite every write takes the
//! database's single write lock; a commit per token would make both a global lock on the token
//! path, and on SQLite every commit also empties the readers' page caches. So token records and
//! hot-path audit events go through one writer task per instance, which writes whatever has
//! queued up meanwhile in one transaction: under load a commit carries many tokens, while a lone
//! request waits for no timer. A full channel makes callers wait (back-pressure) rather than drop
//! anything. Opening a signing session appends its events in its own transaction, and
//! administrative events append on their own.

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEvent, NewIssuedToken, Store};

/// Messages queued before senders wait.
const CAPACITY: usize = 16 * 1024;
/// Most tokens in one transaction.
const MAX_TOKENS: usize = 256;
/// Most other audit events in one transaction.
const MAX_EVENTS: usize = 512;

enum Msg {
    Token(NewIssuedToken, oneshot::Sender<Option<bool>>),
    Event(AuditEvent, i64),
    Flush(oneshot::Sender<()>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("group-commit message")
    }
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Msg>,
}

impl GroupCommit {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Records an issued token and its audit event (see [`Store::record_issued_tokens`]) and
    /// waits for the commit: `Some(true)` once recorded, `Some(false)` if its session closed
    /// meanwhile, `None` if the write failed (the writer logs why).
    pub async fn record_token(&self, token: NewIssuedToken) -> Option<bool> {
        let (done, recorded) = oneshot::channel();
        self.tx.send(Msg::Token(token, done)).await.ok()?;
        recorded.await.ok().flatten()
    }

    /// Queues `event` (stamped `now`) without waiting for the commit.
    pub async fn audit(&self, event: AuditEvent, now: i64) {
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

/// What one transaction writes.
#[derive(Default)]
struct Batch {
    tokens: Vec<NewIssuedToken>,
    token_replies: Vec<oneshot::Sender<Option<bool>>>,
    queued: Vec<(AuditEvent, i64)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, msg: Msg) {
        match msg {
            Msg::Token(t, done) => {
                self.tokens.push(t);
                self.token_replies.push(done);
            }
            Msg::Event(e, at) => self.queued.push((e, at)),
            Msg::Flush(done) => self.flushes.push(done),
        }
    }

    fn full(&self) -> bool {
        self.tokens.len() >= MAX_TOKENS || self.queued.len() >= MAX_EVENTS
    }

    async fn write(&mut self, store: &Store) {
        if !self.tokens.is_empty() {
            // The queued events ride along; if the transaction fails they are retried alone below.
            match store.record_issued_tokens(&self.tokens, &self.queued).await {
                Ok(recorded) => {
                    self.queued.clear();
                    for (done, r) in self.token_replies.drain(..).zip(recorded) {
                        let _ = done.send(Some(r));
                    }
                }
                Err(e) => {
                    // The callers answer with an internal error: no token leaves unrecorded.
                    tracing::error!(error = %e, tokens = self.tokens.len(), "recording issued tokens failed");
                    for done in self.token_replies.drain(..) {
                        let _ = done.send(None);
                    }
                }
            }
            self.tokens.clear();
        }
        if !self.queued.is_empty() {
            write_events(store, &self.queued).await;
            self.queued.clear();
        }
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Batch::default();
    while let Some(first) = rx.recv().await {
        batch.add(first);
        // Let the requests that are ready to run queue their tokens first (one scheduling round,
        // no timer): under load a commit then carries more tokens, and each token dirties fewer
        // pages; a lone request is delayed by microseconds.
        tokio::task::yield_now().await;
        while !batch.full() {
            match rx.try_recv() {
                Ok(msg) => batch.add(msg),
                Err(_) => break,
            }
        }
        batch.write(&store).await;
    }
}

async fn write_events(store: &Store, events: &[(AuditEvent, i64)]) {
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
