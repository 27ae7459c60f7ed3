//! The store's plumbing: its errors, the two backends and how to connect to them, the macros that
//! write a query once for both, and the migrations. The domains live in files of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::AuditKey;
use super::cache::GateCache;
use super::inline;
use crate::metrics::{Metrics, StoreMetrics};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write; carries the constraint or table.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the write depended on changed meanwhile (e.g. an enrollment code was used, voided
    /// or expired by a concurrent request); names what.
    #[error("precondition failed: {}", .0.code())]
    Precondition(Precondition),
    /// The PostgreSQL server could not be reached or refused the login; `target` is
    /// `host:port (database name)`, never the password.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The database was unavailable to a batched read (`batched`): what every request of the
    /// batch would have met on its own (no connection in time, a lost connection).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// An inline SQLite read failed (see `inline`).
    #[error("database error: {0}")]
    Inline(#[source] rusqlite::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Existing rows break a rule a migration adds (e.g. two login IDs of one clinic that fold
    /// alike); names the rows. Nothing was changed: an operator has to decide.
    #[error("the database needs an operator before this version can run: {0}")]
    NeedsOperator(String),
    /// The audit chain refused a write or a check: no audit key, a log that needs
    /// `gateway admin audit rekey`, or a rekey that is not due. Nothing was written.
    #[error("audit log: {0}")]
    AuditChain(String),
}

impl Error {
    /// The database could not be reached in time or dropped the connection: a retry may work.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(e) => sqlx_unavailable(e),
            Error::Connect { .. } | Error::Unavailable(_) => true,
            Error::Inline(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
            ),
            _ => false,
        }
    }
}

/// What [`Error::Precondition`] found changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// The enrollment code was used, voided or expired meanwhile.
    EnrollmentCode,
    /// A FIDO counter that had to be written was not (a concurrent assertion won).
    FidoCounter,
    /// No browser session under the id to move (signed out meanwhile).
    BrowserSession,
    /// The audit chain's head row is missing.
    AuditHead,
}

impl Precondition {
    /// The stable text (errors and logs name it).
    pub fn code(self) -> &'static str {
        match self {
            Precondition::EnrollmentCode => "enrollment_code",
            Precondition::FidoCounter => "fido counter",
            Precondition::BrowserSession => "browser session",
            Precondition::AuditHead => "audit_head row missing",
        }
    }
}

pub use infra::db::{SchemaStatus, sqlx_unavailable};

