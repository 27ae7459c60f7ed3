//! One-time registration codes (docs/design.md §3.6): the digital counterpart of the paper card with the
//! initial-registration QR code. An operator issues one for a doctor account; the doctor enters it
//! to link an authenticator of any kind. Only SHA-256 of a code is stored; the code itself is
//! shown once, by `gateway admin enroll-code issue`, and never logged.
//!
//! Rules, all enforced in the database so they hold across instances: one open code per user
//! (issuing voids the previous one in the same transaction, and a partial unique index backs it
//! up); a code expires; `max_failures` wrong entries void it; it is used once (consumed in the
//! same transaction that links the authenticator, see `store::fido`).

use super::{Backend, Error, Result, Store, row, with_pool, with_reader};

/// A code as stored (without the hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnrollmentCode {
    /// UUID, for audit rows and operators.
    pub id: String,
    /// The doctor it was issued for.
    pub user_id: String,
    /// Wrong entries so far.
    pub failures: i64,
    /// Wrong entries that void it.
    pub max_failures: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was used to link an authenticator.
    pub used_at: Option<i64>,
    /// When it was voided (replaced, revoked or exhausted).
    pub voided_at: Option<i64>,
    /// `replaced`, `revoked` or `exhausted`.
    pub void_reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl EnrollmentCode {
    /// Not used, not voided and not expired at `now`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.used_at.is_none() && self.voided_at.is_none() && self.expires_at > now
    }
}

/// A code as `gateway admin enroll-code list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCode {
    /// The doctor's clinic.
    pub clinic_id: String,
    /// The doctor's login ID.
    pub login_id: String,
    /// The code.
    pub code: EnrollmentCode,
}

row! {
    /// A listed code's row.
    struct ListedCodeRow {
        id: String,
        clinic_id: String,
        login_id: String,
        user_id: String,
        failures: i64,
        max_failures: i64,
        expires_at: i64,
        used_at: Option<i64>,
        voided_at: Option<i64>,
        void_reason: Option<String>,
        created_at: i64,
    }
}

/// The result of issuing a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// The new code's id.
    pub id: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Ids of the open codes this one replaced (at most one).
    pub replaced: Vec<String>,
}

/// What an entered code turned out to be. Every variant but `Valid` is a refusal; only
/// `Wrong` and `Exhausted` (on the entry that used the last try) counted a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// The doctor's open code; `code_id` must be consumed when the authenticator is linked.
    Valid {
        /// The code.
        code_id: String,
    },
    /// Not the doctor's open code; a failure was counted and `tries_left` remain.
    Wrong {
        /// The open code the failure was counted against.
        code_id: String,
        /// Entries left before the code is voided.
        tries_left: i64,
    },
    /// The doctor has no open code this entry could be counted against.
    NoCode,
    /// The doctor's code has expired.
    Expired {
        /// The code.
        code_id: String,
    },
    /// The code was used already.
    Used {
        /// The code.
        code_id: String,
    },
    /// The code was voided by too many wrong entries (possibly this one).
    Exhausted {
        /// The code.
        code_id: String,
    },
    /// The entered code was replaced by a newer one or revoked by an operator.
    Voided {
        /// The code.
        code_id: String,
    },
}

/// Consumes an open, unexpired code (`$1` id, `$2` user, `$3` now) inside the transaction that
/// links an authenticator; one row affected means the code was still usable. Shared by every
/// kind of authenticator so the rule is written once.
pub(super) const CONSUME_CODE_SQL: &str = "UPDATE enrollment_codes SET used_at = $3, updated_at = $3
     WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND voided_at IS NULL AND expires_at > $3";

row! {
    /// An `enrollment_codes` row as `code_columns!` selects it.
    struct CodeRow {
        id: String,
        user_id: String,
        code_hash: Vec<u8>,
        failures: i64,
        max_failures: i64,
        expires_at: i64,
        used_at: Option<i64>,
        voided_at: Option<i64>,
        void_reason: Option<String>,
        created_at: i64,
    }
}

