//! The real `run` binary: signals, exit codes, the instance lock, markers across restarts,
//! and the JSON log lines. The simulated Jellyfin runs in the test process.

use jellyfin_export_scheduler::sim::SimServerConfig;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::bin::{Daemon, bin, bin_async, command_with_nofile};
use common::config::ConfigFile;
use common::proc::{open_file_limits, status_value};
use common::records::{history_json, marker_json};
use common::sim::{sim_server, simulator};
use common::wait::wait_until;

/// A config file for one server `s` at `server_url` on `schedule`; the daemon logs JSON at
/// debug level and listens on a free port.
fn env_with(server_url: &str, schedule: &str, extra_daemon: &str) -> ConfigFile {
    let daemon = format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"debug\"\n{extra_daemon}"
    );
    let schedule = format!("schedule = \"{schedule}\"");
    ConfigFile::quick(&daemon, "", &[("s", server_url.to_owned(), &schedule)])
}

/// Daemon number `n`'s log.
fn log_path(env: &ConfigFile, n: usize) -> PathBuf {
    env.dir.path().join(format!("daemon-{n}.log"))
}

fn spawn(env: &ConfigFile, n: usize) -> Daemon {
    Daemon::run(&env.path, &log_path(env, n))
}

fn history(state: &Path) -> Vec<serde_json::Value> {
    history_json(state, "s")
}

fn marker(state: &Path) -> Option<serde_json::Value> {
    marker_json(state, "s")
}

fn log_text(env: &ConfigFile, n: usize) -> String {
    std::fs::read_to_string(log_path(env, n)).unwrap_or_default()
}

