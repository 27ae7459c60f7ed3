//! Tests of the gate cache (`cache`, docs/decisions/0020-cached-gate-lookups.md): two PostgreSQL
//! instances on one database, the generation rule, failing closed while the listener is away, and
//! SQLite. The PostgreSQL tests make a throwaway database per test on TEST_DATABASE_URL's server,
//! as tests/integration/helpers.rs does.

use std::time::Duration;

use tokio::sync::watch;

use super::{CAPACITY, GateCacheState, GateCache, Lookup};
use crate::store::{AnchorKind, ClinicCertBinding, Error, NewClinicCert, RevocationPolicy, ServiceClient, ServiceRole, Store, SubCrl};

const CERT: &str = "aa11";
const CLIENT_CERT: &str = "bb22";
/// How long a test waits for a notification or the listener: far more than it ever takes.
const WAIT: Duration = Duration::from_secs(5);

/// A fresh PostgreSQL database, dropped by [`PgDb::drop_database`].
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn new() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .expect("TEST_DATABASE_URL must point at a PostgreSQL server for the postgres tests (tests/run.sh sets it)");
        let name = format!("ninsho_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let (base, query) = admin_url.split_once('?').map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Self { admin_url, name, url }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.url, 4).await.unwrap()
    }

    /// Two stores on the database (migrated), each with its listener subscribed.
    async fn two_live_instances(&self) -> (Store, Store) {
        let a = self.store().await;
        a.migrate().await.unwrap();
        let b = self.store().await;
        until(&a, "live", |s| s.live).await;
        until(&b, "live", |s| s.live).await;
        (a, b)
    }

    /// A plain connection to the database (no store, no cache, no NOTIFY).
    async fn conn(&self) -> sqlx::PgConnection {
        <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await.unwrap()
    }

    async fn drop_database(self) {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await;
    }
}

/// Waits (at most [`WAIT`]) until the cache's state satisfies `done`.
async fn until(store: &Store, what: &str, done: impl FnMut(&GateCacheState) -> bool) -> GateCacheState {
    let mut state: watch::Receiver<GateCacheState> = store.gate_cache_state();
    let reached = tokio::time::timeout(WAIT, state.wait_for(done)).await.map(|r| r.map(|s| *s));
    match reached {
        Ok(Ok(s)) => s,
        _ => panic!("the gate cache did not get to {what} within {WAIT:?}: {:?}", *state.borrow()),
    }
}

/// Waits until `store`'s listener has heard `n` notifications in all.
async fn heard(store: &Store, n: u64) {
    until(store, &format!("{n} notifications"), |s| s.notifications >= n).await;
}

fn hits(store: &Store, cache: &'static str) -> u64 {
    store.metrics.gate_cache_count(cache, "hit")
}

/// A migrated SQLite store on a file in `dir`, and its URL (for a second store on the file).
async fn sqlite_store(dir: &tempfile::TempDir) -> (Store, String) {
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    (store, url)
}

/// A clinic with one registered certificate, and a service client serving it.
async fn set_up(store: &Store) {
    store.add_clinic("c1", "Clinic One", 1).await.unwrap();
    let cert = NewClinicCert { fingerprint: CERT, clinic_id: "c1", subject: "CN=c1", serial: "01", not_after: 4_000_000_000 };
    store.add_clinic_cert(&cert, 1).await.unwrap();
    let client = ServiceClient {
        id: "emr".into(),
        name: "EMR".into(),
        role: ServiceRole::Emr,
        fingerprint: CLIENT_CERT.into(),
        subject: "CN=emr".into(),
        enabled: true,
        clinics: vec!["c1".into()],
    };
    store.add_service_client(&client, 1).await.unwrap();
}

/// Notifications [`set_up`] sends: one per write.
const SET_UP_WRITES: u64 = 3;

