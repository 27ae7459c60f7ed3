//! The relay loop (docs/design.md §3.13): takes the clinic's requests from the gateway and writes
//! each into `req` at most once, finds the answers in `res` (file-system events and a periodic
//! rescan), uploads them and archives or deletes them; reconnects with backoff while the gateway
//! or the network is away.
//!
//! Two tasks share the folders: the taker long-polls the gateway for the next request, the
//! answerer scans `res` and uploads. A shutdown lets the file operation in progress finish.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::client::{CallError, Gateway};
use super::folders::{AfterUpload, Delivery, FolderConfig, FolderError, Folders};
use super::status::{Connection, RelayStatus};
use super::watch::ResWatcher;

/// The relay's configuration file (TOML), written by the set-up or by the operator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    /// The gateway's origin, e.g. `https://gateway.example:8443`.
    pub gateway: String,
    /// PEM of the CA that issued the gateway's server certificate; absent: the system's roots.
    #[serde(default)]
    pub gateway_ca: Option<PathBuf>,
    /// PEM holding the clinic's certificate and private key (mode 0600).
    pub identity: PathBuf,
    /// The clinic this agent was set up for; the gateway must name the same one.
    pub clinic_id: String,
    /// The OQS terminal's request folder.
    pub req: PathBuf,
    /// The OQS terminal's answer folder.
    pub res: PathBuf,
    /// Where answers go once uploaded (dated sub-folders); absent: they are deleted.
    #[serde(default)]
    pub archive: Option<PathBuf>,
    /// The journal and the agent's id.
    pub state_dir: PathBuf,
    /// Seconds between rescans of `res` (events may never come from a share).
    #[serde(default = "default_rescan")]
    pub rescan_secs: u64,
    /// Milliseconds an answer must stay unchanged before it is read.
    #[serde(default = "default_settle")]
    pub settle_ms: u64,
}

fn default_rescan() -> u64 {
    2
}

fn default_settle() -> u64 {
    500
}

impl RelayFile {
    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: Self = toml_from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if !file.gateway.starts_with("https://") {
            return Err(format!("{}: gateway must be an https:// URL", path.display()));
        }
        if file.rescan_secs == 0 || file.rescan_secs > 300 {
            return Err(format!("{}: rescan_secs must be 1..=300", path.display()));
        }
        Ok(file)
    }
}

fn toml_from_str(text: &str) -> Result<RelayFile, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::new().merge(Toml::string(text)).extract().map_err(|e| e.to_string())
}

/// The agent's stable id, made on first start in the state directory. The relay and the updater
/// both ask for it as the agent starts; on a first start both get the one id written first.
pub fn agent_id(state_dir: &Path) -> std::io::Result<String> {
    if let Some(id) = stored_agent_id(state_dir)? {
        return Ok(id);
    }
    claim_agent_id(state_dir, &uuid::Uuid::new_v4().to_string())
}

/// The id stored in the state directory, if any.
pub fn stored_agent_id(state_dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(state_dir.join("agent-id")) {
        Ok(id) if !id.trim().is_empty() => Ok(Some(id.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `id` unless an id is stored already, and returns the id that holds. The id is written
/// whole under a private name and then linked into place, which fails if the name exists: a reader
/// never sees half an id and two first starts cannot each keep their own.
pub fn claim_agent_id(state_dir: &Path, id: &str) -> std::io::Result<String> {
    std::fs::create_dir_all(state_dir)?;
    let draft = state_dir.join(format!(".agent-id.{}", uuid::Uuid::new_v4()));
    std::fs::write(&draft, id)?;
    let linked = std::fs::hard_link(&draft, state_dir.join("agent-id"));
    // The draft is only a name for the same bytes now (or a leftover if linking failed).
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(id.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => stored_agent_id(state_dir)?
            .ok_or_else(|| std::io::Error::other(format!("{} is empty", state_dir.join("agent-id").display()))),
        Err(e) => Err(e),
    }
}

/// Today in Japan, for the archive's dated folders (the clinics are in JST, which has no DST).
fn today_jst() -> time::Date {
    #[allow(clippy::disallowed_methods, reason = "the agent stamps archive folders with the wall-clock date; nothing is judged by it")]
    let now = time::OffsetDateTime::now_utc();
    now.to_offset(time::macros::offset!(+9)).date()
}

/// Runs the relay until `stop` turns true.
pub async fn run(file: RelayFile, version: &str, status: Arc<RelayStatus>, mut stop: watch::Receiver<bool>) -> Result<(), String> {
    let id = agent_id(&file.state_dir).map_err(|e| format!("agent id in {}: {e}", file.state_dir.display()))?;
    let gateway = Gateway::from_files(&file.gateway, &file.identity, file.gateway_ca.as_deref(), &id, version)?;
    let config = FolderConfig {
        req: file.req.clone(),
        res: file.res.clone(),
        after_upload: file.archive.clone().map_or(AfterUpload::Delete, AfterUpload::Archive),
        settle: Duration::from_millis(file.settle_ms),
    };
    // The folders may be a share that is not mounted yet: retry.
    let folders = loop {
        match Folders::open(config.clone(), &file.state_dir) {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(error = %e, "the OQS folders are not usable yet; retrying");
                status.set_connection(Connection::Failing { error: format!("OQS folders: {e}") });
                if wait_or_stop(&mut stop, Duration::from_secs(5)).await {
                    return Ok(());
                }
            }
        }
    };
    let folders = Arc::new(Mutex::new(folders));
    tracing::info!(agent.id = %id, clinic.id = %file.clinic_id, req = %file.req.display(), res = %file.res.display(), "OQS relay starting");
    let taker = tokio::spawn(take_loop(gateway.clone(), folders.clone(), file.clinic_id.clone(), status.clone(), stop.clone()));
    let answerer = tokio::spawn(answer_loop(gateway, folders, file, status, stop));
    let _ = taker.await;
    let _ = answerer.await;
    Ok(())
}

/// Sleeps `d` or until stopped; true when stopped.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = stopped(stop) => true,
        () = tokio::time::sleep(d) => is_stopped(stop),
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Doubling backoff from 1 s to 60 s while the gateway is away.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_secs(1))
    }

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(60));
        d
    }

    fn reset(&mut self) {
        self.0 = Duration::from_secs(1);
    }
}

