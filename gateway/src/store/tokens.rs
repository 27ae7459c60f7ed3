//! Service clients, token signing keys and issued token ids (docs/design.md §3.8).
//!
//! Issuing a token costs one read (calling client, its access to the clinic, doctor and open
//! signing session in a single join) and a share of one write: token ids are inserted in batches
//! (see `group_commit`), by a statement that re-checks that each session is still live, so a
//! session ended on another instance a moment earlier gets no token.
//! Consumption is one conditional `UPDATE … RETURNING`: only one presentation, on any instance,
//! can succeed, and only while the token's signing session is open.

use super::audit::{append_audit_pg, append_audit_sqlite};
use super::{AuditEvent, Backend, Error, Result, Store, corrupt, inline, read_optional, with_pool, with_reader};

/// What a service client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServiceRole {
    /// An EMR backend: reads signing-session state and obtains tokens for its clinics.
    Emr,
    /// A remote signer: consumes tokens.
    Signer,
}

impl ServiceRole {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceRole::Emr => "emr",
            ServiceRole::Signer => "signer",
        }
    }
}

impl std::str::FromStr for ServiceRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "emr" => Ok(ServiceRole::Emr),
            "signer" => Ok(ServiceRole::Signer),
            _ => Err(()),
        }
    }
}

/// A registered service client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceClient {
    /// Operator-chosen id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: ServiceRole,
    /// Certificate fingerprint (hex SHA-256).
    pub fingerprint: String,
    /// Certificate subject.
    pub subject: String,
    /// Disabled clients are refused.
    pub enabled: bool,
    /// Clinics served.
    pub clinics: Vec<String>,
}

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

/// A service client as one request about one clinic sees it.
#[derive(Debug, Clone)]
pub struct ClientAccess {
    /// Client id.
    pub id: String,
    /// Role.
    pub role: ServiceRole,
    /// Disabled clients are refused.
    pub enabled: bool,
    /// Whether it serves the clinic asked about.
    pub serves_clinic: bool,
}

/// [`Store::emr_context`]: the calling client and the doctor asked about.
#[derive(Debug, Clone)]
pub struct EmrContext {
    /// The client presenting the certificate.
    pub client: ClientAccess,
    /// The doctor (any kind of user with that login ID) at the clinic, if there is one.
    pub doctor: Option<IssueContext>,
}

/// What token issuance needs to know about a doctor, in one read.
#[derive(Debug, Clone)]
pub struct IssueContext {
    /// Gateway user id.
    pub user_id: String,
    /// Enabled.
    pub enabled: bool,
    /// `doctor` or `staff`.
    pub is_doctor: bool,
    /// 医籍番号.
    pub medical_reg_no: Option<String>,
    /// The open signing session, if any.
    pub session: Option<OpenSession>,
}

/// The open signing session of a doctor at a clinic.
#[derive(Debug, Clone)]
pub struct OpenSession {
    /// Session id.
    pub id: String,
    /// `fido`, `hpki`, `jpki`.
    pub method: String,
    /// JSON array.
    pub amr: String,
    /// ACR.
    pub acr: String,
    /// Authentication time.
    pub auth_time: i64,
    /// Absolute expiry.
    pub expires_at: i64,
    /// Idle timeout.
    pub idle_secs: i64,
    /// Last activity.
    pub last_activity_at: i64,
}

