//! `gateway demo`: a complete development installation in one directory — PKI, configuration,
//! database with a demo clinic, doctor and staff user — then the server on localhost.
//! A second run reuses everything and prints the same instructions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use devpki::cards::{CaOptions, CardSpec, Hpki, Jpki};
use devpki::{Authority, KeyAlg, LeafSpec, LeafUsage, pkcs12};
use serde::{Deserialize, Serialize};

use crate::admin::{self, Admin, PasswordChoice};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat};
use clap::Args;
use crate::password::PasswordHasher;
use crate::store::{AnchorKind, RevocationPolicy, Store, UserKind};

/// The demo clinic's code.
/// `gateway demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its PKI, configuration and database; reused when it exists.
    #[arg(long, default_value = "ninsho-demo")]
    pub dir: PathBuf,
    /// HTTPS port on localhost.
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Ops (health, metrics) port on localhost.
    #[arg(long, default_value_t = 9090)]
    pub ops_port: u16,
    /// Set everything up and print the instructions, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

pub const CLINIC_ID: &str = "21234";

/// Secrets the demo generated, kept (mode 0600) so a second run can print them again.
#[derive(Serialize, Deserialize)]
struct DemoSecrets {
    p12_password: String,
    doctor_login: String,
    doctor_password: String,
    staff_login: String,
    staff_password: String,
    port: u16,
    /// The registration code issued for doctor1 at setup (demo only: a real code is shown once).
    #[serde(default)]
    enroll_code: Option<String>,
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Keys, the .p12 and demo-secrets.json are created 0600, never briefly readable by others.
    devpki::write_file(path, contents, private).with_context(|| format!("writing {}", path.display()))
}

/// Paths of the demo installation.
pub struct DemoPaths {
    /// Root directory.
    pub dir: PathBuf,
}

impl DemoPaths {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    /// The generated configuration file.
    pub fn config(&self) -> PathBuf {
        self.p("gateway.toml")
    }
}

/// Sets up (or reuses) the demo in `args.dir`, prints instructions to `out` and, unless
/// `--no-serve`, serves until Ctrl-C.
pub async fn run(args: &DemoArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let dir = if args.dir.is_absolute() { args.dir.clone() } else { std::env::current_dir()?.join(&args.dir) };
    let paths = DemoPaths { dir };
    let secrets_path = paths.p("demo-secrets.json");
    let fresh = !secrets_path.exists();
    let secrets = if fresh {
        setup(&paths, args).await.context("setting up the demo")?
    } else {
        serde_json::from_slice(&std::fs::read(&secrets_path)?).context("reading demo-secrets.json")?
    };
    let config = Config::load(Some(&paths.config()))?;
    print_instructions(out, &paths, &secrets, fresh)?;
    out.flush()?;
    if args.no_serve {
        return Ok(());
    }
    crate::telemetry::init(&config.log);
    let app = crate::Application::build(config, Arc::new(SystemClock)).await?;
    app.run_until(crate::server::shutdown_signal()).await
}

