//! Login lockout: failed password checks counted per login key (issue 15).

use super::{Backend, Result, Store, row, with_pool, with_reader, write_optional};

impl Store {
    /// Until when `login_key` is locked, if it is locked at `now`.
    pub async fn login_locked_until(&self, login_key: &str, now: i64) -> Result<Option<i64>> {
        let row: Option<(Option<i64>,)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT locked_until FROM login_attempts WHERE login_key = $1")
                .bind(login_key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.and_then(|(until,)| until).filter(|&until| until > now))
    }

    /// Reserves one password check for `login_key` before it runs, in one atomic statement
    /// (several requests and instances may reserve at once): at most `max_failures` checks per
    /// window, then none until the lock time has passed. Every reserved check counts as a
    /// failure until [`Store::clear_login_failures`] forgets it after a right password, so a
    /// burst of guesses cannot run more checks than the limit while the first ones are still
    /// hashing (issue 15, item 1). A window or lock that has run out starts a fresh count.
    pub async fn reserve_login_attempt(&self, login_key: &str, now: i64, rules: &LockoutRules) -> Result<LoginReservation> {
        // `fresh`: the previous window ran out without a lock, or the lock ran out. A key locked
        // at `now` is never fresh, however old its window. `DO UPDATE … WHERE` changes and
        // returns nothing when the key is locked or at the limit: the attempt is refused.
        const SQL: &str = "
            INSERT INTO login_attempts (login_key, failures, window_start, locked_until, created_at, updated_at)
            VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 ELSE NULL END, $2, $2)
            ON CONFLICT (login_key) DO UPDATE SET
                failures = CASE WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                                  OR login_attempts.locked_until <= $2
                           THEN 1 ELSE login_attempts.failures + 1 END,
                window_start = CASE WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                                  OR login_attempts.locked_until <= $2
                           THEN $2 ELSE login_attempts.window_start END,
                locked_until = CASE
                    WHEN (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
                      OR login_attempts.locked_until <= $2
                    THEN CASE WHEN 1 >= $3 THEN $2 + $5 ELSE NULL END
                    WHEN login_attempts.failures + 1 >= $3 THEN $2 + $5
                    ELSE NULL END,
                updated_at = $2
            WHERE (login_attempts.locked_until IS NULL AND login_attempts.window_start <= $2 - $4)
               OR login_attempts.locked_until <= $2
               OR (login_attempts.locked_until IS NULL AND login_attempts.failures < $3)
            RETURNING locked_until, failures";
        let max = i64::from(rules.max_failures);
        let reserved =
            write_optional!(self, (Option<i64>, i64), SQL, login_key, now, max, rules.window_secs, rules.lockout_secs)?;
        if let Some((locks_at, failures)) = reserved {
            let tries_left = (max - failures).max(0);
            return Ok(LoginReservation::Reserved { locks_until: locks_at, tries_left });
        }
        // Refused: say until when. A count at the limit without a lock (the limit was lowered
        // since) lasts until its window runs out.
        let (until,): (Option<i64>,) = with_reader!(self, |pool| {
            sqlx::query_as("SELECT COALESCE(locked_until, window_start + $2) FROM login_attempts WHERE login_key = $1")
                .bind(login_key)
                .bind(rules.window_secs)
                .fetch_optional(pool)
                .await
        })?
        .unwrap_or((None,));
        Ok(LoginReservation::Refused { until: until.unwrap_or(now + rules.lockout_secs) })
    }

    /// Forgets `login_key`'s failures and lock (an operator's `user unlock`); returns what was
    /// forgotten, `None` when there was nothing.
    pub async fn unlock_login(&self, login_key: &str) -> Result<Option<LockState>> {
        let row = write_optional!(
            self,
            LockState,
            "DELETE FROM login_attempts WHERE login_key = $1 RETURNING failures, locked_until",
            login_key
        )?;
        Ok(row)
    }

    /// Forgets failures after a successful login.
    pub async fn clear_login_failures(&self, login_key: &str) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM login_attempts WHERE login_key = $1").bind(login_key).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

row! {
    /// A login key's count as [`Store::unlock_login`] found it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct LockState {
        /// Failed (or reserved) checks in the current window.
        pub failures: i64,
        /// Until when it was locked (it may have run out already).
        pub locked_until: Option<i64>,
    }
}

/// What [`Store::reserve_login_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReservation {
    /// The password may be checked. `locks_until` is set when this was the last check the
    /// window allows: if it fails, the key stays locked until then.
    Reserved {
        /// The lock this attempt set, if it was the last one allowed.
        locks_until: Option<i64>,
        /// Checks the window still allows after this one, should this one fail (0 when this
        /// was the last).
        tries_left: i64,
    },
    /// Locked, or at the limit: the password must not be checked.
    Refused {
        /// When attempts are allowed again.
        until: i64,
    },
}

/// Lockout parameters, from [`crate::config::LoginConfig`].
#[derive(Debug, Clone, Copy)]
pub struct LockoutRules {
    /// Failures that lock.
    pub max_failures: u32,
    /// Counting window.
    pub window_secs: i64,
    /// Lock duration.
    pub lockout_secs: i64,
}
