//! Inline SQLite statements for the hot paths (decision 0008).
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement to it over
//! a channel, so a point read that SQLite answers in a few microseconds costs two thread wake-ups
//! and context switches, plus a pool checkout: profiles of the token and login paths spent more
//! time there than in SQLite. Reads that every request makes therefore run here instead: on a
//! read-only connection, on the calling thread, with the statement prepared once per connection.
//! A WAL reader never waits for the writer, so the call is as short as the query.
//!
//! Reads run on read-only connections ([`InlineReaders`]). The hot paths' single-statement writes
//! (browser sessions, ceremony and challenge rows, FIDO counters) run on one read-write connection
//! ([`InlineWriter`]) behind the store's write lock, which every sqlx write takes as well: SQLite
//! still sees one writer at a time (decision 0007), so nobody meets `SQLITE_BUSY`. Opening a
//! signing session and the group commit (tokens and audit appends) are inline transactions; the
//! other transactions stay on sqlx's writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ToSql};

use super::{Error, Result};

/// How long a reader waits on a lock before giving up (only the rare WAL-index rebuilds take
/// one; normal reads never wait).
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL pages (4 KiB each) after which the checkpointer lets the WAL start over (16 MiB).
const RESTART_FRAMES: i64 = 4096;
/// Bytes a rewound WAL file is truncated to (SQLite's `journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Read-only connections to one SQLite file, opened on demand and reused.
#[derive(Debug)]
pub(super) struct InlineReaders {
    path: PathBuf,
    /// Connections not in use. At most one per thread that reads at once is ever opened.
    idle: Mutex<Vec<Connection>>,
}

impl InlineReaders {
    /// Readers of the (existing, WAL-mode) database file at `path`; one connection is opened now
    /// so a wrong path fails at start-up.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let readers = Self { path: path.to_owned(), idle: Mutex::new(Vec::new()) };
        let first = readers.connect()?;
        readers.put_back(first);
        Ok(readers)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(Error::Inline)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(Error::Inline)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Closes the idle connections (the store is closing; a later read opens a new one).
    pub(super) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Runs `read` on an idle connection (or a new one).
    pub(super) fn with<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(c) => c,
            None => self.connect()?,
        };
        let result = read(&conn);
        self.put_back(conn);
        result.map_err(inline_error)
    }

    /// At most one row of `sql` with `params`, decoded as the tuple `T`.
    pub(super) fn optional<T: FromRow>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Option<T>> {
        self.with(|conn| optional(conn, sql, params))
    }

    /// Every row of `sql` with `params`, decoded as tuples `T`.
    pub(super) fn all<T: FromRow>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<T>> {
        self.with(|conn| all(conn, sql, params))
    }
}

/// The read-write connection for inline writes. Only used while holding the store's write lock
/// (`Backend::Sqlite::writer`, a `tokio::sync::Mutex` around this), which sqlx writes take too.
#[derive(Debug)]
pub(super) struct InlineWriter {
    conn: Connection,
}

impl InlineWriter {
    /// The writer of the (existing, WAL-mode) database file at `path`.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(Error::Inline)?;
        // Another process (`gateway admin`) may hold the write lock for a moment.
        conn.busy_timeout(Duration::from_secs(10)).map_err(Error::Inline)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(Error::Inline)?;
        // As on sqlx's writer: in WAL mode, commits append to the WAL without an fsync (the
        // connection default, FULL, would fsync every commit while holding the write lock).
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(Error::Inline)?;
        // The checkpointer thread does this, outside the write lock.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(Error::Inline)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(Error::Inline)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn })
    }

    /// Runs `sql` with `params`; returns the number of rows changed.
    pub(super) fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<u64> {
        execute(&self.conn, sql, params).map_err(inline_error)
    }

    /// Runs `sql` (with `RETURNING`) with `params`; at most one row, decoded as the tuple `T`.
    pub(super) fn optional<T: FromRow>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Option<T>> {
        optional(&self.conn, sql, params).map_err(inline_error)
    }

    /// Opens a transaction (`BEGIN IMMEDIATE`) for `tx::transaction!`, which ends it with
    /// [`InlineWriter::finish`].
    pub(super) fn begin(&mut self) -> Result<&mut Connection> {
        // A transaction left open by a body that never finished (its future dropped) is undone.
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(&mut self.conn)
    }

    /// Commits the open transaction, or rolls it back (best effort: [`InlineWriter::begin`]
    /// undoes one that is still open).
    pub(super) fn finish(&mut self, commit: bool) -> Result<()> {
        if commit {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        } else if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        Ok(())
    }
}

