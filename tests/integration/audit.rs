//! The hash-chained audit log (docs/design.md §3.9): it verifies, and tampering is found and named.

use gateway::store::{AuditKey, AuditRecord, AuditVerification, Store, audit_link};

use crate::admin_cli::cli;
use crate::helpers::*;

/// Produces a few audit rows through the real login path.
async fn app_with_events(db: Db) -> TestApp {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    app.login(&client, DOCTOR_LOGIN, "wrong password").await;
    app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    client.post(app.url("/logout")).header("origin", app.origin()).send().await.unwrap();
    app
}

async fn intact_chain_verifies(db: Db) {
    let app = app_with_events(db).await;
    let AuditVerification::Intact { rows, .. } = app.store().audit_verify().await.unwrap() else { panic!("tampered") };
    assert!(rows >= 10, "seed admin actions and logins are all audited, got {rows}");
    let tail = app.store().audit_tail(3).await.unwrap();
    let events: Vec<&str> = tail.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["logout", "login", "login"]);
    // Personal data is limited to ids: no names or login IDs in the rows.
    let text = serde_json::to_string(&tail).unwrap();
    assert!(!text.contains(DOCTOR_LOGIN) && !text.contains("山田"), "{text}");
    app.stop().await;
}

async fn a_modified_row_is_found(db: Db) {
    let app = app_with_events(db).await;
    app.store().execute_unchecked("UPDATE audit_log SET outcome = 'tampered' WHERE seq = 3").await.unwrap();
    assert_eq!(app.store().audit_verify().await.unwrap(), AuditVerification::Modified { seq: 3 });
    app.stop().await;
}

async fn a_deleted_row_is_found(db: Db) {
    let app = app_with_events(db).await;
    app.store().execute_unchecked("DELETE FROM audit_log WHERE seq = 4").await.unwrap();
    assert_eq!(app.store().audit_verify().await.unwrap(), AuditVerification::Missing { seq: 5, expected: 4 });
    app.stop().await;
}

async fn a_removed_tail_is_found(db: Db) {
    let app = app_with_events(db).await;
    let AuditVerification::Intact { rows, .. } = app.store().audit_verify().await.unwrap() else { panic!() };
    app.store().execute_unchecked(&format!("DELETE FROM audit_log WHERE seq = {rows}")).await.unwrap();
    assert_eq!(
        app.store().audit_verify().await.unwrap(),
        AuditVerification::Truncated { last_seq: rows - 1, head_seq: rows }
    );
    app.stop().await;
}

async fn an_inserted_row_is_found(db: Db) {
    let app = app_with_events(db).await;
    // Make room at seq 3 and forge a row there whose own hash is consistent: only the link to
    // the previous row can give it away.
    let store = app.store();
    store.execute_unchecked("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3").await.unwrap();
    store.execute_unchecked("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000").await.unwrap();
    store
        .execute_unchecked(
            "INSERT INTO audit_log (seq, created_at, event, outcome, clinic_id, user_id, detail, prev_hash, hash)
             SELECT 3, created_at, event, outcome, clinic_id, user_id, detail, hash, hash FROM audit_log WHERE seq = 2",
        )
        .await
        .unwrap();
    let v = store.audit_verify().await.unwrap();
    assert!(matches!(v, AuditVerification::Modified { seq: 3 } | AuditVerification::BrokenLink { seq: 3 }), "{v:?}");
    app.stop().await;
}

async fn export_writes_every_row_as_json_lines(db: Db) {
    let app = app_with_events(db).await;
    let admin = gateway::admin::Admin { store: app.store(), now: app.clock_now() };
    let mut out = Vec::new();
    let last = admin.audit_export(&mut out).await.unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as i64, last);
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines.iter().all(|l| l["hash"].as_str().unwrap().len() == 64));
    app.stop().await;
}

