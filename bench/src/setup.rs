//! Bench-only set-up through the gateway library: a PKI (server, clinic device, EMR service
//! client), a database seeded with N doctors, a live signing session per doctor and a FIDO
//! credential per doctor (bulk SQL: recursive CTE on SQLite, `generate_series` on PostgreSQL),
//! registration codes for the FIDO and card workers, a real-shaped HPKI card PKI, and the gateway
//! configuration file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use gateway::admin::Admin;
use devpki::cards::{CaOptions, CardSpec, CrlSpec, Hpki};
use devpki::{Authority, KeyAlg, LeafSpec, LeafUsage};
use gateway::store::{AnchorKind, RevocationPolicy, ServiceClient, ServiceRole, Store};
use time::OffsetDateTime;

use crate::workload::{CardUser, FidoUser};

/// The one clinic every bench doctor belongs to.
pub const CLINIC: &str = "21234";
/// Password of every bench doctor.
pub const PASSWORD: &str = "bench password 1";
/// Doctors `d1..=dFIDO_POOL` get no filler credential: FIDO workers link real ones.
pub const FIDO_POOL: u64 = 256;
/// The next `CARD_POOL` doctors get none either: card workers link their card with a
/// registration code, which only a doctor without an authenticator may use without a fresh proof.
pub const CARD_POOL: u64 = 64;

/// Certificate and key files of one run.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// Server chain (leaf for `localhost` + CA).
    pub server_chain: PathBuf,
    pub server_key: PathBuf,
    pub server_ca: PathBuf,
    pub clinic_ca: PathBuf,
    pub clinic_cert: PathBuf,
    pub clinic_key: PathBuf,
    pub service_ca: PathBuf,
    pub emr_cert: PathBuf,
    pub emr_key: PathBuf,
    /// The remote signer's client certificate at the gateway (service role `signer`).
    pub signer_cert: PathBuf,
    pub signer_key: PathBuf,
}

/// Creates the PKI in `dir`.
pub fn make_pki(dir: &Path, now: OffsetDateTime) -> anyhow::Result<PkiFiles> {
    std::fs::create_dir_all(dir)?;
    let server_ca = Authority::new("Bench Server CA", "", KeyAlg::EcP256, now)?;
    let clinic_ca = Authority::new("Bench Clinic CA", "", KeyAlg::EcP256, now)?;
    let service_ca = Authority::new("Bench Service CA", "", KeyAlg::EcP256, now)?;
    let server = server_ca.issue(&LeafSpec::new(
        "localhost",
        LeafUsage::TlsServer {
            dns_names: vec!["localhost".into()],
        },
        now,
        30,
    ))?;
    let clinic = clinic_ca.issue(&LeafSpec::new(
        "clinic-21234",
        LeafUsage::TlsClient,
        now,
        30,
    ))?;
    let emr = service_ca.issue(
        &LeafSpec::new("bench-emr", LeafUsage::TlsClient, now, 30).organization("Bench EMR"),
    )?;
    let signer = service_ca.issue(
        &LeafSpec::new("bench-signer", LeafUsage::TlsClient, now, 30).organization("Bench Signer"),
    )?;
    let p = |n: &str| dir.join(n);
    let files = PkiFiles {
        server_chain: p("server.pem"),
        server_key: p("server.key"),
        server_ca: p("server-ca.pem"),
        clinic_ca: p("clinic-ca.pem"),
        clinic_cert: p("clinic.pem"),
        clinic_key: p("clinic.key"),
        service_ca: p("service-ca.pem"),
        emr_cert: p("emr.pem"),
        emr_key: p("emr.key"),
        signer_cert: p("signer-client.pem"),
        signer_key: p("signer-client.key"),
    };
    let write = |path: &Path, s: &str| {
        std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
    };
    write(
        &files.server_chain,
        &format!("{}{}", server.cert_pem, server_ca.cert_pem()),
    )?;
    write(&files.server_key, &server.key_pem)?;
    write(&files.server_ca, server_ca.cert_pem())?;
    write(&files.clinic_ca, clinic_ca.cert_pem())?;
    write(&files.clinic_cert, &clinic.cert_pem)?;
    write(&files.clinic_key, &clinic.key_pem)?;
    write(&files.service_ca, service_ca.cert_pem())?;
    write(&files.emr_cert, &emr.cert_pem)?;
    write(&files.emr_key, &emr.key_pem)?;
    write(&files.signer_cert, &signer.cert_pem)?;
    write(&files.signer_key, &signer.key_pem)?;
    Ok(files)
}

