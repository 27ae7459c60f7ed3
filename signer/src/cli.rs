//! The `ninsho-signer` command line: `serve`, `migrate`, `healthcheck` and `admin …`.
//!
//! [`run`] takes its output streams as arguments so tests drive the real CLI in-process.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::Config;

/// Ninsho remote signer — CSC API v2 signing with doctors' keys, under the gateway's tokens.
#[derive(Debug, Parser)]
#[command(name = "ninsho-signer", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without it, defaults and NINSHO_SIGNER_* variables apply.
    #[arg(long, global = true, env = "NINSHO_SIGNER_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signer.
    Serve,
    /// Create or upgrade the database (and the audit key on a first installation), then exit.
    Migrate,
    /// Ask a running signer's ops listener whether it is ready; exit 0 on 200, 1 otherwise.
    Healthcheck {
        /// The URL to ask; default `/readyz` on the configured `ops.listen`.
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage callers, credentials and the audit log.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// Verify a signed e-prescription document (FILE), or a signature made by signHash (its value
    /// under the certificate's key, the certificate's HPKI signing shape and, with --ca, its
    /// path). Exit 0 only if all pass.
    Verify(crate::verify::VerifyArgs),
}

/// The process entry point.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ninsho-signer: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(std::env::args().collect(), &mut std::io::stdout(), &mut std::io::stderr()));
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Parses `args` and runs the command; returns the exit code. Results go to `out`, errors and
/// usage to `err`.
pub async fn run(args: Vec<String>, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = if e.use_stderr() { write!(err, "{}", e.render()) } else { write!(out, "{}", e.render()) };
            return e.exit_code();
        }
    };
    crate::install_crypto_provider();
    match dispatch(cli, out).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "ninsho-signer: {}", infra::cli::error_message(&e));
            1
        }
    }
}

async fn dispatch(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            init_logging(&config);
            let app = crate::Application::build(config, std::sync::Arc::new(SystemClock)).await?;
            app.run_until(crate::server::shutdown_signal()).await
        }
        Command::Migrate => {
            let key = config.audit_key(true)?;
            let url = config.database_url()?;
            let store = crate::store::Store::connect(&url, 2, std::time::Duration::from_secs(10)).await?.with_audit_key(key);
            store.migrate().await?;
            writeln!(out, "database migrated ({})", store.backend_name())?;
            Ok(())
        }
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| {
                let mut addr = config.ops.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}/readyz")
            });
            let res = reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build()?.get(&url).send().await?;
            if !res.status().is_success() {
                anyhow::bail!("{url} answered {}", res.status());
            }
            writeln!(out, "ready")?;
            Ok(())
        }
        Command::Admin(cmd) => crate::admin::run(cmd, &config, out).await,
        Command::Verify(args) => {
            use crate::clock::Clock as _;
            let (report, ok) = match &args.file {
                Some(file) => crate::verify::run_document(&args, file, &config)?,
                None => crate::verify::run(&args, SystemClock.unix())?,
            };
            write!(out, "{report}")?;
            if !ok {
                anyhow::bail!("the signature or its certificate did not pass every check");
            }
            Ok(())
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if config.log.json { builder.json().try_init() } else { builder.try_init() };
}