/// Checkpoints the WAL on a thread of its own (decision 0009).
///
/// By default the connection whose commit grows the WAL past 1 000 pages copies them into the
/// database file and fsyncs it, inside its commit and so while holding the write lock: every
/// request waiting to write waited for that I/O too, which made the token path's p99 latency.
/// The writers therefore never checkpoint (`wal_autocheckpoint = 0`), and this thread runs a
/// PASSIVE checkpoint every [`CHECKPOINT_EVERY`], which blocks neither writers nor readers.
///
/// A PASSIVE checkpoint alone never lets the WAL start over under steady load: SQLite rewinds the
/// WAL only when a write begins with every frame already copied, and by then new commits have
/// appended more. So once the WAL holds [`RESTART_FRAMES`], the thread takes the store's write
/// lock and runs a RESTART checkpoint: it copies the few frames the PASSIVE one left, waits for
/// readers of the old frames to finish, and the next write rewinds the WAL (truncated to
/// [`WAL_SIZE_LIMIT`]). Writers wait for that short step only, once per
/// [`RESTART_FRAMES`] pages written. Every process that opens the store (`serve`, `admin`,
/// `migrate`) runs one; checkpoints from several connections at once are safe (SQLite serialises
/// them).
#[derive(Debug)]
pub(super) struct Checkpointer {
    /// Dropping the sender (on [`Checkpointer::stop`] or drop) ends the thread.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    #[cfg_attr(not(test), allow(dead_code))]
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the database file at `path`; `writer` is the
    /// store's write lock.
    pub(super) fn start(path: &Path, writer: std::sync::Arc<tokio::sync::Mutex<InlineWriter>>) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(Error::Inline)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(Error::Inline)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = checkpoint_step(&conn, &writer) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        Ok(Self { stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) })
    }

    /// Ends the thread (it finishes a checkpoint in progress, then closes its connection).
    pub(super) fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
    }

    /// Ends the thread and waits for it (tests that count WAL frames themselves).
    #[cfg(test)]
    pub(super) fn stop_and_wait(&self) {
        self.stop();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            thread.join().unwrap();
        }
    }
}

/// One round of the checkpointer on its connection `conn`: a PASSIVE checkpoint, then, if the WAL
/// holds [`RESTART_FRAMES`] or more, a RESTART one under the write lock `writer`. Blocks: call it
/// from a plain thread, never from a runtime worker.
fn checkpoint_step(conn: &Connection, writer: &tokio::sync::Mutex<InlineWriter>) -> rusqlite::Result<(i64, i64)> {
    match checkpoint(conn, Checkpoint::Passive)? {
        (frames, _) if frames >= RESTART_FRAMES => {
            let _write = writer.blocking_lock();
            checkpoint(conn, Checkpoint::Restart)
        }
        done => Ok(done),
    }
}

/// SQLite checkpoint modes the gateway uses.
#[derive(Debug, Clone, Copy)]
enum Checkpoint {
    /// Copies what no reader still needs; blocks nobody.
    Passive,
    /// Copies everything and waits for readers of the WAL, so the next write starts it over.
    Restart,
}

/// One checkpoint: (frames in the WAL, frames now in the database file).
fn checkpoint(conn: &Connection, mode: Checkpoint) -> rusqlite::Result<(i64, i64)> {
    let sql = match mode {
        Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Checkpoint::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    conn.query_row(sql, [], |r| Ok((r.get(1)?, r.get(2)?)))
}

/// Every row of `sql` with `params` on `conn`, decoded as tuples `T`.
pub(super) fn all<T: FromRow>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    collect(statement.raw_query())
}

/// Decodes every remaining row.
fn collect<T: FromRow>(mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(T::try_from(row)?);
    }
    Ok(out)
}

/// Runs `sql` with `params` on `conn`; returns the rows changed.
pub(super) fn execute(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    statement.raw_execute().map(|n| n as u64)
}

/// `sql` prepared (and cached) on `conn` with `params[i]` bound to parameter `i + 1`: for
/// multi-row statements (`tx::rows_sql`), whose `$N` appear in order, past the 16 names
/// [`bind`] knows.
fn positional<'c>(conn: &'c Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(sql)?;
    if params.len() != statement.parameter_count() {
        return Err(rusqlite::Error::InvalidParameterCount(params.len(), statement.parameter_count()));
    }
    for (i, param) in params.iter().enumerate() {
        statement.raw_bind_parameter(i + 1, param)?;
    }
    Ok(statement)
}

