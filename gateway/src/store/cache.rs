//! The cache of the two lookups every request starts with: the clinic gate's [`Store::clinic_cert`]
//! (every browser request) and [`Store::service_client_by_fingerprint`] (every service-client API
//! call); of [`Store::anchor_versions`], which every card login reads to know that the trust
//! store it verifies against is current; and of [`Store::clinic_login`], which every login page
//! and password sign-in reads to know whether the clinic signs in upstream. Decision 0020 and
//! docs/design.md §3.1 explain it; in short:
//!
//! - Only found rows are cached (a `NotFound` or an error never is; a clinic's absent upstream
//!   login is an answer and is cached), at most [`CAPACITY`] per map,
//!   each for at most [`TTL`] (a backstop, not the means of invalidation).
//! - Every store method that writes `clinics`, `clinic_certs`, `service_clients`,
//!   `service_client_clinics`, `trust_anchors`, `anchor_crls` or `clinic_logins` clears this
//!   instance's cache once it has committed and, on PostgreSQL, sends `NOTIFY` on [`CHANNEL`]
//!   inside its transaction ([`notify`]), so the other instances hear of the change exactly when
//!   it commits.
//! - On PostgreSQL each store runs a listener task on that channel: any notification clears the
//!   cache. It fails closed: while the listener is not connected the cache is bypassed (every
//!   lookup reads the database), and once it has (re)subscribed it clears the cache before the
//!   cache serves again, since notifications sent meanwhile were lost.
//! - On SQLite, `gateway admin` writes the file from another process: each lookup first checks
//!   `PRAGMA data_version` on the cache's own connection and empties the cache when any other
//!   connection has committed since.
//! - A generation counter keeps a read that overlapped an invalidation from storing what it read:
//!   a reader notes the generation before its database read and stores its result only if the
//!   generation is unchanged after.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;

use super::tx::{Conn, Tx};
use super::{ClinicCertBinding, Result, ServiceClient, Store};

/// The PostgreSQL channel the writers notify and the listeners listen on.
pub(super) const CHANNEL: &str = "ninsho_cache";
/// Most entries per map; a full map drops its expired entries, or everything.
pub(super) const CAPACITY: usize = 4096;
/// Longest an entry is served (a backstop: a notification normally clears it long before).
pub(super) const TTL: Duration = Duration::from_secs(5);
/// Waits between the listener's attempts to (re)subscribe: the first, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A value of one of the cached lookups.
pub(super) trait Cached: Clone {
    /// The `cache` label of the metrics.
    const NAME: &'static str;
    /// Its map.
    fn map(maps: &mut Maps) -> &mut HashMap<String, Entry<Self>>;
}

impl Cached for ClinicCertBinding {
    const NAME: &'static str = "clinic_cert";
    fn map(maps: &mut Maps) -> &mut HashMap<String, Entry<Self>> {
        &mut maps.clinic_certs
    }
}

/// The version summary of some anchor kinds ([`Store::anchor_versions`]), which the card trust
/// cache and the TLS gate compare before every use of what they built from the anchors.
#[derive(Clone)]
pub(super) struct AnchorVersions(pub(super) Vec<super::anchors::AnchorVersion>);

impl Cached for AnchorVersions {
    const NAME: &'static str = "anchor_versions";
    fn map(maps: &mut Maps) -> &mut HashMap<String, Entry<Self>> {
        &mut maps.anchor_versions
    }
}

/// A clinic's upstream login, or `None` for embedded passwords ([`Store::clinic_login`]), which
/// decides whether the password form is offered.
#[derive(Clone)]
pub(super) struct UpstreamLogin(pub(super) Option<super::ClinicLogin>);

impl Cached for UpstreamLogin {
    const NAME: &'static str = "clinic_login";
    fn map(maps: &mut Maps) -> &mut HashMap<String, Entry<Self>> {
        &mut maps.clinic_logins
    }
}

impl Cached for ServiceClient {
    const NAME: &'static str = "service_client";
    fn map(maps: &mut Maps) -> &mut HashMap<String, Entry<Self>> {
        &mut maps.service_clients
    }
}

pub(super) struct Entry<T> {
    value: T,
    stored: Instant,
}

impl<T> Entry<T> {
    fn fresh(&self) -> bool {
        self.stored.elapsed() < TTL
    }
}

#[derive(Default)]
pub(super) struct Maps {
    /// Bumped by every invalidation (and every change of `live`).
    generation: u64,
    /// Whether the cache may be used: always on SQLite; on PostgreSQL only while the listener is
    /// subscribed.
    live: bool,
    /// SQLite: the `PRAGMA data_version` the entries were read under.
    data_version: i64,
    clinic_certs: HashMap<String, Entry<ClinicCertBinding>>,
    service_clients: HashMap<String, Entry<ServiceClient>>,
    anchor_versions: HashMap<String, Entry<AnchorVersions>>,
    clinic_logins: HashMap<String, Entry<UpstreamLogin>>,
}

