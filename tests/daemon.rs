//! The daemon in-process against the simulator: schedules every second or at chosen
//! seconds, overlap skips, the concurrency cap, jitter, catch-up, reload, markers resumed.
//!
//! Waits are bounded and fail with a sentence; nothing sleeps to synchronise.

use chrono::{DateTime, Timelike, Utc};
use jellyfin_export_scheduler::config::Config;
use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::jellyfin::JellyfinClient;
use jellyfin_export_scheduler::record::{
    Outcome, RunRecord, RunRequest, SCHEDULER_VERSION, Trigger, new_run_id,
};
use jellyfin_export_scheduler::runner::marker::{Marker, Markers};
use jellyfin_export_scheduler::runner::track::{self, NoEvents, StartResult};
use jellyfin_export_scheduler::runner::{RunEnd, Runner, Wait};
use jellyfin_export_scheduler::schedule::jitter_offset;
use jellyfin_export_scheduler::sim::SimServerConfig;
use jellyfin_export_scheduler::state::StateDir;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::daemon::{start, start_observed, stop};
use common::records::{records, wait_for_records};
use common::sim::simulator;
use common::time::schedule_at as at;
use common::wait::{wait_until, wait_until_async};

/// Server `name` of the simulator, its runs `run_length_ms` long.
fn sim_server(name: &str, run_length_ms: u64) -> SimServerConfig {
    common::sim::sim_server(name, |c| {
        c.run_length = Duration::from_millis(run_length_ms)
    })
}

