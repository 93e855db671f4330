//! `history import`'s work in the database: a server's JSON Lines records into
//! `run_history`, keyed by run id, so importing twice (or a record already written by a
//! claim) adds nothing. Each record is stored as its line holds it.

use super::PgError;
use crate::history::StoredRecord;
use tokio_postgres::Client;

/// Records sent per statement: a few hundred kilobytes of JSON at most.
const BATCH: usize = 500;

/// What importing one server's records did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Records read from the file.
    pub read: usize,
    /// Records the database did not have yet.
    pub added: usize,
}

/// Imports `records` (one server's, as `History::read` gives them) in one transaction:
/// all of them or, on an error, none.
pub async fn import_server(
    client: &mut Client,
    server: &str,
    records: &[StoredRecord],
) -> Result<Imported, PgError> {
    let tx = client.transaction().await?;
    let mut added = 0;
    for batch in records.chunks(BATCH) {
        let ids: Vec<&str> = batch.iter().map(|r| r.record.run_id.as_str()).collect();
        let times: Vec<_> = batch.iter().map(|r| r.record.triggered_at).collect();
        // Each line as stored: it parsed as a record, so it is JSON.
        let lines: Vec<&str> = batch.iter().map(|r| r.raw.as_str()).collect();
        added += tx
            .execute(
                "INSERT INTO run_history (run_id, server, triggered_at, record)
                 SELECT id, $1, at, rec::json FROM unnest($2::text[], $3::timestamptz[], $4::text[])
                        AS t(id, at, rec)
                 ON CONFLICT (run_id) DO NOTHING",
                &[&server, &ids, &times, &lines],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(Imported {
        read: records.len(),
        added: added as usize,
    })
}
