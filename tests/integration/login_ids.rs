//! Login IDs compared after NFKC and case folding, 医籍番号 unique per clinic, and the migration
//! that brings an existing database there (issue 15, item 5; docs/security/login-ids.md).

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use gateway::store::{Error, NewUser, Store, UserKind};

use crate::admin_cli::{audit_rows, cli};
use crate::helpers::*;

async fn width_and_case_variants_log_in_as_the_one_account(db: Db) {
    let app = TestApp::spawn(db).await;
    for spelling in ["Ｄｏｃｔｏｒ１", "DOCTOR1", "Doctor1"] {
        let client = app.clinic_client();
        let res = app.login(&client, spelling, DOCTOR_PASSWORD).await;
        assert_eq!(res.status(), 303, "{spelling}");
        let page = client.get(app.url("/methods")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("山田 太郎"), "{spelling} is doctor1: {page}");
    }
    // A different ID is still a different (unknown) account.
    let res = app.login(&app.clinic_client(), "ｄｏｃｔｏｒ２", DOCTOR_PASSWORD).await;
    assert_eq!(res.status(), 403);
    app.stop().await;
}

async fn failures_under_any_spelling_count_against_the_one_account(db: Db) {
    let app = TestApp::spawn(db).await;
    let client = app.clinic_client();
    for (left, spelling) in [(4, "DOCTOR1"), (3, "Ｄｏｃｔｏｒ１"), (2, "doctor1"), (1, "ＤＯＣＴＯＲ１")] {
        let body = app.login(&client, spelling, "wrong password").await.text().await.unwrap();
        assert!(!body.contains("ロックされています"), "{spelling}: not locked yet");
        assert!(body.contains(&format!("あと{left}回")), "{spelling}: one count for every spelling: {body}");
    }
    let fifth = app.login(&client, "Doctor1", "wrong password").await.text().await.unwrap();
    assert!(fifth.contains("ロックされています"), "the fifth failure under a fifth spelling locks: {fifth}");
    let body = app.login(&client, DOCTOR_LOGIN, DOCTOR_PASSWORD).await.text().await.unwrap();
    assert!(body.contains("ロックされています"), "locked under the stored spelling too");
    app.stop().await;
}

async fn admin_refuses_a_login_id_spelled_like_an_existing_one(db: Db) {
    let app = TestApp::spawn(db).await;
    let users_before = app.store().list_users(None).await.unwrap().len();
    let audit_before = audit_rows(&app).await;
    for spelling in ["Ｄｏｃｔｏｒ１", "DOCTOR1", "ｄｏｃｔｏｒ1"] {
        let args =
            ["admin", "user", "add", "--clinic", CLINIC, "--login-id", spelling, "--name", "X", "--medical-reg-no", "777777", "--password-stdin"];
        let (code, out) = cli(&app, &args, "amber lantern meadow 47\n").await;
        assert_ne!(code, 0, "{spelling}: {out}");
        assert!(out.contains("already exists") && out.contains(&format!("as account {DOCTOR_LOGIN}")), "{spelling}: {out}");
    }
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before, "nothing added");
    assert_eq!(audit_rows(&app).await, audit_before, "refusals write no audit rows");

    // The same spelling is free in another clinic.
    let args =
        ["admin", "user", "add", "--clinic", OTHER_CLINIC, "--login-id", "ＤＯＣＴＯＲ１", "--name", "X", "--medical-reg-no", "777777", "--password-stdin"];
    let (code, out) = cli(&app, &args, "amber lantern meadow 47\n").await;
    assert_eq!(code, 0, "{out}");

    // The unique index decides even when the admin check is bypassed (two commands racing).
    let user = NewUser {
        id: "00000000-0000-4000-8000-000000000099",
        clinic_id: CLINIC,
        login_id: "ＤＯＣＴＯＲ１",
        kind: UserKind::Doctor,
        name: "X",
        medical_reg_no: Some("888888"),
        password_hash: "$argon2id$not-used",
        password_temporary: false,
        test_account: false,
    };
    assert!(matches!(app.store().add_user(&user, app.clock.unix()).await, Err(Error::Conflict(_))));
    app.stop().await;
}

