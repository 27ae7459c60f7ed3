//! Signing sessions (docs/design.md §3.7): what a successful presence check opens, what the EMR token API
//! reads, and what logout, account disable, authenticator removal and operators end.
//!
//! Every rule is decided in the database with the caller's `now`, so it holds across instances:
//! a session is *live* while it is not ended, `now < expires_at` (absolute lifetime) and
//! `now < last_activity_at + idle_secs` (idle timeout). [`Store::touch_signing_session`] checks
//! both and records activity in one statement. The store is generic over the method (`fido`,
//! `hpki`, `jpki`) and the authenticator, so card login uses the same functions.


use super::audit::append_audit;
use super::audit_pending::{bind_rows, queue_rows, queued};
use super::cards::CARD_USE;
use super::fido::FIDO_USE;
use super::sessions::{MOVE_SESSION, SessionMove};
use super::tx::Conn;
use super::{
    AuditEvent, Backend, Error, Precondition, Result, Store, corrupt, row, transaction, tx_execute, tx_fetch, with_pool,
    with_reader, write_execute,
};

/// How the doctor proved presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AuthMethod {
    /// WebAuthn (docs/design.md §3.4).
    Fido,
    /// HPKI card (docs/design.md §3.3).
    Hpki,
    /// My Number card, JPKI user authentication (docs/design.md §3.3).
    Jpki,
}

impl AuthMethod {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}


/// Why a signing session ended (stored in `ended_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum EndReason {
    /// The doctor pressed the end button.
    #[strum(serialize = "ended_by_doctor")]
    Doctor,
    /// The doctor signed out.
    Logout,
    /// A new session for the same doctor and clinic replaced it.
    Superseded,
    /// Found expired when a new one was opened (recorded for the history only).
    Expired,
    /// The authenticator it was opened with was removed.
    AuthenticatorRemoved,
    /// The doctor's account was disabled.
    AccountDisabled,
    /// An operator ended it.
    Operator,
    /// An operator set the doctor's password.
    PasswordChanged,
}

impl EndReason {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A session to open.
#[derive(Debug)]
pub struct NewSigningSession<'a> {
    /// The doctor.
    pub user_id: &'a str,
    /// The clinic whose device the presence check came through.
    pub clinic_id: &'a str,
    /// The method.
    pub method: AuthMethod,
    /// Kind of authenticator used (`fido`, `hpki`, `jpki`): removal of that authenticator ends
    /// the session.
    pub authenticator_kind: &'a str,
    /// Its id (e.g. `fido_credentials.id`).
    pub authenticator_id: &'a str,
    /// RFC 8176 authentication method references.
    pub amr: &'a [&'a str],
    /// Authentication context class (`aal3` or `aal2`).
    pub acr: &'a str,
    /// When the presence check succeeded (Unix seconds).
    pub auth_time: i64,
    /// Absolute lifetime from `auth_time`.
    pub absolute_secs: i64,
    /// Idle timeout.
    pub idle_secs: i64,
}

/// A stored signing session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SigningSession {
    /// UUID (the token's `sid`).
    pub id: String,
    /// The doctor.
    pub user_id: String,
    /// The clinic.
    pub clinic_id: String,
    /// The method.
    pub method: AuthMethod,
    /// Kind of authenticator used.
    pub authenticator_kind: String,
    /// Its id.
    pub authenticator_id: String,
    /// RFC 8176 values.
    pub amr: Vec<String>,
    /// `aal3` or `aal2`.
    pub acr: String,
    /// Unix seconds.
    pub auth_time: i64,
    /// Absolute expiry, Unix seconds.
    pub expires_at: i64,
    /// Idle timeout.
    pub idle_secs: i64,
    /// Last activity (opening, or a signing token issued), Unix seconds.
    pub last_activity_at: i64,
    /// When it was ended, if it was.
    pub ended_at: Option<i64>,
    /// Why ([`EndReason::as_str`]).
    pub ended_reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Whether a session is usable at a given time, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningSessionState {
    /// Usable.
    Live,
    /// Ended explicitly, with the reason.
    Ended(String),
    /// Past its absolute lifetime.
    ExpiredAbsolute,
    /// Idle for too long.
    ExpiredIdle,
}

