//! Card login state (docs/design.md §3.3, §3.6): single-use card challenges and linked card credentials.
//!
//! A challenge is keyed by the SHA-256 of the browser-session id that asked for it, so there is at
//! most one pending challenge per browser session (a new one replaces it) and it can only be
//! taken by that session, for that doctor at that clinic, with one `DELETE … RETURNING`: a
//! replayed or concurrent finish, on any instance, finds nothing. Expiry is checked by the caller
//! *after* taking, so an expired challenge is consumed too.

use sqlx::{FromRow as _, Row as _};

use super::authenticators::{AuthenticatorTable, LinkAuthorisation, NewAuthenticator};
use super::{AnchorKind, Backend, Error, Result, Store, read_all, read_one, row, with_pool, write_execute, write_optional};

/// What a card challenge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum CardPurpose {
    /// Authentication that opens a signing session.
    SigningSession,
    /// Linking the presented card to the doctor (authorised by a code or an authenticator).
    Link,
    /// A presence check with a linked card that allows linking another authenticator
    /// ([`NewCardChallenge::then_link`]).
    Confirm,
}

impl CardPurpose {
    /// Database and API spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A challenge to store.
#[derive(Debug)]
pub struct NewCardChallenge<'a> {
    /// SHA-256 of the browser-session id.
    pub session_hash: &'a [u8; 32],
    /// The doctor.
    pub user_id: &'a str,
    /// The clinic of the device.
    pub clinic_id: &'a str,
    /// `hpki` or `jpki`.
    pub kind: AnchorKind,
    /// What for.
    pub purpose: CardPurpose,
    /// 32 random bytes.
    pub challenge: &'a [u8],
    /// A link authorised by this registration code.
    pub enrollment_code_id: Option<&'a str>,
    /// A link authorised by this authenticator (`<kind>:<id>`).
    pub linked_via: Option<&'a str>,
    /// For [`CardPurpose::Confirm`] (and only then): what is linked after the check, `fido`,
    /// `hpki` or `jpki`.
    pub then_link: Option<&'a str>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A challenge taken out of storage.
#[derive(Debug, Clone)]
pub struct CardChallenge {
    /// `hpki` or `jpki`.
    pub kind: AnchorKind,
    /// What for.
    pub purpose: CardPurpose,
    /// The challenge bytes.
    pub challenge: Vec<u8>,
    /// See [`NewCardChallenge::enrollment_code_id`].
    pub enrollment_code_id: Option<String>,
    /// See [`NewCardChallenge::linked_via`].
    pub linked_via: Option<String>,
    /// See [`NewCardChallenge::then_link`].
    pub then_link: Option<String>,
    /// Unix seconds; the caller refuses a challenge with `expires_at <= now`.
    pub expires_at: i64,
}

row! {
    /// A linked card.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct CardCredential {
        /// UUID.
        pub id: String,
        /// The doctor it is linked to.
        pub user_id: String,
        /// `hpki` or `jpki`.
        pub kind: String,
        /// Lowercase hex SHA-256 of the DER issuer Name.
        pub issuer_sha256: String,
        /// Serial number, lowercase hex.
        pub serial_hex: String,
        /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo.
        pub spki_sha256: String,
        /// Fingerprint of the certificate that was linked.
        pub cert_sha256: String,
        /// Certificate expiry, Unix seconds.
        pub not_after: i64,
        /// Name shown to the doctor.
        pub name: String,
        /// `code` or `<kind>:<authenticator id>`.
        pub linked_via: String,
        /// Unix seconds.
        pub last_used_at: Option<i64>,
        /// Unix seconds.
        pub created_at: i64,
    }
}

/// A card to link.
#[derive(Debug)]
pub struct NewCardCredential<'a> {
    /// New UUID.
    pub id: &'a str,
    /// The doctor.
    pub user_id: &'a str,
    /// `hpki` or `jpki`.
    pub kind: AnchorKind,
    /// See [`CardCredential::issuer_sha256`].
    pub issuer_sha256: &'a str,
    /// See [`CardCredential::serial_hex`].
    pub serial_hex: &'a str,
    /// See [`CardCredential::spki_sha256`].
    pub spki_sha256: &'a str,
    /// See [`CardCredential::cert_sha256`].
    pub cert_sha256: &'a str,
    /// Unix seconds.
    pub not_after: i64,
    /// Name shown to the doctor.
    pub name: &'a str,
}

macro_rules! card_columns {
    () => {
        "id, user_id, kind, issuer_sha256, serial_hex, spki_sha256, cert_sha256, not_after, name, linked_via, last_used_at, created_at"
    };
}

