//! Reads that many concurrent requests make, answered together (PostgreSQL only; issue 25).
//!
//! On PostgreSQL every statement is a network round trip that costs the gateway and the server
//! far more CPU than the lookup itself (BENCHMARKS.md: ~100 µs of server CPU per statement
//! against ~30 µs of execution). A read that every request of a hot path makes, with the same
//! SQL and different keys, is therefore queued to one task per store, which takes whatever has
//! queued meanwhile and answers it with one statement over `UNNEST`ed key arrays, like the group
//! commit does for writes (docs/design.md §3.7). A lone request waits for no timer: the task runs
//! its batch as soon as it wakes. The answer of each request is what its own read would have
//! returned at that moment; nothing is kept after the batch.
//!
//! If the database is unavailable (no connection within the acquire timeout, a lost connection),
//! every request of the batch gets that as its error at once, as its own read would have; any
//! other failure of the batch statement makes each request read on its own, so it meets its own
//! error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::Error;
use crate::metrics::StoreMetrics;

/// Requests queued before senders wait.
const CAPACITY: usize = 4 * 1024;
/// Most keys in one statement.
const MAX_KEYS: usize = 256;

/// What a batch statement returns: per key, in the keys' order, its row if there is one.
pub(super) type BatchFuture<V> = Pin<Box<dyn Future<Output = Result<Vec<Option<V>>, Error>> + Send>>;

/// Answers a batch of keys on a pool, taking its connection with [`acquire`].
pub(super) type BatchQuery<K, V> = Arc<dyn Fn(PgPool, StoreMetrics, Vec<K>) -> BatchFuture<V> + Send + Sync>;

/// What a request gets from its batch.
pub(super) enum Answer<V> {
    /// The row of its key, if there is one.
    Row(Option<V>),
    /// The database is unavailable (what its own read would have met: the caller answers 503).
    Unavailable(String),
    /// The batch could not answer otherwise: the request reads on its own.
    ReadAlone,
}

type Request<K, V> = (K, StoreMetrics, oneshot::Sender<Answer<V>>);

/// The handle of one batching task: cheap to clone, the task ends when the last handle is dropped.
pub(super) struct Batcher<K, V> {
    tx: mpsc::Sender<Request<K, V>>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<K, V> std::fmt::Debug for Batcher<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("read batcher")
    }
}

impl<K: Send + 'static, V: Send + 'static> Batcher<K, V> {
    /// Starts the task that answers batches of keys with `query` on `pool`.
    pub(super) fn start(pool: PgPool, query: BatchQuery<K, V>) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(run(pool, query, rx));
        Self { tx }
    }

    /// The row of `key` as the next batch finds it. `metrics` records the batch's wait for a
    /// connection, as the request's own read would.
    pub(super) async fn get(&self, key: K, metrics: &StoreMetrics) -> Answer<V> {
        let (done, answer) = oneshot::channel();
        if self.tx.send((key, metrics.clone(), done)).await.is_err() {
            return Answer::ReadAlone;
        }
        answer.await.unwrap_or(Answer::ReadAlone)
    }
}

/// A connection from `pool`, its wait (and a timeout) recorded in `metrics`: every request path
/// takes its connection here (`Store::acquire`), and so do the batches.
pub(super) async fn acquire(pool: &PgPool, metrics: &StoreMetrics) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, Error> {
    let start = std::time::Instant::now();
    let conn = pool.acquire().await;
    metrics.waited(start.elapsed());
    if matches!(conn, Err(sqlx::Error::PoolTimedOut)) {
        metrics.timed_out();
    }
    Ok(conn?)
}

async fn run<K, V>(pool: PgPool, query: BatchQuery<K, V>, mut rx: mpsc::Receiver<Request<K, V>>) {
    let mut keys = Vec::with_capacity(MAX_KEYS);
    let mut replies = Vec::with_capacity(MAX_KEYS);
    while let Some((key, metrics, done)) = rx.recv().await {
        keys.push(key);
        replies.push(done);
        // Let the requests that are ready to run queue their keys first (one scheduling round).
        tokio::task::yield_now().await;
        while keys.len() < MAX_KEYS {
            match rx.try_recv() {
                Ok((key, _, done)) => {
                    keys.push(key);
                    replies.push(done);
                }
                Err(_) => break,
            }
        }
        let batch = std::mem::replace(&mut keys, Vec::with_capacity(MAX_KEYS));
        let n = batch.len();
        match query(pool.clone(), metrics, batch).await {
            Ok(rows) if rows.len() == n => {
                for (done, row) in replies.drain(..).zip(rows) {
                    let _ = done.send(Answer::Row(row));
                }
            }
            Err(e) if e.is_unavailable() => {
                let why = e.to_string();
                for done in replies.drain(..) {
                    let _ = done.send(Answer::Unavailable(why.clone()));
                }
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, keys = n, "a batched read failed; each request reads on its own");
                }
                for done in replies.drain(..) {
                    let _ = done.send(Answer::ReadAlone);
                }
            }
        }
    }
}
