//! The real `gateway admin` CLI, driven in-process: bad input gets a clear error and writes nothing.

use std::io::Cursor;

use crate::helpers::*;

/// Runs `gateway --config <app config> <args>` and returns (exit code, output).
pub(crate) async fn cli(app: &TestApp, args: &[&str], stdin: &str) -> (i32, String) {
    let config_path = app.dir.path().join("cli.toml");
    let c = &app.config;
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\n[database]\nurl = {:?}\n[login]\nargon2_memory_kib = 8192\nargon2_iterations = 1\n",
            c.data_dir.display().to_string(),
            c.database.url
        ),
    )
    .unwrap();
    let mut argv = vec!["gateway".to_owned(), "--config".to_owned(), config_path.display().to_string()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let mut out = Vec::new();
    let code = gateway::cli::run(argv, &mut out, &mut Cursor::new(stdin.as_bytes().to_vec())).await;
    (code, String::from_utf8(out).unwrap())
}

pub(crate) async fn audit_rows(app: &TestApp) -> i64 {
    match app.store().audit_verify().await.unwrap() {
        gateway::store::AuditVerification::Intact { rows, .. } => rows,
        other => panic!("{other:?}"),
    }
}

async fn refused_commands_say_why_and_change_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = app.dir.path();
    std::fs::write(dir.join("garbage.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(dir.join("new.pem"), &app.pki.unregistered_client.cert_pem).unwrap();
    let p12 = devpki::pkcs12(&app.pki.unregistered_client, &[app.pki.clinic_ca.cert_der()], "c", "right-password").unwrap();
    std::fs::write(dir.join("new.p12"), p12).unwrap();
    let users_before = app.store().list_users(None).await.unwrap().len();
    let certs_before = app.store().list_clinic_certs(None).await.unwrap().len();
    let audit_before = audit_rows(&app).await;

    let cases: &[(&[&str], &str, &str)] = &[
        (&["admin", "user", "add", "--clinic", "00000", "--login-id", "x", "--name", "X", "--medical-reg-no", "1", "--password-stdin"], "password123\n", "no clinic 00000"),
        (&["admin", "user", "add", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN, "--name", "X", "--medical-reg-no", "1", "--password-stdin"], "password123\n", "already exists"),
        (&["admin", "user", "add", "--clinic", CLINIC, "--login-id", "new", "--name", "X", "--password-stdin"], "password123\n", "needs --medical-reg-no"),
        (&["admin", "user", "add", "--clinic", CLINIC, "--login-id", "new", "--name", "X", "--type", "nurse"], "", "unknown user type"),
        (&["admin", "user", "add", "--clinic", CLINIC, "--login-id", "new", "--name", "X", "--type", "staff", "--password-stdin"], "short\n", "8–256"),
        (&["admin", "clinic-cert", "add", "--clinic", CLINIC, "garbage.pem"], "", "garbage.pem"),
        (&["admin", "clinic-cert", "add", "--clinic", "00000", "new.pem"], "", "no clinic 00000"),
        (&["admin", "clinic-cert", "add", "--clinic", CLINIC, "new.p12", "--password-stdin"], "wrong-password\n", "wrong password"),
        (&["admin", "clinic-cert", "add", "--clinic", CLINIC, "missing.pem"], "", "cannot read"),
        (&["admin", "clinic-cert", "revoke", "zz"], "", "64 hex digits"),
        (&["admin", "clinic", "add", "--id", CLINIC, "--name", "dup"], "", "already exists"),
        (&["admin", "clinic", "add", "--id", "bad id!", "--name", "x"], "", "letters, digits"),
        (&["admin", "clinic", "disable", "--id", "00000"], "", "no clinic 00000"),
        (&["admin", "anchor", "add", "--kind", "hpki", "new.pem", "--revocation", "none"], "", "not a CA certificate"),
        (&["admin", "anchor", "add", "--kind", "clinic", "garbage.pem"], "", "garbage"),
    ];
    for (args, stdin, expect) in cases {
        let args: Vec<&str> = args.iter().map(|a| if a.ends_with(".pem") || a.ends_with(".p12") { Box::leak(dir.join(a).display().to_string().into_boxed_str()) as &str } else { a }).collect();
        let (code, out) = cli(&app, &args, stdin).await;
        assert_ne!(code, 0, "{args:?} should fail: {out}");
        assert!(out.contains(expect), "{args:?}: expected {expect:?} in {out}");
    }
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before);
    assert_eq!(app.store().list_clinic_certs(None).await.unwrap().len(), certs_before);
    assert_eq!(audit_rows(&app).await, audit_before, "refused commands write no audit rows either");
    app.stop().await;
}

