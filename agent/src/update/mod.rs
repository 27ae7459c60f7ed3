//! The agent updates itself (docs/design.md §3.15, decision 0019): it asks the gateway for a
//! newer release at start and every few hours, shows the offer on its status page, and on はい (or
//! at the operator's hour) downloads the binary into `DATA_DIR/update/`, checks it against the
//! release keys compiled into this build, its own target and version, runs the new binary's
//! self-test, swaps the executables keeping the previous one, and exits for the service manager
//! to start the new binary. The new binary must become healthy (listening and one successful
//! gateway call) within a bound; if it does not, or crashes at start twice, the previous binary
//! is put back. Every step is logged and reported to the gateway.

mod files;
mod swap;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use release::{BinaryCheck, Manifest, Refusal, Target, TrustedKeys, Version};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Notify, mpsc};

pub use files::{Pending, update_dir};
pub use swap::previous_path;

use crate::relay::client::{CallError, Gateway};
use crate::relay::run::RelayFile;
use crate::{TARGET, VERSION};

/// The release keys compiled into this build (agent/build.rs: `NINSHO_AGENT_RELEASE_KEY_1`,
/// `_2`). Without a first key updates are off: nothing is trusted.
pub fn trusted_keys() -> Result<TrustedKeys, String> {
    let (primary, secondary) = (
        env!("NINSHO_AGENT_BUILD_KEY_1"),
        env!("NINSHO_AGENT_BUILD_KEY_2"),
    );
    if primary.is_empty() {
        return Err(if secondary.is_empty() {
            "this build has no release keys".to_owned()
        } else {
            "this build has a second release key but no first one".to_owned()
        });
    }
    TrustedKeys::from_slots(primary, secondary)
        .map_err(|e| format!("the compiled release keys: {e}"))
}

/// This build's version, parsed.
fn own_version() -> Version {
    Version::parse(VERSION).unwrap_or_else(|_| Version::new(0, 0, 0))
}

/// `card-agent --self-test`: what a new binary must pass before it replaces the running one —
/// its version and target parse, its release keys are usable (a build that could never update
/// again is not installed), a runtime starts and binds loopback. Prints
/// `card-agent self-test ok: version V target T` and exits 0, else says why and exits 1.
pub fn self_test() -> ExitCode {
    let checks = || -> Result<(), String> {
        Version::parse(VERSION).map_err(|e| format!("version {VERSION}: {e}"))?;
        TARGET
            .parse::<Target>()
            .map_err(|e| format!("target {TARGET}: {e}"))?;
        trusted_keys()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        runtime
            .block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.map(drop) })
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))
    };
    match checks() {
        Ok(()) => {
            println!("card-agent self-test ok: version {VERSION} target {TARGET}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("card-agent self-test failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Test builds only: stops the process at the named step (`NINSHO_AGENT_CRASH_AT`), as a crash
/// or `kill -9` would, with nothing cleaned up.
fn crash_point(name: &str) {
    #[cfg(ninsho_agent_test_hooks)]
    if std::env::var("NINSHO_AGENT_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("card-agent: test hook: crashing at {name}");
        std::process::abort();
    }
    #[cfg(not(ninsho_agent_test_hooks))]
    let _ = name;
}

/// What the updater needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data directory (`update/` goes in it).
    pub data_dir: PathBuf,
    /// The relay's configuration: the gateway, the clinic's certificate, the agent's id.
    pub relay_file: PathBuf,
    /// The running executable, resolved at start (the service manager starts this path).
    pub exe: PathBuf,
    /// Time between checks.
    pub check_every: Duration,
    /// Install offers automatically at this hour (JST), if set.
    pub auto_update_hour: Option<u8>,
    /// How long a new binary has to become healthy.
    pub health_bound: Duration,
}

impl Settings {
    fn dir(&self) -> PathBuf {
        update_dir(&self.data_dir)
    }
}

/// What a start must do, decided before the agent listens.
#[derive(Debug)]
pub enum Start {
    /// No update is pending.
    Normal,
    /// This binary was just installed: it must become healthy within the bound.
    Probation(Pending),
    /// The previous binary was put back: exit for the service manager to start it.
    Exit,
}

/// Runs at every start, before anything else: finishes or undoes what an update left behind.
///
/// - no `pending.json`: partial downloads and staged binaries are removed;
/// - `pending.json` for another version: the swap never completed (a crash before the final
///   rename), or the previous binary was put back: it is cleared;
/// - `pending.json` for this version with 2 or more starts already: this binary does not come
///   up; the previous one is put back ([`Start::Exit`]);
/// - else the start is counted and the binary is on probation.
pub fn on_start(settings: &Settings) -> Start {
    let dir = settings.dir();
    let pending = match files::read_pending(&dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "update: pending.json cannot be read; it is removed");
            let _ = files::clear_pending(&dir);
            None
        }
    };
    // Partial downloads, staged binaries and a `.new` copy are never needed again: a swap that
    // reached its final rename no longer uses them, one that did not is abandoned.
    files::remove_leftovers(&dir);
    swap::remove_new(&settings.exe);
    match pending {
        None => Start::Normal,
        Some(p) if p.version != VERSION => {
            tracing::warn!(release.version = %p.version, running = VERSION, "update: the swap to this release did not complete; the running binary stays");
            if files::read_report(&dir).ok().flatten().is_none() {
                let detail = format!("the swap did not complete; {VERSION} runs");
                let _ = files::write_report(
                    &dir,
                    &files::Report {
                        step: "swap".to_owned(),
                        version: p.version.clone(),
                        outcome: "failure".to_owned(),
                        detail,
                    },
                );
            }
            if let Err(e) = files::clear_pending(&dir) {
                tracing::error!(error = %e, "update: pending.json cannot be removed");
            }
            Start::Normal
        }
        Some(p) if p.attempts >= 2 => {
            let reason = format!(
                "{} did not become healthy in {} starts",
                p.version, p.attempts
            );
            roll_back(&dir, &p, &reason)
        }
        Some(mut p) => {
            p.attempts += 1;
            tracing::info!(release.version = %p.version, attempt = p.attempts, "update: the new binary starts; it must become healthy");
            if let Err(e) = files::write_pending(&dir, &p) {
                tracing::error!(error = %e, "update: pending.json cannot be written");
            }
            Start::Probation(p)
        }
    }
}

