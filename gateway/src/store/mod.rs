//! Persistence: one [`Store`] over SQLite or PostgreSQL.
//!
//! Each query is written once and runs on both backends: the SQL sticks to what both dialects
//! share (`$N` parameters, `ON CONFLICT`, `RETURNING`, integer Unix times), and [`with_pool!`]
//! expands a body once per concrete pool type so each copy is type-checked against its driver.
//! See `docs/decisions/0001-one-store-two-backends.md`.

mod anchors;
mod audit;
mod cards;
mod ceremonies;
mod enrollment;
mod fido;
mod inline;
mod sessions;
mod signing;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use audit::{AuditEvent, AuditHead, AuditKey, AuditRecord, AuditVerification, CHAIN_KEYED_EVENT, Outcome, RowFields, audit_link};
pub use anchors::{AnchorVersion, Dependents};
pub use cards::{CardChallenge, CardCredential, CardPurpose, NewCardChallenge, NewCardCredential};
pub use ceremonies::{CeremonyPurpose, NewCeremony, TakenCeremony};
pub use enrollment::{CodeCheck, EnrollmentCode, IssuedCode};
pub use fido::{FidoCredential, LinkAuthorisation, NewFidoCredential};
pub use tokens::{
    ClientAccess, ConsumedToken, Consumption, EmrContext, IssueContext, NewConsume, NewIssuedToken, OpenSession, ServiceClient, ServiceRole, SigningKeyRow,
};
pub use sessions::{LoadedSession, SessionMove, SessionSignIn};
pub use signing::{
    AuthMethod, AuthenticatorUse, EndReason, NewSigningSession, OpenedSession, Opening, SessionFilter, SigningSession,
    SigningSessionState, TouchOutcome,
};

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
    #[error("precondition failed: {0}")]
    Precondition(&'static str),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
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

/// See [`Error::is_unavailable`].
pub fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: class 08 (connection exception), 57P01–57P03 (shutdown, cannot
            // connect now), 53 (insufficient resources); SQLite: busy, locked, read-only.
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") || matches!(code.as_ref(), "5" | "6" | "8" | "517" | "262")
        }
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
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
enum Backend {
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
                let _write_lock = writer.lock().await;
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
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_optional(pool).await.map_err(Error::from)
            }
        }
    };
}
pub(crate) use read_optional;

/// Like [`read_optional!`] for exactly one row: [`Error::NotFound`] when there is none.
macro_rules! read_one {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        $crate::store::read_optional!($store, $row, $sql $(, $param)*).and_then(|row| row.ok_or(Error::NotFound))
    };
}
pub(crate) use read_one;

/// Like [`read_optional!`] for every row.
macro_rules! read_all {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { inline, .. } => inline.all::<$row>($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_all(pool).await.map_err(Error::from),
        }
    };
}
pub(crate) use read_all;

/// A single-statement write, written once for both backends; returns the rows changed. On SQLite
/// it runs inline on the writer connection under the write lock (decision 0008).
macro_rules! write_execute {
    ($store:expr, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { writer, .. } => writer.lock().await.execute($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => {
                sqlx::query($sql)$(.bind($param))*.execute(pool).await.map(|r| r.rows_affected()).map_err(Error::from)
            }
        }
    };
}
pub(crate) use write_execute;

/// Like [`write_execute!`] for a statement with `RETURNING` that changes at most one row: the row,
/// decoded as the tuple type `$row`.
macro_rules! write_optional {
    ($store:expr, $row:ty, $sql:expr $(, $param:expr)* $(,)?) => {
        match &$store.backend {
            Backend::Sqlite { writer, .. } => writer.lock().await.optional::<$row>($sql, &[$(&$param as &dyn rusqlite::ToSql),*]),
            Backend::Postgres(pool) => {
                sqlx::query_as::<_, $row>($sql)$(.bind($param))*.fetch_optional(pool).await.map_err(Error::from)
            }
        }
    };
}
pub(crate) use write_optional;

/// The database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Links new audit rows and verifies keyed ones (docs/design.md §3.9); never in the database.
    audit_key: Option<Arc<audit::AuditKey>>,
}

/// Migrations, embedded in the binary: (version, description, SQLite SQL, PostgreSQL SQL).
/// Built by hand rather than with `sqlx::migrate!`, whose macro feature compiles both database
/// drivers a second time for the host; the result is the same `Migrator`.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
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
];

