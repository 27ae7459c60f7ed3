//! The `gateway` command line: `serve`, `demo`, `migrate`, `healthcheck`, `admin …` and `check …`.
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
    /// Ask a running gateway's ops listener whether it is ready; exit 0 if it answers 200, 1
    /// otherwise. For container healthchecks (the image has no shell and no curl).
    Healthcheck(HealthcheckArgs),
    /// Manage clinics, certificates, users, trust anchors and the audit log.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// End-to-end smoke test of a live deployment with a test account (`check link`, then `check run`).
    #[command(subcommand)]
    Check(Box<crate::check::CheckCommand>),
    /// The demo's remote signer: `ninsho-signer` with these arguments (`--config` is the
    /// signer's file). `gateway demo` runs it as its own process, so `cargo run -p gateway`
    /// needs no second binary; not for production, where `ninsho-signer` runs.
    #[command(hide = true)]
    DemoSigner {
        /// The signer's command and arguments; default `serve`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `gateway healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to ask (plain http). Default: `/readyz` on the configured `ops.listen`, an
    /// unspecified address (0.0.0.0, ::) replaced by loopback.
    #[arg(long)]
    pub url: Option<String>,
    /// How long to wait for the answer, in milliseconds (100..=60000).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
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
    if let Command::DemoSigner { args } = cli.command {
        // The signer's own entry point, exit code and error printing: this process *is* the
        // signer, sharing only the binary with the gateway.
        let mut argv = vec!["ninsho-signer".to_owned()];
        if let Some(config) = &cli.config {
            argv.extend(["--config".to_owned(), config.display().to_string()]);
        }
        if args.is_empty() {
            argv.push("serve".to_owned());
        }
        argv.extend(args);
        return signer::cli::run(argv, out, err).await;
    }
    match dispatch(cli, out, err, input).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {}", error_message(&e));
            1
        }
    }
}

pub use infra::cli::error_message;

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
            let store = Store::connect(&config.database_url()?, 1).await?;
            store.migrate().await?;
            writeln!(out, "migrations applied ({})", store.backend_name())?;
            // The audit key the admin commands and every instance link rows under: read, or
            // created here on a first installation (admin commands never create one).
            config.audit_key().context("audit key")?;
            Ok(())
        }
        Command::Admin(cmd) => {
            crate::admin::run_admin(&config()?, cli.config.as_deref(), cmd, out, err, input, &SystemClock).await
        }
        Command::Check(cmd) => crate::check::run(*cmd, out, input).await,
        Command::DemoSigner { .. } => anyhow::bail!("demo-signer is handled before dispatch"),
        Command::Healthcheck(ref args) => {
            let url = match &args.url {
                Some(url) => url.clone(),
                None => healthcheck_url(&config()?),
            };
            healthcheck(&url, args.timeout_ms, out).await
        }
    }
}

/// `/readyz` on the configured ops listener, reached over loopback when it listens on every
/// address.
fn healthcheck_url(config: &Config) -> String {
    let mut addr = config.ops.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/readyz")
}

/// GET `url`; Ok when it answers 200, an error naming what it answered (or why nothing answered)
/// otherwise.
async fn healthcheck(url: &str, timeout_ms: u64, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url:?} is not a URL: {e}"))?;
    if parsed.scheme() != "http" || parsed.host().is_none() {
        anyhow::bail!("--url {url:?} must be an http:// URL of the ops listener (it serves plain HTTP)");
    }
    if !(100..=60_000).contains(&timeout_ms) {
        anyhow::bail!("--timeout-ms must be between 100 and 60000");
    }
    // No proxy: the ops listener is local, whatever HTTP_PROXY the container inherited.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // The chain of causes ("connection refused") is printed with the error (`run`).
    let response = client.get(parsed).send().await.with_context(|| format!("not ready: {url}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        anyhow::bail!("not ready: {url} answered {status}");
    }
    writeln!(out, "ready: {url} answered {status}")?;
    Ok(())
}