row! {
    /// A card challenge as taken.
    struct ChallengeRow {
        kind: String,
        purpose: String,
        challenge: Vec<u8>,
        enrollment_code_id: Option<String>,
        linked_via: Option<String>,
        then_link: Option<String>,
        expires_at: i64,
    }
}

fn card_kind(s: &str) -> Result<AnchorKind> {
    match s.parse() {
        Ok(k @ (AnchorKind::Hpki | AnchorKind::Jpki)) => Ok(k),
        _ => Err(super::corrupt("card kind")),
    }
}

/// A taken row as a [`CardChallenge`]; an unknown kind or purpose is corruption.
fn challenge(r: ChallengeRow) -> Result<CardChallenge> {
    Ok(CardChallenge {
        kind: card_kind(&r.kind)?,
        purpose: r.purpose.parse().map_err(|_| super::corrupt("card_challenges.purpose"))?,
        challenge: r.challenge,
        enrollment_code_id: r.enrollment_code_id,
        linked_via: r.linked_via,
        then_link: r.then_link,
        expires_at: r.expires_at,
    })
}

/// Records a card's use: $1 id, $2 now.
pub(super) const CARD_USE: &str = "UPDATE card_credentials SET last_used_at = $2, updated_at = $2 WHERE id = $1";

impl Store {
    /// Stores a challenge for a browser session, replacing any pending one of that session; with
    /// `only_if_linked`, only if the doctor has a linked card of its kind (a login or confirmation
    /// needs one), checked in the same statement. Returns whether it was stored.
    pub async fn put_card_challenge(&self, c: &NewCardChallenge<'_>, only_if_linked: bool, now: i64) -> Result<bool> {
        let stored = write_execute!(
            self,
            "INSERT INTO card_challenges (session_hash, user_id, clinic_id, kind, purpose, challenge,
                enrollment_code_id, linked_via, expires_at, created_at, then_link)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
             WHERE NOT $12 OR EXISTS (SELECT 1 FROM card_credentials WHERE user_id = $2 AND kind = $4)
             ON CONFLICT (session_hash) DO UPDATE SET user_id = excluded.user_id, clinic_id = excluded.clinic_id,
                kind = excluded.kind, purpose = excluded.purpose, challenge = excluded.challenge,
                enrollment_code_id = excluded.enrollment_code_id, linked_via = excluded.linked_via,
                expires_at = excluded.expires_at, created_at = excluded.created_at, then_link = excluded.then_link",
            &c.session_hash[..],
            c.user_id,
            c.clinic_id,
            c.kind.as_str(),
            c.purpose.as_str(),
            c.challenge,
            c.enrollment_code_id,
            c.linked_via,
            c.expires_at,
            now,
            c.then_link,
            only_if_linked,
        )?;
        Ok(stored == 1)
    }

    /// Takes (deletes and returns) the browser session's challenge, in one statement, if it was
    /// issued to this doctor at this clinic. `None` if there is none (never issued, taken before,
    /// or issued to another browser session).
    pub async fn take_card_challenge(
        &self,
        session_hash: &[u8; 32],
        user_id: &str,
        clinic_id: &str,
    ) -> Result<Option<CardChallenge>> {
        let row = write_optional!(
            self,
            ChallengeRow,
            "DELETE FROM card_challenges WHERE session_hash = $1 AND user_id = $2 AND clinic_id = $3
             RETURNING kind, purpose, challenge, enrollment_code_id, linked_via, then_link, expires_at",
            &session_hash[..],
            user_id,
            clinic_id,
        )?;
        row.map(challenge).transpose()
    }

    /// Takes the browser session's challenge, as [`Store::take_card_challenge`], and reads the
    /// linked card of the challenge's kind with this issuer and serial, whoever it belongs to
    /// (`None` when there is none). On PostgreSQL this is one statement, a round trip fewer on
    /// every card login (docs/decisions/0029-card-finish-reads-with-its-take.md); the read never
    /// decides whether the challenge is taken. On SQLite both run in-process.
    pub async fn take_card_challenge_and_credential(
        &self,
        session_hash: &[u8; 32],
        user_id: &str,
        clinic_id: &str,
        issuer_sha256: &str,
        serial_hex: &str,
    ) -> Result<Option<(CardChallenge, Option<CardCredential>)>> {
        let Backend::Postgres(pool) = &self.backend else {
            let Some(taken) = self.take_card_challenge(session_hash, user_id, clinic_id).await? else { return Ok(None) };
            let cred = match self.card_credential_by_card(taken.kind, issuer_sha256, serial_hex).await {
                Ok(c) => Some(c),
                Err(Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            return Ok(Some((taken, cred)));
        };
        // The challenge's columns are renamed so that the credential's keep the names
        // `CardCredential` decodes (both have `kind` and `linked_via`).
        let query = sqlx::query(concat!(
            "WITH taken AS (DELETE FROM card_challenges WHERE session_hash = $1 AND user_id = $2 AND clinic_id = $3
                 RETURNING kind AS challenge_kind, purpose AS challenge_purpose, challenge,
                           enrollment_code_id AS challenge_code, linked_via AS challenge_linked_via,
                           then_link AS challenge_then_link, expires_at AS challenge_expires_at)
             SELECT t.*, c.* FROM taken t LEFT JOIN (SELECT ",
            card_columns!(),
            " FROM card_credentials WHERE issuer_sha256 = $4 AND serial_hex = $5) c ON c.kind = t.challenge_kind"
        ))
        .bind(&session_hash[..])
        .bind(user_id)
        .bind(clinic_id)
        .bind(issuer_sha256)
        .bind(serial_hex);
        let Some(row) = self.pg_optional(pool, query).await? else { return Ok(None) };
        let taken = challenge(ChallengeRow {
            kind: row.try_get("challenge_kind")?,
            purpose: row.try_get("challenge_purpose")?,
            challenge: row.try_get("challenge")?,
            enrollment_code_id: row.try_get("challenge_code")?,
            linked_via: row.try_get("challenge_linked_via")?,
            then_link: row.try_get("challenge_then_link")?,
            expires_at: row.try_get("challenge_expires_at")?,
        })?;
        // The LEFT JOIN leaves every credential column NULL when no card matches.
        let cred = match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Some(CardCredential::from_row(&row)?),
            None => None,
        };
        Ok(Some((taken, cred)))
    }

    /// Deletes challenges that expired before `now`; returns how many.
    pub async fn purge_expired_card_challenges(&self, now: i64) -> Result<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM card_challenges WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?)
    }

    /// Number of stored challenges (tests check that finishes consume them).
    pub async fn count_card_challenges(&self) -> Result<i64> {
        let (n,): (i64,) =
            with_pool!(self, |pool| sqlx::query_as("SELECT COUNT(*) FROM card_challenges").fetch_one(pool).await)?;
        Ok(n)
    }

    /// Links a card (see `Store::link_authenticator`): `Precondition::EnrollmentCode` when the
    /// code was used, voided or expired meanwhile; a card already linked, to anyone, is
    /// `Error::Conflict` (`card_credentials_card_key` on PostgreSQL).
    pub async fn link_card_credential(&self, new: &NewCardCredential<'_>, auth: LinkAuthorisation<'_>, now: i64) -> Result<()> {
        self.link_authenticator(NewAuthenticator::Card(new), auth, now).await
    }

    /// The cards linked to a user, oldest first.
    pub async fn card_credentials_of(&self, user_id: &str) -> Result<Vec<CardCredential>> {
        read_all!(
            self,
            CardCredential,
            concat!("SELECT ", card_columns!(), " FROM card_credentials WHERE user_id = $1 ORDER BY created_at, id"),
            user_id,
        )
    }

    /// The linked card with this issuer and serial, whoever it belongs to.
    pub async fn card_credential_by_card(&self, kind: AnchorKind, issuer_sha256: &str, serial_hex: &str) -> Result<CardCredential> {
        read_one!(
            self,
            CardCredential,
            concat!("SELECT ", card_columns!(), " FROM card_credentials WHERE kind = $1 AND issuer_sha256 = $2 AND serial_hex = $3"),
            kind.as_str(),
            issuer_sha256,
            serial_hex,
        )
    }

    /// Renames a card of `user_id`; `NotFound` if it is not theirs.
    pub async fn rename_card_credential(&self, user_id: &str, id: &str, name: &str, now: i64) -> Result<()> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE card_credentials SET name = $3, updated_at = $4 WHERE id = $1 AND user_id = $2")
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

    /// Removes a card of `user_id` and, in the same transaction, ends the open signing sessions
    /// opened with it (docs/design.md §3.7). Returns the ids of the sessions ended; `NotFound` if the card
    /// is not theirs.
    pub async fn remove_card_credential(&self, user_id: &str, id: &str, now: i64) -> Result<Vec<String>> {
        self.remove_authenticator(AuthenticatorTable::Card, user_id, id, now).await
    }
}
