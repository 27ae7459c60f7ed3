//! The signer's database: its callers, the doctors' credentials, and its own keyed audit chain
//! (docs/design.md §3.11). SQLite (one writer connection, readers beside it under WAL) or
//! PostgreSQL for several instances; each statement is written once and compiled for both
//! through [`on_pool!`]. Connections, migrations and the chain's link come from `infra`.

mod inline;

use std::sync::Arc;
use std::time::Duration;

use infra::audit_chain::{AuditKey, audit_link};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// The signer's migrations (`signer/migrations`).
const MIGRATIONS: infra::db::Migrations = &[(
    1,
    "signer",
    include_str!("../migrations/sqlite/0001_signer.sql"),
    include_str!("../migrations/postgres/0001_signer.sql"),
)];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such row.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Connecting failed; names the server.
    #[error(transparent)]
    Connect(#[from] infra::db::ConnectError),
    /// Migrating failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No audit key was given to a store asked to write audit rows.
    #[error("audit log: no audit key")]
    NoAuditKey,
    /// An inline SQLite statement failed (see `inline`).
    #[error("database error: {0}")]
    Inline(#[source] rusqlite::Error),
    /// A stored value is not what this version writes.
    #[error("unexpected value in {0}")]
    Corrupt(&'static str),
}

impl Error {
    /// The database is unreachable or overloaded: 503, a retry may work.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(e) => infra::db::sqlx_unavailable(e),
            Error::Connect(_) => true,
            Error::Inline(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::ReadOnly)
            }
            _ => false,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        infra::db::note_if_connection_lost(&e);
        match &e {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
                Error::Conflict(db.constraint().or(db.table()).unwrap_or("unique").to_owned())
            }
            _ => Error::Database(e),
        }
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
enum Pools {
    /// `write` is one connection: SQLite takes one writer at a time, so writers queue here
    /// instead of meeting SQLITE_BUSY.
    /// `inline` runs the signHash path's statements on rusqlite (`inline`).
    Sqlite { write: SqlitePool, read: SqlitePool, inline: Arc<inline::Inline> },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the writing pool of either backend; the body is compiled
/// once per backend.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { write: $pool, .. } => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

/// Like [`on_pool!`] for reads: SQLite's read-only connections.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { read: $pool, .. } => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a transaction `$tx` on either backend and commits it.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { write, .. } => {
                // IMMEDIATE: take the write lock at BEGIN. A deferred transaction that read the
                // head first could not upgrade when another process (instances may share the
                // file) committed meanwhile, and SQLite would not wait for it.
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Pools::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Appends `$events` to the chain inside transaction `$tx`: reads the head (locking it on
/// PostgreSQL, so instances append one after another), links each row, moves the head.
macro_rules! append {
    ($tx:ident, $key:expr, $events:expr) => {{
        let (mut seq, mut prev): (i64, Vec<u8>) =
            sqlx::query_as(LOCK_HEAD_SQL[usize::from(is_pg(&*$tx))]).fetch_one(&mut *$tx).await?;
        for e in $events {
            seq += 1;
            let detail = e.detail.to_string();
            let link = audit_link(
                Some(&$key),
                &prev,
                (seq, e.at, e.event, e.outcome, e.clinic_id.as_deref(), e.user_id.as_deref(), &detail),
            );
            sqlx::query(
                "INSERT INTO audit_log (seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(seq)
            .bind(e.at)
            .bind(e.event)
            .bind(e.outcome)
            .bind(&e.clinic_id)
            .bind(&e.user_id)
            .bind(&detail)
            .bind(&prev)
            .bind(&link)
            .execute(&mut *$tx)
            .await?;
            prev = link;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1").bind(seq).bind(&prev).execute(&mut *$tx).await?;
    }};
}

/// The head read at the start of an append: SQLite's single writer already serialises; on
/// PostgreSQL the row lock does.
const LOCK_HEAD_SQL: [&str; 2] =
    ["SELECT seq, hash FROM audit_head WHERE id = 1", "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"];

trait BackendKind {
    const POSTGRES: bool;
}
impl BackendKind for sqlx::SqliteConnection {
    const POSTGRES: bool = false;
}
impl BackendKind for sqlx::PgConnection {
    const POSTGRES: bool = true;
}
fn is_pg<C: BackendKind>(_: &C) -> bool {
    C::POSTGRES
}

/// The database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pools: Pools,
    audit_key: Option<Arc<AuditKey>>,
}

/// A registered caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceClient {
    /// Operator-chosen id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Lowercase hex SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// Subject DN of the certificate, for operators.
    pub subject: String,
    /// Disabled callers are refused at once.
    pub enabled: bool,
    /// The clinics it may sign for.
    pub clinics: Vec<String>,
}

/// Where a credential's private key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum KeyBackend {
    /// Sealed PKCS#8 in `key_ref`.
    Software,
    /// CKA_ID on the PKCS#11 token in `key_ref`.
    Pkcs11,
}

impl KeyBackend {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A doctor's signing credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// CSC `credentialID`.
    pub id: String,
    /// The clinic it signs for.
    pub clinic_id: String,
    /// The doctor's 医籍番号, as the gateway's tokens carry it.
    pub medical_reg_no: String,
    /// Free text for operators and `credentials/info`.
    pub description: String,
    /// Where the private key is.
    pub backend: KeyBackend,
    /// Sealed key or token key id (never the key in clear).
    pub key_ref: Vec<u8>,
    /// RSA modulus size.
    pub key_bits: u32,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// The signing certificate, DER; `None` while its CSR is at the CA.
    pub certificate: Option<Vec<u8>>,
    /// The issuing CA certificates, DER, leaf's issuer first.
    pub chain: Vec<Vec<u8>>,
    /// Disabled credentials sign nothing.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// An audit event ready to append.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// Event name (`signature_created`, `signature_refused`, `credential_created`, …).
    pub event: &'static str,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// Clinic id, when known.
    pub clinic_id: Option<String>,
    /// The doctor's gateway user id (token `sub`), when known.
    pub user_id: Option<String>,
    /// Ids and counts only (docs/design.md §6 lists what never goes here).
    pub detail: serde_json::Value,
}

/// An audit row as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    /// Sequence number from 1.
    pub seq: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Event name.
    pub event: String,
    /// Outcome.
    pub outcome: String,
    /// Clinic id.
    pub clinic_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// Detail JSON text.
    pub detail: String,
    /// Hex link of the row.
    pub hash: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerification {
    /// Every row links to the one before under the audit key, and the head agrees.
    Intact { rows: i64 },
    /// Row `seq` does not produce its stored link (changed, or linked under another key).
    Modified { seq: i64 },
    /// A row is missing: `expected` came next but `seq` was found.
    Missing { seq: i64, expected: i64 },
    /// Row `seq`'s stored previous link is not the link before it.
    BrokenLink { seq: i64 },
    /// Rows after `last_seq` were removed (the head says `head_seq`).
    Truncated { last_seq: i64, head_seq: i64 },
}

/// Every column of `credentials`, in [`CredentialRow`] order.
macro_rules! credential_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, clinic_id, medical_reg_no, description, backend, key_ref, key_bits, spki, certificate, chain, enabled, created_at FROM credentials ",
            $tail
        )
    };
}