fn lock(folders: &Mutex<Folders>) -> std::sync::MutexGuard<'_, Folders> {
    folders.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Heartbeat (checks the clinic), then: lease the next request, write it at most once, report it.
async fn take_loop(gateway: Gateway, folders: Arc<Mutex<Folders>>, clinic_id: String, status: Arc<RelayStatus>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    let mut checked = false;
    while !is_stopped(&stop) {
        if !checked {
            match gateway.heartbeat(&[]).await {
                Ok(hb) if hb.clinic_id == clinic_id => {
                    tracing::info!(clinic.id = %hb.clinic_id, clinic.name = %hb.clinic_name, "connected to the gateway");
                    status.set_connection(Connection::Connected { clinic_name: hb.clinic_name });
                    checked = true;
                    backoff.reset();
                }
                Ok(hb) => {
                    tracing::error!(expected = %clinic_id, named = %hb.clinic_id, "the certificate belongs to another clinic; not relaying");
                    status.set_connection(Connection::WrongClinic { named: hb.clinic_id });
                    if wait_or_stop(&mut stop, Duration::from_secs(60)).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway heartbeat failed; retrying");
                    status.set_connection(Connection::Failing { error: e.to_string() });
                    if wait_or_stop(&mut stop, backoff.next()).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let leased = tokio::select! {
            () = stopped(&mut stop) => return,
            r = gateway.next(Duration::from_secs(20)) => r,
        };
        let request = match leased {
            Ok(None) => {
                backoff.reset();
                continue;
            }
            Ok(Some(r)) => r,
            Err(e) => {
                tracing::warn!(error = %e, "taking the next request failed; retrying");
                status.set_connection(Connection::Failing { error: e.to_string() });
                // A refusal may mean the certificate or the clinic changed: check again.
                checked = !matches!(e, CallError::Refused { .. });
                if wait_or_stop(&mut stop, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let Ok(content) = STANDARD.decode(request.content.as_bytes()) else {
            tracing::error!(request.id = %request.request_id, "the gateway sent content that is not base64");
            continue;
        };
        // The write runs to its end even when a shutdown comes meanwhile.
        let written = {
            let mut f = lock(&folders);
            f.deliver(&request.request_id, &request.file_name, &content)
        };
        match written {
            Ok(Delivery::Written | Delivery::AlreadyDelivered) => {
                tracing::info!(request.id = %request.request_id, file = %request.file_name, size = content.len(), "request written into req");
                status.record(&request.request_id, &request.file_name, "written");
                report_delivered(&gateway, &folders, &request.request_id).await;
            }
            Err(FolderError::NameTaken(_)) => {
                tracing::warn!(request.id = %request.request_id, file = %request.file_name, "a file of that name is already in req; the request fails");
                status.record(&request.request_id, &request.file_name, "failed: name_taken");
                if let Err(e) = gateway.failed(&request.request_id, "name_taken").await {
                    tracing::warn!(error = %e, "reporting the failure failed");
                }
            }
            Err(e) => {
                // Nothing was delivered; the lease lapses and the request comes back.
                tracing::warn!(request.id = %request.request_id, error = %e, "writing into req failed; will retry");
                if wait_or_stop(&mut stop, backoff.next()).await {
                    return;
                }
            }
        }
    }
}

async fn report_delivered(gateway: &Gateway, folders: &Mutex<Folders>, id: &str) {
    match gateway.delivered(id).await {
        Ok(()) => {
            if let Err(e) = lock(folders).mark_reported(id) {
                tracing::warn!(request.id = %id, error = %e, "recording the report failed");
            }
        }
        Err(e @ CallError::Refused { .. }) if matches!(e.code(), Some("request_over" | "request_not_found")) => {
            tracing::warn!(request.id = %id, error = %e, "the request is over at the gateway; not waiting for its answer");
            let _ = lock(folders).abandon(id);
        }
        // Reported again by the answerer's next round.
        Err(e) => tracing::warn!(request.id = %id, error = %e, "reporting the delivery failed; will retry"),
    }
}

/// Every rescan (or file event): report unreported deliveries, upload complete answers, fail
/// oversized ones, and drop requests the gateway says have ended.
async fn answer_loop(gateway: Gateway, folders: Arc<Mutex<Folders>>, file: RelayFile, status: Arc<RelayStatus>, mut stop: watch::Receiver<bool>) {
    let watcher = match ResWatcher::start(&file.res) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "no file-system events from res; relying on the rescan");
            None
        }
    };
    // An answer is read once it stayed unchanged for the settle time: look again soon after.
    let nap = Duration::from_secs(file.rescan_secs).min(Duration::from_millis((file.settle_ms * 2).max(200)));
    let mut last_heartbeat = Instant::now();
    loop {
        let pending = lock(&folders).pending();
        for p in pending.iter().filter(|p| !p.reported) {
            report_delivered(&gateway, &folders, &p.id).await;
        }
        let (answers, oversized, settled) = {
            let mut f = lock(&folders);
            let now = Instant::now();
            let answers = f.scan(now);
            (answers, f.oversized(), f.next_settled(now))
        };
        for answer in answers {
            match gateway.response(&answer.id, &answer.file_name, &answer.content).await {
                Ok(()) => {
                    tracing::info!(request.id = %answer.id, file = %answer.file_name, size = answer.content.len(), "answer uploaded");
                    status.record(&answer.id, "", "answered");
                    if let Err(e) = lock(&folders).finish(&answer, today_jst()) {
                        tracing::warn!(request.id = %answer.id, error = %e, "archiving the answer failed");
                    }
                }
                Err(e) if matches!(e.code(), Some("request_over" | "request_not_found")) => {
                    tracing::warn!(request.id = %answer.id, error = %e, "the request is over at the gateway; the answer stays in res");
                    status.record(&answer.id, "", "over at the gateway");
                    let _ = lock(&folders).abandon(&answer.id);
                }
                Err(e) => tracing::warn!(request.id = %answer.id, error = %e, "uploading the answer failed; will retry"),
            }
        }
        for o in oversized {
            if gateway.failed(&o.id, "answer_too_large").await.is_ok() {
                status.record(&o.id, "", "failed: answer_too_large");
                let _ = lock(&folders).abandon(&o.id);
            }
        }
        if last_heartbeat.elapsed() >= Duration::from_secs(10) && !pending.is_empty() {
            last_heartbeat = Instant::now();
            let ids: Vec<String> = pending.iter().map(|p| p.id.clone()).take(256).collect();
            if let Ok(hb) = gateway.heartbeat(&ids).await {
                for over in hb.over {
                    tracing::info!(request.id = %over.request_id, status = %over.status, "the request ended at the gateway; no longer waiting for its answer");
                    status.record(&over.request_id, "", format!("over: {}", over.status));
                    let _ = lock(&folders).abandon(&over.request_id);
                }
            }
        }
        let woken = async {
            match &watcher {
                Some(w) => w.notified().notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = woken => {
                // Let a writer finish its burst before looking (the settle time still applies).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            () = tokio::time::sleep(nap) => {}
            // An answer first seen by this scan is read the moment it has settled.
            () = async {
                match settled {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        if is_stopped(&stop) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn first_starts_racing_for_the_id_all_get_the_same_one() {
        for _ in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let ids: Vec<String> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..4).map(|_| s.spawn(|| agent_id(&state).unwrap())).collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
            assert_eq!(stored_agent_id(&state).unwrap().as_deref(), Some(ids[0].as_str()));
            let names: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["agent-id"], "no drafts are left behind");
        }
    }

    #[test]
    fn a_stored_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(claim_agent_id(dir.path(), "first").unwrap(), "first");
        assert_eq!(claim_agent_id(dir.path(), "second").unwrap(), "first");
        assert_eq!(agent_id(dir.path()).unwrap(), "first");
    }
}
