//! Browser-session rows for `http::session`. Ids arrive already hashed: the database never sees
//! a usable session id.

use super::{Backend, Error, Result, Store, read_optional, with_pool, write_execute};

/// A browser session moving to a new id (DESIGN §3.2: at every privilege change), by hashes.
#[derive(Debug, Clone)]
pub struct SessionMove {
    /// SHA-256 of the current id.
    pub from: [u8; 32],
    /// SHA-256 of the new id.
    pub to: [u8; 32],
    /// The moved session's new idle expiry, Unix seconds.
    pub expires_at: i64,
}

/// Moves a session ($1 → $2); $3 is new data or NULL to keep it; $4 expiry; $5 now.
pub(super) const MOVE_SESSION: &str = "UPDATE browser_sessions SET id_hash = $2, data = COALESCE($3, data), expires_at = $4,
        updated_at = $5
     WHERE id_hash = $1";

impl Store {
    /// Inserts a new session; `false` if the id hash already exists (the caller picks a new id).
    pub async fn session_create(&self, id_hash: &[u8], data: &str, expires_at: i64, now: i64) -> Result<bool> {
        let done = write_execute!(
            self,
            "INSERT INTO browser_sessions (id_hash, data, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id_hash) DO NOTHING",
            id_hash,
            data,
            expires_at,
            now,
        )?;
        Ok(done == 1)
    }

    /// Moves a session to a new id (and, with `data`, new data): `false` if there is no session
    /// under the old id any more (signed out, or moved by a concurrent request).
    pub async fn session_move(&self, step: &SessionMove, data: Option<&str>, now: i64) -> Result<bool> {
        let done = write_execute!(self, MOVE_SESSION, step.from.as_slice(), step.to.as_slice(), data, step.expires_at, now)?;
        Ok(done == 1)
    }

    /// Pushes a session's idle expiry forward.
    pub async fn session_touch(&self, id_hash: &[u8], expires_at: i64, now: i64) -> Result<()> {
        write_execute!(
            self,
            "UPDATE browser_sessions SET expires_at = $2, updated_at = $3 WHERE id_hash = $1",
            id_hash,
            expires_at,
            now,
        )?;
        Ok(())
    }

    /// A live session's data and expiry.
    pub async fn session_load(&self, id_hash: &[u8], now: i64) -> Result<Option<(String, i64)>> {
        let row = read_optional!(
            self,
            (String, i64),
            "SELECT data, expires_at FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2",
            id_hash,
            now,
        )?;
        Ok(row)
    }

    /// Deletes a session.
    pub async fn session_delete(&self, id_hash: &[u8]) -> Result<()> {
        write_execute!(self, "DELETE FROM browser_sessions WHERE id_hash = $1", id_hash)?;
        Ok(())
    }

    /// Deletes expired sessions and stale lockout counters; returns how many sessions went.
    pub async fn purge_expired(&self, now: i64, lockout_horizon: i64) -> Result<u64> {
        let done = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1").bind(now).execute(pool).await.map(|r| r.rows_affected())
        })?;
        with_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM login_attempts WHERE updated_at <= $1 AND (locked_until IS NULL OR locked_until <= $2)",
            )
            .bind(now - lockout_horizon)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(done)
    }
}