/// A multi-row statement (see [`positional`]); returns the rows changed.
pub(super) fn execute_positional(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<u64> {
    positional(conn, sql, params)?.raw_execute().map(|n| n as u64)
}

/// A multi-row statement with `RETURNING` (see [`positional`]); every returned row.
pub(super) fn all_positional<T: FromRow>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<Vec<T>> {
    collect(positional(conn, sql, params)?.raw_query())
}

/// Exactly one row of `sql` with `params` on `conn`.
pub(super) fn one<T: FromRow>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<T> {
    optional(conn, sql, params)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Column `name` of `row`, expected at index `at` (where the row's query lists it; otherwise it
/// is looked up by name, as rusqlite does, which compares every column name).
pub(super) fn column<T: rusqlite::types::FromSql>(row: &rusqlite::Row<'_>, at: usize, name: &str) -> rusqlite::Result<T> {
    match row.as_ref().column_name(at) {
        Ok(found) if found == name => row.get(at),
        _ => row.get(name),
    }
}

/// A row decodable from rusqlite (tuples of up to 16 columns, and the structs of `row!`).
pub(super) trait FromRow: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error> {}
impl<T> FromRow for T where T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error> {}

pub(super) fn optional<T: FromRow>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    let mut rows = statement.raw_query();
    let row = rows.next()?.map(T::try_from).transpose()?;
    // A `RETURNING` statement finishes its work when stepped to the end.
    while rows.next()?.is_some() {}
    Ok(row)
}

/// Constraint violations become [`Error::Conflict`], as on the sqlx paths.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        inline_error(e)
    }
}

fn inline_error(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, message) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            Error::Conflict(message.clone().unwrap_or_else(|| "constraint".to_owned()))
        }
        _ => Error::Inline(e),
    }
}