impl SigningSession {
    /// When the idle timeout runs out if nothing happens.
    pub fn idle_expires_at(&self) -> i64 {
        self.last_activity_at.saturating_add(self.idle_secs)
    }

    /// The earlier of the absolute and the idle expiry.
    pub fn effective_expires_at(&self) -> i64 {
        self.expires_at.min(self.idle_expires_at())
    }

    /// The state at `now`. The same rule as the SQL in [`Store::touch_signing_session`].
    pub fn state(&self, now: i64) -> SigningSessionState {
        if self.ended_at.is_some() {
            SigningSessionState::Ended(self.ended_reason.clone().unwrap_or_default())
        } else if now >= self.expires_at {
            SigningSessionState::ExpiredAbsolute
        } else if now >= self.idle_expires_at() {
            SigningSessionState::ExpiredIdle
        } else {
            SigningSessionState::Live
        }
    }

    /// Live at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.state(now) == SigningSessionState::Live
    }
}

/// Result of [`Store::open_signing_session`].
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The new session.
    pub session: SigningSession,
    /// The ids of the sessions it ended (at most one: the doctor's open one at the clinic, if any).
    pub ended: Vec<String>,
}

/// Result of [`Store::touch_signing_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TouchOutcome {
    /// The session was live; activity recorded. Carries the session after the update.
    Live(SigningSession),
    /// The session exists but is not live; [`SigningSession::state`] says why.
    NotLive(SigningSession),
    /// No such session.
    NotFound,
}

row! {
    /// A `signing_sessions` row as `session_columns!` selects it.
    struct SessionRow {
        id: String,
        user_id: String,
        clinic_id: String,
        method: String,
        authenticator_kind: String,
        authenticator_id: String,
        amr: String,
        acr: String,
        auth_time: i64,
        expires_at: i64,
        idle_secs: i64,
        last_activity_at: i64,
        ended_at: Option<i64>,
        ended_reason: Option<String>,
        created_at: i64,
    }
}

macro_rules! session_columns {
    () => {
        "id, user_id, clinic_id, method, authenticator_kind, authenticator_id, amr, acr, auth_time, expires_at,
         idle_secs, last_activity_at, ended_at, ended_reason, created_at"
    };
}

impl TryFrom<SessionRow> for SigningSession {
    type Error = Error;
    fn try_from(r: SessionRow) -> Result<Self> {
        Ok(Self {
            method: r.method.parse().map_err(|_| corrupt("signing_sessions.method"))?,
            amr: serde_json::from_str(&r.amr).map_err(|_| corrupt("signing_sessions.amr"))?,
            id: r.id,
            user_id: r.user_id,
            clinic_id: r.clinic_id,
            authenticator_kind: r.authenticator_kind,
            authenticator_id: r.authenticator_id,
            acr: r.acr,
            auth_time: r.auth_time,
            expires_at: r.expires_at,
            idle_secs: r.idle_secs,
            last_activity_at: r.last_activity_at,
            ended_at: r.ended_at,
            ended_reason: r.ended_reason,
            created_at: r.created_at,
        })
    }
}

/// Which open sessions [`Store::end_signing_sessions`] ends.
#[derive(Debug, Clone, Copy)]
pub enum SessionFilter<'a> {
    /// One session.
    Id(&'a str),
    /// Every session of a doctor, optionally only at one clinic.
    User {
        /// The doctor.
        user_id: &'a str,
        /// Only this clinic.
        clinic_id: Option<&'a str>,
    },
}

