//! Audit rows chained in batches on PostgreSQL (docs/decisions/0022-audit-rows-chained-in-batches.md).
//!
//! Every append takes the chain's one head row, so on PostgreSQL concurrent transactions that
//! append queued on that row's lock until each had committed: logins ran one at a time through
//! it, and the waiting backends burned CPU on the hot row. Here a transaction writes its audit rows
//! to `audit_pending` instead, in the same commit as the change they record, and takes no lock on
//! the head. After the commit, the request waits for [`AuditChainer`]: one task per store that
//! takes every pending row (of any instance) and chains it into `audit_log`, in `id` order, in
//! one transaction per batch, holding the head for that batch only. So a request is still
//! answered only after its rows are durable *and* chained, as before.
//!
//! Rows left pending by an instance that stopped between its commit and the chaining are chained
//! by the next batch of any instance, and by every reader of the log ([`Store::audit_head`],
//! export, tail) before it reads.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditKey, HeadRow, PendingRow, chain_after, insert_chained};
use super::tx::{Conn, Tx};
use super::{Error, Result, row};

/// Most rows chained in one transaction.
const BATCH: i64 = 1000;

/// The rows of an [`super::audit::AuditBatch`] into `audit_pending`, in order, only while the
/// chain is keyed (a log written before keyed chaining takes no rows until `audit rekey`). The
/// arguments name the six parameters that carry the rows, one array per column, as
/// [`bind_rows`] binds them: a statement that writes something else may queue its audit rows in
/// a WITH query of this text (`Store::open_signing_session`).
macro_rules! queue_rows {
    ($at:literal, $event:literal, $outcome:literal, $clinic:literal, $user:literal, $detail:literal) => {
        concat!(
            "INSERT INTO audit_pending (created_at, event, outcome, clinic_id, user_id, detail)
             SELECT u.at, u.event, u.outcome, u.clinic_id, u.user_id, u.detail
             FROM UNNEST(", $at, "::int8[], ", $event, "::text[], ", $outcome, "::text[], ", $clinic, "::text[], ",
            $user, "::text[], ", $detail, "::text[])
                  WITH ORDINALITY AS u(at, event, outcome, clinic_id, user_id, detail, n)
             WHERE EXISTS (SELECT 1 FROM audit_head WHERE id = 1 AND keyed_from IS NOT NULL)
             ORDER BY u.n"
        )
    };
}
pub(super) use queue_rows;
const QUEUE: &str = queue_rows!("$1", "$2", "$3", "$4", "$5", "$6");
/// The head, locked for the batch: chainers of several instances take turns here.
const LOCK_HEAD: &str = "SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1 FOR UPDATE";
/// The oldest pending rows, taken.
const TAKE: &str = "DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT $1)
     RETURNING id, created_at, event, outcome, clinic_id, user_id, detail";

row! {
    /// A pending row as taken.
    struct TakenRow {
        id: i64,
        created_at: i64,
        event: String,
        outcome: String,
        clinic_id: Option<String>,
        user_id: Option<String>,
        detail: String,
    }
}

/// Writes `rows` (at, event, outcome, clinic, user, detail) to `audit_pending` in the open
/// PostgreSQL transaction `tx`, and marks it to wait for the chaining after its commit. Refused,
/// writing nothing, without an audit key or before the chain is keyed.
pub(super) async fn queue(tx: &mut Tx<'_>, key: Option<&AuditKey>, rows: &[PendingRow<'_>]) -> Result<()> {
    if key.is_none() {
        return Err(super::audit::no_key());
    }
    let Conn::Postgres(conn) = &mut tx.conn else {
        unreachable!("audit rows are queued on PostgreSQL only");
    };
    let written = bind_rows(sqlx::query(QUEUE), rows).execute(&mut **conn).await?.rows_affected();
    queued(tx, rows, written)
}

/// Binds `rows` as [`queue_rows!`] reads them: six parameters, after those `query` has bound.
pub(super) fn bind_rows<'q>(query: PgQuery<'q>, rows: &'q [PendingRow<'_>]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.0).collect::<Vec<i64>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<&str>>())
        .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<&str>>())
        .bind(rows.iter().map(|r| r.3).collect::<Vec<Option<&str>>>())
        .bind(rows.iter().map(|r| r.4).collect::<Vec<Option<&str>>>())
        .bind(rows.iter().map(|r| r.5.as_str()).collect::<Vec<&str>>())
}

