//! `gateway admin …`: operator actions, one file per resource holding its command-line
//! arguments, its actions and its printing. Each action validates its input completely before it
//! writes, so a refused command changes nothing, and each successful change is audited.

mod agent_releases;
mod anchors;
mod audit;
mod clinics;
mod enrollment;
mod fido;
mod keys;
mod service_clients;
mod sessions;
mod users;

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use zeroize::Zeroizing;

pub use agent_releases::{AgentCommand, AgentReleaseCommand};
pub use anchors::{AnchorCommand, CertCommand};
pub use audit::AuditCommand;
pub use clinics::{ClinicCertCommand, ClinicCommand, MatchArg, SetLogin, TokenAuthArg};
pub use enrollment::EnrollCodeCommand;
pub use fido::FidoCommand;
pub use keys::KeysCommand;
pub use service_clients::ServiceClientCommand;
pub use sessions::SessionCommand;
pub use users::UserCommand;

use crate::clock::{Clock, jst};
use crate::config::Config;
use crate::password;
use crate::store::{self, AuditEvent, EndReason, SchemaStatus, Store, UserKind};

/// A command-line parser for a store enum, from its derived spellings (store types do not derive
/// clap's `ValueEnum`: the database spelling is the one string form). `--help` lists the
/// spellings; anything else is refused as "unknown <what>".
fn spelled<E>(what: &'static str) -> Spelled<E> {
    Spelled { what, kind: std::marker::PhantomData }
}

/// See [`spelled`].
#[derive(Clone)]
struct Spelled<E> {
    what: &'static str,
    kind: std::marker::PhantomData<fn() -> E>,
}

impl<E> clap::builder::TypedValueParser for Spelled<E>
where
    E: std::str::FromStr + strum::VariantNames + Clone + Send + Sync + 'static,
{
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<E, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|_| {
            let expected = E::VARIANTS.join(", ");
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("unknown {} {text:?} (expected one of: {expected})\n", self.what))
                .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(E::VARIANTS.iter().map(|v| clap::builder::PossibleValue::new(*v))))
    }
}

/// What admin actions need.
pub struct Admin<'a> {
    /// The database.
    pub store: &'a Store,
    /// Unix seconds to stamp changes with.
    pub now: i64,
}

/// The password an operator gives an account.
pub enum PasswordChoice {
    /// Typed by the operator: it must pass the strength rule (`password::weakness`).
    Chosen(Zeroizing<String>),
    /// Generated here (and printed once by the CLI).
    Generate,
}

impl PasswordChoice {
    /// The password to store: a chosen one if strong enough (the reason otherwise), or a new
    /// generated one. `personal` are the account's login ID, name, 医籍番号 and clinic name.
    fn resolve(self, personal: &[&str]) -> anyhow::Result<Zeroizing<String>> {
        match self {
            PasswordChoice::Chosen(p) => match password::weakness(&p, personal) {
                Some(w) => bail!("{}", w.reason()),
                None => Ok(p),
            },
            PasswordChoice::Generate => loop {
                // A random password that happens to contain the login ID is drawn again.
                let p = generate_password();
                if password::weakness(&p, personal).is_none() {
                    return Ok(p);
                }
            },
        }
    }
}
impl Admin<'_> {
    async fn audit(&self, action: &'static str, target: impl Into<String>) -> anyhow::Result<()> {
        Ok(self.store.audit(&AuditEvent::Admin { action, target: target.into() }, self.now).await?)
    }

    /// A doctor account by clinic and login ID, with a clear error when there is none.
    async fn doctor(&self, clinic_id: &str, login_id: &str) -> anyhow::Result<store::User> {
        let user = match self.store.user_by_login(clinic_id, login_id).await {
            Err(store::Error::NotFound) => bail!("no user {login_id} in clinic {clinic_id}"),
            r => r?,
        };
        if user.kind != UserKind::Doctor {
            bail!("{login_id} is not a doctor: only doctors link authenticators");
        }
        Ok(user)
    }

    async fn audit_session_end(&self, user: &store::User, session_id: &str, reason: EndReason) -> anyhow::Result<()> {
        let event = AuditEvent::SigningSessionEnded {
            clinic_id: user.clinic_id.clone(),
            user_id: user.id.clone(),
            session_id: session_id.to_owned(),
            reason: reason.as_str(),
        };
        Ok(self.store.audit(&event, self.now).await?)
    }
}

fn conflict_or<T>(r: store::Result<T>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    match r {
        Err(store::Error::Conflict(_)) => bail!("{}", what()),
        other => Ok(other?),
    }
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
    ServiceClient(ServiceClientCommand),
    /// Token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Card certificates: what the gateway concludes about one, and why.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Signed clinic-agent releases: publish, list, withdraw.
    #[command(subcommand, name = "agent-release")]
    AgentRelease(AgentReleaseCommand),
    /// Clinic agents: which agent of which clinic runs which version.
    #[command(subcommand)]
    Agent(AgentCommand),
}