fn migrator(postgres: bool) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sqlite, pg)| {
            let sql: &'static str = if postgres { pg } else { sqlite };
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sqlx::SqlSafeStr::into_sql_str(sql), false)
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// Creates a missing SQLite file empty (a valid empty database) and readable by its owner only,
/// before SQLite would create it with 0644 less the umask: it holds password hashes, sessions
/// and sealed signing keys. SQLite gives the `-wal` and `-shm` files the main file's mode.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

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
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            create_private(options.get_filename()).map_err(sqlx::Error::Io)?;
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
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .connect_with(options.read_only(true))
                .await?;
            Backend::Sqlite { write, read, inline, writer, checkpointer }
        } else {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Backend::Postgres(pool)
        };
        Ok(Self { backend, audit_key: None })
    }

    /// Applies pending migrations, then fills the columns that only Rust can compute
    /// (`users.login_folded`, migration 0009). Safe to run again: it only touches what is missing.
    pub async fn migrate(&self) -> Result<()> {
        let migrated = match &self.backend {
            Backend::Sqlite { write, .. } => migrator(false).run(write).await,
            Backend::Postgres(pool) => migrator(true).run(pool).await,
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

    /// Every (clinic, 医籍番号) held by more than one account, with the accounts' login IDs.
    async fn shared_medical_reg_nos(&self) -> Result<Vec<String>> {
        let rows: Vec<(String, String, String)> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT u.clinic_id, u.medical_reg_no, u.login_id FROM users u
                 WHERE u.medical_reg_no IS NOT NULL AND EXISTS (
                     SELECT 1 FROM users o WHERE o.clinic_id = u.clinic_id AND o.medical_reg_no = u.medical_reg_no
                     AND o.id <> u.id)",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(group_accounts(rows.into_iter().map(|(clinic, number, login)| ((clinic, number), login)))
            .map(|((clinic, number), logins)| format!("clinic {clinic}, 医籍番号 {number}: {}", logins.join(", ")))
            .collect())
    }

    /// Fills `users.login_folded` where it is empty: rows from before migration 0009, or written
    /// by an older version since. Refuses, naming the accounts and changing nothing, when two
    /// login IDs of one clinic fold alike: merging or renaming accounts is an operator's call.
    async fn fill_login_folded(&self) -> Result<()> {
        let missing: Vec<(String, String)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, login_id FROM users WHERE login_folded IS NULL").fetch_all(pool).await
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        let all: Vec<(String, String)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT clinic_id, login_id FROM users").fetch_all(pool).await
        })?;
        let collisions: Vec<String> =
            group_accounts(all.into_iter().map(|(clinic, login)| ((clinic, crate::login_id::fold(&login)), login)))
                .filter(|(_, logins)| logins.len() > 1)
                .map(|((clinic, _), logins)| format!("clinic {clinic}: {}", logins.join(", ")))
                .collect();
        if !collisions.is_empty() {
            return Err(Error::NeedsOperator(format!(
                "login IDs must be unique per clinic ignoring width and case (NFKC and case folding), and these \
                 accounts would become one; rename or remove all but one of each group, then start again \
                 (nothing was changed; docs/security/login-ids.md): {}",
                collisions.join("; ")
            )));
        }
        with_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                for (id, login_id) in &missing {
                    sqlx::query("UPDATE users SET login_folded = $2 WHERE id = $1 AND login_folded IS NULL")
                        .bind(id)
                        .bind(crate::login_id::fold(login_id))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
        })?;
        Ok(())
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
            _ => Err(Error::Precondition("audit_head row missing")),
        }
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { write, read, inline, checkpointer, .. } => {
                checkpointer.stop();
                inline.close();
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
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

    // ---- clinics -------------------------------------------------------------------------

    /// Adds a clinic.
    pub async fn add_clinic(&self, id: &str, name: &str, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("INSERT INTO clinics (id, name, enabled, created_at, updated_at) VALUES ($1, $2, TRUE, $3, $3)")
                .bind(id)
                .bind(name)
                .bind(now)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// All clinics, by id.
    pub async fn list_clinics(&self) -> Result<Vec<Clinic>> {
        let rows: Vec<(String, String, bool, i64)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, name, enabled, created_at FROM clinics ORDER BY id")
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(Clinic::from).collect())
    }

    /// One clinic.
    pub async fn clinic(&self, id: &str) -> Result<Clinic> {
        let row: (String, String, bool, i64) = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, name, enabled, created_at FROM clinics WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
        })?;
        Ok(row.into())
    }

    /// Enables or disables a clinic; `NotFound` if there is none.
    pub async fn set_clinic_enabled(&self, id: &str, enabled: bool, now: i64) -> Result<()> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE clinics SET enabled = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(enabled)
                .bind(now)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    // ---- clinic certificates ----------------------------------------------------------------

    /// Registers a clinic certificate by fingerprint.
    pub async fn add_clinic_cert(&self, cert: &NewClinicCert<'_>, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO clinic_certs (fingerprint, clinic_id, subject, serial, not_after, revoked_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6)",
            )
            .bind(cert.fingerprint)
            .bind(cert.clinic_id)
            .bind(cert.subject)
            .bind(cert.serial)
            .bind(cert.not_after)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The registration of a certificate fingerprint, joined with its clinic.
    pub async fn clinic_cert(&self, fingerprint: &str) -> Result<ClinicCertBinding> {
        let row = read_one!(
            self,
            (String, String, Option<i64>, String, bool),
            "SELECT c.fingerprint, c.clinic_id, c.revoked_at, k.name, k.enabled
             FROM clinic_certs c JOIN clinics k ON k.id = c.clinic_id WHERE c.fingerprint = $1",
            fingerprint,
        )?;
        Ok(ClinicCertBinding {
            fingerprint: row.0,
            clinic_id: row.1,
            revoked: row.2.is_some(),
            clinic_name: row.3,
            clinic_enabled: row.4,
        })
    }

    /// Registered certificates, optionally of one clinic.
    pub async fn list_clinic_certs(&self, clinic_id: Option<&str>) -> Result<Vec<ClinicCert>> {
        type Row = (String, String, String, String, i64, Option<i64>, i64);
        let rows: Vec<Row> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT fingerprint, clinic_id, subject, serial, not_after, revoked_at, created_at FROM clinic_certs
                 WHERE ($1 IS NULL OR clinic_id = $1) ORDER BY clinic_id, created_at",
            )
            .bind(clinic_id)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| ClinicCert {
                fingerprint: r.0,
                clinic_id: r.1,
                subject: r.2,
                serial: r.3,
                not_after: r.4,
                revoked_at: r.5,
                created_at: r.6,
            })
            .collect())
    }

    /// Marks a registered certificate revoked; `NotFound` if it is not registered or already revoked.
    pub async fn revoke_clinic_cert(&self, fingerprint: &str, now: i64) -> Result<()> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE clinic_certs SET revoked_at = $2 WHERE fingerprint = $1 AND revoked_at IS NULL")
                .bind(fingerprint)
                .bind(now)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    // ---- users ------------------------------------------------------------------------------

    /// Adds a user.
    pub async fn add_user(&self, user: &NewUser<'_>, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (id, clinic_id, login_id, login_folded, kind, name, medical_reg_no, password_hash, enabled,
                    created_at, updated_at, password_temporary, password_set_at)
                 VALUES ($1, $2, $3, $9, $4, $5, $6, $7, TRUE, $8, $8, $10, $8)",
            )
            .bind(user.id)
            .bind(user.clinic_id)
            .bind(user.login_id)
            .bind(user.kind.as_str())
            .bind(user.name)
            .bind(user.medical_reg_no)
            .bind(user.password_hash)
            .bind(now)
            .bind(crate::login_id::fold(user.login_id))
            .bind(user.password_temporary)
            .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// A user by clinic and login ID, compared folded ([`crate::login_id::fold`]): `ＤＯＣＴＯＲ１`
    /// finds `doctor1`.
    pub async fn user_by_login(&self, clinic_id: &str, login_id: &str) -> Result<User> {
        let row: UserRow = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE clinic_id = $1 AND login_folded = $2"
            ))
            .bind(clinic_id)
            .bind(crate::login_id::fold(login_id))
            .fetch_one(pool)
            .await
        })?;
        User::try_from(row)
    }

    /// The account of a clinic holding a 医籍番号.
    pub async fn user_by_medical_reg_no(&self, clinic_id: &str, medical_reg_no: &str) -> Result<User> {
        let row: UserRow = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE clinic_id = $1 AND medical_reg_no = $2"
            ))
            .bind(clinic_id)
            .bind(medical_reg_no)
            .fetch_one(pool)
            .await
        })?;
        User::try_from(row)
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<User> {
        let row = read_one!(self, UserRow, concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"), id)?;
        User::try_from(row)
    }

    /// Users, optionally of one clinic.
    pub async fn list_users(&self, clinic_id: Option<&str>) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE ($1 IS NULL OR clinic_id = $1) ORDER BY clinic_id, login_id"
            ))
            .bind(clinic_id)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// Enables or disables a user.
    pub async fn set_user_enabled(&self, clinic_id: &str, login_id: &str, enabled: bool, now: i64) -> Result<User> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE users SET enabled = $3, updated_at = $4 WHERE clinic_id = $1 AND login_folded = $2")
                .bind(clinic_id)
                .bind(crate::login_id::fold(login_id))
                .bind(enabled)
                .bind(now)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        self.user_by_login(clinic_id, login_id).await
    }

    /// Replaces a user's password hash.
    pub async fn set_user_password(&self, clinic_id: &str, login_id: &str, hash: &str, temporary: bool, now: i64) -> Result<User> {
        let done = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE users SET password_hash = $3, password_temporary = $5, password_set_at = $4, updated_at = $4
                 WHERE clinic_id = $1 AND login_folded = $2",
            )
                .bind(clinic_id)
                .bind(crate::login_id::fold(login_id))
                .bind(hash)
                .bind(now)
                .bind(temporary)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(Error::NotFound);
        }
        self.user_by_login(clinic_id, login_id).await
    }

    /// Stores the password a user chose (a permanent one), if the stored hash is still
    /// `old_hash`: `false` when it changed meanwhile (an operator set another), so a doctor's
    /// change never overwrites an operator's.
    pub async fn replace_own_password(&self, user_id: &str, old_hash: &str, hash: &str, now: i64) -> Result<bool> {
        let done = write_execute!(
            self,
            "UPDATE users SET password_hash = $3, password_temporary = FALSE, password_set_at = $4, updated_at = $4
             WHERE id = $1 AND password_hash = $2",
            user_id,
            old_hash,
            hash,
            now,
        )?;
        Ok(done == 1)
    }

    // ---- login lockout -------------------------------------------------------------------------

    /// Until when `login_key` is locked, if it is locked at `now`.
    pub async fn login_locked_until(&self, login_key: &str, now: i64) -> Result<Option<i64>> {
        let row: Option<(Option<i64>,)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT locked_until FROM login_attempts WHERE login_key = $1")
                .bind(login_key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.and_then(|(until,)| until).filter(|&until| until > now))
    }

    /// Reserves one password check for `login_key` before it runs, in one atomic statement
    /// (several requests and instances may reserve at once): at most `max_failures` checks per
    /// window, then none until the lock time has passed. Every reserved check counts as a
    /// failure until [`Store::clear_login_failures`] forgets it after a right password, so a
    /// burst of guesses cannot run more checks than the limit while the first ones are still
    /// hashing (issue 15, item 1). A window or lock that has run out starts a fresh count.
    pub async fn reserve_login_attempt(&self, login_key: &str, now: i64, rules: &LockoutRules) -> Result<LoginReservation> {
        // `fresh`: the previous window ran out without a lock, or the lock ran out. A key locked
        // at `now` is never fresh, however old its window. `DO UPDATE … WHERE` changes and
        // returns nothing when the key is locked or at the limit: the attempt is refused.
        const SQL: &str = "
            INSERT INTO login_attempts (login_key, failures, window_start, locked_until, created_at, updated_at)
            VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 ELSE NULL END, $2, $2)
            ON CONFLICT (login_key) DO UPDATE SET
                failures = CASE WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                                  OR login_attempts.locked_until <= $2
                           THEN 1 ELSE login_attempts.failures + 1 END,
                window_start = CASE WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                                  OR login_attempts.locked_until <= $2
                           THEN $2 ELSE login_attempts.window_start END,
                locked_until = CASE
                    WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                      OR login_attempts.locked_until <= $2
                    THEN CASE WHEN 1 >= $3 THEN $2 + $5 ELSE NULL END
                    WHEN login_attempts.failures + 1 >= $3 THEN $2 + $5
                    ELSE NULL END,
                updated_at = $2
            WHERE (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
               OR login_attempts.locked_until <= $2
               OR (login_attempts.locked_until IS NULL AND login_attempts.failures < $3)
            RETURNING locked_until";
        let max = i64::from(rules.max_failures);
        let reserved =
            write_optional!(self, (Option<i64>,), SQL, login_key, now, max, rules.window_secs, rules.lockout_secs)?;
        if let Some((locks_at,)) = reserved {
            return Ok(LoginReservation::Reserved { locks_until: locks_at });
        }
        // Refused: say until when. A count at the limit without a lock (the limit was lowered
        // since) lasts until its window runs out.
        let (until,): (Option<i64>,) = with_reader!(self, |pool| {
            sqlx::query_as("SELECT COALESCE(locked_until, window_start + $2) FROM login_attempts WHERE login_key = $1")
                .bind(login_key)
                .bind(rules.window_secs)
                .fetch_optional(pool)
                .await
        })?
        .unwrap_or((None,));
        Ok(LoginReservation::Refused { until: until.unwrap_or(now + rules.lockout_secs) })
    }

    /// Forgets failures after a successful login.
    pub async fn clear_login_failures(&self, login_key: &str) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_attempts WHERE login_key = $1").bind(login_key).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
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