/// Stop one daemon in the middle of a run with `sig`, start another, and check the run's
/// real outcome is recorded exactly once.
async fn interrupted_run_is_recorded_once_after_restart(sig: &str) {
    let sim = simulator(vec![sim_server("s", |c| {
        c.run_length = Duration::from_millis(2500)
    })])
    .await;
    // The run must begin whatever the daemon's start takes on a busy machine, so it is a
    // catch-up, not a due instant a little ahead that a slow start would miss: the server
    // has run before (an earlier record), and its due instant passed a second ago.
    let missed = common::time::daily_in(-1000);
    let env = env_with(&sim.url("s"), &missed, "shutdown_grace = \"200ms\"");
    let state = env.state.clone();
    let earlier = common::records::ran_before(
        &state,
        "s",
        jellyfin_export_scheduler::record::Outcome::Skipped,
    );
    let mut first = spawn(&env, 1);
    wait_until(
        Duration::from_secs(10),
        "the first daemon wrote an in-flight marker",
        || marker(&state).is_some(),
    )
    .await;
    let run_id = marker(&state).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stopped_at = Instant::now();
    first.signal(sig);
    let code = first.wait_exit(Duration::from_secs(10)).await;
    if sig == "TERM" {
        assert_eq!(
            code,
            Some(0),
            "SIGTERM exits 0; log:\n{}",
            log_text(&env, 1)
        );
        assert!(
            stopped_at.elapsed() < Duration::from_secs(3),
            "exit within the grace"
        );
        let log = log_text(&env, 1);
        assert!(log.contains("left in flight"), "{log}");
    }
    assert!(marker(&state).is_some(), "the marker outlives the daemon");
    assert_eq!(history(&state).len(), 1, "the run is not recorded yet");

    let mut second = spawn(&env, 2);
    wait_until(
        Duration::from_secs(15),
        "the second daemon recorded the resumed run",
        || history(&state).len() > 1,
    )
    .await;
    second.signal("TERM");
    assert_eq!(second.wait_exit(Duration::from_secs(10)).await, Some(0));
    let records = history(&state);
    assert_eq!(
        records.len(),
        2,
        "the earlier record and one more: {records:#?}"
    );
    assert_eq!(records[0]["run_id"], earlier.run_id.as_str());
    assert_eq!(records[1]["run_id"], run_id.as_str());
    assert_eq!(records[1]["outcome"], "completed", "{records:#?}");
    assert_eq!(records[1]["trigger"], "catch_up", "{records:#?}");
    assert!(marker(&state).is_none());
    assert_eq!(
        sim.server("s").start_requests().len(),
        1,
        "the run was not started twice"
    );
    assert!(log_text(&env, 2).contains("resuming a run left in flight"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_exits_0_within_the_grace_and_the_next_start_records_the_run_once() {
    interrupted_run_is_recorded_once_after_restart("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_records_the_run_once() {
    interrupted_run_is_recorded_once_after_restart("KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let sim = simulator(vec![sim_server("s", |c| {
        c.run_length = Duration::from_millis(100);
        c.start_delay = Duration::from_millis(10);
        c.result_delay = Duration::from_millis(10);
    })])
    .await;
    let env = env_with(&sim.url("s"), "* * * * * *", "");
    let state = env.state.clone();
    let mut child = spawn(&env, 1);
    wait_until(Duration::from_secs(10), "a first record", || {
        !history(&state).is_empty()
    })
    .await;
    std::fs::write(
        &env.path,
        "[daemon]\nlog_format = \"xml\"\n[[servers]]\nname = 3\n",
    )
    .unwrap();
    child.signal("HUP");
    wait_until(
        Duration::from_secs(10),
        "the failed reload is logged",
        || log_text(&env, 1).contains("reload failed"),
    )
    .await;
    let after_reload = history(&state).len();
    wait_until(
        Duration::from_secs(10),
        "runs go on after the failed reload",
        || history(&state).len() >= after_reload + 2,
    )
    .await;
    let log = log_text(&env, 1);
    assert!(
        log.contains("daemon.log_format: \\\"xml\\\" is not one of"),
        "each problem is logged: {log}"
    );
    child.signal("TERM");
    assert_eq!(child.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let env = env_with("http://127.0.0.1:9", "0 0 3 * * *", "");
    let mut first = spawn(&env, 1);
    wait_until(
        Duration::from_secs(10),
        "the first daemon armed its schedules",
        || log_text(&env, 1).contains("schedules armed"),
    )
    .await;
    let mut second = spawn(&env, 2);
    let code = second.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(1));
    let log = log_text(&env, 2);
    assert!(
        log.contains(&format!(
            "another jellyfin-export-scheduler (pid {}) is already running on state directory",
            first.id()
        )),
        "{log}"
    );
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_server_and_run_id() {
    let sim = simulator(vec![SimServerConfig {
        run_length: Duration::from_millis(300),
        zip_base64_len: 1024,
        ..SimServerConfig::new("s", KEY)
    }])
    .await;
    let env = env_with(&sim.url("s"), "*/2 * * * * *", "");
    let state = env.state.clone();
    let mut child = spawn(&env, 1);
    wait_until(Duration::from_secs(10), "two records", || {
        history(&state).len() >= 2
    })
    .await;
    child.signal("TERM");
    assert_eq!(child.wait_exit(Duration::from_secs(10)).await, Some(0));
    let log = log_text(&env, 1);
    let mut seen = std::collections::HashSet::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        let msg = v["message"].as_str().unwrap();
        seen.insert(msg.to_owned());
        if [
            "next export",
            "run started",
            "run finished",
            "start accepted",
            "progress",
        ]
        .contains(&msg)
        {
            assert_eq!(v["server"], "s", "{line}");
        }
        if ["run started", "run finished", "start accepted", "progress"].contains(&msg) {
            assert!(
                v["run_id"].as_str().is_some_and(|s| s.len() == 20),
                "{line}"
            );
        }
        if msg == "run finished" {
            assert!(
                v["outcome"].is_string() && v["duration_ms"].is_u64(),
                "{line}"
            );
        }
        assert!(!line.contains(KEY), "the key leaked into the log: {line}");
    }
    for msg in [
        "starting",
        "schedules armed",
        "next export",
        "run started",
        "run finished",
        "progress",
        "stopped",
    ] {
        assert!(seen.contains(msg), "no {msg:?} line in:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_the_healthcheck_command() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = env_with("http://127.0.0.1:9", "0 0 3 * * *", "");
    let text = std::fs::read_to_string(&env.path).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    env.write(&text);
    let healthcheck = |env: &ConfigFile| bin(&["healthcheck", "--config", env.arg()]);
    let before = healthcheck(&env);
    assert_eq!(before.status.code(), Some(1), "no daemon yet");
    assert!(String::from_utf8_lossy(&before.stderr).contains("unhealthy: cannot reach"));

    let mut child = spawn(&env, 1);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "readyz never answered 200; log:\n{}",
            log_text(&env, 1)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.post(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405, "read-only");
    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let ok = bin_async(&["healthcheck", "--config", env.arg()]).await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    child.signal("TERM");
    assert_eq!(child.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_logged_scheduling_goes_on_and_records_are_written_once_it_recovers() {
    let sim = simulator(vec![sim_server("s", |c| {
        c.start_delay = Duration::from_millis(10);
        c.result_delay = Duration::from_millis(10);
    })])
    .await;
    let env = env_with(&sim.url("s"), "*/2 * * * * *", "");
    let state = env.state.clone();
    // A full file system, as the history file sees it: every write is ENOSPC.
    std::fs::create_dir_all(state.join("history")).unwrap();
    std::os::unix::fs::symlink("/dev/full", state.join("history/s.jsonl")).unwrap();
    let mut child = spawn(&env, 1);
    wait_until(Duration::from_secs(15), "the write error is logged", || {
        log_text(&env, 1).contains("No space left on device")
    })
    .await;
    let log = log_text(&env, 1);
    let line = log
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap();
    assert!(
        line.contains("history/s.jsonl") && line.contains("kept in memory"),
        "{line}"
    );
    wait_until(
        Duration::from_secs(15),
        "scheduling goes on while the disk is full",
        || sim.server("s").start_requests().len() >= 3,
    )
    .await;
    // The disk recovers.
    std::fs::remove_file(state.join("history/s.jsonl")).unwrap();
    let runs_so_far = sim.server("s").start_requests().len();
    wait_until(
        Duration::from_secs(40),
        "every run so far is written after the disk recovered",
        || {
            history(&state)
                .iter()
                .filter(|r| r["outcome"] == "completed")
                .count()
                >= runs_so_far
        },
    )
    .await;
    child.signal("TERM");
    assert_eq!(child.wait_exit(Duration::from_secs(10)).await, Some(0));
    let records = history(&state);
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a run was recorded twice: {records:#?}");
    let completed = records
        .iter()
        .filter(|r| r["outcome"] == "completed")
        .count();
    assert_eq!(
        completed,
        sim.server("s").start_requests().len(),
        "one record per started run"
    );
    assert!(log_text(&env, 1).contains("record written after an earlier failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_endpoint_the_open_file_limit_is_raised_and_the_table_grown_for_the_fleet() {
    // 200 servers due daily (never here), all allowed to run at once, `listen = ""`,
    // started with a soft limit of 512: that fleet due at once needs more than 512
    // descriptors.
    let names: Vec<String> = (0..200).map(|i| format!("s{i:03}")).collect();
    let servers: Vec<(&str, String, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "http://127.0.0.1:9".to_owned(), ""))
        .collect();
    let env = ConfigFile::quick(
        "listen = \"\"\nmax_concurrent_runs = 200",
        "schedule = \"@daily\"",
        &servers,
    );
    let (_, hard) = open_file_limits(std::process::id());
    let hard: u64 = hard.parse().unwrap_or(1 << 20);
    assert!(
        hard >= 1024,
        "this test needs an open-file hard limit of at least 1024 (it is {hard}; raise it with ulimit -Hn)"
    );
    let mut cmd = command_with_nofile(512, hard, ["run", "--config", env.arg()]);
    let mut daemon = Daemon::spawn(&mut cmd, &log_path(&env, 1));
    wait_until(
        Duration::from_secs(20),
        "the daemon armed its schedules",
        || log_text(&env, 1).contains("schedules armed"),
    )
    .await;
    let (soft_now, _) = open_file_limits(daemon.id());
    assert_eq!(
        soft_now,
        hard.to_string(),
        "the soft open-file limit was raised to the hard one without the endpoint:\n{}",
        log_text(&env, 1)
    );
    // 3 per run that may go at once, plus 64.
    let table = status_value(daemon.id(), "FDSize");
    assert!(
        table >= 200 * 3 + 64,
        "the descriptor table has {table} slots once the 200 servers are armed"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)).await, Some(0));
}
