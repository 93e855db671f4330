//! A started run's in-flight marker waits for the other runs' starts, but never longer than
//! `runner::MARKER_DEFER`, and not at all once the daemon begins to stop. In a test binary
//! of its own: the count of runs in their start phase is the process's, and the stuck run
//! here would hold back the markers of every other test's runs.

use jellyfin_export_scheduler::config::ServerConfig;
use jellyfin_export_scheduler::jellyfin::JellyfinClient;
use jellyfin_export_scheduler::runner::track::NoEvents;
use jellyfin_export_scheduler::runner::{MARKER_DEFER, RunEnd, Runner, Wait};
use jellyfin_export_scheduler::sim::SimServerConfig;
use jellyfin_export_scheduler::state::StateDir;
use std::path::Path;
use std::time::Duration;

mod common;

use common::KEY;

/// Server `name` at `url` through the tests' shared config text, with this test's timings:
/// polls every 20 ms, and a 60 s request timeout, so that a server that never answers keeps
/// its run in the start phase for the whole test.
fn server_config(name: &str, url: &str) -> ServerConfig {
    let extra = "schedule = \"@daily\"\npoll_interval = \"20ms\"\ntimeout = \"10s\"\nrequest_timeout = \"60s\"";
    let text = common::config::text(Path::new("state"), "", "", &[(name, url.to_owned(), extra)]);
    common::config::parse(&text).servers.remove(0)
}

#[tokio::test]
async fn a_started_runs_marker_waits_for_other_starts_at_most_marker_defer_and_not_once_stopping() {
    // Server "stuck" accepts connections and never answers: its run stays in its start
    // phase for its whole request_timeout.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}/", hole.local_addr().unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    let stuck = server_config("stuck", &hole_url);
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let runner = Runner::new(&state);
    let stuck_run = {
        let (runner, stuck) = (runner.clone(), stuck.clone());
        tokio::spawn(async move {
            let client =
                JellyfinClient::new("stuck", &stuck.url, &stuck.api_key, stuck.request_timeout)
                    .unwrap();
            let request = common::runs::manual_request();
            runner
                .run(&client, &stuck, &request, &mut NoEvents, Wait::Follow)
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("the stuck server's run never connected");

    // Another server's run starts meanwhile: its marker is written once MARKER_DEFER has
    // passed, although the stuck run is still in its start phase.
    let sim = common::sim::simulator(vec![
        SimServerConfig::new("t", KEY),
        SimServerConfig::new("t2", KEY),
    ])
    .await;
    let (request, took) = start_only(&runner, &sim, "t").await;
    assert!(
        took >= MARKER_DEFER,
        "the marker was written {took:?} after the run began, while another run was still starting (it waits up to {MARKER_DEFER:?})"
    );
    let marker = runner.markers().unwrap().read("t").unwrap();
    assert_eq!(
        marker.map(|m| m.request.run_id),
        Some(request.run_id),
        "the started run's marker is on disk"
    );

    // Once the daemon begins to stop, a marker no longer waits: it must be on disk before
    // the shutdown grace cuts tracking off.
    jellyfin_export_scheduler::runner::track::stop_waiting_for_starts();
    let (_, took) = start_only(&runner, &sim, "t2").await;
    assert!(
        took < MARKER_DEFER,
        "after stop_waiting_for_starts the marker still waited for the stuck run's start ({took:?})"
    );
    stuck_run.abort();
    holder.abort();
}

/// A `StartOnly` run of the simulated server `name`, which returns once its marker is
/// written: its request, and how long that took.
async fn start_only(
    runner: &Runner,
    sim: &jellyfin_export_scheduler::sim::Simulator,
    name: &str,
) -> (jellyfin_export_scheduler::record::RunRequest, Duration) {
    let server = server_config(name, &sim.url(name));
    let client =
        JellyfinClient::new(name, &server.url, &server.api_key, server.request_timeout).unwrap();
    let request = common::runs::manual_request();
    let begun = std::time::Instant::now();
    let end = tokio::time::timeout(
        Duration::from_secs(30),
        runner.run(&client, &server, &request, &mut NoEvents, Wait::StartOnly),
    )
    .await
    .expect("the started run's marker was not written within 30 s");
    assert!(matches!(end, RunEnd::Started(Ok(()))), "{end:?}");
    (request, begun.elapsed())
}
