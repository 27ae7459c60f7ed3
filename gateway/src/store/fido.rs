//! Linked FIDO credentials. The WebAuthn record itself is `fido::StoredCredential` JSON, which
//! this module stores without reading; the signature counter is mirrored in its own column so
//! that an update can be a compare-and-swap that never lowers it, even when two instances verify
//! assertions of the same credential at once (docs/fido-policy.md).

use super::authenticators::{AuthenticatorTable, LinkAuthorisation, NewAuthenticator};
use super::{Backend, Error, Result, Store, read_all, read_one, row, with_pool};

row! {
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

macro_rules! cred_columns {
    () => {
        "id, credential_id, user_id, name, aaguid, aaguid_attested, backup_eligible, stored, counter, linked_via, last_used_at, created_at"
    };
}

pub(super) use cred_columns;

/// Records an assertion: $1 id, $2 new stored state or NULL, $3 counter, $4 now, $5 strict. The
/// row changes only if the stored counter is still below the new one (strict, for an increasing
/// counter) or at most it (otherwise): the counter never goes down, and of two concurrent uses
/// reporting the same counter only one writes.
pub(super) const FIDO_USE: &str =
    "UPDATE fido_credentials SET stored = COALESCE($2, stored), counter = $3, last_used_at = $4, updated_at = $4
     WHERE id = $1 AND (counter < $3 OR (NOT $5 AND counter = $3))";

impl Store {
    /// Links a credential (see `Store::link_authenticator`): `Precondition::EnrollmentCode` when
    /// the code was used, voided or expired meanwhile; a credential ID already linked, to anyone,
    /// is `Error::Conflict`.
    pub async fn link_fido_credential(&self, new: &NewFidoCredential<'_>, auth: LinkAuthorisation<'_>, now: i64) -> Result<()> {
        self.link_authenticator(NewAuthenticator::Fido(new), auth, now).await
    }

    /// The credentials linked to a user, oldest first.
    pub async fn fido_credentials_of(&self, user_id: &str) -> Result<Vec<FidoCredential>> {
        read_all!(
            self,
            FidoCredential,
            concat!("SELECT ", cred_columns!(), " FROM fido_credentials WHERE user_id = $1 ORDER BY created_at, id"),
            user_id,
        )
    }

    /// A credential by its WebAuthn credential ID, whoever it belongs to.
    pub async fn fido_credential_by_credential_id(&self, credential_id: &[u8]) -> Result<FidoCredential> {
        read_one!(
            self,
            FidoCredential,
            concat!("SELECT ", cred_columns!(), " FROM fido_credentials WHERE credential_id = $1"),
            credential_id,
        )
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
        self.remove_authenticator(AuthenticatorTable::Fido, user_id, id, now).await
    }
}
