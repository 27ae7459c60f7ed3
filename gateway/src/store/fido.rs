//! Linked FIDO credentials. The WebAuthn record itself is `fido::StoredCredential` JSON, which
//! this module stores without reading; the signature counter is mirrored in its own column so
//! that an update can be a compare-and-swap that never lowers it, even when two instances verify
//! assertions of the same credential at once (docs/fido-policy.md).

use super::signing::EndReason;
use super::{Backend, Error, Precondition, Result, Store, read_all, read_one, with_pool};

/// A linked FIDO credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FidoCredential {
    /// UUID: what URLs, audit rows and operators use.
    pub id: String,
    /// WebAuthn `rawId`.
    pub credential_id: Vec<u8>,
    /// The doctor it is linked to.
    pub user_id: String,
    /// Name shown to the doctor.
    pub name: String,
    /// Authenticator model (all zeros when withheld).
    pub aaguid: String,
    /// Whether `aaguid` was proven by a verified attestation.
    pub aaguid_attested: bool,
    /// A synced (multi-device) passkey.
    pub backup_eligible: bool,
    /// `fido::StoredCredential` JSON.
    pub stored: String,
    /// Signature counter after the last successful use.
    pub counter: i64,
    /// `code` or `<kind>:<authenticator id>` that authorised the link.
    pub linked_via: String,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A credential to link.
#[derive(Debug)]
pub struct NewFidoCredential<'a> {
    /// New UUID.
    pub id: &'a str,
    /// WebAuthn `rawId`.
    pub credential_id: &'a [u8],
    /// The doctor.
    pub user_id: &'a str,
    /// Name shown to the doctor.
    pub name: &'a str,
    /// Authenticator model.
    pub aaguid: &'a str,
    /// Proven by attestation.
    pub aaguid_attested: bool,
    /// Synced passkey.
    pub backup_eligible: bool,
    /// `fido::StoredCredential` JSON.
    pub stored: &'a str,
    /// Initial counter.
    pub counter: i64,
}

/// What allowed a doctor to link a new authenticator (docs/design.md §3.6).
#[derive(Debug, Clone, Copy)]
pub enum LinkAuthorisation<'a> {
    /// A one-time registration code, consumed in the same transaction as the link.
    Code {
        /// `enrollment_codes.id`.
        code_id: &'a str,
    },
    /// An authentication just now with an authenticator already linked to the doctor.
    Authenticator {
        /// `<kind>:<id>`, e.g. `fido:<uuid>`.
        via: &'a str,
    },
}

type CredRow = (String, Vec<u8>, String, String, String, bool, bool, String, i64, String, Option<i64>, i64);

macro_rules! cred_columns {
    () => {
        "id, credential_id, user_id, name, aaguid, aaguid_attested, backup_eligible, stored, counter, linked_via, last_used_at, created_at"
    };
}

impl From<CredRow> for FidoCredential {
    fn from(r: CredRow) -> Self {
        Self {
            id: r.0,
            credential_id: r.1,
            user_id: r.2,
            name: r.3,
            aaguid: r.4,
            aaguid_attested: r.5,
            backup_eligible: r.6,
            stored: r.7,
            counter: r.8,
            linked_via: r.9,
            last_used_at: r.10,
            created_at: r.11,
        }
    }
}

/// Records an assertion: $1 id, $2 new stored state or NULL, $3 counter, $4 now, $5 strict. The
/// row changes only if the stored counter is still below the new one (strict, for an increasing
/// counter) or at most it (otherwise): the counter never goes down, and of two concurrent uses
/// reporting the same counter only one writes.
pub(super) const FIDO_USE: &str =
    "UPDATE fido_credentials SET stored = COALESCE($2, stored), counter = $3, last_used_at = $4, updated_at = $4
     WHERE id = $1 AND (counter < $3 OR (NOT $5 AND counter = $3))";

