//! What runs leave in a state directory: the history, read through the library or as the
//! stored lines, and the in-flight markers.

use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::record::RunRecord;
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
