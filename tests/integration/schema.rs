//! Both migration sets describe the same schema.

use crate::helpers::{Db, fresh_database, drop_database};

#[tokio::test]
async fn sqlite_and_postgres_migrations_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite_url, _) = fresh_database(Db::Sqlite, dir.path()).await;
    let (pg_url, pg) = fresh_database(Db::Postgres, dir.path()).await;
    let sqlite = gateway::store::Store::connect(&sqlite_url, 1).await.unwrap();
    let postgres = gateway::store::Store::connect(&pg_url, 1).await.unwrap();
    sqlite.migrate().await.unwrap();
    postgres.migrate().await.unwrap();
    let a = sqlite.schema_columns().await.unwrap();
    let b = postgres.schema_columns().await.unwrap();
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
    // Migrating again is a no-op.
    sqlite.migrate().await.unwrap();
    postgres.close().await;
    let (admin, name) = pg.unwrap();
    drop_database(&admin, &name).await;
}

/// Migration 0015 rebuilds `service_clients` on SQLite (a CHECK constraint cannot change there) and
/// with it the two tables that reference it: their rows survive, the foreign keys still hold and
/// point at the new table, and the new role is accepted.
#[tokio::test]
async fn sqlite_migration_15_keeps_service_clients_and_their_references() {
    use sqlx::Connection;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (before, after): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|p| p.file_name().unwrap().to_str().unwrap() < "0015");
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
    sqlx::raw_sql("PRAGMA foreign_keys = ON").execute(&mut conn).await.unwrap();
    let run = |files: Vec<std::path::PathBuf>| files.into_iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<Vec<_>>().join("\n");
    // As sqlx runs each migration: in a transaction, foreign keys on.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {} COMMIT;", run(before)))).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO clinics (id, name, enabled, created_at, updated_at) VALUES ('21234', 'c', TRUE, 0, 0);
         INSERT INTO service_clients (id, name, role, fingerprint, subject, enabled, created_at, updated_at, anchor_fingerprint)
             VALUES ('emr-a', 'EMR', 'emr', 'ff', 'CN=emr', TRUE, 1, 2, 'aa');
         INSERT INTO service_client_clinics (client_id, clinic_id, created_at) VALUES ('emr-a', '21234', 3);
         INSERT INTO oqs_requests (id, seq, clinic_id, client_id, file_name, size, content, status, created_at, expires_at)
             VALUES ('r1', 1, '21234', 'emr-a', 'a.xml', 1, x'00', 'queued', 4, 5);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {} COMMIT;", run(after)))).execute(&mut conn).await.unwrap();
    let client: (String, String, String, Option<String>) =
        sqlx::query_as("SELECT id, role, fingerprint, anchor_fingerprint FROM service_clients").fetch_one(&mut conn).await.unwrap();
    assert_eq!(client, ("emr-a".into(), "emr".into(), "ff".into(), Some("aa".into())));
    let served: (String, String) = sqlx::query_as("SELECT client_id, clinic_id FROM service_client_clinics").fetch_one(&mut conn).await.unwrap();
    assert_eq!(served, ("emr-a".into(), "21234".into()));
    let queued: (String, String) = sqlx::query_as("SELECT id, client_id FROM oqs_requests").fetch_one(&mut conn).await.unwrap();
    assert_eq!(queued, ("r1".into(), "emr-a".into()));
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check").fetch_all(&mut conn).await.unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    // The references point at the new table: a client that does not exist is refused, and the
    // client cannot go while it is referenced.
    assert!(sqlx::raw_sql("INSERT INTO service_client_clinics (client_id, clinic_id, created_at) VALUES ('nobody', '21234', 0)").execute(&mut conn).await.is_err());
    assert!(sqlx::raw_sql("DELETE FROM service_clients WHERE id = 'emr-a'").execute(&mut conn).await.is_err());
    // The new role is accepted, an unknown one still refused.
    sqlx::raw_sql("INSERT INTO service_clients (id, name, role, fingerprint, subject, enabled, created_at, updated_at) VALUES ('p', 'P', 'provisioner', 'ee', 'CN=p', TRUE, 0, 0)").execute(&mut conn).await.unwrap();
    assert!(sqlx::raw_sql("INSERT INTO service_clients (id, name, role, fingerprint, subject, enabled, created_at, updated_at) VALUES ('x', 'X', 'admin', 'dd', 'CN=x', TRUE, 0, 0)").execute(&mut conn).await.is_err());
    let sql: (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'oqs_requests'").fetch_one(&mut conn).await.unwrap();
    assert!(!sql.0.contains("service_clients_new"), "{}", sql.0);
}
