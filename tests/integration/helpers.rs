//! `TestApp`: a gateway on `127.0.0.1:0` with a fresh database (SQLite file, or a new
//! PostgreSQL database when the test runs on PostgreSQL), a fresh PKI, seeded clinics and users,
//! and a clock the test controls.

use std::sync::Arc;

use gateway::admin::Admin;
pub use gateway::clock::Clock;
use gateway::clock::ManualClock;
use gateway::config::Config;
use gateway::http::AppState;
use devpki::{Authority, KeyAlg, Leaf, LeafSpec, LeafUsage};
use gateway::password::PasswordHasher;
use gateway::store::{AnchorKind, RevocationPolicy, ServiceRole, Store, UserKind};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(db: Db)` twice: `sqlite::name` and `postgres::name`.
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(crate::helpers::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(crate::helpers::Db::Postgres).await } )*
        }
    };
}
pub(crate) use db_tests;

pub const CLINIC: &str = "21234";
pub const OTHER_CLINIC: &str = "99999";
pub const DISABLED_CLINIC: &str = "55555";
pub const DOCTOR_LOGIN: &str = "doctor1";
pub const DOCTOR_PASSWORD: &str = "correct horse battery";
pub const STAFF_LOGIN: &str = "staff1";
pub const STAFF_PASSWORD: &str = "staff password 1";
pub const OTHER_DOCTOR_LOGIN: &str = "doctor-other";
pub const OTHER_DOCTOR_PASSWORD: &str = "other doctor pass";

/// Certificates of one test run.
pub struct TestPki {
    pub server_ca: Authority,
    /// `localhost`, issued by `server_ca`.
    pub server: Leaf,
    pub clinic_ca: Authority,
    /// Registered to [`CLINIC`].
    pub clinic_client: Leaf,
    /// Registered to [`OTHER_CLINIC`].
    pub other_clinic_client: Leaf,
    /// Registered to [`DISABLED_CLINIC`].
    pub disabled_clinic_client: Leaf,
    /// Valid chain, never registered.
    pub unregistered_client: Leaf,
    /// Expired yesterday.
    pub expired_client: Leaf,
    /// On the clinic CA's CRL.
    pub revoked_client: Leaf,
    /// Issued by a CA nobody trusts.
    pub rogue_client: Leaf,
    pub crl_der: Vec<u8>,
    /// Issuer of service-client certificates (EMR backends, signers).
    pub service_ca: Authority,
    /// Service client `emr-a`, serving [`CLINIC`].
    pub emr_a: Leaf,
    /// Service client `emr-b`, serving [`CLINIC`] too.
    pub emr_b: Leaf,
    /// Service client `emr-other`, serving only [`OTHER_CLINIC`].
    pub emr_other: Leaf,
    /// Service client `signer`, role signer.
    pub signer: Leaf,
}

impl TestPki {
    pub fn new(now: OffsetDateTime) -> Self {
        let server_ca = Authority::new("Test Server CA", "", KeyAlg::EcP256, now).unwrap();
        let clinic_ca = Authority::new("Test Clinic CA", "", KeyAlg::EcP256, now).unwrap();
        let rogue_ca = Authority::new("Rogue CA", "", KeyAlg::EcP256, now).unwrap();
        let client = |ca: &Authority, cn: &str| ca.issue(&LeafSpec::new(cn, LeafUsage::TlsClient, now, 30)).unwrap();
        let mut expired = LeafSpec::new("expired", LeafUsage::TlsClient, now, 30);
        expired.not_before = now - time::Duration::days(30);
        expired.not_after = now - time::Duration::days(1);
        let revoked_client = client(&clinic_ca, "revoked");
        let crl_der = clinic_ca
            .crl(&[&revoked_client.serial], now - time::Duration::hours(1), now + time::Duration::days(7))
            .unwrap();
        let server = server_ca
            .issue(&LeafSpec::new("localhost", LeafUsage::TlsServer { dns_names: vec!["localhost".into()] }, now, 30))
            .unwrap();
        let service_ca = Authority::new("Test Service CA", "", KeyAlg::EcP256, now).unwrap();
        let service = |cn: &str| service_ca.issue(&LeafSpec::new(cn, LeafUsage::TlsClient, now, 30)).unwrap();
        Self {
            emr_a: service("emr-a"),
            emr_b: service("emr-b"),
            emr_other: service("emr-other"),
            signer: service("signer"),
            service_ca,
            server,
            clinic_client: client(&clinic_ca, "clinic-21234"),
            other_clinic_client: client(&clinic_ca, "clinic-99999"),
            disabled_clinic_client: client(&clinic_ca, "clinic-55555"),
            unregistered_client: client(&clinic_ca, "unregistered"),
            expired_client: clinic_ca.issue(&expired).unwrap(),
            revoked_client,
            rogue_client: client(&rogue_ca, "clinic-21234"),
            crl_der,
            server_ca,
            clinic_ca,
        }
    }
}

/// A running gateway.
pub struct TestApp {
    pub port: u16,
    pub ops_port: u16,
    pub state: AppState,
    pub clock: ManualClock,
    pub pki: Arc<TestPki>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pg_database: Option<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A fresh database URL for `db` (a new PostgreSQL database per test).
pub async fn fresh_database(db: Db, dir: &std::path::Path) -> (String, Option<(String, String)>) {
    fresh_database_on(db, dir, None).await
}

/// [`fresh_database`] on the PostgreSQL server `server` (an admin URL) instead of
/// TEST_DATABASE_URL's.
pub async fn fresh_database_on(db: Db, dir: &std::path::Path, server: Option<&str>) -> (String, Option<(String, String)>) {
    match db {
        Db::Sqlite => (format!("sqlite://{}", dir.join("gateway.db").display()), None),
        Db::Postgres => {
            let admin_url = server.map(str::to_owned).unwrap_or_else(|| {
                std::env::var("TEST_DATABASE_URL").expect(
                    "TEST_DATABASE_URL must point at a PostgreSQL server for the postgres tests (tests/run.sh sets it)",
                )
            });
            let name = format!("ninsho_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
            (url_with_db(&admin_url, &name), Some((admin_url, name)))
        }
    }
}

fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Drops a per-test PostgreSQL database.
pub async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await;
    }
}

/// A change to the test configuration.
type Configure = Box<dyn FnOnce(&mut Config) + Send>;

/// Builder for [`TestApp`].
pub struct TestAppBuilder {
    db: Db,
    configure: Vec<Configure>,
    pg_server: Option<String>,
}

impl TestApp {
    pub fn builder(db: Db) -> TestAppBuilder {
        TestAppBuilder { db, configure: Vec::new(), pg_server: None }
    }

    pub async fn spawn(db: Db) -> TestApp {
        Self::builder(db).spawn().await
    }

    pub fn clock_now(&self) -> i64 {
        self.clock.unix()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Another store on this gateway's database, with its audit key: a second instance.
    pub async fn other_store(&self, max_connections: u32) -> Store {
        Store::connect(&self.config.database.url, max_connections).await.unwrap().with_audit_key(self.config.audit_key().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// A client presenting `identity` (or none), trusting only the test server CA, keeping
    /// cookies, not following redirects.
    pub fn client(&self, identity: Option<&Leaf>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pki.server_ca.cert_pem().as_bytes()).unwrap()])
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], self.port)));
        if let Some(leaf) = identity {
            let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// A client for the registered clinic device.
    pub fn clinic_client(&self) -> reqwest::Client {
        self.client(Some(&self.pki.clinic_client))
    }

    /// Posts the login form with this gateway's Origin.
    pub async fn login(&self, client: &reqwest::Client, login_id: &str, password: &str) -> reqwest::Response {
        client
            .post(self.url("/login"))
            .header("origin", self.origin())
            .form(&[("login_id", login_id), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// The ops listener's /metrics text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ops_port)).await.unwrap().text().await.unwrap()
    }

    /// Sends the shutdown signal (as SIGTERM does) without waiting for the server to stop.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and starts it again on the same port, database, configuration and clock:
    /// a restart, as a service manager would do it.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let acquire = std::time::Duration::from_millis(self.config.database.acquire_timeout_ms);
        let store = Store::connect_with(&self.config.database.url, 8, acquire).await.unwrap().with_audit_key(self.config.audit_key().unwrap());
        let main = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let app = gateway::Application::with_parts(self.config.clone(), store, Arc::new(self.clock.clone()), main).await.unwrap();
        self.ops_port = app.ops_addr().port();
        self.state = app.state();
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(async move {
            app.run_until(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
        self.shutdown = Some(tx);
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some((admin, name)) = self.pg_database.take() {
            drop_database(&admin, &name).await;
        }
    }
}

impl TestAppBuilder {
    /// Runs on the PostgreSQL server at `admin_url` (a test's own) instead of TEST_DATABASE_URL's.
    pub fn on_postgres_server(mut self, admin_url: &str) -> Self {
        self.pg_server = Some(admin_url.to_owned());
        self
    }

    pub fn with_config(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    pub async fn spawn(self) -> TestApp {
        let Prepared { config, store, clock, pki, dir, pg_database } = self.prepare().await;
        let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = main.local_addr().unwrap().port();
        let mut config = config;
        config.server.public_url = format!("https://localhost:{port}").parse().unwrap();
        let app = gateway::Application::with_parts(config.clone(), store, Arc::new(clock.clone()), main).await.unwrap();
        let ops_port = app.ops_addr().port();
        let state = app.state();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            port,
            ops_port,
            state,
            clock,
            pki,
            config,
            dir,
            pg_database,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Everything [`spawn`](Self::spawn) does before starting a server: PKI, data directory,
    /// migrated and seeded database, configuration (ports not yet chosen).
    pub async fn prepare(self) -> Prepared {
        gateway::install_crypto_provider();
        let clock = ManualClock::starting_now();
        let now = clock.now();
        let pki = Arc::new(TestPki::new(now));
        let dir = tempfile::tempdir().unwrap();

        std::fs::write(dir.path().join("server.pem"), format!("{}{}", pki.server.cert_pem, pki.server_ca.cert_pem()))
            .unwrap();
        std::fs::write(dir.path().join("server.key"), &pki.server.key_pem).unwrap();

        let (db_url, pg_database) = fresh_database_on(self.db, dir.path(), self.pg_server.as_deref()).await;

        let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        config.database.url = db_url.clone();
        config.database.max_connections = 8;
        // Generous for a loaded test machine; the outage tests set the 1 s default back.
        config.database.acquire_timeout_ms = 5000;
        // Tests stop at once; the drain test sets its own.
        config.server.shutdown_drain_secs = 0;
        config.tls.cert = dir.path().join("server.pem");
        config.tls.key = dir.path().join("server.key");
        config.ops.listen = "127.0.0.1:0".parse().unwrap();
        // The cheapest argon2id parameters the gateway accepts: tests exercise the logic, not the cost.
        config.login.argon2_memory_kib = 8 * 1024;
        config.login.argon2_iterations = 1;
        for f in self.configure {
            f(&mut config);
        }
        config.validate().unwrap();

        let acquire = std::time::Duration::from_millis(config.database.acquire_timeout_ms);
        let store = Store::connect_with(&db_url, 8, acquire).await.unwrap().with_audit_key(config.audit_key().unwrap());
        store.migrate().await.unwrap();
        seed(&store, &pki, &config, now.unix_timestamp()).await;
        Prepared { config, store, clock, pki, dir, pg_database }
    }
}

/// A seeded database and configuration that no server runs on yet.
pub struct Prepared {
    pub config: Config,
    /// Open on the database, with the audit key.
    pub store: Store,
    pub clock: ManualClock,
    pub pki: Arc<TestPki>,
    pub dir: tempfile::TempDir,
    /// (admin URL, database name) of a PostgreSQL test database, dropped by the owner.
    pub pg_database: Option<(String, String)>,
}

async fn seed(store: &Store, pki: &TestPki, config: &Config, now: i64) {
    let admin = Admin { store, now };
    admin.clinic_add(CLINIC, "テスト内科クリニック").await.unwrap();
    admin.clinic_add(OTHER_CLINIC, "Other Clinic").await.unwrap();
    admin.clinic_add(DISABLED_CLINIC, "Disabled Clinic").await.unwrap();
    admin
        .anchor_add(AnchorKind::Clinic, pki.clinic_ca.cert_pem().as_bytes(), Some(&pki.crl_der), RevocationPolicy::Crl, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (clinic, leaf) in [
        (CLINIC, &pki.clinic_client),
        (OTHER_CLINIC, &pki.other_clinic_client),
        (DISABLED_CLINIC, &pki.disabled_clinic_client),
    ] {
        let path = dir.path().join("c.pem");
        std::fs::write(&path, &leaf.cert_pem).unwrap();
        admin.clinic_cert_add(clinic, &path, None).await.unwrap();
    }
    // Registered before its CA revoked it: `clinic-cert add` refuses a revoked certificate, so its
    // row goes in through the store, as it stood before the revocation.
    let revoked = gateway::tls::PeerCert::from_der(&pki.revoked_client.cert_der).unwrap();
    let row = gateway::store::NewClinicCert {
        fingerprint: &revoked.fingerprint,
        clinic_id: CLINIC,
        subject: &revoked.subject,
        serial: &revoked.serial,
        not_after: revoked.not_after,
    };
    store.add_clinic_cert(&row, now).await.unwrap();
    admin.clinic_set_enabled(DISABLED_CLINIC, false).await.unwrap();
    admin.anchor_add(AnchorKind::Service, pki.service_ca.cert_pem().as_bytes(), None, RevocationPolicy::None, None).await.unwrap();
    for (id, role, leaf, clinics) in [
        ("emr-a", ServiceRole::Emr, &pki.emr_a, vec![CLINIC.to_owned()]),
        ("emr-b", ServiceRole::Emr, &pki.emr_b, vec![CLINIC.to_owned()]),
        ("emr-other", ServiceRole::Emr, &pki.emr_other, vec![OTHER_CLINIC.to_owned()]),
        ("signer", ServiceRole::Signer, &pki.signer, vec![]),
    ] {
        let p = gateway::tls::PeerCert::from_der(&leaf.cert_der).unwrap();
        let client = gateway::store::ServiceClient {
            id: id.into(),
            name: id.into(),
            role,
            fingerprint: p.fingerprint,
            subject: p.subject,
            enabled: true,
            clinics,
        };
        store.add_service_client(&client, now).await.unwrap();
    }
    let hasher = PasswordHasher::new(config.login.argon2_memory_kib, config.login.argon2_iterations).unwrap();
    // Permanent passwords: the tests sign in straight to the method page.
    let pw = |s: &str| gateway::admin::PasswordChoice::Chosen(zeroize::Zeroizing::new(s.to_owned()));
    admin
        .user_add(&hasher, CLINIC, DOCTOR_LOGIN, UserKind::Doctor, "山田 太郎", Some("123456"), pw(DOCTOR_PASSWORD), true)
        .await
        .unwrap();
    admin.user_add(&hasher, CLINIC, STAFF_LOGIN, UserKind::Staff, "佐藤 花子", None, pw(STAFF_PASSWORD), true).await.unwrap();
    admin
        .user_add(
            &hasher,
            OTHER_CLINIC,
            OTHER_DOCTOR_LOGIN,
            UserKind::Doctor,
            "鈴木 一郎",
            Some("654321"),
            pw(OTHER_DOCTOR_PASSWORD),
            true,
        )
        .await
        .unwrap();
}
