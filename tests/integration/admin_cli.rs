//! The real `gateway admin` CLI, driven in-process: bad input gets a clear error and writes nothing.

use std::io::Cursor;

use crate::helpers::*;

/// Runs `gateway --config <app config> <args>` and returns (exit code, standard output followed
/// by standard error).
pub(crate) async fn cli(app: &TestApp, args: &[&str], stdin: &str) -> (i32, String) {
    let (code, out, err) = cli_streams(app, args, stdin).await;
    (code, out + &err)
}

/// Like [`cli`], with standard output and standard error apart.
pub(crate) async fn cli_streams(app: &TestApp, args: &[&str], stdin: &str) -> (i32, String, String) {
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
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut Cursor::new(stdin.as_bytes().to_vec())).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
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

/// Runs `gateway --config <dir>/<name>.toml <args>` with that configuration text; returns the
/// exit code, standard output and standard error.
async fn cli_with_config(dir: &std::path::Path, toml: &str, args: &[&str]) -> (i32, String, String) {
    let path = dir.join("operator.toml");
    std::fs::write(&path, toml).unwrap();
    let mut argv = vec!["gateway".to_owned(), "--config".to_owned(), path.display().to_string()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut std::io::empty()).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

/// Results go to standard output and nothing else does; each error is said once.
async fn results_go_to_stdout_and_errors_to_stderr(db: Db) {
    let app = TestApp::spawn(db).await;
    let (code, out, err) = cli_streams(&app, &["admin", "clinic", "add", "--id", "bad id!", "--name", "x"], "").await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("error: ") && err.matches("letters, digits").count() == 1, "{err}");
    // A usage error: standard error, clap's exit code.
    let (code, out, err) = cli_streams(&app, &["admin", "user", "add", "--clinic", CLINIC, "--type", "nurse"], "").await;
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("unknown user type \"nurse\"") && err.contains("doctor, staff"), "{out}{err}");
    // Help is a result.
    let (code, out, err) = cli_streams(&app, &["admin", "anchor", "add", "--help"], "").await;
    assert!(code == 0 && out.contains("Usage:") && out.contains("clinic, service, hpki, jpki") && err.is_empty(), "{out}{err}");

    // `audit export` to standard output: the rows only there, the count beside them.
    let rows = audit_rows(&app).await;
    let (code, out, err) = cli_streams(&app, &["admin", "audit", "export"], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(i64::try_from(out.lines().count()).unwrap(), rows);
    for line in out.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["seq"].as_i64().is_some(), "{line}");
    }
    assert_eq!(err, format!("exported {rows} audit rows\n"));

    // To a file: an existing file is kept unless --force.
    let file = app.dir.path().join("audit.jsonl");
    let file_arg = file.display().to_string();
    std::fs::write(&file, "keep me\n").unwrap();
    let (code, out, err) = cli_streams(&app, &["admin", "audit", "export", "--output", &file_arg], "").await;
    assert_eq!(code, 1);
    assert!(out.is_empty() && err.contains("already exists") && err.contains("--force") && err.contains(&file_arg), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
    let (code, out, err) = cli_streams(&app, &["admin", "audit", "export", "--output", &file_arg, "--force"], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("exported {rows} audit rows to {file_arg}\n"));
    assert_eq!(i64::try_from(std::fs::read_to_string(&file).unwrap().lines().count()).unwrap(), rows);
    std::fs::remove_file(&file).unwrap();
    let (code, _, err) = cli_streams(&app, &["admin", "audit", "export", "--output", &file_arg], "").await;
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "audit rows are the owner's only");
    // Exporting writes no audit row.
    assert_eq!(audit_rows(&app).await, rows);
    app.stop().await;
}

