//! The `gateway` command line: `serve`, `demo`, `migrate` and `admin …`.
//!
//! [`run`] takes its output and input streams as arguments so tests drive the real CLI
//! in-process.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use crate::admin::{Admin, PasswordChoice};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::password::PasswordHasher;
use crate::store::{AnchorKind, AuditVerification, RevocationPolicy, Store, UserKind};

/// Ninsho Gateway — authentication for remote signing of electronic prescriptions.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without it, defaults and GATEWAY_* variables apply.
    #[arg(long, global = true, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Create a development PKI, a demo clinic, doctor and staff user, and serve on https://localhost:8443.
    Demo(DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage clinics, certificates, users, trust anchors and the audit log.
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `gateway demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its PKI, configuration and database; reused when it exists.
    #[arg(long, default_value = "ninsho-demo")]
    pub dir: PathBuf,
    /// HTTPS port on localhost.
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Ops (health, metrics) port on localhost.
    #[arg(long, default_value_t = 9090)]
    pub ops_port: u16,
    /// Set everything up and print the instructions, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

/// `gateway admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Clinics.
    #[command(subcommand)]
    Clinic(ClinicCommand),
    /// Clinic TLS client certificates (the clinic's client.p12).
    #[command(subcommand, name = "clinic-cert")]
    ClinicCert(ClinicCertCommand),
    /// Users: doctors and staff.
    #[command(subcommand, visible_alias = "doctor")]
    User(UserCommand),
    /// Trust anchors (CA certificates) for clinic and service TLS, HPKI and JPKI cards.
    #[command(subcommand)]
    Anchor(AnchorCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// One-time registration codes that let a doctor link an authenticator.
    #[command(subcommand, name = "enroll-code")]
    EnrollCode(EnrollCodeCommand),
    /// A doctor's linked FIDO credentials.
    #[command(subcommand)]
    Fido(FidoCommand),
    /// Signing sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// EMR backends and remote signers (TLS service clients).
    #[command(subcommand, name = "service-client")]
    ServiceClient(crate::tokens_admin::ServiceClientCommand),
    /// Token signing keys.
    #[command(subcommand)]
    Keys(crate::tokens_admin::KeysCommand),
    /// Card certificates: what the gateway concludes about one, and why.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `admin cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Explain a card certificate: chain to the anchors of its kind, validity, key usage, HPKI
    /// role, revocation, and the account it is linked to.
    Check {
        /// Card kind.
        #[arg(long, value_enum)]
        kind: AnchorKind,
        /// The card's authentication certificate (PEM or DER).
        file: PathBuf,
        /// An intermediate CA certificate the card offers (repeatable; JPKI cards carry their CA).
        #[arg(long)]
        chain: Vec<PathBuf>,
    },
}

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

/// `admin clinic …`.
#[derive(Debug, Subcommand)]
pub enum ClinicCommand {
    /// Add a clinic.
    Add {
        /// Clinic code (e.g. 21234).
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List clinics.
    List,
    /// Disable a clinic: its devices get a refusal page.
    Disable {
        /// Clinic code.
        #[arg(long)]
        id: String,
    },
    /// Enable a disabled clinic.
    Enable {
        /// Clinic code.
        #[arg(long)]
        id: String,
    },
}

/// `admin clinic-cert …`.
#[derive(Debug, Subcommand)]
pub enum ClinicCertCommand {
    /// Register a clinic client certificate (PEM, DER, or .p12 with --password-stdin).
    Add {
        /// Clinic code.
        #[arg(long)]
        clinic: String,
        /// Certificate file.
        file: PathBuf,
        /// Read the .p12 password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List registered certificates.
    List {
        /// Only this clinic.
        #[arg(long)]
        clinic: Option<String>,
    },
    /// Revoke a registered certificate by SHA-256 fingerprint.
    Revoke {
        /// Fingerprint (hex, colons allowed).
        fingerprint: String,
    },
}

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
        #[arg(long = "type", value_parser = parse_kind, default_value = "doctor")]
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

fn parse_kind(s: &str) -> Result<UserKind, String> {
    s.parse()
}

/// `admin anchor …`.
#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Add a CA certificate as a trust anchor.
    Add {
        /// What the anchor vouches for.
        #[arg(long, value_enum)]
        kind: AnchorKind,
        /// CA certificate (PEM or DER).
        file: PathBuf,
        /// Its CRL (PEM or DER).
        #[arg(long)]
        crl: Option<PathBuf>,
        /// Revocation checking: crl (needs --crl or --crl-url) or none (logged on every use).
        #[arg(long, value_enum, default_value = "crl")]
        revocation: RevocationPolicy,
        /// HPKI/JPKI anchors: fetch the CRL from this URL (every instance, cached in the database
        /// until its nextUpdate; until the first fetch, cards under this anchor are refused).
        #[arg(long)]
        crl_url: Option<url::Url>,
        /// End-entity certificate policies accepted: OIDs or arcs (`1.2.3.*`), comma-separated, or
        /// `any` (audited). Default: the HPKI / JPKI authentication arc for card anchors, any for
        /// clinic and service anchors.
        #[arg(long)]
        policy: Option<String>,
    },
    /// List trust anchors.
    List {
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<AnchorKind>,
    },
    /// Replace an anchor's CRL, or the CRL of a CA below it (--issuer). The CRL must be signed by
    /// that CA, current, and not older than the one in force.
    SetCrl {
        /// Anchor kind.
        #[arg(long, value_enum)]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// CRL file (PEM or DER).
        file: PathBuf,
        /// The intermediate CA certificate the CRL is for (PEM or DER); it must chain to the anchor.
        #[arg(long)]
        issuer: Option<PathBuf>,
    },
    /// Set the end-entity certificate policies accepted under an anchor.
    SetPolicy {
        /// Anchor kind.
        #[arg(long, value_enum)]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// OIDs or arcs (`1.2.3.*`), comma-separated; `any` (audited); or `default`.
        policy: String,
    },
    /// Remove an anchor (refused while certificates or cards registered under it remain).
    Remove {
        /// Anchor kind.
        #[arg(long, value_enum)]
        kind: AnchorKind,
        /// Anchor fingerprint.
        #[arg(long)]
        fingerprint: String,
        /// Remove it although certificates or cards depend on it (they stop working).
        #[arg(long)]
        force: bool,
    },
}

/// `admin audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain; exits non-zero and names the first bad row if it was tampered with. Says
    /// which rows are plain SHA-256 (written before keyed chaining) and which keyed.
    Verify,
    /// Start the keyed chain on a log written before keyed chaining: appends an audited
    /// `audit_chain_keyed` event linked to the old head under the audit key; every later row is
    /// keyed. Run once, after every instance runs this version.
    Rekey,
    /// Print a signed checkpoint of the chain's head as one JSON line (keep it outside the
    /// database), or check a saved one against the database with --verify.
    Checkpoint {
        /// A saved checkpoint (its last line) to check instead.
        #[arg(long, value_name = "FILE")]
        verify: Option<PathBuf>,
    },
    /// Write every audit row as JSON Lines.
    Export {
        /// Output file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn read_secret(input: &mut (dyn BufRead + Send), what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    input.read_line(&mut line).with_context(|| format!("reading {what} from standard input"))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(trimmed)
}

/// The password an operator gives: read from standard input, or generated by `Admin`.
fn password_choice(input: &mut (dyn BufRead + Send), from_stdin: bool) -> anyhow::Result<PasswordChoice> {
    Ok(if from_stdin { PasswordChoice::Chosen(read_secret(input, "the password")?) } else { PasswordChoice::Generate })
}

/// Prints a generated password (once: it is stored only as a hash) and whether it is temporary.
fn print_password(out: &mut (dyn Write + Send), typed: bool, permanent: bool, password: &str) -> anyhow::Result<()> {
    if !typed {
        writeln!(out, "password: {password}")?;
    }
    if !permanent {
        writeln!(out, "the password is temporary: a new one must be chosen at the next login")?;
    }
    Ok(())
}

/// Runs an `admin` command against `config`'s database.
pub async fn run_admin(
    config: &Config,
    command: AdminCommand,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let key = config.audit_key().context("audit key")?;
    let store = Store::connect(&config.database_url(), 2).await?.with_audit_key(key);
    store.migrate().await?;
    let result = admin_on(&store, config, command, out, input, clock).await;
    store.close().await;
    result
}

async fn admin_on(
    store: &Store,
    config: &Config,
    command: AdminCommand,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let admin = Admin { store, now: clock.unix() };
    // Every change is audited, and a log written before keyed chaining takes no rows until it is
    // rekeyed: refuse up front rather than make a change whose audit row is then refused.
    if !matches!(command, AdminCommand::Audit(_) | AdminCommand::Cert(_)) && store.audit_head().await?.keyed_from.is_none() {
        bail!("the audit log was written before keyed chaining: run `gateway admin audit rekey` first (nothing was changed)");
    }
    let hasher = || PasswordHasher::new(config.login.argon2_memory_kib, config.login.argon2_iterations);
    match command {
        AdminCommand::Clinic(c) => match c {
            ClinicCommand::Add { id, name } => {
                admin.clinic_add(&id, &name).await?;
                writeln!(out, "added clinic {id}")?;
            }
            ClinicCommand::List => {
                for c in store.list_clinics().await? {
                    writeln!(out, "{}\t{}\t{}", c.id, if c.enabled { "enabled" } else { "disabled" }, c.name)?;
                }
            }
            ClinicCommand::Disable { id } => {
                admin.clinic_set_enabled(&id, false).await?;
                writeln!(out, "disabled clinic {id}")?;
            }
            ClinicCommand::Enable { id } => {
                admin.clinic_set_enabled(&id, true).await?;
                writeln!(out, "enabled clinic {id}")?;
            }
        },
        AdminCommand::ClinicCert(c) => match c {
            ClinicCertCommand::Add { clinic, file, password_stdin } => {
                let password = if password_stdin { Some(read_secret(input, "the .p12 password")?) } else { None };
                let cert = admin.clinic_cert_add(&clinic, &file, password.as_deref().map(String::as_str)).await?;
                writeln!(out, "registered {} for clinic {clinic}: {}", cert.fingerprint, cert.subject)?;
            }
            ClinicCertCommand::List { clinic } => {
                for c in store.list_clinic_certs(clinic.as_deref()).await? {
                    let state = if c.revoked_at.is_some() { "revoked" } else { "active" };
                    writeln!(out, "{}\t{}\t{state}\t{}", c.clinic_id, c.fingerprint, c.subject)?;
                }
            }
            ClinicCertCommand::Revoke { fingerprint } => {
                admin.clinic_cert_revoke(&fingerprint).await?;
                writeln!(out, "revoked {fingerprint}")?;
            }
        },
        AdminCommand::User(c) => match c {
            UserCommand::Add { clinic, login_id, kind, name, medical_reg_no, password_stdin, permanent } => {
                let choice = password_choice(input, password_stdin)?;
                let (id, password) = admin
                    .user_add(&hasher()?, &clinic, &login_id, kind, &name, medical_reg_no.as_deref(), choice, permanent)
                    .await?;
                writeln!(out, "added {} {login_id} ({id}) to clinic {clinic}", kind.as_str())?;
                print_password(out, password_stdin, permanent, &password)?;
            }
            UserCommand::List { clinic } => {
                for u in store.list_users(clinic.as_deref()).await? {
                    let state = if u.enabled { "enabled" } else { "disabled" };
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{state}\t{}\t{}",
                        u.clinic_id,
                        u.login_id,
                        u.kind.as_str(),
                        u.medical_reg_no.as_deref().unwrap_or("-"),
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
            UserCommand::SetPassword { clinic, login_id, password_stdin } => {
                let choice = password_choice(input, password_stdin)?;
                let password = admin.user_set_password(&hasher()?, &clinic, &login_id, choice).await?;
                writeln!(out, "password of {login_id} changed; its browser and signing sessions ended")?;
                print_password(out, password_stdin, false, &password)?;
            }
        },
        AdminCommand::Anchor(c) => match c {
            AnchorCommand::Add { kind, file, crl, revocation, crl_url, policy } => {
                let cert = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let crl = crl.map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
                let (anchor, warnings) = match &crl_url {
                    None => admin.anchor_add(kind, &cert, crl.as_deref(), revocation, policy.as_deref()).await,
                    Some(url) => admin.anchor_add_with_crl_url(kind, &cert, crl.as_deref(), url, policy.as_deref()).await,
                }
                .with_context(|| file.display().to_string())?;
                writeln!(out, "added {} anchor {}: {}", kind.as_str(), anchor.fingerprint, anchor.subject)?;
                for w in warnings {
                    writeln!(out, "warning: {w}")?;
                }
                if matches!(kind, AnchorKind::Clinic | AnchorKind::Service) {
                    writeln!(out, "running instances apply it within tls.trust_refresh_secs")?;
                }
            }
            AnchorCommand::List { kind } => {
                let now = clock.unix();
                for a in store.list_anchors(kind).await? {
                    let policies = crate::cards::anchor_policies(&a);
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\tpolicies {policies}\t{}",
                        a.kind.as_str(),
                        a.fingerprint,
                        a.revocation.as_str(),
                        crl_state(a.crl_der.is_some(), a.crl_next_update, now, a.revocation == RevocationPolicy::Crl),
                        a.subject
                    )?;
                    for sub in &a.sub_crls {
                        writeln!(out, "\t  CRL of {}: {}", sub.issuer_subject, crl_state(true, Some(sub.next_update), now, true))?;
                    }
                }
            }
            AnchorCommand::SetCrl { kind, fingerprint, file, issuer } => {
                let crl = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let issuer = issuer.map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
                admin.anchor_set_crl(kind, &fingerprint, &crl, issuer.as_deref()).await.with_context(|| file.display().to_string())?;
                writeln!(out, "CRL of {} anchor {fingerprint} replaced", kind.as_str())?;
            }
            AnchorCommand::SetPolicy { kind, fingerprint, policy } => {
                let set = admin.anchor_set_policy(kind, &fingerprint, &policy).await?;
                writeln!(out, "policies of {} anchor {fingerprint}: {}", kind.as_str(), set.as_deref().unwrap_or("default"))?;
            }
            AnchorCommand::Remove { kind, fingerprint, force } => {
                let dependents = admin.anchor_remove(kind, &fingerprint, force).await?;
                writeln!(out, "removed {} anchor {fingerprint}", kind.as_str())?;
                if !dependents.is_empty() {
                    writeln!(out, "warning: removed with --force; certificates and cards under it are refused from now on")?;
                }
            }
        },
        AdminCommand::Cert(CertCommand::Check { kind, file, chain }) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
            let cert = read(&file)?;
            let chain = chain.iter().map(read).collect::<anyhow::Result<Vec<_>>>()?;
            let (report, accepted) = admin.cert_check(kind, &cert, &chain, &config.card.policy()).await?;
            out.write_all(report.as_bytes())?;
            if !accepted {
                bail!("{} is refused", file.display());
            }
        }
        AdminCommand::EnrollCode(c) => match c {
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
                    crate::http::Lang::En.format_time(issued.expires_at),
                    config.enrollment.code_max_failures
                )?;
            }
            EnrollCodeCommand::Revoke { clinic, login_id } => {
                let id = admin.enroll_code_revoke(&clinic, &login_id).await?;
                writeln!(out, "registration code {id} of {login_id} revoked")?;
            }
        },
        AdminCommand::Fido(c) => match c {
            FidoCommand::List { clinic, login_id } => {
                let fmt = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| crate::http::Lang::En.format_time(t));
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
        },
        AdminCommand::Session(c) => match c {
            SessionCommand::List { clinic, login_id, all } => {
                let now = clock.unix();
                for s in admin.session_list(clinic.as_deref(), login_id.as_deref(), all).await? {
                    let state = match s.state(now) {
                        crate::store::SigningSessionState::Live => "live".to_owned(),
                        crate::store::SigningSessionState::ExpiredAbsolute => "expired".to_owned(),
                        crate::store::SigningSessionState::ExpiredIdle => "idle-expired".to_owned(),
                        crate::store::SigningSessionState::Ended(r) => format!("ended:{r}"),
                    };
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{state}\tuntil {}",
                        s.id,
                        s.clinic_id,
                        s.user_id,
                        s.method.as_str(),
                        s.acr,
                        crate::http::Lang::En.format_time(s.effective_expires_at()),
                    )?;
                }
            }
            SessionCommand::Revoke { id, clinic, login_id } => {
                let ended = admin.session_revoke(id.as_deref(), clinic.as_deref(), login_id.as_deref()).await?;
                writeln!(out, "{} signing session(s) ended", ended.len())?;
            }
        },
        AdminCommand::ServiceClient(c) => crate::tokens_admin::service_client(&admin, c, out).await?,
        AdminCommand::Keys(c) => crate::tokens_admin::keys(store, config, admin.now, c, out).await?,
        AdminCommand::Audit(c) => match c {
            AuditCommand::Verify => match store.audit_verify().await? {
                AuditVerification::Intact { rows, keyed_from } => {
                    writeln!(out, "audit log intact: {rows} rows ({})", AuditVerification::segments(rows, keyed_from))?;
                    if keyed_from.is_none() {
                        writeln!(out, "warning: no keyed segment yet; run `gateway admin audit rekey`")?;
                    }
                }
                broken => bail!("audit log TAMPERED: {}", describe(&broken)),
            },
            AuditCommand::Rekey => {
                let seq = store.audit_rekey(admin.now).await?;
                tracing::info!(target: "audit", seq, "audit chain keyed");
                writeln!(out, "audit chain keyed from row {seq}; rows 1–{} stay plain SHA-256", seq - 1)?;
            }
            AuditCommand::Checkpoint { verify: None } => {
                // A broken chain gets no signature.
                let verdict = store.audit_verify().await?;
                if !matches!(verdict, AuditVerification::Intact { .. }) {
                    bail!("audit log TAMPERED: {}; no checkpoint signed", describe(&verdict));
                }
                let key = config.audit_checkpoint_key().context("audit checkpoint key")?;
                let checkpoint = crate::audit_checkpoint::take(store, &key, admin.now).await?;
                let line = checkpoint.to_line();
                tracing::info!(target: "audit", checkpoint = %line, "audit checkpoint");
                writeln!(out, "{line}")?;
            }
            AuditCommand::Checkpoint { verify: Some(path) } => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let checkpoint = crate::audit_checkpoint::Checkpoint::parse(&text).with_context(|| path.display().to_string())?;
                let key = config.audit_checkpoint_key().context("audit checkpoint key")?;
                crate::audit_checkpoint::verify(store, &key, &checkpoint)
                    .await
                    .with_context(|| format!("checkpoint {} does NOT match", path.display()))?;
                writeln!(
                    out,
                    "checkpoint matches: the chain's first {} rows still end in {} (taken {})",
                    checkpoint.rows,
                    checkpoint.head,
                    crate::admin::utc(checkpoint.at)
                )?;
            }
            AuditCommand::Export { output } => {
                let rows = match output {
                    Some(path) => {
                        let mut f = std::io::BufWriter::new(
                            std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
                        );
                        let n = admin.audit_export(&mut f).await?;
                        f.flush()?;
                        n
                    }
                    None => admin.audit_export(out).await?,
                };
                tracing::info!(rows, "audit exported");
            }
        },
    }
    Ok(())
}

