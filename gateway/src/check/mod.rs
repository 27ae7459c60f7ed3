//! `gateway check`: an end-to-end smoke test against a live deployment (docs/design.md §3.10).
//!
//! `check link` signs a test account in with its password and links a software authenticator
//! with a registration code, keeping the credential in a 0600 key file. `check run` then does
//! what a doctor, the EMR and the remote signer do — login page, password, FIDO authentication,
//! a signing token, its consumption, the end of the session — over real mTLS with the given
//! clinic and service certificates, printing each step's result and latency.
//!
//! Both refuse an account the gateway does not report as a test account: the EMR API's session
//! state says so (`test_account`), and the consumed token must carry `"test": true`. The client
//! never decides this on its own.

mod client;
pub mod soft;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use client::{Gateway, Reply};
use soft::SoftAuthenticator;

/// `gateway check …`.
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Sign a test account in and link a software authenticator with a registration code (read
    /// from the first line of standard input); its key goes to a new 0600 file.
    Link(LinkArgs),
    /// Run the smoke test: login page, test account, password login, FIDO authentication,
    /// token request, token consumption, end of session. Exit 0 only if every step passes.
    Run(RunArgs),
}

/// Where the gateway is and who the check is.
#[derive(Debug, Args)]
pub struct Target {
    /// The gateway's public URL, e.g. https://gw.example.jp
    #[arg(long)]
    pub url: url::Url,
    /// The CA certificate(s) the gateway's server certificate is checked against (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The clinic's device certificate: a PEM certificate (key in --clinic-key) or a PKCS#12
    /// file (.p12/.pfx, password in --clinic-password-file).
    #[arg(long)]
    pub clinic_cert: PathBuf,
    /// The clinic certificate's private key (PEM, mode 0600), with a PEM --clinic-cert.
    #[arg(long)]
    pub clinic_key: Option<PathBuf>,
    /// A file (mode 0600) whose first line is the PKCS#12 password, with a .p12 --clinic-cert.
    #[arg(long)]
    pub clinic_password_file: Option<PathBuf>,
    /// An EMR service client's certificate (PEM): asks whether the account is a test account,
    /// and requests the token.
    #[arg(long)]
    pub service_cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    #[arg(long)]
    pub service_key: PathBuf,
    /// The clinic code the account belongs to.
    #[arg(long)]
    pub clinic: String,
    /// The test account's login ID.
    #[arg(long)]
    pub login_id: String,
    /// A file (mode 0600) whose first line is the test account's password.
    #[arg(long)]
    pub password_file: PathBuf,
    /// The software authenticator's key file (`check link` writes it, `check run` reads it).
    #[arg(long)]
    pub authenticator_key: PathBuf,
}

/// `check link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub target: Target,
}

/// `check run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// A remote signer's certificate (PEM): consumes the token as the signer would. Without it
    /// the EMR consumes its own token.
    #[arg(long, requires = "signer_key")]
    pub signer_cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    #[arg(long, requires = "signer_cert")]
    pub signer_key: Option<PathBuf>,
}

/// Runs a `check` command.
pub async fn run(cmd: CheckCommand, out: &mut (dyn Write + Send), input: &mut (dyn BufRead + Send)) -> anyhow::Result<()> {
    match cmd {
        CheckCommand::Link(args) => link(&args.target, out, input).await,
        CheckCommand::Run(args) => {
            let signer = match (&args.signer_cert, &args.signer_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => None,
            };
            smoke(&args.target, signer, out).await
        }
    }
}

/// The public origin of `url` (scheme, host, port), as a browser sends it.
fn origin(url: &url::Url) -> anyhow::Result<String> {
    if url.scheme() != "https" {
        bail!("--url must be https://…, got {url}");
    }
    Ok(url.origin().ascii_serialization())
}

/// The first line of a 0600 file.
fn secret_line(path: &std::path::Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let text = crate::audit_checkpoint::read_private_file(path, what, || bail!("no {what} file at {}", path.display()))?;
    let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_owned());
    if line.is_empty() {
        bail!("{} ({what}) is empty", path.display());
    }
    Ok(line)
}

/// Asks the EMR API whether `login_id` is a test account; refuses unless the gateway says so.
async fn require_test_account(emr: &Gateway, t: &Target) -> anyhow::Result<()> {
    let state = emr.session_state(&t.clinic, &t.login_id).await?;
    if state["test_account"] != json!(true) {
        bail!(
            "{} is not a test account of clinic {}; gateway check runs only with one (gateway admin user add-test)",
            t.login_id,
            t.clinic
        );
    }
    Ok(())
}

