//! A hint that something changed in `res`, so the relay scans at once instead of at its next periodic rescan.
//!
//! Only a hint: events on network shares are unreliable (an SMB share mounted on Linux reports no change made by
//! another machine; Windows reports them only while the connection lasts, and may drop them under load). The caller
//! therefore also rescans on a timer, and a watcher that cannot start is not fatal: log it and rely on the timer.
//! A wake carries no detail: the caller calls [`super::folders::Folders::scan`], which decides what is complete.

use std::path::Path;
use std::sync::Arc;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

/// Watches the `res` folder (not its subfolders) for as long as it lives.
#[derive(Debug)]
pub struct ResWatcher {
    _watcher: RecommendedWatcher,
    notify: Arc<Notify>,
}

impl ResWatcher {
    /// Starts watching `res`; any create, modify or rename event (and any watcher error, so nothing is missed) wakes
    /// [`ResWatcher::notified`]. Wakes coalesce: many events before the caller waits give one wake.
    pub fn start(res: &Path) -> Result<ResWatcher, notify::Error> {
        let notify = Arc::new(Notify::new());
        let waker = Arc::clone(&notify);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) => {
                if matches!(event.kind, EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Other) {
                    waker.notify_one();
                }
            }
            Err(err) => {
                tracing::debug!(%err, "relay: res watcher error; waking a scan");
                waker.notify_one();
            }
        })?;
        watcher.watch(res, RecursiveMode::NonRecursive)?;
        Ok(ResWatcher { _watcher: watcher, notify })
    }

    /// Woken (`notify_one`: a wake before anyone waits is kept for the next wait) when `res` may have changed.
    pub fn notified(&self) -> &Arc<Notify> {
        &self.notify
    }
}
