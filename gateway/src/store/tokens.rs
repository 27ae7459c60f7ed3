//! Token signing keys and issued token ids (docs/design.md §3.8).
//!
//! Issuing a token costs one read (calling client, its access to the clinic, doctor and open
//! signing session in a single join: `service_clients`) and a share of one write: token ids are
//! inserted in batches (see `group_commit`), by a statement that re-checks that each session is
//! still live, so a session ended on another instance a moment earlier gets no token.
//! Consumption is one conditional `UPDATE … RETURNING`: only one presentation, on any instance,
//! can succeed, and only while the token's signing session is open.

use super::audit::{HeadRow, append_chained, append_chained_after};
use super::tx::Conn;
use super::{AuditEvent, Backend, Error, Result, Store, read_optional, row, transaction, tx_execute, tx_rows, with_pool, with_reader};

row! {
    /// A stored signing key.
    #[derive(Debug, Clone)]
    pub struct SigningKeyRow {
        /// Key id.
        pub kid: String,
        /// Public JWK JSON.
        pub public_jwk: String,
        /// Encrypted private key.
        pub private_key: Vec<u8>,
        /// When it stopped signing.
        pub retired_at: Option<i64>,
        /// Unix seconds.
        pub created_at: i64,
    }
}

row! {
    /// Whether a refused token's session ended ([`Store::consume_refusal`]).
    struct RefusalRow {
        session_ended: bool,
    }
}

/// An issued token's id to record, with what its audit event names.
#[derive(Debug, Clone)]
pub struct NewIssuedToken {
    /// Token id.
    pub jti: String,
    /// Session.
    pub session_id: String,
    /// Requesting service client.
    pub client_id: String,
    /// The session's clinic (for the audit event).
    pub clinic_id: String,
    /// The doctor (for the audit event).
    pub user_id: String,
    /// Token expiry.
    pub expires_at: i64,
    /// Issue time: the session must be live at this time.
    pub issued_at: i64,
    /// Whether to move the session's last activity to `issued_at` too (at most once per
    /// `ACTIVITY_GRANULARITY_SECS` per session, so a session's frequent issues mostly write
    /// nothing to its row).
    pub touch: bool,
    /// Whether a refusal (its session closed before the commit) is audited with the batch;
    /// `false` when the caller will try once more with the doctor's new session.
    pub audit_refusal: bool,
}

impl NewIssuedToken {
    fn audit_event(&self, recorded: bool) -> Option<(AuditEvent, i64)> {
        if !recorded && !self.audit_refusal {
            return None;
        }
        let (clinic_id, user_id, client_id) = (self.clinic_id.clone(), self.user_id.clone(), self.client_id.clone());
        let event = if recorded {
            AuditEvent::TokenIssued { clinic_id, user_id, session_id: self.session_id.clone(), client_id, jti: self.jti.clone() }
        } else {
            AuditEvent::TokenRefused { clinic_id, user_id, client_id, reason: "no_session" }
        };
        Some((event, self.issued_at))
    }
}

/// A token to consume, with what its audit event names (from the verified token).
#[derive(Debug, Clone)]
pub struct NewConsume {
    /// Token id.
    pub jti: String,
    /// The consuming service client.
    pub consumer: String,
    /// The token's clinic.
    pub clinic_id: String,
    /// The token's doctor.
    pub user_id: String,
    /// When.
    pub at: i64,
}

impl NewConsume {
    fn audit_event(&self) -> (AuditEvent, i64) {
        let event = AuditEvent::TokenConsumed {
            clinic_id: self.clinic_id.clone(),
            user_id: self.user_id.clone(),
            client_id: self.consumer.clone(),
            jti: self.jti.clone(),
        };
        (event, self.at)
    }
}

/// A consumed token's record.
#[derive(Debug, Clone)]
pub struct ConsumedToken {
    /// Session.
    pub session_id: String,
    /// Who requested it.
    pub client_id: String,
}

/// What [`Store::consume_token`] did.
#[derive(Debug, Clone)]
pub enum Consumption {
    /// Marked used by this call.
    Consumed(ConsumedToken),
    /// Unused, but its signing session has ended (or its doctor was disabled): refused.
    SessionEnded,
    /// Unknown, already used or expired: refused.
    NotConsumable,
}