/// A PostgreSQL statement being bound.
pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// After a statement queued `written` of `rows` in `tx`: refused unless it queued them all (the
/// chain is not keyed), else noted for the count and the chaining after the commit.
pub(super) fn queued(tx: &mut Tx<'_>, rows: &[PendingRow<'_>], written: u64) -> Result<()> {
    if written != rows.len() as u64 {
        return Err(super::audit::not_keyed(None));
    }
    tx.chain_after_commit();
    tx.audited(rows.iter().map(|r| (r.1, r.2.as_str())));
    Ok(())
}

/// Chains everything pending, batch by batch, on a connection of `pool` with `key`.
pub(super) async fn chain_pending(pool: &PgPool, key: Option<&AuditKey>) -> Result<()> {
    loop {
        let mut conn = pool.begin().await?;
        let head: HeadRow = sqlx::query_as(LOCK_HEAD).fetch_one(&mut *conn).await?;
        let mut taken: Vec<TakenRow> = sqlx::query_as(TAKE).bind(BATCH).fetch_all(&mut *conn).await?;
        if taken.is_empty() {
            return Ok(());
        }
        // DELETE … RETURNING gives no order; the chain follows the order the rows were queued in.
        taken.sort_unstable_by_key(|r| r.id);
        let Some(key) = key else { return Err(super::audit::no_key()) };
        if head.keyed_from.is_none() {
            return Err(super::audit::not_keyed(Some(head.seq)));
        }
        let rows = taken.iter().map(|r| {
            (r.created_at, r.event.as_str(), r.outcome.as_str(), r.clinic_id.as_deref(), r.user_id.as_deref(), r.detail.as_str())
        });
        let (chained, link) = chain_after(key, rows, head.seq, head.hash);
        let updated_at = taken.iter().map(|r| r.created_at).max().unwrap_or_default();
        insert_chained(&mut conn, &chained, &link, Some((head.seq + chained.len() as i64, updated_at))).await?;
        conn.commit().await?;
        if (taken.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Why a batch failed, for every request that waited on it.
type Failure = (bool, String);

type Waiter = (Option<Arc<AuditKey>>, oneshot::Sender<std::result::Result<(), Failure>>);

/// The handle of one chaining task: cheap to clone; the task ends with the last handle.
#[derive(Clone)]
pub(super) struct AuditChainer {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl std::fmt::Debug for AuditChainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit chainer")
    }
}

impl AuditChainer {
    /// Starts the task that chains on `pool`.
    pub(super) fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    /// Returns once a batch that began after this call has chained everything pending (rows
    /// committed before it included), with `key`.
    pub(super) async fn chained(&self, pool: &PgPool, key: Option<Arc<AuditKey>>) -> Result<()> {
        let (done, answer) = oneshot::channel();
        if self.tx.send((key.clone(), done)).is_err() {
            return chain_pending(pool, key.as_deref()).await;
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((true, why))) => Err(Error::Unavailable(why)),
            Ok(Err((false, why))) => Err(Error::AuditChain(why)),
            // The task is gone (the runtime is shutting down): chain here.
            Err(_) => chain_pending(pool, key.as_deref()).await,
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut waiting: Vec<Waiter> = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        // Let the requests that are committing now queue too (one scheduling round).
        tokio::task::yield_now().await;
        while let Ok(next) = rx.try_recv() {
            waiting.push(next);
        }
        // Normally one key for all; a store re-keyed by a command chains with its own.
        while !waiting.is_empty() {
            let key = waiting[0].0.clone();
            let (same, rest): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(k, _)| match (k, &key) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            });
            waiting = rest;
            let result = chain_pending(&pool, key.as_deref()).await.map_err(|e| match e {
                Error::AuditChain(why) => (false, why),
                e if e.is_unavailable() => (true, e.to_string()),
                e => (false, format!("chaining pending rows failed: {e}")),
            });
            if let Err((_, why)) = &result {
                tracing::error!(error = %why, "audit rows stay pending: chaining failed");
            }
            for (_, done) in same {
                let _ = done.send(result.clone());
            }
        }
    }
}