/// Values grouped by key, keys and values sorted (so a caller need not order rows by a key the
/// database cannot compute, such as a folded login ID).
fn group_accounts<K: Ord>(rows: impl IntoIterator<Item = (K, String)>) -> impl Iterator<Item = (K, Vec<String>)> {
    let mut rows: Vec<(K, String)> = rows.into_iter().collect();
    rows.sort();
    let mut groups: Vec<(K, Vec<String>)> = Vec::new();
    for (key, value) in rows {
        match groups.last_mut() {
            Some((last, values)) if *last == key => values.push(value),
            _ => groups.push((key, vec![value])),
        }
    }
    groups.into_iter()
}

fn corrupt(what: &str) -> Error {
    Error::Database(sqlx::Error::Decode(format!("unexpected value in {what}").into()))
}

/// What [`Store::reserve_login_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReservation {
    /// The password may be checked. `locks_until` is set when this was the last check the
    /// window allows: if it fails, the key stays locked until then.
    Reserved {
        /// The lock this attempt set, if it was the last one allowed.
        locks_until: Option<i64>,
    },
    /// Locked, or at the limit: the password must not be checked.
    Refused {
        /// When attempts are allowed again.
        until: i64,
    },
}

/// Lockout parameters, from [`crate::config::LoginConfig`].
#[derive(Debug, Clone, Copy)]
pub struct LockoutRules {
    /// Failures that lock.
    pub max_failures: u32,
    /// Counting window.
    pub window_secs: i64,
    /// Lock duration.
    pub lockout_secs: i64,
}

