//! SCIM provisioning's reads and writes (docs/design.md §3.16). Each write checks the user's
//! version in its `UPDATE … WHERE version = $n` and bumps it there, so of two writers that read
//! the same version one wins and the other learns it lost (`ScimWrite::Stale`); the audit rows and
//! the sessions a change ends go in the same transaction.

use super::audit::append_audit;
use super::{AuditEvent, Backend, EndReason, Error, Result, Store, UserKind, corrupt, read_optional, row, transaction, tx_execute, tx_fetch, with_reader};

/// A user as SCIM shows it.
#[derive(Clone)]
pub struct ScimUser {
    /// UUID (SCIM `id`).
    pub id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Login ID (`userName`).
    pub login_id: String,
    /// Doctor or staff.
    pub kind: UserKind,
    /// Full name (`displayName`, `name.formatted`).
    pub name: String,
    /// 医籍番号.
    pub medical_reg_no: Option<String>,
    /// The EMR's id (`externalId`).
    pub external_id: Option<String>,
    /// `active`.
    pub enabled: bool,
    /// Counts changes: the ETag.
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// A test account: not provisioned by SCIM, never changed by it.
    pub test_account: bool,
    /// Deleted by a provisioner: disabled for good, and no longer shown.
    pub deprovisioned_at: Option<i64>,
}

impl std::fmt::Debug for ScimUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimUser").field("id", &self.id).field("clinic_id", &self.clinic_id).field("version", &self.version).finish_non_exhaustive()
    }
}

/// What a create or a replace stores (every SCIM-writable column).
#[derive(Debug)]
pub struct ScimFields<'a> {
    /// Login ID.
    pub login_id: &'a str,
    /// Doctor or staff.
    pub kind: UserKind,
    /// Full name.
    pub name: &'a str,
    /// 医籍番号.
    pub medical_reg_no: Option<&'a str>,
    /// The EMR's id.
    pub external_id: Option<&'a str>,
    /// May sign in.
    pub enabled: bool,
    /// A new password's argon2id hash (`None`: keep the stored one). Stored as permanent: the
    /// EMR's password is the user's own.
    pub password_hash: Option<&'a str>,
}

/// One page of a filtered list.
#[derive(Debug)]
pub struct ScimQuery<'a> {
    /// The provisioner: only users of its clinics are listed.
    pub client_id: &'a str,
    /// `userName eq` (folded).
    pub login_folded: Option<String>,
    /// `externalId eq`.
    pub external_id: Option<&'a str>,
    /// `active eq`.
    pub enabled: Option<bool>,
    /// Rows skipped.
    pub offset: i64,
    /// Rows returned at most.
    pub limit: i64,
}

/// The outcome of a write that checks the version.
#[derive(Debug)]
pub enum ScimWrite {
    /// Written: the user as stored now, and how many browser and signing sessions it ended.
    Done { user: Box<ScimUser>, browser_sessions_ended: u64, signing_sessions_ended: usize },
    /// The version was no longer the one expected (or the user was deprovisioned meanwhile):
    /// nothing was written.
    Stale,
}

macro_rules! scim_columns {
    () => {
        "id, clinic_id, login_id, kind, name, medical_reg_no, external_id, enabled, version, created_at, updated_at,
         test_account, deprovisioned_at"
    };
}

row! {
    /// A `users` row as `scim_columns!` selects it.
    struct ScimRow {
        id: String,
        clinic_id: String,
        login_id: String,
        kind: String,
        name: String,
        medical_reg_no: Option<String>,
        external_id: Option<String>,
        enabled: bool,
        version: i64,
        created_at: i64,
        updated_at: i64,
        test_account: bool,
        deprovisioned_at: Option<i64>,
    }
}

row! {
    /// A count.
    struct CountRow {
        n: i64,
    }
}

row! {
    /// Which unique value of a clinic another account holds.
    struct TakenRow {
        login: bool,
        external: bool,
        medical: bool,
    }
}

row! {
    /// An ended signing session.
    struct EndedRow {
        id: String,
    }
}

impl TryFrom<ScimRow> for ScimUser {
    type Error = Error;
    fn try_from(r: ScimRow) -> Result<Self> {
        Ok(Self {
            kind: r.kind.parse().map_err(|_| corrupt("users.kind"))?,
            id: r.id,
            clinic_id: r.clinic_id,
            login_id: r.login_id,
            name: r.name,
            medical_reg_no: r.medical_reg_no,
            external_id: r.external_id,
            enabled: r.enabled,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            test_account: r.test_account,
            deprovisioned_at: r.deprovisioned_at,
        })
    }
}

macro_rules! scim_filter {
    () => {
        "deprovisioned_at IS NULL AND test_account = FALSE
         AND clinic_id IN (SELECT clinic_id FROM service_client_clinics WHERE client_id = $1)
         AND ($2 IS NULL OR login_folded = $2) AND ($3 IS NULL OR external_id = $3) AND ($4 IS NULL OR enabled = $4)"
    };
}