/// Two instances on one PostgreSQL database: what A cached is dropped as soon as B's change
/// commits (revoked certificate, disabled clinic, disabled service client).
#[tokio::test]
async fn cache_two_postgres_instances_refuse_at_once() {
    let db = PgDb::new().await;
    let (a, b) = db.two_live_instances().await;
    set_up(&b).await;
    let mut sent = SET_UP_WRITES;
    heard(&a, sent).await;

    // A reads the certificate twice: the second time from its cache.
    let binding = a.clinic_cert(CERT).await.unwrap();
    assert!(!binding.revoked && binding.clinic_enabled);
    let binding = a.clinic_cert(CERT).await.unwrap();
    assert!(!binding.revoked);
    assert_eq!(hits(&a, "clinic_cert"), 1);

    // B revokes it: A refuses it once the notification is in.
    b.revoke_clinic_cert(CERT, 2).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert!(a.clinic_cert(CERT).await.unwrap().revoked, "A still serves the revoked certificate");
    assert_eq!(hits(&a, "clinic_cert"), 1);

    // Restored, cached again, then the clinic is disabled on B.
    b.restore_clinic_cert(CERT).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert!(!a.clinic_cert(CERT).await.unwrap().revoked);
    assert!(a.clinic_cert(CERT).await.unwrap().clinic_enabled);
    assert_eq!(hits(&a, "clinic_cert"), 2);
    b.set_clinic_enabled("c1", false, 3).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert!(!a.clinic_cert(CERT).await.unwrap().clinic_enabled, "A still serves the disabled clinic");

    // The service client: cached on A, disabled on B.
    assert!(a.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled);
    assert!(a.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled);
    assert_eq!(hits(&a, "service_client"), 1);
    b.set_service_client_enabled("emr", false, 4).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert!(!a.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled, "A still serves the disabled client");

    // The writer's own cache is cleared at once, without waiting for its notification.
    assert!(!b.clinic_cert(CERT).await.unwrap().clinic_enabled);
    b.set_clinic_enabled("c1", true, 5).await.unwrap();
    assert!(b.clinic_cert(CERT).await.unwrap().clinic_enabled);

    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// An HPKI anchor as the store keeps it (the store does not parse it; the trust crate does).
fn hpki_anchor() -> crate::store::TrustAnchor {
    crate::store::TrustAnchor {
        kind: AnchorKind::Hpki,
        fingerprint: "cc33".into(),
        subject: "CN=HPKI test root".into(),
        cert_der: vec![0x30, 0x00],
        revocation: RevocationPolicy::Crl,
        crl_der: Some(vec![0x30, 0x01]),
        updated_at: 0,
        crl_url: None,
        crl_next_update: Some(5_000),
        policies: None,
        sub_crls: Vec::new(),
    }
}

/// A CRL of a CA under the anchor, issued at `this_update`.
fn sub_crl(this_update: i64) -> SubCrl {
    SubCrl {
        issuer_sha256: "dd44".into(),
        issuer_subject: "CN=HPKI test CA".into(),
        issuer_cert_der: vec![0x30, 0x02],
        crl_der: vec![0x30, 0x03],
        this_update,
        next_update: this_update + 86_400,
    }
}

/// Two instances: the anchors' version summary that A caches (every card login compares it) moves
/// as soon as B stores a new CRL, changes the anchor or removes it; a CRL that changes nothing
/// (older than the stored one) moves nothing.
#[tokio::test]
async fn cache_anchor_versions_follow_the_other_instance() {
    let db = PgDb::new().await;
    let (a, b) = db.two_live_instances().await;
    let kinds = [AnchorKind::Hpki];
    let hits = |s: &Store| s.metrics.gate_cache_count("anchor_versions", "hit");
    assert!(a.anchor_versions(&kinds).await.unwrap().is_empty());
    let mut sent = 0;

    b.add_anchor(&hpki_anchor(), 10).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    let added = a.anchor_versions(&kinds).await.unwrap();
    assert_eq!(added.len(), 1, "A still serves the summary from before the anchor was added");
    assert_eq!(a.anchor_versions(&kinds).await.unwrap(), added);
    assert_eq!(hits(&a), 1);

    // A sub-CRL stored on B (the CRL fetcher of another instance) is seen by A's next login.
    assert!(b.put_sub_crl(AnchorKind::Hpki, "cc33", &sub_crl(100), 11).await.unwrap());
    sent += 1;
    heard(&a, sent).await;
    let with_crl = a.anchor_versions(&kinds).await.unwrap();
    assert_ne!(with_crl, added, "A missed the new CRL");
    assert_eq!(a.anchor_versions(&kinds).await.unwrap(), with_crl);
    assert_eq!(hits(&a), 2);
    // An older CRL is not stored, and the summary stays.
    assert!(!b.put_sub_crl(AnchorKind::Hpki, "cc33", &sub_crl(50), 12).await.unwrap());
    sent += 1;
    heard(&a, sent).await;
    assert_eq!(a.anchor_versions(&kinds).await.unwrap(), with_crl);

    // The anchor's own CRL, its policies, and its removal.
    b.set_anchor_crl(AnchorKind::Hpki, "cc33", &[0x30, 0x04, 0x00], 6_000, 12).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    let own_crl = a.anchor_versions(&kinds).await.unwrap();
    assert_ne!(own_crl, with_crl, "A missed the anchor's new CRL");
    b.set_anchor_policies(AnchorKind::Hpki, "cc33", Some("any"), 12).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert_ne!(a.anchor_versions(&kinds).await.unwrap(), own_crl, "A missed the new policies");
    b.remove_anchor(AnchorKind::Hpki, "cc33").await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    assert!(a.anchor_versions(&kinds).await.unwrap().is_empty(), "A still trusts the removed anchor");
    // Refused writes answer as before.
    assert!(matches!(b.remove_anchor(AnchorKind::Hpki, "cc33").await, Err(Error::NotFound)));
    assert!(matches!(b.set_anchor_crl(AnchorKind::Hpki, "cc33", &[0x30, 0x00], 1, 13).await, Err(Error::NotFound)));

    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// Two instances: whether a clinic signs in upstream (which decides whether the password form is
/// offered) follows the other instance's change as soon as it commits, both ways; the absent login
/// is cached too.
#[tokio::test]
async fn cache_clinic_login_follows_the_other_instance() {
    let db = PgDb::new().await;
    let (a, b) = db.two_live_instances().await;
    b.add_clinic("c1", "Clinic One", 1).await.unwrap();
    let mut sent = 1;
    heard(&a, sent).await;
    let hits = |s: &Store| s.metrics.gate_cache_count("clinic_login", "hit");
    assert!(a.clinic_login("c1").await.unwrap().is_none());
    assert!(a.clinic_login("c1").await.unwrap().is_none());
    assert_eq!(hits(&a), 1, "an absent upstream login is an answer, cached");

    let login = crate::store::ClinicLogin {
        clinic_id: "c1".into(),
        issuer: "https://emr.example".into(),
        client_id: "ninsho".into(),
        sealed_secret: vec![1, 2, 3],
        claim: "sub".into(),
        match_on: crate::store::UpstreamMatch::ExternalId,
        scopes: "openid".into(),
        auth_method: crate::store::ClientAuthMethod::ClientSecretBasic,
    };
    b.set_clinic_login(&login, 2).await.unwrap();
    sent += 1;
    heard(&a, sent).await;
    let upstream = a.clinic_login("c1").await.unwrap().expect("A still offers the password form");
    assert_eq!(upstream.issuer, "https://emr.example");
    assert!(a.clinic_login("c1").await.unwrap().is_some());
    assert_eq!(hits(&a), 2);

    assert!(b.clear_clinic_login("c1").await.unwrap());
    sent += 1;
    heard(&a, sent).await;
    assert!(a.clinic_login("c1").await.unwrap().is_none(), "A still refuses passwords");
    // The writer's own cache is cleared at once.
    b.set_clinic_login(&login, 3).await.unwrap();
    assert!(b.clinic_login("c1").await.unwrap().is_some());
    // Refused writes answer as before.
    assert!(matches!(b.clear_clinic_login("nope").await, Err(Error::NotFound)));

    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// SQLite: an anchor change committed by another store on the file (`gateway admin anchor …`) is
/// seen by the next read of the summary.
#[tokio::test]
async fn cache_anchor_versions_sqlite_see_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(&dir).await;
    let kinds = [AnchorKind::Hpki];
    store.add_anchor(&hpki_anchor(), 10).await.unwrap();
    let first = store.anchor_versions(&kinds).await.unwrap();
    assert_eq!(store.anchor_versions(&kinds).await.unwrap(), first);
    assert_eq!(store.metrics.gate_cache_count("anchor_versions", "hit"), 1);
    let admin = Store::connect(&url, 2).await.unwrap();
    assert!(admin.put_sub_crl(AnchorKind::Hpki, "cc33", &sub_crl(100), 11).await.unwrap());
    assert_ne!(store.anchor_versions(&kinds).await.unwrap(), first, "a CRL stored by another process went unseen");
    admin.close().await;
    store.close().await;
}

/// While the listener is not connected the cache is not used: a change made meanwhile without any
/// notification (plain SQL) is seen by the next lookup; once back, the listener starts from an
/// empty cache.
#[tokio::test]
async fn cache_fails_closed_while_the_listener_is_away() {
    let db = PgDb::new().await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    let first = until(&store, "live", |s| s.live).await;
    let pid = first.listener_pid.expect("a live listener has a backend");
    set_up(&store).await;
    heard(&store, SET_UP_WRITES).await;
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);
    assert_eq!(hits(&store, "clinic_cert"), 1);

    // The listener's connection is killed; the test waits until the listener noticed.
    let mut conn = db.conn().await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&mut conn).await.unwrap();
    assert!(killed);
    until(&store, "a lost listener", |s| s.listener_pid != Some(pid)).await;

    // A change that notifies nobody.
    sqlx::query("UPDATE clinic_certs SET revoked_at = 7 WHERE fingerprint = $1").bind(CERT).execute(&mut conn).await.unwrap();
    let away = !store.gate_cache_state().borrow().live;
    let bypassed = store.metrics.gate_cache_count("clinic_cert", "bypass");
    assert!(store.clinic_cert(CERT).await.unwrap().revoked, "the cache served a row while its listener was away");
    assert_eq!(hits(&store, "clinic_cert"), 1);
    if away {
        // (Unless the listener was already back, which empties the cache as well.)
        assert_eq!(store.metrics.gate_cache_count("clinic_cert", "bypass"), bypassed + 1);
        assert!(store.clinic_cert(CERT).await.unwrap().revoked);
        assert_eq!(hits(&store, "clinic_cert"), 1, "stored while the listener was away");
    }

    // The listener subscribes again on a new connection; the cache starts over, then works again.
    let back = until(&store, "a new listener", |s| s.live && s.listener_pid.is_some_and(|p| p != pid)).await;
    assert!(back.live);
    let misses = store.metrics.gate_cache_count("clinic_cert", "miss");
    assert!(store.clinic_cert(CERT).await.unwrap().revoked);
    assert_eq!(store.metrics.gate_cache_count("clinic_cert", "miss"), misses + 1, "served from before the gap");
    assert!(store.clinic_cert(CERT).await.unwrap().revoked);
    assert_eq!(hits(&store, "clinic_cert"), 2);
    // And notifications clear it again.
    let heard_so_far = store.gate_cache_state().borrow().notifications;
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE clinic_certs SET revoked_at = NULL WHERE fingerprint = $1").bind(CERT).execute(&mut conn).await.unwrap();
    sqlx::query("SELECT pg_notify('ninsho_cache', '')").execute(&mut conn).await.unwrap();
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    heard(&store, heard_so_far + 1).await;
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);

    drop(conn);
    store.close().await;
    db.drop_database().await;
}

