//! `ninsho-signer admin …`: callers (service clients), credentials, the demo signing CA and the
//! audit log. Every change is audited in the transaction that makes it. Admin commands never
//! migrate: the schema must be current (`ninsho-signer migrate`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use crate::clock::{Clock as _, SystemClock, jst};
use crate::config::Config;
use crate::credentials::Keyring;
use crate::store::{AuditEntry, AuditVerification, Credential, ServiceClient, Store};

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Callers of the CSC API (EMR backends), registered by client certificate.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Doctors' signing credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// The signing CA for demo and test credentials.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `admin client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a caller by its client certificate, for the clinics it serves.
    Add {
        /// Operator-chosen id.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Its TLS client certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// A clinic it may sign for (repeat for several).
        #[arg(long = "clinic", required = true)]
        clinics: Vec<String>,
    },
    /// List callers.
    List,
    /// Refuse a caller from now on, on every instance.
    Disable {
        /// Its id.
        id: String,
    },
    /// Accept a disabled caller again.
    Enable {
        /// Its id.
        id: String,
    },
}

/// `admin credential …`.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Generate a doctor's key in the configured backend; with `[ca]` configured, issue its
    /// certificate; otherwise print a CSR for a real CA (then `import-cert`).
    Create {
        /// The clinic it signs for (the gateway's clinic id).
        #[arg(long)]
        clinic: String,
        /// The doctor's 医籍番号 (medical registration number), as the gateway's tokens carry it.
        #[arg(long)]
        doctor: String,
        /// The doctor's name in Latin letters (certificate subject CN).
        #[arg(long)]
        name: String,
        /// The doctor's name in kanji (subjectAltName directoryName).
        #[arg(long)]
        name_kanji: Option<String>,
        /// The organisation (certificate subject O).
        #[arg(long)]
        organization: String,
        /// The credential id (CSC credentialID); default: generated.
        #[arg(long)]
        id: Option<String>,
    },
    /// Store the certificate a CA issued for a credential's CSR.
    ImportCert {
        /// The credential.
        id: String,
        /// The certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The issuing CA certificates (PEM, issuer first), if any.
        #[arg(long)]
        chain: Option<PathBuf>,
    },
    /// List credentials.
    List {
        /// Only this clinic's.
        #[arg(long)]
        clinic: Option<String>,
    },
    /// Print a credential's certificate and chain (PEM).
    Show {
        /// The credential.
        id: String,
    },
    /// Refuse to sign with a credential from now on, on every instance.
    Disable {
        /// The credential.
        id: String,
    },
    /// Sign with a disabled credential again.
    Enable {
        /// The credential.
        id: String,
    },
}

/// `admin ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create an HPKI-shaped demo signing CA (for demos and tests, never for real prescriptions).
    GenerateDemo {
        /// Where to write the CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Where to write its key (PEM, mode 0600).
        #[arg(long)]
        key: PathBuf,
    },
    /// Issue a CRL of the configured signing CA (`[ca]`) to embed in e-prescription signatures
    /// (`signdoc.crl_files`); the file is replaced.
    Crl {
        /// Where to write the CRL (DER).
        #[arg(long)]
        out: PathBuf,
        /// Days until its nextUpdate.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=90))]
        days: u16,
        /// Serial numbers (hex) of certificates to list as revoked; repeatable.
        #[arg(long = "revoke-serial")]
        revoke_serial: Vec<String>,
    },
}

