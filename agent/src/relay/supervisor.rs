//! Starts, restarts and stops the relay: at start when a configuration exists, again when the
//! set-up page stores a new one, and once at shutdown (which lets the file operation in progress
//! finish).

use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::run::{RelayFile, run};
use super::status::RelayStatus;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Owns the running relay, if any.
pub struct Supervisor {
    version: &'static str,
    status: Arc<RelayStatus>,
    running: Mutex<Option<Running>>,
}

impl Supervisor {
    /// A supervisor with no relay running; `version` is reported to the gateway.
    pub fn new(version: &'static str) -> Self {
        Self { version, status: Arc::new(RelayStatus::default()), running: Mutex::new(None) }
    }

    /// What the relay is doing.
    pub fn status(&self) -> &Arc<RelayStatus> {
        &self.status
    }

    /// Runs the relay on `file`, after stopping the one running (its file operation finishes first).
    pub async fn start(&self, file: RelayFile) {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            stop(old).await;
        }
        let (tx, rx) = watch::channel(false);
        let (version, status) = (self.version, self.status.clone());
        status.set_running(true);
        let task = tokio::spawn(async move {
            if let Err(e) = run(file, version, status.clone(), rx).await {
                tracing::error!(error = %e, "the OQS relay stopped");
                status.set_connection(super::status::Connection::Failing { error: e });
            }
        });
        *running = Some(Running { stop: tx, task });
    }

    /// Stops the relay (if one runs) and waits for it.
    pub async fn stop(&self) {
        if let Some(old) = self.running.lock().await.take() {
            stop(old).await;
            self.status.set_running(false);
        }
    }
}

async fn stop(running: Running) {
    let _ = running.stop.send(true);
    let _ = running.task.await;
}