impl Store {
    /// Links a credential. With [`LinkAuthorisation::Code`] the code is consumed in the same
    /// transaction, and the link fails with `Error::Precondition("enrollment_code")` if the code
    /// was used, voided or expired meanwhile (on this or another instance). A credential ID that
    /// is already linked, to anyone, is `Error::Conflict`.
    pub async fn link_fido_credential(&self, new: &NewFidoCredential<'_>, auth: LinkAuthorisation<'_>, now: i64) -> Result<()> {
        let linked_via = match auth {
            LinkAuthorisation::Code { .. } => "code",
            LinkAuthorisation::Authenticator { via } => via,
        };
        let code_id = match auth {
            LinkAuthorisation::Code { code_id } => Some(code_id),
            LinkAuthorisation::Authenticator { .. } => None,
        };
        let code_ok = with_pool!(self, |pool| {
            {
                let mut tx = pool.begin().await?;
                let code_ok = match code_id {
                    Some(code_id) => {
                        sqlx::query(super::enrollment::CONSUME_CODE_SQL)
                        .bind(code_id)
                        .bind(new.user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    }
                    None => true,
                };
                if code_ok {
                    sqlx::query(
                        "INSERT INTO fido_credentials (id, credential_id, user_id, name, aaguid, aaguid_attested,
                            backup_eligible, stored, counter, linked_via, last_used_at, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)",
                    )
                    .bind(new.id)
                    .bind(new.credential_id)
                    .bind(new.user_id)
                    .bind(new.name)
                    .bind(new.aaguid)
                    .bind(new.aaguid_attested)
                    .bind(new.backup_eligible)
                    .bind(new.stored)
                    .bind(new.counter)
                    .bind(linked_via)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                code_ok
            }
        });
        if code_ok { Ok(()) } else { Err(Error::Precondition(Precondition::EnrollmentCode)) }
    }

    /// The credentials linked to a user, oldest first.
    pub async fn fido_credentials_of(&self, user_id: &str) -> Result<Vec<FidoCredential>> {
        let rows = read_all!(
            self,
            CredRow,
            concat!("SELECT ", cred_columns!(), " FROM fido_credentials WHERE user_id = $1 ORDER BY created_at, id"),
            user_id,
        )?;
        Ok(rows.into_iter().map(FidoCredential::from).collect())
    }

    /// A credential by its WebAuthn credential ID, whoever it belongs to.
    pub async fn fido_credential_by_credential_id(&self, credential_id: &[u8]) -> Result<FidoCredential> {
        let row = read_one!(
            self,
            CredRow,
            concat!("SELECT ", cred_columns!(), " FROM fido_credentials WHERE credential_id = $1"),
            credential_id,
        )?;
        Ok(row.into())
    }

    /// Renames a credential of `user_id`; `NotFound` if it is not theirs.
    pub async fn rename_fido_credential(&self, user_id: &str, id: &str, name: &str, now: i64) -> Result<()> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE fido_credentials SET name = $3, updated_at = $4 WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .bind(name)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if done == 1 { Ok(()) } else { Err(Error::NotFound) }
    }

    /// Removes a credential of `user_id` and, in the same transaction, ends the open signing
    /// sessions opened with it (docs/design.md §3.7). Returns the ids of the sessions ended; `NotFound`
    /// if the credential is not theirs.
    pub async fn remove_fido_credential(&self, user_id: &str, id: &str, now: i64) -> Result<Vec<String>> {
        let removed: Option<Vec<(String,)>> = with_pool!(self, |pool| {
            {
                let mut tx = pool.begin().await?;
                let gone = sqlx::query("DELETE FROM fido_credentials WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 1 {
                    let ended: Vec<(String,)> = sqlx::query_as(
                        "UPDATE signing_sessions SET ended_at = $3, ended_reason = $4, updated_at = $3
                         WHERE authenticator_kind = 'fido' AND authenticator_id = $1 AND user_id = $2 AND ended_at IS NULL
                         RETURNING id",
                    )
                    .bind(id)
                    .bind(user_id)
                    .bind(now)
                    .bind(EndReason::AuthenticatorRemoved.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Some(ended)
                } else {
                    None
                }
            }
        });
        removed.map(|v| v.into_iter().map(|(id,)| id).collect()).ok_or(Error::NotFound)
    }
}
