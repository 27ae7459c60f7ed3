//! Service clients (docs/design.md §3.8): the EMR backends and remote signers that call the
//! service API with a TLS client certificate, the clinics each serves, and the one read every
//! EMR call starts with ([`Store::emr_context`]).

use super::{Backend, Error, Result, Store, corrupt, gate_transaction, read_optional, row, tx_execute, with_reader};
use super::batched;

/// What a service client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ServiceRole {
    /// An EMR backend: reads signing-session state and obtains tokens for its clinics.
    Emr,
    /// A remote signer: consumes tokens.
    Signer,
    /// An EMR's account provisioning: manages the users of its clinics through SCIM
    /// (`/scim/v2`, docs/design.md §3.16), and nothing else.
    Provisioner,
}

impl ServiceRole {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
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
    /// A test account (docs/design.md §3.10).
    pub test_account: bool,
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


row! {
    /// A service client joined with one of its clinics (`None`: it serves none).
    struct ClientClinicRow {
        id: String,
        name: String,
        role: String,
        fingerprint: String,
        subject: String,
        enabled: bool,
        clinic_id: Option<String>,
    }
}

row! {
    /// A clinic a service client serves.
    struct ClinicIdRow {
        clinic_id: String,
    }
}

row! {
    /// [`Store::emr_context`]'s join: the client, and the doctor and open session where found.
    pub(super) struct EmrRow {
        client_id: String,
        role: String,
        client_enabled: bool,
        serves_clinic: bool,
        user_id: Option<String>,
        user_enabled: Option<bool>,
        kind: Option<String>,
        medical_reg_no: Option<String>,
        test_account: Option<bool>,
        session_id: Option<String>,
        method: Option<String>,
        amr: Option<String>,
        acr: Option<String>,
        auth_time: Option<i64>,
        expires_at: Option<i64>,
        idle_secs: Option<i64>,
        last_activity_at: Option<i64>,
    }
}

/// [`Store::emr_context`]'s join, written once: `$first` columns before the row's, the clinic
/// and folded login ID as expressions, what the clients are read from, and what follows the joins.
macro_rules! emr_context_sql {
    ($first:literal, $clinic:literal, $login:literal, $from:literal, $tail:literal) => {
        concat!(
            "SELECT ", $first, "c.id AS client_id, c.role AS role, c.enabled AS client_enabled,
                EXISTS (SELECT 1 FROM service_client_clinics cc WHERE cc.client_id = c.id AND cc.clinic_id = ", $clinic, ") AS serves_clinic,
                u.id AS user_id, u.enabled AS user_enabled, u.kind AS kind, u.medical_reg_no AS medical_reg_no,
                u.test_account AS test_account,
                s.id AS session_id, s.method AS method, s.amr AS amr, s.acr AS acr, s.auth_time AS auth_time,
                s.expires_at AS expires_at, s.idle_secs AS idle_secs, s.last_activity_at AS last_activity_at
             FROM ", $from, "
             LEFT JOIN users u ON u.clinic_id = ", $clinic, " AND u.login_folded = ", $login, "
             LEFT JOIN signing_sessions s ON s.user_id = u.id AND s.clinic_id = u.clinic_id AND s.ended_at IS NULL",
            $tail
        )
    };
}

/// [`Store::emr_context`]'s read of one key.
const EMR_CONTEXT: &str = emr_context_sql!("", "$2", "$3", "service_clients c", " WHERE c.fingerprint = $1");

/// [`EMR_CONTEXT`] for many keys at once (PostgreSQL): `idx` says whose row it is.
const EMR_CONTEXT_BATCH: &str = emr_context_sql!(
    "v.idx AS idx, ",
    "v.clinic_id",
    "v.login_folded",
    "UNNEST($1::int8[], $2::text[], $3::text[], $4::text[]) AS v(idx, fingerprint, clinic_id, login_folded)
     JOIN service_clients c ON c.fingerprint = v.fingerprint",
    ""
);

/// The key of [`Store::emr_context`]: certificate fingerprint, clinic, folded login ID.
pub(super) type EmrKey = (String, String, String);

/// [`EMR_CONTEXT_BATCH`] on `pool`: per key, in order, its row if there is one.
pub(super) fn emr_context_batch(pool: sqlx::postgres::PgPool, metrics: crate::metrics::StoreMetrics, keys: Vec<EmrKey>) -> batched::BatchFuture<EmrRow> {
    Box::pin(async move {
        use sqlx::{FromRow as _, Row as _};
        let n = keys.len();
        let idx: Vec<i64> = (0..n as i64).collect();
        let (mut fingerprints, mut clinics, mut logins) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (f, c, l) in keys {
            fingerprints.push(f);
            clinics.push(c);
            logins.push(l);
        }
        let mut conn = batched::acquire(&pool, &metrics).await?;
        let rows = sqlx::query(EMR_CONTEXT_BATCH).bind(idx).bind(fingerprints).bind(clinics).bind(logins).fetch_all(&mut *conn).await?;
        let mut out: Vec<Option<EmrRow>> = (0..n).map(|_| None).collect();
        for row in rows {
            let i: i64 = row.try_get("idx")?;
            let r = EmrRow::from_row(&row)?;
            // The first row of a key, as the single read's `fetch_optional` takes it.
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i))
                && slot.is_none()
            {
                *slot = Some(r);
            }
        }
        Ok(out)
    })
}