/// What the transaction that opens a signing session does besides, so that a login commits once.
#[derive(Debug, Default)]
pub struct Opening<'a> {
    /// The presence check's own success event, appended before the opening's events.
    pub checked: Option<&'a AuditEvent>,
    /// The authenticator's use, recorded in the same transaction.
    pub used: Option<AuthenticatorUse<'a>>,
    /// The browser session's move to a new id (docs/design.md §3.2: a method success is a privilege
    /// change). Without a session under the old id (signed out meanwhile), nothing is opened:
    /// `Precondition::BrowserSession`.
    pub session_move: Option<&'a SessionMove>,
}

/// An authenticator's use, recorded in the transaction that opens a signing session.
#[derive(Debug)]
pub enum AuthenticatorUse<'a> {
    /// A FIDO credential: its counter and stored state, written only while the stored counter is
    /// below (`strict`) or at most the new one. When `required` and the counter could not be
    /// written (a concurrent assertion with the same or a higher counter won), nothing is opened:
    /// `Precondition::FidoCounter`.
    Fido {
        /// `fido_credentials.id`.
        id: &'a str,
        /// The updated stored credential, if it changed.
        stored: Option<&'a str>,
        /// The new counter.
        counter: i64,
        /// The counter must go strictly up.
        strict: bool,
        /// Refuse the opening if the counter was not written.
        required: bool,
    },
    /// A linked card: its last use.
    Card {
        /// `card_credentials.id`.
        id: &'a str,
    },
}

impl AuthenticatorUse<'_> {
    /// Fails the opening when a required counter was not written (`rows` changed).
    fn check(&self, rows: u64) -> Result<()> {
        match self {
            AuthenticatorUse::Fido { required: true, .. } if rows != 1 => Err(Error::Precondition(Precondition::FidoCounter)),
            _ => Ok(()),
        }
    }
}

/// A row count as the statements' own counts are.
fn rows(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Ends the doctor's open session at a clinic at `$now`: as `$expired` if it was no longer live,
/// else as `$superseded`. The arguments name the statement's parameters.
macro_rules! end_open {
    ($user:literal, $clinic:literal, $now:literal, $expired:literal, $superseded:literal) => {
        concat!(
            "UPDATE signing_sessions SET ended_at = ", $now, ", updated_at = ", $now, ",
                ended_reason = CASE WHEN expires_at <= ", $now, " OR last_activity_at + idle_secs <= ", $now,
            " THEN ", $expired, " ELSE ", $superseded, " END
             WHERE user_id = ", $user, " AND clinic_id = ", $clinic, " AND ended_at IS NULL"
        )
    };
}

/// [`end_open!`] as a statement of its own: user `$1`, clinic `$2`, now `$3`, reasons `$4`, `$5`.
const END_OPEN: &str = concat!(end_open!("$1", "$2", "$3", "$4", "$5"), " RETURNING id, ended_reason");

/// The new session ($1 id … $12 now), returned as [`SessionRow`] reads it.
macro_rules! insert_session {
    () => {
        concat!(
            "INSERT INTO signing_sessions (id, user_id, clinic_id, method, authenticator_kind, authenticator_id,
                amr, acr, auth_time, expires_at, idle_secs, last_activity_at, ended_at, ended_reason,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, $12, $12)
             RETURNING ",
            session_columns!()
        )
    };
}
const INSERT_SESSION: &str = insert_session!();

