//! The OQS relay's queue (docs/design.md §3.13): files an EMR sends to a clinic's OQS terminal,
//! the lease the clinic agent takes while it writes one into the terminal's `req` folder, the
//! terminal's answer, and the one agent relaying for each clinic.
//!
//! Every change of a request and its audit row commit in one transaction. What keeps delivery at
//! most once: a lease is re-offered only to the agent that held it (its journal knows whether it
//! wrote the file); when another agent takes over a clinic's relay, the requests the previous one
//! had leased but not reported delivered fail with `delivery_unknown` instead of going to the
//! new agent, which could write them a second time.

use super::audit::append_audit;
use super::{AuditEvent, Backend, Error, Result, Store, read_all, read_optional, row, transaction, tx_execute, tx_fetch, write_execute};

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum OqsStatus {
    /// Waiting for the clinic agent (possibly leased to it).
    Queued,
    /// Written into the terminal's `req` folder; waiting for the answer.
    Delivered,
    /// The terminal's answer is here.
    Answered,
    /// Ended without an answer (`reason` says why).
    Failed,
    /// Not answered in time (`reason` says at which step).
    Expired,
}

impl OqsStatus {
    /// The stored and shown spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the request has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Answered | Self::Failed | Self::Expired)
    }
}

/// A request to enqueue.
#[derive(Debug)]
pub struct NewOqsRequest<'a> {
    /// The clinic whose terminal gets it.
    pub clinic_id: &'a str,
    /// The service client sending it.
    pub client_id: &'a str,
    /// Its file name (checked against the OQS pattern by the caller).
    pub file_name: &'a str,
    /// The file.
    pub content: &'a [u8],
    /// When it expires unanswered.
    pub expires_at: i64,
    /// Most live (queued or delivered) requests a clinic may have.
    pub max_live: i64,
}

/// What enqueueing did.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued under this id.
    Queued(String),
    /// A live request of the clinic has this file name.
    NameInUse,
    /// The clinic has `max_live` live requests.
    QueueFull,
}

row! {
    /// A request as stored.
    #[derive(Debug, Clone)]
    pub struct OqsRequest {
        pub id: String,
        pub clinic_id: String,
        pub client_id: String,
        pub file_name: String,
        pub size: i64,
        pub status: String,
        pub reason: Option<String>,
        pub created_at: i64,
        pub expires_at: i64,
        pub leases: i64,
        pub lease_agent: Option<String>,
        pub delivered_at: Option<i64>,
        pub response_name: Option<String>,
        pub response_size: Option<i64>,
        pub response_content: Option<Vec<u8>>,
        pub finished_at: Option<i64>,
    }
}

impl OqsRequest {
    /// The status, parsed.
    pub fn status(&self) -> Result<OqsStatus> {
        self.status.parse().map_err(|_| super::corrupt("oqs_requests.status"))
    }
}

row! {
    /// A request leased to an agent.
    #[derive(Debug, Clone)]
    pub struct LeasedRequest {
        pub id: String,
        pub file_name: String,
        pub content: Vec<u8>,
        pub lease_until: i64,
        pub leases: i64,
    }
}

/// The agent calling, as it identifies itself.
#[derive(Debug, Clone, Copy)]
pub struct AgentCall<'a> {
    /// The clinic of its certificate.
    pub clinic_id: &'a str,
    /// Its stable id (kept in its data directory).
    pub agent_id: &'a str,
    /// The certificate's fingerprint.
    pub fingerprint: &'a str,
    /// Its version.
    pub version: &'a str,
}

row! {
    /// The agent relaying for a clinic.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RelayHolder {
        pub clinic_id: String,
        pub agent_id: String,
        pub fingerprint: String,
        pub version: String,
        pub since: i64,
        pub last_seen: i64,
    }
}

/// The answer to an agent's claim on its clinic's relay.
#[derive(Debug)]
pub enum Claim {
    /// The caller holds the relay.
    Held,
    /// Another agent does, seen recently.
    HeldByOther(RelayHolder),
}

