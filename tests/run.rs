//! One run against the simulated Jellyfin: every outcome, the awkward cases of
//! docs/jellyfin-api.md, and what travels on the wire.
//!
//! Durations are tens to hundreds of milliseconds so the file runs in seconds; every wait
//! is bounded and fails with a sentence.

use jellyfin_export_scheduler::config::{IfRunning, ServerConfig};
use jellyfin_export_scheduler::jellyfin::JellyfinClient;
use jellyfin_export_scheduler::record::{Outcome, RunRecord};
use jellyfin_export_scheduler::runner::track::{self, NoEvents};
use jellyfin_export_scheduler::sim::{
    CANCELED, CancelMode, Endpoint, Fault, FaultRule, Mode, PluginStatus, Requests, RunOutcome,
    SimServerConfig, SimTask, Simulator, TaskState,
};
use std::time::Duration;

mod common;

use common::wait::wait_until;

const KEY: &str = "5f4dcc3b5aa765d61d8327deb882cf99";

/// A server config as the config file would give it, with short test timings.
fn server_config(url: &str, key: &str) -> ServerConfig {
    let text = format!(
        r#"[[servers]]
name = "t"
url = "{url}"
api_key = "{key}"
schedule = "@daily"
timezone = "UTC"
poll_interval = "20ms"
start_grace = "600ms"
timeout = "10s"
request_timeout = "2s"
retries = 2
retry_backoff = "30ms"
"#
    );
    common::config::parse(&text).servers.remove(0)
}

fn sim_server(f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    let mut c = SimServerConfig::new("t", KEY);
    c.start_delay = Duration::from_millis(30);
    c.run_length = Duration::from_millis(200);
    c.result_delay = Duration::from_millis(40);
    c.zip_base64_len = 4096;
    f(&mut c);
    c
}

async fn start_sim(cfg: SimServerConfig) -> Simulator {
    common::sim::simulator(vec![cfg]).await
}

/// One run through the runner, as the daemon and `trigger` run it, on a fresh state
/// directory: its record.
async fn run_once(server: &ServerConfig) -> RunRecord {
    let dir = tempfile::tempdir().unwrap();
    let request = common::runs::manual_request();
    common::runs::run_on(dir.path(), server, &request, Duration::from_secs(30)).await
}

async fn run_against(sim: &Simulator, tweak: impl FnOnce(&mut ServerConfig)) -> RunRecord {
    let mut server = server_config(&sim.url("t"), KEY);
    tweak(&mut server);
    run_once(&server).await
}

/// Start a run of `server` with the track module alone (no runner, no marker): its client
/// and the start, or the test fails.
async fn start_run(server: &ServerConfig) -> (JellyfinClient, track::Started) {
    let client = JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )
    .unwrap();
    match track::start(&client, server, &mut NoEvents).await {
        track::StartResult::Started(s) => (client, s),
        other => panic!("expected a start, got {other:?}"),
    }
}

fn reason(r: &RunRecord) -> &str {
    r.reason.as_deref().unwrap_or("")
}

#[tokio::test]
async fn completed_run_records_jellyfin_times_and_the_export_path() {
    let sim = start_sim(sim_server(|_| {})).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Completed"));
    assert!(r.reason.is_none());
    assert_eq!(r.attempts, 1);
    assert!(
        r.export_path
            .as_deref()
            .unwrap_or("")
            .contains("/plugins/Migrator/exports/"),
        "{r:?}"
    );
    let (start, end) = (r.started_at.unwrap(), r.finished_at.unwrap());
    assert!(end > start && start >= r.triggered_at - chrono::Duration::seconds(1));
    assert_eq!(r.duration_ms, Some((end - start).num_milliseconds() as u64));
    assert_eq!(sim.server("t").start_requests().len(), 1);
}

