//! `gateway admin enroll-code …`: one-time registration codes that let a doctor link an
//! authenticator.

use std::io::Write;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use zeroize::Zeroizing;

use super::{Admin, jst};
use crate::config::Config;
use crate::store;

/// `admin enroll-code …`.
#[derive(Debug, Subcommand)]
pub enum EnrollCodeCommand {
    /// Issue a code for a doctor and print it once (it is stored only hashed). Voids the
    /// doctor's previous open code.
    Issue {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// The doctor's login ID.
        #[arg(long)]
        login_id: String,
        /// Lifetime in hours (default: enrollment.code_ttl_secs, 24 h).
        #[arg(long)]
        expires_hours: Option<i64>,
    },
    /// List open codes (with --all, used, voided and expired ones too). Codes themselves are
    /// never shown again: only their ids, doctors and states.
    List {
        /// Only this clinic.
        #[arg(long)]
        clinic: Option<String>,
        /// Include used, voided and expired codes.
        #[arg(long)]
        all: bool,
    },
    /// Void the doctor's open code.
    Revoke {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// The doctor's login ID.
        #[arg(long)]
        login_id: String,
    },
}

/// Runs an `enroll-code` command.
pub(super) async fn run(admin: &Admin<'_>, config: &Config, cmd: EnrollCodeCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        EnrollCodeCommand::Issue { clinic, login_id, expires_hours } => {
            let ttl = match expires_hours {
                Some(h) if !(1..=720).contains(&h) => bail!("--expires-hours must be between 1 and 720"),
                Some(h) => h * 3600,
                None => config.enrollment.code_ttl_secs,
            };
            let (code, issued) =
                admin.enroll_code_issue(&clinic, &login_id, ttl, config.enrollment.code_max_failures).await?;
            if !issued.replaced.is_empty() {
                writeln!(out, "the previous open code of {login_id} is void")?;
            }
            writeln!(out, "registration code for {login_id} (clinic {clinic}), shown only now:")?;
            writeln!(out, "    {}", code.as_str())?;
            writeln!(
                out,
                "valid until {} ({} wrong entries void it)",
                jst(issued.expires_at),
                config.enrollment.code_max_failures
            )?;
        }
        EnrollCodeCommand::List { clinic, all } => {
            for listed in admin.store.list_enrollment_codes(clinic.as_deref(), all).await? {
                let c = &listed.code;
                let state = match (c.used_at, c.voided_at, c.void_reason.as_deref()) {
                    (Some(at), _, _) => format!("used {}", jst(at)),
                    (None, Some(at), reason) => format!("void ({}) {}", reason.unwrap_or("-"), jst(at)),
                    (None, None, _) if c.expires_at <= admin.now => format!("expired {}", jst(c.expires_at)),
                    (None, None, _) => format!("open until {}", jst(c.expires_at)),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{state}\t{}/{} wrong entries\tissued {}",
                    c.id,
                    listed.clinic_id,
                    listed.login_id,
                    c.failures,
                    c.max_failures,
                    jst(c.created_at)
                )?;
            }
        }
        EnrollCodeCommand::Revoke { clinic, login_id } => {
            let id = admin.enroll_code_revoke(&clinic, &login_id).await?;
            writeln!(out, "registration code {id} of {login_id} revoked")?;
        }
    }
    Ok(())
}

impl Admin<'_> {
    /// `enroll-code issue`: a new one-time registration code for a doctor, voiding any open one.
    /// Returns the code (shown once, stored only as SHA-256) and its expiry.
    pub async fn enroll_code_issue(
        &self,
        clinic_id: &str,
        login_id: &str,
        ttl_secs: i64,
        max_failures: u32,
    ) -> anyhow::Result<(Zeroizing<String>, store::IssuedCode)> {
        if !(60..=30 * 24 * 3600).contains(&ttl_secs) {
            bail!("the code lifetime must be between 1 minute and 30 days");
        }
        let user = self.doctor(clinic_id, login_id).await?;
        if !user.enabled {
            bail!("{login_id} is disabled: enable the account first");
        }
        let code = crate::enrollment::generate_code();
        let normalised = crate::enrollment::normalise(&code).context("generated code does not normalise")?;
        let issued = self
            .store
            .issue_enrollment_code(
                &user.id,
                &crate::enrollment::hash(&normalised),
                self.now + ttl_secs,
                i64::from(max_failures),
                self.now,
            )
            .await?;
        // Ids only: the code itself never reaches the audit log (docs/design.md §6).
        for old in &issued.replaced {
            self.audit("enroll_code.replace", format!("{}/{old}", user.id)).await?;
        }
        self.audit("enroll_code.issue", format!("{}/{}", user.id, issued.id)).await?;
        Ok((code, issued))
    }

    /// `enroll-code revoke`: voids the doctor's open code.
    pub async fn enroll_code_revoke(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<String> {
        let user = self.doctor(clinic_id, login_id).await?;
        let id = match self.store.revoke_enrollment_code(&user.id, self.now).await {
            Err(store::Error::NotFound) => bail!("{login_id} has no open registration code"),
            r => r?,
        };
        self.audit("enroll_code.revoke", format!("{}/{id}", user.id)).await?;
        Ok(id)
    }
}
