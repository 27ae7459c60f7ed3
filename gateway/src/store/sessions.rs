//! Browser-session rows for the tower-sessions store in `http::session`. Ids arrive already
//! hashed: the database never sees a usable session id.

use super::{Backend, Error, Result, Store, read_optional, with_pool, write_execute};

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

    /// Inserts or replaces a session.
    pub async fn session_save(&self, id_hash: &[u8], data: &str, expires_at: i64, now: i64) -> Result<()> {
        write_execute!(
            self,
            "INSERT INTO browser_sessions (id_hash, data, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (id_hash) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, updated_at = $4",
            id_hash,
            data,
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
