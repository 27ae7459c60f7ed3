//! Browser-session rows for `http::session`. Ids arrive already hashed: the database never sees
//! a usable session id.

use super::users::UserRow;
use super::{Backend, Result, Store, User, read_optional, row, with_pool, write_execute};

/// A browser session moving to a new id after a card or FIDO presence check (docs/design.md §3.2: at
/// every privilege change), by hashes. The move also records the check as the session's latest
/// proof with an authenticator.
#[derive(Debug, Clone)]
pub struct SessionMove {
    /// SHA-256 of the current id.
    pub from: [u8; 32],
    /// SHA-256 of the new id.
    pub to: [u8; 32],
    /// The moved session's new idle expiry, Unix seconds.
    pub expires_at: i64,
}

/// Moves a session after a presence check ($1 → $2); $3 expiry; $4 now (also the proof's time).
pub(super) const MOVE_SESSION: &str = "UPDATE browser_sessions SET id_hash = $2, expires_at = $3, updated_at = $4, reauth_at = $4
     WHERE id_hash = $1";

/// A session signed in with a password: whose it is, and what binds it.
#[derive(Debug, Clone)]
pub struct SessionSignIn<'a> {
    /// SHA-256 of the new id.
    pub id_hash: [u8; 32],
    /// The session data (JSON).
    pub data: &'a str,
    /// The signed-in user, so that an operator's password change can end the session.
    pub user_id: &'a str,
    /// SHA-256 of the clinic client certificate's fingerprint the session was created under.
    pub client_cert_sha256: [u8; 32],
    /// Idle expiry, Unix seconds.
    pub expires_at: i64,
    /// Absolute expiry, Unix seconds.
    pub absolute_expires_at: i64,
}

/// A live session as the session layer reads it.
#[derive(Debug, Clone)]
pub struct LoadedSession {
    /// The session data (JSON).
    pub data: String,
    /// Idle expiry, Unix seconds.
    pub expires_at: i64,
    /// Absolute expiry, Unix seconds.
    pub absolute_expires_at: i64,
    /// SHA-256 of the client certificate fingerprint it is bound to.
    pub client_cert_sha256: Vec<u8>,
    /// The latest card or FIDO proof in this session, Unix seconds.
    pub reauth_at: Option<i64>,
    /// The signed-in user's account as it is now, read with the session (one round trip for
    /// both on every page); `None` without a login or if the account is gone.
    pub user: Option<User>,
}

row! {
    /// A live `browser_sessions` row as [`Store::session_load`] selects it.
    struct LoadedRow {
        data: String,
        expires_at: i64,
        absolute_expires_at: i64,
        client_cert_sha256: Vec<u8>,
        reauth_at: Option<i64>,
        u_id: Option<String>,
        u_clinic_id: Option<String>,
        u_login_id: Option<String>,
        u_kind: Option<String>,
        u_name: Option<String>,
        u_medical_reg_no: Option<String>,
        u_password_hash: Option<String>,
        u_enabled: Option<bool>,
        u_created_at: Option<i64>,
        u_password_temporary: Option<bool>,
        u_password_set_at: Option<i64>,
        u_test_account: Option<bool>,
    }
}

