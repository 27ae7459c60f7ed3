//! `gateway admin keys …`: the signing-token keys.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::store::{AuditEvent, Store};

/// `admin keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key; the previous one stays in the JWKS until its tokens expire.
    Rotate,
    /// List token signing keys.
    List,
}

/// Runs a `keys` command.
pub(super) async fn run(store: &Store, config: &Config, now: i64, cmd: KeysCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            let kek = config.token_kek()?;
            if store.active_signing_key().await?.is_none() {
                bail!("there is no key to rotate yet: start the gateway once to create the first key");
            }
            let kid = crate::tokens::rotate(store, &kek, now).await?;
            store.audit(&AuditEvent::Admin { action: "keys.rotate", target: kid.clone() }, now).await?;
            writeln!(out, "new signing key {kid}; instances switch within {} s", config.tokens.key_refresh_secs)?;
        }
        KeysCommand::List => {
            for k in store.list_signing_keys().await? {
                let state = match k.retired_at {
                    None => "active".to_owned(),
                    Some(t) => format!("retired {}", super::jst(t)),
                };
                writeln!(out, "{}\t{state}\tcreated {}", k.kid, super::jst(k.created_at))?;
            }
        }
    }
    Ok(())
}