/// The card PKI of one run, shaped like the real HPKI (`devpki::cards`: critical
/// certificatePolicies, hcRole, MHLW/MEDIS names and extensions): the MEDIS-like authentication CA
/// is the gateway's trust anchor (an HPKI card offers no CA certificate, so a deployment registers the
/// issuing CA), with a CRL the gateway keeps in its cache, and one Medical Doctor card per card
/// worker. The in-process ceiling verifies the same shape.
pub struct CardPki {
    pub hpki: Hpki,
    /// The authentication CA's CRL.
    pub crl: Vec<u8>,
    pub cards: Vec<devpki::Leaf>,
}

impl CardPki {
    pub fn new(cards: usize, now: OffsetDateTime) -> anyhow::Result<Self> {
        let hpki = Hpki::with(&CaOptions::new(now).label("Ninsho Bench"))?;
        let crl = hpki.auth_ca().crl(&CrlSpec::new(now).window(
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        ))?;
        let cards = (0..cards.max(1))
            .map(|i| {
                hpki.auth_cert(
                    &CardSpec::new(now)
                        .holder(&format!("BENCH DOCTOR {i}"), &format!("ベンチ医師{i}"))
                        .validity(now - time::Duration::days(1), now + time::Duration::days(30)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { hpki, crl, cards })
    }

    /// The anchor certificate (PEM), the authentication CA.
    pub fn anchor_pem(&self) -> &str {
        self.hpki.auth_ca().cert_pem()
    }
}

/// What the seeding produced.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub doctors: u64,
    pub fido_users: Vec<FidoUser>,
    pub card_users: Vec<CardUser>,
    pub seconds: f64,
}

/// Migrates `db_url` and fills it: clinic, anchors, the clinic device, the EMR service client,
/// `doctors` doctors with live signing sessions, filler FIDO credentials, and `fido_users`
/// registration codes, the card anchor and `card_users` registration codes for card workers
/// (doctors after the FIDO pool).
#[allow(clippy::too_many_arguments, reason = "internal step of run()")]
pub async fn seed(
    db_url: &str,
    data_dir: &std::path::Path,
    pki: &PkiFiles,
    cards: &CardPki,
    doctors: u64,
    fido_users: usize,
    card_users: usize,
    argon2_kib: u32,
    now: i64,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    // The gateway started later on `data_dir` reads the same audit key (docs/design.md §3.9).
    let audit_key = gateway::config::Config { data_dir: data_dir.to_owned(), ..Default::default() }.audit_key()?;
    let store = Store::connect(db_url, 4).await.context("connect")?.with_audit_key(audit_key);
    store.migrate().await.context("migrate")?;
    let admin = Admin { store: &store, now };
    admin.clinic_add(CLINIC, "ベンチマーク内科").await?;
    admin
        .anchor_add(
            AnchorKind::Clinic,
            std::fs::read(&pki.clinic_ca)?.as_slice(),
            None,
            RevocationPolicy::None,
            None,
        )
        .await?;
    admin
        .clinic_cert_add(CLINIC, &pki.clinic_cert, None)
        .await?;
    admin
        .anchor_add(
            AnchorKind::Service,
            std::fs::read(&pki.service_ca)?.as_slice(),
            None,
            RevocationPolicy::None,
            None,
        )
        .await?;
    admin
        .anchor_add(
            AnchorKind::Hpki,
            cards.anchor_pem().as_bytes(),
            Some(&cards.crl),
            RevocationPolicy::Crl,
            None,
        )
        .await?;
    let emr_der = gateway::pki::parse_certificate(&std::fs::read(&pki.emr_cert)?)?;
    let peer = gateway::tls::PeerCert::from_der(&emr_der).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    store
        .add_service_client(
            &ServiceClient {
                id: "bench-emr".into(),
                name: "Bench EMR".into(),
                role: ServiceRole::Emr,
                fingerprint: peer.fingerprint,
                subject: peer.subject,
                enabled: true,
                clinics: vec![CLINIC.to_owned()],
            },
            now,
        )
        .await?;
    // The remote signer of the signHash scenario consumes tokens here.
    let signer_der = gateway::pki::parse_certificate(&std::fs::read(&pki.signer_cert)?)?;
    let signer = gateway::tls::PeerCert::from_der(&signer_der).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    store
        .add_service_client(
            &ServiceClient {
                id: "bench-signer".into(),
                name: "Bench signer".into(),
                role: ServiceRole::Signer,
                fingerprint: signer.fingerprint,
                subject: signer.subject,
                enabled: true,
                clinics: vec![CLINIC.to_owned()],
            },
            now,
        )
        .await?;
    let hash = gateway::password::PasswordHasher::new(argon2_kib, 1)?.hash_blocking(PASSWORD)?;
    bulk(db_url, doctors, &hash, now)
        .await
        .context("bulk insert")?;
    let fido_users = fido_users.min(usize::try_from(doctors.min(FIDO_POOL))?);
    let fido = registration_codes(&admin, 1..=fido_users as u64)
        .await?
        .into_iter()
        .map(|(login_id, code)| FidoUser { login_id, code })
        .collect();
    // Card workers are the doctors after the FIDO pool, one card each.
    let card_users = card_users
        .min(cards.cards.len())
        .min(usize::try_from(CARD_POOL)?)
        .min(usize::try_from(doctors.saturating_sub(FIDO_POOL))?);
    let card = registration_codes(&admin, FIDO_POOL + 1..=FIDO_POOL + card_users as u64)
        .await?
        .into_iter()
        .enumerate()
        .map(|(card, (login_id, code))| CardUser {
            login_id,
            code,
            card,
        })
        .collect();
    store.close().await;
    Ok(Seeded {
        doctors,
        fido_users: fido,
        card_users: card,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A registration code (24 h, 5 tries) for each doctor `d<n>`: (login id, code).
async fn registration_codes(
    admin: &Admin<'_>,
    doctors: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut codes = Vec::new();
    for n in doctors {
        let login_id = format!("d{n}");
        let (code, _) = admin
            .enroll_code_issue(CLINIC, &login_id, 24 * 3600, 5)
            .await?;
        codes.push((login_id, code.to_string()));
    }
    Ok(codes)
}

/// Doctors `d<n>` (login id; user id `00000000-0000-4000-8000-<n, 12 digits>`), a live signing
/// session each (`10000000-…-<n>`), a filler credential (`20000000-…-<n>`) for n > [`FIDO_POOL`] + [`CARD_POOL`].
/// `d<n>` is lowercase ASCII, so its folded form (`users.login_folded`, gateway/src/login_id.rs)
/// is itself.
async fn bulk(db_url: &str, n: u64, hash: &str, now: i64) -> anyhow::Result<()> {
    let n = i64::try_from(n)?;
    let pool_max = i64::try_from(FIDO_POOL + CARD_POOL)?;
    if db_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(db_url).await?;
        let seq =
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $1)";
        let mut tx = pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (id, clinic_id, login_id, login_folded, kind, name, medical_reg_no, password_hash, enabled, created_at, updated_at)
             {seq} SELECT printf('00000000-0000-4000-8000-%012d', n), $2, 'd' || n, 'd' || n, 'doctor', 'Doctor ' || n, printf('%06d', n), $3, TRUE, $4, $4 FROM seq"
        )))
        .bind(n)
        .bind(CLINIC)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO signing_sessions (id, user_id, clinic_id, method, authenticator_kind, authenticator_id, amr, acr,
                auth_time, expires_at, idle_secs, last_activity_at, ended_at, ended_reason, created_at, updated_at)
             {seq} SELECT printf('10000000-0000-4000-8000-%012d', n), printf('00000000-0000-4000-8000-%012d', n), $2, 'fido', 'fido',
                printf('20000000-0000-4000-8000-%012d', n), '[\"pwd\",\"hwk\",\"mfa\"]', 'aal3',
                $3, $3 + 28800, 3600, $3, NULL, NULL, $3, $3 FROM seq"
        )))
        .bind(n)
        .bind(CLINIC)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO fido_credentials (id, credential_id, user_id, name, aaguid, aaguid_attested, backup_eligible, stored,
                counter, linked_via, last_used_at, created_at, updated_at)
             {seq} SELECT printf('20000000-0000-4000-8000-%012d', n), randomblob(32), printf('00000000-0000-4000-8000-%012d', n), 'Key', '00000000-0000-0000-0000-000000000000', FALSE, FALSE,
                '{{}}', 0, 'code', NULL, $2, $2 FROM seq WHERE n > $3"
        )))
        .bind(n)
        .bind(now)
        .bind(pool_max)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // No ANALYZE here: with SQLITE_ENABLE_STAT4 (libsqlite3-sys' bundled build) the
        // statistics make SQLite re-prepare every statement whose bound values could change
        // the plan, on every execution (18 % of the database threads' time in a profile). The
        // gateway's queries are all index lookups that need no statistics; the README tells
        // operators the same.
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(db_url).await?;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, clinic_id, login_id, login_folded, kind, name, medical_reg_no, password_hash, enabled, created_at, updated_at)
             SELECT '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'), $2, 'd' || n, 'd' || n, 'doctor', 'Doctor ' || n,
                lpad(n::text, greatest(6, length(n::text)), '0'), $3, TRUE, $4, $4
             FROM generate_series(1, $1::bigint) AS n",
        )
        .bind(n)
        .bind(CLINIC)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_sessions (id, user_id, clinic_id, method, authenticator_kind, authenticator_id, amr, acr,
                auth_time, expires_at, idle_secs, last_activity_at, ended_at, ended_reason, created_at, updated_at)
             SELECT '10000000-0000-4000-8000-' || lpad(n::text, 12, '0'), '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'),
                $2, 'fido', 'fido', '20000000-0000-4000-8000-' || lpad(n::text, 12, '0'), '[\"pwd\",\"hwk\",\"mfa\"]', 'aal3',
                $3, $3 + 28800, 3600, $3, NULL, NULL, $3, $3
             FROM generate_series(1, $1::bigint) AS n",
        )
        .bind(n)
        .bind(CLINIC)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO fido_credentials (id, credential_id, user_id, name, aaguid, aaguid_attested, backup_eligible, stored,
                counter, linked_via, last_used_at, created_at, updated_at)
             SELECT '20000000-0000-4000-8000-' || lpad(n::text, 12, '0'), decode(md5('c' || n) || md5('k' || n), 'hex'),
                '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'), 'Key',
                '00000000-0000-0000-0000-000000000000', FALSE, FALSE, '{}', 0, 'code', NULL, $2, $2
             FROM generate_series($3::bigint + 1, $1::bigint) AS n",
        )
        .bind(n)
        .bind(now)
        .bind(pool_max)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // What an operator runs after a bulk load (and what autovacuum would otherwise start
        // on these tables during a measured window): hint bits and the visibility map set,
        // statistics gathered.
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

