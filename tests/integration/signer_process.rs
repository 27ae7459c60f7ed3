//! The signing flow through real processes (issue 19): a gateway *process* and two remote signer
//! *processes* sharing one signer database (the same SQLite file, or one PostgreSQL database). The
//! doctor signs in and authenticates with the product's software authenticator
//! (`gateway::check::soft`, which `gateway check` uses) over real HTTPS, the EMR requests a token
//! bound to a hash, signs it with signHash on signer 1, the openssl command line verifies the
//! signature, and the same token is refused by both signers afterwards. Then a token bound to a
//! prescription document's hash signs it with signDoc on signer 2 (time-stamped by a local TSA),
//! and the signed document verifies with `xmlsec1` and with `ninsho-signer verify FILE` run as a
//! process.
//!
//! The gateway runs as `faults::process` runs it (`NINSHO_GATEWAY_BIN`, else this binary
//! re-executed); the signers run `NINSHO_TEST_SIGNER_BIN` (tests/run.sh sets it to the
//! `ninsho-signer` it built), else this binary re-executed as the signer ([`signer_main`]).
//!
//! [`Browser`] is the doctor's side of the flow, shared with the demo test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gateway::check::soft::SoftAuthenticator;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::faults::process::{free_port, gateway_command};
use crate::helpers::*;
use crate::signer_harness::{RSA_PKCS1_SHA256, SHA256_OID, openssl_verifies, write_private};

/// Set in the environment of a re-executed test binary: the signer's argv as a JSON array.
const AS_SIGNER: &str = "NINSHO_TEST_AS_SIGNER";
const CREDENTIAL: &str = "cred-doctor1";

/// The signer's `main` when this binary is re-executed with [`AS_SIGNER`] set; in a normal test
/// run it does nothing.
#[test]
fn signer_main() {
    let Some(argv) = std::env::var_os(AS_SIGNER) else { return };
    let argv: Vec<String> = serde_json::from_str(argv.to_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let code = runtime.block_on(signer::cli::run(argv, &mut std::io::stdout(), &mut std::io::stderr()));
    std::process::exit(code);
}

/// `ninsho-signer <args>` as a command.
fn signer_command(args: &[&str]) -> Command {
    if let Some(bin) = std::env::var_os("NINSHO_TEST_SIGNER_BIN") {
        let mut c = Command::new(bin);
        c.args(args);
        return c;
    }
    let mut argv = vec!["ninsho-signer".to_owned()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["signer_process::signer_main", "--exact", "--nocapture", "--test-threads=1"]);
    c.env(AS_SIGNER, serde_json::to_string(&argv).unwrap());
    c
}

/// The built `gateway` binary: `NINSHO_GATEWAY_BIN`, else `gateway` in the target directory this
/// test binary was built into. The demo runs its signer as `gateway demo-signer`, which only a
/// gateway binary has.
pub(crate) fn gateway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NINSHO_GATEWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/integration-… → target/debug/gateway
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("gateway")).unwrap();
    assert!(bin.is_file(), "no gateway binary at {}: build it (cargo build -p gateway) or set NINSHO_GATEWAY_BIN", bin.display());
    bin
}

/// A server process, killed if the test ends without stopping it.
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
        Self { name, child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET url` answers 200.
    async fn ready(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = reqwest::get(url).await
                && res.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the {} exited with {status} before it was ready:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < deadline, "the {} was not ready within 30 s:\n{}", self.name, self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM; the process must exit 0 within 20 s.
    async fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the {} exited with {status}:\n{}", self.name, self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "the {} did not stop within 20 s:\n{}", self.name, self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TLS client for `localhost:port` presenting `identity_pem` (certificate and key), trusting
/// only `ca_pem`, keeping cookies, not following redirects.
pub(crate) fn https_client(port: u16, ca_pem: &str, identity_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).unwrap())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// POSTs `body` as JSON: (status, JSON answer or `null`).
pub(crate) async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let res = client.post(url).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The doctor's browser at the clinic: the clinic's device certificate, cookies, and the Origin
/// header a browser sends.
pub(crate) struct Browser {
    http: reqwest::Client,
    origin: String,
}

impl Browser {
    /// A browser for the gateway at `https://localhost:port`.
    pub(crate) fn new(port: u16, ca_pem: &str, clinic_identity_pem: &str) -> Self {
        Self { http: https_client(port, ca_pem, clinic_identity_pem), origin: format!("https://localhost:{port}") }
    }

    async fn post_json(&self, path: &str, body: Value) -> Value {
        let res = self.http.post(format!("{}{path}", self.origin)).header("origin", &self.origin).json(&body).send().await.unwrap();
        let status = res.status().as_u16();
        let json: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "POST {path}: {json}");
        json
    }

    /// The password form; it must lead to the method page.
    pub(crate) async fn login(&self, login_id: &str, password: &str) {
        let res = self
            .http
            .post(format!("{}/login", self.origin))
            .header("origin", &self.origin)
            .form(&[("login_id", login_id), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 303, "login of {login_id}");
    }

    /// Links a new software authenticator with the registration code `code`, then authenticates
    /// with it: the doctor's signing session opens (docs/design.md §3.4, §3.7).
    pub(crate) async fn link_and_authenticate(&self, code: &str) -> SoftAuthenticator {
        let options = self.post_json("/fido/register/start", json!({ "code": code })).await;
        let rp_id = options["publicKey"]["rp"]["id"].as_str().unwrap().to_owned();
        let mut auth = SoftAuthenticator::new(&self.origin, &rp_id).unwrap();
        let credential = auth.create(&options).unwrap();
        self.post_json("/fido/register/finish", json!({ "credential": credential, "name": "software authenticator" })).await;
        let options = self.post_json("/fido/auth/start", json!({})).await;
        let assertion = auth.get(&options).unwrap();
        self.post_json("/fido/auth/finish", json!({ "credential": assertion })).await;
        auth
    }
}