#[tokio::test]
async fn failed_run_gives_jellyfins_error_message() {
    let sim = start_sim(sim_server(|c| {
        c.outcome = RunOutcome::Failed;
        c.error_message = "Export failed: No space left on device".into();
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.jellyfin_status.as_deref(), Some("Failed"));
    assert!(reason(&r).contains("No space left on device"), "{r:?}");
}

#[tokio::test]
async fn completed_with_error_in_export_log_is_failed() {
    let sim = start_sim(sim_server(|c| {
        c.outcome = RunOutcome::CompletedWithLogError;
        c.error_message = "cannot write watch_history/bob.json".into();
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Completed"));
    assert!(reason(&r).contains("ERROR:"), "{r:?}");
    assert!(
        reason(&r).contains("cannot write watch_history/bob.json"),
        "{r:?}"
    );
    assert!(r.export_path.is_none());
}

#[tokio::test]
async fn verification_off_takes_jellyfins_completed_as_it_is() {
    let sim = start_sim(sim_server(|c| {
        c.outcome = RunOutcome::CompletedWithLogError
    }))
    .await;
    let r = run_against(&sim, |s| s.verify_export = false).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert!(
        !sim.server("t")
            .requests()
            .iter()
            .skip_while(|q| q.endpoint != Endpoint::StartTask)
            .any(|q| q.endpoint == Endpoint::PluginConfig),
        "the configuration is not read after the run"
    );
}

/// DELETE the running task `task_id` on server "t" as someone in the dashboard would,
/// once it is Running.
fn cancel_from_the_dashboard(sim: &Simulator, task_id: &str) -> tokio::task::JoinHandle<u16> {
    let handle = sim.server("t");
    let url = format!("{}/ScheduledTasks/Running/{task_id}", sim.url("t"));
    tokio::spawn(async move {
        wait_until(Duration::from_secs(5), "the task is Running", || {
            handle.task_state().state == TaskState::Running
        })
        .await;
        reqwest::Client::new()
            .delete(url)
            .header("Authorization", format!("MediaBrowser Token=\"{KEY}\""))
            .send()
            .await
            .expect("cancel request")
            .status()
            .as_u16()
    })
}

#[tokio::test]
async fn a_migrator_run_cancelled_by_someone_else_is_cancelled_though_jellyfin_says_completed() {
    let sim = start_sim(sim_server(|c| c.run_length = Duration::from_secs(3))).await;
    let canceller = cancel_from_the_dashboard(&sim, "d6eb93f1d1591e7d5e6c70f1d25e6fdd");
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(canceller.await.unwrap(), 204);
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(
        r.jellyfin_status.as_deref(),
        Some("Completed"),
        "the plugin swallows its cancellation"
    );
    assert!(
        reason(&r).starts_with(
            "the run was cancelled on the server (not by this scheduler): the plugin stopped after running "
        ),
        "{r:?}"
    );
    assert!(
        reason(&r).contains(&format!("Export failed: {CANCELED}")),
        "{r:?}"
    );
    assert!(
        r.export_path.is_none(),
        "a cancelled export is not an export"
    );
}

#[tokio::test]
async fn another_task_cancelled_by_someone_else_ends_cancelled() {
    let sim = start_sim(sim_server(|c| {
        c.task = SimTask::ScanMediaLibrary;
        c.run_length = Duration::from_secs(3);
    }))
    .await;
    let canceller = cancel_from_the_dashboard(&sim, SimTask::ScanMediaLibrary.id());
    let r = run_against(&sim, |s| s.task_key = "RefreshLibrary".into()).await;
    assert_eq!(canceller.await.unwrap(), 204);
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Cancelled"));
    assert_eq!(
        reason(&r),
        "the task was cancelled on the server (not by this scheduler)"
    );
}

#[tokio::test]
async fn graceful_restart_mid_run_is_aborted() {
    let sim = start_sim(sim_server(|c| {
        c.run_length = Duration::from_secs(2);
        c.restart_after = Some(Duration::from_millis(100));
        c.downtime = Duration::from_millis(300);
        c.retry_after = Some(0);
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Aborted, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Aborted"));
}

#[tokio::test]
async fn crash_mid_run_is_lost() {
    let sim = start_sim(sim_server(|c| {
        c.run_length = Duration::from_secs(2);
        c.crash_after = Some(Duration::from_millis(100));
        c.downtime = Duration::from_millis(300);
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Lost, "{r:?}");
    assert!(reason(&r).contains("without a new result"), "{r:?}");
}

#[tokio::test]
async fn timeout_cancels_and_the_migrator_stops_so_the_reason_says_it_stopped() {
    let sim = start_sim(sim_server(|c| c.run_length = Duration::from_secs(20))).await;
    let r = run_against(&sim, |s| s.timeout = Duration::from_millis(300)).await;
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert_eq!(
        r.jellyfin_status.as_deref(),
        Some("Completed"),
        "the plugin swallows its cancellation"
    );
    assert!(
        reason(&r).starts_with(
            "did not finish within 300ms; cancel requested; the plugin stopped after running "
        ),
        "{r:?}"
    );
    assert!(
        reason(&r).contains("and Jellyfin recorded it as Completed; its log: ")
            && reason(&r).contains(CANCELED),
        "{r:?}"
    );
    assert!(!reason(&r).contains("did not honour"), "{r:?}");
    assert!(
        sim.server("t")
            .requests()
            .iter()
            .any(|q| q.endpoint == Endpoint::StopTask),
        "a DELETE was sent"
    );
}

#[tokio::test]
async fn timeout_with_another_task_records_how_it_reacted_to_the_cancel() {
    let sim = start_sim(sim_server(|c| {
        c.task = SimTask::ScanMediaLibrary;
        c.run_length = Duration::from_millis(700);
        c.cancel = CancelMode::Ignore;
    }))
    .await;
    let r = run_against(&sim, |s| {
        s.task_key = "RefreshLibrary".into();
        s.timeout = Duration::from_millis(200);
        s.start_grace = Duration::from_secs(3);
    })
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Completed"));
    assert!(
        reason(&r)
            .ends_with("cancel requested; it ended Completed (the task did not honour the cancel)"),
        "{r:?}"
    );

    // One that honours it ends Cancelled.
    sim.server("t").update(|c| {
        c.cancel = CancelMode::Honour;
        c.run_length = Duration::from_secs(20);
    });
    let r = run_against(&sim, |s| {
        s.task_key = "RefreshLibrary".into();
        s.timeout = Duration::from_millis(200);
    })
    .await;
    assert_eq!(
        (r.outcome, r.jellyfin_status.as_deref()),
        (Outcome::TimedOut, Some("Cancelled")),
        "{r:?}"
    );
    assert!(
        reason(&r).ends_with("cancel requested; it ended Cancelled"),
        "{r:?}"
    );
}

#[tokio::test]
async fn timeout_with_task_stuck_in_cancelling_gives_up_after_the_grace() {
    let sim = start_sim(sim_server(|c| {
        c.run_length = Duration::from_secs(20);
        c.cancel = CancelMode::Stuck;
    }))
    .await;
    let r = run_against(&sim, |s| {
        s.timeout = Duration::from_millis(200);
        s.start_grace = Duration::from_millis(300);
    })
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(reason(&r).contains("still Cancelling"), "{r:?}");
}

#[tokio::test]
async fn already_running_is_skipped_or_followed() {
    let sim = start_sim(sim_server(|c| {
        c.running_at_start = true;
        c.run_length = Duration::from_millis(400);
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Skipped, "{r:?}");
    assert!(reason(&r).contains("already Running"), "{r:?}");
    assert!(
        sim.server("t").start_requests().is_empty(),
        "no start was sent"
    );

    sim.server("t").start_run_now();
    let r = run_against(&sim, |s| s.if_running = IfRunning::Follow).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.attempts, 0);
    assert!(
        sim.server("t").start_requests().is_empty(),
        "following sends no start"
    );
}

#[tokio::test]
async fn queued_follow_up_run_does_not_confuse_tracking() {
    let sim = start_sim(sim_server(|c| {
        c.follow_ups = 1;
        c.follow_up_delay = Duration::from_millis(10);
        c.result_delay = Duration::from_millis(5);
        c.run_length = Duration::from_millis(150);
    }))
    .await;
    // A slow poll makes it likely the follow-up is already Running at the first look
    // after our run ends.
    let r = run_against(&sim, |s| s.poll_interval = Duration::from_millis(120)).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let started = r.started_at.unwrap();
    let first_run_start = sim.server("t").start_requests()[0];
    let first_run_start: chrono::DateTime<chrono::Utc> = first_run_start.into();
    assert!(
        (started - first_run_start).num_milliseconds().abs() < 150,
        "the record describes our run (started {started}), not the follow-up"
    );
}

#[tokio::test]
async fn a_huge_import_upload_in_the_configuration_is_skipped_while_streaming() {
    // 28 million characters: a 21 MB ZIP uploaded on the Import tab once, and kept.
    let sim = start_sim(sim_server(|c| c.import_zip_base64_len = 28_000_000)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert!(r.export_path.is_some(), "{r:?}");
}

#[tokio::test]
async fn the_preflight_stops_reading_the_configuration_once_it_has_mode_and_the_shape() {
    // The first read of the configuration (the preflight's) breaks off half-way through
    // its body, inside the 64 KiB ZIP: Mode and the shape fields are long past by then,
    // so a reader that stops once it has them never meets the break and the run starts.
    let sim = start_sim(sim_server(|c| {
        c.zip_base64_len = 64 * 1024;
        c.faults.push(FaultRule::new(
            Some(Endpoint::PluginConfig),
            Requests::nth(1),
            Fault::ResetMidBody,
        ));
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    // One read before the start: a reader that went on to the break would have failed
    // and read again (the retry of a transient failure).
    let before_start: Vec<Endpoint> = sim
        .server("t")
        .requests()
        .iter()
        .map(|q| q.endpoint)
        .take_while(|e| *e != Endpoint::StartTask)
        .collect();
    assert_eq!(before_start, [Endpoint::TaskList, Endpoint::PluginConfig]);
}

#[tokio::test]
async fn following_checks_the_mode_first_and_never_records_an_import_or_verify_as_completed() {
    for mode in [Mode::Import, Mode::Verify] {
        let sim = start_sim(sim_server(|c| {
            c.mode = mode;
            c.running_at_start = true;
            c.run_length = Duration::from_millis(400);
        }))
        .await;
        let r = run_against(&sim, |s| s.if_running = IfRunning::Follow).await;
        assert_eq!(r.outcome, Outcome::Skipped, "{mode:?}: {r:?}");
        let word = mode.as_jellyfin();
        assert!(
            reason(&r).contains(&format!("Mode = {word}, so that run is "))
                && reason(&r).contains(&format!(
                    " {word} (the plugin reads Mode when a run starts), not an export"
                ))
                && reason(&r).contains("was not followed"),
            "{r:?}"
        );
        assert!(sim.server("t").start_requests().is_empty());
    }

    // The mode was put back to Export while an Import ran: the run is followed, and its
    // log's first line tells it was an Import.
    let sim = start_sim(sim_server(|c| {
        c.mode = Mode::Import;
        c.running_at_start = true;
        c.run_length = Duration::from_millis(400);
    }))
    .await;
    sim.server("t").set_mode(Mode::Export);
    let r = run_against(&sim, |s| s.if_running = IfRunning::Follow).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert_eq!(r.jellyfin_status.as_deref(), Some("Completed"));
    assert!(
        reason(&r).starts_with("the run was an Import, not an export: its log begins \""),
        "{r:?}"
    );
    assert!(reason(&r).contains(" Migrator Import started\""), "{r:?}");
    assert!(r.export_path.is_none());
}

#[tokio::test]
async fn mode_is_read_like_the_plugin_reads_it() {
    let sim = start_sim(sim_server(|c| c.mode_text = Some(" export ".into()))).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    for (saved, refused) in [
        (
            " IMPORT ",
            "Mode = \" IMPORT \", so its task would run an Import instead of an export",
        ),
        (
            "verify",
            "Mode = \"verify\", so its task would run a Verify instead of an export",
        ),
        (
            "Verify",
            "Mode = Verify, so its task would run a Verify instead of an export",
        ),
    ] {
        sim.server("t").set_mode_text(saved);
        sim.server("t").clear_requests();
        let r = run_against(&sim, |_| {}).await;
        assert_eq!(r.outcome, Outcome::Skipped, "{saved:?}: {r:?}");
        assert!(reason(&r).contains(refused), "{saved:?}: {r:?}");
        assert!(sim.server("t").start_requests().is_empty(), "{saved:?}");
    }
    for anything_else in ["", "Backup", "exporter"] {
        sim.server("t").set_mode_text(anything_else);
        let r = run_against(&sim, |_| {}).await;
        assert_eq!(
            r.outcome,
            Outcome::Completed,
            "{anything_else:?} runs an export: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_configuration_without_the_migrators_shape_is_trigger_failed_naming_what_is_missing() {
    let sim = start_sim(sim_server(|c| c.plugin_id_collision = true)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed, "{r:?}");
    assert!(
        reason(&r).contains(
            "the configuration served for the Migrator's plugin id is not the Migrator's: it has no Mode, IncludeUsers, IncludeLibraries, IncludeWatchHistory, IncludeDevices"
        ),
        "{r:?}"
    );
    assert!(
        reason(&r).contains("/Plugins lists Migrator 1.0.0.0 and Template 1.0.0.0"),
        "{r:?}"
    );
    assert_eq!(r.attempts, 0, "not retried, nothing started");
    assert!(sim.server("t").start_requests().is_empty());
}

#[tokio::test]
async fn an_error_line_fails_the_run_and_a_zip_failure_alone_only_fails_the_archive() {
    let sim = start_sim(sim_server(|c| c.zip_fails = true)).await;
    let r = run_against(&sim, |s| s.archive.enabled = false).await;
    assert_eq!(
        r.outcome,
        Outcome::Completed,
        "the ZIP's error is not in LastExportLog: {r:?}"
    );
    // With the archive (the default), the stale ZIP is caught: see tests/archive.rs.
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(
        reason(&r).starts_with("exported on the server, but not archived: "),
        "{r:?}"
    );
    let sim = start_sim(sim_server(|c| {
        c.outcome = RunOutcome::CompletedWithLogError;
        c.error_message = "database is locked".into();
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(
        reason(&r).starts_with("the export log reports an error: \"")
            && reason(&r).contains(
                " ERROR: Failed to export watch history: database is locked: database is locked\""
            ),
        "{r:?}"
    );
}

#[tokio::test]
async fn another_task_runs_without_reading_the_migrators_configuration() {
    let sim = start_sim(sim_server(|c| c.task = SimTask::CleanLogDirectory)).await;
    let r = run_against(&sim, |s| s.task_key = "CleanLogFiles".into()).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert!(r.export_path.is_none());
    assert!(
        !sim.server("t")
            .requests()
            .iter()
            .any(|q| q.endpoint == Endpoint::PluginConfig)
    );
}

#[tokio::test]
async fn import_mode_is_refused_and_nothing_starts() {
    let sim = start_sim(sim_server(|c| c.mode = Mode::Import)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Skipped);
    assert!(reason(&r).contains("Mode = Import"), "{r:?}");
    assert!(reason(&r).contains("set the mode back to Export"), "{r:?}");
    assert!(sim.server("t").start_requests().is_empty());
}

#[tokio::test]
async fn missing_or_inactive_plugin_is_trigger_failed_with_what_plugins_reports() {
    let sim = start_sim(sim_server(|c| c.plugin = PluginStatus::Missing)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(
        reason(&r).contains("task JellyfinMigratorExport not found on t: is the Migrator plugin installed and Active?"),
        "{r:?}"
    );
    assert!(reason(&r).contains("no Migrator plugin"), "{r:?}");
    assert_eq!(r.attempts, 0, "not retried");

    let sim = start_sim(sim_server(|c| c.plugin = PluginStatus::Malfunctioned)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(reason(&r).contains("status Malfunctioned"), "{r:?}");
}

#[tokio::test]
async fn refused_and_non_admin_keys_are_trigger_failed_without_retries() {
    let sim = start_sim(sim_server(|c| c.user_key = Some("userkey000".into()))).await;
    let mut server = server_config(&sim.url("t"), "wrongkey000");
    let r = run_once(&server).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(
        reason(&r).contains(
            "the API key was refused (revoked, or the server no longer accepts this auth method)"
        ),
        "{r:?}"
    );
    server = server_config(&sim.url("t"), "userkey000");
    let r = run_once(&server).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(
        reason(&r).contains("the key is not an administrator's"),
        "{r:?}"
    );
    // One task-list request per run: 401/403 are not retried.
    let lists = sim
        .server("t")
        .requests()
        .iter()
        .filter(|q| q.endpoint == Endpoint::TaskList)
        .count();
    assert_eq!(lists, 2);
}

#[tokio::test]
async fn unreachable_server_is_retried_then_trigger_failed() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = server_config(&format!("http://127.0.0.1:{port}"), KEY);
    let r = run_once(&server).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(
        reason(&r).contains(&format!("cannot reach t at 127.0.0.1:{port}")),
        "{r:?}"
    );
    assert!(
        reason(&r).contains("refused"),
        "the OS error is named: {r:?}"
    );
    assert!(reason(&r).contains("gave up after 3 tries"), "{r:?}");
}

#[tokio::test]
async fn server_starting_with_503_is_retried_until_it_answers() {
    let sim = start_sim(sim_server(|c| {
        c.starting_for = Duration::from_millis(60);
        c.retry_after = Some(0);
    }))
    .await;
    let r = run_against(&sim, |s| {
        s.retries = 5;
        s.retry_backoff = Duration::from_millis(40);
    })
    .await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
}

#[tokio::test]
async fn transient_faults_while_tracking_are_ridden_out() {
    let sim = start_sim(sim_server(|c| {
        c.run_length = Duration::from_millis(300);
        c.faults = vec![
            FaultRule::new(Some(Endpoint::Task), Requests::range(2, 3), Fault::Garbage),
            FaultRule::new(Some(Endpoint::Task), Requests::nth(4), Fault::Drop),
            FaultRule::new(Some(Endpoint::Task), Requests::nth(5), Fault::TruncatedJson),
            FaultRule::new(Some(Endpoint::Task), Requests::nth(6), Fault::ResetMidBody),
            FaultRule::new(Some(Endpoint::Task), Requests::nth(7), Fault::ServerError),
            FaultRule::new(Some(Endpoint::Task), Requests::nth(8), Fault::UnknownEnums),
        ];
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
}

#[tokio::test]
async fn a_dropped_start_answer_is_retried_without_starting_twice() {
    // The start is processed but its answer never arrives; the retry must see the task
    // running and adopt it rather than report skipped or start it again.
    let sim = start_sim(sim_server(|c| {
        c.run_length = Duration::from_millis(400);
        c.faults = vec![FaultRule::new(
            Some(Endpoint::StartTask),
            Requests::nth(1),
            Fault::DropAfterProcessing,
        )];
    }))
    .await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(sim.server("t").task_state().runs_started, 1);
}

#[tokio::test]
async fn task_that_vanishes_mid_run_is_lost() {
    let sim = start_sim(sim_server(|c| c.task_vanishes = true)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Lost, "{r:?}");
    assert!(reason(&r).contains("disappeared"), "{r:?}");
}

#[tokio::test]
async fn duplicate_task_key_is_refused() {
    let sim = start_sim(sim_server(|c| c.duplicate_task_key = true)).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(
        reason(&r).contains("2 tasks with key JellyfinMigratorExport"),
        "{r:?}"
    );
}

#[tokio::test]
async fn task_that_never_leaves_idle_is_lost() {
    // A start delay longer than the grace: Jellyfin said 204 but nothing happens in time.
    let sim = start_sim(sim_server(|c| c.start_delay = Duration::from_secs(5))).await;
    let r = run_against(&sim, |s| s.start_grace = Duration::from_millis(200)).await;
    assert_eq!(r.outcome, Outcome::Lost, "{r:?}");
    assert!(reason(&r).contains("never ran"), "{r:?}");
}

#[tokio::test]
async fn base_path_and_root_urls_both_work() {
    let mut cfg = sim_server(|_| {});
    cfg.root = true;
    let sim = start_sim(cfg).await;
    let r = run_once(&server_config(&sim.root_url(), KEY)).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let r = run_once(&server_config(&format!("{}/", sim.url("t")), KEY)).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
}

#[tokio::test]
async fn the_key_travels_only_in_the_authorization_header() {
    let sim = start_sim(sim_server(|_| {})).await;
    let r = run_against(&sim, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Completed);
    let requests = sim.server("t").requests();
    assert!(requests.len() >= 4);
    for q in &requests {
        let auth = q.header("authorization").unwrap_or("");
        assert!(
            auth.starts_with("MediaBrowser Client=\"jellyfin-export-scheduler\", Version=\"")
                && auth.ends_with(&format!("Token=\"{KEY}\"")),
            "{auth}"
        );
        let ua = q.header("user-agent").unwrap_or("");
        assert!(ua.starts_with("jellyfin-export-scheduler/"), "{ua}");
        assert!(
            !q.path.contains(KEY) && !q.query.contains(KEY),
            "key in the URL: {}?{}",
            q.path,
            q.query
        );
        for (name, value) in &q.headers {
            if !name.eq_ignore_ascii_case("authorization") {
                assert!(!value.contains(KEY), "key in header {name}");
            }
        }
    }
    let record = serde_json::to_string(&r).unwrap();
    assert!(!record.contains(KEY));
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_key_does_not_leave() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // "Another host": a listener that records whatever reaches it.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let reached_other = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = reached_other.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = other.accept().await {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = redirector.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = redirector.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{other_addr}/ScheduledTasks\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let r = run_once(&server_config(&format!("http://{addr}"), KEY)).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(reason(&r).contains("302 redirecting to http://"), "{r:?}");
    assert!(reason(&r).contains("redirects are not followed"), "{r:?}");
    assert!(
        !reached_other.load(std::sync::atomic::Ordering::SeqCst),
        "nothing reached the redirect target"
    );
}

#[tokio::test]
async fn oversized_answers_are_cut_off_with_a_clear_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n[";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..1600 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let r = run_once(&server_config(&format!("http://{addr}"), KEY)).await;
    assert_eq!(r.outcome, Outcome::TriggerFailed);
    assert!(reason(&r).contains("sent more than 4194304 bytes"), "{r:?}");
}

#[tokio::test]
async fn resuming_a_run_records_its_real_outcome_or_interrupted_when_the_task_is_gone() {
    // A run started by an "earlier process": start only, then resume tracking from what a
    // marker would hold.
    let sim = start_sim(sim_server(|c| c.run_length = Duration::from_millis(300))).await;
    let server = server_config(&sim.url("t"), KEY);
    let (client, started) = start_run(&server).await;
    let ended = track::resume(&client, &server, &started, &mut NoEvents, None).await;
    assert_eq!(ended.outcome, Outcome::Completed, "{ended:?}");

    // A resumed run that ended while nobody watched still gets its real outcome, even when
    // its timeout has passed by now.
    let mut late = server.clone();
    late.timeout = Duration::from_millis(1);
    let ended = track::resume(&client, &late, &started, &mut NoEvents, None).await;
    assert_eq!(ended.outcome, Outcome::Completed, "{ended:?}");

    let sim = start_sim(sim_server(|c| c.task_vanishes = true)).await;
    let server = server_config(&sim.url("t"), KEY);
    let (client, started) = start_run(&server).await;
    let ended = track::resume(&client, &server, &started, &mut NoEvents, None).await;
    assert_eq!(ended.outcome, Outcome::Interrupted, "{ended:?}");
    assert!(ended.reason.unwrap().contains("no longer exists"));
}

#[tokio::test]
async fn a_started_run_is_first_looked_at_one_poll_interval_later_and_a_resumed_one_at_once() {
    // The export ends about 270 ms after its start, before the first look.
    let sim = start_sim(sim_server(|_| {})).await;
    let mut server = server_config(&sim.url("t"), KEY);
    server.poll_interval = Duration::from_millis(400);
    server.timeout = Duration::from_secs(10);
    let (client, started) = start_run(&server).await;
    let ended = track::track(&client, &server, &started, &mut NoEvents, None).await;
    assert_eq!(ended.outcome, Outcome::Completed, "{ended:?}");
    let requests = sim.server("t").requests();
    let arrival = |endpoint: Endpoint| {
        requests
            .iter()
            .find(|r| r.endpoint == endpoint)
            .map(|r| r.at)
            .unwrap_or_else(|| panic!("no {endpoint:?} request reached the server"))
    };
    let after_start = arrival(Endpoint::Task)
        .duration_since(arrival(Endpoint::StartTask))
        .unwrap_or_default();
    assert!(
        after_start >= server.poll_interval,
        "the first look came {after_start:?} after the start request, before poll_interval ({:?})",
        server.poll_interval
    );

    // A run resumed after a restart may have ended while nobody watched: it is looked at at
    // once, not an hour later.
    let sim = start_sim(sim_server(|_| {})).await;
    let mut server = server_config(&sim.url("t"), KEY);
    server.poll_interval = Duration::from_secs(3600);
    server.timeout = Duration::from_secs(7200);
    let before = sim.server("t").task_state().last_result;
    let (client, started) = start_run(&server).await;
    let handle = sim.server("t");
    wait_until(
        Duration::from_secs(10),
        "the export ended on the server",
        || {
            let view = handle.task_state();
            view.state == TaskState::Idle
                && view.last_result.is_some()
                && view.last_result != before
        },
    )
    .await;
    let resumed = tokio::time::timeout(
        Duration::from_secs(30),
        track::resume(&client, &server, &started, &mut NoEvents, None),
    )
    .await
    .expect("a resumed run was not looked at at once: it waited for poll_interval (1 h)");
    assert_eq!(resumed.outcome, Outcome::Completed, "{resumed:?}");
}
