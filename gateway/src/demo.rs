//! `gateway demo`: a complete development installation in one directory — PKI, configuration,
//! database with a demo clinic, doctor and staff user, and a remote signer (docs/design.md §3.11)
//! with a credential for the demo doctor — then the gateway on localhost and the signer beside it
//! as its own process. A second run reuses everything and prints the same instructions.
//!
//! The signer is set up through its own CLI (`signer::cli::run`, in this process) and served by
//! this same executable's hidden `demo-signer` command in a child process: its own listener,
//! configuration, database and keys, as in production, without a second binary to build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use devpki::cards::{CaOptions, CardSpec, Hpki, Jpki};
use devpki::{Authority, KeyAlg, LeafSpec, LeafUsage, pkcs12};
use serde::{Deserialize, Serialize};

use crate::admin::{self, Admin, MatchArg, PasswordChoice, SetLogin, TokenAuthArg};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat};
use crate::demo_clinic::{DemoChild, find_on_path, first_exit};
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
    /// The remote signer's HTTPS port (CSC API) on localhost.
    #[arg(long, default_value_t = 9443)]
    pub signer_port: u16,
    /// The remote signer's ops (health, metrics) port on localhost.
    #[arg(long, default_value_t = 9444)]
    pub signer_ops_port: u16,
    /// The demo's local time-stamping authority (RFC 3161 over HTTP) on localhost, which the
    /// signer asks for the e-prescription signature's time-stamp.
    #[arg(long, default_value_t = 9445)]
    pub tsa_port: u16,
    /// The executable run as `EXE --config FILE demo-signer` for the signer; default: this one.
    /// (Tests run the demo inside their own binary and point this at the built `gateway`.)
    #[arg(long, hide = true)]
    pub signer_exe: Option<PathBuf>,
    /// The demo clinic agent's port on 127.0.0.1 (its OQS relay's set-up and status pages). Not
    /// the card port of the login page (18443): the README's card walk-through runs its own agent
    /// there, against a private pcscd.
    #[arg(long, default_value_t = 18444)]
    pub agent_port: u16,
    /// The clinic agent executable; default: `card-agent` beside this one.
    #[arg(long, value_name = "EXE")]
    pub agent_exe: Option<PathBuf>,
    /// The OQS terminal simulator executable; default: `oqs-sim` beside this one.
    #[arg(long, value_name = "EXE")]
    pub oqs_sim_exe: Option<PathBuf>,
    /// The port on 127.0.0.1 of the second clinic's OpenID Connect provider (its EMR sign-in),
    /// fixed when the demo directory is made.
    #[arg(long, default_value_t = 9446)]
    pub oidc_port: u16,
    /// The provider script run with Node.js; default: `tests/oidc/provider.mjs` under the current
    /// directory (the repository's root), with its packages installed (`npm ci` there).
    #[arg(long, value_name = "FILE")]
    pub oidc_provider: Option<PathBuf>,
}

pub const CLINIC_ID: &str = "21234";
/// The demo doctor's login ID and 医籍番号: the signer's credential is bound to the latter, which
/// the gateway's tokens carry as `sub`.
const DOCTOR_LOGIN: &str = "doctor1";
const DOCTOR_REG_NO: &str = "123456";
/// The demo doctor's credential at the signer (CSC `credentialID`).
const CREDENTIAL_ID: &str = "cred-doctor1";
/// The demo's second clinic, whose doctors sign in through their EMR's OpenID Connect provider
/// (docs/design.md §3.17) instead of a password: the repository's test provider on Node.js.
const UPSTREAM_CLINIC_ID: &str = "21235";
const UPSTREAM_DOCTOR_LOGIN: &str = "doctor2";
const UPSTREAM_DOCTOR_REG_NO: &str = "654321";
/// doctor2's id at the EMR: the provider's `sub`, stored as the user's external id.
const UPSTREAM_SUB: &str = "emr-user-0002";
/// The gateway's client id at that provider.
const UPSTREAM_CLIENT_ID: &str = "ninsho-demo";
/// CSC OIDs of the printed signHash call: SHA-256, and RSASSA-PKCS1-v1_5 with SHA-256.
const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";
const RSA_SHA256_OID: &str = "1.2.840.113549.1.1.11";

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
    /// The remote signer; absent in a demo directory made before the demo had one.
    #[serde(default)]
    signer: Option<DemoSigner>,
    /// The clinic that signs in through its EMR's provider; absent in an older demo directory.
    #[serde(default)]
    upstream: Option<DemoUpstream>,
}