/// How a step the agent reports went.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentStep {
    /// Recorded now.
    Done,
    /// It had been recorded already (a retried report).
    AlreadyDone,
    /// The request is over or was never this agent's to report on.
    Refused(Option<OqsStatus>),
    /// No request of the agent's clinic has this id.
    NotFound,
}

/// An answer uploaded by the agent.
#[derive(Debug)]
pub struct OqsAnswer<'a> {
    /// The answer's file name.
    pub file_name: &'a str,
    /// The file.
    pub content: &'a [u8],
}

row! {
    struct Ended {
        id: String,
        clinic_id: String,
        client_id: String,
        file_name: String,
        reason: Option<String>,
    }
}

row! {
    /// Live requests of one clinic in one state, for the metrics.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueDepth {
        pub clinic_id: String,
        pub status: String,
        pub requests: i64,
        pub oldest: i64,
    }
}

row! {
    /// A row found (the id itself is not needed: only whether there is one).
    #[allow(dead_code, reason = "decoded for its presence")]
    struct IdRow {
        id: String,
    }
}

row! {
    struct StatusRow {
        status: String,
        lease_agent: Option<String>,
        response_name: Option<String>,
    }
}

const SELECT_REQUEST: &str = "SELECT id, clinic_id, client_id, file_name, size, status, reason, created_at, expires_at, leases,
     lease_agent, delivered_at, response_name, response_size, response_content, finished_at FROM oqs_requests WHERE id = $1";

/// SQLite takes one writer at a time; PostgreSQL locks the clinic row so that the count of live
/// requests and the insert see the same queue.
const LOCK_CLINIC: &str = "SELECT id FROM clinics WHERE id = $1 FOR UPDATE";
const LIVE_COUNT: &str = "SELECT count(*) AS n FROM oqs_requests WHERE clinic_id = $1 AND status IN ('queued', 'delivered')";
const NAME_LIVE: &str =
    "SELECT id FROM oqs_requests WHERE clinic_id = $1 AND file_name = $2 AND status IN ('queued', 'delivered')";
const INSERT_POSTGRES: &str = "INSERT INTO oqs_requests (id, clinic_id, client_id, file_name, size, content, status, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)";
/// SQLite numbers the queue itself (it has no identity column besides the primary key's rowid);
/// its one writer makes `max + 1` safe.
const INSERT_SQLITE: &str = "INSERT INTO oqs_requests (id, clinic_id, client_id, file_name, size, content, status, created_at, expires_at, seq)
     VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, (SELECT COALESCE(MAX(seq), 0) + 1 FROM oqs_requests))";

/// The oldest queued request of the clinic that is not leased (or whose lease lapsed), leased to
/// the agent. Only the relay's holder takes, so a lapsed lease comes back to the agent that held
/// it, whose journal says whether the file was written (a new holder fails the old holder's
/// leases first). PostgreSQL: rows another transaction is leasing are skipped, not waited for.
const TAKE_SQLITE: &str = "UPDATE oqs_requests SET lease_agent = $2, lease_until = $3, leases = leases + 1
     WHERE id = (SELECT id FROM oqs_requests WHERE clinic_id = $1 AND status = 'queued' AND expires_at > $4
                 AND (lease_until IS NULL OR lease_until <= $4) ORDER BY seq LIMIT 1)
     RETURNING id, file_name, content, lease_until, leases";
const TAKE_POSTGRES: &str = "UPDATE oqs_requests SET lease_agent = $2, lease_until = $3, leases = leases + 1
     WHERE id = (SELECT id FROM oqs_requests WHERE clinic_id = $1 AND status = 'queued' AND expires_at > $4
                 AND (lease_until IS NULL OR lease_until <= $4) ORDER BY seq LIMIT 1
                 FOR UPDATE SKIP LOCKED)
     RETURNING id, file_name, content, lease_until, leases";

