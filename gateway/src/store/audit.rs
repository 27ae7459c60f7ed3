//! The append-only, keyed hash-chained audit log (docs/design.md §3.9, decision 0013).
//!
//! Row `n` stores `hash_n = HMAC-SHA256(audit key, hash_{n-1} || canonical(row_n))` ([`audit_link`]),
//! under a key that is not in the database, and the single-row `audit_head` holds the last
//! sequence number and link. A log written before keyed chaining keeps its plain
//! `SHA-256(hash_{n-1} || canonical(row_n))` rows; `audit_head.keyed_from` names the first keyed
//! row, an `audit_chain_keyed` event an operator appends with `gateway admin audit rekey`. Appends update the head in the same
//! transaction, so appends from several instances serialise and the chain stays linear.
//! Verification recomputes the chain and names the first row that does not fit: a changed row
//! breaks its own hash, a deleted row leaves a gap, an inserted row breaks the links, and a cut
//! tail disagrees with the head.

use std::sync::Arc;

use serde::Serialize;

pub use infra::audit_chain::{AuditKey, RowFields, audit_link};

pub use super::audit_event::{AuditEvent, Outcome};
use super::tx::{Conn, Tx};
use super::{Backend, Error, Result, Store, row, transaction, tx_execute, tx_fetch, tx_rows, with_pool, with_reader};

/// One stored audit row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Event name.
    pub event: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Clinic id, if any.
    pub clinic_id: Option<String>,
    /// User id, if any.
    pub user_id: Option<String>,
    /// Event details (JSON text as stored).
    pub detail: serde_json::Value,
    /// Hex hash of this row.
    pub hash: String,
}

/// Result of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerification {
    /// The whole chain is intact. Rows from `keyed_from` on are linked with HMAC-SHA256 under the
    /// audit key; rows before it (a log written before keyed chaining) with plain SHA-256.
    /// `None`: no keyed segment yet (`gateway admin audit rekey` starts it).
    Intact { rows: i64, keyed_from: Option<i64> },
    /// Row `seq` was changed after it was written.
    Modified { seq: i64 },
    /// Rows before `seq` are missing (expected `expected`).
    Missing { seq: i64, expected: i64 },
    /// Row `seq` does not link to its predecessor: inserted or reordered.
    BrokenLink { seq: i64 },
    /// The last rows were removed: the head says `head_seq`, the log ends at `last_seq`.
    Truncated { last_seq: i64, head_seq: i64 },
    /// The head says the keyed segment starts at row `seq`, but that row is not the
    /// `audit_chain_keyed` event that starts one: the boundary was moved.
    KeyedStartMoved { seq: i64 },
}

impl AuditVerification {
    /// The segments of an intact chain, for operators: "rows 1–9 plain SHA-256, rows 10–42 keyed
    /// HMAC-SHA256".
    pub fn segments(rows: i64, keyed_from: Option<i64>) -> String {
        let keyed_from = keyed_from.unwrap_or(rows + 1).max(1);
        let mut parts = Vec::new();
        if keyed_from > 1 {
            parts.push(format!("rows 1–{} plain SHA-256", (keyed_from - 1).min(rows)));
        }
        if rows >= keyed_from {
            parts.push(format!("rows {keyed_from}–{rows} keyed HMAC-SHA256"));
        }
        if parts.is_empty() {
            parts.push("empty, keyed from its first row".to_owned());
        }
        parts.join(", ")
    }
}

row! {
    /// An `audit_log` row as selected.
    struct AuditRow {
        seq: i64,
        created_at: i64,
        event: String,
        outcome: String,
        clinic_id: Option<String>,
        user_id: Option<String>,
        detail: String,
        prev_hash: Vec<u8>,
        hash: Vec<u8>,
    }
}

row! {
    /// The `audit_head` row: the last sequence number, its link, and the first keyed row.
    pub(super) struct HeadRow {
        pub(super) seq: i64,
        pub(super) hash: Vec<u8>,
        pub(super) keyed_from: Option<i64>,
    }
}

/// The event that starts the keyed segment of a log written before keyed chaining.
pub const CHAIN_KEYED_EVENT: &str = "audit_chain_keyed";