/// Admin commands never create or upgrade a database: they say what to run instead.
async fn admin_commands_never_migrate(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = fresh_database(db, dir.path()).await;
    let toml = format!("data_dir = {:?}\n[database]\nurl = {url:?}\n", dir.path().display().to_string());
    let config_file = dir.path().join("operator.toml").display().to_string();
    if db == Db::Sqlite {
        let (code, out, err) = cli_with_config(dir.path(), &toml, &["admin", "clinic", "list"]).await;
        assert_eq!(code, 1);
        assert!(out.is_empty() && err.contains("no database at") && err.contains(&config_file), "{err}");
        assert!(!dir.path().join("gateway.db").exists(), "admin commands create no database");
    }
    let store = gateway::store::Store::connect(&url, 1).await.unwrap();
    use gateway::store::SchemaStatus;
    assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Empty);
    let (code, _, err) = cli_with_config(dir.path(), &toml, &["admin", "clinic", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no schema yet") && err.contains("gateway migrate") && err.matches("error").count() == 1, "{err}");
    assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Empty, "nothing was migrated");

    // `gateway migrate` brings it up to date; then the same command runs.
    let (code, out, err) = cli_with_config(dir.path(), &toml, &["migrate"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrations applied"), "{out}");
    assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Current);
    let (code, _, err) = cli_with_config(dir.path(), &toml, &["admin", "clinic", "list"]).await;
    assert_eq!(code, 0, "{err}");

    // One migration behind (the newest one's record set aside): refused, and still behind.
    let last = sqlx_max_version(&url).await;
    store
        .execute_unchecked(&format!("CREATE TABLE set_aside AS SELECT * FROM _sqlx_migrations WHERE version = {last}"))
        .await
        .unwrap();
    store.execute_unchecked(&format!("DELETE FROM _sqlx_migrations WHERE version = {last}")).await.unwrap();
    let (code, _, err) = cli_with_config(dir.path(), &toml, &["admin", "user", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("1 migration behind") && err.contains("run `gateway migrate`"), "{err}");
    assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Behind { pending: 1 });
    store.execute_unchecked("INSERT INTO _sqlx_migrations SELECT * FROM set_aside").await.unwrap();
    assert_eq!(store.schema_status().await.unwrap(), SchemaStatus::Current);

    // A database a newer gateway migrated: refused too.
    store.execute_unchecked(&format!("UPDATE _sqlx_migrations SET version = 99999 WHERE version = {last}")).await.unwrap();
    let (code, _, err) = cli_with_config(dir.path(), &toml, &["admin", "clinic", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("newer gateway") && err.contains("99999"), "{err}");
    store.close().await;
    if let Some((admin_url, name)) = pg {
        drop_database(&admin_url, &name).await;
    }
}

async fn sqlx_max_version(url: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let v = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let v = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    }
}

/// Without a configuration, admin commands name the database they looked for and create none.
#[tokio::test]
async fn without_a_configuration_admin_names_the_file_it_looked_for() {
    let default = std::path::Path::new("data").join("gateway.db");
    assert!(!default.exists(), "a leftover {} would change this test", default.display());
    let argv = ["gateway", "admin", "clinic", "list"].map(str::to_owned).to_vec();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut std::io::empty()).await;
    let err = String::from_utf8(err).unwrap();
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("no configuration given") && err.contains("data/gateway.db") && err.contains("--config"), "{err}");
    assert!(!default.exists() && !std::path::Path::new("data").exists(), "nothing was created");
}

/// An unreachable PostgreSQL is named with its cause, once, not as "pool timed out".
#[tokio::test]
async fn unreachable_postgres_is_named_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let toml = "[database]\nurl = \"postgres://ninsho:secret-password@127.0.0.1:1/ninsho\"\n";
    let (code, out, err) = cli_with_config(dir.path(), toml, &["admin", "clinic", "list"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("cannot connect to PostgreSQL at 127.0.0.1:1 (database ninsho)"), "{err}");
    assert!(err.to_lowercase().matches("connection refused").count() == 1, "{err}");
    assert!(!err.contains("pool timed out") && !err.contains("secret-password"), "{err}");
}

/// `serve` checks its certificate and key before it binds a port or touches the database, and
/// names the files.
#[tokio::test]
async fn serve_checks_the_tls_files_before_anything_else() {
    gateway::install_crypto_provider();
    let clock = gateway::clock::ManualClock::starting_now();
    let pki = TestPki::new(clock.now());
    let dir = tempfile::tempdir().unwrap();
    let (cert, wrong_key) = (dir.path().join("server.pem"), dir.path().join("other.key"));
    std::fs::write(&cert, &pki.server.cert_pem).unwrap();
    std::fs::write(&wrong_key, &pki.clinic_client.key_pem).unwrap();
    // A port that is free now: taking it would show that something was bound.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = gateway::config::Config { data_dir: dir.path().to_owned(), ..Default::default() };
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.ops.listen = "127.0.0.1:0".parse().unwrap();
    config.tls.cert = cert.clone();
    for (key, expect) in [(wrong_key.clone(), "does not belong to the certificate"), (dir.path().join("missing.key"), "missing.key")] {
        config.tls.key = key.clone();
        let error = match gateway::Application::build(config.clone(), std::sync::Arc::new(clock.clone())).await {
            Ok(_) => panic!("started with {}", key.display()),
            Err(e) => gateway::cli::error_message(&e),
        };
        assert!(error.contains(expect) && error.contains("tls.key"), "{error}");
        assert!(!dir.path().join("gateway.db").exists(), "the database was not touched: {error}");
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was not bound");
    }
}

