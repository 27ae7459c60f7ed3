//! Server-side WebAuthn ceremony state (docs/design.md §3.4, §4): written at start, taken at finish with
//! one `DELETE … RETURNING`, so a replayed finish, on this or any other instance, finds nothing.
//!
//! A ceremony is bound to the browser session that started it (keyed by the hash of its id, one
//! at a time: a new start replaces it) and names the doctor and clinic; taking it requires all
//! three to match. Expiry and purpose are checked by the caller *after* taking, so a finish of
//! the wrong kind or too late uses the ceremony up too, and the doctor is told "timed out"
//! rather than "not found".

use sqlx::{FromRow as _, Row as _};

use super::fido::{FidoCredential, cred_columns};
use super::{Backend, Result, Store, with_pool, with_reader, write_execute, write_optional};

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum CeremonyPurpose {
    /// Registration of a new credential (authorised by a code or an authenticator).
    Register,
    /// Authentication that opens a signing session.
    Authenticate,
    /// Authentication that authorises linking another authenticator.
    Link,
}

impl CeremonyPurpose {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A ceremony to store.
#[derive(Debug)]
pub struct NewCeremony<'a> {
    /// SHA-256 of the id of the browser session that starts it.
    pub session_hash: &'a [u8],
    /// The doctor.
    pub user_id: &'a str,
    /// The clinic of the device.
    pub clinic_id: &'a str,
    /// What for.
    pub purpose: CeremonyPurpose,
    /// `fido::RegistrationState` or `fido::AuthenticationState` JSON.
    pub state: &'a str,
    /// A registration authorised by this enrollment code.
    pub enrollment_code_id: Option<&'a str>,
    /// A registration authorised by this authenticator (`<kind>:<id>`).
    pub linked_via: Option<&'a str>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A ceremony taken out of storage.
#[derive(Debug, Clone)]
pub struct TakenCeremony {
    /// What it was started for.
    pub purpose: CeremonyPurpose,
    /// The stored state JSON.
    pub state: String,
    /// See [`NewCeremony::enrollment_code_id`].
    pub enrollment_code_id: Option<String>,
    /// See [`NewCeremony::linked_via`].
    pub linked_via: Option<String>,
    /// Unix seconds; the caller refuses a state with `expires_at <= now`.
    pub expires_at: i64,
}

/// A taken row as a [`TakenCeremony`]; an unknown purpose is corruption.
fn taken(purpose: String, state: String, enrollment_code_id: Option<String>, linked_via: Option<String>, expires_at: i64) -> Result<TakenCeremony> {
    let purpose = purpose.parse().map_err(|_| super::corrupt("webauthn_ceremonies.purpose"))?;
    Ok(TakenCeremony { purpose, state, enrollment_code_id, linked_via, expires_at })
}

impl Store {
    /// Stores a ceremony's state, replacing the browser session's earlier one.
    pub async fn put_ceremony(&self, c: &NewCeremony<'_>, now: i64) -> Result<()> {
        write_execute!(
            self,
            "INSERT INTO webauthn_ceremonies (session_hash, user_id, clinic_id, purpose, state, enrollment_code_id,
                linked_via, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (session_hash) DO UPDATE SET user_id = excluded.user_id, clinic_id = excluded.clinic_id,
                purpose = excluded.purpose, state = excluded.state, enrollment_code_id = excluded.enrollment_code_id,
                linked_via = excluded.linked_via, expires_at = excluded.expires_at, created_at = excluded.created_at",
            c.session_hash,
            c.user_id,
            c.clinic_id,
            c.purpose.as_str(),
            c.state,
            c.enrollment_code_id,
            c.linked_via,
            c.expires_at,
            now,
        )?;
        Ok(())
    }

    /// Takes (deletes and returns) the browser session's ceremony, in one statement, if doctor
    /// and clinic match. `None` if there is no such row, e.g. because it was taken before.
    pub async fn take_ceremony(&self, session_hash: &[u8], user_id: &str, clinic_id: &str) -> Result<Option<TakenCeremony>> {
        let row = write_optional!(
            self,
            (String, String, Option<String>, Option<String>, i64),
            "DELETE FROM webauthn_ceremonies WHERE session_hash = $1 AND user_id = $2 AND clinic_id = $3
             RETURNING purpose, state, enrollment_code_id, linked_via, expires_at",
            session_hash,
            user_id,
            clinic_id,
        )?;
        row.map(|(purpose, state, enrollment_code_id, linked_via, expires_at)| taken(purpose, state, enrollment_code_id, linked_via, expires_at))
            .transpose()
    }

    /// Takes the browser session's ceremony, as [`Store::take_ceremony`], and reads the credential
    /// an assertion names (`None` when no credential has that ID). On PostgreSQL this is one
    /// statement, a round trip fewer on every FIDO login (docs/decisions/0027-lighter-login-rows-on-postgresql.md);
    /// the read never decides whether the ceremony is taken. On SQLite both run in-process.
    pub async fn take_ceremony_and_credential(
        &self,
        session_hash: &[u8],
        user_id: &str,
        clinic_id: &str,
        credential_id: &[u8],
    ) -> Result<Option<(TakenCeremony, Option<FidoCredential>)>> {
        let Backend::Postgres(pool) = &self.backend else {
            let Some(taken) = self.take_ceremony(session_hash, user_id, clinic_id).await? else { return Ok(None) };
            let cred = match self.fido_credential_by_credential_id(credential_id).await {
                Ok(c) => Some(c),
                Err(super::Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            return Ok(Some((taken, cred)));
        };
        // The ceremony's columns are renamed so that the credential's keep the names
        // `FidoCredential` decodes.
        let query = sqlx::query(concat!(
            "WITH taken AS (DELETE FROM webauthn_ceremonies WHERE session_hash = $1 AND user_id = $2 AND clinic_id = $3
                 RETURNING purpose AS ceremony_purpose, state AS ceremony_state, enrollment_code_id AS ceremony_code,
                           linked_via AS ceremony_linked_via, expires_at AS ceremony_expires_at)
             SELECT t.*, c.* FROM taken t LEFT JOIN (SELECT ",
            cred_columns!(),
            " FROM fido_credentials WHERE credential_id = $4) c ON TRUE"
        ))
        .bind(session_hash)
        .bind(user_id)
        .bind(clinic_id)
        .bind(credential_id);
        let Some(row) = self.pg_optional(pool, query).await? else { return Ok(None) };
        let ceremony = taken(
            row.try_get("ceremony_purpose")?,
            row.try_get("ceremony_state")?,
            row.try_get("ceremony_code")?,
            row.try_get("ceremony_linked_via")?,
            row.try_get("ceremony_expires_at")?,
        )?;
        // The LEFT JOIN leaves every credential column NULL when no credential has that ID.
        let cred = match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Some(FidoCredential::from_row(&row)?),
            None => None,
        };
        Ok(Some((ceremony, cred)))
    }

    /// Deletes ceremony states that expired before `now`; returns how many.
    pub async fn purge_expired_ceremonies(&self, now: i64) -> Result<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?)
    }

    /// Number of stored ceremony states (tests check that finishes consume them).
    pub async fn count_ceremonies(&self) -> Result<i64> {
        let (n,): (i64,) = with_reader!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM webauthn_ceremonies").fetch_one(pool).await
        })?;
        Ok(n)
    }
}