/// A clinic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Clinic {
    /// Clinic code.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Disabled clinics get nothing.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<(String, String, bool, i64)> for Clinic {
    fn from(r: (String, String, bool, i64)) -> Self {
        Self { id: r.0, name: r.1, enabled: r.2, created_at: r.3 }
    }
}

/// A certificate to register for a clinic.
#[derive(Debug)]
pub struct NewClinicCert<'a> {
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: &'a str,
    /// Owning clinic.
    pub clinic_id: &'a str,
    /// Subject DN, for operators.
    pub subject: &'a str,
    /// Serial number, hex.
    pub serial: &'a str,
    /// Unix seconds.
    pub not_after: i64,
}

/// A registered clinic certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClinicCert {
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: String,
    /// Owning clinic.
    pub clinic_id: String,
    /// Subject DN.
    pub subject: String,
    /// Serial number, hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    /// When an operator revoked it.
    pub revoked_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What the gate needs to know about a presented certificate.
#[derive(Debug, Clone)]
pub struct ClinicCertBinding {
    /// Fingerprint.
    pub fingerprint: String,
    /// The clinic it is registered to.
    pub clinic_id: String,
    /// Revoked by an operator.
    pub revoked: bool,
    /// The clinic's name.
    pub clinic_name: String,
    /// Whether the clinic is enabled.
    pub clinic_enabled: bool,
}