/// A doctor locked out (by anyone at a clinic device) is unlocked by an operator, who can see
/// which device the failed attempts came through.
async fn operator_unlocks_a_locked_out_doctor(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    let max = app.config.login.max_failures;
    for _ in 0..max {
        app.login(&client, DOCTOR_LOGIN, "wrong password entirely").await;
    }
    assert_ne!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303, "locked");
    let device = gateway::tls::fingerprint(&app.pki.clinic_client.cert_der);
    let tail = app.store().audit_tail(100).await.unwrap();
    let locked: Vec<_> = tail.iter().filter(|r| r.event == "login_locked").collect();
    assert!(!locked.is_empty() && locked.iter().all(|r| r.detail["device"] == device.as_str()), "{locked:?}");
    assert!(tail.iter().filter(|r| r.event == "login" && r.outcome == "failure").all(|r| r.detail["device"] == device.as_str()));

    let unlock = ["admin", "user", "unlock", "--clinic", CLINIC, "--login-id", DOCTOR_LOGIN];
    let (code, out, err) = cli_streams(&app, &unlock, "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("unlocked {DOCTOR_LOGIN} (was locked until ")) && out.contains("JST"), "{out}");
    assert_eq!(app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.status(), 303, "unlocked");
    let doctor = app.store().user_by_login(CLINIC, DOCTOR_LOGIN).await.unwrap();
    let tail = app.store().audit_tail(10).await.unwrap();
    assert!(
        tail.iter().any(|r| r.detail["action"] == "user.unlock" && r.detail["target"] == format!("{CLINIC}/{}", doctor.id).as_str()),
        "{tail:?}"
    );
    // Nothing to unlock: said so, nothing audited.
    let rows = audit_rows(&app).await;
    let (code, out, _) = cli_streams(&app, &unlock, "").await;
    assert!(code == 0 && out.contains("is not locked") && out.contains("nothing changed"), "{out}");
    assert_eq!(audit_rows(&app).await, rows);
    let (code, _, err) = cli_streams(&app, &["admin", "user", "unlock", "--clinic", CLINIC, "--login-id", "nobody"], "").await;
    assert!(code == 1 && err.contains("no user nobody"), "{err}");
    app.stop().await;
}

/// A revoked clinic certificate is reinstated with `clinic-cert restore` (audited), not re-added.
async fn revoked_clinic_certificate_is_restored(db: Db) {
    let app = TestApp::spawn(db).await;
    let fp = gateway::tls::fingerprint(&app.pki.clinic_client.cert_der);
    let (code, _, err) = cli_streams(&app, &["admin", "clinic-cert", "revoke", &fp], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.clinic_client().get(app.url("/login")).send().await.unwrap().status(), 403);
    let pem = app.dir.path().join("clinic.pem");
    std::fs::write(&pem, &app.pki.clinic_client.cert_pem).unwrap();
    let (code, _, err) = cli_streams(&app, &["admin", "clinic-cert", "add", "--clinic", CLINIC, &pem.display().to_string()], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("was revoked at") && err.contains(&format!("clinic-cert restore {fp}")), "{err}");
    let (code, out, err) = cli_streams(&app, &["admin", "clinic-cert", "restore", &fp], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("restored {fp} (clinic {CLINIC}, valid until ")), "{out}");
    assert_eq!(app.clinic_client().get(app.url("/login")).send().await.unwrap().status(), 200);
    let tail = app.store().audit_tail(5).await.unwrap();
    assert!(tail.iter().any(|r| r.detail["action"] == "clinic_cert.restore"), "{tail:?}");
    let (code, _, err) = cli_streams(&app, &["admin", "clinic-cert", "restore", &fp], "").await;
    assert!(code == 1 && err.contains("not revoked"), "{err}");
    let (code, out, _) = cli_streams(&app, &["admin", "clinic-cert", "list", "--clinic", CLINIC], "").await;
    assert!(code == 0 && out.contains(&format!("{fp}\tactive\tuntil ")) && out.contains(" JST\t"), "{out}");
    app.stop().await;
}

db_tests!(
    refused_commands_say_why_and_change_nothing,
    admin_commands_work_and_are_audited,
    every_command_has_help,
    results_go_to_stdout_and_errors_to_stderr,
    admin_commands_never_migrate,
    operator_unlocks_a_locked_out_doctor,
    revoked_clinic_certificate_is_restored,
);
