//! Database plumbing both services share: connecting to PostgreSQL with an error that names the
//! server, creating a private SQLite file, telling a passing outage from a real error, and the
//! migrations (each service embeds its own list and runs the same `sqlx` migrator over it).

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;

/// Embedded migrations: (version, description, SQLite SQL, PostgreSQL SQL). Built by hand rather
/// than with `sqlx::migrate!`, whose macro feature compiles both database drivers a second time
/// for the host; the result is the same `Migrator`.
pub type Migrations = &'static [(i64, &'static str, &'static str, &'static str)];

/// The migrator for one backend.
pub fn migrator(migrations: Migrations, postgres: bool) -> Migrator {
    use std::borrow::Cow;
    let migrations = migrations
        .iter()
        .map(|&(version, description, sqlite, pg)| {
            let sql: &'static str = if postgres { pg } else { sqlite };
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sqlx::SqlSafeStr::into_sql_str(sql), false)
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// Where a schema stands against a build's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStatus {
    /// No migration was ever applied (a new database).
    Empty,
    /// Older than this build: `pending` migrations to apply.
    Behind { pending: usize },
    /// Exactly this build's migrations.
    Current,
    /// A newer build migrated it (`unknown` is a version this build does not have).
    Ahead { unknown: i64 },
}

impl SchemaStatus {
    /// From the versions applied (successfully) and the build's migrations.
    pub fn of(applied: &[i64], migrations: Migrations) -> Self {
        let known: Vec<i64> = migrations.iter().map(|m| m.0).collect();
        if let Some(&unknown) = applied.iter().find(|v| !known.contains(v)) {
            return SchemaStatus::Ahead { unknown };
        }
        let pending = known.iter().filter(|v| !applied.contains(v)).count();
        match (applied.is_empty(), pending) {
            (true, _) => SchemaStatus::Empty,
            (false, 0) => SchemaStatus::Current,
            (false, pending) => SchemaStatus::Behind { pending },
        }
    }
}

/// The query that lists applied migrations ([`SchemaStatus::of`]).
pub const APPLIED_MIGRATIONS_SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Whether `e` says the migrations table does not exist: nothing was ever migrated (SQLite: "no
/// such table"; PostgreSQL: 42P01 undefined_table).
pub fn is_missing_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") || db.message().contains("no such table"))
}

/// The database could not be reached in time or dropped the connection: a retry may work.
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

/// Why a PostgreSQL pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server could not be reached or refused the login; `target` is
    /// `host:port (database name)`, never the password.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Unreachable { target: String, source: sqlx::Error },
    /// The URL was malformed, or the pool failed after the first connection worked.
    #[error("database error: {0}")]
    Other(#[from] sqlx::Error),
}

/// A PostgreSQL pool for `url` whose requests wait at most `acquire_timeout` for a connection:
/// during an outage requests fail fast instead of queueing.
pub async fn connect_postgres(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<PgPool, ConnectError> {
    let mut options = PgConnectOptions::from_str(url)?;
    // Every statement is prepared once per connection and run with parameters. With the default
    // `plan_cache_mode = auto` PostgreSQL plans most of them again at every execution (a custom
    // plan per set of values); ours are key lookups whose generic plan is the custom plan, so the
    // planning is wasted CPU on the server (about a third of it per token, BENCHMARKS.md). An
    // operator's own `options=-c plan_cache_mode=…` in the URL wins.
    if !url.contains("plan_cache_mode") {
        options = options.options([("plan_cache_mode", "force_generic_plan")]);
    }
    // One connection first, outside the pool: the pool retries until its timeout and then
    // reports only "pool timed out", while an operator needs the cause ("connection refused",
    // "password authentication failed").
    let target =
        format!("{}:{} (database {})", options.get_host(), options.get_port(), options.get_database().unwrap_or("postgres"));
    let unreachable = |source| ConnectError::Unreachable { target: target.clone(), source };
    match tokio::time::timeout(acquire_timeout, <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)).await {
        Ok(Ok(probe)) => {
            let _ = sqlx::Connection::close(probe).await;
        }
        Ok(Err(e)) => return Err(unreachable(e)),
        Err(_) => return Err(unreachable(sqlx::Error::PoolTimedOut)),
    }
    Ok(PgPoolOptions::new().max_connections(max_connections).acquire_timeout(acquire_timeout).connect_with(options).await?)
}

/// The options every SQLite connection starts from: `url`, a 10 s busy timeout, foreign keys on.
/// The file is created first, readable by its owner only ([`create_private`]).
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(10)).foreign_keys(true);
    create_private(options.get_filename()).map_err(sqlx::Error::Io)?;
    Ok(options)
}

/// Creates a missing SQLite file empty (a valid empty database) and readable by its owner only,
/// before SQLite would create it with 0644 less the umask: it holds password hashes, sessions
/// and sealed keys. SQLite gives the `-wal` and `-shm` files the main file's mode.
pub fn create_private(path: &std::path::Path) -> std::io::Result<()> {
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
