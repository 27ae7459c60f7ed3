//! Clinic-agent releases (docs/design.md §3.14, decision 0018): the signed manifests and binaries
//! operators publish, and the agents that fetch them, with the version each runs and the last
//! update step each reported.
//!
//! The store keeps what it is given: the signature and the binary are checked before
//! [`Store::publish_agent_release`] is called (`admin/agent_releases.rs`), and an agent checks
//! them again against the keys compiled into it. Every change and its audit row commit in one
//! transaction.

use super::audit::append_audit;
use super::oqs::AgentCall;
use super::{AuditEvent, Backend, Error, Result, Store, read_all, read_optional, row, transaction, tx_execute, tx_fetch, with_reader, write_execute};

/// A release to store, checked by the caller.
#[derive(Debug)]
pub struct NewAgentRelease<'a> {
    /// `MAJOR.MINOR.PATCH`.
    pub version: &'a str,
    /// Its numbers, for ordering.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Patch number.
    pub patch: i64,
    /// The target triple.
    pub target: &'a str,
    /// The manifest's exact signed bytes.
    pub manifest: &'a [u8],
    /// The minisign signature text.
    pub signature: &'a str,
    /// The signing key's id.
    pub key_id: &'a str,
    /// The binary's SHA-256, hex.
    pub sha256: &'a str,
    /// The binary.
    pub content: &'a [u8],
}

/// What publishing did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored.
    Stored,
    /// This version was published for this target before (withdrawn or not).
    VersionExists,
}

row! {
    /// A release as listed (without its binary).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AgentRelease {
        pub version: String,
        pub target: String,
        pub key_id: String,
        pub sha256: String,
        pub size: i64,
        pub created_at: i64,
        pub withdrawn_at: Option<i64>,
    }
}

row! {
    /// What an agent fetches to decide on an update: the manifest and its signature.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReleaseOffer {
        pub version: String,
        pub target: String,
        pub manifest: Vec<u8>,
        pub signature: String,
        pub size: i64,
        pub major: i64,
        pub minor: i64,
        pub patch: i64,
    }
}

row! {
    /// A release's binary.
    #[derive(Debug, Clone)]
    pub struct ReleaseBinary {
        pub sha256: String,
        pub content: Vec<u8>,
    }
}

row! {
    /// An agent as last seen.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AgentSeen {
        pub clinic_id: String,
        pub agent_id: String,
        pub fingerprint: String,
        pub version: String,
        pub last_seen: i64,
        pub update_step: Option<String>,
        pub update_version: Option<String>,
        pub update_outcome: Option<String>,
        pub update_detail: Option<String>,
        pub update_at: Option<i64>,
    }
}

/// An update step an agent reported.
#[derive(Debug, Clone, Copy)]
pub struct UpdateReport<'a> {
    /// The step (`prompt`, `download`, `verify`, …).
    pub step: &'static str,
    /// The version it was updating to.
    pub version: &'a str,
    /// `success`, `failure` or `declined`.
    pub outcome: &'static str,
    /// What went wrong, in the agent's words (bounded, checked by the caller).
    pub detail: Option<&'a str>,
}

/// `last_seen` is refreshed at most this often (a heartbeat comes every few seconds; the list
/// answers "which agent runs what, and is it still there", to the minute).
const SEEN_EVERY_SECS: i64 = 60;

const LIST_RELEASES: &str = "SELECT version, target, key_id, sha256, size, created_at, withdrawn_at FROM agent_releases
     ORDER BY major DESC, minor DESC, patch DESC, target";
const INSERT_RELEASE: &str = "INSERT INTO agent_releases (version, target, major, minor, patch, manifest, signature, key_id, sha256,
         size, content, withdrawn_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $12)";
const RELEASE_EXISTS: &str = "SELECT version FROM agent_releases WHERE version = $1 AND target = $2";
const WITHDRAW: &str = "UPDATE agent_releases SET withdrawn_at = $3, updated_at = $3
     WHERE version = $1 AND ($2 = '' OR target = $2) AND withdrawn_at IS NULL
     RETURNING version, target";
const NEWEST: &str = "SELECT version, target, manifest, signature, size, major, minor, patch FROM agent_releases
     WHERE target = $1 AND withdrawn_at IS NULL ORDER BY major DESC, minor DESC, patch DESC LIMIT 1";
const BINARY: &str =
    "SELECT sha256, content FROM agent_releases WHERE version = $1 AND target = $2 AND withdrawn_at IS NULL";
/// Inserts the agent, or refreshes it when its version or certificate changed or it was last
/// seen more than [`SEEN_EVERY_SECS`] ago; otherwise changes nothing.
const SEEN: &str = "INSERT INTO agents (clinic_id, agent_id, fingerprint, version, last_seen, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5, $5)
     ON CONFLICT (clinic_id, agent_id) DO UPDATE SET fingerprint = excluded.fingerprint, version = excluded.version,
         last_seen = excluded.last_seen, updated_at = excluded.updated_at
     WHERE agents.version <> excluded.version OR agents.fingerprint <> excluded.fingerprint OR agents.last_seen <= $6";
const REPORT: &str = "INSERT INTO agents (clinic_id, agent_id, fingerprint, version, last_seen, update_step, update_version,
         update_outcome, update_detail, update_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $5, $5, $5)
     ON CONFLICT (clinic_id, agent_id) DO UPDATE SET fingerprint = excluded.fingerprint, version = excluded.version,
         last_seen = excluded.last_seen, update_step = excluded.update_step, update_version = excluded.update_version,
         update_outcome = excluded.update_outcome, update_detail = excluded.update_detail, update_at = excluded.update_at,
         updated_at = excluded.updated_at";