/// User types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    /// 医師: may authenticate for e-prescription signing.
    Doctor,
    /// Any other EMR user type.
    Staff,
}

impl UserKind {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Doctor => "doctor",
            UserKind::Staff => "staff",
        }
    }
}

impl FromStr for UserKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "doctor" => Ok(UserKind::Doctor),
            "staff" => Ok(UserKind::Staff),
            other => Err(format!("unknown user type {other:?} (expected doctor or staff)")),
        }
    }
}

/// A user to add.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// UUID.
    pub id: &'a str,
    /// Clinic.
    pub clinic_id: &'a str,
    /// Login ID, unique within the clinic after folding ([`crate::login_id::fold`]).
    pub login_id: &'a str,
    /// Type.
    pub kind: UserKind,
    /// Name.
    pub name: &'a str,
    /// 医籍番号 (doctors).
    pub medical_reg_no: Option<&'a str>,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// The user must choose a new password at the next login.
    pub password_temporary: bool,
}

macro_rules! user_columns {
    () => {
        "id, clinic_id, login_id, kind, name, medical_reg_no, password_hash, enabled, created_at, password_temporary, password_set_at"
    };
}
use user_columns;

type UserRow = (String, String, String, String, String, Option<String>, String, bool, i64, bool, i64);

/// A user account.
#[derive(Clone, serde::Serialize)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Login ID.
    pub login_id: String,
    /// Type.
    pub kind: UserKind,
    /// Name.
    pub name: String,
    /// 医籍番号.
    pub medical_reg_no: Option<String>,
    /// argon2id PHC string; never printed.
    #[serde(skip)]
    pub password_hash: String,
    /// Disabled users cannot log in.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// The password was set by an operator: the user chooses a new one at the next login.
    pub password_temporary: bool,
    /// When the password was last set (Unix seconds): a temporary one expires
    /// `login.temporary_password_secs` later.
    pub password_set_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("clinic_id", &self.clinic_id).finish_non_exhaustive()
    }
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(Self {
            id: r.0,
            clinic_id: r.1,
            login_id: r.2,
            kind: r.3.parse().map_err(|_| corrupt("users.kind"))?,
            name: r.4,
            medical_reg_no: r.5,
            password_hash: r.6,
            enabled: r.7,
            created_at: r.8,
            password_temporary: r.9,
            password_set_at: r.10,
        })
    }
}

