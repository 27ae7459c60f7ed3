//! `gateway admin clinic …` and `gateway admin clinic-cert …`: clinics and their TLS client
//! certificates.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{Admin, conflict_or, jst, normalise_fingerprint, read_secret};
use crate::pki::read_certificates;
use crate::pki;
use crate::store::{self, AnchorKind, NewClinicCert};
use crate::tls::PeerCert;

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
    /// One clinic: its state and how its doctors sign in.
    Show {
        /// Clinic code.
        clinic: String,
    },
    /// How the clinic's doctors sign in: `--embedded` (the gateway's own passwords, the default)
    /// or `--oidc ISSUER` (the EMR's OpenID Connect provider; docs/design.md §3.17).
    #[command(name = "set-login")]
    SetLogin(SetLogin),
}

/// `clinic set-login`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["oidc", "embedded"])))]
pub struct SetLogin {
    /// Clinic code.
    pub clinic: String,
    /// Back to the gateway's own passwords.
    #[arg(long)]
    pub embedded: bool,
    /// The provider's issuer URL (https; http only on a loopback address).
    #[arg(long, value_name = "ISSUER", requires_all = ["client_id", "client_secret_file"])]
    pub oidc: Option<String>,
    /// The gateway's client id at the provider.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// A file holding the client secret (mode 0600; read once, stored sealed under the token
    /// key-encryption key).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// The ID token claim that names the user.
    #[arg(long, default_value = "sub", conflicts_with = "embedded")]
    pub claim: String,
    /// What the claim is compared with: the user's external id (set by SCIM) or login ID.
    #[arg(long = "match", value_enum, default_value = "external-id", conflicts_with = "embedded")]
    pub match_on: MatchArg,
    /// Scopes to ask for (space-separated; `openid` is always included).
    #[arg(long, default_value = "openid", conflicts_with = "embedded")]
    pub scopes: String,
    /// How the gateway authenticates at the token endpoint.
    #[arg(long, value_enum, default_value = "client-secret-basic", conflicts_with = "embedded")]
    pub token_auth: TokenAuthArg,
}

/// `--match`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MatchArg {
    /// `users.external_id` (SCIM's `externalId`).
    ExternalId,
    /// The login ID.
    LoginId,
}

/// `--token-auth`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TokenAuthArg {
    /// HTTP Basic.
    ClientSecretBasic,
    /// In the form body.
    ClientSecretPost,
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
    /// Reinstate a revoked certificate (e.g. revoked by mistake); refused once it has expired.
    Restore {
        /// Fingerprint (hex, colons allowed).
        fingerprint: String,
    },
}

