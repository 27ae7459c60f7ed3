//! The remote signer's signHash scenario (issue 19): a signer beside the bench gateway, set up
//! through its own CLI and run by its own library (`signer::Application`), with software keys or
//! with keys on a SoftHSM2 token; the RSA-2048 signing ceiling of each key backend; tokens issued
//! ahead for the signHash-only measurement; one signature checked before measuring.
//!
//! The signer runs in a child process of this binary (`bench signer-admin …`, `bench
//! signer-serve …`) rather than in the load generator's process: its CPU time is then measured
//! on its own, and SoftHSM2, which finds its token store only through `SOFTHSM2_CONF` in the
//! process environment, is given it by `Command::env` (setting a variable in this running,
//! multi-threaded process would need `unsafe`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::conn::Target;
use crate::run::{Proc, free_port, spawn, wait_port};
use crate::setup::{self, PkiFiles};
use crate::workload::{self, PreIssued, SignDoctor};

/// Where the signer keeps doctors' keys in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// `keys.backend = "software"`: OpenSSL in the signer's process, keys sealed in its database.
    Software,
    /// `keys.backend = "pkcs11"` on a SoftHSM2 token in a temporary store.
    SoftHsm2,
}

impl KeyKind {
    /// The label in the report.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Software => "software keys",
            KeyKind::SoftHsm2 => "SoftHSM2",
        }
    }
}

/// A running signer.
pub struct Signer {
    pub proc: Proc,
    /// The local TSA signDoc asks (`bench tsa-serve`).
    pub tsa: Proc,
    pub port: u16,
    pub ops_port: u16,
    pub config: PathBuf,
    pub doctors: Arc<Vec<SignDoctor>>,
    /// `SOFTHSM2_CONF` of its token store (SoftHSM2 only).
    pub softhsm_conf: Option<PathBuf>,
    exe: PathBuf,
}