/// A config: `daemon` lines, then one `[[servers]]` per (name, url, extra lines).
fn config(state: &Path, daemon: &str, servers: &[(&str, String, &str)]) -> Config {
    common::config::parse(&common::config::text(state, daemon, "", servers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_instant_during_a_run_is_skipped_naming_the_run() {
    let sim = simulator(vec![sim_server("a", 1500)]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "",
        &[("a", sim.url("a"), "schedule = \"* * * * * *\"")],
    );
    let handle = start(cfg).await;
    wait_for_records(dir.path(), "a", 2, Duration::from_secs(10)).await;
    stop(handle).await;
    let recs = records(dir.path(), "a");
    let completed: Vec<&RunRecord> = recs
        .iter()
        .filter(|r| r.outcome == Outcome::Completed)
        .collect();
    let skipped: Vec<&RunRecord> = recs
        .iter()
        .filter(|r| r.outcome == Outcome::Skipped)
        .collect();
    assert!(!completed.is_empty() && !skipped.is_empty(), "{recs:#?}");
    let first = completed[0];
    assert!(
        skipped.iter().any(|s| s.reason.as_deref()
            == Some(&format!("previous run {} still in progress", first.run_id))),
        "{recs:#?}"
    );
    for s in &skipped {
        assert_eq!(s.trigger, Trigger::Schedule);
        assert!(s.scheduled_for.is_some());
    }
    // Never two runs at once: one start request per completed run.
    assert_eq!(
        sim.server("a").start_requests().len(),
        completed.len(),
        "{recs:#?}"
    );
    let _ = recs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_queues_runs_without_skipping_them() {
    let names = ["c1", "c2", "c3"];
    let sim = simulator(names.iter().map(|n| sim_server(n, 300)).collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let due = Utc::now() + chrono::Duration::seconds(2);
    let sched = at(due);
    let servers: Vec<(&str, String, &str)> = names
        .iter()
        .map(|n| (*n, sim.url(n), sched.as_str()))
        .collect();
    let handle = start(config(dir.path(), "max_concurrent_runs = 1", &servers)).await;
    let mut all = Vec::new();
    for n in names {
        let r = wait_for_records(dir.path(), n, 1, Duration::from_secs(15)).await;
        assert_eq!(r[0].outcome, Outcome::Completed, "{n}: {r:#?}");
        all.push(r[0].clone());
    }
    stop(handle).await;
    // With one slot the runs happened one after another: Jellyfin's run intervals are disjoint.
    all.sort_by_key(|r| r.started_at);
    for pair in all.windows(2) {
        assert!(
            pair[0].finished_at.unwrap() <= pair[1].started_at.unwrap(),
            "runs overlapped: {pair:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_each_server_by_its_stable_offset() {
    let sim = simulator(vec![sim_server("j1", 100), sim_server("j2", 100)]).await;
    let dir = tempfile::tempdir().unwrap();
    let due = Utc::now() + chrono::Duration::seconds(2);
    let sched = format!("{}\njitter = \"1500ms\"", at(due));
    let handle = start(config(
        dir.path(),
        "",
        &[("j1", sim.url("j1"), &sched), ("j2", sim.url("j2"), &sched)],
    ))
    .await;
    for n in ["j1", "j2"] {
        let r = wait_for_records(dir.path(), n, 1, Duration::from_secs(10)).await;
        let offset = jitter_offset(n, Duration::from_millis(1500));
        let scheduled = r[0].scheduled_for.unwrap();
        let delay = (r[0].triggered_at - scheduled).to_std().unwrap();
        assert!(
            delay >= offset,
            "{n}: triggered {delay:?} after due, offset is {offset:?}"
        );
        assert!(
            delay < offset + Duration::from_millis(500),
            "{n}: triggered {delay:?} after due, offset {offset:?}"
        );
    }
    stop(handle).await;
}

fn old_record(server: &str, scheduled_for: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: new_run_id(scheduled_for),
        server: server.into(),
        task_key: "JellyfinMigratorExport".into(),
        trigger: Trigger::Schedule,
        scheduled_for: Some(scheduled_for),
        triggered_at: scheduled_for,
        started_at: None,
        finished_at: Some(scheduled_for),
        duration_ms: Some(1000),
        outcome: Outcome::Completed,
        jellyfin_status: Some("Completed".into()),
        reason: None,
        export_path: None,
        attempts: 1,
        scheduler_version: SCHEDULER_VERSION.into(),
        archive_path: None,
        archive_bytes: None,
        archive_sha256: None,
        archive_encrypted: None,
        export_bytes: None,
        export_sha256: None,
        export_entries: None,
        export_users: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_due_instant_is_caught_up_once_but_not_on_a_first_start() {
    let sim = simulator(vec![
        sim_server("cu", 100),
        sim_server("fresh", 100),
        sim_server("off", 100),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let now = Utc::now();
    let hour_start = now
        .with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    // The daemon ran two hours ago, then was down through this hour's due instant.
    History::new(&state)
        .append(
            &old_record("cu", hour_start - chrono::Duration::hours(2)),
            100,
        )
        .unwrap();
    History::new(&state)
        .append(
            &old_record("off", hour_start - chrono::Duration::hours(2)),
            100,
        )
        .unwrap();
    let hourly = "schedule = \"0 0 * * * *\"";
    let off = "schedule = \"0 0 * * * *\"\ncatch_up = \"none\"";
    let cfg = config(
        dir.path(),
        "",
        &[
            ("cu", sim.url("cu"), hourly),
            ("fresh", sim.url("fresh"), hourly),
            ("off", sim.url("off"), off),
        ],
    );
    let handle = start(cfg.clone()).await;
    let recs = wait_for_records(dir.path(), "cu", 2, Duration::from_secs(10)).await;
    let caught = &recs[1];
    assert_eq!(caught.trigger, Trigger::CatchUp, "{recs:#?}");
    assert_eq!(caught.scheduled_for, Some(hour_start));
    assert_eq!(caught.outcome, Outcome::Completed);
    stop(handle).await;
    assert!(
        records(dir.path(), "fresh").is_empty(),
        "no catch-up on a first start"
    );
    assert_eq!(records(dir.path(), "off").len(), 1, "catch_up = none");

    // A second start: the due instant now has a record, so nothing is caught up again.
    let handle = start(cfg).await;
    stop(handle).await;
    assert_eq!(
        records(dir.path(), "cu").len(),
        2,
        "one catch-up per missed due instant"
    );
}

/// The status board starts from each server's history, read once at start: the last
/// success, the last time per outcome and the strip survive a restart, disabled servers
/// included; counters start at zero, as Prometheus expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_starts_from_each_history() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let history = History::new(&state);
    let t0 = Utc::now() - chrono::Duration::days(30);
    let mut records = Vec::new();
    for (server, outcome) in [("a", Outcome::Completed), ("off", Outcome::Completed)] {
        let mut r = old_record(server, t0);
        r.outcome = outcome;
        records.push(r);
    }
    // Then 30 failures of `a`, one per day.
    for day in 1..=30 {
        let mut r = old_record("a", t0 + chrono::Duration::days(day));
        r.outcome = Outcome::Failed;
        records.push(r);
    }
    for r in &records {
        history.append(r, 1000).unwrap();
    }
    let daily = "schedule = \"0 0 3 * * *\"\ncatch_up = \"none\"";
    let cfg = config(
        dir.path(),
        "",
        &[
            ("a", "http://127.0.0.1:9/".into(), daily),
            (
                "off",
                "http://127.0.0.1:9/".into(),
                "schedule = \"0 0 3 * * *\"\nenabled = false",
            ),
        ],
    );
    let handle = start(cfg).await;
    let a = handle.status.get("a").expect("a is on the board");
    let off = handle
        .status
        .get("off")
        .expect("a disabled server is on the board");
    stop(handle).await;

    assert_eq!(a.last_success, Some(t0));
    assert_eq!(
        a.last_by_outcome.get(&Outcome::Failed),
        Some(&(t0 + chrono::Duration::days(30)))
    );
    assert_eq!(a.recent.len(), 20, "the strip holds the newest 20");
    assert_eq!(
        a.recent.back().map(|r| &r.run_id),
        records.last().map(|r| &r.run_id)
    );
    assert!(
        a.runs_total.is_empty(),
        "nothing counted: {:?}",
        a.runs_total
    );
    assert_eq!(off.last_success, Some(t0));
    assert!(!off.enabled && off.next_due.is_none());
}

/// Regression: the status line sent with READY=1 said "1 server" without the next export,
/// because each loop worked out its first due instant only once the runtime ran it. It is
/// worked out when the loop is armed: the board names it as soon as `start` (or a reload
/// that adds a server) returns, on a current-thread runtime where no loop can have run.
#[tokio::test(flavor = "current_thread")]
async fn the_next_export_is_on_the_board_as_soon_as_the_schedules_are_armed() {
    let dir = tempfile::tempdir().unwrap();
    let daily = "schedule = \"0 30 3 * * *\"\ncatch_up = \"none\"";
    let one = [("living-room", "http://127.0.0.1:9/".to_owned(), daily)];
    let handle = start(config(dir.path(), "", &one)).await;
    let summary = handle.status.summary();
    assert!(
        summary.starts_with("1 server, next export living-room at ")
            && summary.ends_with(" 03:30:00 UTC"),
        "the status line right after arming is {summary:?}"
    );
    let two = [
        one[0].clone(),
        (
            "den",
            "http://127.0.0.1:9/".to_owned(),
            "schedule = \"0 15 3 * * *\"\ncatch_up = \"none\"",
        ),
    ];
    let reloaded = handle
        .reload(config(dir.path(), "", &two))
        .await
        .expect("reload answered");
    assert_eq!(reloaded.added, 1, "{reloaded}");
    let summary = handle.status.summary();
    assert!(
        summary.starts_with("2 servers, next export den at ") && summary.ends_with(" 03:15:00 UTC"),
        "the status line right after the reload is {summary:?}"
    );
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_difference() {
    let sim = simulator(vec![
        sim_server("keep", 100),
        sim_server("gone", 100),
        sim_server("new", 100),
        sim_server("same", 100),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let daily = "schedule = \"0 0 3 * * *\"";
    let first = config(
        dir.path(),
        "",
        &[
            ("keep", sim.url("keep"), daily),
            ("gone", sim.url("gone"), daily),
            ("same", sim.url("same"), daily),
        ],
    );
    let handle = start(first).await;
    assert!(handle.status.get("gone").is_some());
    let soon = at(Utc::now() + chrono::Duration::seconds(2));
    let second = config(
        dir.path(),
        "max_concurrent_runs = 3",
        &[
            ("keep", sim.url("keep"), &soon),
            ("new", sim.url("new"), &soon),
            ("same", sim.url("same"), daily),
        ],
    );
    let summary = handle.reload(second).await.expect("reload answered");
    assert_eq!(
        (summary.added, summary.removed, summary.changed),
        (1, 1, 1),
        "{summary}"
    );
    assert_eq!(summary.needs_restart, ["max_concurrent_runs"]);
    assert_eq!(
        summary.to_string(),
        "reloaded: 1 added, 1 removed, 1 changed; max_concurrent_runs changed but needs a restart to take effect"
    );
    // The changed schedule and the added server take effect from their next due instant.
    wait_for_records(dir.path(), "keep", 1, Duration::from_secs(10)).await;
    wait_for_records(dir.path(), "new", 1, Duration::from_secs(10)).await;
    assert!(handle.status.get("gone").is_none());
    stop(handle).await;
    assert!(records(dir.path(), "gone").is_empty());
    assert!(records(dir.path(), "same").is_empty());
}

/// Regression: a server removed by a reload while its run was going kept its loop's
/// heartbeat on the board. Nothing woke it any more, so it went stale, `/healthz` answered
/// 503 and the watchdog pings stopped (systemd would restart a healthy daemon). A removed
/// server's loop stops counting at once; its run still ends and is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_removed_during_its_run_stops_counting_as_a_loop() {
    let sim = simulator(vec![sim_server("gone", 1000), sim_server("stays", 100)]).await;
    let dir = tempfile::tempdir().unwrap();
    let soon = format!(
        "{}\ncatch_up = \"none\"",
        at(Utc::now() + chrono::Duration::seconds(2))
    );
    let daily = "schedule = \"0 0 3 * * *\"\ncatch_up = \"none\"";
    let handle = start(config(
        dir.path(),
        "",
        &[
            ("gone", sim.url("gone"), &soon),
            ("stays", sim.url("stays"), daily),
        ],
    ))
    .await;
    wait_until(Duration::from_secs(10), "the run of gone started", || {
        !sim.server("gone").start_requests().is_empty()
    })
    .await;
    let summary = handle
        .reload(config(
            dir.path(),
            "",
            &[("stays", sim.url("stays"), daily)],
        ))
        .await
        .expect("reload answered");
    assert_eq!(summary.removed, 1, "{summary}");
    // With a zero limit every loop that still counts is stale: `stays` is, `gone` is not.
    let stale = handle.status.stale_loops(Duration::ZERO);
    assert_eq!(stale, ["stays"], "during the run");
    let recs = wait_for_records(dir.path(), "gone", 1, Duration::from_secs(10)).await;
    assert_eq!(recs[0].outcome, Outcome::Completed, "{recs:#?}");
    wait_until(
        Duration::from_secs(10),
        "the run of gone ended on the board",
        || {
            handle
                .status
                .get("gone")
                .is_some_and(|v| v.running.is_none())
        },
    )
    .await;
    let stale = handle.status.stale_loops(Duration::ZERO);
    assert_eq!(stale, ["stays"], "after the run");
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_in_flight_is_resumed_and_recorded_once() {
    let sim = simulator(vec![sim_server("m", 800)]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "",
        // catch_up off: once the resumed run is in the history, today's 03:00 would
        // count as missed at the second start.
        &[(
            "m",
            sim.url("m"),
            "schedule = \"0 0 3 * * *\"\ncatch_up = \"none\"",
        )],
    );
    let server = cfg.servers[0].clone();
    // An "earlier process" started the run and died, leaving its marker.
    let client =
        JellyfinClient::new("m", &server.url, &server.api_key, server.request_timeout).unwrap();
    let started = match track::start(&client, &server, &mut NoEvents).await {
        StartResult::Started(s) => s,
        other => panic!("expected a start: {other:?}"),
    };
    let now = Utc::now();
    let request = RunRequest {
        run_id: new_run_id(now),
        trigger: Trigger::Schedule,
        scheduled_for: Some(now),
        triggered_at: now,
    };
    let state = StateDir::open(dir.path()).unwrap();
    Markers::new(&state)
        .write(&Marker::new("m", &server.task_key, &request, &started))
        .unwrap();

    let handle = start(cfg.clone()).await;
    let recs = wait_for_records(dir.path(), "m", 1, Duration::from_secs(10)).await;
    stop(handle).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].run_id, request.run_id);
    assert_eq!(recs[0].outcome, Outcome::Completed, "{recs:#?}");
    assert_eq!(recs[0].scheduled_for, Some(now));
    assert!(
        Markers::new(&state).read("m").unwrap().is_none(),
        "marker cleared"
    );
    assert_eq!(
        sim.server("m").start_requests().len(),
        1,
        "the resumed run was not started again"
    );

    // Another start finds nothing left to do.
    let handle = start(cfg).await;
    stop(handle).await;
    assert_eq!(records(dir.path(), "m").len(), 1);
}

/// `tests/fixtures/inflight/v1.json` is an in-flight marker as version 0.1.0 wrote it: the
/// daemon of today resumes it and records the run it describes, with the request it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_written_by_version_0_1_0_is_resumed() {
    let name = "living-room";
    // The task had never run before, as the fixture's `snapshot: null` says.
    let mut never_ran = sim_server(name, 200);
    never_ran.history = jellyfin_export_scheduler::sim::History::Never;
    let sim = simulator(vec![never_ran]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "",
        &[(
            name,
            sim.url(name),
            "schedule = \"0 0 3 * * *\"\ncatch_up = \"none\"",
        )],
    );
    let server = cfg.servers[0].clone();
    // The earlier process started the run (the fixture's task id is the Migrator's) and
    // stopped; the run ended while nobody watched.
    let client =
        JellyfinClient::new(name, &server.url, &server.api_key, server.request_timeout).unwrap();
    let task = client.find_task(&server.task_key).await.unwrap();
    assert_eq!(task.id, "d6eb93f1d1591e7d5e6c70f1d25e6fdd");
    client.start_task(&task.id).await.unwrap();
    wait_until_async(
        Duration::from_secs(10),
        "the simulated run ended",
        || async {
            client
                .task(&task.id)
                .await
                .unwrap()
                .last_execution_result
                .is_some()
        },
    )
    .await;
    let state = StateDir::open(dir.path()).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inflight/v1.json");
    std::fs::copy(&fixture, state.inflight_dir().join("living-room.json")).unwrap();

    let handle = start(cfg).await;
    let recs = wait_for_records(dir.path(), name, 1, Duration::from_secs(10)).await;
    stop(handle).await;
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = &recs[0];
    assert_eq!(r.run_id, "019ac3a1d2400a1b2c3d");
    assert_eq!(r.trigger, Trigger::Schedule);
    assert_eq!(
        r.scheduled_for,
        Some("2026-11-27T02:30:00Z".parse::<DateTime<Utc>>().unwrap())
    );
    assert_eq!(
        r.triggered_at,
        "2026-11-27T02:30:00.250Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(r.outcome, Outcome::Completed, "{recs:#?}");
    assert_eq!(r.attempts, 1);
    assert!(
        !state.inflight_dir().join("living-room.json").exists(),
        "marker cleared"
    );
    assert_eq!(
        sim.server(name).start_requests().len(),
        1,
        "the resumed run was not started again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_run_within_the_grace() {
    let sim = simulator(vec![sim_server("g", 600)]).await;
    let dir = tempfile::tempdir().unwrap();
    let soon = at(Utc::now() + chrono::Duration::seconds(1));
    let handle = start(config(
        dir.path(),
        "shutdown_grace = \"10s\"",
        &[("g", sim.url("g"), &soon)],
    ))
    .await;
    wait_until(Duration::from_secs(5), "the run started", || {
        !sim.server("g").start_requests().is_empty()
    })
    .await;
    stop(handle).await;
    let recs = records(dir.path(), "g");
    assert_eq!(
        recs.len(),
        1,
        "the run finished during the grace and was recorded"
    );
    assert_eq!(recs[0].outcome, Outcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_servers_load_arm_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n[defaults]\nschedule = \"0 30 3 * * *\"\ntimezone = \"Europe/Berlin\"\njitter = \"10m\"\n",
        dir.path().display()
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[servers]]\nname = \"s{i}\"\nurl = \"http://127.0.0.1:9/s/s{i}\"\napi_key = \"{KEY}\"\n"
        ));
    }
    let config = common::config::parse(&text);
    let started = Instant::now();
    let handle = start(config).await;
    assert!(handle.status.armed());
    // Every loop has computed its next due instant (jitter spreads them over 10 minutes).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let board = handle.status.snapshot();
        let armed = board.values().filter(|s| s.next_due.is_some()).count();
        if armed == 10_000 {
            let dues: std::collections::BTreeSet<_> =
                board.values().filter_map(|s| s.next_due).collect();
            assert!(
                dues.len() > 1000,
                "jitter spreads the fleet: {} distinct instants",
                dues.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {armed} of 10000 loops armed in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("10 000 servers armed in {:?}", started.elapsed());
    stop(handle).await;
}

/// The two pieces of the loop that the benchmark calls: `next_fire` adds the jitter to the
/// due instant, `sleep_until_due` returns once the wall clock has reached the instant and
/// calls its wake hook (the heartbeat) after each sleep.
#[tokio::test]
async fn the_loop_helpers_fire_at_the_due_instant_plus_jitter() {
    use jellyfin_export_scheduler::daemon::{next_fire, sleep_until_due};
    use jellyfin_export_scheduler::schedule::Schedule;
    let schedule = Schedule::parse("* * * * * *", chrono_tz::UTC).unwrap();
    let after: DateTime<Utc> = "2026-11-26T18:00:00.250Z".parse().unwrap();
    let jitter = Duration::from_secs(3);
    let (due, fire_at) = next_fire(&schedule, "alpha", jitter, after).unwrap();
    assert_eq!(
        due,
        "2026-11-26T18:00:01Z".parse::<DateTime<Utc>>().unwrap()
    );
    let offset = chrono::Duration::from_std(jitter_offset("alpha", jitter)).unwrap();
    assert_eq!(fire_at, due + offset);

    let fire_at = Utc::now() + chrono::Duration::milliseconds(60);
    let mut wakes = 0;
    sleep_until_due(fire_at, || wakes += 1).await;
    assert!(Utc::now() >= fire_at, "returned before the instant");
    assert!(wakes >= 1, "the wake hook was not called");
}

/// Counts the records the daemon announces to its observers.
#[derive(Default)]
struct Announced(std::sync::Mutex<Vec<RunRecord>>);
impl jellyfin_export_scheduler::daemon::DaemonObserver for Announced {
    fn run_recorded(
        &self,
        _server: &jellyfin_export_scheduler::config::ServerConfig,
        record: &RunRecord,
    ) {
        self.0.lock().unwrap().push(record.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_because_another_process_holds_the_server_is_recorded_and_announced() {
    let sim = simulator(vec![sim_server("busy", 100)]).await;
    let dir = tempfile::tempdir().unwrap();
    let soon = at(Utc::now() + chrono::Duration::seconds(2));
    let cfg = config(
        dir.path(),
        "",
        &[(
            "busy",
            sim.url("busy"),
            &format!("{soon}\ncatch_up = \"none\""),
        )],
    );
    let state = StateDir::open(dir.path()).unwrap();
    // A manual `trigger` elsewhere holds the server.
    let _held = jellyfin_export_scheduler::state::ServerLock::acquire(
        &state,
        "busy",
        "manual trigger run x",
    )
    .unwrap();
    let announced = std::sync::Arc::new(Announced::default());
    let handle = start_observed(cfg, vec![announced.clone()]).await;
    let recs = wait_for_records(dir.path(), "busy", 1, Duration::from_secs(10)).await;
    stop(handle).await;
    assert_eq!(recs[0].outcome, Outcome::Skipped, "{recs:#?}");
    assert!(
        recs[0].reason.as_deref().unwrap_or("").contains("is busy"),
        "{recs:#?}"
    );
    let seen = announced.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "observers hear of the skip once: {seen:#?}");
    assert_eq!(seen[0].run_id, recs[0].run_id);
    assert!(sim.server("busy").start_requests().is_empty());
}

/// Regression: a run left in flight (here by a `trigger --no-wait`) that the daemon
/// finished before its next run was only logged. Its record now reaches the board and the
/// observers like any other, and a disk that refuses it keeps it for a later write (here
/// the drain at shutdown), as for a run resumed at start-up; before, the next run's marker
/// replaced the left-over run's and the run was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_over_run_finished_before_a_new_run_is_announced_and_kept_when_the_disk_is_full() {
    let full = Path::new("/dev/full");
    assert!(
        full.exists(),
        "this test fills the disk with /dev/full, which is missing here"
    );
    let sim = simulator(vec![sim_server("lo", 300)]).await;
    let dir = tempfile::tempdir().unwrap();
    let soon = at(Utc::now() + chrono::Duration::seconds(3));
    let cfg = config(
        dir.path(),
        "",
        &[("lo", sim.url("lo"), &format!("{soon}\ncatch_up = \"none\""))],
    );
    let server = cfg.servers[0].clone();
    let state = StateDir::open(dir.path()).unwrap();
    let announced = std::sync::Arc::new(Announced::default());
    let handle = start_observed(cfg, vec![announced.clone()]).await;
    // `trigger lo --no-wait`, as another process: the run starts and its marker stays.
    let left_over = {
        let _lock =
            jellyfin_export_scheduler::state::ServerLock::acquire(&state, "lo", "manual trigger")
                .unwrap();
        let client =
            JellyfinClient::new("lo", &server.url, &server.api_key, server.request_timeout)
                .unwrap();
        let now = Utc::now();
        let request = RunRequest {
            run_id: new_run_id(now),
            trigger: Trigger::Manual,
            scheduled_for: None,
            triggered_at: now,
        };
        let end = Runner::new(&state)
            .run(&client, &server, &request, &mut NoEvents, Wait::StartOnly)
            .await;
        assert!(matches!(end, RunEnd::Started(Ok(()))), "{end:?}");
        request.run_id
    };
    // The disk is full when the daemon records the runs.
    std::os::unix::fs::symlink(full, state.history_dir().join("lo.jsonl")).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the observers heard of the left-over run and of the new run",
        || announced.0.lock().unwrap().len() >= 2,
    )
    .await;
    let heard: Vec<String> = announced
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.run_id.clone())
        .collect();
    assert!(heard.contains(&left_over), "{heard:?}");
    let board = handle.status.get("lo").unwrap();
    assert_eq!(
        board.runs_total.get(&Outcome::Completed),
        Some(&2),
        "both runs on the board: {:?}",
        board.runs_total
    );
    // The disk recovers; the drain writes the records that were kept.
    std::fs::remove_file(state.history_dir().join("lo.jsonl")).unwrap();
    stop(handle).await;
    let recs = records(dir.path(), "lo");
    let ids: Vec<&str> = recs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{recs:#?}");
    assert!(ids.contains(&left_over.as_str()), "{recs:#?}");
    assert!(
        Markers::new(&state).read("lo").unwrap().is_none(),
        "no marker left"
    );
}
