//! The hash-chained audit log (DESIGN §3.9): it verifies, and tampering is found and named.

use gateway::store::AuditVerification;

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

db_tests!(
    a_batch_chains_like_single_appends,
    intact_chain_verifies,
    a_modified_row_is_found,
    a_deleted_row_is_found,
    a_removed_tail_is_found,
    an_inserted_row_is_found,
    export_writes_every_row_as_json_lines,
);