async fn medical_reg_no_is_unique_per_clinic(db: Db) {
    let app = TestApp::spawn(db).await;
    let users_before = app.store().list_users(None).await.unwrap().len();
    // doctor1 of CLINIC holds 123456.
    let args = ["admin", "user", "add", "--clinic", CLINIC, "--login-id", "doctor9", "--name", "X", "--medical-reg-no", "123456", "--password-stdin"];
    let (code, out) = cli(&app, &args, "amber lantern meadow 47\n").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("医籍番号") && out.contains("123456") && out.contains(&format!("account {DOCTOR_LOGIN}")), "{out}");
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before);

    // Enforced by the database as well.
    let user = NewUser {
        id: "00000000-0000-4000-8000-000000000098",
        clinic_id: CLINIC,
        login_id: "doctor9",
        kind: UserKind::Doctor,
        name: "X",
        medical_reg_no: Some("123456"),
        password_hash: "$argon2id$not-used",
        password_temporary: false,
        test_account: false,
    };
    assert!(matches!(app.store().add_user(&user, app.clock.unix()).await, Err(Error::Conflict(_))));

    // Another clinic may employ the same doctor.
    let args =
        ["admin", "user", "add", "--clinic", OTHER_CLINIC, "--login-id", "doctor9", "--name", "X", "--medical-reg-no", "123456", "--password-stdin"];
    let (code, out) = cli(&app, &args, "amber lantern meadow 47\n").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(app.store().list_users(None).await.unwrap().len(), users_before + 1);
    app.stop().await;
}

/// Raw access to a test database, for building the state an older gateway left behind.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn open(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap().create_if_missing(true);
            Raw::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
        } else {
            Raw::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn execute(&self, sql: String) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
            Raw::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        }
    }

    /// One text column of every row.
    async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// Applies the repository's migrations numbered below 9: the schema before login IDs were folded.
    async fn migrate_before_0009(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(match self {
            Raw::Sqlite(_) => "sqlite",
            Raw::Postgres(_) => "postgres",
        });
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let migrations: Vec<_> = files
            .iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                let version: i64 = name.get(..4)?.parse().ok()?;
                (version < 9).then(|| {
                    let sql = std::fs::read_to_string(path).unwrap();
                    sqlx::migrate::Migration::new(
                        version,
                        Cow::Owned(name.to_owned()),
                        sqlx::migrate::MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
                        false,
                    )
                })
            })
            .collect();
        assert!(migrations.len() >= 8, "{migrations:?}");
        let migrator = sqlx::migrate::Migrator { migrations: Cow::Owned(migrations), ..sqlx::migrate::Migrator::DEFAULT };
        match self {
            Raw::Sqlite(p) => migrator.run(p).await.unwrap(),
            Raw::Postgres(p) => migrator.run(p).await.unwrap(),
        }
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Postgres(p) => p.close().await,
        }
    }
}

/// A database as a gateway before migration 0009 left it: clinics 21234 and 99999, and `users`
/// given as (user number, clinic, login ID, 医籍番号).
async fn database_before_0009(db: Db, dir: &Path, users: &[(u32, &str, &str, Option<&str>)]) -> (String, Option<(String, String)>) {
    let (url, pg) = fresh_database(db, dir).await;
    let raw = Raw::open(&url).await;
    raw.migrate_before_0009().await;
    for clinic in [CLINIC, OTHER_CLINIC] {
        raw.execute(format!("INSERT INTO clinics (id, name, enabled, created_at, updated_at) VALUES ('{clinic}', 'c', TRUE, 0, 0)"))
            .await
            .unwrap();
    }
    for (n, clinic, login, number) in users {
        let number = number.map_or("NULL".to_owned(), |n| format!("'{n}'"));
        raw.execute(format!(
            "INSERT INTO users (id, clinic_id, login_id, kind, name, medical_reg_no, password_hash, enabled, created_at, updated_at)
             VALUES ('00000000-0000-4000-8000-{n:012}', '{clinic}', '{login}', 'doctor', 'd', {number}, '$argon2id$x', TRUE, 0, 0)"
        ))
        .await
        .unwrap();
    }
    raw.close().await;
    (url, pg)
}

async fn drop_pg(pg: Option<(String, String)>) {
    if let Some((admin, name)) = pg {
        drop_database(&admin, &name).await;
    }
}

async fn migration_fills_folded_ids_once_and_old_spellings_keep_working(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let users = [(1, CLINIC, "Doctor1", Some("111111")), (2, CLINIC, "doctor2", Some("222222")), (3, OTHER_CLINIC, "DOCTOR1", Some("111111"))];
    let (url, pg) = database_before_0009(db, dir.path(), &users).await;
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let before = store.list_users(None).await.unwrap();
    // Run again (every start does): nothing changes.
    store.migrate().await.unwrap();
    let after = store.list_users(None).await.unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    // The stored spelling is kept; every spelling finds the account of its own clinic.
    for spelling in ["doctor1", "Ｄｏｃｔｏｒ１", "Doctor1"] {
        assert_eq!(store.user_by_login(CLINIC, spelling).await.unwrap().login_id, "Doctor1");
        assert_eq!(store.user_by_login(OTHER_CLINIC, spelling).await.unwrap().login_id, "DOCTOR1");
    }
    store.close().await;
    let raw = Raw::open(&url).await;
    let folded = raw.strings("SELECT login_folded FROM users ORDER BY id").await;
    assert_eq!(folded, [Some("doctor1".to_owned()), Some("doctor2".to_owned()), Some("doctor1".to_owned())]);
    raw.close().await;
    drop_pg(pg).await;
}