/// PostgreSQL, the end of the opening's first statement (decisions 0021, 0026): after `used`
/// (the authenticator's use, `$9` on), [`MOVE_SESSION`] ($1 → $2, $3 expiry, now $4) and
/// [`END_OPEN`] (user $5, clinic $6, reasons $7, $8). The old session ends only once the browser
/// session has moved and `used` wrote at least `$least` rows, the conditions the opening checks
/// before it goes on; reading `used` and `moved` there also runs them first (a WITH query runs
/// when it is first read), so the credential and the browser session are locked before the
/// signing session, the order authenticator removal locks them in.
macro_rules! move_and_end {
    ($least:literal) => {
        concat!(
            ", moved AS (
                UPDATE browser_sessions SET id_hash = $2, expires_at = $3, updated_at = $4, reauth_at = $4
                WHERE id_hash = $1 RETURNING 1),
             ended AS (",
            end_open!("$5", "$6", "$4", "$7", "$8"),
            " AND (SELECT COUNT(*) FROM moved) = 1 AND (SELECT COUNT(*) FROM used) >= ",
            $least,
            " RETURNING id, ended_reason)
             SELECT (SELECT COUNT(*) FROM used) AS used, (SELECT COUNT(*) FROM moved) AS moved,
                    ARRAY(SELECT id FROM ended ORDER BY id) AS ended_ids,
                    ARRAY(SELECT ended_reason FROM ended ORDER BY id) AS ended_reasons"
        )
    };
}

/// The opening's first statement for a FIDO login: [`FIDO_USE`] (id $9, stored $10, counter
/// $11, now $4, strict $12) and [`move_and_end!`], ending the old session only if at least `$13`
/// counters were written (1 when the counter is required).
const FIDO_FIRST: &str = concat!(
    "WITH used AS (
        UPDATE fido_credentials SET stored = COALESCE($10, stored), counter = $11, last_used_at = $4, updated_at = $4
        WHERE id = $9 AND (counter < $11 OR (NOT $12 AND counter = $11)) RETURNING 1)",
    move_and_end!("$13")
);

/// [`FIDO_FIRST`] for a card login: [`CARD_USE`] (id $9, now $4); a card's use is recorded,
/// never required.
const CARD_FIRST: &str = concat!(
    "WITH used AS (UPDATE card_credentials SET last_used_at = $4, updated_at = $4 WHERE id = $9 RETURNING 1)",
    move_and_end!("0")
);

/// PostgreSQL, the opening's second statement: [`INSERT_SESSION`] ($1–$12) and the audit rows
/// queued ($13–$18, `audit_pending::queue_rows!`), with how many were queued. The two write
/// different tables, so their order within the statement does not matter.
const PG_INSERT_AND_QUEUE: &str = concat!(
    "WITH opened AS (",
    insert_session!(),
    "), queued AS (",
    queue_rows!("$13", "$14", "$15", "$16", "$17", "$18"),
    " RETURNING 1)
     SELECT opened.*, (SELECT COUNT(*) FROM queued) AS queued FROM opened"
);

row! {
    /// A session [`END_OPEN`] ended.
    struct EndedRow {
        id: String,
        ended_reason: String,
    }
}

/// [`FIDO_FIRST`]'s or [`CARD_FIRST`]'s row.
struct FirstWrites {
    used: i64,
    moved: i64,
    ended: Vec<EndedRow>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for FirstWrites {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        let ids: Vec<String> = row.try_get("ended_ids")?;
        let reasons: Vec<String> = row.try_get("ended_reasons")?;
        let ended = ids.into_iter().zip(reasons).map(|(id, ended_reason)| EndedRow { id, ended_reason }).collect();
        Ok(Self { used: row.try_get("used")?, moved: row.try_get("moved")?, ended })
    }
}

/// [`FIDO_FIRST`] or [`CARD_FIRST`] with the parameters [`move_and_end!`] reads ($1–$8) bound.
fn first_statement<'q>(
    sql: &'static str,
    m: &'q SessionMove,
    new: &'q NewSigningSession<'_>,
    now: i64,
    (expired, superseded): (&'static str, &'static str),
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, FirstWrites, sqlx::postgres::PgArguments> {
    sqlx::query_as(sql)
        .bind(&m.from[..])
        .bind(&m.to[..])
        .bind(m.expires_at)
        .bind(now)
        .bind(new.user_id)
        .bind(new.clinic_id)
        .bind(expired)
        .bind(superseded)
}

