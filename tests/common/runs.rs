//! One run through the runner, as the daemon and `trigger` run it, in the test process.

use jellyfin_export_scheduler::config::ServerConfig;
use jellyfin_export_scheduler::jellyfin::JellyfinClient;
use jellyfin_export_scheduler::record::{RunRecord, RunRequest, Trigger, new_run_id};
use jellyfin_export_scheduler::runner::track::NoEvents;
use jellyfin_export_scheduler::runner::{RunEnd, Runner, Wait};
use jellyfin_export_scheduler::state::StateDir;
use std::path::Path;
use std::time::Duration;

/// A manual run's request, triggered now.
pub fn manual_request() -> RunRequest {
    let now = chrono::Utc::now();
    RunRequest {
        run_id: new_run_id(now),
        trigger: Trigger::Manual,
        scheduled_for: None,
        triggered_at: now,
    }
}

/// Run `server` once with `request` on the state directory `state`, followed to its end
/// within `limit` (so a tracking bug fails the test instead of hanging it): its record.
pub async fn run_on(
    state: &Path,
    server: &ServerConfig,
    request: &RunRequest,
    limit: Duration,
) -> RunRecord {
    let client = JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )
    .expect("client builds");
    let runner = Runner::new(&StateDir::open(state).unwrap());
    let end = tokio::time::timeout(
        limit,
        runner.run(&client, server, request, &mut NoEvents, Wait::Follow),
    )
    .await
    .unwrap_or_else(|_| panic!("the run ended within {} s", limit.as_secs()));
    match end {
        RunEnd::Recorded(Ok(record)) => record,
        other => panic!("the run was not recorded: {other:?}"),
    }
}
