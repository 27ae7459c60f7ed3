//! The `gateway` command line: `serve`, `demo`, `migrate`, `admin …` and `check …`.
//!
//! [`run`] takes its output and input streams as arguments so tests drive the real CLI
//! in-process.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context as _;
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
    /// Create or upgrade the database (and the audit key on a first installation), then exit.
    /// Run it once per upgrade, before the new version serves; admin commands never migrate.
    Migrate,
    /// Manage clinics, certificates, users, trust anchors and the audit log.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// End-to-end smoke test of a live deployment with a test account (`check link`, then `check run`).
    #[command(subcommand)]
    Check(Box<crate::check::CheckCommand>),
}

/// Parses `args` and runs the command. Returns the process exit code.
///
/// Results go to `out` and nothing else does: errors, warnings and usage go to `err`, so
/// `gateway admin audit export > file` never writes an error into the file. `--help` and
/// `--version` are results.
pub async fn run(
    args: Vec<String>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = if e.use_stderr() { write!(err, "{}", e.render()) } else { write!(out, "{}", e.render()) };
            return e.exit_code();
        }
    };
    match dispatch(cli, out, err, input).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {}", error_message(&e));
            1
        }
    }
}

/// An error and its causes on one line, each said once: a cause whose text its context already
/// quotes (`database error: connection refused` over `connection refused`) is not repeated.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

async fn dispatch(
    cli: Cli,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    input: &mut (dyn BufRead + Send),
) -> anyhow::Result<()> {
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
            // The audit key the admin commands and every instance link rows under: read, or
            // created here on a first installation (admin commands never create one).
            config.audit_key().context("audit key")?;
            Ok(())
        }
        Command::Admin(cmd) => {
            crate::admin::run_admin(&config()?, cli.config.as_deref(), cmd, out, err, input, &SystemClock).await
        },
        Command::Check(cmd) => crate::check::run(*cmd, out, input).await,
    }
}

