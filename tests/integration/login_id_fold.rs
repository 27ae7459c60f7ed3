//! Login IDs are one account whatever their width or case, and a 医籍番号 is one doctor per
//! clinic (issue 15, item 5), on both databases.

use crate::admin_cli::cli;
use crate::helpers::*;

async fn three_spellings_cannot_be_three_accounts(db: Db) {
    let app = TestApp::spawn(db).await;
    let users_before = app.store().list_users(None).await.unwrap().len();
    // DOCTOR_LOGIN is "doctor1"; the upper-case and full-width spellings are refused, naming it.
    for spelling in ["DOCTOR1", "Ｄｏｃｔｏｒ１"] {
        let (code, out) = cli(
            &app,
            &["admin", "user", "add", "--clinic", CLINIC, "--login-id", spelling, "--name", "X", "--medical-reg-no", "424242"],
            "",
        )
        .await;
        assert_ne!(code, 0, "{spelling}: {out}");
        assert!(out.contains("already exists") && out.contains("as account doctor1"), "{spelling}: {out}");
    }
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before);
    // The same spelling in another clinic is another account.
    let (code, out) = cli(
        &app,
        &["admin", "user", "add", "--clinic", OTHER_CLINIC, "--login-id", "DOCTOR1", "--name", "X", "--medical-reg-no", "424242"],
        "",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    app.stop().await;
}

async fn full_width_login_id_logs_in_as_the_account(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    assert_eq!(app.login(&client, "ＤＯＣＴＯＲ１", DOCTOR_PASSWORD).await.status(), 303);
    let page = client.get(app.url("/methods")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("山田 太郎"), "{page}");
    // Failures under any spelling count against one login ID.
    let other = app.clinic_client();
    for spelling in ["DOCTOR1", "Ｄｏｃｔｏｒ１", "doctor1", "dOCTOR1"] {
        app.login(&other, spelling, "wrong password").await;
    }
    let fifth = app.login(&other, "ｄｏｃｔｏｒ１", "wrong password").await.text().await.unwrap();
    assert!(fifth.contains("ロックされています"), "{fifth}");
    app.stop().await;
}

async fn medical_reg_no_is_unique_per_clinic(db: Db) {
    let app = TestApp::spawn(db).await;
    // "123456" belongs to doctor1 at CLINIC.
    let add = |clinic: &'static str, login: &'static str| {
        let app = &app;
        async move {
            cli(app, &["admin", "user", "add", "--clinic", clinic, "--login-id", login, "--name", "X", "--medical-reg-no", "123456"], "")
                .await
        }
    };
    let (code, out) = add(CLINIC, "doctor9").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("医籍番号") && out.contains("account doctor1"), "{out}");
    assert!(app.store().user_by_login(CLINIC, "doctor9").await.is_err(), "nothing was added");
    let (code, out) = add(OTHER_CLINIC, "doctor9").await;
    assert_eq!(code, 0, "another clinic may have a doctor with the same number: {out}");
    app.stop().await;
}

async fn migration_refuses_existing_ids_that_fold_alike_and_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let store = app.store();
    // Rows as migration 0010 finds them (login_folded empty): two spellings of one ID.
    for (id, login) in [("00000000-0000-0000-0000-00000000000a", "nurse"), ("00000000-0000-0000-0000-00000000000b", "ＮＵＲＳＥ")] {
        store
            .execute_unchecked(&format!(
                "INSERT INTO users (id, clinic_id, login_id, kind, name, password_hash, enabled, created_at, updated_at)
                 VALUES ('{id}', '{CLINIC}', '{login}', 'staff', 'x', 'x', TRUE, 0, 0)"
            ))
            .await
            .unwrap();
    }
    let err = store.migrate().await.unwrap_err().to_string();
    assert!(err.contains("nurse") && err.contains("ＮＵＲＳＥ") && err.contains(CLINIC), "{err}");
    assert!(store.user_by_login(CLINIC, "nurse").await.is_err(), "neither row was filled");
    // The operator renames one; the next start fills both, and again changes nothing.
    store.execute_unchecked("UPDATE users SET login_id = 'nurse2' WHERE login_id = 'ＮＵＲＳＥ'").await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.user_by_login(CLINIC, "NURSE").await.unwrap().login_id, "nurse");
    assert_eq!(store.user_by_login(CLINIC, "ｎｕｒｓｅ２").await.unwrap().login_id, "nurse2");
    app.stop().await;
}

db_tests!(
    three_spellings_cannot_be_three_accounts,
    full_width_login_id_logs_in_as_the_account,
    medical_reg_no_is_unique_per_clinic,
    migration_refuses_existing_ids_that_fold_alike_and_changes_nothing,
);