row! {
    /// A token id the group commit recorded.
    struct IssuedJti {
        jti: String,
    }
}

row! {
    /// A token the group commit consumed.
    struct ConsumedRow {
        jti: String,
        session_id: String,
        client_id: String,
    }
}


/// The condition on session `s` for a token issued at `$at` to be recorded: open, unexpired and
/// not idle (docs/design.md §3.7). One text for both databases' statements.
macro_rules! session_open_at {
    ($at:literal) => {
        concat!("s.ended_at IS NULL AND s.expires_at > ", $at, " AND s.last_activity_at + s.idle_secs > ", $at)
    };
}

/// The end of a consuming `UPDATE issued_tokens`: the row is consumed at `$at` only while unused,
/// unexpired, its signing session open and its doctor enabled, and it is returned as
/// [`ConsumedRow`] reads it. One text for both databases' statements.
macro_rules! consumable_at {
    ($at:literal) => {
        concat!(
            "issued_tokens.consumed_at IS NULL AND issued_tokens.expires_at > ", $at, "
               AND EXISTS (SELECT 1 FROM signing_sessions s JOIN users u ON u.id = s.user_id
                           WHERE s.id = issued_tokens.session_id AND s.ended_at IS NULL AND u.enabled)
             RETURNING issued_tokens.jti AS jti, issued_tokens.session_id AS session_id, issued_tokens.client_id AS client_id"
        )
    };
}

/// [`Store::commit_batch`]'s tokens on PostgreSQL, in one statement: each token is inserted while
/// its session is open at its issue time (as `HEAD`/`TAIL` do on SQLite), and each session that
/// got a token flagged `touch` moves its activity to its latest such token's time (`$6`: those
/// tokens' ids). A data-modifying WITH reads the insert's output, so the activity never moves
/// for a token that was refused.
///
/// The same statement locks the audit chain's head and returns it, for the batch's audit rows
/// (docs/decisions/0030-token-commit-locks-the-head-with-its-tokens.md). The head is the first
/// row it locks: the main query reads `head` first, and `touched`, which nothing reads, runs
/// after the main query. So every writer of the chain locks the head before any signing session.
const PG_RECORD: &str = concat!(
    "WITH head AS (SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1 FOR UPDATE),
     ins AS (
        INSERT INTO issued_tokens (jti, session_id, client_id, expires_at, consumed_at, consumed_by, created_at)
        SELECT v.jti, s.id, v.client_id, v.expires_at, NULL, NULL, v.issued_at
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) AS v(jti, session_id, client_id, expires_at, issued_at)
        JOIN signing_sessions s ON s.id = v.session_id
        WHERE ", session_open_at!("v.issued_at"), "
        RETURNING jti, session_id, created_at
     ), touched AS (
        UPDATE signing_sessions SET last_activity_at = t.at, updated_at = t.at
        FROM (SELECT session_id, MAX(created_at) AS at FROM ins WHERE jti = ANY($6::text[]) GROUP BY session_id) AS t
        WHERE signing_sessions.id = t.session_id AND signing_sessions.last_activity_at < t.at
     )
     SELECT head.seq, head.hash, head.keyed_from, ARRAY(SELECT jti FROM ins) AS recorded FROM head"
);

/// [`Store::commit_batch`]'s consumption on PostgreSQL, in one statement of column arrays.
const PG_CONSUME: &str = concat!(
    "UPDATE issued_tokens SET consumed_at = v.at, consumed_by = v.consumer
     FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS v(jti, consumer, at)
     WHERE issued_tokens.jti = v.jti AND ",
    consumable_at!("v.at"),
);

