//! `TestSigner`: the real remote signer (`signer::Application`) on `127.0.0.1:0` beside a
//! [`TestApp`] gateway, with real mTLS both ways, its own database (SQLite file, or a fresh
//! PostgreSQL database), the gateway's clock, and callers, a demo signing CA and credentials set
//! up through the real `ninsho-signer` CLI.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use devpki::{Leaf, LeafSpec, LeafUsage};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use crate::helpers::*;

/// The demo doctor's 医籍番号 (seeded at the gateway as `doctor1` of [`CLINIC`]).
pub const DOCTOR_REG_NO: &str = "123456";
/// The other clinic's doctor (seeded as `doctor-other` of [`OTHER_CLINIC`]).
pub const OTHER_DOCTOR_REG_NO: &str = "654321";
/// The demo doctor's credential.
pub const CREDENTIAL: &str = "cred-doctor";
/// A colleague's credential at [`CLINIC`] (no gateway account needed: no token names it).
pub const COLLEAGUE_CREDENTIAL: &str = "cred-colleague";
/// The other clinic's doctor's credential.
pub const OTHER_CLINIC_CREDENTIAL: &str = "cred-other-clinic";

/// CSC OIDs.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";
pub const RSA_PKCS1_SHA256: &str = "1.2.840.113549.1.1.11";
pub const RSA_PSS: &str = "1.2.840.113549.1.1.10";

/// Where the signer keeps doctors' keys.
pub enum KeyBackend {
    Software,
    /// A SoftHSM2 token (the test runs in a [`keys::testing::in_softhsm_process`] child).
    Pkcs11(keys::Pkcs11Config),
}

/// How to set up a signer.
pub struct SignerSetup {
    pub db: Db,
    pub keys: KeyBackend,
    /// Credentials of the colleague and of the other clinic besides the doctor's.
    pub all_credentials: bool,
    /// `gateway.issuer`; default: the gateway's origin, as its tokens say.
    pub issuer: Option<String>,
    /// `csc.audience`; default: the gateway's `tokens.audience`.
    pub audience: Option<String>,
    /// Overrides `gateway.url` (a closed port).
    pub gateway_url: Option<String>,
    /// signDoc set up: a local TSA (`tsp::responder`) on the gateway's clock, its CA as
    /// `tsa.anchor_files` and `verify.tsa_anchor_files`, the signing CA's CRL (`admin ca crl`) as
    /// `signdoc.crl_files`, the signing CA as `verify.anchor_files`.
    pub signdoc: bool,
}

impl SignerSetup {
    pub fn new(db: Db) -> Self {
        Self { db, keys: KeyBackend::Software, all_credentials: true, issuer: None, audience: None, gateway_url: None, signdoc: false }
    }

    /// Only the doctor's credential: a second instance, a signer with another configuration.
    pub fn minimal(db: Db) -> Self {
        Self { all_credentials: false, ..Self::new(db) }
    }
}

/// A running signer.
pub struct TestSigner {
    pub port: u16,
    /// The ops listener's port (`/healthz`, `/readyz`, `/metrics`).
    pub ops_port: u16,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    pki: Arc<TestPki>,
    /// The PostgreSQL database's URL, and (admin URL, name) to drop it.
    pg_url: String,
    pg_database: Option<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The local TSA's task, when [`SignerSetup::signdoc`].
    pub tsa: Option<tokio::task::JoinHandle<()>>,
}

/// Writes `contents` to a new file readable only by its owner (keys, PINs).
pub fn write_private(path: &Path, contents: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    f.write_all(contents).unwrap();
}