impl Store {
    /// Inserts a new signed-in session; `false` if the id hash already exists (the caller picks
    /// a new id).
    pub async fn session_create(&self, s: &SessionSignIn<'_>, now: i64) -> Result<bool> {
        let done = write_execute!(
            self,
            "INSERT INTO browser_sessions (id_hash, data, expires_at, created_at, updated_at, user_id, client_cert_sha256,
                 absolute_expires_at, reauth_at)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, NULL) ON CONFLICT (id_hash) DO NOTHING",
            s.id_hash.as_slice(),
            s.data,
            s.expires_at,
            now,
            s.user_id,
            s.client_cert_sha256.as_slice(),
            s.absolute_expires_at,
        )?;
        Ok(done == 1)
    }

    /// Moves a session to a new id for a password sign-in, with everything a sign-in sets anew
    /// (no earlier proof carries over): `false` if there is no session under `from` any more
    /// (signed out, or moved by a concurrent request).
    pub async fn session_sign_in_move(&self, from: &[u8; 32], s: &SessionSignIn<'_>, now: i64) -> Result<bool> {
        let done = write_execute!(
            self,
            "UPDATE browser_sessions SET id_hash = $2, data = $3, expires_at = $4, updated_at = $5, user_id = $6,
                 client_cert_sha256 = $7, absolute_expires_at = $8, reauth_at = NULL
             WHERE id_hash = $1",
            from.as_slice(),
            s.id_hash.as_slice(),
            s.data,
            s.expires_at,
            now,
            s.user_id,
            s.client_cert_sha256.as_slice(),
            s.absolute_expires_at,
        )?;
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

    /// Records a card or FIDO proof in a session that did not move for it (a presence check
    /// that authorises linking).
    pub async fn session_mark_proven(&self, id_hash: &[u8], now: i64) -> Result<()> {
        write_execute!(self, "UPDATE browser_sessions SET reauth_at = $2, updated_at = $2 WHERE id_hash = $1", id_hash, now)?;
        Ok(())
    }

    /// A live session: neither its idle nor its absolute expiry has passed. A row without a
    /// binding or an absolute expiry (none is written without them) is not live.
    pub async fn session_load(&self, id_hash: &[u8], now: i64) -> Result<Option<LoadedSession>> {
        let row = read_optional!(
            self,
            LoadedRow,
            "SELECT b.data AS data, b.expires_at AS expires_at, b.absolute_expires_at AS absolute_expires_at,
                    b.client_cert_sha256 AS client_cert_sha256, b.reauth_at AS reauth_at,
                    u.id AS u_id, u.clinic_id AS u_clinic_id, u.login_id AS u_login_id, u.kind AS u_kind, u.name AS u_name,
                    u.medical_reg_no AS u_medical_reg_no, u.password_hash AS u_password_hash, u.enabled AS u_enabled,
                    u.created_at AS u_created_at, u.password_temporary AS u_password_temporary,
                    u.password_set_at AS u_password_set_at, u.test_account AS u_test_account
             FROM browser_sessions b LEFT JOIN users u ON u.id = b.user_id
             WHERE b.id_hash = $1 AND b.expires_at > $2 AND b.absolute_expires_at > $2 AND b.client_cert_sha256 IS NOT NULL",
            id_hash,
            now,
        )?;
        let Some(r) = row else { return Ok(None) };
        let user = match (
            r.u_id,
            r.u_clinic_id,
            r.u_login_id,
            r.u_kind,
            r.u_name,
            r.u_password_hash,
            r.u_enabled,
            r.u_created_at,
            r.u_password_temporary,
            r.u_password_set_at,
            r.u_test_account,
        ) {
            (
                Some(id),
                Some(clinic_id),
                Some(login_id),
                Some(kind),
                Some(name),
                Some(password_hash),
                Some(enabled),
                Some(created_at),
                Some(password_temporary),
                Some(password_set_at),
                Some(test_account),
            ) => Some(User::try_from(UserRow {
                id,
                clinic_id,
                login_id,
                kind,
                name,
                medical_reg_no: r.u_medical_reg_no,
                password_hash,
                enabled,
                created_at,
                password_temporary,
                password_set_at,
                test_account,
            })?),
            _ => None,
        };
        Ok(Some(LoadedSession {
            data: r.data,
            expires_at: r.expires_at,
            absolute_expires_at: r.absolute_expires_at,
            client_cert_sha256: r.client_cert_sha256,
            reauth_at: r.reauth_at,
            user,
        }))
    }

    /// Deletes every browser session of a user, except the one `keep` names (the doctor's own,
    /// after choosing a new password); returns how many went.
    pub async fn end_browser_sessions(&self, user_id: &str, keep: Option<&[u8]>) -> Result<u64> {
        let done = write_execute!(
            self,
            "DELETE FROM browser_sessions WHERE user_id = $1 AND ($2 IS NULL OR id_hash <> $2)",
            user_id,
            keep,
        )?;
        Ok(done)
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