row! {
    /// A code's failures after counting one.
    struct CountedRow {
        failures: i64,
        max_failures: i64,
    }
}

macro_rules! code_columns {
    () => {
        "id, user_id, code_hash, failures, max_failures, expires_at, used_at, voided_at, void_reason, created_at"
    };
}

fn code_from_row(r: CodeRow) -> (EnrollmentCode, Vec<u8>) {
    (
        EnrollmentCode {
            id: r.id,
            user_id: r.user_id,
            failures: r.failures,
            max_failures: r.max_failures,
            expires_at: r.expires_at,
            used_at: r.used_at,
            voided_at: r.voided_at,
            void_reason: r.void_reason,
            created_at: r.created_at,
        },
        r.code_hash,
    )
}

impl Store {
    /// Issues a code for `user_id`, voiding any open one in the same transaction.
    pub async fn issue_enrollment_code(
        &self,
        user_id: &str,
        code_hash: &[u8; 32],
        expires_at: i64,
        max_failures: i64,
        now: i64,
    ) -> Result<IssuedCode> {
        let id = uuid::Uuid::new_v4().to_string();
        let replaced: Vec<(String,)> = with_pool!(self, |pool| {
            {
                let mut tx = pool.begin().await?;
                let replaced: Vec<(String,)> = sqlx::query_as(
                    "UPDATE enrollment_codes SET voided_at = $2, void_reason = 'replaced', updated_at = $2
                     WHERE user_id = $1 AND used_at IS NULL AND voided_at IS NULL RETURNING id",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO enrollment_codes (id, user_id, code_hash, failures, max_failures, expires_at,
                        used_at, voided_at, void_reason, created_at, updated_at)
                     VALUES ($1, $2, $3, 0, $4, $5, NULL, NULL, NULL, $6, $6)",
                )
                .bind(&id)
                .bind(user_id)
                .bind(&code_hash[..])
                .bind(max_failures)
                .bind(expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                replaced
            }
        });
        Ok(IssuedCode { id, expires_at, replaced: replaced.into_iter().map(|(id,)| id).collect() })
    }