/// Puts the previous binary back; [`Start::Exit`] when it did.
fn roll_back(dir: &Path, pending: &Pending, reason: &str) -> Start {
    tracing::error!(release.version = %pending.version, reason, "update: rolling back to the previous binary");
    let _ = files::record_failed(dir, &pending.version);
    let report = files::Report {
        step: "rollback".to_owned(),
        version: pending.version.clone(),
        outcome: "success".to_owned(),
        detail: reason.to_owned(),
    };
    let _ = files::write_report(dir, &report);
    match swap::rollback(pending, dir) {
        Ok(()) => {
            tracing::warn!(previous = %pending.previous.display(), "update: the previous binary is back; exiting for the service manager to start it");
            Start::Exit
        }
        Err(e) => {
            tracing::error!(error = %e, "update: the previous binary cannot be put back; this one keeps running");
            let report = files::Report {
                step: "rollback".to_owned(),
                version: pending.version.clone(),
                outcome: "failure".to_owned(),
                detail: format!("{reason}; {e}"),
            };
            let _ = files::write_report(dir, &report);
            let _ = files::clear_pending(dir);
            Start::Normal
        }
    }
}

/// What the status page shows about updates (ja and en texts come from the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// Updates are off (no release keys in this build).
    Off {
        /// Why.
        why: String,
    },
    /// Not asked yet, or the relay is not set up (no gateway to ask).
    Unknown,
    /// Nothing newer.
    UpToDate,
    /// A verified release is offered: はい / いいえ.
    Offered {
        /// Its version.
        version: String,
        /// Its notes.
        notes_ja: String,
        /// Its notes.
        notes_en: String,
        /// Installed automatically at this hour (JST), if set.
        auto_hour: Option<u8>,
    },
    /// The staff said いいえ.
    Declined {
        /// The version.
        version: String,
    },
    /// Installing: downloading, checking, self-test, swap.
    Working {
        /// The version.
        version: String,
    },
    /// A release was refused, or a step failed; nothing was changed.
    Refused {
        /// The version offered.
        version: String,
        /// Why, in Japanese.
        ja: String,
        /// Why, in English.
        en: String,
    },
    /// The swap is done; the tool exits.
    Ready {
        /// The new version.
        version: String,
    },
    /// This binary was just installed and is proving itself.
    Probation {
        /// Its version.
        version: String,
    },
}

