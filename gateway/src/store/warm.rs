//! PostgreSQL connections kept warm between statements (issue 25; docs/decisions/0021-fewer-round-trips-on-postgresql.md).
//!
//! sqlx tests every connection that goes back to its pool with a round trip (a `Sync` and its
//! answer), which it offers no way to turn off. A request path takes a connection for each
//! statement or transaction, so under load that test was one more wake-up of the server and of
//! the gateway per statement. A connection whose statement or transaction finished cleanly (it
//! returned, was not cancelled, left no transaction open and nothing unsent) is instead kept here,
//! for a short while, and the next [`super::Store::acquire`] takes it first. Anything else (an
//! error on the connection, a request dropped mid-statement, a rollback still to send) goes back
//! to sqlx as before, whose test then flushes or discards it.
//!
//! Only a few connections are kept ([`Warm::new`]) and none for longer than [`KEEP_FOR`], so the
//! pool always has most of its connections for the paths that use it directly, and a connection
//! that sat unused is tested by sqlx like any other. While a lost connection was seen lately
//! (`infra::db::connection_lost`) none is kept or handed out.

use std::time::{Duration, Instant};

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

/// Longest a connection waits here; an older one goes back to the pool (and its test).
const KEEP_FOR: Duration = Duration::from_millis(250);

/// Kept connections with when each was kept, newest last; `None` once closed.
type Kept = Option<Vec<(PoolConnection<Postgres>, Instant)>>;

/// The kept connections, newest last.
#[derive(Debug)]
pub(super) struct Warm {
    /// `None` once [`Warm::close`] ran: nothing is kept any more.
    kept: std::sync::Mutex<Kept>,
    most: usize,
}

impl Warm {
    /// Keeps at most a quarter of a pool of `max_connections`; `None` for a pool of fewer than
    /// four (a command's), which needs every connection it has.
    pub(super) fn new(max_connections: u32) -> Option<Self> {
        let most = usize::try_from(max_connections / 4).unwrap_or(0);
        (most > 0).then(|| Self { kept: std::sync::Mutex::new(Some(Vec::with_capacity(most))), most })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding this lock cannot leave the list inconsistent (pushes and drains).
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently kept connection that is still fresh; stale ones go back to the pool.
    pub(super) fn take(&self) -> Option<PoolConnection<Postgres>> {
        let (taken, stale) = {
            let mut guard = self.lock();
            let kept = guard.as_mut()?;
            // While connections are suspect every kept one goes back, to be tested.
            let fresh = if infra::db::connections_suspect() {
                kept.len()
            } else {
                let now = Instant::now();
                kept.iter().position(|(_, at)| now.duration_since(*at) < KEEP_FOR).unwrap_or(kept.len())
            };
            let stale: Vec<_> = kept.drain(..fresh).collect();
            (kept.pop().map(|(c, _)| c), stale)
        };
        // Dropped outside the lock: sqlx tests them on their way back.
        drop(stale);
        taken
    }

    /// Keeps `conn` if it finished cleanly and there is room; otherwise it goes back to the pool.
    fn put(&self, conn: PoolConnection<Postgres>) {
        use sqlx::Connection as _;
        if conn.is_in_transaction() || conn.should_flush() || infra::db::connections_suspect() {
            return;
        }
        // Checked under the lock, so nothing is kept after `close` has emptied it.
        if let Some(kept) = self.lock().as_mut()
            && kept.len() < self.most
        {
            kept.push((conn, Instant::now()));
        }
    }

    /// Gives every kept connection back and keeps none from now on: the pool's `close` waits for
    /// all of its connections.
    pub(super) fn close(&self) {
        let kept = self.lock().take();
        drop(kept);
    }
}

/// A connection for one statement or transaction: dropped, it goes back to sqlx's pool; passed
/// to [`Pooled::done`] after a clean finish, it may be kept warm.
pub(super) struct Pooled<'w> {
    conn: PoolConnection<Postgres>,
    warm: Option<&'w Warm>,
}

impl<'w> Pooled<'w> {
    pub(super) fn new(conn: PoolConnection<Postgres>, warm: Option<&'w Warm>) -> Self {
        Self { conn, warm }
    }

    /// The statement or transaction finished (returned, not cancelled): keep the connection warm
    /// unless `result` says the connection itself failed.
    pub(super) fn done<T>(self, result: &super::Result<T>) {
        let Self { conn, warm } = self;
        if matches!(result, Err(e) if e.is_unavailable()) {
            return;
        }
        if let Some(warm) = warm {
            warm.put(conn);
        }
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}