/// The login ID, external id or 医籍番号 of `fields` another account of the clinic holds
/// (deprovisioned ones too: their identifiers stay theirs in the audit log).
const TAKEN: &str = "SELECT login_folded = $3 AS login, COALESCE(external_id = $4, FALSE) AS external,
        COALESCE(medical_reg_no = $5, FALSE) AS medical
    FROM users WHERE clinic_id = $1 AND id <> $2
      AND (login_folded = $3 OR external_id = $4 OR medical_reg_no = $5)";

impl Store {
    /// A user by id, deprovisioned or not.
    pub async fn scim_user(&self, id: &str) -> Result<ScimUser> {
        let row = read_optional!(self, ScimRow, concat!("SELECT ", scim_columns!(), " FROM users WHERE id = $1"), id)?;
        row.ok_or(Error::NotFound)?.try_into()
    }

    /// The total matching `q`, and its page (oldest first). Deprovisioned users and test accounts
    /// are not listed.
    pub async fn scim_users(&self, q: &ScimQuery<'_>) -> Result<(i64, Vec<ScimUser>)> {
        const COUNT: &str = concat!("SELECT COUNT(*) AS n FROM users WHERE ", scim_filter!());
        const PAGE: &str =
            concat!("SELECT ", scim_columns!(), " FROM users WHERE ", scim_filter!(), " ORDER BY created_at, id LIMIT $5 OFFSET $6");
        let count: CountRow = with_reader!(self, |pool| {
            sqlx::query_as(COUNT).bind(q.client_id).bind(&q.login_folded).bind(q.external_id).bind(q.enabled).fetch_one(pool).await
        })?;
        let rows: Vec<ScimRow> = with_reader!(self, |pool| {
            sqlx::query_as(PAGE)
                .bind(q.client_id)
                .bind(&q.login_folded)
                .bind(q.external_id)
                .bind(q.enabled)
                .bind(q.limit)
                .bind(q.offset)
                .fetch_all(pool)
                .await
        })?;
        Ok((count.n, rows.into_iter().map(ScimUser::try_from).collect::<Result<_>>()?))
    }

    /// Creates a user and audits `event` in one transaction. `Error::Conflict` names the
    /// attribute taken (`userName`, `externalId`, `medicalRegistrationNumber`).
    /// `f.password_hash` is required here (a random one where the EMR sets none).
    pub async fn scim_create_user(&self, id: &str, clinic_id: &str, f: &ScimFields<'_>, event: AuditEvent, now: i64) -> Result<ScimUser> {
        let hash = f.password_hash.ok_or_else(|| corrupt("users.password_hash"))?;
        let events = [(event, now)];
        let result: Result<()> = transaction!(self, |tx| {
            refuse_taken(tx, clinic_id, id, f).await?;
            tx_execute!(
                tx,
                "INSERT INTO users (id, clinic_id, login_id, login_folded, kind, name, medical_reg_no, external_id, password_hash,
                    enabled, created_at, updated_at, password_temporary, password_set_at, test_account, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, FALSE, $11, FALSE, 1)",
                id,
                clinic_id,
                f.login_id,
                crate::login_id::fold(f.login_id),
                f.kind.as_str(),
                f.name,
                f.medical_reg_no,
                f.external_id,
                hash,
                f.enabled,
                now,
            )?;
            append_audit(tx, &self.audit_rows(&events)).await?;
            Ok(())
        });
        self.count_scim_failure(&result);
        result?;
        self.scim_user(id).await
    }

    /// Replaces every SCIM-writable column of `user` if it is still at `user.version`. Disabling
    /// it or setting its password ends its browser and signing sessions (each ending audited).
    /// `event` is audited with the browser and signing sessions the change ended.
    pub async fn scim_replace_user(
        &self,
        user: &ScimUser,
        f: &ScimFields<'_>,
        event: impl FnOnce(u64, usize) -> AuditEvent,
        now: i64,
    ) -> Result<ScimWrite> {
        let end = (user.enabled && !f.enabled).then_some(EndReason::AccountDisabled)
            .or(f.password_hash.is_some().then_some(EndReason::PasswordChanged));
        let result: Result<ScimWrite> = transaction!(self, |tx| {
            refuse_taken(tx, &user.clinic_id, &user.id, f).await?;
            let done = tx_execute!(
                tx,
                "UPDATE users SET login_id = $3, login_folded = $4, kind = $5, name = $6, medical_reg_no = $7, external_id = $8,
                    enabled = $9, password_hash = COALESCE($10, password_hash),
                    password_temporary = CASE WHEN $10 IS NULL THEN password_temporary ELSE FALSE END,
                    password_set_at = CASE WHEN $10 IS NULL THEN password_set_at ELSE $11 END,
                    updated_at = $11, version = version + 1
                 WHERE id = $1 AND version = $2 AND deprovisioned_at IS NULL",
                &user.id,
                user.version,
                f.login_id,
                crate::login_id::fold(f.login_id),
                f.kind.as_str(),
                f.name,
                f.medical_reg_no,
                f.external_id,
                f.enabled,
                f.password_hash,
                now,
            )?;
            if done == 0 {
                return Ok(ScimWrite::Stale);
            }
            let (browser, signing) = match end {
                Some(reason) => end_sessions(self, tx, user, reason, event, now).await?,
                None => {
                    append_audit(tx, &self.audit_rows(&[(event(0, 0), now)])).await?;
                    (0, 0)
                }
            };
            Ok(ScimWrite::Done { user: Box::new(user.clone()), browser_sessions_ended: browser, signing_sessions_ended: signing })
        });
        self.count_scim_failure(&result);
        written(self, result?).await
    }

    /// Deprovisions `user` if it is still at `user.version`: disabled, marked, its browser and
    /// signing sessions ended, all audited, in one transaction. The row stays for the audit log.
    /// `event` is audited with the browser and signing sessions ended.
    pub async fn scim_deprovision_user(&self, user: &ScimUser, event: impl FnOnce(u64, usize) -> AuditEvent, now: i64) -> Result<ScimWrite> {
        let result: Result<ScimWrite> = transaction!(self, |tx| {
            let done = tx_execute!(
                tx,
                "UPDATE users SET enabled = FALSE, deprovisioned_at = $3, updated_at = $3, version = version + 1
                 WHERE id = $1 AND version = $2 AND deprovisioned_at IS NULL",
                &user.id,
                user.version,
                now,
            )?;
            if done == 0 {
                return Ok(ScimWrite::Stale);
            }
            let (browser, signing) = end_sessions(self, tx, user, EndReason::AccountDisabled, event, now).await?;
            Ok(ScimWrite::Done { user: Box::new(user.clone()), browser_sessions_ended: browser, signing_sessions_ended: signing })
        });
        self.count_scim_failure(&result);
        written(self, result?).await
    }

    /// Counts a failed audit write (not a refusal: a taken value or a lost race writes nothing).
    fn count_scim_failure<T>(&self, result: &Result<T>) {
        if matches!(result, Err(e) if !matches!(e, Error::Conflict(_) | Error::NotFound)) {
            self.count_audit_failure(result);
        }
    }
}

