//! Database plumbing both services share: connecting to PostgreSQL with an error that names the
//! server, creating a private SQLite file, telling a passing outage from a real error, and the
//! migrations (each service embeds its own list and runs the same `sqlx` migrator over it).

use std::str::FromStr as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    // sqlx tests a pooled connection with a round trip each time it hands it out (and again when
    // it comes back, which cannot be turned off). Under load a connection is handed out hundreds
    // of times a second, and each test costs the server and the gateway a wake-up like a
    // statement's (BENCHMARKS.md, issue 25). So a connection is tested only when it may have
    // broken unseen: after `TEST_IF_IDLE_FOR` idle, or while a lost connection was seen lately
    // ([`connection_lost`]), so that after a server restart the dead connections are found and
    // replaced by the next requests, as before. One that fails is closed and another taken.
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if (meta.idle_for >= TEST_IF_IDLE_FOR || connections_suspect())
                    && let Err(e) = sqlx::Connection::ping(conn).await
                {
                    connection_lost();
                    return Err(e);
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?)
}

/// How long a pooled PostgreSQL connection may stay idle before it is tested when handed out.
const TEST_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// How long after a lost connection every pooled connection is tested when handed out.
const TEST_ALL_FOR: Duration = Duration::from_secs(10);
/// Until when (milliseconds on [`monotonic_ms`]) every connection is tested.
static TEST_ALL_UNTIL: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since this process first asked; only differences are used.
fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Whether a lost connection was seen lately ([`connection_lost`]): every pooled connection is
/// tested before use, and none is kept aside.
pub fn connections_suspect() -> bool {
    monotonic_ms() < TEST_ALL_UNTIL.load(Ordering::Relaxed)
}

/// Calls [`connection_lost`] when `e` says the connection itself failed (not a pool that timed
/// out waiting: that is load or an outage already seen). Both stores run every sqlx error here.
pub fn note_if_connection_lost(e: &sqlx::Error) {
    let lost = match e {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    };
    if lost {
        connection_lost();
    }
}

/// Notes that a PostgreSQL statement failed on a lost connection (a server restart, a cut
/// network): for the next `TEST_ALL_FOR`, every pooled connection of this process is tested
/// before it is handed out, so the other dead ones are closed instead of failing requests.
pub fn connection_lost() {
    let until = monotonic_ms().saturating_add(u64::try_from(TEST_ALL_FOR.as_millis()).unwrap_or(u64::MAX));
    TEST_ALL_UNTIL.fetch_max(until, Ordering::Relaxed);
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
