//! The signHash hot path on SQLite, run inline on `rusqlite` connections (the gateway's decision
//! 0008, for the same reason): through sqlx every statement is a hop to the connection's worker
//! thread and back, and a signHash ran seven of them (two reads, and an audit append of BEGIN,
//! head, insert, head update, COMMIT). Here a read is one call on a read-only connection on the
//! request's own thread, and the append one transaction on the writer connection.
//!
//! The statements are short and never wait for a lock: WAL readers run beside the writer, and the
//! writer is taken in turn through an async mutex before the blocking call. Everything else
//! (admin commands, PostgreSQL) stays on sqlx.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use infra::audit_chain::{AuditKey, audit_link};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use super::{AuditEntry, Error, Result, ServiceClient};

/// Read-only connections kept for reuse; more are opened under load and kept up to this many.
const MAX_IDLE_READERS: usize = 16;

/// How long a statement waits for a lock another process holds (instances may share the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The inline connections of one SQLite file.
pub(super) struct Inline {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: tokio::sync::Mutex<Connection>,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline").field("path", &self.path).finish()
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Inline(e)
    }
}

impl Inline {
    /// Opens the writer connection (the file exists: sqlx created it).
    pub(super) fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.pragma_update(None, "foreign_keys", true)?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self { path: path.to_owned(), readers: Mutex::new(Vec::new()), writer: tokio::sync::Mutex::new(writer) })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
                c.busy_timeout(BUSY_TIMEOUT)?;
                c
            }
        };
        let out = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(out?)
    }

    /// [`super::Store::client_by_fingerprint`].
    pub(super) fn client_by_fingerprint(&self, fingerprint: &str) -> Result<Option<ServiceClient>> {
        self.with_reader(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT c.id, c.name, c.fingerprint, c.subject, c.enabled, s.clinic_id FROM service_clients c
                 LEFT JOIN service_client_clinics s ON s.client_id = c.id WHERE c.fingerprint = ?1 ORDER BY s.clinic_id",
            )?;
            let mut rows = st.query(params![fingerprint])?;
            let mut client: Option<ServiceClient> = None;
            while let Some(r) = rows.next()? {
                let c = match client.as_mut() {
                    Some(c) => c,
                    None => client.insert(ServiceClient {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        fingerprint: r.get(2)?,
                        subject: r.get(3)?,
                        enabled: r.get(4)?,
                        clinics: Vec::new(),
                    }),
                };
                if let Some(clinic) = r.get::<_, Option<String>>(5)? {
                    c.clinics.push(clinic);
                }
            }
            Ok(client)
        })
    }

    /// [`super::Store::credential`], as the row tuple.
    pub(super) fn credential(&self, id: &str) -> Result<Option<super::CredentialRow>> {
        self.with_reader(|conn| {
            let mut st = conn.prepare_cached(super::credential_select!("WHERE id = ?1"))?;
            st.query_row(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                ))
            })
            .optional()
        })
    }

    /// Appends `events` to the chain in one transaction on the writer, `BEGIN IMMEDIATE` so the
    /// head cannot move between its read and the update (another process may share the file).
    pub(super) async fn append(&self, key: &AuditKey, events: &[AuditEntry]) -> Result<()> {
        let mut conn = self.writer.lock().await;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut seq, mut prev): (i64, Vec<u8>) =
            tx.prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_log (seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in events {
                seq += 1;
                let detail = e.detail.to_string();
                let link =
                    audit_link(Some(key), &prev, (seq, e.at, e.event, e.outcome, e.clinic_id.as_deref(), e.user_id.as_deref(), &detail));
                insert.execute(params![seq, e.at, e.event, e.outcome, e.clinic_id, e.user_id, detail, prev, link])?;
                prev = link;
            }
            tx.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?.execute(params![seq, prev])?;
        }
        tx.commit()?;
        Ok(())
    }
}
