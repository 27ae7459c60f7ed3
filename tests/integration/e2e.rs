//! Browser tests: runs `tests/e2e/fido.mjs` (playwright-core driving Debian's headless Chromium
//! with the CDP virtual authenticator and the clinic client certificate) against a real gateway
//! with a seeded doctor and registration code. `tests/run.sh` installs Chromium and the npm
//! packages; without them this test fails and says how to get them: it is not optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::admin::Admin;
use gateway::store::SigningSessionState;

use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
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

async fn browser_links_a_passkey_and_authenticates(db: Db) {
    require_browser_tools();
    let app = TestApp::spawn(db).await;
    let admin = Admin { store: app.store(), now: app.clock_now() };
    let (code, _) = admin.enroll_code_issue(CLINIC, DOCTOR_LOGIN, 24 * 3600, 5).await.unwrap();
    let cert = app.dir.path().join("client.pem");
    let key = app.dir.path().join("client.key");
    std::fs::write(&cert, &app.pki.clinic_client.cert_pem).unwrap();
    std::fs::write(&key, &app.pki.clinic_client.key_pem).unwrap();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/artifacts")
        .join(format!("{:?}", db).to_lowercase());

    let mut node = tokio::process::Command::new("node");
    node.arg("fido.mjs")
        .current_dir(e2e_dir())
        .env("BASE_URL", app.origin())
        .env("CLIENT_CERT", &cert)
        .env("CLIENT_KEY", &key)
        .env("LOGIN_ID", DOCTOR_LOGIN)
        .env("PASSWORD", DOCTOR_PASSWORD)
        .env("ENROLL_CODE", code.as_str())
        .env("CHROMIUM", CHROMIUM)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), node.output())
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fido.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

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

db_tests!(browser_links_a_passkey_and_authenticates);
