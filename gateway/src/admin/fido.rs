//! `gateway admin fido …`: a doctor's linked FIDO credentials.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;

use super::{Admin, jst};
use crate::store::{self, AuditEvent, EndReason};

/// `admin fido …`.
#[derive(Debug, Subcommand)]
pub enum FidoCommand {
    /// List a doctor's FIDO credentials.
    List {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// The doctor's login ID.
        #[arg(long)]
        login_id: String,
    },
    /// Remove a doctor's FIDO credential; ends the signing sessions opened with it.
    Remove {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// The doctor's login ID.
        #[arg(long)]
        login_id: String,
        /// Credential id (first column of `fido list`).
        #[arg(long)]
        id: String,
    },
}

/// Runs a `fido` command.
pub(super) async fn run(admin: &Admin<'_>, cmd: FidoCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        FidoCommand::List { clinic, login_id } => {
            let fmt = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), jst);
            for c in admin.fido_list(&clinic, &login_id).await? {
                writeln!(
                    out,
                    "{}\t{}\tlinked {}\tlast used {}\taaguid {}{}\t{}",
                    c.id,
                    c.name,
                    fmt(Some(c.created_at)),
                    fmt(c.last_used_at),
                    c.aaguid,
                    if c.aaguid_attested { " (attested)" } else { "" },
                    if c.backup_eligible { "synced" } else { "device-bound" },
                )?;
            }
        }
        FidoCommand::Remove { clinic, login_id, id } => {
            let ended = admin.fido_remove(&clinic, &login_id, &id).await?;
            writeln!(out, "removed FIDO credential {id} of {login_id}; {} signing session(s) ended", ended.len())?;
        }
    }
    Ok(())
}

impl Admin<'_> {
    /// `fido list`: the doctor's linked FIDO credentials.
    pub async fn fido_list(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<Vec<store::FidoCredential>> {
        let user = self.doctor(clinic_id, login_id).await?;
        Ok(self.store.fido_credentials_of(&user.id).await?)
    }

    /// `fido remove`: unlinks a credential and ends the signing sessions opened with it.
    /// Returns the ids of the sessions ended.
    pub async fn fido_remove(&self, clinic_id: &str, login_id: &str, id: &str) -> anyhow::Result<Vec<String>> {
        let user = self.doctor(clinic_id, login_id).await?;
        let ended = match self.store.remove_fido_credential(&user.id, id, self.now).await {
            Err(store::Error::NotFound) => bail!("{login_id} has no FIDO credential {id} (see `gateway admin fido list`)"),
            r => r?,
        };
        self.store
            .audit(
                &AuditEvent::AuthenticatorRemoved {
                    clinic_id: user.clinic_id.clone(),
                    user_id: user.id.clone(),
                    kind: "fido",
                    authenticator_id: id.to_owned(),
                    by: "operator",
                },
                self.now,
            )
            .await?;
        for session_id in &ended {
            self.audit_session_end(&user, session_id, EndReason::AuthenticatorRemoved).await?;
        }
        Ok(ended)
    }
}