impl TestSigner {
    /// Sets a signer up beside `app` through the real CLI and starts it on `app`'s clock.
    pub async fn spawn(app: &TestApp, setup: SignerSetup) -> TestSigner {
        signer::install_crypto_provider();
        let pki = app.pki.clone();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let now = app.clock.now();
        // Its own server certificate for localhost from the test PKI's server CA.
        let server = pki
            .server_ca
            .issue(&LeafSpec::new("localhost", LeafUsage::TlsServer { dns_names: vec!["localhost".into()] }, now, 30))
            .unwrap();
        std::fs::write(d.join("server.pem"), format!("{}{}", server.cert_pem, pki.server_ca.cert_pem())).unwrap();
        write_private(&d.join("server.key"), server.key_pem.as_bytes());
        std::fs::write(d.join("client-ca.pem"), pki.service_ca.cert_pem()).unwrap();
        std::fs::write(d.join("gateway-ca.pem"), pki.server_ca.cert_pem()).unwrap();
        std::fs::write(d.join("gateway-client.pem"), &pki.signer.cert_pem).unwrap();
        write_private(&d.join("gateway-client.key"), pki.signer.key_pem.as_bytes());
        for (name, leaf) in [("emr-a", &pki.emr_a), ("emr-b", &pki.emr_b), ("emr-other", &pki.emr_other)] {
            std::fs::write(d.join(format!("{name}.pem")), &leaf.cert_pem).unwrap();
        }
        let (db_url, pg_database) = match setup.db {
            // Empty: `<data_dir>/signer.db`, the signer's own default.
            Db::Sqlite => (String::new(), None),
            Db::Postgres => fresh_database(Db::Postgres, d).await,
        };
        let keys = match &setup.keys {
            KeyBackend::Software => "backend = \"software\"\n".to_owned(),
            KeyBackend::Pkcs11(hsm) => {
                use secrecy::ExposeSecret as _;
                write_private(&d.join("pin"), hsm.pin.expose_secret().as_bytes());
                format!(
                    "backend = \"pkcs11\"\n[keys.pkcs11]\nmodule = {:?}\ntoken_label = {:?}\npin_file = {:?}\n",
                    hsm.module.display().to_string(),
                    hsm.token_label,
                    d.join("pin").display().to_string()
                )
            }
        };
        // A path as a TOML string (`d.join("")` is the directory itself, with a trailing slash).
        let p = |name: &str| format!("{:?}", d.join(name).display().to_string());
        let (signdoc, tsa) = if setup.signdoc {
            let responder = Arc::new(tsp::responder::Responder::generate(now.unix_timestamp()).unwrap());
            std::fs::write(d.join("tsa-ca.pem"), responder.ca_pem()).unwrap();
            std::fs::write(d.join("tsa-ca.crl"), responder.crl_der(now.unix_timestamp()).unwrap()).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tsa_port = listener.local_addr().unwrap().port();
            let clock = app.clock.clone();
            let task = tokio::spawn(async move {
                let _ = responder.serve(listener, move || clock.unix()).await;
            });
            let toml = format!(
                "[signdoc]\ncrl_files = [{crl}]\n\
                 [tsa]\nurl = \"http://127.0.0.1:{tsa_port}/\"\nanchor_files = [{tsa_ca}]\ncrl_files = [{tsa_crl}]\n\
                 [verify]\nanchor_files = [{ca}]\ntsa_anchor_files = [{tsa_ca}]\n",
                crl = p("signing-ca.crl"),
                tsa_ca = p("tsa-ca.pem"),
                tsa_crl = p("tsa-ca.crl"),
                ca = p("signing-ca.pem"),
            );
            (toml, Some(task))
        } else {
            (String::new(), None)
        };
        let gateway_url = setup.gateway_url.clone().unwrap_or_else(|| format!("{}/", app.origin()));
        let toml = format!(
            "data_dir = {data}\n\
             [server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain_secs = 0\n\
             [tls]\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {client_ca}\n\
             [ops]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = {db_url:?}\n\
             [gateway]\nurl = {gateway_url:?}\nca_file = {gw_ca}\nclient_cert_file = {gw_cert}\nclient_key_file = {gw_key}\nissuer = {issuer:?}\n\
             [csc]\naudience = {audience:?}\n\
             [ca]\ncert_file = {ca_cert}\nkey_file = {ca_key}\n\
             {signdoc}\
             [keys]\n{keys}",
            data = p(""),
            cert = p("server.pem"),
            key = p("server.key"),
            client_ca = p("client-ca.pem"),
            gw_ca = p("gateway-ca.pem"),
            gw_cert = p("gateway-client.pem"),
            gw_key = p("gateway-client.key"),
            issuer = setup.issuer.clone().unwrap_or_default(),
            audience = setup.audience.clone().unwrap_or_else(|| app.config.tokens.audience.clone()),
            ca_cert = p("signing-ca.pem"),
            ca_key = p("signing-ca.key"),
        );
        let config_path = d.join("signer.toml");
        std::fs::write(&config_path, toml).unwrap();

        let mut signer =
            TestSigner { port: 0, ops_port: 0, config_path, dir, pki, pg_url: db_url, pg_database, shutdown: None, task: None, tsa };
        signer.admin_ok(&["migrate"]).await;
        let (ca_cert, ca_key) = (signer.path("signing-ca.pem"), signer.path("signing-ca.key"));
        signer.admin_ok(&["admin", "ca", "generate-demo", "--cert", &ca_cert, "--key", &ca_key]).await;
        for (id, clinic) in [("emr-a", CLINIC), ("emr-b", CLINIC), ("emr-other", OTHER_CLINIC)] {
            let cert = signer.path(&format!("{id}.pem"));
            signer.admin_ok(&["admin", "client", "add", "--id", id, "--name", id, "--cert", &cert, "--clinic", clinic]).await;
        }
        let mut credentials = vec![(CREDENTIAL, CLINIC, DOCTOR_REG_NO, "Taro Yamada")];
        if setup.all_credentials {
            credentials.push((COLLEAGUE_CREDENTIAL, CLINIC, "777777", "Jiro Tanaka"));
            credentials.push((OTHER_CLINIC_CREDENTIAL, OTHER_CLINIC, OTHER_DOCTOR_REG_NO, "Ichiro Suzuki"));
        }
        for (id, clinic, doctor, name) in credentials {
            let out = signer
                .admin_ok(&[
                    "admin", "credential", "create", "--clinic", clinic, "--doctor", doctor, "--name", name, "--organization",
                    "Test Clinic", "--id", id,
                ])
                .await;
            assert_eq!(out.trim(), id, "with [ca] configured the certificate is issued at once, no CSR");
        }
        if setup.signdoc {
            let crl = signer.path("signing-ca.crl");
            signer.admin_ok(&["admin", "ca", "crl", "--out", &crl]).await;
        }

        let config = signer::config::Config::load(Some(&signer.config_path)).unwrap();
        let application = signer::Application::build(config, Arc::new(app.clock.clone())).await.unwrap();
        signer.port = application.local_addr().port();
        signer.ops_port = application.ops_addr().port();
        let (tx, rx) = oneshot::channel::<()>();
        signer.shutdown = Some(tx);
        signer.task = Some(tokio::spawn(async move {
            application
                .run_until(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
        signer
    }

    /// A file of this signer's directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs `ninsho-signer --config <this signer's file> <args>` in-process: (exit code, stdout,
    /// stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec!["ninsho-signer".to_owned(), "--config".to_owned(), self.config_path.display().to_string()];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = signer::cli::run(argv, &mut out, &mut err).await;
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// [`cli`](Self::cli) that must succeed; its standard output.
    pub async fn admin_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args).await;
        assert_eq!(code, 0, "ninsho-signer {args:?}: {out}{err}");
        out
    }

    /// The audit log as `admin audit export` writes it.
    pub async fn audit(&self) -> Vec<Value> {
        let out = self.admin_ok(&["admin", "audit", "export"]).await;
        out.lines()
            .map(|l| {
                let mut row: Value = serde_json::from_str(l).unwrap();
                row["detail"] = serde_json::from_str(row["detail"].as_str().unwrap()).unwrap();
                row
            })
            .collect()
    }

    /// The `detail.reason` of every `signature_refused` row, in order.
    pub async fn refusals(&self) -> Vec<String> {
        self.audit()
            .await
            .into_iter()
            .filter(|r| r["event"] == "signature_refused")
            .map(|r| {
                assert_eq!(r["outcome"], "failure");
                r["detail"]["reason"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Runs SQL on the signer's database (tampering tests).
    pub async fn execute(&self, sql: &str) -> u64 {
        use sqlx::Connection as _;
        match &self.pg_database {
            Some(_) => {
                let mut conn = sqlx::PgConnection::connect(&self.pg_url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap().rows_affected()
            }
            None => {
                let url = format!("sqlite://{}", self.dir.path().join("signer.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap().rows_affected()
            }
        }
    }

    /// A client presenting `identity`, trusting only the test server CA.
    pub fn client(&self, identity: &Leaf) -> reqwest::Client {
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pki.server_ca.cert_pem().as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
            .build()
            .unwrap()
    }

    /// POSTs `body` to `/csc/v2/<method>` as `identity`: (status, JSON answer).
    pub async fn call(&self, identity: &Leaf, method: &str, body: &Value) -> (u16, Value) {
        let res = self.client(identity).post(format!("https://localhost:{}/csc/v2/{method}", self.port)).json(body).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// signHash of `data` items' SHA-256 digests with `credential` under `sad`, as EMR A.
    pub async fn sign(&self, credential: &str, sad: &str, data: &[&[u8]]) -> (u16, Value) {
        self.call(&self.pki.emr_a, "signatures/signHash", &sign_request(credential, sad, data)).await
    }

    /// Stops the signer and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(tsa) = self.tsa.take() {
            tsa.abort();
        }
        if let Some((admin, name)) = self.pg_database.take() {
            drop_database(&admin, &name).await;
        }
    }
}

/// A signHash request body (PKCS#1 v1.5 with SHA-256).
pub fn sign_request(credential: &str, sad: &str, data: &[&[u8]]) -> Value {
    json!({
        "credentialID": credential,
        "SAD": sad,
        "hashes": data.iter().map(|d| STANDARD.encode(Sha256::digest(d))).collect::<Vec<_>>(),
        "hashAlgorithmOID": SHA256_OID,
        "signAlgo": RSA_PKCS1_SHA256,
    })
}

/// The base64url SHA-256 of each item, as the gateway's `hashes` takes them.
pub fn token_hashes(data: &[&[u8]]) -> Vec<String> {
    data.iter().map(|d| URL_SAFE_NO_PAD.encode(Sha256::digest(d))).collect()
}

/// Issues a signing token at the gateway as EMR A for the demo doctor, bound to `data`'s hashes
/// (none: a token without a binding).
pub async fn issue_token(app: &TestApp, data: Option<&[&[u8]]>) -> String {
    let mut body = json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN });
    if let Some(data) = data {
        body["hashes"] = json!(token_hashes(data));
    }
    let res = app.client(Some(&app.pki.emr_a)).post(app.url("/api/v1/signing-tokens")).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

/// Whether the openssl command line verifies `signature` over `data` with the public key of the
/// certificate `cert_der` (PKCS#1 v1.5, or PSS with a 32-byte salt).
pub fn openssl_verifies(cert_der: &[u8], data: &[u8], signature: &[u8], pss: bool) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    std::fs::write(file("cert.der"), cert_der).unwrap();
    std::fs::write(file("data"), data).unwrap();
    std::fs::write(file("sig"), signature).unwrap();
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(file("cert.der"))
        .args(["-noout", "-pubkey", "-out"])
        .arg(file("pub.pem"))
        .output()
        .unwrap();
    assert!(pubkey.status.success(), "openssl x509: {}", String::from_utf8_lossy(&pubkey.stderr));
    let mut dgst = std::process::Command::new("openssl");
    dgst.args(["dgst", "-sha256", "-verify"]).arg(file("pub.pem"));
    if pss {
        dgst.args(["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]);
    }
    let out = dgst.arg("-signature").arg(file("sig")).arg(file("data")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.success(), stdout.contains("Verified OK"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

/// The certificates of `credential` as `credentials/info` gives them (leaf first), DER.
pub async fn certificates(signer: &TestSigner, credential: &str) -> Vec<Vec<u8>> {
    let (status, info) =
        signer.call(&signer.pki.emr_a, "credentials/info", &json!({ "credentialID": credential, "certificates": "chain" })).await;
    assert_eq!(status, 200, "{info}");
    info["cert"]["certificates"].as_array().unwrap().iter().map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap()).collect()
}

/// The signatures of a successful signHash answer, decoded.
pub fn signatures(answer: &Value) -> Vec<Vec<u8>> {
    answer["signatures"].as_array().unwrap_or_else(|| panic!("no signatures: {answer}")).iter().map(|s| STANDARD.decode(s.as_str().unwrap()).unwrap()).collect()
}