/// Runs an `admin` command against `config`'s database (`config_file` is where `config` came
/// from, for messages). Never creates or upgrades a database: that is `gateway migrate`'s job,
/// run once per upgrade, not a side effect of `list`.
pub async fn run_admin(
    config: &Config,
    config_file: Option<&Path>,
    command: AdminCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    // The database first: a refused one (database.require) leaves no key file behind.
    let url = config.database_url()?;
    if let Some(path) = url.strip_prefix("sqlite://").map(Path::new).filter(|p| !p.exists()) {
        match config_file {
            Some(file) => bail!(
                "no database at {} (the SQLite file named by {}); check data_dir and database.url there, \
                 or create it with `gateway migrate`",
                path.display(),
                file.display()
            ),
            None => bail!(
                "no configuration given (--config FILE or GATEWAY_CONFIG) and no database at the default {}; \
                 pass the gateway's configuration, e.g. --config /etc/ninsho/gateway.toml",
                path.display()
            ),
        }
    }
    let store = Store::connect(&url, 2).await?;
    let result = match ready(&store, config).await {
        Ok(key) => {
            let store = store.clone().with_audit_key(key);
            admin_on(&store, config, command, out, err, input, clock).await
        }
        Err(e) => Err(e),
    };
    store.close().await;
    result
}

/// Checks that the schema is this build's and reads the gateway's audit key, never a new one:
/// rows linked under another key would break the chain for every instance.
async fn ready(store: &Store, config: &Config) -> anyhow::Result<store::AuditKey> {
    match store.schema_status().await? {
        SchemaStatus::Current => {}
        SchemaStatus::Empty => bail!("the database has no schema yet: run `gateway migrate` first (nothing was changed)"),
        SchemaStatus::Behind { pending } => bail!(
            "the database schema is {pending} migration{} behind this gateway: run `gateway migrate` first \
             (nothing was changed)",
            if pending == 1 { "" } else { "s" }
        ),
        SchemaStatus::Ahead { unknown } => bail!(
            "the database was migrated by a newer gateway (migration {unknown} is unknown to this one): use the \
             newer gateway's admin commands (nothing was changed)"
        ),
    }
    if config.audit.key.is_empty() && !config.audit_key_path().exists() {
        bail!(
            "no audit key at {}: admin commands link their audit rows under the gateway's key; run them with the \
             gateway's configuration (audit.key or audit.key_file), or `gateway migrate` on a first installation",
            config.audit_key_path().display()
        );
    }
    config.audit_key().context("audit key")
}

async fn admin_on(
    store: &Store,
    config: &Config,
    command: AdminCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let admin = Admin { store, now: clock.unix() };
    // Every change is audited, and a log written before keyed chaining takes no rows until it is
    // rekeyed: refuse up front rather than make a change whose audit row is then refused.
    if !matches!(command, AdminCommand::Audit(_) | AdminCommand::Cert(_)) && store.audit_head().await?.keyed_from.is_none() {
        bail!("the audit log was written before keyed chaining: run `gateway admin audit rekey` first (nothing was changed)");
    }
    match command {
        AdminCommand::Clinic(c) => clinics::run_clinic(&admin, config, c, out).await,
        AdminCommand::ClinicCert(c) => clinics::run_clinic_cert(&admin, c, out, input).await,
        AdminCommand::User(c) => users::run(&admin, config, c, out, input).await,
        AdminCommand::Anchor(c) => anchors::run_anchor(&admin, c, out, err).await,
        AdminCommand::Cert(c) => anchors::run_cert(&admin, config, c, out).await,
        AdminCommand::EnrollCode(c) => enrollment::run(&admin, config, c, out).await,
        AdminCommand::Fido(c) => fido::run(&admin, c, out).await,
        AdminCommand::Session(c) => sessions::run(&admin, c, out).await,
        AdminCommand::ServiceClient(c) => service_clients::run(&admin, c, out).await,
        AdminCommand::Keys(c) => keys::run(store, config, admin.now, c, out).await,
        AdminCommand::Audit(c) => audit::run(&admin, config, c, out, err).await,
        AdminCommand::AgentRelease(c) => agent_releases::run_release(&admin, config, c, out).await,
        AdminCommand::Agent(c) => agent_releases::run_agent(&admin, c, out).await,
    }
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


/// Accepts `AA:BB:…` or `aabb…`, returns lowercase hex.
pub fn normalise_fingerprint(fp: &str) -> anyhow::Result<String> {
    let hex: String = fp.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("a fingerprint is 64 hex digits (SHA-256), got {fp:?}");
    }
    Ok(hex)
}

pub(crate) fn validate_login_id(login_id: &str) -> anyhow::Result<()> {
    if login_id.is_empty() || login_id.len() > 128 || login_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("login ID must be 1–128 characters without spaces or control characters");
    }
    Ok(())
}

/// A random password for generated accounts and files: 20 characters from an unambiguous alphabet.
pub fn generate_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    use rand::seq::IndexedRandom as _;
    let mut rng = rand::rng();
    Zeroizing::new((0..20).map(|_| char::from(ALPHABET.choose(&mut rng).copied().unwrap_or(b'x'))).collect())
}