/// Closing the store stops its listener: the listener's connection goes away.
#[tokio::test]
async fn cache_listener_stops_with_the_store() {
    let db = PgDb::new().await;
    let store = db.store().await;
    let pid = until(&store, "live", |s| s.live).await.listener_pid.unwrap();
    let mut conn = db.conn().await;
    let listening = "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1";
    let n: i64 = sqlx::query_scalar(listening).bind(pid).fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 1);
    store.close().await;
    let gone = async {
        loop {
            let n: i64 = sqlx::query_scalar(listening).bind(pid).fetch_one(&mut conn).await.unwrap();
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, gone).await.expect("the listener's connection outlived the store");
    drop(conn);
    db.drop_database().await;
}

/// SQLite: a change through the store is seen by the next lookup, and so is one another process
/// commits to the file (the admin commands write it directly).
#[tokio::test]
async fn cache_sqlite_changes_are_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(&dir).await;
    assert!(store.gate_cache_state().borrow().live);
    // A certificate not registered is not cached.
    assert!(matches!(store.clinic_cert(CERT).await, Err(Error::NotFound)));
    set_up(&store).await;
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);
    assert_eq!(hits(&store, "clinic_cert"), 1);
    store.revoke_clinic_cert(CERT, 2).await.unwrap();
    assert!(store.clinic_cert(CERT).await.unwrap().revoked);
    store.restore_clinic_cert(CERT).await.unwrap();
    assert!(!store.clinic_cert(CERT).await.unwrap().revoked);
    store.set_clinic_enabled("c1", false, 3).await.unwrap();
    assert!(!store.clinic_cert(CERT).await.unwrap().clinic_enabled);

    assert!(store.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled);
    assert!(store.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled);
    assert_eq!(hits(&store, "service_client"), 1);
    store.set_service_client_enabled("emr", false, 4).await.unwrap();
    assert!(!store.service_client_by_fingerprint(CLIENT_CERT).await.unwrap().enabled);
    // Another store on the file, as `gateway admin` is: its commit empties this one's cache.
    let other = Store::connect(&url, 2).await.unwrap();
    let hits_before = hits(&store, "clinic_cert");
    assert!(!store.clinic_cert(CERT).await.unwrap().clinic_enabled);
    assert!(!store.clinic_cert(CERT).await.unwrap().clinic_enabled);
    assert_eq!(hits(&store, "clinic_cert"), hits_before + 1);
    other.set_clinic_enabled("c1", true, 6).await.unwrap();
    assert!(store.clinic_cert(CERT).await.unwrap().clinic_enabled, "a commit of another connection went unseen");
    other.revoke_clinic_cert(CERT, 7).await.unwrap();
    assert!(store.clinic_cert(CERT).await.unwrap().revoked);
    other.close().await;
    // Conflicting writes still answer as conflicts.
    assert!(matches!(store.add_clinic("c1", "Again", 5).await, Err(Error::Conflict(_))));
    assert!(matches!(store.set_clinic_enabled("nope", true, 5).await, Err(Error::NotFound)));
    store.close().await;
}