/// Runs a `clinic` command.
pub(super) async fn run_clinic(
    admin: &Admin<'_>,
    config: &crate::config::Config,
    cmd: ClinicCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let store = admin.store;
    match cmd {
        ClinicCommand::Add { id, name } => {
            admin.clinic_add(&id, &name).await?;
            writeln!(out, "added clinic {id}")?;
        }
        ClinicCommand::List => {
            let logins = store.clinic_logins().await?;
            for c in store.list_clinics().await? {
                let login = login_text(logins.iter().find(|l| l.clinic_id == c.id), false);
                writeln!(out, "{}\t{}\t{login}\t{}", c.id, if c.enabled { "enabled" } else { "disabled" }, c.name)?;
            }
        }
        ClinicCommand::Show { clinic } => {
            let c = match store.clinic(&clinic).await {
                Err(store::Error::NotFound) => bail!("no clinic {clinic}"),
                r => r?,
            };
            writeln!(out, "clinic: {}\nname: {}\nstate: {}", c.id, c.name, if c.enabled { "enabled" } else { "disabled" })?;
            writeln!(out, "login: {}", login_text(store.clinic_login(&clinic).await?.as_ref(), true))?;
        }
        ClinicCommand::SetLogin(args) => {
            let clinic = args.clinic.clone();
            match admin.clinic_set_login(config, args).await? {
                Some(l) => writeln!(out, "clinic {clinic} signs in through {} (client {})", l.issuer, l.client_id)?,
                None => writeln!(out, "clinic {clinic} signs in with the gateway's own passwords")?,
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
    }
    Ok(())
}

/// Runs a `clinic-cert` command.
pub(super) async fn run_clinic_cert(
    admin: &Admin<'_>,
    cmd: ClinicCertCommand,
    out: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
) -> anyhow::Result<()> {
    let store = admin.store;
    match cmd {
        ClinicCertCommand::Add { clinic, file, password_stdin } => {
            let password = if password_stdin { Some(read_secret(input, "the .p12 password")?) } else { None };
            let cert = admin.clinic_cert_add(&clinic, &file, password.as_deref().map(String::as_str)).await?;
            writeln!(out, "registered {} for clinic {clinic}: {}", cert.fingerprint, cert.subject)?;
        }
        ClinicCertCommand::List { clinic } => {
            for c in store.list_clinic_certs(clinic.as_deref()).await? {
                let state = if c.revoked_at.is_some() { "revoked" } else { "active" };
                let until = jst(c.not_after);
                writeln!(out, "{}\t{}\t{state}\tuntil {until}\t{}", c.clinic_id, c.fingerprint, c.subject)?;
            }
        }
        ClinicCertCommand::Revoke { fingerprint } => {
            admin.clinic_cert_revoke(&fingerprint).await?;
            writeln!(out, "revoked {fingerprint}")?;
        }
        ClinicCertCommand::Restore { fingerprint } => {
            let cert = admin.clinic_cert_restore(&fingerprint).await?;
            writeln!(out, "restored {} (clinic {}, valid until {})", cert.fingerprint, cert.clinic_id, jst(cert.not_after))?;
        }
    }
    Ok(())
}

/// How a clinic signs in, as `list` (short) and `show` (`full`) print it; never the secret.
fn login_text(login: Option<&store::ClinicLogin>, full: bool) -> String {
    match login {
        None => "embedded".to_owned(),
        Some(l) if !full => format!("oidc {}", l.issuer),
        Some(l) => format!(
            "oidc {} client {} ({}) claim {} matched to {} scopes \"{}\"",
            l.issuer,
            l.client_id,
            l.auth_method.as_str(),
            l.claim,
            l.match_on.as_str(),
            l.scopes
        ),
    }
}

impl Admin<'_> {
    /// `clinic set-login`: validates everything first, then stores the provider and client (the
    /// secret sealed under the token key-encryption key) or, with `--embedded`, removes them.
    /// Returns the stored login, `None` for embedded passwords.
    pub async fn clinic_set_login(&self, config: &crate::config::Config, args: SetLogin) -> anyhow::Result<Option<store::ClinicLogin>> {
        let clinic = args.clinic;
        let Some(issuer) = args.oidc else {
            match self.store.clear_clinic_login(&clinic).await {
                Err(store::Error::NotFound) => bail!("no clinic {clinic}"),
                r => r?,
            };
            self.audit("clinic.set_login", format!("{clinic} embedded")).await?;
            return Ok(None);
        };
        let url = url::Url::parse(&issuer).with_context(|| format!("--oidc {issuer:?} is not a URL"))?;
        if !crate::oidc::allowed_url(&url) || url.query().is_some() || url.fragment().is_some() {
            bail!("--oidc must be an https URL without query or fragment (http only on a loopback address), got {issuer:?}");
        }
        let client_id = args.client_id.unwrap_or_default();
        if client_id.is_empty() || client_id.len() > 255 || client_id.chars().any(char::is_control) {
            bail!("--client-id must be 1–255 characters without control characters");
        }
        let claim = args.claim;
        if claim.is_empty() || claim.len() > 64 || !claim.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            bail!("--claim must be a claim name (letters, digits, '_', '-', '.'), got {claim:?}");
        }
        let mut scopes: Vec<&str> = args.scopes.split(' ').filter(|s| !s.is_empty()).collect();
        if scopes.iter().any(|s| s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')) {
            bail!("--scopes must be space-separated scope names");
        }
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        let Some(file) = args.client_secret_file else { bail!("--client-secret-file is required with --oidc") };
        let secret = crate::audit_checkpoint::read_existing_private_file(&file, "client secret")?;
        let secret = zeroize::Zeroizing::new(secret.trim_end_matches(['\r', '\n']).to_owned());
        if secret.is_empty() {
            bail!("{}: the client secret file is empty", file.display());
        }
        match self.store.clinic(&clinic).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic}"),
            r => r?,
        };
        let kek = config.token_kek().context("token key-encryption key (it seals the client secret)")?;
        let login = store::ClinicLogin {
            sealed_secret: crate::oidc::Upstream::seal_secret(&kek, &clinic, &secret)?,
            clinic_id: clinic.clone(),
            issuer,
            client_id,
            claim,
            match_on: match args.match_on {
                MatchArg::ExternalId => store::UpstreamMatch::ExternalId,
                MatchArg::LoginId => store::UpstreamMatch::LoginId,
            },
            scopes: scopes.join(" "),
            auth_method: match args.token_auth {
                TokenAuthArg::ClientSecretBasic => store::ClientAuthMethod::ClientSecretBasic,
                TokenAuthArg::ClientSecretPost => store::ClientAuthMethod::ClientSecretPost,
            },
        };
        self.store.set_clinic_login(&login, self.now).await?;
        // The provider and client, never the secret.
        self.audit("clinic.set_login", format!("{clinic} oidc {} client {}", login.issuer, login.client_id)).await?;
        Ok(Some(login))
    }

    /// `clinic add`.
    pub async fn clinic_add(&self, id: &str, name: &str) -> anyhow::Result<()> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || id.len() > 32 {
            bail!("clinic id must be 1–32 letters, digits or '-', got {id:?}");
        }
        if name.trim().is_empty() {
            bail!("clinic name must not be empty");
        }
        conflict_or(self.store.add_clinic(id, name.trim(), self.now).await, || format!("clinic {id} already exists"))?;
        self.audit("clinic.add", id).await
    }

    /// `clinic disable` / `clinic enable`.
    pub async fn clinic_set_enabled(&self, id: &str, enabled: bool) -> anyhow::Result<()> {
        match self.store.set_clinic_enabled(id, enabled, self.now).await {
            Err(store::Error::NotFound) => bail!("no clinic {id}"),
            r => r?,
        }
        self.audit(if enabled { "clinic.enable" } else { "clinic.disable" }, id).await
    }

    /// `clinic-cert add`: registers a certificate file (PEM, DER, or PKCS#12 with `p12_password`).
    pub async fn clinic_cert_add(
        &self,
        clinic_id: &str,
        file: &std::path::Path,
        p12_password: Option<&str>,
    ) -> anyhow::Result<PeerCert> {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let (der, intermediates) = if is_pkcs12(file) {
            let password = p12_password.context("a .p12 file needs its password (--password-stdin)")?;
            (pki::pkcs12_leaf(&bytes, password)?, Vec::new())
        } else {
            let mut all = read_certificates(&bytes).with_context(|| format!("{}", file.display()))?;
            let leaf = all.remove(0);
            (leaf, all)
        };
        let cert = PeerCert::from_der(&der)?;
        match self.store.clinic(clinic_id).await {
            Err(store::Error::NotFound) => bail!("no clinic {clinic_id}: add it first with `gateway admin clinic add`"),
            r => r?,
        };
        let anchor = self.client_cert_anchor(&der, &intermediates, AnchorKind::Clinic).await.with_context(|| file.display().to_string())?;
        let new = NewClinicCert {
            fingerprint: &cert.fingerprint,
            clinic_id,
            subject: &cert.subject,
            serial: &cert.serial,
            not_after: cert.not_after,
        };
        if let Some(known) = self.registered_clinic_cert(&cert.fingerprint).await? {
            match known.revoked_at {
                Some(at) => bail!(
                    "certificate {} is registered for clinic {} and was revoked at {}; to reinstate it, run \
                     `gateway admin clinic-cert restore {}`",
                    known.fingerprint,
                    known.clinic_id,
                    jst(at),
                    known.fingerprint
                ),
                None => bail!("certificate {} is already registered for clinic {}", known.fingerprint, known.clinic_id),
            }
        }
        conflict_or(self.store.add_clinic_cert(&new, self.now).await, || {
            format!("certificate {} is already registered", cert.fingerprint)
        })?;
        self.store.record_anchor_of(AnchorKind::Clinic, &cert.fingerprint, &anchor).await?;
        self.audit("clinic_cert.add", format!("{clinic_id}/{}", cert.fingerprint)).await?;
        Ok(cert)
    }

    /// `clinic-cert revoke`.
    pub async fn clinic_cert_revoke(&self, fingerprint: &str) -> anyhow::Result<()> {
        let fp = normalise_fingerprint(fingerprint)?;
        match self.store.revoke_clinic_cert(&fp, self.now).await {
            Err(store::Error::NotFound) => bail!("no registered, unrevoked certificate {fp}"),
            r => r?,
        }
        self.audit("clinic_cert.revoke", fp).await
    }

    /// `clinic-cert restore`: lifts an operator's revocation. An expired certificate stays
    /// revoked (the clinic needs a new one), and the restore is audited.
    pub async fn clinic_cert_restore(&self, fingerprint: &str) -> anyhow::Result<store::ClinicCert> {
        let fp = normalise_fingerprint(fingerprint)?;
        let Some(cert) = self.registered_clinic_cert(&fp).await? else {
            bail!("no registered certificate {fp}");
        };
        if cert.revoked_at.is_none() {
            bail!("certificate {fp} is not revoked; nothing to restore");
        }
        if cert.not_after <= self.now {
            bail!("certificate {fp} expired at {}; register the clinic's new certificate instead", jst(cert.not_after));
        }
        match self.store.restore_clinic_cert(&fp).await {
            Err(store::Error::NotFound) => bail!("certificate {fp} is not revoked; nothing to restore"),
            r => r?,
        }
        self.audit("clinic_cert.restore", format!("{}/{fp}", cert.clinic_id)).await?;
        Ok(cert)
    }

    async fn registered_clinic_cert(&self, fingerprint: &str) -> anyhow::Result<Option<store::ClinicCert>> {
        Ok(self.store.list_clinic_certs(None).await?.into_iter().find(|c| c.fingerprint == fingerprint))
    }
}

fn is_pkcs12(path: &std::path::Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("p12" | "pfx"))
}