const LIST_AGENTS: &str = "SELECT clinic_id, agent_id, fingerprint, version, last_seen, update_step, update_version,
         update_outcome, update_detail, update_at FROM agents ORDER BY clinic_id, agent_id";

row! {
    /// A row found (only whether there is one matters).
    #[allow(dead_code, reason = "decoded for its presence")]
    struct VersionRow {
        version: String,
    }
}

row! {
    struct Withdrawn {
        version: String,
        target: String,
    }
}

impl Store {
    /// Stores a checked release and audits it, unless this version was published for this target
    /// before (withdrawn or not: a version names one set of bytes forever).
    pub async fn publish_agent_release(&self, new: &NewAgentRelease<'_>, now: i64) -> Result<Published> {
        let size = i64::try_from(new.content.len()).unwrap_or(i64::MAX);
        let event = AuditEvent::AgentReleasePublished {
            version: new.version.to_owned(),
            target: new.target.to_owned(),
            sha256: new.sha256.to_owned(),
            size,
            key_id: new.key_id.to_owned(),
        };
        let events = [(event, now)];
        let result: Result<Published> = transaction!(self, |tx| {
            if tx_fetch!(tx, optional, VersionRow, RELEASE_EXISTS, new.version, new.target)?.is_some() {
                return Ok(Published::VersionExists);
            }
            tx_execute!(
                tx,
                INSERT_RELEASE,
                new.version,
                new.target,
                new.major,
                new.minor,
                new.patch,
                new.manifest,
                new.signature,
                new.key_id,
                new.sha256,
                size,
                new.content,
                now
            )?;
            append_audit(tx, &self.audit_rows(&events)).await?;
            Ok(Published::Stored)
        });
        match result {
            // Another operator published the same version between the check and the insert.
            Err(Error::Conflict(_)) => Ok(Published::VersionExists),
            other => {
                self.count_audit_failure(&other);
                other
            }
        }
    }

    /// Every release, newest first (withdrawn ones too).
    pub async fn list_agent_releases(&self) -> Result<Vec<AgentRelease>> {
        read_all!(self, AgentRelease, LIST_RELEASES)
    }

    /// Withdraws a version (for one target, or every target when `target` is empty) and audits
    /// each; returns the `(version, target)` pairs withdrawn (none when there was nothing live).
    pub async fn withdraw_agent_release(&self, version: &str, target: &str, now: i64) -> Result<Vec<(String, String)>> {
        let result: Result<Vec<(String, String)>> = transaction!(self, |tx| {
            let withdrawn = tx_fetch!(tx, all, Withdrawn, WITHDRAW, version, target, now)?;
            if !withdrawn.is_empty() {
                let events: Vec<_> = withdrawn
                    .iter()
                    .map(|w| (AuditEvent::AgentReleaseWithdrawn { version: w.version.clone(), target: w.target.clone() }, now))
                    .collect();
                append_audit(tx, &self.audit_rows(&events)).await?;
            }
            Ok(withdrawn.into_iter().map(|w| (w.version, w.target)).collect())
        });
        self.count_audit_failure(&result);
        result
    }

    /// The newest release for `target` that is not withdrawn.
    pub async fn newest_agent_release(&self, target: &str) -> Result<Option<ReleaseOffer>> {
        read_optional!(self, ReleaseOffer, NEWEST, target)
    }

    /// A release's binary (not withdrawn), read through the pooled connections: it may be tens of
    /// megabytes, and the inline SQLite readers are for small hot-path rows. The download is
    /// audited (after the read: a failed read is no download).
    pub async fn agent_release_binary(&self, agent: AgentCall<'_>, version: &str, target: &str, now: i64) -> Result<Option<ReleaseBinary>> {
        let binary: Option<ReleaseBinary> =
            with_reader!(self, |pool| sqlx::query_as(BINARY).bind(version).bind(target).fetch_optional(pool).await)?;
        if binary.is_some() {
            let event = AuditEvent::AgentReleaseDownloaded {
                clinic_id: agent.clinic_id.to_owned(),
                agent_id: agent.agent_id.to_owned(),
                version: version.to_owned(),
                target: target.to_owned(),
            };
            self.audit(&event, now).await?;
        }
        Ok(binary)
    }

    /// Records that the agent called (its version and certificate), at most once a minute unless
    /// they changed.
    pub async fn agent_seen(&self, agent: AgentCall<'_>, now: i64) -> Result<()> {
        write_execute!(self, SEEN, agent.clinic_id, agent.agent_id, agent.fingerprint, agent.version, now, now - SEEN_EVERY_SECS)?;
        Ok(())
    }

    /// Records an update step the agent reported, and audits it.
    pub async fn agent_update_reported(&self, agent: AgentCall<'_>, report: &UpdateReport<'_>, now: i64) -> Result<()> {
        let event = AuditEvent::AgentUpdateReported {
            clinic_id: agent.clinic_id.to_owned(),
            agent_id: agent.agent_id.to_owned(),
            running: agent.version.to_owned(),
            step: report.step,
            version: report.version.to_owned(),
            outcome: report.outcome,
            detail: report.detail.map(str::to_owned),
        };
        let events = [(event, now)];
        let result: Result<()> = transaction!(self, |tx| {
            tx_execute!(
                tx,
                REPORT,
                agent.clinic_id,
                agent.agent_id,
                agent.fingerprint,
                agent.version,
                now,
                report.step,
                report.version,
                report.outcome,
                report.detail
            )?;
            append_audit(tx, &self.audit_rows(&events)).await?;
            Ok(())
        });
        self.count_audit_failure(&result);
        result
    }

    /// Every agent seen, by clinic and id.
    pub async fn list_agents(&self) -> Result<Vec<AgentSeen>> {
        read_all!(self, AgentSeen, LIST_AGENTS)
    }
}