/// Explains a failed verification.
pub fn describe(v: &AuditVerification) -> String {
    match v {
        AuditVerification::Intact { rows, keyed_from } => {
            format!("intact ({rows} rows: {})", AuditVerification::segments(*rows, *keyed_from))
        }
        AuditVerification::Modified { seq } => format!("row {seq} was modified"),
        AuditVerification::Missing { seq, expected } => format!("row {expected} is missing (next row is {seq})"),
        AuditVerification::BrokenLink { seq } => format!("row {seq} does not link to the row before it (inserted or reordered)"),
        AuditVerification::Truncated { last_seq, head_seq } => {
            format!("rows after {last_seq} were removed (the chain head is at {head_seq})")
        }
        AuditVerification::KeyedStartMoved { seq } => {
            format!("the keyed segment is said to start at row {seq}, which is not an audit_chain_keyed event (the boundary was moved)")
        }
    }
}

/// How an anchor's CRL stands at `now`, for `anchor list`.
fn crl_state(present: bool, next_update: Option<i64>, now: i64, required: bool) -> String {
    match (present, next_update) {
        (false, _) if required => "NO CRL (certificates under it are refused)".to_owned(),
        (false, _) => "no crl".to_owned(),
        (true, None) => "crl present".to_owned(),
        (true, Some(next)) if next <= now => format!("CRL STALE since {} (certificates under it are refused)", crate::admin::utc(next)),
        (true, Some(next)) => format!("crl until {} ({} h left)", crate::admin::utc(next), (next - now) / 3600),
    }
}

/// Parses `args` and runs the command. Returns the process exit code.
pub async fn run(args: Vec<String>, out: &mut (dyn Write + Send), input: &mut (dyn BufRead + Send)) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = write!(out, "{e}");
            return e.exit_code();
        }
    };
    match dispatch(cli, out, input).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            1
        }
    }
}

async fn dispatch(cli: Cli, out: &mut (dyn Write + Send), input: &mut (dyn BufRead + Send)) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let config = || Config::load(cli.config.as_deref());
    match cli.command {
        Command::Demo(ref args) => crate::demo::run(args, out).await,
        Command::Serve => {
            let config = config()?;
            crate::telemetry::init(&config.log);
            let app = crate::Application::build(config, std::sync::Arc::new(SystemClock)).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            let config = config()?;
            let store = Store::connect(&config.database_url(), 1).await?;
            store.migrate().await?;
            writeln!(out, "migrations applied ({})", store.backend_name())?;
            Ok(())
        }
        Command::Admin(cmd) => run_admin(&config()?, cmd, out, input, &SystemClock).await,
    }
}

/// Completes on Ctrl-C or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