/// What a trust anchor vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AnchorKind {
    /// Issuer of clinic TLS client certificates.
    Clinic,
    /// Issuer of EMR service-client TLS certificates.
    Service,
    /// HPKI authentication certificate issuer.
    Hpki,
    /// JPKI (My Number card) user-authentication certificate issuer.
    Jpki,
}

impl AnchorKind {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorKind::Clinic => "clinic",
            AnchorKind::Service => "service",
            AnchorKind::Hpki => "hpki",
            AnchorKind::Jpki => "jpki",
        }
    }
}

impl FromStr for AnchorKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "clinic" => Ok(AnchorKind::Clinic),
            "service" => Ok(AnchorKind::Service),
            "hpki" => Ok(AnchorKind::Hpki),
            "jpki" => Ok(AnchorKind::Jpki),
            _ => Err(()),
        }
    }
}

/// How revocation is checked for certificates under an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RevocationPolicy {
    /// A CRL must be present (and current); certificates are checked against it.
    Crl,
    /// No revocation data exists for this issuer; every use is logged.
    None,
}

impl RevocationPolicy {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationPolicy::Crl => "crl",
            RevocationPolicy::None => "none",
        }
    }
}

impl FromStr for RevocationPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "crl" => Ok(RevocationPolicy::Crl),
            "none" => Ok(RevocationPolicy::None),
            _ => Err(()),
        }
    }
}

/// A trusted CA certificate.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// What it vouches for.
    pub kind: AnchorKind,
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: String,
    /// Subject DN.
    pub subject: String,
    /// The certificate.
    pub cert_der: Vec<u8>,
    /// Revocation policy.
    pub revocation: RevocationPolicy,
    /// The current CRL, if any.
    pub crl_der: Option<Vec<u8>>,
    /// Unix seconds.
    pub updated_at: i64,
    /// Where the CRL is fetched from, if configured (`anchor add --crl-url`).
    pub crl_url: Option<String>,
    /// nextUpdate of `crl_der`, Unix seconds, where known.
    pub crl_next_update: Option<i64>,
    /// End-entity policies (`any`, or OIDs and arcs); `None`: the kind's default.
    pub policies: Option<String>,
    /// CRLs of CAs below the anchor.
    pub sub_crls: Vec<SubCrl>,
}

/// The CRL of an intermediate CA under an anchor.
#[derive(Debug, Clone)]
pub struct SubCrl {
    /// Lowercase hex SHA-256 of the CA's DER subject Name.
    pub issuer_sha256: String,
    /// The CA's subject.
    pub issuer_subject: String,
    /// The CA certificate the CRL was checked against.
    pub issuer_cert_der: Vec<u8>,
    /// The CRL.
    pub crl_der: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}
