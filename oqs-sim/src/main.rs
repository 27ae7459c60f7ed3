//! `oqs-sim` binary: checks the two folders, prints `oqs-sim watching <req> -> <res>` on stdout (one
//! line, so scripts and tests know it is ready), then answers requests until Ctrl-C or SIGTERM, finishing
//! the answer it is writing. Logs go to stderr, at the level named by `OQS_SIM_LOG` (`error`, `warn`
//! (the default), `info`, `debug`, `trace`).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use oqs_sim::Options;

/// Simulates the OQS terminal's file interface: answers request files dropped into a request folder
/// with answer files in an answer folder.
#[derive(Debug, Parser)]
#[command(name = "oqs-sim", version)]
struct Args {
    /// The request folder the terminal polls (its `req` share).
    #[arg(long, value_name = "DIR")]
    req: PathBuf,
    /// The answer folder the terminal writes into (its `res` share).
    #[arg(long, value_name = "DIR")]
    res: PathBuf,
    /// Milliseconds between picking up a request and writing its answer.
    #[arg(long, value_name = "N", default_value_t = 200)]
    delay_ms: u64,
    /// Milliseconds between two looks into the request folder.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    poll_ms: u64,
    /// Consume every Nth request (counted from 1) without ever answering it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    drop_every: Option<u32>,
    /// Write each answer in place in two parts: about half the bytes, then the rest N ms later.
    #[arg(long, value_name = "N")]
    partial_ms: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        req: args.req,
        res: args.res,
        delay: Duration::from_millis(args.delay_ms),
        poll: Duration::from_millis(args.poll_ms),
        drop_every: args.drop_every,
        partial: args.partial_ms.map(Duration::from_millis),
    };
    if let Err(e) = options.check() {
        eprintln!("oqs-sim: {e}");
        return ExitCode::from(2);
    }
    let level = std::env::var("OQS_SIM_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(tracing::Level::WARN);
    let _ = tracing::subscriber::set_global_default(StderrLog { max: level });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("oqs-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let ready = writeln!(stdout, "oqs-sim watching {} -> {}", options.req.display(), options.res.display())
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = ready {
        eprintln!("oqs-sim: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    match runtime.block_on(oqs_sim::run(options, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oqs-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C, or on SIGTERM where there are signals.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
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

/// The smallest `tracing` subscriber that writes events to stderr, one line each, with their fields
/// (spans are ignored): the simulator needs no more, and so no formatting crate.
struct StderrLog {
    max: tracing::Level,
}

impl tracing::Subscriber for StderrLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("oqs-sim {}:", event.metadata().level());
        event.record(&mut Fields(&mut line));
        // Logging must never stop the terminal: a closed stderr is ignored.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Appends an event's fields to a log line: the message bare, the others as `name=value`.
struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