impl From<&super::SigningSession> for OpenSession {
    fn from(s: &super::SigningSession) -> Self {
        Self {
            id: s.id.clone(),
            method: s.method.as_str().to_owned(),
            amr: serde_json::to_string(&s.amr).unwrap_or_else(|_| "[]".to_owned()),
            acr: s.acr.clone(),
            auth_time: s.auth_time,
            expires_at: s.expires_at,
            idle_secs: s.idle_secs,
            last_activity_at: s.last_activity_at,
        }
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
    /// Whether to move the session's last activity to `issued_at` too (done at most once a
    /// minute per session, so most issues write nothing to the session row).
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

type ClientRow = (String, String, String, String, String, bool);
/// A [`ClientRow`] joined with one of the client's clinics.
type ClientClinicRow = (String, String, String, String, String, bool, Option<String>);

impl Store {
    /// Registers a service client serving `clinics`, in one transaction.
    pub async fn add_service_client(&self, client: &ServiceClient, now: i64) -> Result<()> {
        with_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO service_clients (id, name, role, fingerprint, subject, enabled, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)",
                )
                .bind(&client.id)
                .bind(&client.name)
                .bind(client.role.as_str())
                .bind(&client.fingerprint)
                .bind(&client.subject)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for clinic in &client.clinics {
                    sqlx::query("INSERT INTO service_client_clinics (client_id, clinic_id, created_at) VALUES ($1, $2, $3)")
                        .bind(&client.id)
                        .bind(clinic)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// The enabled-or-not service client presenting `fingerprint`.
    ///
    /// One query (client and clinics joined): it runs on every API request.
    pub async fn service_client_by_fingerprint(&self, fingerprint: &str) -> Result<ServiceClient> {
        let rows: Vec<ClientClinicRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.name, c.role, c.fingerprint, c.subject, c.enabled, cc.clinic_id
                 FROM service_clients c LEFT JOIN service_client_clinics cc ON cc.client_id = c.id
                 WHERE c.fingerprint = $1 ORDER BY cc.clinic_id",
            )
            .bind(fingerprint)
            .fetch_all(pool)
            .await
        })?;
        let Some(first) = rows.first() else { return Err(Error::NotFound) };
        Ok(ServiceClient {
            id: first.0.clone(),
            name: first.1.clone(),
            role: first.2.parse().map_err(|()| corrupt("service_clients.role"))?,
            fingerprint: first.3.clone(),
            subject: first.4.clone(),
            enabled: first.5,
            clinics: rows.iter().filter_map(|r| r.6.clone()).collect(),
        })
    }

