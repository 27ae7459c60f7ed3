//! `gateway admin user …`: doctors and staff, their passwords and whether they may sign in.

use std::io::{BufRead, Write};

use anyhow::bail;
use clap::Subcommand;

use super::{Admin, PasswordChoice, conflict_or, jst, password_choice, print_password, spelled, validate_login_id};
use crate::config::Config;
use crate::password::PasswordHasher;
use zeroize::Zeroizing;

use crate::store::{self, AuditEvent, EndReason, NewUser, SessionFilter, UserKind};

/// `admin user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a password is generated and printed once.
    Add {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID (unique within the clinic).
        #[arg(long)]
        login_id: String,
        /// User type.
        #[arg(long = "type", value_parser = spelled::<UserKind>("user type"), default_value = "doctor")]
        kind: UserKind,
        /// Name.
        #[arg(long)]
        name: String,
        /// Medical registration number (医籍番号), doctors only.
        #[arg(long)]
        medical_reg_no: Option<String>,
        /// Read the password from the first line of standard input (it must pass the strength
        /// rule: not common, not containing the login ID or name, hard to guess).
        #[arg(long)]
        password_stdin: bool,
        /// The password is permanent; otherwise it is temporary and the user chooses a new one
        /// at the first login.
        #[arg(long)]
        permanent: bool,
    },
    /// Add a test account for `gateway check` (docs/design.md §3.10): a doctor-kind account with
    /// no 医籍番号, marked as a test account for good. Its signing tokens carry `"test": true`.
    /// Without --password-stdin a password is generated and printed once; it is permanent (the
    /// check signs in unattended).
    AddTest {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID (unique within the clinic).
        #[arg(long)]
        login_id: String,
        /// Name shown for the account.
        #[arg(long, default_value = "gateway check")]
        name: String,
        /// Read the password from the first line of standard input (it must pass the strength rule).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Only this clinic.
        #[arg(long)]
        clinic: Option<String>,
    },
    /// Disable a user.
    Disable {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID.
        #[arg(long)]
        login_id: String,
    },
    /// Enable a user.
    Enable {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID.
        #[arg(long)]
        login_id: String,
    },
    /// Lift a login lock (and forget the failed attempts) after checking who caused it: the
    /// audit log's `login_locked` rows name the clinic device each attempt came through.
    Unlock {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID.
        #[arg(long)]
        login_id: String,
    },
    /// Set a user's password (first line of standard input, or generated and printed).
    SetPassword {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Login ID.
        #[arg(long)]
        login_id: String,
        /// Read the password from the first line of standard input (it must pass the strength
        /// rule). Either way the password is temporary: an operator starts a reset but never
        /// chooses the password the user keeps (ASVS 5.0 V6.4.6).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs a `user` command.
pub(super) async fn run(
    admin: &Admin<'_>,
    config: &Config,
    cmd: UserCommand,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
) -> anyhow::Result<()> {
    let store = admin.store;
    let hasher = || PasswordHasher::new(config.login.argon2_memory_kib, config.login.argon2_iterations);
    match cmd {
        UserCommand::Add { clinic, login_id, kind, name, medical_reg_no, password_stdin, permanent } => {
            let choice = password_choice(input, password_stdin)?;
            let (id, password) = admin
                .user_add(&hasher()?, &clinic, &login_id, kind, &name, medical_reg_no.as_deref(), choice, permanent)
                .await?;
            writeln!(out, "added {} {login_id} ({id}) to clinic {clinic}", kind.as_str())?;
            print_password(out, password_stdin, permanent, &password)?;
        }
        UserCommand::AddTest { clinic, login_id, name, password_stdin } => {
            let choice = password_choice(input, password_stdin)?;
            let (id, password) = admin.user_add_test(&hasher()?, &clinic, &login_id, &name, choice).await?;
            writeln!(out, "added test account {login_id} ({id}) to clinic {clinic}")?;
            print_password(out, password_stdin, true, &password)?;
        }
        UserCommand::List { clinic } => {
            for u in store.list_users(clinic.as_deref()).await? {
                let state = if u.enabled { "enabled" } else { "disabled" };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{state}\t{}\t{}\t{}",
                    u.clinic_id,
                    u.login_id,
                    u.kind.as_str(),
                    // A test account never has a 医籍番号: its column says what it is instead.
                    if u.test_account { "test" } else { u.medical_reg_no.as_deref().unwrap_or("-") },
                    u.id,
                    u.name
                )?;
            }
        }
        UserCommand::Disable { clinic, login_id } => {
            admin.user_set_enabled(&clinic, &login_id, false).await?;
            writeln!(out, "disabled {login_id}")?;
        }
        UserCommand::Enable { clinic, login_id } => {
            admin.user_set_enabled(&clinic, &login_id, true).await?;
            writeln!(out, "enabled {login_id}")?;
        }
        UserCommand::Unlock { clinic, login_id } => match admin.user_unlock(&clinic, &login_id).await? {
            Some(lock) => {
                let state = match lock.locked_until {
                    Some(until) if until > admin.now => format!("was locked until {}", jst(until)),
                    _ => "was not locked".to_owned(),
                };
                writeln!(out, "unlocked {login_id} ({state}; {} failed attempt(s) forgotten)", lock.failures)?;
            }
            None => writeln!(out, "{login_id} is not locked and has no failed attempts; nothing changed")?,
        },
        UserCommand::SetPassword { clinic, login_id, password_stdin } => {
            let choice = password_choice(input, password_stdin)?;
            let password = admin.user_set_password(&hasher()?, &clinic, &login_id, choice).await?;
            writeln!(out, "password of {login_id} changed; its browser and signing sessions ended")?;
            print_password(out, password_stdin, false, &password)?;
        }
    }
    Ok(())
}