/// Ports and paths of one gateway instance.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub data_dir: PathBuf,
    pub port: u16,
    pub ops_port: u16,
    pub db_url: String,
    pub max_connections: u32,
    pub argon2_kib: u32,
    pub log_level: String,
}

/// Writes `gateway.toml` into the data directory; returns its path.
pub fn write_config(c: &GatewayConfig, pki: &PkiFiles) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&c.data_dir)?;
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let text = format!(
        "# Written by `bench run`.\n\
         data_dir = {data}\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n\
         [tls]\ncert = {cert}\nkey = {key}\n\n\
         [ops]\nlisten = \"127.0.0.1:{ops}\"\n\n\
         [database]\nurl = {url:?}\nmax_connections = {maxc}\n\n\
         [login]\nargon2_memory_kib = {kib}\nargon2_iterations = 1\n\
         # The login-timing scenario measures checked attempts; a lockout would end them.\n\
         max_failures = 1000000000\n\n\
         [log]\nformat = \"json\"\nlevel = {level:?}\n",
        data = q(&c.data_dir),
        port = c.port,
        cert = q(&pki.server_chain),
        key = q(&pki.server_key),
        ops = c.ops_port,
        url = c.db_url,
        maxc = c.max_connections,
        kib = c.argon2_kib,
        level = c.log_level,
    );
    let path = c.data_dir.join("gateway.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