/// Re-reads a written user (its new version and times).
async fn written(store: &Store, w: ScimWrite) -> Result<ScimWrite> {
    Ok(match w {
        ScimWrite::Done { user, browser_sessions_ended, signing_sessions_ended } => {
            ScimWrite::Done { user: Box::new(store.scim_user(&user.id).await?), browser_sessions_ended, signing_sessions_ended }
        }
        ScimWrite::Stale => ScimWrite::Stale,
    })
}

/// `Error::Conflict` naming the first attribute of `f` another account of the clinic holds.
async fn refuse_taken(tx: &mut super::tx::Tx<'_>, clinic_id: &str, id: &str, f: &ScimFields<'_>) -> Result<()> {
    let folded = crate::login_id::fold(f.login_id);
    let taken = tx_fetch!(tx, all, TakenRow, TAKEN, clinic_id, id, folded, f.external_id, f.medical_reg_no)?;
    let any = |pick: fn(&TakenRow) -> bool| taken.iter().any(pick);
    if any(|t| t.login) {
        return Err(Error::Conflict("userName".to_owned()));
    }
    if any(|t| t.external) {
        return Err(Error::Conflict("externalId".to_owned()));
    }
    if any(|t| t.medical) {
        return Err(Error::Conflict("medicalRegistrationNumber".to_owned()));
    }
    Ok(())
}

/// Ends the user's browser and signing sessions, auditing `event` and each ending.
async fn end_sessions(
    store: &Store,
    tx: &mut super::tx::Tx<'_>,
    user: &ScimUser,
    reason: EndReason,
    event: impl FnOnce(u64, usize) -> AuditEvent,
    now: i64,
) -> Result<(u64, usize)> {
    let browser = tx_execute!(tx, "DELETE FROM browser_sessions WHERE user_id = $1", &user.id)?;
    let ended = tx_fetch!(
        tx,
        all,
        EndedRow,
        "UPDATE signing_sessions SET ended_at = $2, ended_reason = $3, updated_at = $2
         WHERE user_id = $1 AND ended_at IS NULL RETURNING id",
        &user.id,
        now,
        reason.as_str(),
    )?;
    let mut events = vec![(event(browser, ended.len()), now)];
    events.extend(ended.iter().map(|s| {
        let ended = AuditEvent::SigningSessionEnded {
            clinic_id: user.clinic_id.clone(),
            user_id: user.id.clone(),
            session_id: s.id.clone(),
            reason: reason.as_str(),
        };
        (ended, now)
    }));
    append_audit(tx, &store.audit_rows(&events)).await?;
    Ok((browser, ended.len()))
}
