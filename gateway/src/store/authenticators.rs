//! Linking and removing authenticators (docs/design.md §3.6, §3.7): one path for every kind, FIDO
//! credentials and cards; only the table and its columns differ.

use super::enrollment::CONSUME_CODE_SQL;
use super::signing::EndReason;
use super::{
    Backend, Error, NewCardCredential, NewFidoCredential, Precondition, Result, Store, row, transaction, tx_execute,
    tx_fetch,
};

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

/// An authenticator to link.
#[derive(Debug, Clone, Copy)]
pub(super) enum NewAuthenticator<'a> {
    /// A FIDO credential.
    Fido(&'a NewFidoCredential<'a>),
    /// A card.
    Card(&'a NewCardCredential<'a>),
}

impl NewAuthenticator<'_> {
    fn user_id(&self) -> &str {
        match self {
            NewAuthenticator::Fido(c) => c.user_id,
            NewAuthenticator::Card(c) => c.user_id,
        }
    }
}

/// Where a kind of authenticator is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum AuthenticatorTable {
    /// `fido_credentials`.
    Fido,
    /// `card_credentials`.
    Card,
}

impl AuthenticatorTable {
    /// Deletes authenticator `$1` of user `$2`, returning the `authenticator_kind` its signing
    /// sessions carry.
    fn delete_sql(self) -> &'static str {
        match self {
            AuthenticatorTable::Fido => {
                "DELETE FROM fido_credentials WHERE id = $1 AND user_id = $2 RETURNING CAST('fido' AS TEXT) AS kind"
            }
            AuthenticatorTable::Card => "DELETE FROM card_credentials WHERE id = $1 AND user_id = $2 RETURNING kind",
        }
    }
}

const INSERT_FIDO: &str = "INSERT INTO fido_credentials (id, credential_id, user_id, name, aaguid, aaguid_attested,
        backup_eligible, stored, counter, linked_via, last_used_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)";

const INSERT_CARD: &str = "INSERT INTO card_credentials (id, user_id, kind, issuer_sha256, serial_hex, spki_sha256,
        cert_sha256, not_after, name, linked_via, last_used_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)";

/// Ends the open signing sessions opened with authenticator `$1` (kind `$5`) of user `$2`.
const END_SESSIONS: &str = "UPDATE signing_sessions SET ended_at = $3, ended_reason = $4, updated_at = $3
     WHERE authenticator_kind = $5 AND authenticator_id = $1 AND user_id = $2 AND ended_at IS NULL
     RETURNING id";

row! {
    /// The kind of a removed authenticator.
    struct KindRow {
        kind: String,
    }
}

row! {
    /// An ended signing session.
    struct IdRow {
        id: String,
    }
}

impl Store {
    /// Links an authenticator. With [`LinkAuthorisation::Code`] the code is consumed in the same
    /// transaction: `Precondition::EnrollmentCode` if it was used, voided or expired meanwhile
    /// (on this or another instance). One already linked, to anyone, is `Error::Conflict`.
    pub(super) async fn link_authenticator(&self, new: NewAuthenticator<'_>, auth: LinkAuthorisation<'_>, now: i64) -> Result<()> {
        let (linked_via, code_id) = match auth {
            LinkAuthorisation::Code { code_id } => ("code", Some(code_id)),
            LinkAuthorisation::Authenticator { via } => (via, None),
        };
        let user_id = new.user_id();
        transaction!(self, |tx| {
            if let Some(code_id) = code_id
                && tx_execute!(tx, CONSUME_CODE_SQL, code_id, user_id, now)? != 1
            {
                return Err(Error::Precondition(Precondition::EnrollmentCode));
            }
            match new {
                NewAuthenticator::Fido(c) => tx_execute!(
                    tx,
                    INSERT_FIDO,
                    c.id,
                    c.credential_id,
                    c.user_id,
                    c.name,
                    c.aaguid,
                    c.aaguid_attested,
                    c.backup_eligible,
                    c.stored,
                    c.counter,
                    linked_via,
                    now,
                )?,
                NewAuthenticator::Card(c) => tx_execute!(
                    tx,
                    INSERT_CARD,
                    c.id,
                    c.user_id,
                    c.kind.as_str(),
                    c.issuer_sha256,
                    c.serial_hex,
                    c.spki_sha256,
                    c.cert_sha256,
                    c.not_after,
                    c.name,
                    linked_via,
                    now,
                )?,
            };
            Ok(())
        })
    }

    /// Removes authenticator `id` of `user_id` and, in the same transaction, ends the open
    /// signing sessions opened with it (docs/design.md §3.7). Returns the ids of the sessions
    /// ended; `NotFound` if it is not theirs.
    pub(super) async fn remove_authenticator(&self, table: AuthenticatorTable, user_id: &str, id: &str, now: i64) -> Result<Vec<String>> {
        let reason = EndReason::AuthenticatorRemoved.as_str();
        transaction!(self, |tx| {
            let Some(gone) = tx_fetch!(tx, optional, KindRow, table.delete_sql(), id, user_id)? else {
                return Err(Error::NotFound);
            };
            let ended = tx_fetch!(tx, all, IdRow, END_SESSIONS, id, user_id, now, reason, &gone.kind)?;
            Ok(ended.into_iter().map(|r| r.id).collect())
        })
    }
}