/// `admin audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain under the audit key; exit 1 if any row was changed, removed or added.
    Verify,
    /// Write the log as JSON Lines.
    Export,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand, config: &Config, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    if let AdminCommand::Ca(CaCommand::GenerateDemo { cert, key }) = &cmd {
        let ca = keys::certificate::SigningCa::generate_demo(SystemClock.now())?;
        write_new(cert, ca.cert_pem().as_bytes(), false)?;
        write_new(key, ca.key_pem().as_bytes(), true)?;
        writeln!(out, "demo signing CA written to {} and {}", cert.display(), key.display())?;
        return Ok(());
    }
    if let AdminCommand::Ca(CaCommand::Crl { out: path, days, revoke_serial }) = &cmd {
        let ca = signing_ca(config)?.context("admin ca crl needs [ca] cert_file and key_file")?;
        let revoked = revoke_serial
            .iter()
            .map(|h| hex::decode(h.trim().replace(':', "")).with_context(|| format!("--revoke-serial {h:?} is not hex")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // thisUpdate five minutes back, for relying parties whose clocks run behind.
        let now = SystemClock.now();
        let crl = ca.crl(now - time::Duration::minutes(5), now + time::Duration::days(i64::from(*days)), &revoked)?;
        replace_file(path, &crl)?;
        writeln!(out, "CRL of {} written to {} (next update in {days} days, {} revoked)", config.ca.cert_file.display(), path.display(), revoked.len())?;
        return Ok(());
    }
    let store = open(config).await?;
    let now = SystemClock.unix();
    let entry = |event: &'static str, detail: serde_json::Value| AuditEntry {
        at: now,
        event,
        outcome: "success",
        clinic_id: None,
        user_id: None,
        detail: json!({ "actor": "admin", "details": detail }),
    };
    match cmd {
        AdminCommand::Ca(_) => Ok(()),
        AdminCommand::Client(c) => match c {
            ClientCommand::Add { id, name, cert, clinics } => {
                let der = read_certificate(&cert)?;
                let peer = infra::tls::PeerCert::from_der(&der)?;
                let client =
                    ServiceClient { id: id.clone(), name, fingerprint: peer.fingerprint.clone(), subject: peer.subject, enabled: true, clinics };
                store
                    .add_client(&client, entry("client_added", json!({ "client": id, "fingerprint": peer.fingerprint, "clinics": client.clinics })))
                    .await
                    .map_err(|e| conflict(e, &format!("a client with id {id} or this certificate is already registered")))?;
                writeln!(out, "client {id} registered (fingerprint {})", peer.fingerprint)?;
                Ok(())
            }
            ClientCommand::List => {
                for c in store.list_clients().await? {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\tclinics: {}\t{}",
                        c.id,
                        if c.enabled { "enabled" } else { "disabled" },
                        c.name,
                        c.fingerprint,
                        c.clinics.join(","),
                        c.subject
                    )?;
                }
                Ok(())
            }
            ClientCommand::Disable { id } => {
                store.set_client_enabled(&id, false, entry("client_disabled", json!({ "client": id }))).await.map_err(|e| missing(e, "client", &id))?;
                writeln!(out, "client {id} disabled")?;
                Ok(())
            }
            ClientCommand::Enable { id } => {
                store.set_client_enabled(&id, true, entry("client_enabled", json!({ "client": id }))).await.map_err(|e| missing(e, "client", &id))?;
                writeln!(out, "client {id} enabled")?;
                Ok(())
            }
        },
        AdminCommand::Credential(c) => credential(c, config, &store, now, out).await,
        AdminCommand::Audit(AuditCommand::Verify) => match store.audit_verify().await? {
            AuditVerification::Intact { rows } => {
                writeln!(out, "audit log intact ({rows} rows)")?;
                Ok(())
            }
            broken => anyhow::bail!("audit log does not verify: {broken:?}"),
        },
        AdminCommand::Audit(AuditCommand::Export) => {
            for row in store.audit_rows(1).await? {
                writeln!(out, "{}", serde_json::to_string(&row)?)?;
            }
            Ok(())
        }
    }
}