async fn setup(paths: &DemoPaths, args: &DemoArgs) -> anyhow::Result<DemoSecrets> {
    let now = SystemClock.now();
    std::fs::create_dir_all(&paths.dir)?;

    // Server: a demo CA the browser may trust, and a localhost certificate.
    let server_ca = Authority::new("Ninsho Demo Server CA", "Ninsho Demo", KeyAlg::EcP256, now)?;
    let server = server_ca.issue(&LeafSpec::new(
        "localhost",
        LeafUsage::TlsServer { dns_names: vec!["localhost".into()] },
        now,
        825,
    ))?;
    write_file(&paths.p("tls/server-ca.pem"), server_ca.cert_pem().as_bytes(), false)?;
    write_file(&paths.p("tls/server.pem"), format!("{}{}", server.cert_pem, server_ca.cert_pem()).as_bytes(), false)?;
    write_file(&paths.p("tls/server.key"), server.key_pem.as_bytes(), true)?;

    // Clinic: CA, CRL, and the client certificate as PEM and .p12.
    let clinic_ca = Authority::new("Ninsho Demo Clinic CA", "Ninsho Demo", KeyAlg::EcP256, now)?;
    let client = clinic_ca
        .issue(&LeafSpec::new(&format!("clinic-{CLINIC_ID}"), LeafUsage::TlsClient, now, 365).organization("Demo Clinic"))?;
    let clinic_crl = clinic_ca.crl(&[], now - time::Duration::hours(1), now + time::Duration::days(365))?;
    let p12_password = admin::generate_password();
    let p12 = pkcs12(&client, &[clinic_ca.cert_der()], &format!("clinic-{CLINIC_ID}"), &p12_password)?;
    write_file(&paths.p("clinic/ca.pem"), clinic_ca.cert_pem().as_bytes(), false)?;
    write_file(&paths.p("clinic/ca.key"), clinic_ca.key_pem().as_bytes(), true)?;
    write_file(&paths.p("clinic/crl.der"), &clinic_crl, false)?;
    write_file(&paths.p("clinic/client.pem"), client.cert_pem.as_bytes(), false)?;
    write_file(&paths.p("clinic/client.key"), client.key_pem.as_bytes(), true)?;
    write_file(&paths.p("clinic/client.p12"), &p12, true)?;

    // Cards: HPKI and JPKI hierarchies shaped like the real ones (devpki::cards: MHLW-like root with
    // MEDIS-like signing and authentication CAs; J-LIS-like CAs) and the demo doctor's card, with the
    // authentication and the signing certificate and key, laid out for `card-sim` (card/README.md).
    let demo_pki = CaOptions::new(now).label("Ninsho Demo");
    let holder = CardSpec {
        organization: "NINSHO NAIKA CLINIC".into(),
        organization_kanji: "ニンショウ内科クリニック".into(),
        ..CardSpec::new(now)
    };
    let hpki = Hpki::with(&demo_pki)?;
    let jpki = Jpki::with(&demo_pki)?;
    let hpki_card = hpki.card(&holder)?;
    let jpki_card = jpki.card(&holder)?;
    hpki_card.write_sim_dir(&paths.p("cards/hpki"))?;
    write_file(&paths.p("cards/hpki/root-ca-cert.pem"), hpki.root().cert_pem().as_bytes(), false)?;
    jpki_card.write_sim_dir(&paths.p("cards/jpki"))?;

    // EMR backend: a service CA and the demo EMR's TLS client certificate (docs/design.md §3.8).
    let service_ca = Authority::new("Ninsho Demo Service CA", "Ninsho Demo", KeyAlg::EcP256, now)?;
    let emr = service_ca.issue(&LeafSpec::new("emr-demo", LeafUsage::TlsClient, now, 365).organization("Demo EMR"))?;
    write_file(&paths.p("service/ca.pem"), service_ca.cert_pem().as_bytes(), false)?;
    write_file(&paths.p("service/emr.pem"), emr.cert_pem.as_bytes(), false)?;
    write_file(&paths.p("service/emr.key"), emr.key_pem.as_bytes(), true)?;

    // Configuration.
    let config_text = format!(
        "# Generated by `gateway demo`. See deploy/gateway.example.toml for every key.\n\
         data_dir = {dir:?}\n\n[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n\n[log]\nformat = \"pretty\"\nlevel = \"info\"\n",
        dir = paths.dir.display().to_string(),
        port = args.port,
        ops = args.ops_port,
        cert = paths.p("tls/server.pem").display().to_string(),
        key = paths.p("tls/server.key").display().to_string(),
    );
    write_file(&paths.config(), config_text.as_bytes(), false)?;
    let config = Config::load(Some(&paths.config()))?;
    debug_assert_eq!(config.log.format, LogFormat::Pretty);

    // Database content.
    let store = Store::connect(&config.database_url()?, 2).await?.with_audit_key(config.audit_key()?);
    store.migrate().await?;
    let admin = Admin { store: &store, now: now.unix_timestamp() };
    admin.clinic_add(CLINIC_ID, "ニンショウ内科クリニック").await?;
    admin.anchor_add(AnchorKind::Clinic, clinic_ca.cert_pem().as_bytes(), Some(&clinic_crl), RevocationPolicy::Crl, None).await?;
    // An HPKI card holds no CA certificate, so the HPKI anchor is the issuing authentication CA.
    admin.anchor_add(AnchorKind::Hpki, hpki.auth_ca().cert_pem().as_bytes(), None, RevocationPolicy::None, None).await?;
    admin.anchor_add(AnchorKind::Jpki, jpki.auth_ca().cert_pem().as_bytes(), None, RevocationPolicy::None, None).await?;
    admin.anchor_add(AnchorKind::Service, service_ca.cert_pem().as_bytes(), None, RevocationPolicy::None, None).await?;
    let emr_cert = crate::tls::PeerCert::from_der(&emr.cert_der)?;
    let emr_client = crate::store::ServiceClient {
        id: "emr-demo".into(),
        name: "Demo EMR".into(),
        role: crate::store::ServiceRole::Emr,
        fingerprint: emr_cert.fingerprint,
        subject: emr_cert.subject,
        enabled: true,
        clinics: vec![CLINIC_ID.into()],
    };
    store.add_service_client(&emr_client, now.unix_timestamp()).await?;
    admin.clinic_cert_add(CLINIC_ID, &paths.p("clinic/client.pem"), None).await?;
    let hasher = PasswordHasher::new(config.login.argon2_memory_kib, config.login.argon2_iterations)?;
    // Permanent: the logins the demo prints keep working, without a change-password page first.
    let (_, doctor_password) = admin
        .user_add(&hasher, CLINIC_ID, "doctor1", UserKind::Doctor, "山田 太郎", Some("123456"), PasswordChoice::Generate, true)
        .await?;
    let (_, staff_password) =
        admin.user_add(&hasher, CLINIC_ID, "staff1", UserKind::Staff, "佐藤 花子", None, PasswordChoice::Generate, true).await?;
    // A registration code so the demo doctor can link a passkey right away (docs/design.md §5).
    let (enroll_code, _) = admin
        .enroll_code_issue(CLINIC_ID, "doctor1", config.enrollment.code_ttl_secs, config.enrollment.code_max_failures)
        .await?;
    store.close().await;

    let secrets = DemoSecrets {
        p12_password: p12_password.to_string(),
        doctor_login: "doctor1".into(),
        doctor_password: doctor_password.to_string(),
        staff_login: "staff1".into(),
        staff_password: staff_password.to_string(),
        port: args.port,
        enroll_code: Some(enroll_code.to_string()),
    };
    write_file(&paths.p("demo-secrets.json"), &serde_json::to_vec_pretty(&secrets)?, true)?;
    Ok(secrets)
}