pub(crate) use credential_select;

type CredentialRow = (String, String, String, String, String, Vec<u8>, i64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, bool, i64);

fn credential(row: CredentialRow) -> Result<Credential> {
    let (id, clinic_id, medical_reg_no, description, backend, key_ref, key_bits, spki, certificate, chain, enabled, created_at) = row;
    Ok(Credential {
        id,
        clinic_id,
        medical_reg_no,
        description,
        backend: backend.parse().map_err(|_| Error::Corrupt("credentials.backend"))?,
        key_ref,
        key_bits: u32::try_from(key_bits).map_err(|_| Error::Corrupt("credentials.key_bits"))?,
        spki,
        certificate,
        chain: split_ders(chain.as_deref().unwrap_or_default())?,
        enabled,
        created_at,
    })
}

/// Splits concatenated DER certificates (each a SEQUENCE with a definite length).
fn split_ders(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(bytes).map_err(|_| Error::Corrupt("credentials.chain"))?;
        let len = bytes.len() - rest.len();
        out.push(bytes[..len].to_vec());
        bytes = rest;
    }
    Ok(out)
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). A SQLite file is created (0600) and
    /// runs in WAL mode.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self> {
        let pools = if url.starts_with("sqlite:") {
            let options = infra::db::sqlite_options(url)?;
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire_timeout.max(Duration::from_secs(5)))
                .connect_with(
                    options.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal),
                )
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options.clone().read_only(true))
                .await?;
            let inline = Arc::new(inline::Inline::open(options.get_filename())?);
            Pools::Sqlite { write, read, inline }
        } else {
            Pools::Postgres(infra::db::connect_postgres(url, max_connections, acquire_timeout).await?)
        };
        Ok(Self { pools, audit_key: None })
    }

    /// This store, linking audit rows under `key`.
    #[must_use]
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Some(Arc::new(key));
        self
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pools {
            Pools::Sqlite { write, .. } => infra::db::migrator(MIGRATIONS, false).run(write).await?,
            Pools::Postgres(pool) => infra::db::migrator(MIGRATIONS, true).run(pool).await?,
        }
        Ok(())
    }

    /// Where the schema stands against this build, changing nothing.
    pub async fn schema_status(&self) -> Result<infra::db::SchemaStatus> {
        let applied: Vec<i64> =
            match on_reader!(self, |pool| sqlx::query_scalar(infra::db::APPLIED_MIGRATIONS_SQL).fetch_all(pool).await) {
                Ok(v) => v,
                Err(e) if infra::db::is_missing_table(&e) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(infra::db::SchemaStatus::of(&applied, MIGRATIONS))
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    /// Whether the database takes a write (`/readyz`): rewrites the audit head unchanged.
    pub async fn probe_commit(&self) -> Result<()> {
        let n = on_pool!(self, |pool| sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(pool).await?.rows_affected());
        if n == 1 { Ok(()) } else { Err(Error::Corrupt("audit_head")) }
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read, .. } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    // ---- service clients ---------------------------------------------------------------------

    /// Registers a caller with the clinics it serves, audited in the same transaction.
    pub async fn add_client(&self, client: &ServiceClient, audit: AuditEntry) -> Result<()> {
        let key = self.key()?;
        in_transaction!(self, |tx| {
            sqlx::query("INSERT INTO service_clients (id, name, fingerprint, subject, enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&client.id)
                .bind(&client.name)
                .bind(&client.fingerprint)
                .bind(&client.subject)
                .bind(client.enabled)
                .bind(audit.at)
                .execute(&mut *tx)
                .await?;
            for clinic in &client.clinics {
                sqlx::query("INSERT INTO service_client_clinics (client_id, clinic_id) VALUES ($1, $2)")
                    .bind(&client.id)
                    .bind(clinic)
                    .execute(&mut *tx)
                    .await?;
            }
            append!(tx, key, std::slice::from_ref(&audit));
        });
        Ok(())
    }

    /// Enables or disables a caller; takes effect on every instance at its next request.
    pub async fn set_client_enabled(&self, id: &str, enabled: bool, audit: AuditEntry) -> Result<()> {
        let key = self.key()?;
        in_transaction!(self, |tx| {
            let n = sqlx::query("UPDATE service_clients SET enabled = $1 WHERE id = $2")
                .bind(enabled)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(Error::NotFound);
            }
            append!(tx, key, std::slice::from_ref(&audit));
        });
        Ok(())
    }

    /// Every caller with its clinics, by id.
    pub async fn list_clients(&self) -> Result<Vec<ServiceClient>> {
        let rows: Vec<(String, String, String, String, bool, Option<String>)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.name, c.fingerprint, c.subject, c.enabled, s.clinic_id FROM service_clients c
                 LEFT JOIN service_client_clinics s ON s.client_id = c.id ORDER BY c.id, s.clinic_id",
            )
            .fetch_all(pool)
            .await?
        });
        let mut out: Vec<ServiceClient> = Vec::new();
        for (id, name, fingerprint, subject, enabled, clinic) in rows {
            if out.last().is_none_or(|c| c.id != id) {
                out.push(ServiceClient { id, name, fingerprint, subject, enabled, clinics: Vec::new() });
            }
            if let (Some(clinic), Some(last)) = (clinic, out.last_mut()) {
                last.clinics.push(clinic);
            }
        }
        Ok(out)
    }

    /// The caller registered under a certificate fingerprint, with its clinics.
    pub async fn client_by_fingerprint(&self, fingerprint: &str) -> Result<Option<ServiceClient>> {
        if let Pools::Sqlite { inline, .. } = &self.pools {
            return inline.client_by_fingerprint(fingerprint);
        }
        let rows: Vec<(String, String, String, String, bool, Option<String>)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.name, c.fingerprint, c.subject, c.enabled, s.clinic_id FROM service_clients c
                 LEFT JOIN service_client_clinics s ON s.client_id = c.id WHERE c.fingerprint = $1 ORDER BY s.clinic_id",
            )
            .bind(fingerprint)
            .fetch_all(pool)
            .await?
        });
        let mut client: Option<ServiceClient> = None;
        for (id, name, fingerprint, subject, enabled, clinic) in rows {
            let c = client.get_or_insert_with(|| ServiceClient { id, name, fingerprint, subject, enabled, clinics: Vec::new() });
            c.clinics.extend(clinic);
        }
        Ok(client)
    }

    // ---- credentials -------------------------------------------------------------------------

    /// Stores a new credential, audited in the same transaction. A second credential for the
    /// same doctor and clinic is a conflict.
    pub async fn insert_credential(&self, c: &Credential, audit: AuditEntry) -> Result<()> {
        let key = self.key()?;
        let chain: Vec<u8> = c.chain.concat();
        in_transaction!(self, |tx| {
            sqlx::query(
                "INSERT INTO credentials (id, clinic_id, medical_reg_no, description, backend, key_ref, key_bits, spki,
                 certificate, chain, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            )
            .bind(&c.id)
            .bind(&c.clinic_id)
            .bind(&c.medical_reg_no)
            .bind(&c.description)
            .bind(c.backend.as_str())
            .bind(&c.key_ref)
            .bind(i64::from(c.key_bits))
            .bind(&c.spki)
            .bind(&c.certificate)
            .bind((!chain.is_empty()).then_some(&chain))
            .bind(c.enabled)
            .bind(c.created_at)
            .execute(&mut *tx)
            .await?;
            append!(tx, key, std::slice::from_ref(&audit));
        });
        Ok(())
    }

    /// A credential by id.
    pub async fn credential(&self, id: &str) -> Result<Option<Credential>> {
        if let Pools::Sqlite { inline, .. } = &self.pools {
            return inline.credential(id)?.map(credential).transpose();
        }
        let row: Option<CredentialRow> =
            on_reader!(self, |pool| sqlx::query_as(credential_select!("WHERE id = $1")).bind(id).fetch_optional(pool).await?);
        row.map(credential).transpose()
    }

    /// Credentials of `clinics` (all when `None`), optionally one doctor's, by id.
    pub async fn list_credentials(&self, clinics: Option<&[String]>, medical_reg_no: Option<&str>) -> Result<Vec<Credential>> {
        let rows: Vec<CredentialRow> = on_reader!(self, |pool| sqlx::query_as(credential_select!("ORDER BY id")).fetch_all(pool).await?);
        rows.into_iter()
            .filter(|r| clinics.is_none_or(|cs| cs.contains(&r.1)) && medical_reg_no.is_none_or(|m| m == r.2))
            .map(credential)
            .collect()
    }

    /// Enables or disables a credential, audited. Every instance reads the flag on each request.
    pub async fn set_credential_enabled(&self, id: &str, enabled: bool, audit: AuditEntry) -> Result<()> {
        let key = self.key()?;
        in_transaction!(self, |tx| {
            let n = sqlx::query("UPDATE credentials SET enabled = $1, updated_at = $2 WHERE id = $3")
                .bind(enabled)
                .bind(audit.at)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(Error::NotFound);
            }
            append!(tx, key, std::slice::from_ref(&audit));
        });
        Ok(())
    }

    /// Stores the certificate (and its CA chain) a CA issued for a credential's key, audited.
    pub async fn set_certificate(&self, id: &str, certificate: &[u8], chain: &[Vec<u8>], audit: AuditEntry) -> Result<()> {
        let key = self.key()?;
        let chain = chain.concat();
        in_transaction!(self, |tx| {
            let n = sqlx::query("UPDATE credentials SET certificate = $1, chain = $2, updated_at = $3 WHERE id = $4")
                .bind(certificate)
                .bind((!chain.is_empty()).then_some(&chain))
                .bind(audit.at)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(Error::NotFound);
            }
            append!(tx, key, std::slice::from_ref(&audit));
        });
        Ok(())
    }

    // ---- audit -------------------------------------------------------------------------------

    fn key(&self) -> Result<Arc<AuditKey>> {
        self.audit_key.clone().ok_or(Error::NoAuditKey)
    }

    /// Appends events in one transaction; returns once they are committed.
    pub async fn audit(&self, events: &[AuditEntry]) -> Result<()> {
        let key = self.key()?;
        if let Pools::Sqlite { inline, .. } = &self.pools {
            return inline.append(&key, events).await;
        }
        in_transaction!(self, |tx| {
            append!(tx, key, events);
        });
        Ok(())
    }

    /// Rows `from_seq` on, in order.
    pub async fn audit_rows(&self, from_seq: i64) -> Result<Vec<AuditRecord>> {
        type Row = (i64, i64, String, String, Option<String>, Option<String>, String, Vec<u8>);
        let rows: Vec<Row> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, created_at, event, outcome, clinic_id, user_id, detail, hash FROM audit_log WHERE seq >= $1 ORDER BY seq",
            )
            .bind(from_seq)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, created_at, event, outcome, clinic_id, user_id, detail, hash)| AuditRecord {
                seq,
                created_at,
                event,
                outcome,
                clinic_id,
                user_id,
                detail,
                hash: hex::encode(hash),
            })
            .collect())
    }

    /// Recomputes the whole chain under the audit key and names the first row that does not fit.
    pub async fn audit_verify(&self) -> Result<AuditVerification> {
        let key = self.key()?;
        type Row = (i64, i64, String, String, Option<String>, Option<String>, String, Vec<u8>, Vec<u8>);
        let (rows, head): (Vec<Row>, (i64, Vec<u8>)) = on_reader!(self, |pool| {
            let rows = sqlx::query_as(
                "SELECT seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash FROM audit_log ORDER BY seq",
            )
            .fetch_all(pool)
            .await?;
            let head = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?;
            (rows, head)
        });
        let mut prev = vec![0u8; 32];
        let mut expected = 1;
        for (seq, at, event, outcome, clinic, user, detail, prev_hash, hash) in rows {
            if seq != expected {
                return Ok(AuditVerification::Missing { seq, expected });
            }
            if prev_hash != prev {
                return Ok(AuditVerification::BrokenLink { seq });
            }
            let link = audit_link(Some(&key), &prev, (seq, at, &event, &outcome, clinic.as_deref(), user.as_deref(), &detail));
            if link != hash {
                return Ok(AuditVerification::Modified { seq });
            }
            prev = hash;
            expected += 1;
        }
        let last = expected - 1;
        if head.0 != last || (last > 0 && head.1 != prev) {
            return Ok(AuditVerification::Truncated { last_seq: last, head_seq: head.0 });
        }
        Ok(AuditVerification::Intact { rows: last })
    }
}
