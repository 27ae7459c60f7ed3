//! `gateway admin service-client …`: EMR backends and remote signers, registered by their TLS
//! client certificate.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{Admin, spelled};
use crate::store::{self, AuditEvent, ServiceClient, ServiceRole};
use crate::tls::PeerCert;

/// `admin service-client …`.
#[derive(Debug, Subcommand)]
pub enum ServiceClientCommand {
    /// Register an EMR backend, remote signer or provisioner by its TLS client certificate.
    Add {
        /// Client id, e.g. emr-acme (letters, digits, '-', '_').
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// emr (obtains tokens), signer (consumes tokens) or provisioner (manages the users of its
        /// clinics through SCIM, /scim/v2).
        #[arg(long, value_parser = spelled::<ServiceRole>("service role"), default_value = "emr")]
        role: ServiceRole,
        /// Its TLS client certificate (PEM or DER), issued under a `service` trust anchor.
        #[arg(long)]
        cert: PathBuf,
        /// A clinic it serves; repeat for several.
        #[arg(long = "clinic")]
        clinics: Vec<String>,
    },
    /// List service clients.
    List,
    /// Disable a service client: its calls are refused at once.
    Disable {
        /// Client id.
        #[arg(long)]
        id: String,
    },
    /// Enable a disabled service client.
    Enable {
        /// Client id.
        #[arg(long)]
        id: String,
    },
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Runs a `service-client` command.
pub(super) async fn run(admin: &Admin<'_>, cmd: ServiceClientCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let store = admin.store;
    match cmd {
        ServiceClientCommand::Add { id, name, role, cert, clinics } => {
            if !valid_id(&id) {
                bail!("service client id must be 1–64 letters, digits, '-' or '_', got {id:?}");
            }
            if name.trim().is_empty() {
                bail!("name must not be empty");
            }
            if matches!(role, ServiceRole::Emr | ServiceRole::Provisioner) && clinics.is_empty() {
                bail!("{} client needs at least one --clinic", if role == ServiceRole::Emr { "an emr" } else { "a provisioner" });
            }
            let bytes = std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
            let mut ders = crate::pki::read_certificates(&bytes).with_context(|| cert.display().to_string())?;
            let der = ders.remove(0);
            let peer = PeerCert::from_der(&der)?;
            let anchor = admin
                .client_cert_anchor(&der, &ders, store::AnchorKind::Service)
                .await
                .with_context(|| cert.display().to_string())?;
            for clinic in &clinics {
                match store.clinic(clinic).await {
                    Err(store::Error::NotFound) => bail!("no clinic {clinic}"),
                    r => {
                        r?;
                    }
                }
            }
            let client = ServiceClient {
                id: id.clone(),
                name: name.trim().to_owned(),
                role,
                fingerprint: peer.fingerprint.clone(),
                subject: peer.subject.clone(),
                enabled: true,
                clinics,
            };
            match store.add_service_client(&client, admin.now).await {
                Err(store::Error::Conflict(_)) => {
                    bail!("a service client with id {id} or certificate {} already exists", peer.fingerprint)
                }
                r => r?,
            }
            store.record_anchor_of(store::AnchorKind::Service, &peer.fingerprint, &anchor).await?;
            store.audit(&AuditEvent::Admin { action: "service_client.add", target: id.clone() }, admin.now).await?;
            writeln!(out, "added {} client {id} ({}) for clinics {}", role.as_str(), peer.fingerprint, client.clinics.join(","))?;
        }
        ServiceClientCommand::List => {
            for c in store.list_service_clients().await? {
                let state = if c.enabled { "enabled" } else { "disabled" };
                writeln!(out, "{}\t{}\t{state}\t{}\t{}\t{}", c.id, c.role.as_str(), c.fingerprint, c.clinics.join(","), c.name)?;
            }
        }
        ServiceClientCommand::Disable { id } | ServiceClientCommand::Enable { id } if !valid_id(&id) => {
            bail!("no service client {id:?}")
        }
        ServiceClientCommand::Disable { id } => set_enabled(admin, &id, false, out).await?,
        ServiceClientCommand::Enable { id } => set_enabled(admin, &id, true, out).await?,
    }
    Ok(())
}

async fn set_enabled(admin: &Admin<'_>, id: &str, enabled: bool, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match admin.store.set_service_client_enabled(id, enabled, admin.now).await {
        Err(store::Error::NotFound) => bail!("no service client {id}"),
        r => r?,
    }
    let action = if enabled { "service_client.enable" } else { "service_client.disable" };
    admin.store.audit(&AuditEvent::Admin { action, target: id.to_owned() }, admin.now).await?;
    writeln!(out, "{} service client {id}", if enabled { "enabled" } else { "disabled" })?;
    Ok(())
}

