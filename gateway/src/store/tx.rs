//! Transactions written once for both backends (issue 17, item 3).
//!
//! [`transaction!`] runs a body in one transaction: on SQLite on the inline writer connection, on
//! the caller's thread under the store's write lock (decision 0008: the hot paths' transactions
//! skip sqlx's connection thread), on PostgreSQL on a pooled connection. Inside, the `tx_*!` macros
//! run one statement with the same SQL and binds on whichever backend it is. On SQLite nothing
//! in the body waits, so the transaction runs start to commit in one poll.

use rusqlite::Connection;

use super::Result;

/// An open transaction: its connection, and the audit rows appended in it, which the metrics
/// count once it commits (docs/metrics.md).
pub(super) struct Tx<'c> {
    pub(super) conn: Conn<'c>,
    /// Event names and outcomes of the audit rows appended so far ([`Tx::audited`]).
    audited: Vec<(&'static str, &'static str)>,
    /// Audit rows were queued to `audit_pending`: after the commit the caller waits until they
    /// are chained (PostgreSQL; decision 0022).
    chain: bool,
}

/// The connection of an open transaction.
pub(super) enum Conn<'c> {
    /// Inside `BEGIN IMMEDIATE` on the inline writer (see `inline::InlineWriter::begin`).
    Sqlite(&'c mut Connection),
    /// Inside a sqlx transaction.
    Postgres(&'c mut sqlx::PgConnection),
}

impl<'c> Tx<'c> {
    pub(super) fn new(conn: Conn<'c>) -> Self {
        Self { conn, audited: Vec::new(), chain: false }
    }

    /// Whether this is PostgreSQL (for the rare statement only one dialect has).
    pub(super) fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres(_))
    }

    /// Notes audit rows appended in this transaction, counted if it commits.
    pub(super) fn audited(&mut self, rows: impl IntoIterator<Item = (&'static str, &'static str)>) {
        self.audited.extend(rows);
    }

    /// Notes audit rows queued to be chained after the commit.
    pub(super) fn chain_after_commit(&mut self) {
        self.chain = true;
    }

    /// The audit rows appended, for the count after the commit, and whether they wait to be
    /// chained.
    pub(super) fn into_audited(self) -> (Vec<(&'static str, &'static str)>, bool) {
        (self.audited, self.chain)
    }
}

/// Pins a transaction body's error type to the store's.
pub(super) async fn run<T>(body: impl Future<Output = Result<T>>) -> Result<T> {
    body.await
}

/// `head VALUES ($first, …), … tail` for `rows` groups of `columns` parameters, numbered from
/// `first` (after the head's own). Both dialects bind `$N` by number.
pub(super) fn rows_sql(head: &str, tail: &str, first: usize, columns: usize, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 6 + 16);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = first;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let _ = write!(sql, "{}${n}", if column == 0 { "" } else { ", " });
            n += 1;
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Runs `$body` (an expression using `$tx: &mut Tx`) in one transaction on `$store`: committed if
/// it returns `Ok`, rolled back otherwise. The body is compiled once per backend. The audit rows
/// it appended are counted in the metrics once it has committed; the wait for its connection
/// (PostgreSQL) or the write lock (SQLite) is recorded.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { writer, .. } => {
                let mut writer = $store.lock_writer(writer).await;
                let (out, audited) = {
                    let mut open = $crate::store::tx::Tx::new($crate::store::tx::Conn::Sqlite(writer.begin()?));
                    let out = {
                        let $tx = &mut open;
                        $crate::store::tx::run(async { $body }).await
                    };
                    (out, open.into_audited().0)
                };
                let done = writer.finish(out.is_ok()).and(out);
                if done.is_ok() {
                    $store.metrics.audit_written(&audited);
                }
                done
            }
            Backend::Postgres(pool) => {
                // The connection goes back to the pool before the wait for the chaining, which
                // needs one of its own.
                let (done, audited, chain) = {
                    let mut pooled = $store.acquire(pool).await?;
                    let mut conn = sqlx::Connection::begin(&mut *pooled).await?;
                    let (out, (audited, chain)) = {
                        let mut open = $crate::store::tx::Tx::new($crate::store::tx::Conn::Postgres(&mut *conn));
                        let out = {
                            let $tx = &mut open;
                            $crate::store::tx::run(async { $body }).await
                        };
                        (out, open.into_audited())
                    };
                    // Dropping an uncommitted sqlx transaction rolls it back (sqlx sends the
                    // rollback when the connection goes back to its pool).
                    let done = match out {
                        Ok(v) => conn.commit().await.map(|()| v).map_err($crate::store::Error::from),
                        Err(e) => {
                            drop(conn);
                            Err(e)
                        }
                    };
                    pooled.done(&done);
                    (done, audited, chain)
                };
                if done.is_ok() {
                    $store.metrics.audit_written(&audited);
                }
                // Queued audit rows are chained before the caller is answered (decision 0022).
                match done {
                    Ok(v) if chain => $store.audit_chained().await.map(|()| v),
                    done => done,
                }
            }
        }
    };
}
pub(crate) use transaction;

/// [`transaction!`] for a write of what the gate cache holds (`cache`, decision 0020): after the
/// body, the cache's `NOTIFY` in the same transaction, so other instances hear of the change when
/// it commits; once committed, this instance's cache is cleared.
macro_rules! gate_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let done = $crate::store::tx::transaction!($store, |$tx| {
            let out: $crate::store::Result<_> = $body;
            let out = out?;
            $crate::store::cache::notify($tx).await?;
            Ok(out)
        });
        if done.is_ok() {
            $store.gate_changed();
        }
        done
    }};
}
pub(crate) use gate_transaction;