impl Maps {
    fn clear(&mut self) {
        self.generation += 1;
        self.clinic_certs.clear();
        self.service_clients.clear();
        self.anchor_versions.clear();
        self.clinic_logins.clear();
    }
}

/// Where the gate cache's invalidation stands ([`Store::gate_cache_state`]): what a test awaits
/// instead of sleeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCacheState {
    /// Whether the cache is in use (always on SQLite; on PostgreSQL while the listener is
    /// subscribed).
    pub live: bool,
    /// Invalidations so far: local ones, notifications heard, and the listener's (re)connections.
    pub invalidations: u64,
    /// Notifications the listener heard.
    pub notifications: u64,
    /// The listener connection's backend process id, while subscribed (PostgreSQL).
    pub listener_pid: Option<i32>,
}

/// The listener task of a PostgreSQL store and its own pool of one connection.
struct Listener {
    task: tokio::task::AbortHandle,
    pool: PgPool,
}

/// One store's cache (shared by its clones).
pub(super) struct GateCache {
    maps: Mutex<Maps>,
    state: watch::Sender<GateCacheState>,
    listener: Mutex<Option<Listener>>,
    /// SQLite: a read-only connection of the cache's own, whose `PRAGMA data_version` changes
    /// whenever any other connection commits, this process's writers or another process's (the
    /// admin commands write the file directly). Every lookup checks it first.
    sqlite: Option<Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for GateCache {
    // The state only: the keys are certificate fingerprints, which are not logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateCache").field("state", &*self.state.borrow()).finish_non_exhaustive()
    }
}

/// The result of looking a key up.
pub(super) enum Lookup<T> {
    /// Cached and fresh.
    Hit(T),
    /// Not cached: read, and store the result if the generation is still this one.
    Miss(u64),
    /// The cache is not in use (the listener is not subscribed): read, store nothing.
    Bypass,
}

impl GateCache {
    /// A cache in use from the start, with no other writer to hear of (tests).
    #[cfg(test)]
    pub(super) fn local() -> Arc<Self> {
        Arc::new(Self::new(true))
    }

    /// The cache of a SQLite store on the file at `path`: in use from the start, and emptied
    /// whenever the file has changed since the last lookup.
    pub(super) fn sqlite(path: &std::path::Path) -> Result<Arc<Self>> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(500))?;
        let mut cache = Self::new(true);
        cache.sqlite = Some(Mutex::new(conn));
        Ok(Arc::new(cache))
    }

    /// A cache of a PostgreSQL store: bypassed until its listener (started here, on a pool of its
    /// own beside `pool`) has subscribed.
    pub(super) fn listening(pool: &PgPool) -> Arc<Self> {
        let cache = Arc::new(Self::new(false));
        let options = (*pool.connect_options()).clone().application_name("ninsho-cache-listener");
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let task = tokio::spawn(listen(Arc::downgrade(&cache), listen_pool.clone()));
        *lock(&cache.listener) = Some(Listener { task: task.abort_handle(), pool: listen_pool });
        cache
    }

    fn new(live: bool) -> Self {
        let (state, _) = watch::channel(GateCacheState { live, ..GateCacheState::default() });
        Self { maps: Mutex::new(Maps { live, ..Maps::default() }), state, listener: Mutex::new(None), sqlite: None }
    }

    pub(super) fn get<T: Cached>(&self, key: &str) -> Lookup<T> {
        let mut maps = lock(&self.maps);
        if !maps.live {
            return Lookup::Bypass;
        }
        if let Some(conn) = &self.sqlite {
            match lock(conn).query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
                Ok(version) if version == maps.data_version => {}
                Ok(version) => {
                    maps.clear();
                    maps.data_version = version;
                }
                // Whether the file changed is unknown: read it.
                Err(_) => return Lookup::Bypass,
            }
        }
        let generation = maps.generation;
        let map = T::map(&mut maps);
        match map.get(key) {
            Some(entry) if entry.fresh() => return Lookup::Hit(entry.value.clone()),
            Some(_) => {}
            None => return Lookup::Miss(generation),
        }
        // Past its time.
        map.remove(key);
        Lookup::Miss(generation)
    }

    /// Stores `value` read under `generation`, unless an invalidation came meanwhile.
    pub(super) fn put<T: Cached>(&self, key: &str, value: T, generation: u64) {
        let mut maps = lock(&self.maps);
        if !maps.live || maps.generation != generation {
            return;
        }
        let map = T::map(&mut maps);
        if map.len() >= CAPACITY && !map.contains_key(key) {
            map.retain(|_, e| e.fresh());
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key.to_owned(), Entry { value, stored: Instant::now() });
    }

    /// Clears the cache: a write of this instance committed.
    pub(super) fn invalidate(&self) {
        lock(&self.maps).clear();
        self.state.send_modify(|s| s.invalidations += 1);
    }

    /// Clears the cache: the listener heard a notification.
    fn notified(&self) {
        lock(&self.maps).clear();
        self.state.send_modify(|s| {
            s.invalidations += 1;
            s.notifications += 1;
        });
    }

    /// The listener (re)subscribed (`Some(pid)`) or lost its connection (`None`). Either way
    /// the cache is cleared: what it held may have changed unheard.
    fn set_live(&self, listener_pid: Option<i32>) {
        let live = listener_pid.is_some();
        {
            let mut maps = lock(&self.maps);
            maps.clear();
            maps.live = live;
        }
        self.state.send_modify(|s| {
            s.live = live;
            s.invalidations += 1;
            s.listener_pid = listener_pid;
        });
    }

    /// Follows the cache's state.
    fn watch(&self) -> watch::Receiver<GateCacheState> {
        self.state.subscribe()
    }

    /// Stops the listener, if any, and closes its pool.
    pub(super) async fn stop(&self) {
        let listener = lock(&self.listener).take();
        if let Some(l) = listener {
            l.task.abort();
            // The aborted listener hands its connection back after an `UNLISTEN`; a server that
            // no longer answers does not hold up the store's closing.
            let _ = tokio::time::timeout(Duration::from_secs(2), l.pool.close()).await;
            // Nothing is heard any more: bypassed from now on.
            self.set_live(None);
        }
        lock(&self.maps).clear();
    }
}

