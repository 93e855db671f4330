//! The real `run` binary: signals, exit codes, the instance lock, markers across restarts,
//! and the JSON log lines. The simulated Jellyfin runs in the test process.

use jellyfin_export_scheduler::sim::{SimServerConfig, Simulator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jellyfin-export-scheduler");
const KEY: &str = "9e107d9d372bb6826bd81d3542a419d6";

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn log(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("daemon-{n}.log"))
    }
}

fn env_with(server_url: &str, schedule: &str, extra_daemon: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"debug\"\n{extra_daemon}\n\n[[servers]]\nname = \"s\"\nurl = \"{server_url}\"\napi_key = \"{KEY}\"\nschedule = \"{schedule}\"\ntimezone = \"UTC\"\npoll_interval = \"50ms\"\nstart_grace = \"2s\"\nretries = 0\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Env { dir, config }
}

fn spawn(env: &Env, n: usize) -> Child {
    let log = std::fs::File::create(env.log(n)).unwrap();
    Command::new(BIN)
        .args(["run", "--config", env.config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the binary starts")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} failed");
}

async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait for the child to exit, at most `limit`; its exit code.
async fn wait_exit(child: &mut Child, limit: Duration, env: &Env, n: usize) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "the daemon did not exit within {limit:?}; its log:\n{}",
                std::fs::read_to_string(env.log(n)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn history(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("history/s.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("torn or invalid history line {l:?}: {e}"))
        })
        .collect()
}

fn marker(state: &Path) -> Option<serde_json::Value> {
    std::fs::read_to_string(state.join("inflight/s.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

fn log_text(env: &Env, n: usize) -> String {
    std::fs::read_to_string(env.log(n)).unwrap_or_default()
}

fn long_server() -> SimServerConfig {
    let mut c = SimServerConfig::new("s", KEY);
    c.start_delay = Duration::from_millis(20);
    c.run_length = Duration::from_millis(2500);
    c.result_delay = Duration::from_millis(20);
    c.zip_base64_len = 1024;
    c
}

/// The schedule that fires at the next whole second after a short delay.
fn soon() -> String {
    use chrono::Timelike;
    let t = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    format!("{} {} {} * * *", t.second(), t.minute(), t.hour())
}

/// Stop one daemon in the middle of a run with `sig`, start another, and check the run's
/// real outcome is recorded exactly once.
async fn interrupted_run_is_recorded_once_after_restart(sig: &str) {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), vec![long_server()])
        .await
        .unwrap();
    let env = env_with(&sim.url("s"), &soon(), "shutdown_grace = \"200ms\"");
    let state = env.state();
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
    signal(&first, sig);
    let code = wait_exit(&mut first, Duration::from_secs(10), &env, 1).await;
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
    assert!(history(&state).is_empty(), "the run is not recorded yet");

    let mut second = spawn(&env, 2);
    wait_until(
        Duration::from_secs(15),
        "the second daemon recorded the resumed run",
        || !history(&state).is_empty(),
    )
    .await;
    signal(&second, "TERM");
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(10), &env, 2).await,
        Some(0)
    );
    let records = history(&state);
    assert_eq!(records.len(), 1, "exactly one record: {records:#?}");
    assert_eq!(records[0]["run_id"], run_id.as_str());
    assert_eq!(records[0]["outcome"], "completed", "{records:#?}");
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
    let mut fast = SimServerConfig::new("s", KEY);
    fast.run_length = Duration::from_millis(100);
    fast.start_delay = Duration::from_millis(10);
    fast.result_delay = Duration::from_millis(10);
    fast.zip_base64_len = 1024;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), vec![fast])
        .await
        .unwrap();
    let env = env_with(&sim.url("s"), "* * * * * *", "");
    let state = env.state();
    let mut child = spawn(&env, 1);
    wait_until(Duration::from_secs(10), "a first record", || {
        !history(&state).is_empty()
    })
    .await;
    std::fs::write(
        &env.config,
        "[daemon]\nlog_format = \"xml\"\n[[servers]]\nname = 3\n",
    )
    .unwrap();
    signal(&child, "HUP");
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
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10), &env, 1).await,
        Some(0)
    );
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
    let code = wait_exit(&mut second, Duration::from_secs(10), &env, 2).await;
    assert_eq!(code, Some(1));
    let log = log_text(&env, 2);
    assert!(
        log.contains(&format!(
            "another jellyfin-export-scheduler (pid {}) is already running on state directory",
            first.id()
        )),
        "{log}"
    );
    signal(&first, "TERM");
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(10), &env, 1).await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_server_and_run_id() {
    let mut c = SimServerConfig::new("s", KEY);
    c.run_length = Duration::from_millis(300);
    c.zip_base64_len = 1024;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), vec![c])
        .await
        .unwrap();
    let env = env_with(&sim.url("s"), "*/2 * * * * *", "");
    let state = env.state();
    let mut child = spawn(&env, 1);
    wait_until(Duration::from_secs(10), "two records", || {
        history(&state).len() >= 2
    })
    .await;
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10), &env, 1).await,
        Some(0)
    );
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
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&env.config, text).unwrap();
    let healthcheck = |env: &Env| {
        Command::new(BIN)
            .args(["healthcheck", "--config", env.config.to_str().unwrap()])
            .output()
            .unwrap()
    };
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
    let ok = tokio::task::spawn_blocking({
        let config = env.config.clone();
        move || {
            Command::new(BIN)
                .args(["healthcheck", "--config", config.to_str().unwrap()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10), &env, 1).await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_logged_scheduling_goes_on_and_records_are_written_once_it_recovers() {
    let mut c = SimServerConfig::new("s", KEY);
    c.run_length = Duration::from_millis(200);
    c.start_delay = Duration::from_millis(10);
    c.result_delay = Duration::from_millis(10);
    c.zip_base64_len = 1024;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), vec![c])
        .await
        .unwrap();
    let env = env_with(&sim.url("s"), "*/2 * * * * *", "");
    let state = env.state();
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
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10), &env, 1).await,
        Some(0)
    );
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
