//! `/api/v1/...`: the status API, JSON, read-only, never a key.

use crate::daemon::status::StatusBoard;
use crate::records::{ReadError, Records};
use serde::Serialize;

#[derive(Serialize)]
struct Servers<'a> {
    servers: Vec<Server<'a>>,
}

#[derive(Serialize)]
struct Server<'a> {
    name: &'a str,
    url: &'a str,
    schedule: &'a str,
    timezone: &'a str,
    enabled: bool,
    next_due: Option<String>,
    running: Option<Running>,
    last: Option<&'a crate::record::RunRecord>,
}

#[derive(Serialize)]
struct Running {
    run_id: String,
    since: String,
    state: String,
    progress: Option<f64>,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /api/v1/servers`.
pub fn servers(status: &StatusBoard) -> String {
    let views = status.servers();
    let doc = Servers {
        servers: views
            .iter()
            .filter(|v| v.configured)
            .map(|v| Server {
                name: &v.name,
                url: &v.url,
                schedule: &v.schedule,
                timezone: &v.timezone,
                enabled: v.enabled,
                next_due: v.next_due.map(rfc3339),
                running: v.running.as_ref().map(|r| Running {
                    run_id: r.run_id.clone(),
                    since: rfc3339(r.since),
                    state: r.state.clone(),
                    progress: r.percent,
                }),
                last: v.recent.back().map(|r| &**r),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{\"servers\":[]}".into())
}

/// `GET /api/v1/servers/{name}/history?limit=N`: a JSON array of the records exactly as
/// stored, newest first. `None` when the server is unknown.
pub async fn history(
    records: &Records,
    status: &StatusBoard,
    name: &str,
    limit: usize,
) -> Option<Result<String, ReadError>> {
    status.get(name)?;
    Some(records.read(name, Some(limit)).await.map(|read| {
        let raw: Vec<&str> = read.records.iter().rev().map(|r| r.raw.as_str()).collect();
        format!("[{}]", raw.join(","))
    }))
}
