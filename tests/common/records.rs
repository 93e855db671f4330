//! What runs leave in a state directory: the history, read through the library or as the
//! stored lines, and the in-flight markers.

use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::record::{
    Outcome, RunRecord, SCHEDULER_VERSION, Trigger, new_run_id,
};
use jellyfin_export_scheduler::state::StateDir;
use std::path::Path;
use std::time::{Duration, Instant};

/// The records of `server` in the state directory `state`, oldest first.
pub fn records(state: &Path, server: &str) -> Vec<RunRecord> {
    let state = StateDir::open(state).unwrap();
    History::new(&state).read(server).unwrap().into_records()
}

/// Waits (at most `limit`) until `server` has `n` records; then all of them.
pub async fn wait_for_records(
    state: &Path,
    server: &str,
    n: usize,
    limit: Duration,
) -> Vec<RunRecord> {
    let start = Instant::now();
    loop {
        let r = records(state, server);
        if r.len() >= n {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {n} records of {server}; have {}: {r:#?}",
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines of `server`'s history file as stored; none when there is no file.
pub fn history_lines(state: &Path, server: &str) -> Vec<String> {
    std::fs::read_to_string(state.join("history").join(format!("{server}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each line of `server`'s history file as JSON; a torn or invalid line fails the test.
pub fn history_json(state: &Path, server: &str) -> Vec<serde_json::Value> {
    history_lines(state, server)
        .iter()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("torn or invalid history line {l:?}: {e}"))
        })
        .collect()
}

/// `server`'s in-flight marker as JSON, if there is one.
pub fn marker_json(state: &Path, server: &str) -> Option<serde_json::Value> {
    std::fs::read_to_string(state.join("inflight").join(format!("{server}.json")))
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

/// Writes into `state`'s history a record of `server` from two days ago, ending
/// `outcome`: the server has run before, so a due instant missed while no daemon ran is
/// caught up when one starts. Tests use it to have a run begin at the daemon's start,
/// however long that start takes, rather than at a due instant a little ahead that a slow
/// start would miss.
pub fn ran_before(state: &Path, server: &str, outcome: Outcome) -> RunRecord {
    let at = chrono::Utc::now() - chrono::Duration::days(2);
    let record = RunRecord {
        run_id: new_run_id(at),
        server: server.into(),
        task_key: "JellyfinMigratorExport".into(),
        trigger: Trigger::Manual,
        scheduled_for: None,
        triggered_at: at,
        started_at: None,
        finished_at: Some(at),
        duration_ms: None,
        outcome,
        jellyfin_status: None,
        reason: Some("an earlier run".into()),
        export_path: None,
        attempts: 0,
        scheduler_version: SCHEDULER_VERSION.into(),
        archive_path: None,
        archive_bytes: None,
        archive_sha256: None,
        archive_encrypted: None,
        export_bytes: None,
        export_sha256: None,
        export_entries: None,
        export_users: None,
    };
    History::new(&StateDir::open(state).unwrap())
        .append(&record, 1000)
        .unwrap();
    record
}