const HOLDER: &str = "SELECT clinic_id, agent_id, fingerprint, version, since, last_seen FROM oqs_agents WHERE clinic_id = $1";
const HOLDER_FOR_UPDATE: &str =
    "SELECT clinic_id, agent_id, fingerprint, version, since, last_seen FROM oqs_agents WHERE clinic_id = $1 FOR UPDATE";
/// Refreshes the caller's hold (one statement on the common path).
const TOUCH_HOLD: &str =
    "UPDATE oqs_agents SET last_seen = $3, version = $4, fingerprint = $5 WHERE clinic_id = $1 AND agent_id = $2";
const SET_HOLD: &str = "INSERT INTO oqs_agents (clinic_id, agent_id, fingerprint, version, since, last_seen)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (clinic_id) DO UPDATE SET agent_id = excluded.agent_id, fingerprint = excluded.fingerprint,
         version = excluded.version, since = excluded.since, last_seen = excluded.last_seen";
/// The previous holder's leases, when another agent takes over: it may have written them.
const FAIL_ORPHANED: &str = "UPDATE oqs_requests SET status = 'failed', reason = 'delivery_unknown', finished_at = $3,
         lease_until = NULL
     WHERE clinic_id = $1 AND status = 'queued' AND lease_agent IS NOT NULL AND lease_agent <> $2
     RETURNING id, clinic_id, client_id, file_name, reason";

const DELIVERED: &str = "UPDATE oqs_requests SET status = 'delivered', delivered_at = $4, lease_until = NULL
     WHERE id = $1 AND clinic_id = $2 AND status = 'queued' AND lease_agent = $3";
const ANSWERED: &str = "UPDATE oqs_requests SET status = 'answered', response_name = $4, response_size = $5,
         response_content = $6, delivered_at = COALESCE(delivered_at, $7), finished_at = $7, lease_until = NULL
     WHERE id = $1 AND clinic_id = $2 AND lease_agent = $3
       AND (status = 'delivered' OR status = 'queued')";
const FAILED: &str = "UPDATE oqs_requests SET status = 'failed', reason = $4, finished_at = $5, lease_until = NULL
     WHERE id = $1 AND clinic_id = $2 AND lease_agent = $3 AND status IN ('queued', 'delivered')";
const STEP_STATE: &str = "SELECT status, lease_agent, response_name FROM oqs_requests WHERE id = $1 AND clinic_id = $2";

const EXPIRE_DUE: &str = "UPDATE oqs_requests SET status = 'expired', finished_at = $1, lease_until = NULL,
         reason = CASE WHEN status = 'delivered' THEN 'no_answer' WHEN leases = 0 THEN 'not_taken' ELSE 'not_delivered' END
     WHERE status IN ('queued', 'delivered') AND expires_at <= $1
     RETURNING id, clinic_id, client_id, file_name, reason";
const DELETE_OLD: &str = "DELETE FROM oqs_requests WHERE finished_at IS NOT NULL AND finished_at <= $1";

impl Store {
    /// Queues a request (and audits it) unless a live request of the clinic has its file name or
    /// the clinic's queue is full.
    pub async fn oqs_enqueue(&self, new: &NewOqsRequest<'_>, now: i64) -> Result<Enqueued> {
        let id = uuid::Uuid::new_v4().to_string();
        let size = i64::try_from(new.content.len()).unwrap_or(i64::MAX);
        let event = AuditEvent::OqsEnqueued {
            clinic_id: new.clinic_id.to_owned(),
            client_id: new.client_id.to_owned(),
            request_id: id.clone(),
            file_name: new.file_name.to_owned(),
            size,
        };
        let events = [(event, now)];
        let result: Result<Enqueued> = transaction!(self, |tx| {
            if tx.is_postgres() {
                tx_fetch!(tx, optional, IdRow, LOCK_CLINIC, new.clinic_id)?;
            }
            if tx_fetch!(tx, optional, IdRow, NAME_LIVE, new.clinic_id, new.file_name)?.is_some() {
                return Ok(Enqueued::NameInUse);
            }
            let live = tx_fetch!(tx, one, Count, LIVE_COUNT, new.clinic_id)?;
            if live.n >= new.max_live {
                return Ok(Enqueued::QueueFull);
            }
            let insert = if tx.is_postgres() { INSERT_POSTGRES } else { INSERT_SQLITE };
            tx_execute!(tx, insert, &id, new.clinic_id, new.client_id, new.file_name, size, new.content, now, new.expires_at)?;
            append_audit(tx, &self.audit_rows(&events)).await?;
            Ok(Enqueued::Queued(id.clone()))
        });
        match result {
            // Another instance queued the same name between the check and the insert.
            Err(Error::Conflict(c)) if c.contains("oqs_requests") || c.contains("file_name") => Ok(Enqueued::NameInUse),
            other => {
                self.count_audit_failure(&other);
                other
            }
        }
    }

