//! `gateway check` (issue 18) against a running gateway, driven in-process through the real CLI:
//! a test account, a software authenticator linked with a registration code, and every step of
//! the smoke test over real mTLS.

use std::os::unix::fs::PermissionsExt as _;

use crate::admin_cli::{audit_rows, cli_streams};
use crate::helpers::*;

const TEST_LOGIN: &str = "check-bot";
const TEST_PASSWORD: &str = "umbrella quartz nightfall 83";

fn write_private(path: &std::path::Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// The arguments every `check` command takes, for `login_id` and the key file `key`.
fn target(app: &TestApp, login_id: &str, key: &str) -> Vec<String> {
    let dir = app.dir.path();
    let public = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let pki = &app.pki;
    [
        "--url".to_owned(),
        app.origin(),
        "--ca".to_owned(),
        public("ca.pem", pki.server_ca.cert_pem()),
        "--clinic-cert".to_owned(),
        public("clinic.pem", &pki.clinic_client.cert_pem),
        "--clinic-key".to_owned(),
        write_private(&dir.join("clinic.key"), &pki.clinic_client.key_pem),
        "--service-cert".to_owned(),
        public("emr.pem", &pki.emr_a.cert_pem),
        "--service-key".to_owned(),
        write_private(&dir.join("emr.key"), &pki.emr_a.key_pem),
        "--clinic".to_owned(),
        CLINIC.to_owned(),
        "--login-id".to_owned(),
        login_id.to_owned(),
        "--password-file".to_owned(),
        write_private(&dir.join(format!("{login_id}.password")), &format!("{TEST_PASSWORD}\n")),
        "--authenticator-key".to_owned(),
        dir.join(key).display().to_string(),
    ]
    .into()
}

async fn check(app: &TestApp, command: &str, args: &[String], stdin: &str) -> (i32, String, String) {
    let mut argv = vec!["check", command];
    argv.extend(args.iter().map(String::as_str));
    cli_streams(app, &argv, stdin).await
}

/// Adds the test account and issues it a registration code; returns the code.
async fn test_account_with_code(app: &TestApp) -> String {
    let (code, out, err) = cli_streams(
        app,
        &["admin", "user", "add-test", "--clinic", CLINIC, "--login-id", TEST_LOGIN, "--password-stdin"],
        &format!("{TEST_PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("added test account {TEST_LOGIN} (")), "{out}");
    let (code, out, err) = cli_streams(app, &["admin", "enroll-code", "issue", "--clinic", CLINIC, "--login-id", TEST_LOGIN], "").await;
    assert_eq!(code, 0, "{err}");
    out.lines().find(|l| l.starts_with("    ")).expect("the code is printed").trim().to_owned()
}

async fn check_links_and_runs_every_step(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = test_account_with_code(&app).await;
    let args = target(&app, TEST_LOGIN, "auth.key");
    let key = app.dir.path().join("auth.key");

    let (status, out, err) = check(&app, "link", &args, &format!("{code}\n")).await;
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("linked a software authenticator") && !out.contains(&code), "{out}");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "the key is its owner's only");
    // Linking again never overwrites the key file.
    let before = std::fs::read(&key).unwrap();
    let (status, _, err) = check(&app, "link", &args, &format!("{code}\n")).await;
    assert_eq!(status, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // The EMR consumes its own token; then a signer does.
    let emr_only = check(&app, "run", &args, "").await;
    let mut signer_args = args.clone();
    let dir = app.dir.path();
    std::fs::write(dir.join("signer.pem"), &app.pki.signer.cert_pem).unwrap();
    signer_args.extend([
        "--signer-cert".to_owned(),
        dir.join("signer.pem").display().to_string(),
        "--signer-key".to_owned(),
        write_private(&dir.join("signer.key"), &app.pki.signer.key_pem),
    ]);
    let with_signer = check(&app, "run", &signer_args, "").await;
    for (status, out, err) in [emr_only, with_signer] {
        assert_eq!(status, 0, "{out}{err}");
        let steps: Vec<&str> = out.lines().collect();
        let names =
            ["login page", "test account", "password login", "FIDO authentication", "token request", "token consume", "end session"];
        assert_eq!(steps.len(), names.len(), "{out}");
        for (line, name) in steps.iter().zip(names) {
            assert!(line.starts_with(&format!("ok   {name} ")) && line.ends_with(" ms"), "{line:?} in {out}");
        }
        assert!(!out.contains(TEST_PASSWORD) && !err.contains(TEST_PASSWORD), "the password is never printed");
    }
    // The session really ended; the test account's audit rows are there.
    let user = app.store().user_by_login(CLINIC, TEST_LOGIN).await.unwrap();
    assert!(user.test_account && user.medical_reg_no.is_none());
    assert!(app.store().live_signing_session(&user.id, CLINIC, app.clock_now()).await.unwrap().is_none());
    let tail = app.store().audit_tail(200).await.unwrap();
    assert!(tail.iter().any(|r| r.detail["action"] == "user.add_test" && r.detail["target"] == user.id.as_str()), "audited");
    app.stop().await;
}

async fn check_refuses_a_real_doctor_and_a_wrong_key(db: Db) {
    let app = TestApp::spawn(db).await;
    let code = test_account_with_code(&app).await;
    let dir = app.dir.path();

    // A real doctor: refused by `link` before the code is used, and by `run` at its step.
    let real = target(&app, DOCTOR_LOGIN, "real.key");
    let (status, _, err) = check(&app, "link", &real, "whatever-code\n").await;
    assert_eq!(status, 1);
    assert!(err.contains(&format!("{DOCTOR_LOGIN} is not a test account")), "{err}");
    assert!(!dir.join("real.key").exists());
    gateway::check::soft::SoftAuthenticator::new_counterless(&app.origin(), "localhost")
        .unwrap()
        .save(&dir.join("real.key"))
        .unwrap();
    let audit_before = audit_rows(&app).await;
    let (status, out, err) = check(&app, "run", &real, "").await;
    assert_eq!(status, 1, "{out}{err}");
    assert!(out.starts_with("ok   login page ") && out.contains("FAIL test account ") && out.contains("not a test account"), "{out}");
    assert!(!out.contains("password login"), "the first failure stops the run: {out}");
    assert!(err.contains("failed at step \"test account\""), "{err}");
    // Nothing was signed in: the only request after the login page was the EMR's session read.
    let tail = app.store().audit_tail(10).await.unwrap();
    let new: Vec<_> = tail.iter().filter(|r| r.seq > audit_before).collect();
    assert!(new.iter().all(|r| r.event != "login"), "{new:?}");

    // The test account with a key that was never linked: it fails at the authentication step.
    let args = target(&app, TEST_LOGIN, "auth.key");
    let (status, out, err) = check(&app, "link", &args, &format!("{code}\n")).await;
    assert_eq!(status, 0, "{out}{err}");
    let stranger = target(&app, TEST_LOGIN, "stranger.key");
    gateway::check::soft::SoftAuthenticator::new_counterless(&app.origin(), "localhost")
        .unwrap()
        .save(&dir.join("stranger.key"))
        .unwrap();
    let (status, out, err) = check(&app, "run", &stranger, "").await;
    assert_eq!(status, 1, "{out}{err}");
    assert!(out.contains("ok   password login ") && out.contains("FAIL FIDO authentication "), "{out}");
    assert!(!out.contains("token request"), "{out}");

    // A key file others can read is refused before any request.
    let key = dir.join("auth.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, out, err) = check(&app, "run", &args, "").await;
    assert_eq!(status, 1);
    assert!(out.is_empty() && err.contains("readable by other users") && err.contains("auth.key"), "{out}{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (status, out, err) = check(&app, "run", &args, "").await;
    assert_eq!(status, 0, "{out}{err}");
    app.stop().await;
}

async fn test_accounts_are_marked_and_never_a_real_doctors(db: Db) {
    let app = TestApp::spawn(db).await;
    let users_before = app.store().list_users(None).await.unwrap().len();
    let (code, _, err) = cli_streams(
        &app,
        &["admin", "user", "add-test", "--clinic", CLINIC, "--login-id", "t2", "--medical-reg-no", "111111"],
        "",
    )
    .await;
    assert_eq!(code, 2, "a test account takes no 医籍番号: {err}");
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before);
    test_account_with_code(&app).await;
    let (code, out, _) = cli_streams(&app, &["admin", "user", "list", "--clinic", CLINIC], "").await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{TEST_LOGIN}\tdoctor\tenabled\ttest\t")), "{out}");
    assert!(out.contains(&format!("{DOCTOR_LOGIN}\tdoctor\tenabled\t123456\t")), "{out}");
    // The database itself keeps a 医籍番号 off a test account.
    let user = gateway::store::NewUser {
        id: "00000000-0000-4000-8000-000000000097",
        clinic_id: CLINIC,
        login_id: "t3",
        kind: gateway::store::UserKind::Doctor,
        name: "X",
        medical_reg_no: Some("222222"),
        password_hash: "$argon2id$not-used",
        password_temporary: false,
        test_account: true,
    };
    assert!(app.store().add_user(&user, app.clock_now()).await.is_err());
    app.stop().await;
}

db_tests!(check_links_and_runs_every_step, check_refuses_a_real_doctor_and_a_wrong_key, test_accounts_are_marked_and_never_a_real_doctors);