/// An event ready to append: (at, name, outcome, clinic, user, detail JSON).
pub(super) type PendingRow<'a> = (i64, &'static str, Outcome, Option<&'a str>, Option<&'a str>, String);

/// Rows ready to append, with the key that links them.
pub(super) struct AuditBatch<'a> {
    key: Option<&'a AuditKey>,
    rows: Vec<PendingRow<'a>>,
    /// `Some(old head)`: this batch starts the keyed segment (`audit rekey`), after that head.
    rekey: Option<Vec<u8>>,
}

impl Store {
    /// Flattens events into rows to append with this store's audit key, mirroring each to the
    /// `audit` tracing target.
    pub(super) fn audit_rows<'a>(&'a self, events: &'a [(AuditEvent, i64)]) -> AuditBatch<'a> {
        AuditBatch { key: self.audit_key.as_deref(), rows: pending_rows(events), rekey: None }
    }
}

impl<'a> AuditBatch<'a> {
    /// The rows, for a PostgreSQL statement that queues them to `audit_pending` beside its own
    /// write (`audit_pending::queue_rows!`), as [`append_audit`] would queue them: `None` for the
    /// batch that starts the keyed segment (it is chained in its own transaction), and without an
    /// audit key the refusal [`append_audit`] gives.
    pub(super) fn queueable(&self) -> Result<Option<&[PendingRow<'a>]>> {
        match (self.key, &self.rekey) {
            (_, Some(_)) => Ok(None),
            (None, None) => Err(no_key()),
            (Some(_), None) => Ok(Some(&self.rows)),
        }
    }
}

fn pending_rows(events: &[(AuditEvent, i64)]) -> Vec<PendingRow<'_>> {
    events
        .iter()
        .map(|(event, at)| {
            let (name, outcome, clinic_id, user_id, detail) = event.parts();
            let detail = detail.to_string();
            tracing::info!(target: "audit", event = name, outcome = outcome.as_str(), clinic.id = clinic_id, principal.id = user_id, detail = %detail);
            (*at, name, outcome, clinic_id, user_id, detail)
        })
        .collect()
}

/// A row's fields before it is chained: (at, event, outcome, clinic, user, detail).
pub(super) type RowView<'a> = (i64, &'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

/// A row chained into the log, as inserted.
pub(super) struct ChainedRow<'a> {
    seq: i64,
    at: i64,
    event: &'a str,
    outcome: &'a str,
    clinic_id: Option<&'a str>,
    user_id: Option<&'a str>,
    detail: &'a str,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// Takes `count` sequence numbers from the head row (concurrent appends queue on it).
const TAKE_HEAD: &str = "UPDATE audit_head SET seq = seq + $1, updated_at = $2 WHERE id = 1 RETURNING seq, hash, keyed_from";
/// Moves the head to the batch's last hash.
const SET_HEAD: &str = "UPDATE audit_head SET hash = $1 WHERE id = 1";
/// Starts the keyed segment at a row (`audit rekey`).
const SET_KEYED_FROM: &str = "UPDATE audit_head SET keyed_from = $1 WHERE id = 1";
macro_rules! insert_rows {
    () => {
        "INSERT INTO audit_log (seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash)"
    };
}
const INSERT_ROWS: &str = insert_rows!();
macro_rules! unnest_rows {
    () => {
        " SELECT * FROM UNNEST($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[])"
    };
}
/// PostgreSQL: the rows as one array per column, and the head moved to `$1` (a data-modifying
/// `WITH`), in one statement.
const INSERT_ARRAYS_MOVING_HEAD: &str =
    concat!("WITH head AS (UPDATE audit_head SET hash = $1 WHERE id = 1) ", insert_rows!(), unnest_rows!());
/// The same, for a head that was only locked: its sequence number moves too (`audit_pending`).
const INSERT_ARRAYS_SETTING_HEAD: &str = concat!(
    "WITH head AS (UPDATE audit_head SET hash = $1, seq = $11, updated_at = $12 WHERE id = 1) ",
    insert_rows!(),
    unnest_rows!()
);

