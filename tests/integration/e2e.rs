//! Browser tests: runs `tests/e2e/fido.mjs` (playwright-core driving Debian's headless Chromium
//! with the CDP virtual authenticator and the clinic client certificate) and `tests/e2e/card.mjs`
//! (the same browser with the real card agent and simulated cards in a private pcscd) against a
//! real gateway with a seeded doctor. `tests/run.sh` installs Chromium, pcscd, vpcd and the npm
//! packages; without them these tests fail and say how to get them: they are not optional.
//!
//! Screenshots of every page (ja/en, desktop and 390 px) go to `<target>/screenshots/<db>/`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use card::hpki::SignStyle;
use card::sim::card::Profile;
use card::sim::harness::{Sandbox, SimArgs, SimProcess, locate_card_sim};
use devpki::cards::{CardSpec, Hpki, Jpki};
use gateway::admin::Admin;
use gateway::store::{AnchorKind, RevocationPolicy, SigningSessionState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// Where a browser test leaves its screenshots: `<target>/screenshots/<db>/<test>`.
fn screenshots(db: Db, test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots").join(format!("{db:?}").to_lowercase()).join(test)
}

fn require_browser_tools() {
    let missing_chromium = !Path::new(CHROMIUM).exists();
    let missing_npm = !e2e_dir().join("node_modules/playwright-core/package.json").exists();
    assert!(
        !missing_chromium && !missing_npm,
        "browser tests need {CHROMIUM} (apt-get install chromium) and tests/e2e/node_modules \
         (cd tests/e2e && npm ci); tests/run.sh installs both"
    );
}

/// Runs `tests/e2e/<name>.mjs` against `app` in Chromium with the clinic's certificate and `env`,
/// its screenshots under [`screenshots`]; fails unless the script reports no failure.
async fn run_script(app: &TestApp, db: Db, name: &str, env: &[(&str, &str)]) {
    let cert = app.dir.path().join("client.pem");
    let key = app.dir.path().join("client.key");
    std::fs::write(&cert, &app.pki.clinic_client.cert_pem).unwrap();
    std::fs::write(&key, &app.pki.clinic_client.key_pem).unwrap();
    let mut node = tokio::process::Command::new("node");
    node.arg(format!("{name}.mjs"))
        .current_dir(e2e_dir())
        .env("BASE_URL", app.origin())
        .env("CLIENT_CERT", &cert)
        .env("CLIENT_KEY", &key)
        .envs(env.iter().copied())
        .env("CHROMIUM", CHROMIUM)
        .env("ARTIFACTS", screenshots(db, name))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), node.output())
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

async fn browser_links_a_passkey_and_authenticates(db: Db) {
    require_browser_tools();
    let app = TestApp::spawn(db).await;
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (code, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, 24 * 3600, 5).await.unwrap();
    run_script(&app, db, "fido", &[("LOGIN_ID", DOCTOR_LOGIN), ("PASSWORD", DOCTOR_PASSWORD), ("ENROLL_CODE", code.as_str())]).await;

    // What the browser did is what the database says.
    let uid = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    let creds = app.store().fido_credentials_of(&uid).await.unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].name, "E2Eキー");
    assert!(creds[0].counter >= 1, "Chromium's virtual authenticator counts signatures");
    let session = app.store().current_signing_session(&uid, CLINIC).await.unwrap().expect("a signing session");
    assert_eq!(session.state(app.clock_now()), SigningSessionState::Ended("ended_by_doctor".into()));
    assert_eq!(session.acr, "aal3", "the virtual security key is device-bound");
    app.stop().await;
}


/// The processes `card.mjs` asks for (`@@ …` lines): the card agent and the simulated card in a
/// private pcscd. Dropping it stops them.
struct CardRig {
    sandbox: Sandbox,
    sim: PathBuf,
    agent_bin: PathBuf,
    agent_port: u16,
    agent_log: PathBuf,
    card_dirs: [(Profile, PathBuf); 2],
    card: Option<SimProcess>,
    agent: Option<std::process::Child>,
    origin: String,
}