async fn a_batch_chains_like_single_appends(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = app.clock_now();
    let events: Vec<_> = (0..700)
        .map(|i| {
            let event = gateway::store::AuditEvent::Admin { action: "test.batch", target: format!("row-{i}") };
            (event, now + i)
        })
        .collect();
    // Larger than one INSERT chunk, so the batch spans several statements in one transaction.
    app.store().audit_batch(&events[..650]).await.unwrap();
    app.store().audit_batch(&events[650..]).await.unwrap();
    let AuditVerification::Intact { rows, .. } = app.store().audit_verify().await.unwrap() else { panic!("tampered") };
    assert!(rows >= 700);
    let tail = app.store().audit_tail(2).await.unwrap();
    assert_eq!(tail[0].detail["target"], "row-699");
    assert_eq!(tail[1].detail["target"], "row-698");
    app.stop().await;
}

/// Appends racing from two instances are each chained once, in one intact chain, and each is
/// chained before its caller is answered: a plain count of `audit_log` (no reader that chains
/// first) already holds every row, and nothing is left pending (decision 0022).
async fn concurrent_appends_of_two_instances_are_each_chained_once_before_the_answer(db: Db) {
    let app = TestApp::spawn(db).await;
    let other = match db {
        Db::Postgres => app.other_store(4).await,
        // One SQLite file has one writer: the second "instance" is a clone.
        Db::Sqlite => app.store().clone(),
    };
    let before = app.store().audit_head().await.unwrap().rows;
    let now = app.clock_now();
    let appends: Vec<_> = (0..60).map(|i| {
        let store = if i % 2 == 0 { app.store().clone() } else { other.clone() };
        tokio::spawn(async move {
            let event = gateway::store::AuditEvent::Admin { action: "test.race", target: format!("race-{i}") };
            store.audit_batch(&[(event.clone(), now), (event, now + 1)]).await
        })
    }).collect();
    for done in appends {
        done.await.unwrap().unwrap();
    }
    let count = |sql: &'static str| {
        let url = app.config.database.url.clone();
        async move { raw_count(&url, sql).await }
    };
    assert_eq!(count("SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%race-%'").await, 120);
    if db == Db::Postgres {
        assert_eq!(count("SELECT COUNT(*) FROM audit_pending").await, 0);
    }
    let AuditVerification::Intact { rows, .. } = app.store().audit_verify().await.unwrap() else { panic!("tampered") };
    assert_eq!(rows, before + 120);
    // Each append's two rows, in its own order.
    let rows = all_rows(app.store()).await;
    for i in 0..60 {
        let target = format!("race-{i}");
        let mine: Vec<i64> = rows.iter().filter(|r| r.detail["target"] == target).map(|r| r.at).collect();
        assert_eq!(mine, [now, now + 1], "{target}");
    }
    app.stop().await;
}

/// Rows an instance queued but did not chain (it stopped between its commit and the chaining)
/// are chained by the next reader of the log, after what was chained before; a log whose
/// pending rows cannot be chained (no audit key) is refused, not half-read.
async fn rows_left_pending_are_chained_by_the_next_reader(db: Db) {
    if db == Db::Sqlite {
        // SQLite chains in the writing transaction: nothing is ever pending there.
        return;
    }
    let app = app_with_events(db).await;
    let store = app.store();
    let before = store.audit_head().await.unwrap().rows;
    store
        .execute_unchecked(
            "INSERT INTO audit_pending (created_at, event, outcome, clinic_id, user_id, detail)
             VALUES (5, 'admin', 'success', NULL, NULL, '{\"action\":\"left\",\"target\":\"a\"}'),
                    (6, 'admin', 'success', NULL, NULL, '{\"action\":\"left\",\"target\":\"b\"}')",
        )
        .await
        .unwrap();
    // Without the audit key they cannot be chained: the reader is refused and they stay.
    let keyless = Store::connect(&app.config.database.url, 2).await.unwrap();
    let err = keyless.audit_verify().await.unwrap_err();
    assert!(err.to_string().contains("no audit key"), "{err}");
    assert_eq!(raw_count(&app.config.database.url, "SELECT COUNT(*) FROM audit_pending").await, 2);
    keyless.close().await;

    let AuditVerification::Intact { rows, .. } = store.audit_verify().await.unwrap() else { panic!("tampered") };
    assert_eq!(rows, before + 2);
    let tail = store.audit_tail(2).await.unwrap();
    assert_eq!((tail[0].at, tail[0].detail["target"].as_str()), (6, Some("b")));
    assert_eq!((tail[1].at, tail[1].detail["target"].as_str()), (5, Some("a")));
    assert_eq!(raw_count(&app.config.database.url, "SELECT COUNT(*) FROM audit_pending").await, 0);
    app.stop().await;
}