/// What `user add` and `user add-test` give a new account besides its clinic and login ID.
#[derive(Clone, Copy)]
struct Account<'a> {
    kind: UserKind,
    name: &'a str,
    medical_reg_no: Option<&'a str>,
    permanent: bool,
    test: bool,
}

impl Admin<'_> {
    /// `user unlock`: forgets the login ID's failed attempts and lock; audited when there was
    /// anything to forget. The account must exist (an operator unlocks a person, not a guess).
    pub async fn user_unlock(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<Option<store::LockState>> {
        let user = match self.store.user_by_login(clinic_id, login_id).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        let forgotten = self.store.unlock_login(&crate::login_id::lockout_key(clinic_id, &user.login_id)).await?;
        if forgotten.is_some() {
            self.audit("user.unlock", format!("{clinic_id}/{}", user.id)).await?;
        }
        Ok(forgotten)
    }

    /// `user add`. Returns the new user's id and the password stored. Unless `permanent`, the
    /// password is temporary: the user chooses a new one at the first login.
    #[allow(clippy::too_many_arguments, reason = "one argument per CLI flag")]
    pub async fn user_add(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        kind: UserKind,
        name: &str,
        medical_reg_no: Option<&str>,
        password: PasswordChoice,
        permanent: bool,
    ) -> anyhow::Result<(String, Zeroizing<String>)> {
        let account = Account { kind, name, medical_reg_no, permanent, test: false };
        self.add_account(hasher, clinic_id, login_id, &account, password).await
    }

    /// `user add-test`: a doctor-kind test account without 医籍番号, its password permanent.
    /// Returns its id and password. Audited as `user.add_test`.
    pub async fn user_add_test(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        name: &str,
        password: PasswordChoice,
    ) -> anyhow::Result<(String, Zeroizing<String>)> {
        let account = Account { kind: UserKind::Doctor, name, medical_reg_no: None, permanent: true, test: true };
        self.add_account(hasher, clinic_id, login_id, &account, password).await
    }

    async fn add_account(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        account: &Account<'_>,
        password: PasswordChoice,
    ) -> anyhow::Result<(String, Zeroizing<String>)> {
        let Account { kind, name, medical_reg_no, permanent, test } = *account;
        validate_login_id(login_id)?;
        if name.trim().is_empty() {
            bail!("name must not be empty");
        }
        match (kind, medical_reg_no) {
            (UserKind::Doctor, Some(_)) if test => bail!("a test account never has a medical registration number"),
            (UserKind::Doctor, None) if test => {}
            (UserKind::Doctor, None) => bail!("a doctor needs --medical-reg-no (医籍番号)"),
            (UserKind::Doctor, Some(n)) if n.is_empty() || n.len() > 16 || !n.chars().all(|c| c.is_ascii_digit()) => {
                bail!("--medical-reg-no must be 1–16 digits, got {n:?}")
            }
            (UserKind::Staff, Some(_)) => bail!("only doctors have a medical registration number"),
            _ => {}
        }
        let clinic = match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}"),
            r => r?,
        };
        self.refuse_taken(clinic_id, login_id, medical_reg_no).await?;
        let personal = [Some(login_id), Some(name.trim()), medical_reg_no, Some(clinic.name.as_str())];
        let password = password.resolve(&personal.into_iter().flatten().collect::<Vec<_>>())?;
        let hash = hasher.hash(password.clone()).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let user = NewUser {
            id: &id,
            clinic_id,
            login_id,
            kind,
            name: name.trim(),
            medical_reg_no,
            password_hash: &hash,
            password_temporary: !permanent,
            test_account: test,
        };
        // The unique indexes decide if another command added the same account meanwhile.
        conflict_or(self.store.add_user(&user, self.now).await, || {
            format!("login ID {login_id} or its medical registration number already exists in clinic {clinic_id}")
        })?;
        self.audit(if test { "user.add_test" } else { "user.add" }, id.clone()).await?;
        Ok((id, password))
    }

    /// Refuses a login ID that folds like an existing one of the clinic (`doctor1`, `DOCTOR1`,
    /// `Ｄｏｃｔｏｒ１` are one account) and a 医籍番号 the clinic already has, naming the account.
    async fn refuse_taken(&self, clinic_id: &str, login_id: &str, medical_reg_no: Option<&str>) -> anyhow::Result<()> {
        match self.store.user_by_login(clinic_id, login_id).await {
            Ok(existing) => bail!(
                "login ID {login_id} already exists in clinic {clinic_id} as account {} (login IDs are compared \
                 ignoring width and upper/lower case)",
                existing.login_id
            ),
            Err(store::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(number) = medical_reg_no {
            match self.store.user_by_medical_reg_no(clinic_id, number).await {
                Ok(existing) => bail!(
                    "medical registration number (医籍番号) {number} already belongs to account {} in clinic {clinic_id}",
                    existing.login_id
                ),
                Err(store::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `user disable` / `user enable`.
    pub async fn user_set_enabled(&self, clinic_id: &str, login_id: &str, enabled: bool) -> anyhow::Result<()> {
        let user = match self.store.set_user_enabled(clinic_id, login_id, enabled, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        if !enabled {
            // docs/design.md §3.7: disabling an account ends its signing sessions at once, everywhere.
            let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
            for s in self.store.end_signing_sessions(filter, EndReason::AccountDisabled, self.now).await? {
                self.audit_session_end(&user, &s.id, EndReason::AccountDisabled).await?;
            }
        }
        self.audit(if enabled { "user.enable" } else { "user.disable" }, user.id).await
    }

    /// `user set-password`: returns the password stored. It is always temporary (the user
    /// chooses a new one at the next login, within `login.temporary_password_secs`): an operator
    /// starts a reset but never chooses the password the user keeps (ASVS 5.0 V6.4.6). The user's browser sessions and signing
    /// sessions end: whoever knew the old password is signed out everywhere.
    pub async fn user_set_password(
        &self,
        hasher: &PasswordHasher,
        clinic_id: &str,
        login_id: &str,
        password: PasswordChoice,
    ) -> anyhow::Result<Zeroizing<String>> {
        let user = match self.store.user_by_login(clinic_id, login_id).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        let clinic = self.store.clinic(clinic_id).await?;
        let personal = [Some(login_id), Some(user.name.as_str()), user.medical_reg_no.as_deref(), Some(clinic.name.as_str())];
        let password = password.resolve(&personal.into_iter().flatten().collect::<Vec<_>>())?;
        let hash = hasher.hash(password.clone()).await?;
        let user = match self.store.set_user_password(clinic_id, login_id, &hash, true, self.now).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        let ended = self.store.end_browser_sessions(&user.id, None).await?;
        let filter = SessionFilter::User { user_id: &user.id, clinic_id: None };
        for s in self.store.end_signing_sessions(filter, EndReason::PasswordChanged, self.now).await? {
            self.audit_session_end(&user, &s.id, EndReason::PasswordChanged).await?;
        }
        let event = AuditEvent::PasswordChanged {
            clinic_id: user.clinic_id.clone(),
            user_id: user.id.clone(),
            by: "operator",
            temporary: true,
            browser_sessions_ended: ended,
        };
        self.store.audit(&event, self.now).await?;
        self.audit("user.set_password", user.id).await?;
        Ok(password)
    }
}