async fn credential(cmd: CredentialCommand, config: &Config, store: &Store, now: i64, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let entry = |event: &'static str, clinic: Option<String>, detail: serde_json::Value| AuditEntry {
        at: now,
        event,
        outcome: "success",
        clinic_id: clinic,
        user_id: None,
        detail: json!({ "actor": "admin", "details": detail }),
    };
    match cmd {
        CredentialCommand::Create { clinic, doctor, name, name_kanji, organization, id } => {
            let id = id.unwrap_or_else(|| format!("cred-{}", uuid::Uuid::new_v4().simple()));
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                anyhow::bail!("--id must be 1-64 characters of A-Z a-z 0-9 - _ .");
            }
            if doctor.trim().is_empty() || clinic.trim().is_empty() {
                anyhow::bail!("--clinic and --doctor must not be empty");
            }
            let keyring = keyring(config)?;
            let key = keyring.create(&id, config.keys.rsa_bits)?;
            let subject = keys::certificate::DoctorSubject {
                name_romaji: name,
                name_kanji,
                organization,
                serial: id.clone(),
            };
            let ca = signing_ca(config)?;
            let (certificate, chain, csr) = match &ca {
                Some(ca) => {
                    let (from, to) = keys::certificate::hpki_validity(SystemClock.now(), config.ca.validity_years);
                    (Some(ca.issue(&key.spki, &subject, from, to)?), vec![ca.cert_der().to_vec()], None)
                }
                None => {
                    let stored = stored_for_csr(&keyring, &id, &key)?;
                    (None, Vec::new(), Some(keys::certificate::csr_pem(keyring.backend(), &stored, &subject)?))
                }
            };
            let credential = Credential {
                id: id.clone(),
                clinic_id: clinic.clone(),
                medical_reg_no: doctor.clone(),
                description: format!("{} ({})", subject.name_romaji, subject.organization),
                backend: key.backend,
                key_ref: key.key_ref,
                key_bits: config.keys.rsa_bits,
                spki: key.spki,
                certificate,
                chain,
                enabled: true,
                created_at: now,
            };
            let detail = json!({ "credential": id, "backend": credential.backend.as_str(), "bits": credential.key_bits, "issued": csr.is_none() });
            store
                .insert_credential(&credential, entry("credential_created", Some(clinic.clone()), detail))
                .await
                .map_err(|e| conflict(e, &format!("clinic {clinic} already has a credential for doctor {doctor}, or id {id} is taken")))?;
            writeln!(out, "{id}")?;
            if let Some(csr) = csr {
                writeln!(out, "{csr}")?;
                writeln!(out, "# send this CSR to the CA, then: ninsho-signer admin credential import-cert {id} --cert CERT.pem")?;
            }
            Ok(())
        }
        CredentialCommand::ImportCert { id, cert, chain } => {
            let credential = store.credential(&id).await?.with_context(|| format!("no credential {id}"))?;
            let der = read_certificate(&cert)?;
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            if parsed.public_key().raw != credential.spki.as_slice() {
                anyhow::bail!("{} is not a certificate for credential {id}'s key (the public keys differ)", cert.display());
            }
            let chain = match chain {
                Some(path) => infra::tls::read_pem_certs(&path)?.into_iter().map(|c| c.to_vec()).collect(),
                None => Vec::new(),
            };
            let detail = json!({ "credential": id, "serial": parsed.raw_serial_as_string().replace(':', "") });
            store.set_certificate(&id, &der, &chain, entry("certificate_imported", Some(credential.clinic_id), detail)).await?;
            writeln!(out, "certificate stored for {id}")?;
            Ok(())
        }
        CredentialCommand::List { clinic } => {
            let clinics = clinic.map(|c| vec![c]);
            for c in store.list_credentials(clinics.as_deref(), None).await? {
                let cert = match c.certificate.as_deref().and_then(|d| x509_parser::parse_x509_certificate(d).ok()) {
                    Some((_, p)) => format!("valid to {}", jst(p.validity().not_after.timestamp())),
                    None => "no certificate (CSR pending)".to_owned(),
                };
                writeln!(
                    out,
                    "{}\t{}\tclinic {}\tdoctor {}\t{} RSA-{}\t{}\t{}",
                    c.id,
                    if c.enabled { "enabled" } else { "disabled" },
                    c.clinic_id,
                    c.medical_reg_no,
                    c.backend.as_str(),
                    c.key_bits,
                    cert,
                    c.description
                )?;
            }
            Ok(())
        }
        CredentialCommand::Show { id } => {
            let c = store.credential(&id).await?.with_context(|| format!("no credential {id}"))?;
            let Some(cert) = &c.certificate else { anyhow::bail!("credential {id} has no certificate yet (CSR pending)") };
            for der in std::iter::once(cert).chain(c.chain.iter()) {
                write!(out, "{}", infra::cli::pem("CERTIFICATE", der))?;
            }
            Ok(())
        }
        CredentialCommand::Disable { id } => {
            let c = store.credential(&id).await?.with_context(|| format!("no credential {id}"))?;
            store.set_credential_enabled(&id, false, entry("credential_disabled", Some(c.clinic_id), json!({ "credential": id }))).await?;
            writeln!(out, "credential {id} disabled")?;
            Ok(())
        }
        CredentialCommand::Enable { id } => {
            let c = store.credential(&id).await?.with_context(|| format!("no credential {id}"))?;
            store.set_credential_enabled(&id, true, entry("credential_enabled", Some(c.clinic_id), json!({ "credential": id }))).await?;
            writeln!(out, "credential {id} enabled")?;
            Ok(())
        }
    }
}