/// Why an install step failed: the step (as reported), what the page says, what the log says.
struct Failure {
    step: &'static str,
    ja: String,
    en: String,
}

impl Failure {
    fn new(step: &'static str, ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self {
            step,
            ja: ja.into(),
            en: en.into(),
        }
    }

    fn refusal(step: &'static str, r: &Refusal) -> Self {
        Self::new(
            step,
            format!("{}（{}）", refusal_ja(r), r.code()),
            format!("{r} ({})", r.code()),
        )
    }
}

/// A refusal in Japanese (the English is the refusal's own text).
pub fn refusal_ja(r: &Refusal) -> &'static str {
    match r {
        Refusal::MalformedSignature(_) => "署名の形式が正しくありません。",
        Refusal::UnknownKey { .. } => "信頼していない鍵で署名されています。",
        Refusal::BadSignature { .. } => "署名が一致しません（改ざんされた可能性があります）。",
        Refusal::MalformedManifest(_) => "リリース情報の形式が正しくありません。",
        Refusal::WrongTarget { .. } => "このパソコン用のリリースではありません。",
        Refusal::NotNewer { .. } => {
            "現在のバージョン（または以前に確認したバージョン）より新しくありません。"
        }
        Refusal::SizeMismatch { .. } => "ダウンロードしたファイルのサイズが一致しません。",
        Refusal::HashMismatch { .. } => {
            "ダウンロードしたファイルの SHA-256 が一致しません（改ざんされた可能性があります）。"
        }
        _ => "リリースを確認できませんでした。",
    }
}

/// The updater: checks, shows, installs, and watches a new binary's first start.
pub struct Updater {
    settings: Settings,
    keys: Result<TrustedKeys, String>,
    probation: Mutex<Option<Pending>>,
    shown: Mutex<Shown>,
    answers: mpsc::Sender<bool>,
    answers_rx: Mutex<Option<mpsc::Receiver<bool>>>,
    exit: Notify,
    /// The last refusal reported (version, code), so a refused release is reported once.
    last_refusal: Mutex<Option<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hour in Japan (the clinics are in JST, which has no DST), for `auto_update_hour`.
fn hour_jst() -> u8 {
    #[allow(
        clippy::disallowed_methods,
        reason = "the operator's update hour is wall-clock time; nothing is judged by it"
    )]
    let now = time::OffsetDateTime::now_utc();
    now.to_offset(time::macros::offset!(+9)).hour()
}