/// Runs [`PG_RECORD`] for `tokens` (perhaps none): the ids recorded, and the audit chain's head,
/// now locked by the open transaction.
async fn pg_record(conn: &mut sqlx::PgConnection, tokens: &[NewIssuedToken]) -> Result<(std::collections::HashSet<String>, HeadRow)> {
    let column = |f: fn(&NewIssuedToken) -> &str| tokens.iter().map(f).collect::<Vec<&str>>();
    // The head's seq, hash and keyed_from, and the ids recorded.
    let (seq, hash, keyed_from, recorded): (i64, Vec<u8>, Option<i64>, Vec<String>) = sqlx::query_as(PG_RECORD)
        .bind(column(|t| &t.jti))
        .bind(column(|t| &t.session_id))
        .bind(column(|t| &t.client_id))
        .bind(tokens.iter().map(|t| t.expires_at).collect::<Vec<i64>>())
        .bind(tokens.iter().map(|t| t.issued_at).collect::<Vec<i64>>())
        .bind(tokens.iter().filter(|t| t.touch).map(|t| t.jti.as_str()).collect::<Vec<&str>>())
        .fetch_one(conn)
        .await?;
    Ok((recorded.into_iter().collect(), HeadRow { seq, hash, keyed_from }))
}

/// Runs [`PG_CONSUME`] for `consumes` (not empty, each jti once): the tokens consumed.
async fn pg_consume(conn: &mut sqlx::PgConnection, consumes: &[&NewConsume]) -> Result<Vec<ConsumedRow>> {
    Ok(sqlx::query_as(PG_CONSUME)
        .bind(consumes.iter().map(|c| c.jti.as_str()).collect::<Vec<&str>>())
        .bind(consumes.iter().map(|c| c.consumer.as_str()).collect::<Vec<&str>>())
        .bind(consumes.iter().map(|c| c.at).collect::<Vec<i64>>())
        .fetch_all(conn)
        .await?)
}

impl Store {
    /// Records issued tokens and appends audit events, in one transaction (see
    /// [`Store::commit_batch`]). Returns, per token, whether it was recorded.
    pub async fn record_issued_tokens(&self, tokens: &[NewIssuedToken], events: &[(AuditEvent, i64)]) -> Result<Vec<bool>> {
        Ok(self.commit_batch(tokens, &[], events).await?.0)
    }

    /// Consumes one token with its audit event (see [`Store::commit_batch`]); a refusal is
    /// explained (not audited: the caller audits it with the answer it gives).
    pub async fn consume_token(&self, consume: &NewConsume) -> Result<Consumption> {
        let (_, consumed) = self.commit_batch(&[], std::slice::from_ref(consume), &[]).await?;
        match consumed.first() {
            Some(Some(token)) => Ok(Consumption::Consumed(token.clone())),
            _ => self.consume_refusal(&consume.jti, consume.at).await,
        }
    }