impl Drop for GateCache {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.listener).take() {
            l.task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends the invalidation inside the writing transaction `tx` (PostgreSQL; nothing on SQLite,
/// where the writer's local invalidation is all there is to do). PostgreSQL delivers it when,
/// and only if, the transaction commits.
pub(super) async fn notify(tx: &mut Tx<'_>) -> Result<()> {
    if let Conn::Postgres(conn) = &mut tx.conn {
        sqlx::query("SELECT pg_notify('ninsho_cache', '')").execute(&mut **conn).await?;
    }
    Ok(())
}

/// The listener task: subscribes, marks the cache live (cleared), clears it on every
/// notification, and on a lost connection marks it bypassed until it has subscribed again.
/// Ends when the store is gone or its pool closed.
async fn listen(cache: Weak<GateCache>, pool: PgPool) {
    let mut retry = RETRY_FIRST;
    loop {
        match subscribe(&pool).await {
            Ok((mut listener, pid)) => {
                let Some(c) = cache.upgrade() else { return };
                c.set_live(Some(pid));
                drop(c);
                retry = RETRY_FIRST;
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => {
                            let Some(c) = cache.upgrade() else { return };
                            c.notified();
                        }
                        // The connection was lost (eager reconnection is off, so nothing was
                        // missed silently: the next subscription starts over).
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                let Some(c) = cache.upgrade() else { return };
                c.set_live(None);
                drop(c);
                tracing::warn!(error = ?lost, "cache listener lost its connection; the gate cache is bypassed until it is back");
            }
            Err(e) => tracing::warn!(error = %e, "cache listener cannot subscribe; the gate cache is bypassed"),
        }
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// A listener subscribed to [`CHANNEL`], and its backend process id.
async fn subscribe(pool: &PgPool) -> Result<(PgListener, i32), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut listener).await?;
    Ok((listener, pid))
}

impl Store {
    /// `read` through the cache under `key`, counting hits, misses and bypasses
    /// (docs/metrics.md). Only a found row is stored.
    pub(super) async fn cached<T: Cached>(&self, key: &str, read: impl Future<Output = Result<T>>) -> Result<T> {
        let generation = match self.cache.get::<T>(key) {
            Lookup::Hit(value) => {
                self.metrics.gate_cache(T::NAME, "hit");
                return Ok(value);
            }
            Lookup::Miss(generation) => {
                self.metrics.gate_cache(T::NAME, "miss");
                Some(generation)
            }
            Lookup::Bypass => {
                self.metrics.gate_cache(T::NAME, "bypass");
                None
            }
        };
        let value = read.await?;
        if let Some(generation) = generation {
            self.cache.put(key, value.clone(), generation);
        }
        Ok(value)
    }

    /// Clears this store's gate cache after a committed write (docs/design.md §3.1).
    pub(super) fn gate_changed(&self) {
        self.cache.invalidate();
    }

    /// Follows the gate cache's state (docs/decisions/0020-cached-gate-lookups.md): whether it is
    /// in use, and the invalidations and notifications so far. A test awaits a notification or
    /// the listener's (re)connection with it.
    pub fn gate_cache_state(&self) -> watch::Receiver<GateCacheState> {
        self.cache.watch()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