    async fn client_from_row(&self, r: ClientRow) -> Result<ServiceClient> {
        let clinics: Vec<(String,)> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT clinic_id FROM service_client_clinics WHERE client_id = $1 ORDER BY clinic_id")
                .bind(&r.0)
                .fetch_all(pool)
                .await
        })?;
        Ok(ServiceClient {
            id: r.0,
            name: r.1,
            role: r.2.parse().map_err(|()| corrupt("service_clients.role"))?,
            fingerprint: r.3,
            subject: r.4,
            enabled: r.5,
            clinics: clinics.into_iter().map(|(c,)| c).collect(),
        })
    }

    /// All service clients.
    pub async fn list_service_clients(&self) -> Result<Vec<ServiceClient>> {
        let rows: Vec<ClientRow> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, name, role, fingerprint, subject, enabled FROM service_clients ORDER BY id")
                .fetch_all(pool)
                .await
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.client_from_row(r).await?);
        }
        Ok(out)
    }

    /// Enables or disables a service client.
    pub async fn set_service_client_enabled(&self, id: &str, enabled: bool, now: i64) -> Result<()> {
        let n = with_pool!(self, |pool| {
            sqlx::query("UPDATE service_clients SET enabled = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(enabled)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if n == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Everything an EMR call about one doctor needs, in one read: the service client presenting
    /// `fingerprint` (whether it serves `clinic_id`), and the doctor `login_id` at that clinic
    /// with their open signing session (login IDs compared folded, as at login). `None` if no client
    /// has that certificate.
    pub async fn emr_context(&self, fingerprint: &str, clinic_id: &str, login_id: &str) -> Result<Option<EmrContext>> {
        type Row = (
            String,
            String,
            bool,
            bool,
            Option<String>,
            Option<bool>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let row = read_optional!(
            self,
            Row,
            "SELECT c.id, c.role, c.enabled,
                    EXISTS (SELECT 1 FROM service_client_clinics cc WHERE cc.client_id = c.id AND cc.clinic_id = $2),
                    u.id, u.enabled, u.kind, u.medical_reg_no,
                    s.id, s.method, s.amr, s.acr, s.auth_time, s.expires_at, s.idle_secs, s.last_activity_at
             FROM service_clients c
             LEFT JOIN users u ON u.clinic_id = $2 AND u.login_folded = $3
             LEFT JOIN signing_sessions s ON s.user_id = u.id AND s.clinic_id = u.clinic_id AND s.ended_at IS NULL
             WHERE c.fingerprint = $1",
            fingerprint,
            clinic_id,
            crate::login_id::fold(login_id),
        )?;
        let Some(r) = row else { return Ok(None) };
        let client = ClientAccess {
            id: r.0,
            role: r.1.parse().map_err(|()| corrupt("service_clients.role"))?,
            enabled: r.2,
            serves_clinic: r.3,
        };
        let doctor = match (r.4, r.5, r.6) {
            (Some(user_id), Some(enabled), Some(kind)) => {
                let session = match (r.8, r.9, r.10, r.11, r.12, r.13, r.14, r.15) {
                    (Some(id), Some(method), Some(amr), Some(acr), Some(auth_time), Some(expires_at), Some(idle), Some(last)) => {
                        Some(OpenSession { id, method, amr, acr, auth_time, expires_at, idle_secs: idle, last_activity_at: last })
                    }
                    _ => None,
                };
                Some(IssueContext { user_id, enabled, is_doctor: kind == "doctor", medical_reg_no: r.7, session })
            }
            _ => None,
        };
        Ok(Some(EmrContext { client, doctor }))
    }

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
        // VALUES columns are column1… on both databases.
        const HEAD: &str = "INSERT INTO issued_tokens (jti, session_id, client_id, expires_at, consumed_at, consumed_by, created_at)
             SELECT v.column1, s.id, v.column3, v.column4, NULL, NULL, v.column5 FROM (";
        const TAIL: &str = ") AS v JOIN signing_sessions s ON s.id = v.column2
             WHERE s.ended_at IS NULL AND s.expires_at > v.column5 AND s.last_activity_at + s.idle_secs > v.column5
             RETURNING jti";
        // Activity: one statement for the batch, (session id, time) per touched session.
        const TOUCH_HEAD: &str = "UPDATE signing_sessions SET last_activity_at = v.column2, updated_at = v.column2 FROM (";
        const TOUCH_TAIL: &str = ") AS v WHERE signing_sessions.id = v.column1 AND signing_sessions.last_activity_at < v.column2";
        // Consumption: (jti, consumer, time) rows, each jti once per statement.
        const CONSUME_HEAD: &str = "UPDATE issued_tokens SET consumed_at = v.column3, consumed_by = v.column2 FROM (";
        const CONSUME_TAIL: &str = ") AS v WHERE issued_tokens.jti = v.column1 AND issued_tokens.consumed_at IS NULL
               AND issued_tokens.expires_at > v.column3
               AND EXISTS (SELECT 1 FROM signing_sessions s JOIN users u ON u.id = s.user_id
                           WHERE s.id = issued_tokens.session_id AND s.ended_at IS NULL AND u.enabled)
             RETURNING issued_tokens.jti, issued_tokens.session_id, issued_tokens.client_id";
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
        type Won = (String, String, String);
        let won_map = |rows: Vec<Won>| {
            rows.into_iter().map(|(jti, session_id, client_id)| (jti, ConsumedToken { session_id, client_id })).collect()
        };
        match &self.backend {
            // One inline transaction on the writer connection (decision 0008).
            Backend::Sqlite { writer, .. } => writer.lock().await.transaction(|tx| {
                let mut inserted = std::collections::HashSet::with_capacity(tokens.len());
                for chunk in super::batch_chunks(tokens) {
                    let params: Vec<&dyn rusqlite::ToSql> = chunk
                        .iter()
                        .flat_map(|t| [&t.jti as &dyn rusqlite::ToSql, &t.session_id, &t.client_id, &t.expires_at, &t.issued_at])
                        .collect();
                    let jtis: Vec<(String,)> = inline::all_rows(tx, HEAD, TAIL, 5, chunk.len(), &params)?;
                    inserted.extend(jtis.into_iter().map(|(j,)| j));
                }
                let recorded = outcome(inserted);
                for chunk in super::batch_chunks(&touched(&recorded)) {
                    let params: Vec<&dyn rusqlite::ToSql> =
                        chunk.iter().flat_map(|(id, at)| [id as &dyn rusqlite::ToSql, at]).collect();
                    inline::execute_rows(tx, TOUCH_HEAD, TOUCH_TAIL, 2, chunk.len(), &params)?;
                }
                let mut won = Vec::new();
                for chunk in super::batch_chunks(&first_consumes) {
                    let params: Vec<&dyn rusqlite::ToSql> =
                        chunk.iter().flat_map(|c| [&c.jti as &dyn rusqlite::ToSql, &c.consumer, &c.at]).collect();
                    won.extend(inline::all_rows::<Won>(tx, CONSUME_HEAD, CONSUME_TAIL, 3, chunk.len(), &params)?);
                }
                let consumed = consumed(won_map(won));
                let all = audit(&recorded, &consumed);
                if !all.is_empty() {
                    append_audit_sqlite(tx, &self.audit_rows(&all))?;
                }
                Ok((recorded, consumed))
            }),
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let mut inserted = std::collections::HashSet::with_capacity(tokens.len());
                for chunk in super::batch_chunks(tokens) {
                    let mut insert = sqlx::QueryBuilder::new(HEAD);
                    insert.push_values(chunk, |mut b, t| {
                        b.push_bind(&t.jti).push_bind(&t.session_id).push_bind(&t.client_id).push_bind(t.expires_at).push_bind(t.issued_at);
                    });
                    insert.push(TAIL);
                    let jtis: Vec<(String,)> = insert.build_query_as().fetch_all(&mut *tx).await?;
                    inserted.extend(jtis.into_iter().map(|(j,)| j));
                }
                let recorded = outcome(inserted);
                for chunk in super::batch_chunks(&touched(&recorded)) {
                    let mut touch = sqlx::QueryBuilder::new(TOUCH_HEAD);
                    touch.push_values(chunk, |mut b, (id, at)| {
                        b.push_bind(*id).push_bind(*at);
                    });
                    touch.push(TOUCH_TAIL);
                    touch.build().execute(&mut *tx).await?;
                }
                let mut won = Vec::new();
                for chunk in super::batch_chunks(&first_consumes) {
                    let mut consume = sqlx::QueryBuilder::new(CONSUME_HEAD);
                    consume.push_values(chunk, |mut b, c| {
                        b.push_bind(&c.jti).push_bind(&c.consumer).push_bind(c.at);
                    });
                    consume.push(CONSUME_TAIL);
                    won.extend(consume.build_query_as::<Won>().fetch_all(&mut *tx).await?);
                }
                let consumed = consumed(won_map(won));
                let all = audit(&recorded, &consumed);
                if !all.is_empty() {
                    append_audit_pg(&mut tx, &self.audit_rows(&all)).await?;
                }
                tx.commit().await?;
                Ok((recorded, consumed))
            }
        }
    }

    /// Why a token was not consumed; only which answer to give is read here, the decision was
    /// the consuming statement's. A token still unused whose session ended, vanished or whose
    /// doctor was disabled is `SessionEnded`; anything else (unknown, used, expired) is
    /// `NotConsumable`.
    pub async fn consume_refusal(&self, jti: &str, now: i64) -> Result<Consumption> {
        let ended = read_optional!(
            self,
            (bool,),
            "SELECT COALESCE(t.consumed_at IS NULL AND t.expires_at > $2
                             AND (s.id IS NULL OR s.ended_at IS NOT NULL OR NOT u.enabled), FALSE)
             FROM issued_tokens t
             LEFT JOIN signing_sessions s ON s.id = t.session_id
             LEFT JOIN users u ON u.id = s.user_id
             WHERE t.jti = $1",
            jti,
            now,
        )?;
        Ok(if ended == Some((true,)) { Consumption::SessionEnded } else { Consumption::NotConsumable })
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
        let row: Option<KeyTuple> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kid, public_jwk, private_key, retired_at, created_at FROM signing_keys
                 WHERE alg = 'ES256' AND retired_at IS NULL",
            )
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(key_row))
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
        with_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE signing_keys SET retired_at = $2, updated_at = $2 WHERE alg = $1 AND retired_at IS NULL")
                    .bind(alg)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, retired_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, NULL, $5, $5)",
                )
                .bind(kid)
                .bind(alg)
                .bind(public_jwk)
                .bind(private_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// Keys to publish: the active one and those retired after `retired_after`.
    pub async fn published_signing_keys(&self, retired_after: i64) -> Result<Vec<SigningKeyRow>> {
        let rows: Vec<KeyTuple> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT kid, public_jwk, private_key, retired_at, created_at FROM signing_keys
                 WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
            )
            .bind(retired_after)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(key_row).collect())
    }

    /// Every key, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        self.published_signing_keys(i64::MIN).await
    }
}

/// A `signing_keys` row as selected: kid, public JWK, sealed private key, retired_at, created_at.
type KeyTuple = (String, String, Vec<u8>, Option<i64>, i64);

fn key_row(r: KeyTuple) -> SigningKeyRow {
    SigningKeyRow { kid: r.0, public_jwk: r.1, private_key: r.2, retired_at: r.3, created_at: r.4 }
}