impl From<infra::db::ConnectError> for Error {
    fn from(e: infra::db::ConnectError) -> Self {
        match e {
            infra::db::ConnectError::Unreachable { target, source } => Error::Connect { target, source },
            infra::db::ConnectError::Other(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        infra::db::note_if_connection_lost(&e);
        match &e {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
                Error::Conflict(db.constraint().or(db.table()).unwrap_or("unique").to_owned())
            }
            _ => Error::Database(e),
        }
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub(super) enum Backend {
    /// SQLite lets one connection write at a time. Everything that may write goes through
    /// `write`, a pool of one connection, so writers queue in the pool instead of meeting
    /// `SQLITE_BUSY` and sleeping in SQLite's busy handler (milliseconds each, and a deferred
    /// transaction that started as a reader could not be retried at all). Plain reads use `read`,
    /// read-only connections that run beside the writer under WAL, and the reads of the hot paths
    /// use `inline`, read-only connections called on the request's own thread (decision 0008).
    /// `writer` is the write lock, around the connection for the hot paths' inline writes: sqlx
    /// writes take it too, so SQLite sees one writer at a time.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        inline: Arc<inline::InlineReaders>,
        writer: Arc<tokio::sync::Mutex<inline::InlineWriter>>,
        checkpointer: Arc<inline::Checkpointer>,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool (on SQLite the single writer, holding the
/// write lock for the whole body). The body is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { write: $pool, writer, .. } => {
                let _write_lock = $store.lock_writer(writer).await;
                $body
            }
            Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool!`] for statements that only read: on SQLite they run on the read-only
/// connections, beside the writer (a write sent here fails rather than racing for the lock).
macro_rules! with_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { read: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_reader;

/// A read of at most one row, decoded as the tuple type `$row`, written once for both backends:
/// on SQLite it runs inline on a read-only connection (`inline`, decision 0008), on PostgreSQL
/// through the pool. Parameters are positional (`$1`, `$2`, … in order of first use).
macro_rules! read_optional {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { inline, .. } => inline.optional::<$row>($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => match $store.acquire(pool).await {
                Ok(mut conn) => {
                    let r = sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_optional(&mut *conn).await.map_err($crate::store::Error::from);
                    conn.done(&r);
                    r
                }
                Err(e) => Err(e),
            },
        }
    };
}
pub(crate) use read_optional;

/// Like [`read_optional!`] for exactly one row: [`Error::NotFound`] when there is none.
macro_rules! read_one {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        $crate::store::db::read_optional!($store, $row, $sql $(, $param)*).and_then(|row| row.ok_or($crate::store::Error::NotFound))
    };
}
pub(crate) use read_one;

/// Like [`read_optional!`] for every row.
macro_rules! read_all {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { inline, .. } => inline.all::<$row>($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => match $store.acquire(pool).await {
                Ok(mut conn) => {
                    let r = sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_all(&mut *conn).await.map_err($crate::store::Error::from);
                    conn.done(&r);
                    r
                }
                Err(e) => Err(e),
            },
        }
    };
}
pub(crate) use read_all;

/// A single-statement write, written once for both backends; returns the rows changed. On SQLite
/// it runs inline on the writer connection under the write lock (decision 0008).
macro_rules! write_execute {
    ($store:expr, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { writer, .. } => $store.lock_writer(writer).await.execute($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => match $store.acquire(pool).await {
                Ok(mut conn) => {
                    let r = sqlx::query($sql)$(.bind($param))*.execute(&mut *conn).await.map(|r| r.rows_affected()).map_err($crate::store::Error::from);
                    conn.done(&r);
                    r
                }
                Err(e) => Err(e),
            },
        }
    };
}
pub(crate) use write_execute;

/// Like [`write_execute!`] for a statement with `RETURNING` that changes at most one row: the row,
/// decoded as the tuple type `$row`.
macro_rules! write_optional {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { writer, .. } => $store.lock_writer(writer).await.optional::<$row>($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => match $store.acquire(pool).await {
                Ok(mut conn) => {
                    let r = sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_optional(&mut *conn).await.map_err($crate::store::Error::from);
                    conn.done(&r);
                    r
                }
                Err(e) => Err(e),
            },
        }
    };
}
pub(crate) use write_optional;

/// A struct for a query's rows, decoded by column name on every path: `sqlx::FromRow` for SQLite
/// and PostgreSQL, and `TryFrom<&rusqlite::Row>` for the inline statements (decision 0008). A
/// query names each field as a column (`AS` where it computes one); swapping two columns changes
/// nothing, and a missing one is an error, not another field's value.
macro_rules! row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }
        impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for $name {
            fn from_row(row: &'r sqlx::sqlite::SqliteRow) -> sqlx::Result<Self> {
                use sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $name {
            fn from_row(row: &'r sqlx::postgres::PgRow) -> sqlx::Result<Self> {
                use sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
        impl<'r> TryFrom<&'r rusqlite::Row<'r>> for $name {
            type Error = rusqlite::Error;
            // `at` counts past the last field.
            #[allow(unused_assignments)]
            fn try_from(row: &'r rusqlite::Row<'r>) -> rusqlite::Result<Self> {
                let mut at = 0;
                Ok(Self {
                    $($field: {
                        let value = $crate::store::inline::column(row, at, stringify!($field))?;
                        at += 1;
                        value
                    }),*
                })
            }
        }
    };
}
pub(crate) use row;

/// The database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) backend: Backend,
    /// Links new audit rows and verifies keyed ones (docs/design.md §3.9); never in the database.
    pub(super) audit_key: Option<Arc<AuditKey>>,
    /// Audit rows written and failed, and waits for the write path (docs/metrics.md).
    pub(super) metrics: StoreMetrics,
    /// PostgreSQL: the EMR context reads of concurrent token requests, one statement per batch
    /// (docs/decisions/0021-fewer-round-trips-on-postgresql.md).
    pub(super) emr_reads: Option<super::batched::Batcher<super::service_clients::EmrKey, super::service_clients::EmrRow>>,
    /// The clinic gate's and the service clients' lookups, invalidated on every change
    /// (docs/decisions/0020-cached-gate-lookups.md).
    pub(super) cache: Arc<GateCache>,
    /// PostgreSQL: chains the audit rows that transactions queued, in batches
    /// (docs/decisions/0022-audit-rows-chained-in-batches.md).
    pub(super) audit_chainer: Option<super::audit_pending::AuditChainer>,
    /// PostgreSQL: connections kept between statements, saving sqlx's test on each return
    /// (`store/warm.rs`).
    pub(super) warm: Option<Arc<super::warm::Warm>>,
}

/// How full one connection pool is, for the metrics (read at scrape time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `postgres`, or `sqlite_read` (the read-only connections sqlx manages).
    pub pool: &'static str,
    /// Connections open.
    pub open: u32,
    /// Of which idle.
    pub idle: u32,
    /// Most it opens (`database.max_connections`).
    pub max: u32,
}

/// The gateway's migrations, embedded in the binary (`infra::db::Migrations`).
const MIGRATIONS: infra::db::Migrations = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/sqlite/0001_foundation.sql"),
        include_str!("../../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "fido signing sessions",
        include_str!("../../../migrations/sqlite/0002_fido_signing_sessions.sql"),
        include_str!("../../../migrations/postgres/0002_fido_signing_sessions.sql"),
    ),
    (
        3,
        "signing tokens",
        include_str!("../../../migrations/sqlite/0003_signing_tokens.sql"),
        include_str!("../../../migrations/postgres/0003_signing_tokens.sql"),
    ),
    (
        4,
        "card login",
        include_str!("../../../migrations/sqlite/0004_card_login.sql"),
        include_str!("../../../migrations/postgres/0004_card_login.sql"),
    ),
    (
        5,
        "token path storage",
        include_str!("../../../migrations/sqlite/0005_token_path_storage.sql"),
        include_str!("../../../migrations/postgres/0005_token_path_storage.sql"),
    ),
    (
        6,
        "sessions own ceremonies",
        include_str!("../../../migrations/sqlite/0006_sessions_own_ceremonies.sql"),
        include_str!("../../../migrations/postgres/0006_sessions_own_ceremonies.sql"),
    ),
    (
        7,
        "trust per anchor",
        include_str!("../../../migrations/sqlite/0007_trust_per_anchor.sql"),
        include_str!("../../../migrations/postgres/0007_trust_per_anchor.sql"),
    ),
    (
        8,
        "bound browser sessions",
        include_str!("../../../migrations/sqlite/0008_bound_browser_sessions.sql"),
        include_str!("../../../migrations/postgres/0008_bound_browser_sessions.sql"),
    ),
    (
        9,
        "login id folded",
        include_str!("../../../migrations/sqlite/0009_login_id_folded.sql"),
        include_str!("../../../migrations/postgres/0009_login_id_folded.sql"),
    ),
    (
        10,
        "keyed audit chain",
        include_str!("../../../migrations/sqlite/0010_keyed_audit_chain.sql"),
        include_str!("../../../migrations/postgres/0010_keyed_audit_chain.sql"),
    ),
    (
        11,
        "test accounts",
        include_str!("../../../migrations/sqlite/0011_test_accounts.sql"),
        include_str!("../../../migrations/postgres/0011_test_accounts.sql"),
    ),
    (
        12,
        "oqs relay",
        include_str!("../../../migrations/sqlite/0012_oqs_relay.sql"),
        include_str!("../../../migrations/postgres/0012_oqs_relay.sql"),
    ),
    (
        13,
        "agent releases",
        include_str!("../../../migrations/sqlite/0013_agent_releases.sql"),
        include_str!("../../../migrations/postgres/0013_agent_releases.sql"),
    ),
    (
        14,
        "external ids",
        include_str!("../../../migrations/sqlite/0014_external_ids.sql"),
        include_str!("../../../migrations/postgres/0014_external_ids.sql"),
    ),
    (
        15,
        "scim",
        include_str!("../../../migrations/sqlite/0015_scim.sql"),
        include_str!("../../../migrations/postgres/0015_scim.sql"),
    ),
    (
        16,
        "upstream login",
        include_str!("../../../migrations/sqlite/0016_upstream_login.sql"),
        include_str!("../../../migrations/postgres/0016_upstream_login.sql"),
    ),
    (
        17,
        "card confirm",
        include_str!("../../../migrations/sqlite/0017_card_confirm.sql"),
        include_str!("../../../migrations/postgres/0017_card_confirm.sql"),
    ),
    (
        18,
        "audit pending",
        include_str!("../../../migrations/sqlite/0018_audit_pending.sql"),
        include_str!("../../../migrations/postgres/0018_audit_pending.sql"),
    ),
    (
        19,
        "token session reference",
        include_str!("../../../migrations/sqlite/0019_token_session_reference.sql"),
        include_str!("../../../migrations/postgres/0019_token_session_reference.sql"),
    ),
    (
        20,
        "login rows",
        include_str!("../../../migrations/sqlite/0020_login_rows.sql"),
        include_str!("../../../migrations/postgres/0020_login_rows.sql"),
    ),
];

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://...`) with a 10 s wait for a pooled
    /// connection (commands and tools; the server uses [`Store::connect_with`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, Duration::from_secs(10)).await
    }

    /// Connects to `url`. A SQLite file is created if missing and runs in WAL mode. A PostgreSQL
    /// request waits at most `acquire_timeout` for a connection: during an outage requests fail
    /// fast (503) instead of queueing.
    pub async fn connect_with(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self> {
        let (mut emr_reads, mut audit_chainer, mut warm) = (None, None, None);
        let (backend, cache) = if url.starts_with("sqlite:") {
            let options = infra::db::sqlite_options(url)?;
            // The writer opens (and creates) the file first and switches it to WAL, which lets the
            // readers run beside it.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(
                    options
                        .clone()
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        // The checkpointer thread does this, outside the write lock.
                        .pragma("wal_autocheckpoint", "0")
                        .pragma("journal_size_limit", inline::WAL_SIZE_LIMIT.to_string()),
                )
                .await?;
            let inline = Arc::new(inline::InlineReaders::open(options.get_filename())?);
            let writer = Arc::new(tokio::sync::Mutex::new(inline::InlineWriter::open(options.get_filename())?));
            let checkpointer = Arc::new(inline::Checkpointer::start(options.get_filename(), writer.clone())?);
            let cache = GateCache::sqlite(options.get_filename())?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .connect_with(options.read_only(true))
                .await?;
            (Backend::Sqlite { write, read, inline, writer, checkpointer }, cache)
        } else {
            let pool = infra::db::connect_postgres(url, max_connections, acquire_timeout).await?;
            emr_reads = Some(super::batched::Batcher::start(pool.clone(), Arc::new(super::service_clients::emr_context_batch)));
            audit_chainer = Some(super::audit_pending::AuditChainer::start(pool.clone()));
            warm = super::warm::Warm::new(max_connections).map(Arc::new);
            let cache = GateCache::listening(&pool);
            (Backend::Postgres(pool), cache)
        };
        Ok(Self { backend, audit_key: None, metrics: StoreMetrics::default(), emr_reads, cache, audit_chainer, warm })
    }

    /// This store recording into `metrics` (docs/metrics.md): audit rows committed and failed,
    /// and the waits of its write path, labelled `postgres` (a pooled connection) or
    /// `sqlite_write` (the one writer, decision 0007).
    #[must_use]
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        let pool = match self.backend {
            Backend::Sqlite { .. } => "sqlite_write",
            Backend::Postgres(_) => "postgres",
        };
        self.metrics = metrics.store(pool);
        self
    }

