//! `gateway admin audit …`: verify the keyed chain, key an old one, sign and check checkpoints,
//! export.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{Admin, jst};
use crate::audit_checkpoint::describe;
use crate::config::Config;
use crate::store::AuditVerification;

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
    /// Write every audit row as JSON Lines and say how many.
    Export {
        /// Output file (default: standard output). An existing file is kept unless --force.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Replace an existing output file.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

/// Runs an `audit` command.
pub(super) async fn run(
    admin: &Admin<'_>,
    config: &Config,
    cmd: AuditCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let store = admin.store;
    match cmd {
        AuditCommand::Verify => match store.audit_verify().await? {
            AuditVerification::Intact { rows, keyed_from } => {
                writeln!(out, "audit log intact: {rows} rows ({})", AuditVerification::segments(rows, keyed_from))?;
                if keyed_from.is_none() {
                    writeln!(err, "warning: no keyed segment yet; run `gateway admin audit rekey`")?;
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
                jst(checkpoint.at)
            )?;
        }
        AuditCommand::Export { output: Some(path), force } => {
            let file = export_file(&path, force)?;
            let mut f = std::io::BufWriter::new(file);
            let rows = admin.audit_export(&mut f).await.with_context(|| format!("writing {}", path.display()))?;
            f.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "exported {rows} audit rows to {}", path.display())?;
        }
        AuditCommand::Export { output: None, .. } => {
            // Standard output carries the rows only; the count goes beside them.
            let rows = admin.audit_export(out).await?;
            out.flush()?;
            writeln!(err, "exported {rows} audit rows")?;
        }
    }
    Ok(())
}


/// The export's output file: a new one, or with `force` an existing one emptied. Readable by its
/// owner only (audit rows name accounts and devices).
fn export_file(path: &std::path::Path, force: bool) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{} already exists; choose another file or pass --force to replace it", path.display())
        }
        _ => anyhow::Error::new(e).context(format!("cannot create {}", path.display())),
    })
}

impl Admin<'_> {
    /// `audit export` as JSON Lines.
    pub async fn audit_export(&self, out: &mut (dyn Write + Send)) -> anyhow::Result<i64> {
        Ok(self
            .store
            .audit_export(|record| {
                serde_json::to_writer(&mut *out, &record)?;
                out.write_all(b"\n")
            })
            .await?)
    }
}