fn print_instructions(out: &mut dyn Write, paths: &DemoPaths, s: &DemoSecrets, fresh: bool) -> anyhow::Result<()> {
    let d = paths.dir.display();
    let port = s.port;
    writeln!(out, "Ninsho Gateway demo {} in {d}", if fresh { "created" } else { "reused" })?;
    writeln!(out)?;
    writeln!(out, "1. Import into your browser (Chrome: Settings → Privacy and security → Security → Manage certificates):")?;
    writeln!(out, "   - client certificate (Your certificates → Import): {d}/clinic/client.p12")?;
    writeln!(out, "     PKCS#12 password: {}", s.p12_password)?;
    writeln!(out, "   - server CA (Authorities → Import, trust for websites): {d}/tls/server-ca.pem")?;
    writeln!(out, "2. Open https://localhost:{port}/ and choose the certificate clinic-{CLINIC_ID} when asked.")?;
    writeln!(out, "3. Sign in (clinic {CLINIC_ID}):")?;
    writeln!(out, "   - doctor: login ID {}  password {}", s.doctor_login, s.doctor_password)?;
    writeln!(out, "   - staff (refused, not a doctor): login ID {}  password {}", s.staff_login, s.staff_password)?;
    writeln!(out, "4. Link a passkey or security key on the method page (FIDO認証器の登録):")?;
    if let Some(code) = &s.enroll_code {
        writeln!(out, "   - registration code for doctor1 (valid 24 h from the first run, once): {code}")?;
    }
    writeln!(
        out,
        "   - a new code: gateway --config {d}/gateway.toml admin enroll-code issue --clinic {CLINIC_ID} --login-id doctor1"
    )?;
    writeln!(out, "   then press FIDO認証 to open a signing session (認証済み).")?;
    writeln!(out)?;
    writeln!(out, "Command line: curl --cert-type P12 --cert '{d}/clinic/client.p12:{}' --cacert {d}/tls/server-ca.pem https://localhost:{port}/login", s.p12_password)?;
    writeln!(out, "Card simulator files: {d}/cards/hpki and {d}/cards/jpki")?;
    writeln!(out)?;
    writeln!(out, "EMR backend (service client emr-demo), once doctor1 has a signing session:")?;
    let emr = format!("curl --cert {d}/service/emr.pem --key {d}/service/emr.key --cacert {d}/tls/server-ca.pem");
    writeln!(out, "   {emr} 'https://localhost:{port}/api/v1/signing-sessions?clinic_id={CLINIC_ID}&doctor_id=doctor1'")?;
    writeln!(
        out,
        "   {emr} -H 'content-type: application/json' -d '{{\"clinic_id\":\"{CLINIC_ID}\",\"doctor_id\":\"doctor1\"}}' https://localhost:{port}/api/v1/signing-tokens"
    )?;
    writeln!(out, "Admin: gateway --config {d}/gateway.toml admin --help")?;
    Ok(())
}