impl CardRig {
    fn agent(&mut self, allow: Option<&str>) -> Result<(), String> {
        if let Some(mut old) = self.agent.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let Some(allow) = allow else { return Ok(()) };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.agent_log).map_err(|e| e.to_string())?;
        let (var, socket) = self.sandbox.pcsc_env();
        let mut child = std::process::Command::new(&self.agent_bin)
            .args(["--allow-origin", allow, "--port", &self.agent_port.to_string()])
            .env(var, socket)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.agent_bin.display()))?;
        // Ready once it prints its address.
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map_err(|e| e.to_string())?;
        if !line.contains("listening") {
            return Err(format!("card-agent did not start: {line:?}"));
        }
        self.agent = Some(child);
        Ok(())
    }

    /// Puts the card of `kind` into the reader (or none) and waits until the agent sees it.
    async fn card(&mut self, kind: Option<usize>) -> Result<(), String> {
        self.card = None;
        if let Some(i) = kind {
            let (profile, dir) = &self.card_dirs[i];
            let args = SimArgs::new(*profile, dir, CARD_PIN);
            self.card = Some(self.sandbox.insert_card(&self.sim, 0, &args).map_err(|e| e.to_string())?);
        }
        // Card presence as PC/SC reports it, through the agent's status (allowed origin).
        let want = kind.map_or("none", |i| if i == 0 { "jpki" } else { "hpki" });
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let status = client
                .get(format!("http://127.0.0.1:{}/v1/status", self.agent_port))
                .header("origin", &self.origin)
                .send()
                .await;
            if let Ok(res) = status
                && let Ok(body) = res.json::<serde_json::Value>().await
                && body["readers"].as_array().is_some_and(|r| r.iter().any(|r| r["name"] == "Virtual PCD 00 00" && r["card"] == want))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the agent never saw card {want}"))
    }
}

impl Drop for CardRig {
    fn drop(&mut self) {
        let _ = self.agent(None);
    }
}

const CARD_PIN: &str = "1234";