/// The second clinic's EMR sign-in, as set up.
#[derive(Serialize, Deserialize)]
struct DemoUpstream {
    /// The provider's port on 127.0.0.1 (its issuer is `http://127.0.0.1:PORT`).
    port: u16,
    /// The gateway's client secret at the provider, which the demo starts with it.
    client_secret: String,
    /// doctor2's registration code (demo only, like doctor1's).
    enroll_code: Option<String>,
}

/// The demo's remote signer, as set up.
#[derive(Serialize, Deserialize)]
struct DemoSigner {
    port: u16,
    ops_port: u16,
    credential_id: String,
    /// The local TSA's port; absent in a demo directory made before signDoc.
    #[serde(default)]
    tsa_port: Option<u16>,
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
    /// The signer's configuration file.
    pub fn signer_config(&self) -> PathBuf {
        self.p("signer/signer.toml")
    }
}

/// Sets up (or reuses) the demo in `args.dir`, prints instructions to `out` and, unless
/// `--no-serve`, serves until Ctrl-C.
pub async fn run(args: &DemoArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let dir = if args.dir.is_absolute() { args.dir.clone() } else { std::env::current_dir()?.join(&args.dir) };
    let paths = DemoPaths { dir };
    let secrets_path = paths.p("demo-secrets.json");
    let fresh = !secrets_path.exists();
    let mut secrets: DemoSecrets = if fresh {
        setup(&paths, args).await.context("setting up the demo")?
    } else {
        serde_json::from_slice(&std::fs::read(&secrets_path)?).context("reading demo-secrets.json")?
    };
    let config = Config::load(Some(&paths.config()))?;
    if !fresh {
        // A printed code that was used (usually for the first passkey), voided or has expired: a
        // second run prints one that works instead of the spent one.
        let mut renewed = false;
        if let Some(code) = fresh_code(&config, CLINIC_ID, DOCTOR_LOGIN).await.context("checking the demo's registration code")? {
            secrets.enroll_code = Some(code);
            renewed = true;
        }
        if let Some(upstream) = secrets.upstream.as_mut()
            && let Some(code) = fresh_code(&config, UPSTREAM_CLINIC_ID, UPSTREAM_DOCTOR_LOGIN).await.context("checking doctor2's registration code")?
        {
            upstream.enroll_code = Some(code);
            renewed = true;
        }
        if renewed {
            write_file(&secrets_path, &serde_json::to_vec_pretty(&secrets)?, true)?;
        }
    }
    if secrets.signer.as_ref().is_some_and(|s| s.tsa_port.is_some()) {
        refresh_crls(&paths).await.context("issuing the demo's CRLs")?;
    }
    let clinic = crate::demo_clinic::prepare(&paths.dir, secrets.port, CLINIC_ID).context("setting up the demo clinic's OQS relay")?;
    print_instructions(out, &paths, &secrets, fresh)?;
    let d = paths.dir.display();
    let emr = format!("curl --cert {d}/service/emr.pem --key {d}/service/emr.key --cacert {d}/tls/server-ca.pem");
    crate::demo_clinic::print(out, &clinic, &emr, secrets.port, args.agent_port, CLINIC_ID)?;
    out.flush()?;
    if args.no_serve {
        return Ok(());
    }
    crate::telemetry::init(&config.log);
    let app = crate::Application::build(config, Arc::new(SystemClock)).await?;
    if secrets.signer.is_none() {
        return app.run_until(crate::server::shutdown_signal()).await;
    }
    let exe = match &args.signer_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("locating this executable to run the signer")?,
    };
    let tsa = match secrets.signer.as_ref().and_then(|s| s.tsa_port) {
        Some(port) => Some(start_tsa(&paths, port).await?),
        None => None,
    };
    let config_arg = paths.signer_config();
    let signer = DemoChild::spawn("signer", &exe, &["--config".as_ref(), config_arg.as_os_str(), "demo-signer".as_ref(), "serve".as_ref()])?;
    let mut children = vec![signer];
    children.extend(crate::demo_clinic::spawn(out, &clinic, secrets.port, args.agent_port, args.agent_exe.as_deref(), args.oqs_sim_exe.as_deref())?);
    if let Some(upstream) = &secrets.upstream {
        children.extend(spawn_provider(out, args, secrets.port, upstream)?);
    }
    out.flush()?;
    let served = serve_with_children(app, children).await;
    if let Some(tsa) = tsa {
        tsa.abort();
    }
    served
}