/// [`PG_INSERT_AND_QUEUE`]'s row.
struct Inserted {
    session: SessionRow,
    queued: i64,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Inserted {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        Ok(Self { session: <SessionRow as sqlx::FromRow<_>>::from_row(row)?, queued: row.try_get("queued")? })
    }
}

impl Store {
    /// Records an authenticator's use on its own (when the check unlocks something other than a
    /// signing session); errors like [`Store::open_signing_session`] does for it.
    pub async fn record_use(&self, used: &AuthenticatorUse<'_>, now: i64) -> Result<()> {
        let rows = match used {
            AuthenticatorUse::Fido { id, stored, counter, strict, .. } => {
                write_execute!(self, FIDO_USE, id, stored, counter, now, strict)?
            }
            AuthenticatorUse::Card { id } => write_execute!(self, CARD_USE, id, now)?,
        };
        used.check(rows)
    }

    /// Opens a signing session at `now` (normally `auth_time`). The open session of the same
    /// doctor at the same clinic is ended first, in the same transaction, as `superseded` (or
    /// `expired` if it was no longer live): there is at most one open session per doctor and
    /// clinic, which a partial unique index enforces across instances.
    ///
    /// The same transaction records what [`Opening`] asks for (the authenticator's use, the
    /// browser session's new id) and appends the audit events, in order: `checked` (the presence
    /// check that allows the opening, if given), each ended session, the opening. A session is
    /// never open without its audit rows, and a refused step opens nothing.
    pub async fn open_signing_session(
        &self,
        new: &NewSigningSession<'_>,
        now: i64,
        with: &Opening<'_>,
    ) -> Result<OpenedSession> {
        let amr = serde_json::to_string(new.amr).map_err(|e| Error::Database(sqlx::Error::Encode(Box::new(e))))?;
        let (expired, superseded) = (EndReason::Expired.as_str(), EndReason::Superseded.as_str());
        let expires_at = new.auth_time.saturating_add(new.absolute_secs);
        // The audit events, in order: the check, each session ended, the opening.
        let events = |id: &str, ended: &[EndedRow]| -> Vec<(AuditEvent, i64)> {
            let mut events: Vec<_> = with.checked.map(|e| (e.clone(), now)).into_iter().collect();
            for r in ended {
                let reason = if r.ended_reason == expired { EndReason::Expired } else { EndReason::Superseded };
                let event = AuditEvent::SigningSessionEnded {
                    clinic_id: new.clinic_id.to_owned(),
                    user_id: new.user_id.to_owned(),
                    session_id: r.id.clone(),
                    reason: reason.as_str(),
                };
                events.push((event, now));
            }
            let event = AuditEvent::SigningSessionOpened {
                clinic_id: new.clinic_id.to_owned(),
                user_id: new.user_id.to_owned(),
                session_id: id.to_owned(),
                method: new.method.as_str(),
                acr: new.acr.to_owned(),
            };
            events.push((event, now));
            events
        };
        let moved = |rows: u64| if rows == 1 { Ok(()) } else { Err(Error::Precondition(Precondition::BrowserSession)) };
        // A concurrent open on another instance can win the unique index between our UPDATE
        // and INSERT; the second attempt then ends that session like any other.
        let mut attempt = 0;
        loop {
            let id = uuid::Uuid::new_v4().to_string();
            // One transaction; on SQLite inline on the writer connection (decision 0008). On
            // PostgreSQL a login's is two statements between BEGIN and COMMIT (decision 0026):
            // the authenticator's use, the browser session's move and the old session's end in
            // one, the new session and its audit rows in the other.
            let result: Result<(SessionRow, Vec<EndedRow>)> = transaction!(self, |tx| {
                let ended = match (&with.used, with.session_move) {
                    (Some(u), Some(m)) if tx.is_postgres() => {
                        let Conn::Postgres(conn) = &mut tx.conn else { unreachable!("checked above") };
                        let first = match u {
                            AuthenticatorUse::Fido { id, stored, counter, strict, required } => {
                                let query = first_statement(FIDO_FIRST, m, new, now, (expired, superseded));
                                query.bind(id).bind(stored).bind(counter).bind(strict).bind(i64::from(*required))
                            }
                            AuthenticatorUse::Card { id } => first_statement(CARD_FIRST, m, new, now, (expired, superseded)).bind(id),
                        }
                        .fetch_one(&mut **conn)
                        .await?;
                        u.check(rows(first.used))?;
                        moved(rows(first.moved))?;
                        first.ended
                    }
                    (used, session_move) => {
                        match used {
                            Some(u @ AuthenticatorUse::Fido { id, stored, counter, strict, .. }) => {
                                u.check(tx_execute!(tx, FIDO_USE, id, stored, counter, now, strict)?)?;
                            }
                            Some(AuthenticatorUse::Card { id }) => {
                                tx_execute!(tx, CARD_USE, id, now)?;
                            }
                            None => {}
                        }
                        if let Some(m) = session_move {
                            moved(tx_execute!(tx, MOVE_SESSION, &m.from[..], &m.to[..], m.expires_at, now)?)?;
                        }
                        tx_fetch!(tx, all, EndedRow, END_OPEN, new.user_id, new.clinic_id, now, expired, superseded)?
                    }
                };
                let events = events(&id, &ended);
                let batch = self.audit_rows(&events);
                let (method, acr) = (new.method.as_str(), new.acr);
                let pending = if tx.is_postgres() { batch.queueable()? } else { None };
                let opened = match (&mut tx.conn, pending) {
                    (Conn::Postgres(conn), Some(pending)) => {
                        let query = sqlx::query(PG_INSERT_AND_QUEUE)
                            .bind(&id)
                            .bind(new.user_id)
                            .bind(new.clinic_id)
                            .bind(method)
                            .bind(new.authenticator_kind)
                            .bind(new.authenticator_id)
                            .bind(&amr)
                            .bind(acr)
                            .bind(new.auth_time)
                            .bind(expires_at)
                            .bind(new.idle_secs)
                            .bind(now);
                        let row = bind_rows(query, pending).fetch_one(&mut **conn).await?;
                        let inserted = <Inserted as sqlx::FromRow<_>>::from_row(&row)?;
                        queued(tx, pending, rows(inserted.queued))?;
                        inserted.session
                    }
                    _ => {
                        let opened = tx_fetch!(
                            tx,
                            one,
                            SessionRow,
                            INSERT_SESSION,
                            &id,
                            new.user_id,
                            new.clinic_id,
                            method,
                            new.authenticator_kind,
                            new.authenticator_id,
                            &amr,
                            acr,
                            new.auth_time,
                            expires_at,
                            new.idle_secs,
                            now,
                        )?;
                        append_audit(tx, &batch).await?;
                        opened
                    }
                };
                Ok((opened, ended))
            });
            match result {
                Ok((opened, ended)) => {
                    return Ok(OpenedSession { session: opened.try_into()?, ended: ended.into_iter().map(|r| r.id).collect() });
                }
                Err(Error::Conflict(_)) if attempt == 0 => attempt += 1,
                Err(e) => {
                    let failed = Err(e);
                    self.count_audit_failure(&failed);
                    return failed;
                }
            }
        }
    }