/// A read that overlapped an invalidation does not store what it read: the next lookup reads the
/// database again.
#[tokio::test]
async fn cache_a_read_overlapping_an_invalidation_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = sqlite_store(&dir).await;
    set_up(&store).await;
    overlapping_read_is_not_stored(&store).await;
    store.close().await;
}

/// [`cache_a_read_overlapping_an_invalidation_is_not_stored`] on PostgreSQL, where nothing but the
/// generation rule keeps the stale read out (SQLite's `data_version` would catch it too).
#[tokio::test]
async fn cache_a_read_overlapping_an_invalidation_is_not_stored_postgres() {
    let db = PgDb::new().await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    until(&store, "live", |s| s.live).await;
    set_up(&store).await;
    heard(&store, SET_UP_WRITES).await;
    overlapping_read_is_not_stored(&store).await;
    store.close().await;
    db.drop_database().await;
}

async fn overlapping_read_is_not_stored(store: &Store) {
    let stale = ClinicCertBinding {
        fingerprint: CERT.into(),
        clinic_id: "c1".into(),
        revoked: false,
        clinic_name: "stale".into(),
        clinic_enabled: true,
    };
    // The read "happens" before a write that commits while it is under way.
    let read = async {
        store.revoke_clinic_cert(CERT, 2).await.unwrap();
        Ok::<_, Error>(stale)
    };
    assert_eq!(store.cached(CERT, read).await.unwrap().clinic_name, "stale");
    let now = store.clinic_cert(CERT).await.unwrap();
    assert!(now.revoked, "the stale read was stored over the invalidation");
    assert_eq!(now.clinic_name, "Clinic One");
}