    /// Usage of the sqlx pools, for the metrics. The SQLite writer is a lock, not a pool: its
    /// waits are measured instead ([`Store::lock_writer`]).
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        fn usage<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> PoolUsage {
            let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
            PoolUsage { pool, open: p.size(), idle, max: p.options().get_max_connections() }
        }
        match &self.backend {
            Backend::Sqlite { read, .. } => vec![usage("sqlite_read", read)],
            Backend::Postgres(pool) => vec![usage("postgres", pool)],
        }
    }

    /// A PostgreSQL connection from `pool`, its wait recorded. The request paths' statements
    /// (the `read_*!`, `write_*!` and `transaction!` macros) take theirs here; sqlx would take
    /// the same one inside `execute(pool)`.
    pub(super) async fn acquire(&self, pool: &PgPool) -> Result<super::warm::Pooled<'_>> {
        let warm = self.warm.as_deref();
        let start = Instant::now();
        if let Some(conn) = warm.and_then(super::warm::Warm::take) {
            // Every hand-out is one acquisition in the metrics, a kept connection's too.
            self.metrics.waited(start.elapsed());
            return Ok(super::warm::Pooled::new(conn, warm));
        }
        Ok(super::warm::Pooled::new(super::batched::acquire(pool, &self.metrics).await?, warm))
    }

    /// PostgreSQL: runs one statement built by the caller on a connection from [`Store::acquire`]
    /// (kept warm when it succeeds) and returns its row, if it returned one. For the statements
    /// whose row no `row!` type decodes, such as a take joined with a read.
    pub(super) async fn pg_optional(
        &self,
        pool: &PgPool,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<sqlx::postgres::PgRow>> {
        let mut conn = self.acquire(pool).await?;
        let row = query.fetch_optional(&mut *conn).await.map_err(Error::from);
        conn.done(&row);
        row
    }

    /// SQLite's write lock, its wait recorded (every write takes it: decision 0007).
    pub(super) async fn lock_writer<'w>(
        &self,
        writer: &'w tokio::sync::Mutex<inline::InlineWriter>,
    ) -> tokio::sync::MutexGuard<'w, inline::InlineWriter> {
        let start = Instant::now();
        let guard = writer.lock().await;
        self.metrics.waited(start.elapsed());
        guard
    }

    /// Counts `result` of a transaction that was to write audit rows when it failed: everything
    /// but a refused precondition, which rolls back on purpose and is answered as such.
    pub(super) fn count_audit_failure<T>(&self, result: &Result<T>) {
        if matches!(result, Err(e) if !matches!(e, Error::Precondition(_))) {
            self.metrics.audit_failed();
        }
    }

    /// Applies pending migrations, then fills the columns that only Rust can compute
    /// (`users.login_folded`, migration 0009). Safe to run again: it only touches what is missing.
    pub async fn migrate(&self) -> Result<()> {
        let migrated = match &self.backend {
            Backend::Sqlite { write, .. } => infra::db::migrator(MIGRATIONS, false).run(write).await,
            Backend::Postgres(pool) => infra::db::migrator(MIGRATIONS, true).run(pool).await,
        };
        if let Err(e) = migrated {
            // Name the accounts when shared 医籍番号 kept migration 0009 from building its index.
            return Err(match self.shared_medical_reg_nos().await {
                Ok(shared) if !shared.is_empty() => Error::NeedsOperator(format!(
                    "doctors of one clinic share a medical registration number (医籍番号), which must be unique \
                     per clinic; correct these accounts, then start again (nothing was changed): {}",
                    shared.join("; ")
                )),
                _ => Error::Migrate(e),
            });
        }
        self.fill_login_folded().await
    }


    /// Where the schema stands against this build's migrations, without changing anything: the
    /// admin commands run only on a current schema and leave upgrading to `gateway migrate`.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied: Vec<i64> =
            match with_reader!(self, |pool| sqlx::query_scalar(infra::db::APPLIED_MIGRATIONS_SQL).fetch_all(pool).await) {
                Ok(v) => v,
                Err(e) if infra::db::is_missing_table(&e) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(SchemaStatus::of(&applied, MIGRATIONS))
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        with_reader!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Whether the database takes a write: rewrites the audit chain's head row unchanged and
    /// commits (`/readyz`: a read-only SQLite file, a PostgreSQL standby or a lost head row all
    /// fail here, while a plain read would pass).
    pub async fn probe_commit(&self) -> Result<()> {
        match write_execute!(self, "UPDATE audit_head SET seq = seq WHERE id = 1")? {
            1 => Ok(()),
            _ => Err(Error::Precondition(Precondition::AuditHead)),
        }
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.cache.stop().await;
        match &self.backend {
            Backend::Sqlite { write, read, inline, checkpointer, .. } => {
                checkpointer.stop();
                inline.close();
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => {
                if let Some(warm) = &self.warm {
                    warm.close();
                }
                pool.close().await;
            }
        }
    }

    /// Names of all tables and their columns, sorted; lets a test compare the two schemas.
    pub async fn schema_columns(&self) -> Result<Vec<(String, String)>> {
        let mut rows: Vec<(String, String)> = match &self.backend {
            Backend::Sqlite { read: pool, .. } => {
                sqlx::query_as(
                    "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
                )
                .fetch_all(pool)
                .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'",
                )
                .fetch_all(pool)
                .await?
            }
        };
        rows.sort();
        Ok(rows)
    }
}

/// `items` split for multi-row statements: each chunk is the largest power of two not above what
/// is left, at most 128. Batches of any size then use at most eight statement texts, which each
/// connection prepares once and keeps in its statement cache (a text per batch size would be
/// prepared again and again, and evict the statements of the hot paths).
pub(crate) fn batch_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    const MAX: usize = 128;
    let mut rest = items;
    std::iter::from_fn(move || {
        let size = match rest.len() {
            0 => return None,
            n if n >= MAX => MAX,
            n => 1 << n.ilog2(),
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

pub(super) fn corrupt(what: &str) -> Error {
    Error::Database(sqlx::Error::Decode(format!("unexpected value in {what}").into()))
}