/// The refusal of an append without an audit key.
pub(super) fn no_key() -> Error {
    Error::AuditChain("no audit key is configured (audit.key or audit.key_file)".to_owned())
}

/// The refusal of an append to a log written before keyed chaining (`rows` in it, if known).
pub(super) fn not_keyed(rows: Option<i64>) -> Error {
    let held = rows.map_or_else(|| "rows".to_owned(), |n| format!("{n} rows"));
    Error::AuditChain(format!(
        "the audit log holds {held} chained before keyed chaining; stop instances of older versions and run \
         `gateway admin audit rekey` once to start the keyed segment (nothing was written)"
    ))
}

/// Checks the head `(last, prev, keyed_from)` returned by [`TAKE_HEAD`] before `batch` is chained
/// after it, and returns the audit key and the row that starts a keyed segment, if this batch does.
/// Every new row is keyed: a log written before keyed chaining takes no rows until an operator
/// runs `gateway admin audit rekey` (docs/design.md §3.9), so nothing is ever appended as plain SHA-256.
fn check_head<'a>(batch: &AuditBatch<'a>, last: i64, prev: &[u8], keyed_from: Option<i64>) -> Result<(&'a AuditKey, Option<i64>)> {
    let Some(key) = batch.key else {
        return Err(no_key());
    };
    let first = last - i64::try_from(batch.rows.len()).unwrap_or(i64::MAX) + 1;
    match (&batch.rekey, keyed_from) {
        (None, Some(_)) => Ok((key, None)),
        (None, None) => Err(not_keyed(Some(first - 1))),
        (Some(_), Some(from)) => Err(Error::AuditChain(format!("the audit chain is already keyed from row {from}"))),
        (Some(expected), None) if expected.as_slice() != prev => {
            Err(Error::AuditChain("the audit log changed meanwhile; nothing was done, run the command again".to_owned()))
        }
        (Some(_), None) => Ok((key, Some(first))),
    }
}

/// Chains `rows` after the row `after` whose link is `prev`; returns them and the last link.
pub(super) fn chain_after<'a>(
    key: &AuditKey,
    rows: impl IntoIterator<Item = RowView<'a>>,
    after: i64,
    mut prev: Vec<u8>,
) -> (Vec<ChainedRow<'a>>, Vec<u8>) {
    let mut seq = after;
    let mut chained = Vec::new();
    for (at, event, outcome, clinic_id, user_id, detail) in rows {
        seq += 1;
        let hash = audit_link(Some(key), &prev, (seq, at, event, outcome, clinic_id, user_id, detail));
        chained.push(ChainedRow { seq, at, event, outcome, clinic_id, user_id, detail, prev_hash: prev, hash: hash.clone() });
        prev = hash;
    }
    (chained, prev)
}