    /// One request.
    pub async fn oqs_request(&self, id: &str) -> Result<Option<OqsRequest>> {
        read_optional!(self, OqsRequest, SELECT_REQUEST, id)
    }

    /// Claims the clinic's relay for the calling agent, or refreshes its claim: refused while
    /// another agent holds it and was seen after `stale_before`. Taking over from another agent
    /// fails that agent's outstanding leases (`delivery_unknown`); both are audited.
    pub async fn oqs_claim_relay(&self, call: AgentCall<'_>, stale_before: i64, now: i64) -> Result<Claim> {
        // The common path: the caller holds the relay already.
        if self.oqs_touch_hold(call, now).await? {
            return Ok(Claim::Held);
        }
        let result: Result<(Claim, Vec<(AuditEvent, i64)>)> = transaction!(self, |tx| {
            let sql = if tx.is_postgres() { HOLDER_FOR_UPDATE } else { HOLDER };
            let holder = tx_fetch!(tx, optional, RelayHolder, sql, call.clinic_id)?;
            match holder {
                Some(h) if h.agent_id == call.agent_id => {
                    tx_execute!(tx, TOUCH_HOLD, call.clinic_id, call.agent_id, now, call.version, call.fingerprint)?;
                    Ok((Claim::Held, Vec::new()))
                }
                Some(h) if h.last_seen > stale_before => Ok((Claim::HeldByOther(h), Vec::new())),
                previous => {
                    tx_execute!(tx, SET_HOLD, call.clinic_id, call.agent_id, call.fingerprint, call.version, now)?;
                    let orphaned = tx_fetch!(tx, all, Ended, FAIL_ORPHANED, call.clinic_id, call.agent_id, now)?;
                    let mut events = vec![(
                        AuditEvent::OqsRelayClaimed {
                            clinic_id: call.clinic_id.to_owned(),
                            agent_id: call.agent_id.to_owned(),
                            fingerprint: call.fingerprint.to_owned(),
                            version: call.version.to_owned(),
                            previous_agent: previous.map(|p| p.agent_id),
                        },
                        now,
                    )];
                    events.extend(orphaned.into_iter().map(|e| (e.into_event(), now)));
                    append_audit(tx, &self.audit_rows(&events)).await?;
                    Ok((Claim::Held, events))
                }
            }
        });
        self.count_audit_failure(&result);
        result.map(|(claim, _)| claim)
    }

    async fn oqs_touch_hold(&self, call: AgentCall<'_>, now: i64) -> Result<bool> {
        let rows = write_execute!(self, TOUCH_HOLD, call.clinic_id, call.agent_id, now, call.version, call.fingerprint)?;
        Ok(rows == 1)
    }

    /// The agent relaying for a clinic, if any ever did.
    pub async fn oqs_relay_holder(&self, clinic_id: &str) -> Result<Option<RelayHolder>> {
        read_optional!(self, RelayHolder, HOLDER, clinic_id)
    }

