//! The `gateway` command line: `serve`, `demo`, `migrate` and `admin …`.
//!
//! [`run`] takes its output and input streams as arguments so tests drive the real CLI
//! in-process.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::Store;

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
    Demo(crate::demo::DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage clinics, certificates, users, trust anchors and the audit log.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
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
            app.run_until(crate::server::shutdown_signal()).await
        }
        Command::Migrate => {
            let config = config()?;
            let store = Store::connect(&config.database_url(), 1).await?;
            store.migrate().await?;
            writeln!(out, "migrations applied ({})", store.backend_name())?;
            Ok(())
        }
        Command::Admin(cmd) => crate::admin::run_admin(&config()?, cmd, out, input, &SystemClock).await,
    }
}