    /// Voids the user's open code; returns its id, or `NotFound` if there was none.
    pub async fn revoke_enrollment_code(&self, user_id: &str, now: i64) -> Result<String> {
        let row: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE enrollment_codes SET voided_at = $2, void_reason = 'revoked', updated_at = $2
                 WHERE user_id = $1 AND used_at IS NULL AND voided_at IS NULL RETURNING id",
            )
            .bind(user_id)
            .bind(now)
            .fetch_optional(pool)
            .await
        })?;
        row.map(|(id,)| id).ok_or(Error::NotFound)
    }

    /// Codes with their doctor's clinic and login ID, newest first: open ones only, or (`all`)
    /// used, voided and expired ones too. Optionally of one clinic.
    pub async fn list_enrollment_codes(&self, clinic_id: Option<&str>, all: bool) -> Result<Vec<ListedCode>> {
        let rows: Vec<ListedCodeRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id AS id, u.clinic_id AS clinic_id, u.login_id AS login_id, c.user_id AS user_id,
                        c.failures AS failures, c.max_failures AS max_failures, c.expires_at AS expires_at,
                        c.used_at AS used_at, c.voided_at AS voided_at, c.void_reason AS void_reason,
                        c.created_at AS created_at
                 FROM enrollment_codes c JOIN users u ON u.id = c.user_id
                 WHERE ($1 IS NULL OR u.clinic_id = $1) AND ($2 OR (c.used_at IS NULL AND c.voided_at IS NULL))
                 ORDER BY c.created_at DESC, c.id",
            )
            .bind(clinic_id)
            .bind(all)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| ListedCode {
                clinic_id: r.clinic_id,
                login_id: r.login_id,
                code: EnrollmentCode {
                    id: r.id,
                    user_id: r.user_id,
                    failures: r.failures,
                    max_failures: r.max_failures,
                    expires_at: r.expires_at,
                    used_at: r.used_at,
                    voided_at: r.voided_at,
                    void_reason: r.void_reason,
                    created_at: r.created_at,
                },
            })
            .collect())
    }

    /// The user's most relevant code: the open one if any, else the newest.
    pub async fn enrollment_code_of(&self, user_id: &str) -> Result<Option<EnrollmentCode>> {
        Ok(self.latest_code(user_id).await?.map(|(code, _)| code))
    }

    async fn latest_code(&self, user_id: &str) -> Result<Option<(EnrollmentCode, Vec<u8>)>> {
        // The open code first; otherwise the newest, so a doctor typing an old code hears why.
        let row: Option<CodeRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                code_columns!(),
                " FROM enrollment_codes WHERE user_id = $1
                 ORDER BY CASE WHEN used_at IS NULL AND voided_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id
                 LIMIT 1"
            ))
            .bind(user_id)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(code_from_row))
    }

    /// Checks an entered code (as its SHA-256) against the user's codes. A wrong entry against an
    /// open, unexpired code counts a failure in one atomic statement, voiding the code at its
    /// `max_failures`-th failure, so concurrent guesses on several instances all count.
    pub async fn check_enrollment_code(&self, user_id: &str, entered_hash: &[u8; 32], now: i64) -> Result<CodeCheck> {
        // The entered code among the user's codes, open or not, so that an old code is refused
        // with the reason it no longer works. Looking a SHA-256 of 80 random bits up by equality
        // reveals nothing through timing that could help guess another code.
        let matched: Option<CodeRow> = with_reader!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                code_columns!(),
                " FROM enrollment_codes WHERE user_id = $1 AND code_hash = $2 ORDER BY created_at DESC, id LIMIT 1"
            ))
            .bind(user_id)
            .bind(&entered_hash[..])
            .fetch_optional(pool)
            .await
        })?;
        if let Some((code, _)) = matched.map(code_from_row) {
            let id = code.id;
            return Ok(if code.used_at.is_some() {
                CodeCheck::Used { code_id: id }
            } else if code.void_reason.as_deref() == Some("exhausted") {
                CodeCheck::Exhausted { code_id: id }
            } else if code.voided_at.is_some() {
                CodeCheck::Voided { code_id: id }
            } else if code.expires_at <= now {
                CodeCheck::Expired { code_id: id }
            } else {
                CodeCheck::Valid { code_id: id }
            });
        }
        let Some((code, _)) = self.latest_code(user_id).await? else {
            return Ok(CodeCheck::NoCode);
        };
        let open = code.used_at.is_none() && code.voided_at.is_none();
        let id = code.id.clone();
        if !open {
            return Ok(if code.void_reason.as_deref() == Some("exhausted") {
                CodeCheck::Exhausted { code_id: id }
            } else {
                CodeCheck::NoCode
            });
        }
        if code.expires_at <= now {
            // Whatever was typed, the only code the doctor could have is no longer valid.
            return Ok(CodeCheck::Expired { code_id: id });
        }
        let counted: Option<CountedRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE enrollment_codes SET
                    failures = failures + 1,
                    voided_at = CASE WHEN failures + 1 >= max_failures THEN $2 ELSE voided_at END,
                    void_reason = CASE WHEN failures + 1 >= max_failures THEN 'exhausted' ELSE void_reason END,
                    updated_at = $2
                 WHERE id = $1 AND used_at IS NULL AND voided_at IS NULL
                 RETURNING failures, max_failures",
            )
            .bind(&id)
            .bind(now)
            .fetch_optional(pool)
            .await
        })?;
        Ok(match counted {
            Some(c) if c.failures < c.max_failures => CodeCheck::Wrong { code_id: id, tries_left: c.max_failures - c.failures },
            Some(_) => CodeCheck::Exhausted { code_id: id },
            // Used, voided or exhausted by a concurrent request since we read it.
            None => CodeCheck::NoCode,
        })
    }
}