/// `SELECT COUNT(*) …` on its own connection, past every store.
async fn raw_count(url: &str, sql: &'static str) -> i64 {
    use sqlx::Connection as _;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

/// Every row as stored, in order.
async fn all_rows(store: &Store) -> Vec<AuditRecord> {
    let mut rows = Vec::new();
    store
        .audit_export(|r| {
            rows.push(r);
            Ok(())
        })
        .await
        .unwrap();
    rows
}

/// A byte-string literal in the store's SQL dialect.
fn blob(store: &Store, bytes: &[u8]) -> String {
    match store.backend_name() {
        "sqlite" => format!("X'{}'", hex(bytes)),
        _ => format!("decode('{}', 'hex')", hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// What someone who can write the database does: edits rows from `from` on with `edit`, then
/// recomputes every following link and the head, row by row, with `key` (`None`: plain SHA-256,
/// the scheme before keyed chaining).
async fn rewrite_from(store: &Store, from: i64, key: Option<&AuditKey>, edit: impl Fn(&mut AuditRecord)) {
    let rows = all_rows(store).await;
    let mut prev = if from == 1 { vec![0; 32] } else { unhex(&rows[from as usize - 2].hash) };
    for mut r in rows.into_iter().filter(|r| r.seq >= from) {
        edit(&mut r);
        let detail = r.detail.to_string();
        let link = audit_link(
            key,
            &prev,
            (r.seq, r.at, &r.event, &r.outcome, r.clinic_id.as_deref(), r.user_id.as_deref(), &detail),
        );
        store
            .execute_unchecked(&format!(
                "UPDATE audit_log SET detail = '{}', prev_hash = {}, hash = {} WHERE seq = {}",
                detail.replace('\'', "''"),
                blob(store, &prev),
                blob(store, &link),
                r.seq
            ))
            .await
            .unwrap();
        prev = link;
    }
    store.execute_unchecked(&format!("UPDATE audit_head SET hash = {} WHERE id = 1", blob(store, &prev))).await.unwrap();
}

fn tamper(r: &mut AuditRecord) {
    if r.seq == 5 {
        r.detail = serde_json::json!({ "action": "clinic.add", "target": "forged" });
    }
}

async fn a_rewrite_without_the_audit_key_is_found(db: Db) {
    let app = app_with_events(db).await;
    let store = app.store();
    // Recomputed as the plain SHA-256 chain would have been: the keyed link of row 5 gives it away.
    rewrite_from(store, 5, None, tamper).await;
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::Modified { seq: 5 });
    // Recomputed with a key, but not the audit key.
    let wrong = AuditKey::from_bytes(&[7; 32]).unwrap();
    rewrite_from(store, 5, Some(&wrong), tamper).await;
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::Modified { seq: 5 });
    let (code, out) = cli(&app, &["admin", "audit", "verify"], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("row 5 was modified"), "{out}");
    app.stop().await;
}

async fn a_rewrite_with_the_audit_key_is_found_by_an_earlier_checkpoint(db: Db) {
    let app = app_with_events(db).await;
    let store = app.store();
    let (code, line) = cli(&app, &["admin", "audit", "checkpoint"], "").await;
    assert_eq!(code, 0, "{line}");
    let checkpoint: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let AuditVerification::Intact { rows, keyed_from } = store.audit_verify().await.unwrap() else { panic!() };
    assert_eq!((checkpoint["rows"].as_i64(), keyed_from), (Some(rows), Some(1)));
    assert_eq!(checkpoint["head"].as_str().unwrap().len(), 64);
    let mode = std::fs::metadata(app.dir.path().join("audit-checkpoint-key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    let saved = app.dir.path().join("checkpoint.jsonl");
    std::fs::write(&saved, &line).unwrap();
    let saved = saved.display().to_string();

    // Rows appended later leave the checkpoint's prefix as it was.
    let client = app.clinic_client();
    app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    let (code, out) = cli(&app, &["admin", "audit", "checkpoint", "--verify", &saved], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("checkpoint matches: the chain's first {rows} rows")), "{out}");

    // With the audit key the rewrite passes `audit verify`: only the checkpoint can tell.
    let key = app.config.audit_key().unwrap();
    rewrite_from(store, 5, Some(&key), tamper).await;
    assert!(matches!(store.audit_verify().await.unwrap(), AuditVerification::Intact { .. }));
    let (code, out) = cli(&app, &["admin", "audit", "checkpoint", "--verify", &saved], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does NOT match") && out.contains("no longer produces the checkpoint's head link"), "{out}");

    // An altered checkpoint does not verify either.
    let forged = line.replace(&format!("\"rows\":{rows}"), &format!("\"rows\":{}", rows - 1));
    std::fs::write(app.dir.path().join("forged.jsonl"), forged).unwrap();
    let forged = app.dir.path().join("forged.jsonl").display().to_string();
    let (code, out) = cli(&app, &["admin", "audit", "checkpoint", "--verify", &forged], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
    app.stop().await;
}

async fn an_old_plain_log_is_keyed_by_an_explicit_audited_rekey(db: Db) {
    let app = app_with_events(db).await;
    let store = app.store();
    // The log as an older version left it: every row plain SHA-256, no keyed segment.
    store.execute_unchecked("UPDATE audit_head SET keyed_from = NULL").await.unwrap();
    rewrite_from(store, 1, None, |_| {}).await;
    let AuditVerification::Intact { rows: old, keyed_from: None } = store.audit_verify().await.unwrap() else { panic!() };
    let (code, out) = cli(&app, &["admin", "audit", "verify"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("rows 1–{old} plain SHA-256")) && out.contains("audit rekey"), "{out}");

    // Until an operator rekeys, nothing is appended (and so nothing plain is ever added)...
    let err = store.audit(&gateway::store::AuditEvent::Admin { action: "test", target: "x".into() }, app.clock_now()).await;
    assert!(err.unwrap_err().to_string().contains("gateway admin audit rekey"));
    let (code, out) = cli(&app, &["admin", "clinic", "add", "--id", "77777", "--name", "x"], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit rekey"), "{out}");
    assert!(store.list_clinics().await.unwrap().iter().all(|c| c.id != "77777"), "a refused audit row refuses the change");
    assert_eq!(store.audit_head().await.unwrap().rows, old);
    // ... and a gateway does not start.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = std::sync::Arc::new(gateway::clock::ManualClock::starting_now());
    let mut config = app.config.clone();
    config.ops.listen = "127.0.0.1:0".parse().unwrap();
    let start = gateway::Application::with_parts(config, store.clone(), clock, listener).await;
    assert!(start.err().unwrap().to_string().contains("gateway admin audit rekey"));

    let (code, out) = cli(&app, &["admin", "audit", "rekey"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("audit chain keyed from row {}", old + 1)), "{out}");
    let tail = store.audit_tail(1).await.unwrap();
    assert_eq!(tail[0].event, "audit_chain_keyed");
    assert_eq!(tail[0].detail["previous_rows"], old);
    assert_eq!(tail[0].detail["previous_head"].as_str().unwrap(), all_rows(store).await[old as usize - 1].hash);
    // Once only.
    let (code, out) = cli(&app, &["admin", "audit", "rekey"], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("already keyed from row {}", old + 1)), "{out}");

    // New rows are keyed after it; verify names both segments.
    let client = app.clinic_client();
    app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await;
    let AuditVerification::Intact { rows, keyed_from } = store.audit_verify().await.unwrap() else { panic!() };
    assert_eq!(keyed_from, Some(old + 1));
    assert!(rows > old + 1);
    let (code, out) = cli(&app, &["admin", "audit", "verify"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("rows 1–{old} plain SHA-256, rows {}–{rows} keyed HMAC-SHA256", old + 1)), "{out}");

    // The plain segment is still checked, and the boundary cannot be moved.
    store.execute_unchecked(&format!("UPDATE audit_head SET keyed_from = {old}")).await.unwrap();
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::KeyedStartMoved { seq: old });
    store.execute_unchecked(&format!("UPDATE audit_head SET keyed_from = {}", old + 2)).await.unwrap();
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::Modified { seq: old + 1 });
    store.execute_unchecked("UPDATE audit_head SET keyed_from = NULL").await.unwrap();
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::Modified { seq: old + 1 });
    store.execute_unchecked(&format!("UPDATE audit_head SET keyed_from = {}", old + 1)).await.unwrap();
    store.execute_unchecked("UPDATE audit_log SET outcome = 'failure' WHERE seq = 2").await.unwrap();
    assert_eq!(store.audit_verify().await.unwrap(), AuditVerification::Modified { seq: 2 });
    app.stop().await;
}

async fn the_audit_key_is_read_from_the_configuration_or_a_private_file(db: Db) {
    use std::os::unix::fs::PermissionsExt as _;
    let app = TestApp::spawn(db).await;
    // The default: `<data_dir>/audit-key`, made on first start, owner-only.
    let default = app.dir.path().join("audit-key");
    assert_eq!(std::fs::metadata(&default).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&default).unwrap().trim().len(), 44, "base64 of 32 bytes");
    let row = (1, 2, "e", "success", None, None, "{}");
    let link = |k: &AuditKey| audit_link(Some(k), &[0; 32], row);
    let running = link(&app.config.audit_key().unwrap());

    // The same key given as the value (what GATEWAY_AUDIT__KEY sets) or another file.
    let text = std::fs::read_to_string(&default).unwrap();
    let mut c = app.config.clone();
    c.audit.key = text.trim().to_owned();
    assert_eq!(link(&c.audit_key().unwrap()), running);
    let file = app.dir.path().join("shared-audit-key");
    std::fs::write(&file, &text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = app.config.clone();
    c.audit.key_file = file.clone();
    assert!(c.audit_key().unwrap_err().to_string().contains("chmod 600"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(link(&c.audit_key().unwrap()), running);

    // A key of the wrong length stops every command with a clear error and changes nothing.
    let rows_before = store_rows(&app).await;
    for (name, toml) in [
        ("short-value.toml", "[audit]\nkey = \"c2hvcnQ=\"\n".to_owned()),
        ("short-file.toml", format!("[audit]\nkey_file = {:?}\n", app.dir.path().join("short-key").display().to_string())),
    ] {
        std::fs::write(app.dir.path().join("short-key"), "c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(app.dir.path().join("short-key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = app.dir.path().join(name);
        std::fs::write(
            &path,
            format!("data_dir = {:?}\n[database]\nurl = {:?}\n{toml}", app.config.data_dir.display().to_string(), app.config.database.url),
        )
        .unwrap();
        let argv = ["gateway", "--config", &path.display().to_string(), "admin", "clinic", "add", "--id", "77777", "--name", "x"];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = gateway::cli::run(argv.map(str::to_owned).to_vec(), &mut out, &mut err, &mut std::io::empty()).await;
        let out = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("audit key") && out.contains("must be 32 bytes"), "{out}");
    }
    assert_eq!(store_rows(&app).await, rows_before);
    // And a gateway with it does not start.
    let mut c = app.config.clone();
    c.audit.key = "c2hvcnQ=".into();
    c.ops.listen = "127.0.0.1:0".parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = std::sync::Arc::new(gateway::clock::ManualClock::starting_now());
    let start = gateway::Application::with_parts(c, app.store().clone(), clock, listener).await;
    let err = format!("{:#}", start.err().unwrap());
    assert!(err.contains("audit key") && err.contains("must be 32 bytes"), "{err}");
    app.stop().await;
}

async fn store_rows(app: &TestApp) -> i64 {
    app.store().audit_head().await.unwrap().rows
}

db_tests!(
    concurrent_appends_of_two_instances_are_each_chained_once_before_the_answer,
    rows_left_pending_are_chained_by_the_next_reader,
    a_rewrite_without_the_audit_key_is_found,
    a_rewrite_with_the_audit_key_is_found_by_an_earlier_checkpoint,
    an_old_plain_log_is_keyed_by_an_explicit_audited_rekey,
    the_audit_key_is_read_from_the_configuration_or_a_private_file,
    a_batch_chains_like_single_appends,
    intact_chain_verifies,
    a_modified_row_is_found,
    a_deleted_row_is_found,
    a_removed_tail_is_found,
    an_inserted_row_is_found,
    export_writes_every_row_as_json_lines,
);