impl Updater {
    /// An updater; `start` is what [`on_start`] decided.
    pub fn new(settings: Settings, start: &Start) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let keys = trusted_keys();
        let probation = match start {
            Start::Probation(p) => Some(p.clone()),
            _ => None,
        };
        let shown = match (&keys, &probation) {
            (_, Some(p)) => Shown::Probation {
                version: p.version.clone(),
            },
            (Err(why), None) => Shown::Off { why: why.clone() },
            (Ok(_), None) => Shown::Unknown,
        };
        Self {
            settings,
            keys,
            probation: Mutex::new(probation),
            shown: Mutex::new(shown),
            answers: tx,
            answers_rx: Mutex::new(Some(rx)),
            exit: Notify::new(),
            last_refusal: Mutex::new(None),
        }
    }

    /// What the page shows.
    pub fn shown(&self) -> Shown {
        lock(&self.shown).clone()
    }

    fn show(&self, shown: Shown) {
        *lock(&self.shown) = shown;
    }

    /// The staff's answer to the offer (はい = true). False when nothing is offered.
    pub fn answer(&self, yes: bool) -> bool {
        if !matches!(self.shown(), Shown::Offered { .. }) {
            return false;
        }
        self.answers.try_send(yes).is_ok()
    }

    /// Resolves when the agent should exit for the service manager (an update is in place, or
    /// the previous binary was put back).
    pub async fn exit_requested(&self) {
        self.exit.notified().await;
    }

    fn gateway(&self) -> Result<Gateway, String> {
        let file = RelayFile::load(&self.settings.relay_file)?;
        let id =
            crate::relay::run::agent_id(&file.state_dir).map_err(|e| format!("agent id: {e}"))?;
        Gateway::from_files(
            &file.gateway,
            &file.identity,
            file.gateway_ca.as_deref(),
            &id,
            VERSION,
        )
    }

    async fn report(
        &self,
        gateway: &Gateway,
        step: &str,
        version: &str,
        outcome: &str,
        detail: &str,
    ) {
        if release::parse_version(version).is_err() {
            return;
        }
        match gateway.update_report(step, version, outcome, detail).await {
            Ok(()) => tracing::debug!(
                step,
                release.version = version,
                outcome,
                "update: reported to the gateway"
            ),
            Err(e) => {
                tracing::warn!(step, release.version = version, outcome, error = %e, "update: the report did not reach the gateway")
            }
        }
    }

    /// Sends the report an earlier start left (a rollback, an interrupted swap).
    async fn flush_report(&self, gateway: &Gateway) {
        let dir = self.settings.dir();
        let Ok(Some(r)) = files::read_report(&dir) else {
            return;
        };
        if gateway
            .update_report(&r.step, &r.version, &r.outcome, &r.detail)
            .await
            .is_ok()
        {
            tracing::info!(step = %r.step, release.version = %r.version, outcome = %r.outcome, detail = %r.detail, "update: reported to the gateway");
            let _ = files::clear_report(&dir);
        }
    }

    /// Runs the updater until the agent exits.
    pub async fn run(self: Arc<Self>) {
        let Some(mut answers) = lock(&self.answers_rx).take() else {
            return;
        };
        let probation = lock(&self.probation).take();
        if let Some(p) = probation
            && !self.prove_healthy(&p).await
        {
            return;
        }
        let keys = match &self.keys {
            Ok(keys) => keys.clone(),
            Err(why) => {
                tracing::warn!(why = %why, "update: updates are off");
                self.show(Shown::Off { why: why.clone() });
                return;
            }
        };
        loop {
            let offered = self.check(&keys).await;
            let next_check = tokio::time::Instant::now() + self.settings.check_every;
            let Some((manifest, gateway)) = offered else {
                tokio::time::sleep_until(next_check).await;
                continue;
            };
            // Wait for はい / いいえ, the operator's hour, or the next check.
            let version = manifest.version.to_string();
            let install = loop {
                tokio::select! {
                    answer = answers.recv() => match answer {
                        Some(true) => {
                            tracing::info!(release.version = %version, "update: accepted on the status page");
                            break true;
                        }
                        Some(false) => {
                            tracing::info!(release.version = %version, "update: declined on the status page");
                            self.show(Shown::Declined { version: version.clone() });
                            self.report(&gateway, "prompt", &version, "declined", "declined on the status page").await;
                            tokio::time::sleep_until(next_check).await;
                            break false;
                        }
                        None => std::future::pending::<()>().await,
                    },
                    () = tokio::time::sleep(Duration::from_secs(30)) => {
                        if self.settings.auto_update_hour.is_some_and(|h| h == hour_jst()) {
                            tracing::info!(release.version = %version, "update: installing at the configured hour");
                            break true;
                        }
                        if tokio::time::Instant::now() >= next_check {
                            break false;
                        }
                    }
                }
            };
            while answers.try_recv().is_ok() {}
            if !install {
                continue;
            }
            self.report(&gateway, "prompt", &version, "success", "accepted")
                .await;
            self.show(Shown::Working {
                version: version.clone(),
            });
            match self.install(&gateway, &manifest).await {
                Ok(()) => {
                    tracing::info!(release.version = %version, "update: ready; the tool exits for the service manager to start the new version");
                    self.show(Shown::Ready { version });
                    // Time for the page to show the message before the listener closes.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    self.exit.notify_one();
                    return;
                }
                Err(f) => {
                    tracing::error!(release.version = %version, step = f.step, error = %f.en, "update: not installed; nothing was changed");
                    self.report(&gateway, f.step, &version, "failure", &f.en)
                        .await;
                    self.show(Shown::Refused {
                        version,
                        ja: f.ja,
                        en: f.en,
                    });
                    tokio::time::sleep_until(next_check).await;
                }
            }
        }
    }

    /// A new binary's first start: healthy once listening (it is, when this runs) and one gateway
    /// call succeeded within the bound; else the previous binary is put back. False when the
    /// agent must exit.
    async fn prove_healthy(&self, pending: &Pending) -> bool {
        let dir = self.settings.dir();
        crash_point("probation");
        let healthy = async {
            loop {
                match self.gateway() {
                    Ok(gateway) => match gateway.latest_release(TARGET, VERSION).await {
                        Ok(_) => return gateway,
                        Err(e) => {
                            tracing::warn!(error = %e, "update: the new binary cannot reach the gateway yet")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "update: the new binary has no gateway to ask")
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };
        match tokio::time::timeout(self.settings.health_bound, healthy).await {
            Ok(gateway) => {
                if let Err(e) = files::clear_pending(&dir) {
                    tracing::error!(error = %e, "update: pending.json cannot be removed");
                }
                let _ = files::clear_report(&dir);
                tracing::info!(
                    release.version = VERSION,
                    "update: the new version is healthy; the update is complete"
                );
                let detail = format!("{VERSION} runs (start {})", pending.attempts);
                self.report(&gateway, "restart", VERSION, "success", &detail)
                    .await;
                self.show(Shown::UpToDate);
                true
            }
            Err(_) => {
                let reason = format!(
                    "{VERSION} did not become healthy within {} s",
                    self.settings.health_bound.as_secs()
                );
                match roll_back(&dir, pending, &reason) {
                    Start::Exit => {
                        self.exit.notify_one();
                        false
                    }
                    _ => true,
                }
            }
        }
    }

    /// Asks the gateway and verifies what it offers: the offer, shown, or `None`.
    async fn check(&self, keys: &TrustedKeys) -> Option<(Manifest, Gateway)> {
        let gateway = match self.gateway() {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(error = %e, "update: not checking (the relay is not set up)");
                self.show(Shown::Unknown);
                return None;
            }
        };
        self.flush_report(&gateway).await;
        let offer = match gateway.latest_release(TARGET, VERSION).await {
            Ok(Some(offer)) => offer,
            Ok(None) => {
                tracing::info!(running = VERSION, "update: no newer release");
                self.show(Shown::UpToDate);
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "update: cannot ask the gateway for releases");
                return None;
            }
        };
        let dir = self.settings.dir();
        let verified = verify_offer(&offer.manifest, &offer.signature, keys, &dir);
        match verified {
            Ok(manifest) => {
                let version = manifest.version.to_string();
                if files::failed_version(&dir).is_some_and(|f| f == manifest.version) {
                    tracing::info!(release.version = %version, "update: this release failed here before; waiting for a newer one");
                    self.show(Shown::Refused {
                        version,
                        ja: "このリリースは以前このパソコンで正常に動作しなかったため、更新しません。新しいリリースを待っています。".to_owned(),
                        en: "This release did not work on this PC before and is not installed again; waiting for a newer release.".to_owned(),
                    });
                    return None;
                }
                tracing::info!(release.version = %version, running = VERSION, notes.en = %manifest.notes.en, "update: a new release is offered");
                self.show(Shown::Offered {
                    version,
                    notes_ja: manifest.notes.ja.clone(),
                    notes_en: manifest.notes.en.clone(),
                    auto_hour: self.settings.auto_update_hour,
                });
                *lock(&self.last_refusal) = None;
                Some((manifest, gateway))
            }
            Err(r) => {
                let failure = Failure::refusal("verify", &r);
                tracing::warn!(release.version = %offer.version, code = r.code(), error = %r, "update: the offered release is refused; nothing was changed");
                let key = (offer.version.clone(), r.code().to_owned());
                let new = lock(&self.last_refusal).replace(key.clone()) != Some(key);
                if new {
                    self.report(&gateway, "verify", &offer.version, "failure", &failure.en)
                        .await;
                }
                self.show(Shown::Refused {
                    version: offer.version,
                    ja: failure.ja,
                    en: failure.en,
                });
                None
            }
        }
    }

    /// Download, check, self-test, swap.
    async fn install(&self, gateway: &Gateway, manifest: &Manifest) -> Result<(), Failure> {
        let dir = self.settings.dir();
        let version = manifest.version.to_string();
        let staged = self.download(gateway, manifest, &dir).await?;
        crash_point("verified");
        self.report(
            gateway,
            "verify",
            &version,
            "success",
            &format!("{} bytes, SHA-256 {}", manifest.size, manifest.sha256),
        )
        .await;
        if let Err(e) = files::record_verified(&dir, &manifest.version) {
            tracing::warn!(error = %e, "update: the highest verified version cannot be recorded");
        }

        if let Err(why) = run_self_test(&staged, &version).await {
            let _ = std::fs::remove_file(&staged);
            let _ = files::record_failed(&dir, &version);
            return Err(Failure::new(
                "self_test",
                format!("新しいツールの自己診断が失敗しました。更新していません: {why}"),
                format!("the new binary's self-test failed; nothing was swapped: {why}"),
            ));
        }
        tracing::info!(release.version = %version, "update: the new binary passed its self-test");
        self.report(gateway, "self_test", &version, "success", "")
            .await;
        crash_point("self_tested");

        let exe = self.settings.exe.clone();
        let (staged2, dir2, version2) = (staged.clone(), dir.clone(), version.clone());
        let swapped = tokio::task::spawn_blocking(move || {
            swap::install(&staged2, &exe, &dir2, &version2, &|step| {
                tracing::info!(step = step.name(), "update: swap step done");
                crash_point(step.name());
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = swapped {
            // Undo what is undoable: the running binary never moved (Unix) or is back.
            let _ = files::clear_pending(&dir);
            swap::remove_new(&self.settings.exe);
            let _ = std::fs::remove_file(&staged);
            return Err(Failure::new(
                "swap",
                format!("ファイルを入れ替えられませんでした: {e}"),
                format!("the binaries could not be swapped: {e}"),
            ));
        }
        tracing::info!(release.version = %version, exe = %self.settings.exe.display(), previous = %previous_path(&self.settings.exe).display(), "update: swapped; the previous binary is kept");
        self.report(gateway, "swap", &version, "success", "").await;
        Ok(())
    }

    /// Streams the binary into `update/download.part` through [`BinaryCheck`], then renames it to
    /// the staged name, executable. Any refusal removes the part file.
    async fn download(
        &self,
        gateway: &Gateway,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<PathBuf, Failure> {
        let version = manifest.version.to_string();
        let part = files::download_part(dir);
        let fail_io = |e: std::io::Error| {
            Failure::new(
                "download",
                format!("ダウンロードを保存できません: {e}"),
                format!("the download cannot be stored: {e}"),
            )
        };
        tokio::fs::create_dir_all(dir).await.map_err(fail_io)?;
        tracing::info!(release.version = %version, size = manifest.size, "update: downloading");
        let result = async {
            let mut response = gateway
                .download_release(
                    &version,
                    manifest.target.as_str(),
                    Duration::from_secs(30 * 60),
                )
                .await
                .map_err(|e: CallError| {
                    Failure::new(
                        "download",
                        format!("ダウンロードできません: {e}"),
                        format!("the download failed: {e}"),
                    )
                })?;
            let mut file = tokio::fs::File::create(&part).await.map_err(fail_io)?;
            let mut check = BinaryCheck::new(manifest);
            let mut written = 0u64;
            let half = manifest.size / 2;
            loop {
                let chunk = response.chunk().await.map_err(|e| {
                    Failure::new(
                        "download",
                        format!("ダウンロードが途中で切れました: {e}"),
                        format!("the download broke off (truncated): {e}"),
                    )
                })?;
                let Some(chunk) = chunk else { break };
                check
                    .update(&chunk)
                    .map_err(|r| Failure::refusal("verify", &r))?;
                file.write_all(&chunk).await.map_err(fail_io)?;
                let before = written;
                written += chunk.len() as u64;
                if before < half && written >= half {
                    file.flush().await.map_err(fail_io)?;
                    crash_point("download");
                }
            }
            check.finish().map_err(|r| Failure::refusal("verify", &r))?;
            file.sync_all().await.map_err(fail_io)?;
            Ok::<(), Failure>(())
        }
        .await;
        if let Err(f) = result {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(f);
        }
        self.report(
            gateway,
            "download",
            &version,
            "success",
            &format!("{} bytes", manifest.size),
        )
        .await;
        let staged = files::staged(dir, &version);
        std::fs::rename(&part, &staged)
            .and_then(|()| swap::set_executable(&staged))
            .map_err(|e| {
                let _ = std::fs::remove_file(&part);
                fail_io(e)
            })?;
        tracing::info!(release.version = %version, "update: downloaded; size and SHA-256 match the signed manifest");
        Ok(staged)
    }
}

/// The offer's manifest under the compiled keys, for this target, newer than this build and not
/// older than the highest release verified here before (a replayed older release).
fn verify_offer(
    manifest_b64: &str,
    signature: &str,
    keys: &TrustedKeys,
    dir: &Path,
) -> Result<Manifest, Refusal> {
    let bytes = STANDARD
        .decode(manifest_b64.trim())
        .map_err(|_| Refusal::MalformedManifest("the offer's manifest is not base64".to_owned()))?;
    let target = TARGET
        .parse::<Target>()
        .map_err(|e| Refusal::MalformedManifest(format!("this build's target: {e}")))?;
    verify_for(
        &bytes,
        signature,
        keys,
        &target,
        &own_version(),
        files::highest_verified(dir).as_ref(),
    )
}

/// [`release::verify_update`], then: not older than `highest` (equal is the same signed release
/// again, e.g. after an interrupted swap).
fn verify_for(
    bytes: &[u8],
    signature: &str,
    keys: &TrustedKeys,
    target: &Target,
    own: &Version,
    highest: Option<&Version>,
) -> Result<Manifest, Refusal> {
    let manifest = release::verify_update(bytes, signature, keys, target, own)?;
    if let Some(h) = highest
        && manifest.version < *h
    {
        return Err(Refusal::NotNewer {
            current: h.clone(),
            offered: manifest.version,
        });
    }
    Ok(manifest)
}

/// Runs `binary --self-test` (bounded): exit 0, and it names `version` and this target.
async fn run_self_test(binary: &Path, version: &str) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--self-test")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| "no answer within 60 s".to_owned())?
        .map_err(|e| format!("cannot run it: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .last()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        return Err(format!("exit status {}: {last}", output.status));
    }
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    if after("version") != Some(version) {
        return Err(format!(
            "it reports version {:?}, the release is {version}",
            after("version").unwrap_or("none")
        ));
    }
    if after("target") != Some(TARGET) {
        return Err(format!(
            "it reports target {:?}, this PC runs {TARGET}",
            after("target").unwrap_or("none")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use release::sign::{self, Password};

    use super::*;

    const LINUX: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn offers_are_checked_against_target_version_and_the_highest_verified() {
        let (k1, k2) = (
            sign::generate(Password::None).unwrap(),
            sign::generate(Password::None).unwrap(),
        );
        let keys = TrustedKeys::from_slots(k1.public.to_base64(), "").unwrap();
        let target: Target = LINUX.parse().unwrap();
        let own = Version::new(1, 0, 0);
        let signed = |k: &sign::NewKeyPair, v: &str, t: &str| {
            let m = sign::manifest_for(b"binary", v, t, "修正", "Fixes").unwrap();
            sign::sign_manifest(&k.secret_text, Password::None, &m).unwrap()
        };
        let (m, s) = signed(&k1, "2.0.0", LINUX);
        assert_eq!(
            verify_for(&m, &s, &keys, &target, &own, None)
                .unwrap()
                .version,
            Version::new(2, 0, 0)
        );
        assert_eq!(
            verify_for(&m, &s, &keys, &target, &own, Some(&Version::new(2, 0, 0)))
                .unwrap()
                .version,
            Version::new(2, 0, 0)
        );
        let code = |r: Result<Manifest, Refusal>| r.unwrap_err().code();
        assert_eq!(
            code(verify_for(
                &m,
                &s,
                &keys,
                &target,
                &own,
                Some(&Version::new(3, 0, 0))
            )),
            "not_newer"
        );
        let (m, s) = signed(&k1, "2.0.0", "x86_64-pc-windows-msvc");
        assert_eq!(
            code(verify_for(&m, &s, &keys, &target, &own, None)),
            "wrong_target"
        );
        let (m, s) = signed(&k1, "1.0.0", LINUX);
        assert_eq!(
            code(verify_for(&m, &s, &keys, &target, &own, None)),
            "not_newer"
        );
        let (m, s) = signed(&k2, "2.0.0", LINUX);
        assert_eq!(
            code(verify_for(&m, &s, &keys, &target, &own, None)),
            "unknown_key"
        );
    }

    #[test]
    fn swap_keeps_the_previous_binary_and_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let (exe, staged, state) = (
            dir.path().join("bin/card-agent"),
            dir.path().join("staged"),
            dir.path().join("data/update"),
        );
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"old").unwrap();
        std::fs::write(&staged, b"new").unwrap();
        swap::install(&staged, &exe, &state, "9.0.0", &|_| {}).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
        assert_eq!(std::fs::read(previous_path(&exe)).unwrap(), b"old");
        let pending = files::read_pending(&state).unwrap().unwrap();
        assert_eq!((pending.version.as_str(), pending.attempts), ("9.0.0", 0));
        assert!(!swap::new_path(&exe).exists());
        swap::rollback(&pending, &state).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"old");
        assert!(files::read_pending(&state).unwrap().is_none());
    }
}