#[test]
fn cache_generation_rule_and_bounds() {
    let binding = |name: &str| ClinicCertBinding {
        fingerprint: "f".into(),
        clinic_id: "c".into(),
        revoked: false,
        clinic_name: name.into(),
        clinic_enabled: true,
    };
    let cache = GateCache::local();
    let Lookup::Miss(generation) = cache.get::<ClinicCertBinding>("f") else { panic!("empty cache") };
    cache.invalidate();
    cache.put("f", binding("old"), generation);
    assert!(matches!(cache.get::<ClinicCertBinding>("f"), Lookup::Miss(_)), "stored across an invalidation");
    let Lookup::Miss(generation) = cache.get::<ClinicCertBinding>("f") else { unreachable!() };
    cache.put("f", binding("new"), generation);
    assert!(matches!(cache.get::<ClinicCertBinding>("f"), Lookup::Hit(b) if b.clinic_name == "new"));
    // The maps are separate, and each is bounded.
    assert!(matches!(cache.get::<ServiceClient>("f"), Lookup::Miss(_)));
    let Lookup::Miss(generation) = cache.get::<ClinicCertBinding>("x") else { unreachable!() };
    for i in 1..CAPACITY {
        cache.put(&format!("k{i}"), binding("k"), generation);
    }
    assert_eq!(super::lock(&cache.maps).clinic_certs.len(), CAPACITY);
    cache.put("one more", binding("k"), generation);
    assert_eq!(super::lock(&cache.maps).clinic_certs.len(), 1, "a full map of fresh entries is cleared");

    // A cache that is not live (a PostgreSQL store whose listener is away) is bypassed and
    // stores nothing.
    let away = std::sync::Arc::new(GateCache::new(false));
    assert!(matches!(away.get::<ClinicCertBinding>("f"), Lookup::Bypass));
    away.put("f", binding("x"), 0);
    assert!(super::lock(&away.maps).clinic_certs.is_empty());
}