    /// The group commit's transaction: records issued tokens, consumes tokens, and appends audit
    /// events, all or nothing, so an answer given after it is backed by its audit rows.
    ///
    /// A token is recorded only while its session is open (not ended, expired or idle at its
    /// `issued_at`); each appends its own audit event (`token_issued`, or the refusal
    /// `no_session` when its session closed between the caller's read and this write).
    ///
    /// A token is consumed once, by a statement that also requires it unexpired and its signing
    /// session open and its doctor enabled: a token issued before logout, the doctor's end
    /// button, an operator's revoke, account disable or authenticator removal (each ends the
    /// session, see `signing`) is refused with nothing marked. Session expiry is not checked: the
    /// token's `exp` is at most the session's remaining life when issued. Each consumed token
    /// appends `token_consumed`; when one batch holds the same token twice, the first wins.
    ///
    /// Then `events` follow. Returns, per token, whether it was recorded, and per consume, the
    /// consumed token or `None` when refused.
    pub async fn commit_batch(
        &self,
        tokens: &[NewIssuedToken],
        consumes: &[NewConsume],
        events: &[(AuditEvent, i64)],
    ) -> Result<(Vec<bool>, Vec<Option<ConsumedToken>>)> {
        // SQLite's multi-row statements (PostgreSQL sends arrays: `PG_RECORD`, `PG_CONSUME`);
        // VALUES columns are column1….
        const HEAD: &str = "INSERT INTO issued_tokens (jti, session_id, client_id, expires_at, consumed_at, consumed_by, created_at)
             SELECT v.column1, s.id, v.column3, v.column4, NULL, NULL, v.column5 FROM (";
        const TAIL: &str =
            concat!(") AS v JOIN signing_sessions s ON s.id = v.column2 WHERE ", session_open_at!("v.column5"), " RETURNING jti");
        // Activity: one statement for the batch, (session id, time) per touched session.
        const TOUCH_HEAD: &str = "UPDATE signing_sessions SET last_activity_at = v.column2, updated_at = v.column2 FROM (";
        const TOUCH_TAIL: &str = ") AS v WHERE signing_sessions.id = v.column1 AND signing_sessions.last_activity_at < v.column2";
        // Consumption: (jti, consumer, time) rows, each jti once per statement.
        const CONSUME_HEAD: &str = "UPDATE issued_tokens SET consumed_at = v.column3, consumed_by = v.column2 FROM (";
        const CONSUME_TAIL: &str = concat!(") AS v WHERE issued_tokens.jti = v.column1 AND ", consumable_at!("v.column3"));
        let outcome = |inserted: std::collections::HashSet<String>| -> Vec<bool> {
            tokens.iter().map(|t| inserted.contains(&t.jti)).collect()
        };
        // Each touched session once, at its latest token's time (an UPDATE … FROM joining one row
        // to two would apply either).
        let touched = |recorded: &[bool]| -> Vec<(&str, i64)> {
            let mut latest = std::collections::HashMap::<&str, i64>::new();
            for (t, _) in tokens.iter().zip(recorded).filter(|(t, r)| t.touch && **r) {
                let at = latest.entry(t.session_id.as_str()).or_insert(t.issued_at);
                *at = (*at).max(t.issued_at);
            }
            latest.into_iter().collect()
        };
        // The first consume of each jti goes to the statement; a repeat in the batch is refused.
        let first_consumes: Vec<&NewConsume> = {
            let mut seen = std::collections::HashSet::with_capacity(consumes.len());
            consumes.iter().filter(|c| seen.insert(c.jti.as_str())).collect()
        };
        let consumed = |mut won: std::collections::HashMap<String, ConsumedToken>| -> Vec<Option<ConsumedToken>> {
            consumes.iter().map(|c| won.remove(&c.jti)).collect()
        };
        // Each token's and each consumption's own audit event depends on what happened.
        let audit = |recorded: &[bool], consumed: &[Option<ConsumedToken>]| -> Vec<(AuditEvent, i64)> {
            tokens
                .iter()
                .zip(recorded)
                .filter_map(|(t, r)| t.audit_event(*r))
                .chain(consumes.iter().zip(consumed).filter(|(_, done)| done.is_some()).map(|(c, _)| c.audit_event()))
                .chain(events.iter().cloned())
                .collect()
        };
        let won_map = |rows: Vec<ConsumedRow>| {
            rows.into_iter().map(|r| (r.jti, ConsumedToken { session_id: r.session_id, client_id: r.client_id })).collect()
        };
        // One transaction; on SQLite inline on the writer connection (decision 0008).
        let committed = transaction!(self, |tx| {
            let (recorded, won, head) = match &mut tx.conn {
                // One statement records the tokens and moves their sessions' activity, one
                // consumes: each column as an array, one statement text for any batch size.
                Conn::Postgres(conn) => {
                    let (recorded, head) = pg_record(conn, tokens).await?;
                    let won = if first_consumes.is_empty() { Vec::new() } else { pg_consume(conn, &first_consumes).await? };
                    (outcome(recorded), won, Some(head))
                }
                // SQLite (no data-modifying WITH, no arrays): multi-row statements in power-of-two
                // chunks, a handful of cached statement texts.
                Conn::Sqlite(_) => {
                    let mut inserted = std::collections::HashSet::with_capacity(tokens.len());
                    for chunk in super::batch_chunks(tokens) {
                        let jtis = tx_rows!(
                            tx,
                            all<IssuedJti>,
                            HEAD,
                            chunk,
                            |t| [t.jti, t.session_id, t.client_id, t.expires_at, t.issued_at],
                            TAIL,
                        )?;
                        inserted.extend(jtis.into_iter().map(|r| r.jti));
                    }
                    let recorded = outcome(inserted);
                    for chunk in super::batch_chunks(&touched(&recorded)) {
                        tx_rows!(tx, execute, TOUCH_HEAD, chunk, |t| [t.0, t.1], TOUCH_TAIL)?;
                    }
                    let mut won = Vec::new();
                    for chunk in super::batch_chunks(&first_consumes) {
                        won.extend(tx_rows!(tx, all<ConsumedRow>, CONSUME_HEAD, chunk, |c| [c.jti, c.consumer, c.at], CONSUME_TAIL)?);
                    }
                    (recorded, won, None)
                }
            };
            let consumed = consumed(won_map(won));
            let all = audit(&recorded, &consumed);
            // The group commit is one transaction per batch already: it chains in it, after the
            // head that PostgreSQL's first statement locked.
            match (all.is_empty(), head) {
                (true, _) => {}
                (false, Some(head)) => append_chained_after(tx, &self.audit_rows(&all), head).await?,
                (false, None) => append_chained(tx, &self.audit_rows(&all)).await?,
            }
            Ok((recorded, consumed))
        });
        self.count_audit_failure(&committed);
        committed
    }

    /// Why a token was not consumed; only which answer to give is read here, the decision was
    /// the consuming statement's. A token still unused whose session ended, vanished or whose
    /// doctor was disabled is `SessionEnded`; anything else (unknown, used, expired) is
    /// `NotConsumable`.
    pub async fn consume_refusal(&self, jti: &str, now: i64) -> Result<Consumption> {
        let ended = read_optional!(
            self,
            RefusalRow,
            "SELECT COALESCE(t.consumed_at IS NULL AND t.expires_at > $2
                             AND (s.id IS NULL OR s.ended_at IS NOT NULL OR NOT u.enabled), FALSE) AS session_ended
             FROM issued_tokens t
             LEFT JOIN signing_sessions s ON s.id = t.session_id
             LEFT JOIN users u ON u.id = s.user_id
             WHERE t.jti = $1",
            jti,
            now,
        )?;
        Ok(if ended.is_some_and(|r| r.session_ended) { Consumption::SessionEnded } else { Consumption::NotConsumable })
    }

