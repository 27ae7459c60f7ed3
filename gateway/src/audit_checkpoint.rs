//! Signed checkpoints of the gateway's audit chain (docs/design.md §3.9, decision 0013).
//!
//! The keyed chain stops whoever can write the database but does not hold the audit key. A
//! checkpoint covers the rest: the row count and head link at a moment, signed with an Ed25519
//! key held outside the database and kept outside it too (the log, a file, a ticket). Whoever
//! later rewrites rows before that count, even with the audit key, cannot make the chain produce
//! the same head link again, and `gateway admin audit checkpoint --verify FILE` says so. The key
//! and the checkpoint format are shared with the signer (`infra::audit_chain`).

use anyhow::bail;

pub use infra::audit_chain::{Checkpoint, CheckpointKey};
pub use infra::secret_file::{
    ProcessIds, private_mode_allowed, random_bytes, read_existing_private_file, read_private_file, write_private,
};

use crate::store::{AuditVerification, Store};

/// Signs the chain's current head at `now`. The head is taken as stored: `audit verify` checks
/// the rows behind it.
pub async fn take(store: &Store, key: &CheckpointKey, now: i64) -> anyhow::Result<Checkpoint> {
    let head = store.audit_head().await?;
    Ok(Checkpoint::sign(key, head.rows, hex::encode(&head.link), head.keyed_from, now))
}

/// Checks a saved checkpoint: signed by `key`, and the database's chain up to its row count still
/// verifies and ends in its head link. The error says what differs.
pub async fn verify(store: &Store, key: &CheckpointKey, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let c = checkpoint;
    c.check_signature(key)?;
    let (verdict, link) = store.audit_verify_to(Some(c.rows)).await?;
    match verdict {
        AuditVerification::Intact { rows, .. } if rows == c.rows => {}
        AuditVerification::Truncated { last_seq, .. } => {
            bail!("the checkpoint covers {} rows but the log holds only {last_seq}", c.rows)
        }
        broken => bail!("the chain up to row {} does not verify: {}", c.rows, describe(&broken)),
    }
    if hex::encode(&link) != c.head {
        bail!(
            "the chain up to row {} no longer produces the checkpoint's head link: rows up to it were rewritten after {}",
            c.rows,
            crate::clock::jst(c.at)
        );
    }
    let head = store.audit_head().await?;
    if c.keyed_from.is_some() && head.keyed_from != c.keyed_from {
        bail!("the keyed segment started at row {:?} at the checkpoint, and now at {:?}", c.keyed_from, head.keyed_from);
    }
    Ok(())
}

/// Explains a failed verification.
pub fn describe(v: &AuditVerification) -> String {
    match v {
        AuditVerification::Intact { rows, keyed_from } => {
            format!("intact ({rows} rows: {})", AuditVerification::segments(*rows, *keyed_from))
        }
        AuditVerification::Modified { seq } => format!("row {seq} was modified"),
        AuditVerification::Missing { seq, expected } => format!("row {expected} is missing (next row is {seq})"),
        AuditVerification::BrokenLink { seq } => format!("row {seq} does not link to the row before it (inserted or reordered)"),
        AuditVerification::Truncated { last_seq, head_seq } => {
            format!("rows after {last_seq} were removed (the chain head is at {head_seq})")
        }
        AuditVerification::KeyedStartMoved { seq } => {
            format!("the keyed segment is said to start at row {seq}, which is not an audit_chain_keyed event (the boundary was moved)")
        }
    }
}