async fn link(t: &Target, out: &mut (dyn Write + Send), input: &mut (dyn BufRead + Send)) -> anyhow::Result<()> {
    let origin = origin(&t.url)?;
    if t.authenticator_key.exists() {
        bail!("{} already exists; an authenticator key file is never overwritten", t.authenticator_key.display());
    }
    let mut code = Zeroizing::new(String::new());
    input.read_line(&mut code).context("reading the registration code from standard input")?;
    let code = Zeroizing::new(code.trim().to_owned());
    if code.is_empty() {
        bail!("no registration code on standard input (gateway admin enroll-code issue prints one)");
    }
    let password = secret_line(&t.password_file, "password")?;
    let browser = Gateway::clinic(t)?;
    let emr = Gateway::service(t, &t.service_cert, &t.service_key)?;
    require_test_account(&emr, t).await?;
    browser.login(&t.login_id, &password).await?;
    let options = browser.post_json("/fido/register/start", json!({ "code": code.as_str() })).await?.ok("registration start")?;
    let rp_id = options["publicKey"]["rp"]["id"].as_str().context("no RP ID in the registration options")?.to_owned();
    let mut auth = SoftAuthenticator::new_counterless(&origin, &rp_id)?;
    let credential = auth.create(&options)?;
    browser
        .post_json("/fido/register/finish", json!({ "credential": credential, "name": "gateway check" }))
        .await?
        .ok("registration finish")?;
    auth.save(&t.authenticator_key)?;
    // The link stands whether or not this signs out; a failure here is reported, not hidden.
    browser.logout().await?;
    writeln!(out, "linked a software authenticator to test account {} of clinic {}", t.login_id, t.clinic)?;
    writeln!(out, "key written to {} (mode 0600)", t.authenticator_key.display())?;
    Ok(())
}

/// One step's outcome, printed as it ends.
struct Steps<'a> {
    out: &'a mut (dyn Write + Send),
}

impl Steps<'_> {
    async fn step<T>(&mut self, name: &str, f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        let started = Instant::now();
        match f.await {
            Ok(v) => {
                writeln!(self.out, "ok   {name:<20} {} ms", started.elapsed().as_millis())?;
                Ok(v)
            }
            Err(e) => {
                writeln!(self.out, "FAIL {name:<20} {}", crate::cli::error_message(&e))?;
                Err(anyhow!("the check failed at step \"{name}\""))
            }
        }
    }
}

async fn smoke(t: &Target, signer: Option<(PathBuf, PathBuf)>, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    // Everything local is read before the first request: a missing file is not a gateway failure.
    let origin = origin(&t.url)?;
    let password = secret_line(&t.password_file, "password")?;
    let mut auth = SoftAuthenticator::load(&t.authenticator_key, &origin)?;
    let browser = Gateway::clinic(t)?;
    let emr = Gateway::service(t, &t.service_cert, &t.service_key)?;
    let signer = signer.map(|(c, k)| Gateway::service(t, &c, &k)).transpose()?;
    let emr_x5t = crate::tokens::x5t_s256(&client::certificate_der(&t.service_cert)?);
    let mut steps = Steps { out };

    steps.step("login page", async { browser.get("/login").await?.ok("GET /login").map(drop) }).await?;
    steps.step("test account", require_test_account(&emr, t)).await?;
    steps.step("password login", browser.login(&t.login_id, &password)).await?;
    steps
        .step("FIDO authentication", async {
            let options = browser.post_json("/fido/auth/start", json!({})).await?.ok("authentication start")?;
            let rp_id = options["publicKey"]["rpId"].as_str().unwrap_or_default();
            if rp_id != auth.rp_id() {
                bail!("the gateway asks for RP ID {rp_id:?}, the key file's credential is for {:?}", auth.rp_id());
            }
            let assertion = auth.get(&options)?;
            browser.post_json("/fido/auth/finish", json!({ "credential": assertion })).await?.ok("authentication finish").map(drop)
        })
        .await?;
    let token = steps
        .step("token request", async {
            let body = json!({ "clinic_id": t.clinic, "doctor_id": t.login_id });
            let reply = emr.post_json("/api/v1/signing-tokens", body).await?.ok("POST /api/v1/signing-tokens")?;
            Ok(Zeroizing::new(reply["token"].as_str().context("no token in the answer")?.to_owned()))
        })
        .await?;
    steps
        .step("token consume", async {
            let (consumer, body) = match &signer {
                Some(s) => (s, json!({ "token": token.as_str(), "x5t#S256": emr_x5t })),
                None => (&emr, json!({ "token": token.as_str() })),
            };
            let reply = consumer.post_json("/api/v1/signing-tokens/consume", body).await?.ok("POST /api/v1/signing-tokens/consume")?;
            if reply["test"] != json!(true) {
                bail!("the consumed token is not marked \"test\": true");
            }
            Ok(())
        })
        .await?;
    steps
        .step("end session", async {
            browser.logout().await?;
            let state = emr.session_state(&t.clinic, &t.login_id).await?;
            if state["active"] != json!(false) {
                bail!("the signing session is still active after logout");
            }
            Ok(())
        })
        .await?;
    Ok(())
}

impl Reply {
    /// The JSON body of a 200 answer, or the status and error code of any other.
    fn ok(self, what: &str) -> anyhow::Result<Value> {
        if self.status == 200 {
            return Ok(self.json.unwrap_or(Value::Null));
        }
        let code = self.json.as_ref().and_then(|j| j["error"].as_str()).unwrap_or("");
        let message = self.json.as_ref().and_then(|j| j["message"].as_str()).unwrap_or("");
        bail!("{what} answered {} {code} {message}", self.status)
    }
}