async fn admin_commands_work_and_are_audited(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = app.dir.path();
    let p12 = devpki::pkcs12(&app.pki.unregistered_client, &[app.pki.clinic_ca.cert_der()], "c", "right-password").unwrap();
    std::fs::write(dir.join("new.p12"), p12).unwrap();
    let p12_path = dir.join("new.p12").display().to_string();

    let (code, out) = cli(&app, &["admin", "clinic-cert", "add", "--clinic", CLINIC, &p12_path, "--password-stdin"], "right-password\n").await;
    assert_eq!(code, 0, "{out}");
    let fp = gateway::tls::fingerprint(&app.pki.unregistered_client.cert_der);
    assert!(out.contains(&fp));
    // The newly registered device now reaches the login page.
    let res = app.client(Some(&app.pki.unregistered_client)).get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let (code, out) = cli(&app, &["admin", "user", "add", "--clinic", CLINIC, "--login-id", "doctor2", "--name", "新井 次郎", "--medical-reg-no", "777777"], "").await;
    assert_eq!(code, 0, "{out}");
    let password = out.lines().find_map(|l| l.strip_prefix("password: ")).expect("generated password printed").to_owned();
    assert_eq!(app.login(&app.clinic_client(), "doctor2", &password).await.status(), 303);

    let (code, out) = cli(&app, &["admin", "user", "list", "--clinic", CLINIC], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("doctor2\tdoctor\tenabled\t777777"), "{out}");
    assert!(!out.contains("argon2"), "hashes are never printed");

    let (code, _) = cli(&app, &["admin", "clinic", "disable", "--id", CLINIC], "").await;
    assert_eq!(code, 0);
    assert_eq!(app.clinic_client().get(app.url("/login")).send().await.unwrap().status(), 403);

    let (code, out) = cli(&app, &["admin", "audit", "verify"], "").await;
    assert_eq!(code, 0, "{out}");
    let tail = app.store().audit_tail(10).await.unwrap();
    let actions: Vec<&str> = tail.iter().filter_map(|r| r.detail["action"].as_str()).collect();
    assert!(actions.contains(&"clinic.disable") && actions.contains(&"user.add"), "{actions:?}");

    // Tampering makes `audit verify` fail with the row number.
    app.store().execute_unchecked("UPDATE audit_log SET detail = '{}' WHERE seq = 2").await.unwrap();
    let (code, out) = cli(&app, &["admin", "audit", "verify"], "").await;
    assert_eq!(code, 1);
    assert!(out.contains("row 2 was modified"), "{out}");
    app.stop().await;
}

async fn every_command_has_help(db: Db) {
    let app = TestApp::spawn(db).await;
    for args in [
        &["--help"][..],
        &["admin", "--help"],
        &["admin", "clinic", "add", "--help"],
        &["admin", "clinic-cert", "add", "--help"],
        &["admin", "user", "add", "--help"],
        &["admin", "anchor", "add", "--help"],
        &["admin", "audit", "verify", "--help"],
        &["demo", "--help"],
    ] {
        let (code, out) = cli(&app, args, "").await;
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    app.stop().await;
}

db_tests!(refused_commands_say_why_and_change_nothing, admin_commands_work_and_are_audited, every_command_has_help);
