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
//! If a batch statement fails, each request of it reads on its own instead, so it gets the error
//! its own read would have given (a pool timeout, a lost connection) and the caller's handling
//! of those is unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Requests queued before senders wait.
const CAPACITY: usize = 4 * 1024;
/// Most keys in one statement.
const MAX_KEYS: usize = 256;

/// What a batch statement returns: per key, in the keys' order, its row if there is one. `None`
/// when the statement failed (each request then reads on its own).
pub(super) type BatchFuture<V> = Pin<Box<dyn Future<Output = Option<Vec<Option<V>>>> + Send>>;

/// Answers a batch of keys on a pool.
pub(super) type BatchQuery<K, V> = Arc<dyn Fn(PgPool, Vec<K>) -> BatchFuture<V> + Send + Sync>;

/// The handle of one batching task: cheap to clone, the task ends when the last handle is dropped.
pub(super) struct Batcher<K, V> {
    tx: mpsc::Sender<(K, oneshot::Sender<Option<Option<V>>>)>,
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

    /// The row of `key` as the next batch finds it: `Some(row or none)`, or `None` when the batch
    /// could not answer (the task is gone or its statement failed): the caller then reads on its
    /// own.
    pub(super) async fn get(&self, key: K) -> Option<Option<V>> {
        let (done, answer) = oneshot::channel();
        self.tx.send((key, done)).await.ok()?;
        answer.await.ok().flatten()
    }
}

async fn run<K, V>(pool: PgPool, query: BatchQuery<K, V>, mut rx: mpsc::Receiver<(K, oneshot::Sender<Option<Option<V>>>)>) {
    let mut keys = Vec::with_capacity(MAX_KEYS);
    let mut replies = Vec::with_capacity(MAX_KEYS);
    while let Some((key, done)) = rx.recv().await {
        keys.push(key);
        replies.push(done);
        // Let the requests that are ready to run queue their keys first (one scheduling round).
        tokio::task::yield_now().await;
        while keys.len() < MAX_KEYS {
            match rx.try_recv() {
                Ok((key, done)) => {
                    keys.push(key);
                    replies.push(done);
                }
                Err(_) => break,
            }
        }
        let batch = std::mem::replace(&mut keys, Vec::with_capacity(MAX_KEYS));
        let n = batch.len();
        match query(pool.clone(), batch).await {
            Some(rows) if rows.len() == n => {
                for (done, row) in replies.drain(..).zip(rows) {
                    let _ = done.send(Some(row));
                }
            }
            _ => {
                for done in replies.drain(..) {
                    let _ = done.send(None);
                }
            }
        }
    }
}