    /// Every clinic's relaying agent.
    pub async fn oqs_relay_holders(&self) -> Result<Vec<RelayHolder>> {
        read_all!(self, RelayHolder, "SELECT clinic_id, agent_id, fingerprint, version, since, last_seen FROM oqs_agents ORDER BY clinic_id")
    }

    /// Leases the clinic's next request to the agent until `lease_until` (audited), if one waits.
    pub async fn oqs_take(&self, call: AgentCall<'_>, lease_until: i64, now: i64) -> Result<Option<LeasedRequest>> {
        let result: Result<Option<LeasedRequest>> = transaction!(self, |tx| {
            let sql = if tx.is_postgres() { TAKE_POSTGRES } else { TAKE_SQLITE };
            let Some(leased) = tx_fetch!(tx, optional, LeasedRequest, sql, call.clinic_id, call.agent_id, lease_until, now)? else {
                return Ok(None);
            };
            let event = AuditEvent::OqsLeased {
                clinic_id: call.clinic_id.to_owned(),
                request_id: leased.id.clone(),
                agent_id: call.agent_id.to_owned(),
                file_name: leased.file_name.clone(),
                lease: leased.leases,
            };
            append_audit(tx, &self.audit_rows(&[(event, now)])).await?;
            Ok(Some(leased))
        });
        self.count_audit_failure(&result);
        result
    }

    /// Records that the agent wrote the request into `req` (audited).
    pub async fn oqs_delivered(&self, call: AgentCall<'_>, id: &str, now: i64) -> Result<AgentStep> {
        let event = AuditEvent::OqsDelivered {
            clinic_id: call.clinic_id.to_owned(),
            request_id: id.to_owned(),
            agent_id: call.agent_id.to_owned(),
        };
        self.oqs_step(call, id, now, event, Change::Delivered).await
    }

    /// Stores the terminal's answer (audited: name and size).
    pub async fn oqs_answered(&self, call: AgentCall<'_>, id: &str, answer: &OqsAnswer<'_>, now: i64) -> Result<AgentStep> {
        let size = i64::try_from(answer.content.len()).unwrap_or(i64::MAX);
        let event = AuditEvent::OqsAnswered {
            clinic_id: call.clinic_id.to_owned(),
            request_id: id.to_owned(),
            agent_id: call.agent_id.to_owned(),
            file_name: answer.file_name.to_owned(),
            size,
        };
        self.oqs_step(call, id, now, event, Change::Answered { name: answer.file_name, size, content: answer.content }).await
    }

    /// Ends the request as failed for a reason the agent gives (audited).
    pub async fn oqs_failed(&self, call: AgentCall<'_>, id: &str, reason: &'static str, now: i64) -> Result<AgentStep> {
        let event = AuditEvent::OqsFailed {
            clinic_id: call.clinic_id.to_owned(),
            request_id: id.to_owned(),
            agent_id: Some(call.agent_id.to_owned()),
            reason,
        };
        self.oqs_step(call, id, now, event, Change::Failed { reason }).await
    }

    /// One reported step: its UPDATE and its audit row in one transaction; when it changes
    /// nothing, the request's state says why (a repeated report of the same step is
    /// [`AgentStep::AlreadyDone`]).
    async fn oqs_step(&self, call: AgentCall<'_>, id: &str, now: i64, event: AuditEvent, change: Change<'_>) -> Result<AgentStep> {
        let events = [(event, now)];
        let result: Result<AgentStep> = transaction!(self, |tx| {
            let changed = match change {
                Change::Delivered => tx_execute!(tx, DELIVERED, id, call.clinic_id, call.agent_id, now)?,
                Change::Answered { name, size, content } => {
                    tx_execute!(tx, ANSWERED, id, call.clinic_id, call.agent_id, name, size, content, now)?
                }
                Change::Failed { reason } => tx_execute!(tx, FAILED, id, call.clinic_id, call.agent_id, reason, now)?,
            };
            if changed == 1 {
                append_audit(tx, &self.audit_rows(&events)).await?;
                return Ok(AgentStep::Done);
            }
            let Some(state) = tx_fetch!(tx, optional, StatusRow, STEP_STATE, id, call.clinic_id)? else {
                return Ok(AgentStep::NotFound);
            };
            let repeated = match change {
                Change::Delivered => state.status == "delivered" || state.status == "answered",
                Change::Answered { name, .. } => state.status == "answered" && state.response_name.as_deref() == Some(name),
                Change::Failed { .. } => state.status == "failed",
            };
            if state.lease_agent.as_deref() == Some(call.agent_id) && repeated {
                return Ok(AgentStep::AlreadyDone);
            }
            Ok(AgentStep::Refused(state.status.parse().ok()))
        });
        self.count_audit_failure(&result);
        result
    }