    /// One session by id.
    pub async fn signing_session(&self, id: &str) -> Result<SigningSession> {
        let row: SessionRow = with_reader!(self, |pool| {
            sqlx::query_as(concat!("SELECT ", session_columns!(), " FROM signing_sessions WHERE id = $1"))
                .bind(id)
                .fetch_one(pool)
                .await
        })?;
        row.try_into()
    }

    /// The doctor's session at a clinic that matters now: the open one if any (it may have
    /// expired: check [`SigningSession::state`]), else the most recent one. `None` if the doctor
    /// never had one there. The token API uses this to tell `no_session` from `session_expired`.
    pub async fn current_signing_session(&self, user_id: &str, clinic_id: &str) -> Result<Option<SigningSession>> {
        let row: Option<SessionRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM signing_sessions WHERE user_id = $1 AND clinic_id = $2
                 ORDER BY CASE WHEN ended_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id LIMIT 1"
            ))
            .bind(user_id)
            .bind(clinic_id)
            .fetch_optional(pool)
            .await
        })?;
        row.map(SigningSession::try_from).transpose()
    }

    /// The doctor's live session at a clinic at `now`, if there is one.
    pub async fn live_signing_session(&self, user_id: &str, clinic_id: &str, now: i64) -> Result<Option<SigningSession>> {
        Ok(self.current_signing_session(user_id, clinic_id).await?.filter(|s| s.is_live(now)))
    }

    /// Records activity (a signing token issued) on a session, if and only if it is live at
    /// `now`: not ended, before its absolute expiry, and within its idle timeout. The check and
    /// the update are one statement, so two instances cannot both extend a session that one of
    /// them saw expire.
    pub async fn touch_signing_session(&self, id: &str, now: i64) -> Result<TouchOutcome> {
        let row: Option<SessionRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "UPDATE signing_sessions SET last_activity_at = $2, updated_at = $2
                 WHERE id = $1 AND ended_at IS NULL AND expires_at > $2 AND last_activity_at + idle_secs > $2
                 RETURNING ",
                session_columns!()
            ))
            .bind(id)
            .bind(now)
            .fetch_optional(pool)
            .await
        })?;
        if let Some(row) = row {
            return Ok(TouchOutcome::Live(row.try_into()?));
        }
        match self.signing_session(id).await {
            Ok(s) => Ok(TouchOutcome::NotLive(s)),
            Err(Error::NotFound) => Ok(TouchOutcome::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Ends the open sessions selected by `filter`; returns those it ended (empty if none was
    /// open). Expired-but-open sessions are ended too, which only records the fact.
    pub async fn end_signing_sessions(
        &self,
        filter: SessionFilter<'_>,
        reason: EndReason,
        now: i64,
    ) -> Result<Vec<SigningSession>> {
        let (id, user_id, clinic_id) = match filter {
            SessionFilter::Id(id) => (Some(id), None, None),
            SessionFilter::User { user_id, clinic_id } => (None, Some(user_id), clinic_id),
        };
        let rows: Vec<SessionRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "UPDATE signing_sessions SET ended_at = $4, ended_reason = $5, updated_at = $4
                 WHERE ended_at IS NULL AND ($1 IS NULL OR id = $1) AND ($2 IS NULL OR user_id = $2)
                   AND ($3 IS NULL OR clinic_id = $3) AND ($1 IS NOT NULL OR $2 IS NOT NULL)
                 RETURNING ",
                session_columns!()
            ))
            .bind(id)
            .bind(user_id)
            .bind(clinic_id)
            .bind(now)
            .bind(reason.as_str())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(SigningSession::try_from).collect()
    }

    /// Sessions, newest first, optionally of one clinic and/or doctor; `open_only` leaves out
    /// ended ones (expired-but-open ones stay: check [`SigningSession::state`]).
    pub async fn list_signing_sessions(
        &self,
        clinic_id: Option<&str>,
        user_id: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<SigningSession>> {
        let rows: Vec<SessionRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM signing_sessions WHERE ($1 IS NULL OR clinic_id = $1) AND ($2 IS NULL OR user_id = $2)
                   AND (NOT $3 OR ended_at IS NULL)
                 ORDER BY created_at DESC, id LIMIT 1000"
            ))
            .bind(clinic_id)
            .bind(user_id)
            .bind(open_only)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(SigningSession::try_from).collect()
    }
}