/// Whether SoftHSM2 is installed (its module and `softhsm2-util`).
pub fn softhsm2_available() -> bool {
    Path::new(keys::testing::SOFTHSM2_MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

impl Signer {
    /// Sets a signer up in `dir` beside the gateway on `gateway_port` and starts it: the EMR
    /// client registered for the bench clinic, a demo signing CA, one credential for each of the
    /// doctors `d1..=dN` (their gateway accounts hold live signing sessions).
    pub async fn start(
        exe: &Path,
        dir: &Path,
        pki: &PkiFiles,
        gateway_port: u16,
        keys: KeyKind,
        doctors: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let copy_private = |from: &Path, name: &str| -> anyhow::Result<PathBuf> {
            let to = dir.join(name);
            write_private(&to, &std::fs::read(from)?)?;
            Ok(to)
        };
        let server_key = copy_private(&pki.server_key, "server.key")?;
        let gateway_key = copy_private(&pki.signer_key, "gateway-client.key")?;
        let (softhsm_conf, keys_toml) = match keys {
            KeyKind::Software => (None, "backend = \"software\"\n".to_owned()),
            KeyKind::SoftHsm2 => {
                let conf =
                    keys::testing::make_store(&dir.join("softhsm")).map_err(|e| anyhow!(e))?;
                write_private(&dir.join("pin"), keys::testing::USER_PIN.as_bytes())?;
                let toml = format!(
                    "backend = \"pkcs11\"\n[keys.pkcs11]\nmodule = {:?}\ntoken_label = {:?}\npin_file = {:?}\n",
                    keys::testing::SOFTHSM2_MODULE,
                    keys::testing::TOKEN_LABEL,
                    dir.join("pin").display().to_string()
                );
                (Some(conf), toml)
            }
        };
        let (port, ops_port) = (free_port()?, free_port()?);
        // The local TSA (its own child process, `bench tsa-serve`) that signDoc asks.
        let tsa_dir = dir.join("tsa");
        std::fs::create_dir_all(&tsa_dir)?;
        let now = infra::clock::Clock::unix(&infra::clock::SystemClock);
        let tsa = tsp::responder::Responder::generate(now)?;
        for (name, text, private) in [
            ("ca.pem", tsa.ca_pem(), false),
            ("ca.key", tsa.ca_key_pem(), true),
            ("tsa.pem", tsa.tsa_cert_pem(), false),
            ("tsa.key", tsa.tsa_key_pem(), true),
        ] {
            if private { write_private(&tsa_dir.join(name), text.as_bytes())? } else { std::fs::write(tsa_dir.join(name), text)? }
        }
        std::fs::write(tsa_dir.join("ca.crl"), tsa.crl_der(now)?)?;
        let tsa_port = free_port()?;
        let mut tsa_cmd = Command::new(exe);
        tsa_cmd.arg("tsa-serve").arg("--dir").arg(&tsa_dir).arg("--port").arg(tsa_port.to_string());
        let mut tsa_proc = spawn("tsa", &mut tsa_cmd, &dir.join("tsa.log"))?;
        wait_port(tsa_port, &mut tsa_proc, 30).await?;
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let text = format!(
            "# Written by `bench run` (signHash scenario).\n\
             data_dir = {data}\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_drain_secs = 0\n\
             [tls]\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {client_ca}\n\
             [ops]\nlisten = \"127.0.0.1:{ops_port}\"\n\
             [gateway]\nurl = \"https://localhost:{gateway_port}/\"\nca_file = {gw_ca}\nclient_cert_file = {gw_cert}\nclient_key_file = {gw_key}\n\
             [ca]\ncert_file = {ca_cert}\nkey_file = {ca_key}\n\
             [signdoc]\ncrl_files = [{ca_crl}]\n\
             [tsa]\nurl = \"http://127.0.0.1:{tsa_port}/\"\nanchor_files = [{tsa_ca}]\ncrl_files = [{tsa_crl}]\n\
             [log]\nfilter = \"warn\"\n\
             [keys]\n{keys_toml}",
            data = q(dir),
            cert = q(&pki.server_chain),
            key = q(&server_key),
            client_ca = q(&pki.service_ca),
            gw_ca = q(&pki.server_ca),
            gw_cert = q(&pki.signer_cert),
            gw_key = q(&gateway_key),
            ca_cert = q(&dir.join("signing-ca.pem")),
            ca_key = q(&dir.join("signing-ca.key")),
            ca_crl = q(&dir.join("signing-ca.crl")),
            tsa_ca = q(&tsa_dir.join("ca.pem")),
            tsa_crl = q(&tsa_dir.join("ca.crl")),
        );
        let config = dir.join("signer.toml");
        std::fs::write(&config, text)?;
        let admin = |args: &[&str]| -> anyhow::Result<String> {
            let mut cmd = Command::new(exe);
            cmd.arg("signer-admin")
                .arg("--config")
                .arg(&config)
                .args(args);
            if let Some(conf) = &softhsm_conf {
                cmd.env("SOFTHSM2_CONF", conf);
            }
            let out = cmd.output().context("bench signer-admin")?;
            if !out.status.success() {
                bail!(
                    "ninsho-signer {}: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        admin(&["migrate"])?;
        let (ca_cert, ca_key) = (dir.join("signing-ca.pem"), dir.join("signing-ca.key"));
        admin(&[
            "admin",
            "ca",
            "generate-demo",
            "--cert",
            &ca_cert.display().to_string(),
            "--key",
            &ca_key.display().to_string(),
        ])?;
        admin(&["admin", "ca", "crl", "--out", &dir.join("signing-ca.crl").display().to_string()])?;
        admin(&[
            "admin",
            "client",
            "add",
            "--id",
            "bench-emr",
            "--name",
            "Bench EMR",
            "--cert",
            &pki.emr_cert.display().to_string(),
            "--clinic",
            setup::CLINIC,
        ])?;
        let mut list = Vec::new();
        for n in 1..=doctors.max(1) {
            // The bench doctor d<n>'s 医籍番号, as the gateway's seed writes it.
            let reg_no = format!("{n:06}");
            let id = format!("cred-d{n}");
            admin(&[
                "admin",
                "credential",
                "create",
                "--clinic",
                setup::CLINIC,
                "--doctor",
                &reg_no,
                "--name",
                &format!("Bench Doctor {n}"),
                "--organization",
                "Bench Clinic",
                "--id",
                &id,
            ])?;
            list.push(SignDoctor {
                login_id: format!("d{n}"),
                credential: id,
            });
        }
        let mut cmd = Command::new(exe);
        cmd.arg("signer-serve").arg("--config").arg(&config);
        if let Some(conf) = &softhsm_conf {
            cmd.env("SOFTHSM2_CONF", conf);
        }
        let mut proc = spawn("signer", &mut cmd, &dir.join("signer.log"))?;
        wait_port(port, &mut proc, 30).await?;
        Ok(Self {
            proc,
            tsa: tsa_proc,
            port,
            ops_port,
            config,
            doctors: Arc::new(list),
            softhsm_conf,
            exe: exe.to_owned(),
        })
    }

    /// The RSA-2048 PKCS#1 v1.5 signing ceiling of this signer's key backend, measured in a
    /// child process that opens the backend from this signer's configuration.
    pub fn key_ceiling(&self, secs: f64) -> anyhow::Result<KeyCeiling> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("key-ceiling")
            .arg("--config")
            .arg(&self.config)
            .arg("--secs")
            .arg(secs.to_string());
        if let Some(conf) = &self.softhsm_conf {
            cmd.env("SOFTHSM2_CONF", conf);
        }
        let out = cmd.output().context("bench key-ceiling")?;
        if !out.status.success() {
            bail!(
                "bench key-ceiling: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The signer's `ninsho_signer_consume_seconds` so far: (sum of seconds, count).
    pub async fn consume_seconds(&self) -> anyhow::Result<(f64, f64)> {
        let text = ops_get(self.ops_port, "/metrics").await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((
            value("ninsho_signer_consume_seconds_sum "),
            value("ninsho_signer_consume_seconds_count "),
        ))
    }

    /// Stops the signer (SIGTERM; no drain is configured).
    pub fn stop(self) {
        self.proc.stop(Duration::from_secs(35));
        self.tsa.stop(Duration::from_secs(5));
    }
}

/// The sample unsigned prescription signDoc signs (signer/data/sample-prescription.xml).
pub const SAMPLE_PRESCRIPTION: &[u8] = include_bytes!("../../signer/data/sample-prescription.xml");

/// The e-prescription signature's own work, one thread, no network: `xades::Prepared`, the
/// RSA-2048 signature with an OpenSSL software key, the time-stamp made by the local TSA's
/// `respond` in-process and checked (`tsp::accept_reply`), the validation data embedded. Signed
/// documents per second over `secs`, after one document is checked by `xades::verify`.
pub fn document_pipeline_rate(secs: f64) -> anyhow::Result<f64> {
    use openssl::pkey::PKey;
    let now = infra::clock::Clock::unix(&infra::clock::SystemClock);
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t);
    let ca = keys::certificate::SigningCa::generate_demo(at(now - 86_400)?)?;
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
    let subject = keys::certificate::DoctorSubject {
        name_romaji: "Bench Doctor".into(),
        name_kanji: None,
        organization: "Bench Clinic".into(),
        serial: "Bench00001".into(),
    };
    let cert = ca.issue(&key.public_key_to_der()?, &subject, at(now - 86_400)?, at(now + 86_400 * 365)?)?;
    let tsa = tsp::responder::Responder::generate(now)?;
    let signer_data = xades::ValidationData { certificates: vec![ca.cert_der().to_vec()], crls: vec![ca.crl(at(now - 60)?, at(now + 86_400)?, &[])?] };
    let tsa_data = xades::ValidationData { certificates: vec![tsa.ca_der()], crls: vec![tsa.crl_der(now)?] };
    let one = |nonce: u64| -> anyhow::Result<Vec<u8>> {
        let prepared = xades::Prepared::new(SAMPLE_PRESCRIPTION, &cert, now)?;
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&key)?;
        ctx.sign_init()?;
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
        ctx.set_signature_md(openssl::md::Md::sha256())?;
        let mut value = Vec::new();
        ctx.sign_to_vec(&prepared.signed_info_digest(), &mut value)?;
        let signed = prepared.with_signature(&value)?;
        let imprint = signed.timestamp_imprint();
        let (token, _) = tsp::accept_reply(&tsa.respond(&tsp::request(&imprint, nonce), now), &imprint, nonce)?;
        Ok(signed.complete(&token, &signer_data, &tsa_data)?)
    };
    let first = one(0)?;
    let (anchors, tsa_anchors) = (vec![ca.cert_der().to_vec()], vec![tsa.ca_der()]);
    let report = xades::verify(&first, &xades::VerifyPolicy { signer_anchors: &anchors, tsa_anchors: &tsa_anchors, at: None });
    if report.verdict != xades::Verdict::Valid {
        bail!("the pipeline's document does not verify:\n{report}");
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        n += 1;
        one(n)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A plain-HTTP GET to the ops listener on `port`: the body.
async fn ops_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (_, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{path}: no body"))?;
    Ok(body.to_owned())
}

/// Signatures per second of one backend (RSA-2048, PKCS#1 v1.5 over a SHA-256 digest).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyCeiling {
    pub backend: String,
    pub threads: usize,
    /// One thread: one core's worth of signatures.
    pub one: f64,
    /// Every core at once.
    pub all: f64,
}

/// `bench key-ceiling`: opens the key backend of the signer configuration `config`, makes an
/// RSA-2048 key in it and signs digests with `keys::Backend::sign_digest` in a tight loop, on one
/// thread and then on every core, `secs` each.
pub fn key_ceiling(config: &Path, secs: f64) -> anyhow::Result<KeyCeiling> {
    let config = signer::config::Config::load(Some(config))?;
    let backend = Arc::new(config.key_backend()?);
    let (key, _) = backend.generate_rsa("bench-ceiling", 2048)?;
    let key = Arc::new(key);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let time = Duration::from_secs_f64(secs);
    let rate = |threads: usize| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (backend, key) = (backend.clone(), key.clone());
                std::thread::spawn(move || -> Result<f64, keys::KeyError> {
                    let start = Instant::now();
                    let mut n = 0u64;
                    let mut digest = [t as u8; 32];
                    while start.elapsed() < time {
                        digest[..8].copy_from_slice(&n.to_le_bytes());
                        backend.sign_digest(&key, keys::SignAlgorithm::RsaPkcs1Sha256, &digest)?;
                        n += 1;
                    }
                    Ok(n as f64 / start.elapsed().as_secs_f64())
                })
            })
            .collect();
        let mut total = 0.0;
        for h in handles {
            total += h.join().map_err(|_| anyhow!("ceiling thread panicked"))??;
        }
        Ok(total)
    };
    Ok(KeyCeiling {
        backend: backend.name().to_owned(),
        threads,
        one: rate(1)?,
        all: rate(threads)?,
    })
}

/// Issues `count` tokens, each bound to its own digest (or all to `fixed`, a document's), for the
/// doctors in turn, over `connections` keep-alive connections to the gateway.
pub async fn pre_issue(
    gateway: &Target,
    doctors: &Arc<Vec<SignDoctor>>,
    count: usize,
    connections: usize,
    fixed: Option<[u8; 32]>,
) -> anyhow::Result<Vec<PreIssued>> {
    let connections = connections.clamp(1, count.max(1));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (gateway, doctors) = (gateway.clone(), doctors.clone());
        let share = count / connections + usize::from(c < count % connections);
        tasks.push(tokio::spawn(async move {
            let mut conn = gateway
                .connect()
                .await
                .map_err(|e| anyhow!("connect: {}", e.0))?;
            let mut out = Vec::with_capacity(share);
            for i in 0..share {
                let n = (c + i * connections) % doctors.len().max(1);
                let doctor = doctors.get(n).ok_or_else(|| anyhow!("no doctors"))?;
                let mut digest = [0u8; 32];
                digest[..8].copy_from_slice(&(c as u64).to_le_bytes());
                digest[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                let digest = fixed.unwrap_or(digest);
                let token = workload::issue_bound_token(
                    &gateway,
                    &mut conn,
                    setup::CLINIC,
                    &doctor.login_id,
                    &digest,
                )
                .await
                .map_err(|e| anyhow!("issuing a token ahead: {}", e.0))?;
                out.push(PreIssued {
                    credential: doctor.credential.clone(),
                    token,
                    digest,
                });
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// One signHash before measuring, its signature checked under the credential's certificate (from
/// `credentials/info`) with `keys::verify_digest`; a line for the report's notes.
pub async fn check_one(
    gateway: &Target,
    signer: &Target,
    doctor: &SignDoctor,
) -> anyhow::Result<String> {
    let mut gw = gateway
        .connect()
        .await
        .map_err(|e| anyhow!("connect to the gateway: {}", e.0))?;
    let mut conn = signer
        .connect()
        .await
        .map_err(|e| anyhow!("connect to the signer: {}", e.0))?;
    let digest = *b"ninsho bench: one checked digest";
    let token =
        workload::issue_bound_token(gateway, &mut gw, setup::CLINIC, &doctor.login_id, &digest)
            .await
            .map_err(|e| anyhow!("token: {}", e.0))?;
    let signature = workload::sign_hash(signer, &mut conn, &doctor.credential, &token, &digest)
        .await
        .map_err(|e| anyhow!("signHash: {}", e.0))?;
    // The same token again: the gateway's consume must refuse it.
    let replay = workload::sign_hash(signer, &mut conn, &doctor.credential, &token, &digest).await;
    match replay {
        Err(e) if e.0 == "signhash_400_invalid_request" => {}
        Err(e) => bail!("a replayed token was answered {}", e.0),
        Ok(_) => bail!("a replayed token was signed with"),
    }
    let body = serde_json::json!({ "credentialID": doctor.credential, "certificates": "single" });
    let req = crate::conn::with_body(
        signer.request(hyper::Method::POST, "/csc/v2/credentials/info"),
        "application/json",
        bytes::Bytes::from(body.to_string()),
    )
    .map_err(|e| anyhow!(e.0))?;
    let reply = conn
        .send(req)
        .await
        .map_err(|e| anyhow!("credentials/info: {}", e.0))?;
    let info: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let cert = info["cert"]["certificates"][0]
        .as_str()
        .and_then(|c| STANDARD.decode(c).ok())
        .ok_or_else(|| anyhow!("credentials/info without a certificate: {info}"))?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&cert).map_err(|e| anyhow!("certificate: {e}"))?;
    let spki = parsed.public_key().raw;
    if !keys::verify_digest(
        spki,
        keys::SignAlgorithm::RsaPkcs1Sha256,
        &digest,
        &signature,
    )? {
        bail!("the signHash signature does not verify under the credential's certificate");
    }
    Ok(format!(
        "one signature checked before measuring: RSASSA-PKCS1-v1_5 / SHA-256, {} bytes, valid under the credential's certificate from `credentials/info` (`keys::verify_digest`); the same token presented again was refused (`invalid_request`, consumed at the gateway)",
        signature.len()
    ))
}