    /// Deletes token ids that expired before `before`.
    pub async fn purge_issued_tokens(&self, before: i64) -> Result<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query("DELETE FROM issued_tokens WHERE expires_at < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?)
    }

    // ---- signing keys ---------------------------------------------------------------------

    /// The active ES256 key, if any.
    pub async fn active_signing_key(&self) -> Result<Option<SigningKeyRow>> {
        let row: Option<SigningKeyRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kid, public_jwk, private_key, retired_at, created_at FROM signing_keys
                 WHERE alg = 'ES256' AND retired_at IS NULL",
            )
            .fetch_optional(pool)
            .await
        })?;
        Ok(row)
    }

    /// Inserts a key unless an active one exists (several instances may start at once).
    pub async fn insert_signing_key_if_none_active(
        &self,
        kid: &str,
        alg: &str,
        public_jwk: &str,
        private_key: &[u8],
        now: i64,
    ) -> Result<()> {
        let r = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, retired_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, NULL, $5, $5)",
            )
            .bind(kid)
            .bind(alg)
            .bind(public_jwk)
            .bind(private_key)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match r {
            Ok(_) => Ok(()),
            // Another instance created the first key at the same moment: use that one.
            Err(e) => match Error::from(e) {
                Error::Conflict(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Retires the active key and activates a new one, atomically.
    pub async fn rotate_signing_key(&self, kid: &str, alg: &str, public_jwk: &str, private_key: &[u8], now: i64) -> Result<()> {
        transaction!(self, |tx| {
            tx_execute!(tx, "UPDATE signing_keys SET retired_at = $2, updated_at = $2 WHERE alg = $1 AND retired_at IS NULL", alg, now)?;
            tx_execute!(
                tx,
                "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, retired_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, NULL, $5, $5)",
                kid,
                alg,
                public_jwk,
                private_key,
                now,
            )?;
            Ok(())
        })
    }

    /// Keys to publish: the active one and those retired after `retired_after`.
    pub async fn published_signing_keys(&self, retired_after: i64) -> Result<Vec<SigningKeyRow>> {
        let rows: Vec<SigningKeyRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kid, public_jwk, private_key, retired_at, created_at FROM signing_keys
                 WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
            )
            .bind(retired_after)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows)
    }

    /// Every key, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        self.published_signing_keys(i64::MIN).await
    }
}