    /// Of `ids`, the requests of the clinic that have ended (or are unknown), with their status.
    pub async fn oqs_ended_of(&self, clinic_id: &str, ids: &[String]) -> Result<Vec<(String, Option<OqsStatus>)>> {
        let mut ended = Vec::new();
        for id in ids {
            let row = read_optional!(self, StatusRow, STEP_STATE, id, clinic_id)?;
            match row {
                None => ended.push((id.clone(), None)),
                Some(s) => match s.status.parse::<OqsStatus>() {
                    Ok(status) if status.is_final() => ended.push((id.clone(), Some(status))),
                    Ok(_) => {}
                    Err(_) => return Err(super::corrupt("oqs_requests.status")),
                },
            }
        }
        Ok(ended)
    }

    /// Expires every live request past its deadline, each with its reason and audit row, and
    /// deletes requests that ended before `delete_before`. Returns the clinics of the requests
    /// expired (a clinic once per request).
    pub async fn oqs_expire_due(&self, now: i64, delete_before: i64) -> Result<Vec<String>> {
        let result: Result<Vec<String>> = transaction!(self, |tx| {
            let expired = tx_fetch!(tx, all, Ended, EXPIRE_DUE, now)?;
            tx_execute!(tx, DELETE_OLD, delete_before)?;
            let ids = expired.iter().map(|e| e.clinic_id.clone()).collect();
            if !expired.is_empty() {
                let events: Vec<_> = expired.into_iter().map(|e| (e.into_expired_event(), now)).collect();
                append_audit(tx, &self.audit_rows(&events)).await?;
            }
            Ok(ids)
        });
        self.count_audit_failure(&result);
        result
    }

    /// Live requests per clinic and state, with the oldest one's creation time.
    pub async fn oqs_queue_depths(&self) -> Result<Vec<QueueDepth>> {
        read_all!(
            self,
            QueueDepth,
            "SELECT clinic_id, status, count(*) AS requests, min(created_at) AS oldest FROM oqs_requests
             WHERE status IN ('queued', 'delivered') GROUP BY clinic_id, status ORDER BY clinic_id, status"
        )
    }
}

/// A step the agent reports.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    Delivered,
    Answered { name: &'a str, size: i64, content: &'a [u8] },
    Failed { reason: &'static str },
}

row! {
    struct Count {
        n: i64,
    }
}

impl Ended {
    fn into_event(self) -> AuditEvent {
        AuditEvent::OqsFailed {
            clinic_id: self.clinic_id,
            request_id: self.id,
            agent_id: None,
            reason: reason_code(self.reason.as_deref()),
        }
    }

    fn into_expired_event(self) -> AuditEvent {
        AuditEvent::OqsExpired {
            clinic_id: self.clinic_id,
            client_id: self.client_id,
            request_id: self.id,
            file_name: self.file_name,
            reason: reason_code(self.reason.as_deref()),
        }
    }
}

/// The fixed reason codes the queue writes itself (audit rows carry `&'static str`).
fn reason_code(reason: Option<&str>) -> &'static str {
    match reason {
        Some("delivery_unknown") => "delivery_unknown",
        Some("no_answer") => "no_answer",
        Some("not_taken") => "not_taken",
        Some("not_delivered") => "not_delivered",
        _ => "other",
    }
}