/// A signHash request body for SHA-256 `digest` (PKCS#1 v1.5).
pub(crate) fn sign_hash_request(credential: &str, sad: &str, digest: &[u8]) -> Value {
    json!({
        "credentialID": credential,
        "SAD": sad,
        "hashes": [STANDARD.encode(digest)],
        "hashAlgorithmOID": SHA256_OID,
        "signAlgo": RSA_PKCS1_SHA256,
    })
}

/// A path as a TOML string.
fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `ninsho-signer --config <config> <args>` in this process; it must succeed.
async fn signer_cli(config: &Path, args: &[&str]) -> String {
    let mut argv = vec!["ninsho-signer".to_owned(), "--config".to_owned(), config.display().to_string()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = signer::cli::run(argv, &mut out, &mut err).await;
    let (out, err) = (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap());
    assert_eq!(code, 0, "ninsho-signer {args:?}: {out}{err}");
    out
}

async fn fido_tokens_sign_hash_and_document_across_two_signer_processes(db: Db) {
    let prepared = TestApp::builder(db).prepare().await;
    let (pki, dir) = (prepared.pki.clone(), prepared.dir.path().to_owned());
    // The processes run on the system clock; so does the registration code.
    let now = gateway::clock::Clock::unix(&gateway::clock::SystemClock);
    let admin = gateway::admin::Admin { store: &prepared.store, now };
    let enrollment = &prepared.config.enrollment;
    let (code, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, enrollment.code_ttl_secs, enrollment.code_max_failures).await.unwrap();
    prepared.store.close().await;

    // The gateway process.
    let (gw_port, gw_ops) = (free_port(), free_port());
    let c = &prepared.config;
    let gateway_config = dir.join("gateway.toml");
    std::fs::write(
        &gateway_config,
        format!(
            "data_dir = {data}\n\
             [server]\nlisten = \"127.0.0.1:{gw_port}\"\npublic_url = \"https://localhost:{gw_port}\"\nshutdown_drain_secs = 0\n\
             [tls]\ncert = {cert}\nkey = {key}\n\
             [ops]\nlisten = \"127.0.0.1:{gw_ops}\"\n\
             [database]\nurl = {url:?}\n\
             [login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            data = toml_path(&c.data_dir),
            cert = toml_path(&c.tls.cert),
            key = toml_path(&c.tls.key),
            url = c.database.url,
        ),
    )
    .unwrap();
    let mut gw = Process::spawn("gateway", gateway_command(&["--config", gateway_config.to_str().unwrap(), "serve"]), dir.join("gateway.log"));
    gw.ready(&format!("http://127.0.0.1:{gw_ops}/readyz")).await;

    // Two signers on one database, with one key-encryption key and one audit key.
    let shared = dir.join("signer-shared");
    std::fs::create_dir(&shared).unwrap();
    let (signer_db, pg_database) = match db {
        Db::Sqlite => (format!("sqlite://{}", shared.join("signer.db").display()), None),
        Db::Postgres => fresh_database(Db::Postgres, &shared).await,
    };
    for name in ["kek", "audit-key"] {
        write_private(&shared.join(name), STANDARD.encode(Sha256::digest(uuid::Uuid::new_v4().as_bytes())).as_bytes());
    }
    let server = pki
        .server_ca
        .issue(&devpki::LeafSpec::new(
            "localhost",
            devpki::LeafUsage::TlsServer { dns_names: vec!["localhost".into()] },
            prepared.clock.now(),
            30,
        ))
        .unwrap();
    std::fs::write(shared.join("server.pem"), format!("{}{}", server.cert_pem, pki.server_ca.cert_pem())).unwrap();
    write_private(&shared.join("server.key"), server.key_pem.as_bytes());
    std::fs::write(shared.join("service-ca.pem"), pki.service_ca.cert_pem()).unwrap();
    std::fs::write(shared.join("gateway-ca.pem"), pki.server_ca.cert_pem()).unwrap();
    std::fs::write(shared.join("gateway-client.pem"), &pki.signer.cert_pem).unwrap();
    write_private(&shared.join("gateway-client.key"), pki.signer.key_pem.as_bytes());
    std::fs::write(shared.join("emr-a.pem"), &pki.emr_a.cert_pem).unwrap();
    // A local TSA in this process, on the system clock as the processes are.
    let responder = std::sync::Arc::new(tsp::responder::Responder::generate(now).unwrap());
    std::fs::write(shared.join("tsa-ca.pem"), responder.ca_pem()).unwrap();
    std::fs::write(shared.join("tsa-ca.crl"), responder.crl_der(now).unwrap()).unwrap();
    let tsa_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tsa_port = tsa_listener.local_addr().unwrap().port();
    let tsa = tokio::spawn(async move {
        let _ = responder.serve(tsa_listener, || gateway::clock::Clock::unix(&gateway::clock::SystemClock)).await;
    });
    let s = |name: &str| toml_path(&shared.join(name));
    let signers: Vec<(PathBuf, u16, u16)> = (1..=2)
        .map(|i| {
            let (port, ops) = (free_port(), free_port());
            let data = dir.join(format!("signer-{i}"));
            std::fs::create_dir(&data).unwrap();
            let config = data.join("signer.toml");
            std::fs::write(
                &config,
                format!(
                    "data_dir = {data}\n\
                     [server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_drain_secs = 0\n\
                     [tls]\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {client_ca}\n\
                     [ops]\nlisten = \"127.0.0.1:{ops}\"\n\
                     [database]\nurl = {signer_db:?}\n\
                     [gateway]\nurl = \"https://localhost:{gw_port}/\"\nca_file = {gw_ca}\nclient_cert_file = {gw_cert}\nclient_key_file = {gw_key}\n\
                     [csc]\naudience = {audience:?}\n\
                     [keys]\nbackend = \"software\"\nkey_encryption_key_file = {kek}\n\
                     [ca]\ncert_file = {ca_cert}\nkey_file = {ca_key}\n\
                     [audit]\nkey_file = {audit}\n\
                     [signdoc]\ncrl_files = [{ca_crl}]\n\
                     [tsa]\nurl = \"http://127.0.0.1:{tsa_port}/\"\nanchor_files = [{tsa_ca}]\ncrl_files = [{tsa_crl}]\n\
                     [verify]\nanchor_files = [{ca_cert}]\ntsa_anchor_files = [{tsa_ca}]\n\
                     [log]\njson = true\n",
                    data = toml_path(&data),
                    cert = s("server.pem"),
                    key = s("server.key"),
                    client_ca = s("service-ca.pem"),
                    gw_ca = s("gateway-ca.pem"),
                    gw_cert = s("gateway-client.pem"),
                    gw_key = s("gateway-client.key"),
                    audience = c.tokens.audience,
                    kek = s("kek"),
                    ca_cert = s("signing-ca.pem"),
                    ca_key = s("signing-ca.key"),
                    audit = s("audit-key"),
                    ca_crl = s("signing-ca.crl"),
                    tsa_ca = s("tsa-ca.pem"),
                    tsa_crl = s("tsa-ca.crl"),
                ),
            )
            .unwrap();
            (config, port, ops)
        })
        .collect();
    let first = &signers[0].0;
    signer_cli(first, &["migrate"]).await;
    let (ca_cert, ca_key) = (shared.join("signing-ca.pem"), shared.join("signing-ca.key"));
    signer_cli(first, &["admin", "ca", "generate-demo", "--cert", ca_cert.to_str().unwrap(), "--key", ca_key.to_str().unwrap()]).await;
    let emr_cert = shared.join("emr-a.pem");
    signer_cli(first, &["admin", "client", "add", "--id", "emr-a", "--name", "EMR A", "--cert", emr_cert.to_str().unwrap(), "--clinic", CLINIC]).await;
    let created = signer_cli(
        first,
        &["admin", "credential", "create", "--clinic", CLINIC, "--doctor", "123456", "--name", "Taro Yamada", "--organization", "Test Clinic", "--id", CREDENTIAL],
    )
    .await;
    assert_eq!(created.trim(), CREDENTIAL);
    signer_cli(first, &["admin", "ca", "crl", "--out", shared.join("signing-ca.crl").to_str().unwrap()]).await;
    let mut processes = Vec::new();
    for (i, (config, _, ops)) in signers.iter().enumerate() {
        let name = if i == 0 { "signer 1" } else { "signer 2" };
        let mut p = Process::spawn(name, signer_command(&["--config", config.to_str().unwrap(), "serve"]), dir.join(format!("signer-{}.log", i + 1)));
        p.ready(&format!("http://127.0.0.1:{ops}/readyz")).await;
        processes.push(p);
    }

    // The doctor: password, then FIDO with the software authenticator, over real HTTPS.
    let ca = pki.server_ca.cert_pem();
    let browser = Browser::new(gw_port, ca, &format!("{}{}", pki.clinic_client.cert_pem, pki.clinic_client.key_pem));
    browser.login(DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    browser.link_and_authenticate(code.as_ref()).await;

    // The EMR: a token bound to the document's hash, then signHash on signer 1.
    let document = b"Rp1 process test prescription\n".as_slice();
    let digest = Sha256::digest(document);
    let emr_identity = format!("{}{}", pki.emr_a.cert_pem, pki.emr_a.key_pem);
    let emr_gateway = https_client(gw_port, ca, &emr_identity);
    let (status, answer) = post(
        &emr_gateway,
        &format!("https://localhost:{gw_port}/api/v1/signing-tokens"),
        &json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [URL_SAFE_NO_PAD.encode(digest)] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    let at_signer = |i: usize, method: &str| {
        let port = signers[i].1;
        (https_client(port, ca, &emr_identity), format!("https://localhost:{port}/csc/v2/{method}"))
    };
    let (client, url) = at_signer(0, "signatures/signHash");
    let (status, answer) = post(&client, &url, &sign_hash_request(CREDENTIAL, &token, &digest)).await;
    assert_eq!(status, 200, "signHash on signer 1: {answer}");
    let signature = STANDARD.decode(answer["signatures"][0].as_str().unwrap()).unwrap();

    // The certificate from the other instance (one database), and openssl's verdict.
    let (client, url) = at_signer(1, "credentials/info");
    let (status, info) = post(&client, &url, &json!({ "credentialID": CREDENTIAL })).await;
    assert_eq!(status, 200, "{info}");
    let cert = STANDARD.decode(info["cert"]["certificates"][0].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(&cert, document, &signature, false), "openssl verifies the signature");

    // The same token again, on the same instance and on the other: refused, nothing signed.
    for i in [0, 1] {
        let (client, url) = at_signer(i, "signatures/signHash");
        let (status, answer) = post(&client, &url, &sign_hash_request(CREDENTIAL, &token, &digest)).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")), "replay on signer {}: {answer}", i + 1);
        assert!(answer["error_description"].as_str().unwrap().contains("already used"), "{answer}");
        assert!(answer.get("signatures").is_none());
    }

    // A prescription document: a token bound to its hash, signDoc on signer 2, the signed
    // document checked by xmlsec1 and by `ninsho-signer verify FILE` as a process.
    let document = crate::signdoc::SAMPLE;
    let (status, answer) = post(
        &emr_gateway,
        &format!("https://localhost:{gw_port}/api/v1/signing-tokens"),
        &json!({ "clinic_id": CLINIC, "doctor_id": DOCTOR_LOGIN, "hashes": [URL_SAFE_NO_PAD.encode(Sha256::digest(document))] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    let (client, url) = at_signer(1, "signatures/signDoc");
    let (status, answer) = post(&client, &url, &crate::signdoc::sign_doc_request(CREDENTIAL, &token, &[document])).await;
    assert_eq!(status, 200, "signDoc on signer 2: {answer}");
    let signed = STANDARD.decode(answer["DocumentWithSignature"][0].as_str().unwrap()).unwrap();
    crate::signdoc::xmlsec1_verifies(&signed, &cert).unwrap_or_else(|e| panic!("xmlsec1: {e}"));
    let file = dir.join("signed-prescription.xml");
    std::fs::write(&file, &signed).unwrap();
    let verified = signer_command(&["--config", first.to_str().unwrap(), "verify", file.to_str().unwrap()]).output().unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && report.contains("有効"), "ninsho-signer verify: {report}{}", String::from_utf8_lossy(&verified.stderr));

    // Two signatures and two replays in the shared, intact audit log.
    for p in processes {
        p.stop().await;
    }
    gw.stop().await;
    tsa.abort();
    let verified = signer_cli(first, &["admin", "audit", "verify"]).await;
    assert!(verified.contains("audit log intact"), "{verified}");
    let rows: Vec<Value> = signer_cli(first, &["admin", "audit", "export"]).await.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |event: &str| rows.iter().filter(|r| r["event"] == event).count();
    assert_eq!((count("signature_created"), count("signature_refused")), (2, 2), "{rows:?}");
    if let Some((admin, name)) = pg_database {
        drop_database(&admin, &name).await;
    }
    if let Some((admin, name)) = &prepared.pg_database {
        drop_database(admin, name).await;
    }
}

db_tests!(fido_tokens_sign_hash_and_document_across_two_signer_processes);