/// The store, with the audit key, on a current schema.
async fn open(config: &Config) -> anyhow::Result<Store> {
    let key = config.audit_key(false)?;
    let url = config.database_url()?;
    let store = Store::connect(&url, 2, std::time::Duration::from_secs(10)).await?.with_audit_key(key);
    match store.schema_status().await? {
        infra::db::SchemaStatus::Current => Ok(store),
        infra::db::SchemaStatus::Empty => anyhow::bail!("the database is empty: run `ninsho-signer migrate` first"),
        infra::db::SchemaStatus::Behind { pending } => {
            anyhow::bail!("the database is {pending} migration(s) behind this version: run `ninsho-signer migrate` first")
        }
        infra::db::SchemaStatus::Ahead { unknown } => {
            anyhow::bail!("the database was migrated by a newer version (migration {unknown}): use that version")
        }
    }
}

fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let kek = match config.keys.backend {
        crate::config::KeyBackendKind::Software => Some(config.key_kek()?),
        crate::config::KeyBackendKind::Pkcs11 => None,
    };
    Keyring::new(config.key_backend()?, kek)
}

/// The new key as the backend takes it, to sign its CSR.
fn stored_for_csr(keyring: &Keyring, id: &str, key: &crate::credentials::NewKey) -> anyhow::Result<keys::StoredKey> {
    let probe = Credential {
        id: id.to_owned(),
        clinic_id: String::new(),
        medical_reg_no: String::new(),
        description: String::new(),
        backend: key.backend,
        key_ref: key.key_ref.clone(),
        key_bits: 0,
        spki: key.spki.clone(),
        certificate: None,
        chain: Vec::new(),
        enabled: true,
        created_at: 0,
    };
    keyring.stored_key(&probe)
}

fn signing_ca(config: &Config) -> anyhow::Result<Option<keys::certificate::SigningCa>> {
    if config.ca.cert_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let cert = std::fs::read_to_string(&config.ca.cert_file).with_context(|| format!("cannot read {}", config.ca.cert_file.display()))?;
    let key = infra::secret_file::read_existing_private_file(&config.ca.key_file, "signing CA key")?;
    Ok(Some(keys::certificate::SigningCa::load(&cert, &key)?))
}

fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let certs = infra::tls::read_pem_certs(path)?;
    Ok(certs.first().map(|c| c.to_vec()).unwrap_or_default())
}


/// Writes `contents` to a temporary file beside `path`, then renames it over `path`: a signer
/// reading the file at the same time sees the old CRL or the new one, never half of one.
fn replace_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().context("the output path has no file name")?.to_string_lossy().into_owned();
    let temp = path.with_file_name(format!(".{name}.new"));
    std::fs::write(&temp, contents).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
}

fn write_new(path: &Path, contents: &[u8], private: bool) -> anyhow::Result<()> {
    if private {
        infra::secret_file::write_private(path, contents)
    } else {
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
    }
}

fn conflict(e: crate::store::Error, what: &str) -> anyhow::Error {
    match e {
        crate::store::Error::Conflict(_) => anyhow::anyhow!("{what}"),
        other => other.into(),
    }
}

fn missing(e: crate::store::Error, kind: &str, id: &str) -> anyhow::Error {
    match e {
        crate::store::Error::NotFound => anyhow::anyhow!("no {kind} {id}"),
        other => other.into(),
    }
}