/// Binds `params[i]` to `$i+1` wherever it occurs. SQLite numbers named parameters in order of
/// first appearance, and a query may use `$2` before `$1`, so binding by position would swap
/// them; sqlx binds `$N` by name in the same way.
fn bind(statement: &mut rusqlite::Statement<'_>, params: &[&dyn ToSql]) -> rusqlite::Result<()> {
    const NAMES: [&str; 16] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];
    if params.len() > NAMES.len() || statement.parameter_count() > params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(params.len(), statement.parameter_count()));
    }
    for (name, param) in NAMES.iter().zip(params) {
        if let Some(index) = statement.parameter_index(name)? {
            statement.raw_bind_parameter(index, param)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, Store, batch_chunks};

    /// The inline writer must commit as sqlx's writer does: WAL without an fsync per commit
    /// (`synchronous = NORMAL`), foreign keys enforced.
    #[tokio::test]
    async fn inline_writer_matches_the_sqlx_writer_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("g.db").display()), 2).await.unwrap();
        store.migrate().await.unwrap();
        let Backend::Sqlite { writer, .. } = &store.backend else { unreachable!("a SQLite store") };
        let writer = writer.lock().await;
        let pragma = |name: &str| {
            writer.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0)).unwrap()
        };
        assert_eq!(pragma("journal_mode"), rusqlite::types::Value::Text("wal".into()));
        assert_eq!(pragma("synchronous"), rusqlite::types::Value::Integer(1));
        assert_eq!(pragma("foreign_keys"), rusqlite::types::Value::Integer(1));
        // Neither writer checkpoints while holding the write lock; the checkpointer thread does.
        assert_eq!(pragma("wal_autocheckpoint"), rusqlite::types::Value::Integer(0));
        assert_eq!(pragma("journal_size_limit"), rusqlite::types::Value::Integer(super::WAL_SIZE_LIMIT));
        let Backend::Sqlite { write, .. } = &store.backend else { unreachable!() };
        let sqlx_writer: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(write).await.unwrap();
        assert_eq!(sqlx_writer, 0);
        let sqlx_limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit").fetch_one(write).await.unwrap();
        assert_eq!(sqlx_limit, super::WAL_SIZE_LIMIT);
        // A duplicate key is refused as a conflict, as on the sqlx paths.
        let insert = "INSERT INTO browser_sessions (id_hash, data, expires_at, created_at, updated_at) VALUES ($1, $2, 1, 1, 1)";
        let params: [&dyn rusqlite::ToSql; 2] = [&b"x".as_slice(), &"{}"];
        assert_eq!(writer.execute(insert, &params).unwrap(), 1);
        let again = writer.execute(insert, &params);
        assert!(matches!(again, Err(super::Error::Conflict(_))), "{again:?}");
    }

    /// What the checkpointer thread runs: a PASSIVE checkpoint copies every committed frame
    /// beside an open writer, and after a RESTART one the next write starts the WAL over. (On a
    /// file of its own, so no checkpointer thread races the counts.)
    #[test]
    fn checkpoints_copy_frames_and_let_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "wal").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        for i in 0..50 {
            writer.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [i]).unwrap();
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (frames, done) = super::checkpoint(&conn, super::Checkpoint::Passive).unwrap();
        assert!(frames >= 50, "every commit appended to the WAL: {frames}");
        assert_eq!(done, frames, "every committed frame was copied");
        let again = super::checkpoint(&conn, super::Checkpoint::Passive).unwrap();
        assert_eq!(again, (frames, frames), "a second checkpoint finds nothing new");
        super::checkpoint(&conn, super::Checkpoint::Restart).unwrap();
        writer.execute("INSERT INTO t (k, v) VALUES (50, 'y')", []).unwrap();
        let (rewound, _) = super::checkpoint(&conn, super::Checkpoint::Passive).unwrap();
        assert!(rewound < 5, "the WAL started over: {rewound} frames, {frames} before");
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 51);
    }

    /// Under steady writes the WAL does not grow without bound: once it holds
    /// `RESTART_FRAMES`, a checkpointer round lets the next write start it over.
    #[tokio::test]
    async fn a_checkpointer_round_bounds_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()), 2).await.unwrap();
        store.migrate().await.unwrap();
        let Backend::Sqlite { writer, checkpointer, .. } = &store.backend else { unreachable!("a SQLite store") };
        // This test runs the checkpointer's rounds itself.
        checkpointer.stop_and_wait();
        let write = |i: usize| {
            let writer = writer.clone();
            async move {
                let id = format!("s{i}");
                let data = "x".repeat(6000);
                let params: [&dyn rusqlite::ToSql; 2] = [&id.as_bytes(), &data];
                writer
                    .lock()
                    .await
                    .execute(
                        "INSERT INTO browser_sessions (id_hash, data, expires_at, created_at, updated_at) VALUES ($1, $2, 1, 1, 1)",
                        &params,
                    )
                    .unwrap();
            }
        };
        // The store's checkpointer is stopped, so every commit stays in the WAL.
        for i in 0..2500 {
            write(i).await;
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let frames = |conn: &rusqlite::Connection| super::checkpoint(conn, super::Checkpoint::Passive).unwrap().0;
        // Under load some request is always reading: here one that began on the WAL before the
        // round and ends while the round waits for it (its connection's busy handler says when).
        // While such a reader is open a write cannot start the WAL over, so a PASSIVE checkpoint
        // alone would leave the WAL growing; the round's RESTART waits the reader out.
        static END_READER: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>> = std::sync::Mutex::new(None);
        fn end_reader() {
            if let Some(end) = END_READER.lock().unwrap().take() {
                let _ = end.send(());
            }
        }
        let (end, ended) = std::sync::mpsc::channel();
        *END_READER.lock().unwrap() = Some(end);
        conn.busy_handler(Some(|tries| {
            end_reader();
            std::thread::yield_now();
            tries < 1_000_000
        }))
        .unwrap();
        let began = std::sync::Arc::new(std::sync::Barrier::new(2));
        let reading = {
            let (began, path) = (began.clone(), path.clone());
            std::thread::spawn(move || {
                let reader = rusqlite::Connection::open(&path).unwrap();
                reader.execute_batch("BEGIN; SELECT count(*) FROM browser_sessions;").unwrap();
                began.wait();
                ended.recv().unwrap();
                reader.execute_batch("COMMIT").unwrap();
            })
        };
        began.wait();
        let before = frames(&conn);
        assert!(before >= super::RESTART_FRAMES, "{before} frames");
        write(2500).await;
        let appended = frames(&conn);
        assert!(appended > before, "with the reader open the write appended: {appended} frames, {before} before");
        let round = {
            let writer = writer.clone();
            tokio::task::spawn_blocking(move || super::checkpoint_step(&conn, &writer).map(|_| conn)).await.unwrap()
        };
        let conn = round.unwrap();
        write(2501).await;
        let after = frames(&conn);
        assert!(after < 16, "the WAL started over: {after} frames, {before} before");
        end_reader();
        reading.join().unwrap();
    }

    #[test]
    fn batches_split_into_power_of_two_chunks() {
        let split = |n: usize| batch_chunks(&vec![(); n]).map(<[()]>::len).collect::<Vec<_>>();
        assert_eq!(split(0), Vec::<usize>::new());
        assert_eq!(split(1), vec![1]);
        assert_eq!(split(7), vec![4, 2, 1]);
        assert_eq!(split(200), vec![128, 64, 8]);
        assert_eq!(split(300), vec![128, 128, 32, 8, 4]);
    }
}
