//! `card-agent` binary: parses flags and the config file, binds 127.0.0.1, prints the listening
//! address on stdout (one line, so supervisors and tests know it is ready), serves until Ctrl-C/SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use card_agent::relay::run::RelayFile;
use card_agent::relay::supervisor::Supervisor;
use card_agent::{Args, Config, LogFormat, update};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.self_test {
        return card_agent::update::self_test();
    }
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("card-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("CARD_AGENT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("card-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("card-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> std::io::Result<()> {
    let target = card_agent::setup_target(&config);
    // The path the service manager starts, resolved before an update replaces the file.
    let settings = update::Settings {
        data_dir: config.data_dir.clone(),
        relay_file: target.relay_file.clone(),
        exe: std::env::current_exe()?,
        check_every: config.update.check_every,
        auto_update_hour: config.update.auto_update_hour,
        health_bound: config.update.health_bound,
    };
    // An update may have been interrupted, or the new binary may not come up: settle that first.
    let start = update::on_start(&settings);
    if matches!(start, update::Start::Exit) {
        return Ok(());
    }
    // An explicit --relay file must be usable; the set-up's own file is re-made by the set-up.
    let relay = match RelayFile::load(&target.relay_file) {
        Ok(file) => Some(file),
        Err(e) if config.relay.is_some() => return Err(std::io::Error::other(e)),
        Err(e) => {
            if target.relay_file.exists() {
                tracing::warn!(error = %e, "the relay configuration cannot be used; set up again");
            }
            None
        }
    };
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    println!("card-agent listening on http://{addr}");
    tracing::info!(%addr, origins = ?config.allowed_origins, "listening");
    let supervisor = Arc::new(Supervisor::new(card_agent::VERSION));
    let updater = Arc::new(update::Updater::new(settings, &start));
    tokio::spawn(updater.clone().run());
    match relay {
        Some(file) => supervisor.start(file).await,
        None => {
            tracing::info!(url = %format!("http://{addr}/setup"), "the OQS relay is not set up yet; open the set-up page");
        }
    }
    let exit = updater.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {},
            // An update is in place (or the previous binary is back): exit 0 for the service
            // manager to start the binary now at this path.
            () = exit.exit_requested() => {},
        }
    };
    let served = card_agent::serve_with_updater(&config, listener, supervisor.clone(), Some(updater), shutdown).await;
    // The relay finishes the file operation in progress before it returns.
    supervisor.stop().await;
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
