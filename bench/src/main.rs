//! `bench`: the benchmark harness of issue 7. `bench run` is the whole comparison (see
//! `bench/run.sh`); `bench load` drives one scenario against any server and prints JSON;
//! `bench trivial-server` is the TLS + HTTP ceiling; `bench crypto` prints the crypto ceilings;
//! `bench soak` is the long mixed load of issue 16; `bench oqs` is the OQS relay of issue 21. The
//! hidden `signer-admin`, `signer-serve` and
//! `key-ceiling` run the remote signer and its key backend in a child process for the signHash
//! scenario (`signhash.rs`).

mod ceiling;
mod conn;
mod load;
mod oqs;
mod pgserver;
mod procstat;
mod report;
mod run;
mod setup;
mod signhash;
mod soak;
mod tlsconf;
mod verify;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "Ninsho Gateway benchmarks (issue 7)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything, in one run: ceilings, peer, gateway on SQLite and PostgreSQL; writes BENCHMARKS.md.
    Run(run::RunArgs),
    /// One load run against a server, result as JSON on stdout.
    Load(LoadArgs),
    /// A long mixed load (tokens, consumes, FIDO and card logins) at half the measured maximum:
    /// errors, p99 over time and the gateway's RSS slope, as a `## Soak` section.
    Soak(soak::SoakArgs),
    /// The OQS relay (issue 21): EMR clients → gateway → clinic agent → `req`/`res` folders → a
    /// terminal in this process and back; relayed requests/s and the added latency, as JSON and
    /// (`--out`) an `## OQS relay` section.
    Oqs(oqs::OqsArgs),
    /// The trivial mTLS server (constant body).
    TrivialServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        client_ca: PathBuf,
    },
    /// In-process crypto rates as JSON.
    Crypto {
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
    /// `ninsho-signer ARGS…` through the signer's own CLI (`signer::cli::run`), in this process.
    #[command(hide = true)]
    SignerAdmin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The remote signer (`signer::Application`) with the configuration `--config`, until SIGTERM.
    #[command(hide = true)]
    SignerServe {
        #[arg(long)]
        config: PathBuf,
    },
    /// The local TSA (`tsp::responder`) from the files in `--dir` (ca.pem, ca.key, tsa.pem,
    /// tsa.key) on 127.0.0.1:`--port`, until killed.
    #[command(hide = true)]
    TsaServe {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        port: u16,
    },
    /// RSA-2048 signatures per second of the key backend of the signer configuration `--config`,
    /// as JSON.
    #[command(hide = true)]
    KeyCeiling {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// TLS server name.
    #[arg(long, default_value = "localhost")]
    host: String,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, value_enum, default_value = "keep-alive")]
    mode: load::Mode,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Total operations per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Server process to sample for CPU and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// `GET PATH` per operation...
    #[arg(long, conflicts_with_all = ["token_doctors", "form"])]
    get: Option<String>,
    /// ...or a gateway signing token for a random doctor d1..=N of clinic 21234...
    #[arg(long)]
    token_doctors: Option<u64>,
    /// ...or `POST /token` with this form body (the peer).
    #[arg(long)]
    form: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    gateway::install_crypto_provider();
    match cmd {
        Cmd::SignerAdmin { args } => {
            let mut argv = vec!["ninsho-signer".to_owned()];
            argv.extend(args);
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            match signer::cli::run(argv, &mut out, &mut err).await {
                0 => Ok(()),
                code => anyhow::bail!("ninsho-signer exited with {code}"),
            }
        }
        Cmd::SignerServe { config } => {
            signer::install_crypto_provider();
            let config = signer::config::Config::load(Some(&config))?;
            let app = signer::Application::build(config, Arc::new(signer::clock::SystemClock)).await?;
            app.run_until(signer::server::shutdown_signal()).await
        }
        Cmd::TsaServe { dir, port } => {
            let read = |name: &str| std::fs::read_to_string(dir.join(name));
            let tsa = tsp::responder::Responder::from_pem(&read("ca.pem")?, &read("ca.key")?, &read("tsa.pem")?, &read("tsa.key")?)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            Arc::new(tsa).serve(listener, || infra::clock::Clock::unix(&infra::clock::SystemClock)).await?;
            Ok(())
        }
        Cmd::KeyCeiling { config, secs } => {
            let ceiling =
                tokio::task::spawn_blocking(move || signhash::key_ceiling(&config, secs)).await??;
            println!("{}", serde_json::to_string(&ceiling)?);
            Ok(())
        }
        Cmd::Run(mut args) => {
            if args.smoke {
                args.duration = 2.0;
                args.warmup = 0.5;
                args.concurrency = args.concurrency.min(8);
                args.newconn_concurrency = args.newconn_concurrency.min(4);
                args.fido_concurrency = args.fido_concurrency.min(4);
                args.card_concurrency = args.card_concurrency.min(4);
                args.login_concurrency = args.login_concurrency.min(4);
            }
            run::run(args).await
        }
        Cmd::Soak(args) => soak::soak(args).await,
        Cmd::Oqs(args) => oqs::oqs(args).await,
        Cmd::Load(a) => {
            let tls = tlsconf::client(&a.ca, &a.cert, &a.key, a.mode == load::Mode::KeepAlive)?;
            let target = conn::Target {
                addr: a.addr,
                host: a.host,
                tls,
            };
            let workload = match (a.get, a.token_doctors, a.form) {
                (Some(path), None, None) => workload::Workload::Get { path },
                (None, Some(doctors), None) => workload::Workload::Token {
                    clinic: setup::CLINIC.into(),
                    doctors,
                },
                (None, None, Some(body)) => workload::Workload::PeerToken { body: body.into() },
                _ => anyhow::bail!("give exactly one of --get, --token-doctors, --form"),
            };
            let spec = load::Spec {
                concurrency: a.concurrency,
                warmup: Duration::from_secs_f64(a.warmup),
                duration: Duration::from_secs_f64(a.duration),
                mode: a.mode,
                rate: a.rate,
                server_pid: a.pid,
                second_pid: None,
                db: None,
            };
            let result = load::run(&target, Arc::new(workload), &spec).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }
        Cmd::TrivialServer {
            listen,
            cert,
            key,
            client_ca,
        } => ceiling::trivial_server(listen, tlsconf::server(&cert, &key, &client_ca)?).await,
        Cmd::Crypto { secs } => {
            let rates = tokio::task::spawn_blocking(move || {
                ceiling::crypto_rates(Duration::from_secs_f64(secs))
            })
            .await??;
            println!("{}", serde_json::to_string_pretty(&rates)?);
            Ok(())
        }
    }
}
