//! `gateway admin agent-release …` and `gateway admin agent list`: the clinic agent's signed
//! releases (docs/design.md §3.14, decision 0018) and the agents that run them.
//!
//! Publishing checks everything before it writes: the manifest's signature under the configured
//! release keys (`agent_releases.public_keys`), the binary's size against the manifest and
//! `agent_releases.max_binary_bytes`, its SHA-256, and that the version is new for its target.
//! A refused release leaves nothing behind.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::Admin;
use crate::clock::jst;
use crate::config::Config;
use crate::store::{NewAgentRelease, Published};

/// `admin agent-release …`.
#[derive(Debug, Subcommand)]
pub enum AgentReleaseCommand {
    /// Publish a signed release: its manifest, the manifest's minisign signature, and the binary.
    Publish {
        /// The manifest (JSON, as `ninsho-release sign` wrote it).
        manifest: PathBuf,
        /// Its signature (MANIFEST.minisig).
        signature: PathBuf,
        /// The agent binary the manifest describes.
        binary: PathBuf,
    },
    /// List releases, newest first (withdrawn ones too).
    List,
    /// Withdraw a version: agents are no longer offered it nor can download it. The version stays
    /// taken (it cannot be published again).
    Withdraw {
        /// The version, MAJOR.MINOR.PATCH.
        version: String,
        /// Only this target (default: every target of the version).
        #[arg(long)]
        target: Option<String>,
    },
}

/// `admin agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Every clinic agent seen: its clinic, id, version, when it was last seen, and the last
    /// update step it reported.
    List,
}

/// Reads at most `max` bytes of `path`, refusing a longer file without reading it whole.
fn read_bounded(path: &Path, max: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        bail!("the {what} {} is larger than {max} bytes (nothing was published)", path.display());
    }
    Ok(bytes)
}

/// Runs an `agent-release` command.
pub(super) async fn run_release(admin: &Admin<'_>, config: &Config, cmd: AgentReleaseCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        AgentReleaseCommand::Publish { manifest, signature, binary } => publish(admin, config, &manifest, &signature, &binary, out).await,
        AgentReleaseCommand::List => {
            for r in admin.store.list_agent_releases().await? {
                let state = match r.withdrawn_at {
                    None => "live".to_owned(),
                    Some(at) => format!("withdrawn {}", jst(at)),
                };
                writeln!(
                    out,
                    "{}\t{}\t{state}\t{} bytes\tsha256 {}\tkey {}\tpublished {}",
                    r.version,
                    r.target,
                    r.size,
                    r.sha256,
                    r.key_id,
                    jst(r.created_at)
                )?;
            }
            Ok(())
        }
        AgentReleaseCommand::Withdraw { version, target } => {
            let version = release::parse_version(&version).map_err(|e| anyhow::anyhow!("{e} (nothing was withdrawn)"))?;
            let target = match target {
                Some(t) => t.parse::<release::Target>().map_err(|e| anyhow::anyhow!("{e} (nothing was withdrawn)"))?.to_string(),
                None => String::new(),
            };
            let withdrawn = admin.store.withdraw_agent_release(&version.to_string(), &target, admin.now).await?;
            if withdrawn.is_empty() {
                let which = if target.is_empty() { String::new() } else { format!(" for {target}") };
                bail!("no live release {version}{which} (nothing was withdrawn)");
            }
            for (v, t) in withdrawn {
                writeln!(out, "withdrew {v} for {t}")?;
            }
            Ok(())
        }
    }
}

async fn publish(
    admin: &Admin<'_>,
    config: &Config,
    manifest_path: &Path,
    signature_path: &Path,
    binary_path: &Path,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let cfg = &config.agent_releases;
    let keys = cfg.keys().map_err(|e| {
        anyhow::anyhow!(
            "{e}: configure the release public keys (agent_releases.public_keys) before publishing (nothing was published)"
        )
    })?;
    let manifest_bytes = read_bounded(manifest_path, release::MAX_MANIFEST_BYTES as u64, "manifest")?;
    let signature_bytes = read_bounded(signature_path, release::MAX_SIGNATURE_BYTES as u64, "signature")?;
    let Ok(signature) = String::from_utf8(signature_bytes) else {
        bail!("the signature {} is not a minisign signature (not text; nothing was published)", signature_path.display());
    };
    let manifest = release::verify_manifest(&manifest_bytes, &signature, &keys)
        .map_err(|e| anyhow::anyhow!("refused: {e} (nothing was published)"))?;
    if manifest.size > cfg.max_binary_bytes {
        bail!(
            "refused: the release is {} bytes, more than agent_releases.max_binary_bytes ({}) (nothing was published)",
            manifest.size,
            cfg.max_binary_bytes
        );
    }
    let binary = read_bounded(binary_path, cfg.max_binary_bytes, "binary")?;
    release::check_binary(&manifest, &binary).map_err(|e| anyhow::anyhow!("refused: {e} (nothing was published)"))?;
    let key_id = release::signature_key_id(&signature).map(|k| k.to_string()).unwrap_or_default();
    let version = manifest.version.to_string();
    let new = NewAgentRelease {
        version: &version,
        major: i64::try_from(manifest.version.major).context("version number too large")?,
        minor: i64::try_from(manifest.version.minor).context("version number too large")?,
        patch: i64::try_from(manifest.version.patch).context("version number too large")?,
        target: manifest.target.as_str(),
        manifest: &manifest_bytes,
        signature: &signature,
        key_id: &key_id,
        sha256: &manifest.sha256,
        content: &binary,
    };
    match admin.store.publish_agent_release(&new, admin.now).await? {
        Published::Stored => {}
        Published::VersionExists => bail!(
            "refused: version {version} for {} was published before (a version is never replaced, even withdrawn; \
             publish a new version) (nothing was published)",
            manifest.target
        ),
    }
    writeln!(out, "published {version} for {} ({} bytes, sha256 {}, signed by key {key_id})", manifest.target, manifest.size, manifest.sha256)?;
    Ok(())
}

/// Runs an `agent` command.
pub(super) async fn run_agent(admin: &Admin<'_>, cmd: AgentCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::List => {
            for a in admin.store.list_agents().await? {
                let update = match (&a.update_step, &a.update_version, &a.update_outcome, a.update_at) {
                    (Some(step), Some(version), Some(outcome), Some(at)) => {
                        let detail = a.update_detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                        format!("update {version} {step} {outcome}{detail} at {}", jst(at))
                    }
                    _ => "no update reported".to_owned(),
                };
                writeln!(out, "{}\t{}\t{}\tlast seen {}\t{update}", a.clinic_id, a.agent_id, a.version, jst(a.last_seen))?;
            }
            Ok(())
        }
    }
}
