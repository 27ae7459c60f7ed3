//! Clinics and the TLS client certificates registered to them (the clinic gate).
//!
//! Every write here clears the gate cache once it has committed and, on PostgreSQL, notifies the
//! other instances inside its transaction (`cache`, docs/decisions/0020-cached-gate-lookups.md).

use super::{Backend, Error, Result, Store, gate_transaction, read_one, row, tx_execute, with_reader};

impl Store {
    /// Adds a clinic.
    pub async fn add_clinic(&self, id: &str, name: &str, now: i64) -> Result<()> {
        gate_transaction!(self, |tx| {
            tx_execute!(tx, "INSERT INTO clinics (id, name, enabled, created_at, updated_at) VALUES ($1, $2, TRUE, $3, $3)", id, name, now)
        })?;
        Ok(())
    }

    /// All clinics, by id.
    pub async fn list_clinics(&self) -> Result<Vec<Clinic>> {
        let rows: Vec<Clinic> = with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, name, enabled, created_at FROM clinics ORDER BY id")
                .fetch_all(pool)
                .await
        })?;
        Ok(rows)
    }

    /// One clinic.
    pub async fn clinic(&self, id: &str) -> Result<Clinic> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as("SELECT id, name, enabled, created_at FROM clinics WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
        })?)
    }

    /// Enables or disables a clinic; `NotFound` if there is none.
    pub async fn set_clinic_enabled(&self, id: &str, enabled: bool, now: i64) -> Result<()> {
        let done = gate_transaction!(self, |tx| tx_execute!(tx, "UPDATE clinics SET enabled = $2, updated_at = $3 WHERE id = $1", id, enabled, now))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    // ---- clinic certificates ----------------------------------------------------------------

    /// Registers a clinic certificate by fingerprint.
    pub async fn add_clinic_cert(&self, cert: &NewClinicCert<'_>, now: i64) -> Result<()> {
        gate_transaction!(self, |tx| {
            tx_execute!(
                tx,
                "INSERT INTO clinic_certs (fingerprint, clinic_id, subject, serial, not_after, revoked_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6)",
                cert.fingerprint,
                cert.clinic_id,
                cert.subject,
                cert.serial,
                cert.not_after,
                now,
            )
        })?;
        Ok(())
    }

    /// The registration of a certificate fingerprint, joined with its clinic. The clinic gate
    /// asks on every request: served from the gate cache (`cache`) while nothing changed.
    pub async fn clinic_cert(&self, fingerprint: &str) -> Result<ClinicCertBinding> {
        self.cached(fingerprint, self.read_clinic_cert(fingerprint)).await
    }

    async fn read_clinic_cert(&self, fingerprint: &str) -> Result<ClinicCertBinding> {
        let row = read_one!(
            self,
            BindingRow,
            "SELECT c.fingerprint AS fingerprint, c.clinic_id AS clinic_id, c.revoked_at AS revoked_at,
                    k.name AS clinic_name, k.enabled AS clinic_enabled
             FROM clinic_certs c JOIN clinics k ON k.id = c.clinic_id WHERE c.fingerprint = $1",
            fingerprint,
        )?;
        Ok(ClinicCertBinding {
            fingerprint: row.fingerprint,
            clinic_id: row.clinic_id,
            revoked: row.revoked_at.is_some(),
            clinic_name: row.clinic_name,
            clinic_enabled: row.clinic_enabled,
        })
    }

    /// Registered certificates, optionally of one clinic.
    pub async fn list_clinic_certs(&self, clinic_id: Option<&str>) -> Result<Vec<ClinicCert>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT fingerprint, clinic_id, subject, serial, not_after, revoked_at, created_at FROM clinic_certs
                 WHERE ($1 IS NULL OR clinic_id = $1) ORDER BY clinic_id, created_at",
            )
            .bind(clinic_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Lifts the revocation of a registered certificate; `NotFound` if it is not registered or
    /// not revoked.
    pub async fn restore_clinic_cert(&self, fingerprint: &str) -> Result<()> {
        let done = gate_transaction!(self, |tx| tx_execute!(tx, "UPDATE clinic_certs SET revoked_at = NULL WHERE fingerprint = $1 AND revoked_at IS NOT NULL", fingerprint))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Marks a registered certificate revoked; `NotFound` if it is not registered or already revoked.
    pub async fn revoke_clinic_cert(&self, fingerprint: &str, now: i64) -> Result<()> {
        let done = gate_transaction!(self, |tx| tx_execute!(tx, "UPDATE clinic_certs SET revoked_at = $2 WHERE fingerprint = $1 AND revoked_at IS NULL", fingerprint, now))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }
}

row! {
    /// A clinic.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct Clinic {
        /// Clinic code.
        pub id: String,
        /// Display name.
        pub name: String,
        /// Disabled clinics get nothing.
        pub enabled: bool,
        /// Unix seconds.
        pub created_at: i64,
    }
}

row! {
    /// A clinic certificate's registration joined with its clinic.
    struct BindingRow {
        fingerprint: String,
        clinic_id: String,
        revoked_at: Option<i64>,
        clinic_name: String,
        clinic_enabled: bool,
    }
}

/// A certificate to register for a clinic.
#[derive(Debug)]
pub struct NewClinicCert<'a> {
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: &'a str,
    /// Owning clinic.
    pub clinic_id: &'a str,
    /// Subject DN, for operators.
    pub subject: &'a str,
    /// Serial number, hex.
    pub serial: &'a str,
    /// Unix seconds.
    pub not_after: i64,
}

row! {
    /// A registered clinic certificate.
    #[derive(Debug, Clone, serde::Serialize)]
    pub struct ClinicCert {
        /// Lowercase hex SHA-256 of the DER.
        pub fingerprint: String,
        /// Owning clinic.
        pub clinic_id: String,
        /// Subject DN.
        pub subject: String,
        /// Serial number, hex.
        pub serial: String,
        /// Unix seconds.
        pub not_after: i64,
        /// When an operator revoked it.
        pub revoked_at: Option<i64>,
        /// Unix seconds.
        pub created_at: i64,
    }
}

/// What the gate needs to know about a presented certificate.
#[derive(Debug, Clone)]
pub struct ClinicCertBinding {
    /// Fingerprint.
    pub fingerprint: String,
    /// The clinic it is registered to.
    pub clinic_id: String,
    /// Revoked by an operator.
    pub revoked: bool,
    /// The clinic's name.
    pub clinic_name: String,
    /// Whether the clinic is enabled.
    pub clinic_enabled: bool,
}
