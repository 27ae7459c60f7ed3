//! Group commit for the hot paths: issued and consumed tokens and their audit events.
//!
//! Every audit append takes the audit chain's head row, and on SQLite every write takes the
//! database's single write lock; a commit per token would make both a global lock on the token
//! path, and on SQLite every commit also empties the readers' page caches. So token records and
//! hot-path audit events go through one writer task per instance, which writes whatever has
//! queued up meanwhile in one transaction: under load a commit carries many tokens, while a lone
//! request waits for no timer. A full channel makes callers wait (back-pressure) rather than drop
//! anything, and every caller waits for the commit that holds its rows: an answer is given only
//! once what it reports is durable and audited. Opening a signing session appends its events in
//! its own transaction, and administrative events append on their own.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::metrics::GroupCommitMetrics;
use crate::store::{AuditEvent, ConsumedToken, NewConsume, NewIssuedToken, Store};

/// Messages queued before senders wait.
const CAPACITY: usize = 16 * 1024;
/// Most tokens (issued or consumed) in one transaction.
const MAX_TOKENS: usize = 256;
/// Most other audit events in one transaction.
const MAX_EVENTS: usize = 512;

/// The database did not commit: the caller answers 503 and claims nothing done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCommitted;

impl std::fmt::Display for NotCommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database did not commit")
    }
}

impl std::error::Error for NotCommitted {}

type Reply<T> = oneshot::Sender<Result<T, NotCommitted>>;

enum Msg {
    Token(NewIssuedToken, Reply<bool>),
    Consume(NewConsume, Reply<Option<ConsumedToken>>),
    Event(AuditEvent, i64, Reply<()>),
    Flush(oneshot::Sender<()>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("group-commit message")
    }
}

/// A message and when it was queued (for the wait the metrics report).
type Queued = (Msg, Instant);

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Queued>,
}

impl GroupCommit {
    /// Starts the writer task on `store`, recording each transaction into `metrics`.
    pub fn start(store: Store, metrics: GroupCommitMetrics) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(run(store, metrics, rx));
        Self { tx }
    }

    async fn send<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T, NotCommitted> {
        let (done, reply) = oneshot::channel();
        self.tx.send((msg(done), Instant::now())).await.map_err(|_| NotCommitted)?;
        reply.await.unwrap_or(Err(NotCommitted))
    }

    /// Records an issued token and its audit event (see [`Store::commit_batch`]) and waits for
    /// the commit: `true` once recorded, `false` if its session closed meanwhile.
    pub async fn record_token(&self, token: NewIssuedToken) -> Result<bool, NotCommitted> {
        self.send(|done| Msg::Token(token, done)).await
    }

    /// Consumes a token with its `token_consumed` event in one transaction and waits for the
    /// commit: the consumed token, or `None` when refused (the caller asks why, and audits it).
    pub async fn consume(&self, consume: NewConsume) -> Result<Option<ConsumedToken>, NotCommitted> {
        self.send(|done| Msg::Consume(consume, done)).await
    }

    /// Appends `event` (stamped `now`) and waits for the commit: nothing is answered before its
    /// audit row is in the database.
    pub async fn audit(&self, event: AuditEvent, now: i64) -> Result<(), NotCommitted> {
        self.send(|done| Msg::Event(event, now, done)).await
    }

    /// Waits until everything queued before this call has been written or refused.
    pub async fn flush(&self) {
        let (done, reply) = oneshot::channel();
        if self.tx.send((Msg::Flush(done), Instant::now())).await.is_ok() {
            let _ = reply.await;
        }
    }
}

/// What one transaction writes.
#[derive(Default)]
struct Batch {
    tokens: Vec<NewIssuedToken>,
    token_replies: Vec<Reply<bool>>,
    consumes: Vec<NewConsume>,
    consume_replies: Vec<Reply<Option<ConsumedToken>>>,
    events: Vec<(AuditEvent, i64)>,
    event_replies: Vec<Reply<()>>,
    flushes: Vec<oneshot::Sender<()>>,
    /// When the oldest message of the batch was queued.
    oldest: Option<Instant>,
}

impl Batch {
    fn add(&mut self, (msg, queued): Queued) {
        if !matches!(msg, Msg::Flush(_)) {
            self.oldest = Some(self.oldest.map_or(queued, |o| o.min(queued)));
        }
        match msg {
            Msg::Token(t, done) => {
                self.tokens.push(t);
                self.token_replies.push(done);
            }
            Msg::Consume(c, done) => {
                self.consumes.push(c);
                self.consume_replies.push(done);
            }
            Msg::Event(e, at, done) => {
                self.events.push((e, at));
                self.event_replies.push(done);
            }
            Msg::Flush(done) => self.flushes.push(done),
        }
    }

    fn full(&self) -> bool {
        self.tokens.len() + self.consumes.len() >= MAX_TOKENS || self.events.len() >= MAX_EVENTS
    }

    /// Writes everything in one transaction, retried once after a short pause (a failover, a
    /// busy SQLite file). Nothing is dropped: if the retry fails too, every waiting request is
    /// told so and answers 503 without claiming anything done.
    async fn write(&mut self, store: &Store, metrics: &GroupCommitMetrics) {
        if self.tokens.is_empty() && self.consumes.is_empty() && self.events.is_empty() {
            for done in self.flushes.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        let start = Instant::now();
        let mut result = store.commit_batch(&self.tokens, &self.consumes, &self.events).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "group commit failed; retrying once");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            result = store.commit_batch(&self.tokens, &self.consumes, &self.events).await;
        }
        let messages = self.tokens.len() + self.consumes.len() + self.events.len();
        let oldest_wait = self.oldest.take().map_or(Duration::ZERO, |o| o.elapsed());
        metrics.transaction(messages, start.elapsed(), oldest_wait);
        match result {
            Ok((recorded, consumed)) => {
                for (done, r) in self.token_replies.drain(..).zip(recorded) {
                    let _ = done.send(Ok(r));
                }
                for (done, c) in self.consume_replies.drain(..).zip(consumed) {
                    let _ = done.send(Ok(c));
                }
                for done in self.event_replies.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    tokens = self.tokens.len(),
                    consumes = self.consumes.len(),
                    events = self.events.len(),
                    "group commit failed; the requests waiting on it are refused with 503"
                );
                for done in self.token_replies.drain(..) {
                    let _ = done.send(Err(NotCommitted));
                }
                for done in self.consume_replies.drain(..) {
                    let _ = done.send(Err(NotCommitted));
                }
                for done in self.event_replies.drain(..) {
                    let _ = done.send(Err(NotCommitted));
                }
            }
        }
        self.tokens.clear();
        self.consumes.clear();
        self.events.clear();
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn run(store: Store, metrics: GroupCommitMetrics, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Batch::default();
    while let Some(first) = rx.recv().await {
        batch.add(first);
        // Let the requests that are ready to run queue their work first (one scheduling round,
        // no timer): under load a commit then carries more tokens, and each token dirties fewer
        // pages; a lone request is delayed by microseconds.
        tokio::task::yield_now().await;
        while !batch.full() {
            match rx.try_recv() {
                Ok(msg) => batch.add(msg),
                Err(_) => break,
            }
        }
        batch.write(&store, &metrics).await;
    }
}
