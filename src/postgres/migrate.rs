//! The schema, embedded and versioned: applied at start in one transaction that first
//! takes a transaction-scoped advisory lock, so two instances starting together apply it
//! once and the second sees the first's result. (The advisory lock's weaknesses, lost with
//! a dropped connection, do not matter here: it only has to last one transaction.)

use super::PgError;
use tokio_postgres::Client;

/// The migrations, in order: (version, SQL). Never edit one that has shipped; add one.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("schema/0001_init.sql")),
    (2, include_str!("schema/0002_claim_heartbeat.sql")),
];

/// The schema version this program knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock key that serialises migrations ("jfexport" in ASCII).
const MIGRATION_LOCK: i64 = 0x6a66_6578_706f_7274;

/// Brings the schema up to [`SCHEMA_VERSION`]; returns the version before. A database
/// whose schema is newer than this program knows is refused, changing nothing.
pub async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS scheduler_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM scheduler_schema",
            &[],
        )
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO scheduler_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// The schema version the database has (0: none), for `doctor`.
pub async fn version(client: &Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('scheduler_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM scheduler_schema",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