/// A new registration code for a demo doctor when no usable one is open (the saved one was
/// used, voided or has expired); `None` when the saved one still works.
async fn fresh_code(config: &Config, clinic_id: &str, login_id: &str) -> anyhow::Result<Option<String>> {
    let store = Store::connect(&config.database_url()?, 1).await?.with_audit_key(config.audit_key()?);
    let now = SystemClock.now().unix_timestamp();
    let user = store.user_by_login(clinic_id, login_id).await?;
    let usable = store.enrollment_code_of(&user.id).await?.is_some_and(|c| c.is_usable(now));
    let issued = if usable {
        None
    } else {
        let admin = Admin { store: &store, now };
        let ttl = config.enrollment.code_ttl_secs;
        let (code, _) = admin.enroll_code_issue(clinic_id, login_id, ttl, config.enrollment.code_max_failures).await?;
        Some(code.to_string())
    };
    store.close().await;
    Ok(issued)
}

/// Serves the gateway until Ctrl-C or SIGTERM, or until one of its processes (the signer, the
/// clinic agent, the simulator) ends on its own (then the demo stops too: half a demo would only
/// confuse); stops the others and waits for all.
async fn serve_with_children(app: crate::Application, mut children: Vec<DemoChild>) -> anyhow::Result<()> {
    let limit = std::time::Duration::from_secs(10);
    // All at once: each gets its SIGTERM now, and the slowest bounds the wait.
    let stop_all = |children: Vec<DemoChild>| async move {
        let tasks: Vec<_> = children.into_iter().map(|c| tokio::spawn(c.stop(limit))).collect();
        let mut result = Ok(());
        for task in tasks {
            result = result.and(task.await.map_err(anyhow::Error::from).and_then(|r| r));
        }
        result
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = app.run_until(async move {
        let _ = stop_rx.await;
    });
    tokio::pin!(gateway);
    let signal = crate::server::shutdown_signal();
    tokio::pin!(signal);
    tokio::select! {
        () = &mut signal => {
            let _ = stop_tx.send(());
            let (gateway, children) = tokio::join!(gateway, stop_all(children));
            gateway.and(children)
        }
        (name, status) = first_exit(&mut children) => {
            let status = status?;
            let _ = stop_tx.send(());
            let (gateway, others) = tokio::join!(gateway, stop_all(children));
            gateway.and(others)?;
            // Ctrl-C in a terminal reaches every process; a child, draining for 0 s, may exit
            // before this one notices its own signal. Exit 0 is such a stop.
            if status.success() {
                Ok(())
            } else {
                anyhow::bail!("the demo {name} exited ({status}); its output above says why")
            }
        }
        result = &mut gateway => {
            stop_all(children).await?;
            result
        }
    }
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

    // Remote signer: its server certificate for localhost (the browser's and curl's demo server CA
    // vouches for both services), and its client certificate at the gateway (service client
    // `signer-demo`, role signer: it consumes tokens).
    let signer_server = server_ca.issue(&LeafSpec::new(
        "localhost",
        LeafUsage::TlsServer { dns_names: vec!["localhost".into()] },
        now,
        825,
    ))?;
    write_file(&paths.p("signer/server.pem"), format!("{}{}", signer_server.cert_pem, server_ca.cert_pem()).as_bytes(), false)?;
    write_file(&paths.p("signer/server.key"), signer_server.key_pem.as_bytes(), true)?;
    let signer_client =
        service_ca.issue(&LeafSpec::new("signer-demo", LeafUsage::TlsClient, now, 365).organization("Demo Remote Signer"))?;
    write_file(&paths.p("signer/gateway-client.pem"), signer_client.cert_pem.as_bytes(), false)?;
    write_file(&paths.p("signer/gateway-client.key"), signer_client.key_pem.as_bytes(), true)?;

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
    let signer_cert = crate::tls::PeerCert::from_der(&signer_client.cert_der)?;
    let signer_client = crate::store::ServiceClient {
        id: "signer-demo".into(),
        name: "Demo remote signer".into(),
        role: crate::store::ServiceRole::Signer,
        fingerprint: signer_cert.fingerprint,
        subject: signer_cert.subject,
        enabled: true,
        // A signer consumes tokens of any clinic; which clinics' doctors it signs for is its own
        // configuration (its callers and credentials).
        clinics: Vec::new(),
    };
    store.add_service_client(&signer_client, now.unix_timestamp()).await?;
    admin.clinic_cert_add(CLINIC_ID, &paths.p("clinic/client.pem"), None).await?;
    let hasher = PasswordHasher::new(config.login.argon2_memory_kib, config.login.argon2_iterations)?;
    // Permanent: the logins the demo prints keep working, without a change-password page first.
    let (_, doctor_password) = admin
        .user_add(&hasher, CLINIC_ID, DOCTOR_LOGIN, UserKind::Doctor, "山田 太郎", Some(DOCTOR_REG_NO), PasswordChoice::Generate, true)
        .await?;
    let (_, staff_password) =
        admin.user_add(&hasher, CLINIC_ID, "staff1", UserKind::Staff, "佐藤 花子", None, PasswordChoice::Generate, true).await?;
    // A registration code so the demo doctor can link a passkey right away (docs/design.md §5).
    let (enroll_code, _) = admin
        .enroll_code_issue(CLINIC_ID, DOCTOR_LOGIN, config.enrollment.code_ttl_secs, config.enrollment.code_max_failures)
        .await?;
    let upstream = setup_upstream(paths, args, &config, &admin, &hasher, &clinic_ca, &p12_password, now).await.context("setting up the EMR sign-in clinic")?;
    store.close().await;
    let signer = setup_signer(paths, args, &config).await.context("setting up the demo signer")?;

    let secrets = DemoSecrets {
        p12_password: p12_password.to_string(),
        doctor_login: DOCTOR_LOGIN.into(),
        doctor_password: doctor_password.to_string(),
        staff_login: "staff1".into(),
        staff_password: staff_password.to_string(),
        port: args.port,
        enroll_code: Some(enroll_code.to_string()),
        signer: Some(signer),
        upstream: Some(upstream),
    };
    write_file(&paths.p("demo-secrets.json"), &serde_json::to_vec_pretty(&secrets)?, true)?;
    Ok(secrets)
}

/// The second clinic (docs/design.md §3.17): its own device certificate from the demo clinic CA
/// (`clinic2/`), doctor2 with the EMR's id as external id and a registration code, and sign-in
/// through the provider on `args.oidc_port` (the client secret sealed in the database; the demo
/// keeps a copy to start the provider with).
#[allow(clippy::too_many_arguments, reason = "the pieces setup() already made, handed on")]
async fn setup_upstream(
    paths: &DemoPaths,
    args: &DemoArgs,
    config: &Config,
    admin: &Admin<'_>,
    hasher: &PasswordHasher,
    clinic_ca: &Authority,
    p12_password: &str,
    now: time::OffsetDateTime,
) -> anyhow::Result<DemoUpstream> {
    let name = format!("clinic-{UPSTREAM_CLINIC_ID}");
    let client = clinic_ca.issue(&LeafSpec::new(&name, LeafUsage::TlsClient, now, 365).organization("Demo EMR Clinic"))?;
    write_file(&paths.p("clinic2/client.pem"), client.cert_pem.as_bytes(), false)?;
    write_file(&paths.p("clinic2/client.key"), client.key_pem.as_bytes(), true)?;
    write_file(&paths.p("clinic2/client.p12"), &pkcs12(&client, &[clinic_ca.cert_der()], &name, p12_password)?, true)?;
    admin.clinic_add(UPSTREAM_CLINIC_ID, "デモ電子カルテ連携クリニック").await?;
    admin.clinic_cert_add(UPSTREAM_CLINIC_ID, &paths.p("clinic2/client.pem"), None).await?;
    // A password is made as for any account, but the clinic's password form is off: it is never used.
    let (user_id, _) = admin
        .user_add(hasher, UPSTREAM_CLINIC_ID, UPSTREAM_DOCTOR_LOGIN, UserKind::Doctor, "鈴木 花子", Some(UPSTREAM_DOCTOR_REG_NO), PasswordChoice::Generate, true)
        .await?;
    admin.store.set_user_external_id(&user_id, Some(UPSTREAM_SUB), admin.now).await?;
    let (code, _) = admin
        .enroll_code_issue(UPSTREAM_CLINIC_ID, UPSTREAM_DOCTOR_LOGIN, config.enrollment.code_ttl_secs, config.enrollment.code_max_failures)
        .await?;
    let secret = admin::generate_password();
    let secret_file = paths.p("clinic2/oidc-client-secret");
    write_file(&secret_file, secret.as_bytes(), true)?;
    let login = SetLogin {
        clinic: UPSTREAM_CLINIC_ID.into(),
        embedded: false,
        oidc: Some(format!("http://127.0.0.1:{}", args.oidc_port)),
        client_id: Some(UPSTREAM_CLIENT_ID.into()),
        client_secret_file: Some(secret_file),
        claim: "sub".into(),
        match_on: MatchArg::ExternalId,
        scopes: "openid profile".into(),
        token_auth: TokenAuthArg::ClientSecretBasic,
    };
    admin.clinic_set_login(config, login).await?;
    Ok(DemoUpstream { port: args.oidc_port, client_secret: secret.to_string(), enroll_code: Some(code.to_string()) })
}

/// Starts the second clinic's provider (the repository's test provider on Node.js), or says what
/// it needs: the rest of the demo runs without Node.
fn spawn_provider(out: &mut (dyn Write + Send), args: &DemoArgs, gateway_port: u16, upstream: &DemoUpstream) -> anyhow::Result<Option<DemoChild>> {
    let script = match &args.oidc_provider {
        Some(path) => path.clone(),
        None => std::env::current_dir()?.join("tests/oidc/provider.mjs"),
    };
    let installed = script.is_file() && script.parent().is_some_and(|d| d.join("node_modules/oidc-provider").is_dir());
    let (Some(node), true) = (find_on_path("node"), installed) else {
        writeln!(
            out,
            "(Clinic {UPSTREAM_CLINIC_ID}'s EMR sign-in needs Node.js and the test provider's packages: run `(cd tests/oidc && npm ci)` \
             in the repository, then the demo again from the repository's root.)"
        )?;
        return Ok(None);
    };
    let port = upstream.port.to_string();
    let redirect = format!("https://localhost:{gateway_port}/login/oidc/callback");
    let env = [
        ("OIDC_CLIENT_ID", UPSTREAM_CLIENT_ID),
        ("OIDC_CLIENT_SECRET", upstream.client_secret.as_str()),
        ("OIDC_ACCOUNTS", UPSTREAM_SUB),
        ("OIDC_PORT", port.as_str()),
        ("OIDC_REDIRECT_URIS", redirect.as_str()),
    ];
    Ok(Some(DemoChild::spawn_with_env("EMR's OpenID Connect provider", &node, &[script.as_os_str()], &env)?))
}

/// The signer's configuration under `signer/`, its database (SQLite, with its key-encryption and
/// audit key files beside it, created by the signer), the demo EMR as its caller, a demo signing
/// CA and the demo doctor's credential — all through the signer's own CLI.
async fn setup_signer(paths: &DemoPaths, args: &DemoArgs, gateway: &Config) -> anyhow::Result<DemoSigner> {
    let q = |rel: &str| format!("{:?}", paths.p(rel).display().to_string());
    let text = format!(
        "# Generated by `gateway demo`. See deploy/signer.example.toml for every key.\n\
         data_dir = {data}\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_drain_secs = 0\n\n\
         [tls]\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {client_ca}\n\n\
         [ops]\nlisten = \"127.0.0.1:{ops}\"\n\n\
         [gateway]\nurl = \"https://localhost:{gw_port}/\"\nca_file = {gw_ca}\nclient_cert_file = {gw_cert}\nclient_key_file = {gw_key}\n\n\
         [csc]\naudience = {audience:?}\n\n[keys]\nbackend = \"software\"\n\n\
         [ca]\ncert_file = {ca_cert}\nkey_file = {ca_key}\n\n\
         [signdoc]\ncrl_files = [{ca_crl}]\n\n\
         [tsa]\nurl = \"http://127.0.0.1:{tsa_port}/\"\nanchor_files = [{tsa_ca}]\ncrl_files = [{tsa_crl}]\n\n\
         [verify]\nanchor_files = [{ca_cert}]\ntsa_anchor_files = [{tsa_ca}]\n",
        data = q("signer"),
        port = args.signer_port,
        cert = q("signer/server.pem"),
        key = q("signer/server.key"),
        client_ca = q("service/ca.pem"),
        ops = args.signer_ops_port,
        gw_port = args.port,
        gw_ca = q("tls/server-ca.pem"),
        gw_cert = q("signer/gateway-client.pem"),
        gw_key = q("signer/gateway-client.key"),
        audience = gateway.tokens.audience,
        ca_cert = q("signer/signing-ca.pem"),
        ca_key = q("signer/signing-ca.key"),
        ca_crl = q("signer/signing-ca.crl"),
        tsa_port = args.tsa_port,
        tsa_ca = q("tsa/ca.pem"),
        tsa_crl = q("tsa/ca.crl"),
    );
    // The demo TSA's CA and certificate, made once (its CRL is issued at each start).
    let tsa = tsp::responder::Responder::generate(SystemClock.unix())?;
    write_file(&paths.p("tsa/ca.pem"), tsa.ca_pem().as_bytes(), false)?;
    write_file(&paths.p("tsa/ca.key"), tsa.ca_key_pem().as_bytes(), true)?;
    write_file(&paths.p("tsa/tsa.pem"), tsa.tsa_cert_pem().as_bytes(), false)?;
    write_file(&paths.p("tsa/tsa.key"), tsa.tsa_key_pem().as_bytes(), true)?;
    write_file(&paths.p("signer/sample-prescription.xml"), SAMPLE_PRESCRIPTION, false)?;
    let config = paths.signer_config();
    write_file(&config, text.as_bytes(), false)?;
    let path = |rel: &str| paths.p(rel).display().to_string();
    signer_cli(&config, &["migrate"]).await?;
    signer_cli(&config, &["admin", "ca", "generate-demo", "--cert", &path("signer/signing-ca.pem"), "--key", &path("signer/signing-ca.key")])
        .await?;
    let emr = path("service/emr.pem");
    signer_cli(&config, &["admin", "client", "add", "--id", "emr-demo", "--name", "Demo EMR", "--cert", &emr, "--clinic", CLINIC_ID]).await?;
    signer_cli(
        &config,
        &[
            "admin", "credential", "create", "--clinic", CLINIC_ID, "--doctor", DOCTOR_REG_NO, "--name", "Taro Yamada",
            "--name-kanji", "山田 太郎", "--organization", "NINSHO NAIKA CLINIC", "--id", CREDENTIAL_ID,
        ],
    )
    .await?;
    Ok(DemoSigner {
        port: args.signer_port,
        ops_port: args.signer_ops_port,
        credential_id: CREDENTIAL_ID.into(),
        tsa_port: Some(args.tsa_port),
    })
}

/// The sample unsigned e-prescription the printed signDoc commands sign.
const SAMPLE_PRESCRIPTION: &[u8] = include_bytes!("../../signer/data/sample-prescription.xml");

/// The demo TSA, loaded from `tsa/`.
fn demo_tsa(paths: &DemoPaths) -> anyhow::Result<tsp::responder::Responder> {
    let read = |rel: &str| std::fs::read_to_string(paths.p(rel)).with_context(|| format!("reading {}", paths.p(rel).display()));
    Ok(tsp::responder::Responder::from_pem(&read("tsa/ca.pem")?, &read("tsa/ca.key")?, &read("tsa/tsa.pem")?, &read("tsa/tsa.key")?)?)
}

/// The CRLs the signer embeds, issued anew at each start so they are current: the signing CA's
/// (through the signer's CLI) and the TSA CA's.
async fn refresh_crls(paths: &DemoPaths) -> anyhow::Result<()> {
    let crl = paths.p("signer/signing-ca.crl").display().to_string();
    signer_cli(&paths.signer_config(), &["admin", "ca", "crl", "--out", &crl]).await?;
    let tsa = demo_tsa(paths)?;
    write_file(&paths.p("tsa/ca.crl"), &tsa.crl_der(SystemClock.unix())?, false)
}

/// Serves the demo TSA on `127.0.0.1:port` until the task is aborted.
async fn start_tsa(paths: &DemoPaths, port: u16) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let tsa = Arc::new(demo_tsa(paths)?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("binding the demo TSA on port {port}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = tsa.serve(listener, || SystemClock.unix()).await {
            tracing::warn!(error = %e, "the demo TSA stopped");
        }
    }))
}

