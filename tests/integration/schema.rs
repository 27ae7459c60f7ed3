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