/// A port nothing listens on right now (for the card agent, which the gateway's config names).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn browser_links_and_logs_in_with_cards(db: Db) {
    require_browser_tools();
    let sim = locate_card_sim().expect("card-sim is built (cargo build -p card --features sim,pcsc --bin card-sim)");
    let agent_bin = std::env::var_os("CARD_AGENT").map(PathBuf::from).unwrap_or_else(|| sim.with_file_name("card-agent"));
    assert!(agent_bin.exists(), "card-agent is built (cargo build -p card-agent): {}", agent_bin.display());
    let agent_port = free_port();
    let app = TestApp::builder(db)
        .with_config(move |c| c.card.agent_url = format!("http://127.0.0.1:{agent_port}").parse().unwrap())
        .spawn()
        .await;

    // The demo's kind of cards (devpki::cards), their issuing CAs as anchors (an HPKI card holds no
    // CA certificate), laid out for card-sim.
    let now = time::OffsetDateTime::from_unix_timestamp(app.clock_now()).unwrap();
    let holder = CardSpec::new(now);
    let (hpki, jpki) = (Hpki::new(now).unwrap(), Jpki::new(now).unwrap());
    let admin = Admin { store: app.store(), now: app.clock_now() };
    admin.anchor_add(AnchorKind::Hpki, hpki.auth_ca().cert_pem().as_bytes(), None, RevocationPolicy::None, None).await.unwrap();
    admin.anchor_add(AnchorKind::Jpki, jpki.auth_ca().cert_pem().as_bytes(), None, RevocationPolicy::None, None).await.unwrap();
    let (jpki_dir, hpki_dir) = (app.dir.path().join("cards/jpki"), app.dir.path().join("cards/hpki"));
    jpki.card(&holder).unwrap().write_sim_dir(&jpki_dir).unwrap();
    hpki.card(&holder).unwrap().write_sim_dir(&hpki_dir).unwrap();

    let cert = app.dir.path().join("client.pem");
    let key = app.dir.path().join("client.key");
    std::fs::write(&cert, &app.pki.clinic_client.cert_pem).unwrap();
    std::fs::write(&key, &app.pki.clinic_client.key_pem).unwrap();
    let agent_log = app.dir.path().join("card-agent.log");
    // A device certificate from the clinic CA that no clinic registered (the 403 device page).
    let device_cert = app.dir.path().join("device.pem");
    let device_key = app.dir.path().join("device.key");
    std::fs::write(&device_cert, &app.pki.unregistered_client.cert_pem).unwrap();
    std::fs::write(&device_key, &app.pki.unregistered_client.key_pem).unwrap();
    let mut rig = CardRig {
        sandbox: Sandbox::start().expect("a private pcscd (root, pcscd, vsmartcard-vpcd, util-linux)"),
        sim,
        agent_bin,
        agent_port,
        agent_log: agent_log.clone(),
        card_dirs: [(Profile::Jpki, jpki_dir), (Profile::Hpki(SignStyle::CardPadded), hpki_dir)],
        card: None,
        agent: None,
        origin: app.origin(),
    };

    let mut node = tokio::process::Command::new("node");
    node.arg("card.mjs")
        .current_dir(e2e_dir())
        .env("BASE_URL", app.origin())
        .env("CLIENT_CERT", &cert)
        .env("CLIENT_KEY", &key)
        .env("LOGIN_ID", DOCTOR_LOGIN)
        .env("PASSWORD", DOCTOR_PASSWORD)
        .env("PIN", CARD_PIN)
        .env("DEVICE_CERT", &device_cert)
        .env("DEVICE_KEY", &device_key)
        .env("CHROMIUM", CHROMIUM)
        .env("ARTIFACTS", screenshots(db, "card"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = node.spawn().expect("node runs (is Node.js installed?)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut transcript = String::new();
    let drive = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // Shown as it happens (nextest keeps it for a failure or a timeout).
            println!("card.mjs: {line}");
            transcript.push_str(&line);
            transcript.push('\n');
            let Some(command) = line.strip_prefix("@@ ") else { continue };
            let answer = match command {
                "code" => {
                    let (code, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, 24 * 3600, 5).await.unwrap();
                    Ok(code.as_str().to_owned())
                }
                "card jpki" => rig.card(Some(0)).await.map(|()| "ok".to_owned()),
                "card hpki" => rig.card(Some(1)).await.map(|()| "ok".to_owned()),
                "card none" => rig.card(None).await.map(|()| "ok".to_owned()),
                "agent ok" => rig.agent(Some(&app.origin())).map(|()| "ok".to_owned()),
                "agent off" => rig.agent(None).map(|()| "ok".to_owned()),
                "agent wrong-origin" => rig.agent(Some("https://other-gateway.example:8443")).map(|()| "ok".to_owned()),
                // The database "goes away": the gateway's pools are closed (the pages answer 503).
                "outage" => {
                    app.store().close().await;
                    Ok("ok".to_owned())
                }
                other => Err(format!("unknown command {other}")),
            };
            let answer = answer.unwrap_or_else(|e| format!("error: {e}"));
            stdin.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(240), drive).await.expect("the card browser test finished within 4 minutes");
    let status = child.wait().await.unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    assert!(status.success(), "card.mjs failed ({status}):\n{transcript}\n{err}");
    assert!(transcript.contains(" passed, 0 failed"), "{transcript}");
    drop(rig);

    // What the browser did is what the database says (read through a store of its own: the
    // gateway's pools were closed for the outage page).
    let store = app.other_store(2).await;
    let uid = store.user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    let cards = store.card_credentials_of(&uid).await.unwrap();
    let jpki = cards.iter().find(|c| c.kind == "jpki").unwrap();
    assert_eq!((jpki.linked_via.as_str(), jpki.name.as_str()), ("code", "外来用"));
    let mut linked: Vec<(&str, &str)> = cards.iter().map(|c| (c.kind.as_str(), c.linked_via.as_str())).collect();
    linked.sort_unstable();
    let by_jpki = format!("jpki:{}", jpki.id);
    assert_eq!(linked, [("hpki", by_jpki.as_str()), ("jpki", "code")]);
    let fido = store.fido_credentials_of(&uid).await.unwrap();
    assert_eq!(fido.iter().map(|c| c.linked_via.as_str()).collect::<Vec<_>>(), [by_jpki.as_str()]);
    // Two card logins (the test's clock stands still, so both opened at the same second: the
    // audit rows tell them apart), the second ended from the page.
    assert!(store.live_signing_session(&uid, CLINIC, app.clock_now()).await.unwrap().is_none());
    let audit = store.audit_tail(300).await.unwrap();
    // Every way of linking, in order: code, code, confirming with FIDO, then twice confirming
    // with the My Number card.
    let links: Vec<String> = audit
        .iter()
        .rev()
        .filter(|r| r.event == "authenticator_linked" && r.outcome == "success")
        .map(|r| format!("{} {}", r.detail["kind"].as_str().unwrap(), r.detail["via"].as_str().unwrap().split(':').next().unwrap()))
        .collect();
    assert_eq!(links, ["jpki code", "fido code", "hpki fido", "fido jpki", "hpki jpki"], "{audit:?}");
    assert!(audit.iter().any(|r| r.event == "authenticator_renamed" && r.detail["kind"] == "jpki"), "{audit:?}");
    let opened: Vec<&str> =
        audit.iter().rev().filter(|r| r.event == "signing_session_opened").filter_map(|r| r.detail["method"].as_str()).collect();
    assert_eq!(opened, ["jpki", "hpki"], "{audit:?}");
    assert!(audit.iter().any(|r| r.event == "signing_session_ended" && r.detail["reason"] == "ended_by_doctor"), "{audit:?}");
    // The agent's log names the origin it refused (and nothing secret: no PIN).
    let log = std::fs::read_to_string(&agent_log).unwrap();
    assert!(log.contains("refused a request from an origin not in --allow-origin") && log.contains(&app.origin()), "{log}");
    // (as a number of its own: timestamps and ports may hold the same digits)
    assert!(!log.split(|c: char| !c.is_ascii_digit()).any(|n| n == CARD_PIN), "{log}");
    app.stop().await;
}

/// The EMR's OpenID Connect provider signs the doctor in (docs/design.md §3.17); the presence
/// step and the signing session follow as after a password (`tests/e2e/oidc.mjs`).
async fn browser_signs_in_through_the_emr_and_authenticates(db: Db) {
    require_browser_tools();
    let (app, provider) = crate::oidc_login::upstream_app(db, 3600).await;
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (code, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, 24 * 3600, 5).await.unwrap();
    run_script(&app, db, "oidc", &[("ENROLL_CODE", code.as_str()), ("ISSUER", provider.issuer.as_str())]).await;

    // Two sign-ins through the provider, on the record; the signing session came of FIDO.
    let uid = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap().id;
    let tail = app.store().audit_tail(50).await.unwrap();
    let upstream = tail.iter().filter(|r| r.event == "login" && r.outcome == "success" && r.detail["method"] == "oidc").count();
    assert_eq!(upstream, 2, "two EMR sign-ins");
    let session = app.store().current_signing_session(&uid, CLINIC).await.unwrap().expect("a signing session");
    assert_eq!(session.state(app.clock_now()), SigningSessionState::Live);
    app.stop().await;
}

db_tests!(
    browser_links_a_passkey_and_authenticates,
    browser_links_and_logs_in_with_cards,
    browser_signs_in_through_the_emr_and_authenticates,
);

/// The README's card walk-through is a script (`tests/e2e/readme-cards.sh`) whose commands the
/// README shows verbatim; run as a new user would run it, the card agent answers and sees the
/// demo's My Number card in the virtual reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_card_walkthrough_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = e2e_dir().join("readme-cards.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let shown = text.split("# --- README ---\n").nth(1).expect("the README part of the script");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains(&format!("```sh\n{shown}```")), "README.md must show the commands of tests/e2e/readme-cards.sh");

    let sim = locate_card_sim().expect("card-sim is built (cargo build -p card --features sim,pcsc --bin card-sim)");
    let bin = sim.parent().unwrap().to_owned();
    assert!(bin.join("card-agent").exists(), "card-agent is built (cargo build -p card-agent)");
    // The demo's card directory, as `gateway demo` writes it.
    let demo = tempfile::tempdir().unwrap();
    let now = gateway::clock::ManualClock::starting_now().now();
    Jpki::new(now).unwrap().card(&CardSpec::new(now)).unwrap().write_sim_dir(&demo.path().join("cards/jpki")).unwrap();
    let (port, agent_port) = (free_port(), free_port());
    let walkthrough = std::process::Command::new("sh")
        .arg(&script)
        .current_dir(&root)
        .env("DEMO", demo.path())
        .env("PORT", port.to_string())
        .env("AGENT_PORT", agent_port.to_string())
        .env("BIN", &bin)
        // Its own process group, so the whole walk-through (pcscd, card, agent) stops at the end.
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let origin = format!("https://localhost:{port}");
    let client = reqwest::Client::new();
    let mut seen = None;
    for _ in 0..150 {
        let status = client.get(format!("http://127.0.0.1:{agent_port}/v1/status")).header("origin", &origin).send().await;
        if let Ok(res) = status
            && let Ok(body) = res.json::<serde_json::Value>().await
            && body["readers"].as_array().is_some_and(|r| r.iter().any(|r| r["card"] == "jpki"))
        {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hello = client.get(format!("http://127.0.0.1:{agent_port}/v1/hello")).header("origin", "https://elsewhere.example").send().await;
    let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{}", walkthrough.id())]).status();
    let output = walkthrough.wait_with_output().unwrap();
    let seen = seen.unwrap_or_else(|| panic!("the agent never saw the card:\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(seen["agent"], "card-agent", "{seen}");
    // Any page may ask who listens there, and learns nothing else.
    let hello = hello.unwrap();
    assert_eq!(hello.headers()["access-control-allow-origin"], "*");
    let hello: serde_json::Value = hello.json().await.unwrap();
    assert_eq!(hello.as_object().unwrap().keys().collect::<Vec<_>>(), ["agent", "version"]);
    assert_eq!(hello["agent"], "ninsho");
}
