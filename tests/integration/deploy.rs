//! What containers rely on (decision 0014): `gateway healthcheck`, the database URL from a
//! private file, and `database.require = "postgres"` stopping every command that would otherwise
//! run on an SQLite file of its own. The real CLI, in-process, against a real gateway.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::helpers::*;

async fn run(args: &[&str]) -> (i32, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = args.iter().map(|s| (*s).to_owned()).collect();
    let code = gateway::cli::run(argv, &mut out, &mut err, &mut std::io::empty()).await;
    (code, String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap())
}

/// Writes `text` to `dir/name` with permission bits `mode`; returns the path as a string.
fn write(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let mut app = TestApp::builder(Db::Sqlite).with_config(|c| c.server.shutdown_drain_secs = 3).spawn().await;
    let readyz = format!("http://127.0.0.1:{}/readyz", app.ops_port);
    let (code, out) = run(&["gateway", "healthcheck", "--url", &readyz]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&readyz) && out.contains("200"), "{out}");

    // Without --url: /readyz on the configured ops listener, over loopback when it listens on
    // every address (as in a container).
    let config = write(
        app.dir.path(),
        "healthcheck.toml",
        &format!("[ops]\nlisten = \"0.0.0.0:{}\"\nallow_external = true\n", app.ops_port),
        0o644,
    );
    let (code, out) = run(&["gateway", "--config", &config, "healthcheck"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&readyz), "{out}");

    // Bad input gets a clear error.
    for (args, says) in [
        (vec!["--url", "https://127.0.0.1:9090/readyz"], "must be an http:// URL"),
        (vec!["--url", "not a url"], "is not a URL"),
        (vec!["--url", readyz.as_str(), "--timeout-ms", "0"], "--timeout-ms must be between"),
    ] {
        let (code, out) = run(&[&["gateway", "healthcheck"][..], &args].concat()).await;
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }

    // Nothing listening: not ready, with the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out) = run(&["gateway", "healthcheck", "--url", &format!("http://127.0.0.1:{closed}/readyz")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready") && out.to_lowercase().contains("refused"), "{out}");

    // SIGTERM: /readyz fails at once (the drain has begun), and so does the healthcheck.
    app.begin_stop();
    let mut unready = None;
    for _ in 0..50 {
        let (code, out) = run(&["gateway", "healthcheck", "--url", &readyz]).await;
        if code != 0 {
            unready = Some((code, out));
            break;
        }
        tokio::task::yield_now().await;
    }
    let (code, out) = unready.expect("the healthcheck fails once shutdown begins");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("503"), "{out}");
    app.stop().await;
}

crate::helpers::db_tests!(the_database_url_comes_from_a_private_file, database_require_postgres_refuses_to_start_on_sqlite);

async fn the_database_url_comes_from_a_private_file(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = app.dir.path();
    let url_file = write(dir, "database_url", &format!("{}\n", app.config.database.url), 0o600);
    let config = |name: &str, extra: &str| {
        write(
            dir,
            name,
            &format!(
                "data_dir = {:?}\n[database]\nurl_file = {url_file:?}\n{extra}",
                app.config.data_dir.display().to_string()
            ),
            0o644,
        )
    };
    let path = config("url-file.toml", "");
    let (code, out) = run(&["gateway", "--config", &path, "admin", "clinic", "list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(CLINIC), "the gateway's own database: {out}");
    let (code, out) = run(&["gateway", "--config", &path, "migrate"]).await;
    assert_eq!(code, 0, "{out}");

    // Value and file both: refused, whichever would have won.
    let both = config("both.toml", &format!("url = {:?}\n", app.config.database.url));
    let (code, out) = run(&["gateway", "--config", &both, "admin", "clinic", "list"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("database.url and database.url_file are both set"), "{out}");

    // Readable by others: refused, naming the file and the fix; nothing is written.
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = run(&["gateway", "--config", &path, "admin", "clinic", "add", "--id", "77777", "--name", "x"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&url_file) && out.contains("chmod 600"), "{out}");
    assert!(!app.store().list_clinics().await.unwrap().iter().any(|c| c.id == "77777"));
    let (code, out) = run(&["gateway", "--config", &path, "serve"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chmod 600"), "{out}");
    app.stop().await;
}

async fn database_require_postgres_refuses_to_start_on_sqlite(db: Db) {
    let app = TestApp::spawn(db).await;
    let dir = app.dir.path();
    // No URL at all: every command refuses before it creates anything in the data directory.
    let fresh = dir.join("replica-data");
    let no_url = write(
        dir,
        "no-url.toml",
        &format!("data_dir = {:?}\n[database]\nrequire = \"postgres\"\n", fresh.display().to_string()),
        0o644,
    );
    for command in [&["migrate"][..], &["serve"], &["admin", "clinic", "list"]] {
        let (code, out) = run(&[&["gateway", "--config", &no_url][..], command].concat()).await;
        assert_eq!(code, 1, "{command:?}: {out}");
        assert!(
            out.contains("database.require = \"postgres\"") && out.contains("gateway.db") && out.contains("refusing to start"),
            "{command:?}: {out}"
        );
    }
    assert!(!fresh.exists(), "no SQLite file, no key file, no data directory");

    // The URL from a file: PostgreSQL runs, SQLite is refused by every command.
    let url_file = write(dir, "database_url", &format!("{}\n", app.config.database.url), 0o600);
    let with_file = write(
        dir,
        "require.toml",
        &format!(
            "data_dir = {:?}\n[database]\nrequire = \"postgres\"\nurl_file = {url_file:?}\n",
            app.config.data_dir.display().to_string()
        ),
        0o644,
    );
    for command in [&["migrate"][..], &["admin", "clinic", "list"], &["serve"]] {
        if db == Db::Postgres && command == ["serve"] {
            continue; // it would serve until stopped
        }
        let (code, out) = run(&[&["gateway", "--config", &with_file][..], command].concat()).await;
        match db {
            Db::Postgres => assert_eq!(code, 0, "{command:?}: {out}"),
            Db::Sqlite => {
                assert_eq!(code, 1, "{command:?}: {out}");
                assert!(out.contains("is a SQLite one") && out.contains(&url_file), "{command:?}: {out}");
            }
        }
    }
    app.stop().await;
}