/// `ninsho-signer --config CONFIG ARGS…`, in this process; its output, or its error message.
async fn signer_cli(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["ninsho-signer".to_owned(), "--config".to_owned(), config.display().to_string()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if signer::cli::run(argv, &mut out, &mut err).await != 0 {
        anyhow::bail!("ninsho-signer {}: {}", args.join(" "), String::from_utf8_lossy(&err).trim());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
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
    writeln!(out, "4. Link a passkey, a security key or a demo card on 「認証手段の管理」 (Manage authenticators):")?;
    if let Some(code) = &s.enroll_code {
        writeln!(out, "   - registration code for doctor1 (valid 24 h, once; a run after it was used prints a new one): {code}")?;
    }
    writeln!(
        out,
        "   - a new code: gateway --config {d}/gateway.toml admin enroll-code issue --clinic {CLINIC_ID} --login-id doctor1"
    )?;
    writeln!(out, "   then, on 「本人確認」, press FIDO認証 (or a card) to open a signing session (認証済み).")?;
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
    if let Some(signer) = &s.signer {
        print_signer(out, paths, port, signer)?;
    } else {
        writeln!(out, "(This demo directory predates the remote signer; remove {d} and run `gateway demo` again to have one.)")?;
    }
    print_upstream(out, paths, s)?;
    writeln!(out, "Admin: gateway --config {d}/gateway.toml admin --help")?;
    Ok(())
}

/// The second clinic, which signs in through its EMR's OpenID Connect provider (docs/design.md §3.17).
fn print_upstream(out: &mut dyn Write, paths: &DemoPaths, s: &DemoSecrets) -> anyhow::Result<()> {
    let d = paths.dir.display();
    writeln!(out)?;
    let Some(up) = &s.upstream else {
        writeln!(out, "(This demo directory predates the EMR sign-in clinic; remove {d} and run `gateway demo` again to have one.)")?;
        return Ok(());
    };
    writeln!(
        out,
        "Clinic {UPSTREAM_CLINIC_ID} signs in through its EMR's OpenID Connect provider (the repository's test provider, run with Node.js on http://127.0.0.1:{}):",
        up.port
    )?;
    writeln!(out, "   - client certificate: {d}/clinic2/client.p12 (the same PKCS#12 password); choose clinic-{UPSTREAM_CLINIC_ID} at https://localhost:{}/", s.port)?;
    writeln!(out, "     (a browser keeps the certificate it chose for a site until it restarts: use another browser profile)")?;
    writeln!(out, "   - 「EMRのアカウントでログイン」 (Sign in with your EMR account) signs in {UPSTREAM_DOCTOR_LOGIN}, the EMR's user {UPSTREAM_SUB},")?;
    writeln!(out, "     without a form (the EMR has signed its user in); then link an authenticator and prove presence as doctor1 does")?;
    if let Some(code) = &up.enroll_code {
        writeln!(out, "   - registration code for {UPSTREAM_DOCTOR_LOGIN} (valid 24 h, once): {code}")?;
    }
    writeln!(out, "   - passwords instead: gateway --config {d}/gateway.toml admin clinic set-login {UPSTREAM_CLINIC_ID} --embedded")?;
    writeln!(out)?;
    Ok(())
}

/// The e-prescription: a token bound to the sample document's SHA-256, signDoc, and the signed
/// document's verification, as shell lines to paste after [`print_signer`]'s (they use its `emr`).
fn print_sign_doc(out: &mut dyn Write, paths: &DemoPaths, port: u16, signer: &DemoSigner) -> anyhow::Result<()> {
    let d = paths.dir.display();
    let (sp, cred) = (signer.port, &signer.credential_id);
    writeln!(out)?;
    writeln!(out, "An e-prescription (XAdES, time-stamped by the demo TSA on 127.0.0.1:{}), in the same shell:", signer.tsa_port.unwrap_or_default())?;
    let lines = [
        format!("DOC='{d}/signer/sample-prescription.xml'"),
        "DOC_HASH=$(openssl dgst -sha256 -binary \"$DOC\" | base64 | tr '+/' '-_' | tr -d '=')".to_owned(),
        format!(
            "SAD=$(emr -d \"{{\\\"clinic_id\\\":\\\"{CLINIC_ID}\\\",\\\"doctor_id\\\":\\\"{DOCTOR_LOGIN}\\\",\\\"hashes\\\":[\\\"$DOC_HASH\\\"]}}\" https://localhost:{port}/api/v1/signing-tokens | jq -r .token)"
        ),
        format!(
            "jq -n --arg sad \"$SAD\" --arg doc \"$(base64 -w0 \"$DOC\")\" '{{credentialID: \"{cred}\", SAD: $sad, documents: [{{document: $doc, signature_format: \"X\", conformance_level: \"AdES-B-LT\", signed_envelope_property: \"Internally detached\", signAlgo: \"{RSA_SHA256_OID}\"}}]}}' | emr -d @- https://localhost:{sp}/csc/v2/signatures/signDoc | jq -r '.DocumentWithSignature[0]' | base64 -d > signed-prescription.xml"
        ),
        format!("gateway --config '{d}/signer/signer.toml' demo-signer verify signed-prescription.xml"),
    ];
    for line in lines {
        writeln!(out, "   {line}")?;
    }
    Ok(())
}

/// The EMR's side of a signature, as shell lines to paste: a token bound to a file's hash, signHash
/// at the signer, the credential's certificate, and the check with the openssl command line.
fn print_signer(out: &mut dyn Write, paths: &DemoPaths, port: u16, signer: &DemoSigner) -> anyhow::Result<()> {
    let d = paths.dir.display();
    let (sp, cred) = (signer.port, &signer.credential_id);
    writeln!(out)?;
    writeln!(
        out,
        "Remote signer (its own process; CSC API v2 on https://localhost:{sp}, ready: http://127.0.0.1:{}/readyz), credential {cred}",
        signer.ops_port
    )?;
    writeln!(out, "of {DOCTOR_LOGIN} (医籍番号 {DOCTOR_REG_NO}). The EMR signs a file's SHA-256 once {DOCTOR_LOGIN} has a signing session")?;
    writeln!(out, "(sh, with curl, openssl and jq):")?;
    let lines = [
        "FILE=prescription.txt; printf 'Rp1 demo prescription\\n' > \"$FILE\"   # or any file".to_owned(),
        format!(
            "emr() {{ curl -sS --cert '{d}/service/emr.pem' --key '{d}/service/emr.key' --cacert '{d}/tls/server-ca.pem' -H 'content-type: application/json' \"$@\"; }}"
        ),
        "HASH=$(openssl dgst -sha256 -binary \"$FILE\" | base64); HASH_URL=$(printf %s \"$HASH\" | tr '+/' '-_' | tr -d '=')".to_owned(),
        "# 1. a token for the doctor bound to the hash (base64url), from the gateway".to_owned(),
        format!(
            "SAD=$(emr -d \"{{\\\"clinic_id\\\":\\\"{CLINIC_ID}\\\",\\\"doctor_id\\\":\\\"{DOCTOR_LOGIN}\\\",\\\"hashes\\\":[\\\"$HASH_URL\\\"]}}\" https://localhost:{port}/api/v1/signing-tokens | jq -r .token)"
        ),
        "# 2. signHash at the signer, the token as SAD (the hash in standard base64)".to_owned(),
        format!(
            "emr -d \"{{\\\"credentialID\\\":\\\"{cred}\\\",\\\"SAD\\\":\\\"$SAD\\\",\\\"hashes\\\":[\\\"$HASH\\\"],\\\"hashAlgorithmOID\\\":\\\"{SHA256_OID}\\\",\\\"signAlgo\\\":\\\"{RSA_SHA256_OID}\\\"}}\" https://localhost:{sp}/csc/v2/signatures/signHash | jq -r '.signatures[0]' | base64 -d > \"$FILE.sig\""
        ),
        "# 3. the credential's certificate, and the signature checked against its public key".to_owned(),
        format!(
            "emr -d '{{\"credentialID\":\"{cred}\"}}' https://localhost:{sp}/csc/v2/credentials/info | jq -r '.cert.certificates[0]' | base64 -d | openssl x509 -inform DER -pubkey -noout > {DOCTOR_LOGIN}.pub"
        ),
        format!("openssl dgst -sha256 -verify {DOCTOR_LOGIN}.pub -signature \"$FILE.sig\" \"$FILE\""),
    ];
    for line in lines {
        writeln!(out, "   {line}")?;
    }
    writeln!(out, "A token is good for one signature: presenting it again is refused (invalid_request).")?;
    if signer.tsa_port.is_some() {
        print_sign_doc(out, paths, port, signer)?;
    } else {
        writeln!(out, "(This demo directory predates signDoc; remove {d} and run `gateway demo` again to sign prescriptions.)")?;
    }
    writeln!(out, "Signer admin: gateway --config {d}/signer/signer.toml demo-signer admin --help")?;
    Ok(())
}