fn role(s: &str) -> Result<ServiceRole> {
    s.parse().map_err(|_| corrupt("service_clients.role"))
}

impl Store {
    /// Registers a service client serving `clinics`, in one transaction.
    pub async fn add_service_client(&self, client: &ServiceClient, now: i64) -> Result<()> {
        gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "INSERT INTO service_clients (id, name, role, fingerprint, subject, enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)",
                &client.id,
                &client.name,
                client.role.as_str(),
                &client.fingerprint,
                &client.subject,
                now,
            )?;
            for clinic in &client.clinics {
                tx_execute!(
                    tx,
                    "INSERT INTO service_client_clinics (client_id, clinic_id, created_at) VALUES ($1, $2, $3)",
                    &client.id,
                    clinic,
                    now,
                )?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The enabled-or-not service client presenting `fingerprint`.
    ///
    /// One query (client and clinics joined): it runs on every API request, and is served from
    /// the gate cache (`cache`) while nothing changed.
    pub async fn service_client_by_fingerprint(&self, fingerprint: &str) -> Result<ServiceClient> {
        self.cached(fingerprint, self.read_service_client(fingerprint)).await
    }

    async fn read_service_client(&self, fingerprint: &str) -> Result<ServiceClient> {
        let rows: Vec<ClientClinicRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id AS id, c.name AS name, c.role AS role, c.fingerprint AS fingerprint, c.subject AS subject,
                        c.enabled AS enabled, cc.clinic_id AS clinic_id
                 FROM service_clients c LEFT JOIN service_client_clinics cc ON cc.client_id = c.id
                 WHERE c.fingerprint = $1 ORDER BY cc.clinic_id",
            )
            .bind(fingerprint)
            .fetch_all(pool)
            .await
        })?;
        let Some(first) = rows.first() else { return Err(Error::NotFound) };
        Ok(ServiceClient {
            id: first.id.clone(),
            name: first.name.clone(),
            role: role(&first.role)?,
            fingerprint: first.fingerprint.clone(),
            subject: first.subject.clone(),
            enabled: first.enabled,
            clinics: rows.iter().filter_map(|r| r.clinic_id.clone()).collect(),
        })
    }

    async fn client_from_row(&self, r: ClientClinicRow) -> Result<ServiceClient> {
        let clinics: Vec<ClinicIdRow> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT clinic_id FROM service_client_clinics WHERE client_id = $1 ORDER BY clinic_id")
                .bind(&r.id)
                .fetch_all(pool)
                .await
        })?;
        Ok(ServiceClient {
            role: role(&r.role)?,
            id: r.id,
            name: r.name,
            fingerprint: r.fingerprint,
            subject: r.subject,
            enabled: r.enabled,
            clinics: clinics.into_iter().map(|c| c.clinic_id).collect(),
        })
    }

    /// All service clients.
    pub async fn list_service_clients(&self) -> Result<Vec<ServiceClient>> {
        let rows: Vec<ClientClinicRow> = with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, role, fingerprint, subject, enabled, CAST(NULL AS TEXT) AS clinic_id FROM service_clients ORDER BY id",
            )
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
        let n = gate_transaction!(self, |tx| tx_execute!(tx, "UPDATE service_clients SET enabled = $2, updated_at = $3 WHERE id = $1", id, enabled, now))?;
        if n == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Everything an EMR call about one doctor needs, in one read: the service client presenting
    /// `fingerprint` (whether it serves `clinic_id`), and the doctor `login_id` at that clinic
    /// with their open signing session (login IDs compared folded, as at login). `None` if no client
    /// has that certificate.
    pub async fn emr_context(&self, fingerprint: &str, clinic_id: &str, login_id: &str) -> Result<Option<EmrContext>> {
        let folded = crate::login_id::fold(login_id);
        // On PostgreSQL the concurrent requests' reads go out as one statement (`batched`).
        let batched = match &self.emr_reads {
            Some(batcher) => batcher.get((fingerprint.to_owned(), clinic_id.to_owned(), folded.clone()), &self.metrics).await,
            None => batched::Answer::ReadAlone,
        };
        let row = match batched {
            batched::Answer::Row(row) => row,
            batched::Answer::Unavailable(why) => return Err(Error::Unavailable(why)),
            batched::Answer::ReadAlone => read_optional!(self, EmrRow, EMR_CONTEXT, fingerprint, clinic_id, folded)?,
        };
        let Some(r) = row else { return Ok(None) };
        let client = ClientAccess { id: r.client_id, role: role(&r.role)?, enabled: r.client_enabled, serves_clinic: r.serves_clinic };
        let doctor = match (r.user_id, r.user_enabled, r.kind) {
            (Some(user_id), Some(enabled), Some(kind)) => {
                let session = match (r.session_id, r.method, r.amr, r.acr, r.auth_time, r.expires_at, r.idle_secs, r.last_activity_at) {
                    (Some(id), Some(method), Some(amr), Some(acr), Some(auth_time), Some(expires_at), Some(idle), Some(last)) => {
                        Some(OpenSession { id, method, amr, acr, auth_time, expires_at, idle_secs: idle, last_activity_at: last })
                    }
                    _ => None,
                };
                Some(IssueContext { user_id, enabled, is_doctor: kind == "doctor", medical_reg_no: r.medical_reg_no, test_account: r.test_account.unwrap_or(false), session })
            }
            _ => None,
        };
        Ok(Some(EmrContext { client, doctor }))
    }
}