/// One statement in `$tx`; the rows changed.
macro_rules! tx_execute {
    ($tx:expr, $sql:expr $(, $param:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::store::tx::Conn::Sqlite(conn) => {
                $crate::store::inline::execute(conn, $sql, &[$(&$param as &dyn rusqlite::ToSql),*]).map_err($crate::store::Error::from)
            }
            $crate::store::tx::Conn::Postgres(conn) => sqlx::query($sql)$(.bind($param))*
                .execute(&mut **conn)
                .await
                .map(|r| r.rows_affected())
                .map_err($crate::store::Error::from),
        }
    };
}
pub(crate) use tx_execute;

/// One statement in `$tx` returning rows, decoded as `$row`: `$fetch` is `optional` (at most
/// one), `one` (exactly one) or `all`.
macro_rules! tx_fetch {
    ($tx:expr, $fetch:ident, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::store::tx::Conn::Sqlite(conn) => {
                $crate::store::inline::$fetch::<$row>(conn, $sql, &[$(&$param as &dyn rusqlite::ToSql),*]).map_err($crate::store::Error::from)
            }
            $crate::store::tx::Conn::Postgres(conn) => {
                $crate::store::tx::tx_fetch!(@pg $fetch, sqlx::query_as::<_, $row>($sql)$(.bind($param))*, conn)
            }
        }
    };
    (@pg optional, $q:expr, $conn:ident) => { $q.fetch_optional(&mut **$conn).await.map_err($crate::store::Error::from) };
    (@pg one, $q:expr, $conn:ident) => { $q.fetch_one(&mut **$conn).await.map_err($crate::store::Error::from) };
    (@pg all, $q:expr, $conn:ident) => { $q.fetch_all(&mut **$conn).await.map_err($crate::store::Error::from) };
}
pub(crate) use tx_fetch;

/// A multi-row statement in `$tx`: `$head VALUES (…), … $tail`, one group per item of `$rows`
/// (a slice) holding the listed columns of `$r`. `with $pre` (an `Option`) binds a value before
/// the groups, as the head's `$1`. `$fetch` is `execute` (the rows changed) or `all<Row>` (every
/// returned row).
macro_rules! tx_rows {
    ($tx:expr, $fetch:ident $(<$row:ty>)?, $head:expr, with $pre:expr, $rows:expr, |$r:pat_param| [$($col:expr),+ $(,)?], $tail:expr $(,)?) => {
        $crate::store::tx::tx_rows!(@go $tx, $fetch $(<$row>)?, $head, [$pre], $rows, |$r| [$($col),+], $tail)
    };
    ($tx:expr, $fetch:ident $(<$row:ty>)?, $head:expr, $rows:expr, |$r:pat_param| [$($col:expr),+ $(,)?], $tail:expr $(,)?) => {
        $crate::store::tx::tx_rows!(@go $tx, $fetch $(<$row>)?, $head, [], $rows, |$r| [$($col),+], $tail)
    };
    (@go $tx:expr, $fetch:ident $(<$row:ty>)?, $head:expr, [$($pre:expr)?], $rows:expr, |$r:pat_param| [$($col:expr),+], $tail:expr) => {{
        let rows = $rows;
        $(let pre = $pre;)?
        let first = 1 $(+ { let _ = stringify!($pre); usize::from(pre.is_some()) })?;
        let sql = $crate::store::tx::rows_sql($head, $tail, first, [$(stringify!($col)),+].len(), rows.len());
        match &mut $tx.conn {
            $crate::store::tx::Conn::Sqlite(conn) => {
                let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(rows.len() * [$(stringify!($col)),+].len() + 1);
                $(let _ = stringify!($pre); if let Some(p) = &pre { params.push(p); })?
                params.extend(rows.iter().flat_map(|$r| [$(&$col as &dyn rusqlite::ToSql),+]));
                $crate::store::tx::tx_rows!(@sqlite $fetch $(<$row>)?, conn, &sql, &params)
            }
            $crate::store::tx::Conn::Postgres(conn) => {
                let mut q = $crate::store::tx::tx_rows!(@query $fetch $(<$row>)?, sql);
                $(let _ = stringify!($pre); if let Some(p) = pre { q = q.bind(p); })?
                for $r in rows.iter() {
                    $(q = q.bind(&$col);)+
                }
                $crate::store::tx::tx_rows!(@pg $fetch, q, conn)
            }
        }
    }};
    (@sqlite execute, $conn:ident, $sql:expr, $params:expr) => {
        $crate::store::inline::execute_positional($conn, $sql, $params).map_err($crate::store::Error::from)
    };
    (@sqlite all<$row:ty>, $conn:ident, $sql:expr, $params:expr) => {
        $crate::store::inline::all_positional::<$row>($conn, $sql, $params).map_err($crate::store::Error::from)
    };
    (@query execute, $sql:ident) => { sqlx::query(sqlx::AssertSqlSafe($sql)) };
    (@query all<$row:ty>, $sql:ident) => { sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe($sql)) };
    (@pg execute, $q:ident, $conn:ident) => {
        $q.execute(&mut **$conn).await.map(|r| r.rows_affected()).map_err($crate::store::Error::from)
    };
    (@pg all, $q:ident, $conn:ident) => { $q.fetch_all(&mut **$conn).await.map_err($crate::store::Error::from) };
}
pub(crate) use tx_rows;

#[cfg(test)]
mod tests {
    #[test]
    fn rows_sql_numbers_parameters_after_the_head() {
        assert_eq!(super::rows_sql("INSERT INTO t (a, b)", "", 1, 2, 2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ");
        assert_eq!(super::rows_sql("WITH x AS ($1) INSERT", "RETURNING a", 2, 1, 2), "WITH x AS ($1) INSERT VALUES ($2), ($3) RETURNING a");
    }
}
