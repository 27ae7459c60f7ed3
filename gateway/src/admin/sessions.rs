//! `gateway admin session …`: signing sessions.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;

use super::{Admin, jst};
use crate::store::{self, AuditEvent, EndReason, SessionFilter};

/// `admin session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List open signing sessions (with --all, ended ones too).
    List {
        /// Only this clinic.
        #[arg(long)]
        clinic: Option<String>,
        /// Only this doctor (needs --clinic).
        #[arg(long)]
        login_id: Option<String>,
        /// Include ended sessions.
        #[arg(long)]
        all: bool,
    },
    /// End a signing session (--id), or every open one of a doctor (--clinic, --login-id).
    Revoke {
        /// Session id.
        #[arg(long, conflicts_with_all = ["clinic", "login_id"])]
        id: Option<String>,
        /// Clinic code.
        #[arg(long)]
        clinic: Option<String>,
        /// The doctor's login ID.
        #[arg(long)]
        login_id: Option<String>,
    },
}

/// Runs a `session` command.
pub(super) async fn run(admin: &Admin<'_>, cmd: SessionCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { clinic, login_id, all } => {
            let now = admin.now;
            // Login IDs for the doctors listed, one lookup each.
            let mut login_ids = std::collections::HashMap::new();
            for s in admin.session_list(clinic.as_deref(), login_id.as_deref(), all).await? {
                if !login_ids.contains_key(&s.user_id) {
                    let login = match admin.store.user(&s.user_id).await {
                        Ok(u) => u.login_id,
                        Err(store::Error::NotFound) => "-".to_owned(),
                        Err(e) => return Err(e.into()),
                    };
                    login_ids.insert(s.user_id.clone(), login);
                }
                let state = match s.state(now) {
                    store::SigningSessionState::Live => "live".to_owned(),
                    store::SigningSessionState::ExpiredAbsolute => "expired".to_owned(),
                    store::SigningSessionState::ExpiredIdle => "idle-expired".to_owned(),
                    store::SigningSessionState::Ended(r) => format!("ended:{r}"),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{state}\tuntil {}",
                    s.id,
                    s.clinic_id,
                    login_ids[&s.user_id],
                    s.user_id,
                    s.method.as_str(),
                    s.acr,
                    jst(s.effective_expires_at()),
                )?;
            }
        }
        SessionCommand::Revoke { id, clinic, login_id } => {
            let ended = admin.session_revoke(id.as_deref(), clinic.as_deref(), login_id.as_deref()).await?;
            writeln!(out, "{} signing session(s) ended", ended.len())?;
        }
    }
    Ok(())
}

impl Admin<'_> {
    /// `session list`: signing sessions, optionally of one clinic or doctor.
    pub async fn session_list(
        &self,
        clinic_id: Option<&str>,
        login_id: Option<&str>,
        all: bool,
    ) -> anyhow::Result<Vec<store::SigningSession>> {
        let user = match (clinic_id, login_id) {
            (Some(c), Some(l)) => Some(self.doctor(c, l).await?),
            (None, Some(_)) => bail!("--login-id needs --clinic"),
            _ => None,
        };
        if let Some(c) = clinic_id {
            match self.store.clinic(c).await {
                Err(store::Error::NotFound) => bail!("no clinic {c}"),
                r => r?,
            };
        }
        Ok(self.store.list_signing_sessions(clinic_id, user.as_ref().map(|u| u.id.as_str()), !all).await?)
    }

    /// `session revoke`: ends one signing session by id, or every open one of a doctor.
    pub async fn session_revoke(
        &self,
        id: Option<&str>,
        clinic_id: Option<&str>,
        login_id: Option<&str>,
    ) -> anyhow::Result<Vec<store::SigningSession>> {
        let ended = match (id, clinic_id, login_id) {
            (Some(id), None, None) => {
                let ended = self.store.end_signing_sessions(SessionFilter::Id(id), EndReason::Operator, self.now).await?;
                if ended.is_empty() {
                    bail!("no open signing session {id}");
                }
                ended
            }
            (None, Some(c), Some(l)) => {
                let user = self.doctor(c, l).await?;
                let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
                let ended = self.store.end_signing_sessions(filter, EndReason::Operator, self.now).await?;
                if ended.is_empty() {
                    bail!("{l} has no open signing session");
                }
                ended
            }
            _ => bail!("give either --id, or --clinic and --login-id"),
        };
        for s in &ended {
            let event = AuditEvent::SigningSessionEnded {
                clinic_id: s.clinic_id.clone(),
                user_id: s.user_id.clone(),
                session_id: s.id.clone(),
                reason: EndReason::Operator.as_str(),
            };
            self.store.audit(&event, self.now).await?;
        }
        self.audit("session.revoke", ended.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(",")).await?;
        Ok(ended)
    }
}
