//! Reading `run_history` for the readers ([`crate::records`]): a server's records oldest
//! first, as its history file lists them, and the servers that have any.

use super::PgError;
use tokio_postgres::Client;

/// `(run_id, record text)` of `server`'s records, oldest first (by when each run was asked
/// for, then run id); only the newest `newest` when given.
pub async fn read(
    client: &Client,
    server: &str,
    newest: Option<i64>,
) -> Result<Vec<(String, String)>, PgError> {
    // NULL: no LIMIT.
    let rows = client
        .query(
            "SELECT run_id, record::text FROM (
                 SELECT run_id, record, triggered_at FROM run_history WHERE server = $1
                  ORDER BY triggered_at DESC, run_id DESC LIMIT $2
             ) newest ORDER BY triggered_at, run_id",
            &[&server, &newest],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The servers with at least one record, sorted.
pub async fn servers(client: &Client) -> Result<Vec<String>, PgError> {
    let rows = client
        .query(
            "SELECT DISTINCT server FROM run_history ORDER BY server",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