async fn migration_refuses_ids_that_fold_alike_and_merges_nothing(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        (1, CLINIC, "doctor1", Some("111111")),
        (2, CLINIC, "ＤＯＣＴＯＲ１", Some("222222")),
        (3, CLINIC, "doctor3", Some("333333")),
        (4, OTHER_CLINIC, "Doctor1", None),
    ];
    let (url, pg) = database_before_0009(db, dir.path(), &users).await;
    for _ in 0..2 {
        // Refused at every start until an operator decides; the message names the accounts.
        let store = Store::connect(&url, 2).await.unwrap();
        let err = store.migrate().await.unwrap_err();
        store.close().await;
        let text = err.to_string();
        assert!(matches!(err, Error::NeedsOperator(_)), "{text}");
        assert!(text.contains(&format!("clinic {CLINIC}: doctor1, ＤＯＣＴＯＲ１")), "{text}");
        assert!(!text.contains("doctor3") && !text.contains(OTHER_CLINIC), "only the colliding accounts: {text}");
        let raw = Raw::open(&url).await;
        let rows = raw.strings("SELECT login_id FROM users ORDER BY id").await;
        assert_eq!(rows.len(), 4, "no account merged or removed");
        assert_eq!(raw.strings("SELECT login_folded FROM users WHERE login_folded IS NOT NULL").await, Vec::<Option<String>>::new());
        raw.close().await;
    }
    // The operator renames one account; the next start fills every row.
    let raw = Raw::open(&url).await;
    raw.execute("UPDATE users SET login_id = 'doctor1b' WHERE login_id = 'ＤＯＣＴＯＲ１'".to_owned()).await.unwrap();
    raw.close().await;
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.user_by_login(CLINIC, "DOCTOR1B").await.unwrap().login_id, "doctor1b");
    assert_eq!(store.user_by_login(CLINIC, "ｄｏｃｔｏｒ１").await.unwrap().login_id, "doctor1");
    store.close().await;
    drop_pg(pg).await;
}

async fn migration_refuses_a_shared_medical_reg_no_and_changes_nothing(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let users = [(1, CLINIC, "doctor1", Some("123456")), (2, CLINIC, "doctor2", Some("123456")), (3, OTHER_CLINIC, "doctor3", Some("123456"))];
    let (url, pg) = database_before_0009(db, dir.path(), &users).await;
    let store = Store::connect(&url, 2).await.unwrap();
    let err = store.migrate().await.unwrap_err();
    store.close().await;
    let text = err.to_string();
    assert!(matches!(err, Error::NeedsOperator(_)), "{text}");
    assert!(text.contains(&format!("clinic {CLINIC}, 医籍番号 123456: doctor1, doctor2")), "{text}");
    assert!(!text.contains("doctor3"), "another clinic may share the number: {text}");
    let raw = Raw::open(&url).await;
    // Migration 0009 was rolled back as a whole: not recorded, no new column.
    assert_eq!(raw.strings("SELECT CAST(version AS TEXT) FROM _sqlx_migrations WHERE version = 10").await.len(), 0);
    assert!(raw.execute("SELECT login_folded FROM users".to_owned()).await.is_err(), "column not added");
    raw.execute("UPDATE users SET medical_reg_no = '654321' WHERE login_id = 'doctor2'".to_owned()).await.unwrap();
    raw.close().await;
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.user_by_login(CLINIC, "DOCTOR2").await.unwrap().medical_reg_no.as_deref(), Some("654321"));
    store.close().await;
    drop_pg(pg).await;
}

db_tests!(
    width_and_case_variants_log_in_as_the_one_account,
    failures_under_any_spelling_count_against_the_one_account,
    admin_refuses_a_login_id_spelled_like_an_existing_one,
    medical_reg_no_is_unique_per_clinic,
    migration_fills_folded_ids_once_and_old_spellings_keep_working,
    migration_refuses_ids_that_fold_alike_and_merges_nothing,
    migration_refuses_a_shared_medical_reg_no_and_changes_nothing,
);