/// PostgreSQL: writes `chained` with one statement of column arrays and moves the head to `link`
/// in it (a data-modifying `WITH`); `set_seq` (sequence number, time) also moves its sequence
/// number, for a head that was only locked.
pub(super) async fn insert_chained(
    conn: &mut sqlx::PgConnection,
    chained: &[ChainedRow<'_>],
    link: &[u8],
    set_seq: Option<(i64, i64)>,
) -> Result<()> {
    let sql = if set_seq.is_some() { INSERT_ARRAYS_SETTING_HEAD } else { INSERT_ARRAYS_MOVING_HEAD };
    let mut query = sqlx::query(sql)
        .bind(link)
        .bind(chained.iter().map(|r| r.seq).collect::<Vec<i64>>())
        .bind(chained.iter().map(|r| r.at).collect::<Vec<i64>>())
        .bind(chained.iter().map(|r| r.event).collect::<Vec<&str>>())
        .bind(chained.iter().map(|r| r.outcome).collect::<Vec<&str>>())
        .bind(chained.iter().map(|r| r.clinic_id).collect::<Vec<Option<&str>>>())
        .bind(chained.iter().map(|r| r.user_id).collect::<Vec<Option<&str>>>())
        .bind(chained.iter().map(|r| r.detail).collect::<Vec<&str>>())
        .bind(chained.iter().map(|r| r.prev_hash.as_slice()).collect::<Vec<&[u8]>>())
        .bind(chained.iter().map(|r| r.hash.as_slice()).collect::<Vec<&[u8]>>());
    if let Some((seq, at)) = set_seq {
        query = query.bind(seq).bind(at);
    }
    query.execute(conn).await?;
    Ok(())
}

fn head_args(rows: &[PendingRow<'_>]) -> (i64, i64) {
    (i64::try_from(rows.len()).unwrap_or(i64::MAX), rows.iter().map(|r| r.0).max().unwrap_or_default())
}

/// Appends `batch` (from [`Store::audit_rows`], not empty) in the open transaction `tx`. On
/// PostgreSQL the rows go to `audit_pending` and are chained after the commit, before the caller
/// is answered (`audit_pending`; decision 0022); on SQLite, and for `audit rekey`, they are
/// chained here ([`append_chained`]).
pub(super) async fn append_audit(tx: &mut Tx<'_>, batch: &AuditBatch<'_>) -> Result<()> {
    if tx.is_postgres() && batch.rekey.is_none() {
        return super::audit_pending::queue(tx, batch.key, &batch.rows).await;
    }
    append_chained(tx, batch).await
}

/// Appends `batch` (not empty) in the open transaction `tx`, chained: the head row is taken
/// first, the batch is chained in memory and written with multi-row INSERTs (one statement of
/// column arrays on PostgreSQL; power-of-two chunks on SQLite, so each connection caches a
/// handful of statement texts), and the head moves to the last link. The group commit appends
/// this way: it is one transaction per batch already.
pub(super) async fn append_chained(tx: &mut Tx<'_>, batch: &AuditBatch<'_>) -> Result<()> {
    let (count, updated_at) = head_args(&batch.rows);
    let head = tx_fetch!(tx, one, HeadRow, TAKE_HEAD, count, updated_at)?;
    write_chained(tx, batch, head, true).await
}

/// [`append_chained`] after a head that the open transaction `tx` (PostgreSQL) has only locked,
/// `head` as it read it: its sequence number moves with the rows. The group commit locks the head
/// in the statement that records its tokens (docs/decisions/0030-token-commit-locks-the-head-with-its-tokens.md).
pub(super) async fn append_chained_after(tx: &mut Tx<'_>, batch: &AuditBatch<'_>, head: HeadRow) -> Result<()> {
    write_chained(tx, batch, head, false).await
}

/// Chains `batch` after `head` and writes it: `taken` when [`TAKE_HEAD`] already moved the head's
/// sequence number past the batch, otherwise the head was only locked and its number moves here.
async fn write_chained(tx: &mut Tx<'_>, batch: &AuditBatch<'_>, head: HeadRow, taken: bool) -> Result<()> {
    let rows = &batch.rows;
    let (count, updated_at) = head_args(rows);
    let last = if taken { head.seq } else { head.seq + count };
    let (key, starts_keyed) = check_head(batch, last, &head.hash, head.keyed_from)?;
    let views = rows.iter().map(|(at, name, outcome, clinic_id, user_id, detail)| {
        (*at, *name, outcome.as_str(), *clinic_id, *user_id, detail.as_str())
    });
    let (chained, link) = chain_after(key, views, last - count, head.hash);
    match &mut tx.conn {
        // On PostgreSQL one statement writes the whole batch and moves the head: the rows go as
        // one array per column (one statement text for any batch size), and a data-modifying
        // WITH moves the head, so the head row stays locked for one round trip less.
        Conn::Postgres(conn) => insert_chained(conn, &chained, &link, (!taken).then_some((last, updated_at))).await?,
        Conn::Sqlite(_) if !taken => return Err(Error::AuditChain("a locked head is PostgreSQL's only".to_owned())),
        // SQLite has no data-modifying WITH: multi-row INSERTs in power-of-two chunks (a handful
        // of cached statement texts), then the head moves.
        Conn::Sqlite(_) => {
            for chunk in super::batch_chunks(&chained) {
                tx_rows!(
                    tx,
                    execute,
                    INSERT_ROWS,
                    chunk,
                    |r| [r.seq, r.at, r.event, r.outcome, r.clinic_id, r.user_id, r.detail, r.prev_hash, r.hash],
                    "",
                )?;
            }
            tx_execute!(tx, SET_HEAD, &link)?;
        }
    }
    if let Some(first) = starts_keyed {
        tx_execute!(tx, SET_KEYED_FROM, first)?;
    }
    tx.audited(rows.iter().map(|r| (r.1, r.2.as_str())));
    Ok(())
}

const PAGE: i64 = 1000;

/// The chain's head as stored: rows, last link, and where the keyed segment starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Rows in the chain (the last sequence number).
    pub rows: i64,
    /// The last row's link (32 zero bytes for an empty chain).
    pub link: Vec<u8>,
    /// The first keyed row; `None` until `audit rekey` on a log written before keyed chaining.
    pub keyed_from: Option<i64>,
}

impl Store {
    /// This store with the audit key that links new rows and verifies keyed ones. Without one,
    /// appends are refused.
    #[must_use]
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Some(Arc::new(key));
        self
    }

    /// Appends an event at `now` and mirrors it to the `audit` tracing target.
    pub async fn audit(&self, event: &AuditEvent, now: i64) -> Result<()> {
        self.audit_batch(&[(event.clone(), now)]).await
    }

    /// Appends events in order, in one transaction: the head row is taken once for the whole
    /// batch, so a busy instance pays one serialisation point per batch, not per event.
    pub async fn audit_batch(&self, events: &[(AuditEvent, i64)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.append(&self.audit_rows(events)).await
    }

    async fn append(&self, batch: &AuditBatch<'_>) -> Result<()> {
        let appended = transaction!(self, |tx| append_audit(tx, batch).await);
        self.count_audit_failure(&appended);
        appended
    }

    /// Waits until the audit rows queued so far are chained (PostgreSQL; decision 0022): a batch
    /// that begins after this call chains everything pending, of every instance.
    pub(super) async fn audit_chained(&self) -> Result<()> {
        let Backend::Postgres(pool) = &self.backend else { return Ok(()) };
        let chained = match &self.audit_chainer {
            Some(chainer) => chainer.chained(pool, self.audit_key.clone()).await,
            None => super::audit_pending::chain_pending(pool, self.audit_key.as_deref()).await,
        };
        self.count_audit_failure(&chained);
        chained
    }

    /// The chain's head, after every pending row is chained.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        self.audit_chained().await?;
        let head: HeadRow = with_pool!(self, |pool| {
            sqlx::query_as("SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1").fetch_one(pool).await
        })?;
        Ok(AuditHead { rows: head.seq, link: head.hash, keyed_from: head.keyed_from })
    }

    /// Starts the keyed segment of a log written before keyed chaining (`gateway admin audit
    /// rekey`): appends an `audit_chain_keyed` event, linked with the audit key to the old head,
    /// and keys every row after it. Returns its sequence number. Refused, changing nothing, when
    /// the chain is already keyed or has a break (verify it first).
    pub async fn audit_rekey(&self, now: i64) -> Result<i64> {
        let head = self.audit_head().await?;
        if let Some(from) = head.keyed_from {
            return Err(Error::AuditChain(format!("the audit chain is already keyed from row {from}")));
        }
        match self.audit_verify().await? {
            AuditVerification::Intact { .. } => {}
            broken => {
                return Err(Error::AuditChain(format!(
                    "the audit chain does not verify ({broken:?}); it is not rekeyed over a break (nothing was done)"
                )));
            }
        }
        let event = AuditEvent::ChainKeyed { previous_rows: head.rows, previous_head: hex::encode(&head.link) };
        let events = [(event, now)];
        let batch = AuditBatch { key: self.audit_key.as_deref(), rows: pending_rows(&events), rekey: Some(head.link) };
        self.append(&batch).await?;
        Ok(head.rows + 1)
    }

    async fn audit_page(&self, after: i64) -> Result<Vec<AuditRow>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Recomputes the chain and reports the first inconsistency.
    pub async fn audit_verify(&self) -> Result<AuditVerification> {
        Ok(self.audit_verify_to(None).await?.0)
    }

    /// Recomputes the chain up to row `upto` (the whole chain and its head when `None`) and reports
    /// the first inconsistency, with the link of the last row checked. Keyed rows need the audit
    /// key; without it they are an error, not a verdict.
    pub async fn audit_verify_to(&self, upto: Option<i64>) -> Result<(AuditVerification, Vec<u8>)> {
        let head = self.audit_head().await?;
        let keyed_from = head.keyed_from;
        let mut expected_seq = 1;
        let mut prev = vec![0u8; 32];
        'pages: loop {
            let rows = self.audit_page(expected_seq - 1).await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let AuditRow { seq, created_at: at, event, outcome, clinic_id, user_id, detail, prev_hash, hash } = r;
                if upto.is_some_and(|upto| seq > upto) {
                    break 'pages;
                }
                if seq != expected_seq {
                    return Ok((AuditVerification::Missing { seq, expected: expected_seq }, prev));
                }
                let keyed = keyed_from.is_some_and(|from| seq >= from);
                let key = match (keyed, self.audit_key.as_deref()) {
                    (false, _) => None,
                    (true, Some(key)) => Some(key),
                    (true, None) => return Err(Error::AuditChain("verifying keyed rows needs the audit key".to_owned())),
                };
                if keyed_from == Some(seq) && seq > 1 && event != CHAIN_KEYED_EVENT {
                    return Ok((AuditVerification::KeyedStartMoved { seq }, prev));
                }
                let recomputed =
                    audit_link(key, &prev_hash, (seq, at, &event, &outcome, clinic_id.as_deref(), user_id.as_deref(), &detail));
                if recomputed != hash {
                    return Ok((AuditVerification::Modified { seq }, prev));
                }
                if prev_hash != prev {
                    return Ok((AuditVerification::BrokenLink { seq }, prev));
                }
                prev = hash;
                expected_seq += 1;
            }
        }
        let last_seq = expected_seq - 1;
        let (head_seq, head_link) = match upto {
            Some(upto) => (upto, None),
            None => (head.rows, Some(head.link)),
        };
        if head_seq != last_seq || head_link.is_some_and(|h| h != prev) {
            return Ok((AuditVerification::Truncated { last_seq, head_seq }, prev));
        }
        // A keyed segment that should start after the log's end was moved there.
        if upto.is_none()
            && let Some(from) = keyed_from.filter(|&from| from > 1 && from > last_seq)
        {
            return Ok((AuditVerification::KeyedStartMoved { seq: from }, prev));
        }
        Ok((AuditVerification::Intact { rows: last_seq, keyed_from }, prev))
    }

    /// Calls `each` for every audit row in order.
    pub async fn audit_export(&self, mut each: impl FnMut(AuditRecord) -> std::io::Result<()>) -> Result<i64> {
        self.audit_chained().await?;
        let mut after = 0;
        loop {
            let rows = self.audit_page(after).await?;
            if rows.is_empty() {
                return Ok(after);
            }
            for AuditRow { seq, created_at: at, event, outcome, clinic_id, user_id, detail, hash, .. } in rows {
                after = seq;
                let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
                each(AuditRecord { seq, at, event, outcome, clinic_id, user_id, detail, hash: hex::encode(hash) })
                    .map_err(|e| super::Error::Database(sqlx::Error::Io(e)))?;
            }
        }
    }

    /// The most recent audit rows, newest first (for tests and operators).
    pub async fn audit_tail(&self, limit: i64) -> Result<Vec<AuditRecord>> {
        self.audit_chained().await?;
        let rows: Vec<AuditRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash
                 FROM audit_log ORDER BY seq DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|AuditRow { seq, created_at: at, event, outcome, clinic_id, user_id, detail, hash, .. }| AuditRecord {
                seq,
                at,
                event,
                outcome,
                clinic_id,
                user_id,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                hash: hex::encode(hash),
            })
            .collect())
    }

    /// Runs raw SQL; only for tests that tamper with the audit log on purpose.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64> {
        let done = with_pool!(self, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(done)
    }
}
