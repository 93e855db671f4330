//! API keys (and the database URL) never leave through anything the program emits.
//!
//! One scenario hits every outcome through the real binary: the daemon with JSON logs at
//! trace level, `trigger` with text logs at trace level, `check` (with and without
//! secrets), `doctor` (text and JSON), `history` (text and JSON), `reload`, `healthcheck`,
//! config errors, the HTTP endpoints (with, without and with a wrong API token), and every
//! file in the state directory (the reload status file included). All of it is gathered and
//! searched for every key (and a wrong key that a server refuses) and the endpoint's token.

use jellyfin_export_scheduler::sim::{CancelMode, Mode, RunOutcome, SimServerConfig, TaskState};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::bin::{Daemon, command, text};
use common::wait::wait_until;

/// (server, key the simulator accepts, key the config sends, behaviour)
type Fleet = Vec<(
    &'static str,
    String,
    String,
    Box<dyn Fn(&mut SimServerConfig)>,
)>;

/// Webhook and ping URLs are secrets too (a Slack hook token, a Healthchecks UUID).
const WEBHOOK_TOKEN: &str = "T0KEN-b5f1e3a27c9d4e60";
const PING_TOKEN: &str = "9a7d1c3e-5b2f-4e8a-b6c0-d4f2e1a3c5b7";
/// The endpoint's `[daemon] api_token_file` token.
const ENDPOINT_TOKEN: &str = "e1d2c3b4a5f60718293a4b5c6d7e8f90";

fn fleet() -> Fleet {
    let key = |n: &str| format!("{:0<32}", format!("k{n}"));
    vec![
        ("good", key("good"), key("good"), Box::new(|_| {})),
        (
            "failing",
            key("failing"),
            key("failing"),
            Box::new(|c| c.outcome = RunOutcome::Failed),
        ),
        (
            "logerror",
            key("logerror"),
            key("logerror"),
            Box::new(|c| c.outcome = RunOutcome::CompletedWithLogError),
        ),
        (
            "slow",
            key("slow"),
            key("slow"),
            Box::new(|c| c.run_length = Duration::from_secs(30)),
        ),
        (
            "restarting",
            key("restarting"),
            key("restarting"),
            Box::new(|c| {
                c.restart_after = Some(Duration::from_millis(100));
                c.downtime = Duration::from_millis(200);
            }),
        ),
        (
            "crashing",
            key("crashing"),
            key("crashing"),
            Box::new(|c| {
                c.crash_after = Some(Duration::from_millis(100));
                c.downtime = Duration::from_millis(200);
            }),
        ),
        (
            "importing",
            key("importing"),
            key("importing"),
            Box::new(|c| c.mode = Mode::Import),
        ),
        (
            "refusing",
            key("refusing"),
            "wrongkey-0000000000000000000000000".into(),
            Box::new(|_| {}),
        ),
        (
            "cancelled",
            key("cancelled"),
            key("cancelled"),
            Box::new(|c| {
                c.run_length = Duration::from_secs(3);
                c.cancel = CancelMode::Honour;
            }),
        ),
        (
            "vanishing",
            key("vanishing"),
            key("vanishing"),
            Box::new(|c| {
                c.task_vanishes = true;
                c.run_length = Duration::from_secs(5);
            }),
        ),
    ]
}

/// The binary's exit code and everything it wrote.
fn run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = common::bin::run(command(args).envs(envs.iter().copied()));
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn all_files(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_appears_in_anything_the_program_emits() {
    let fleet = fleet();
    let sim = common::sim::simulator(
        fleet
            .iter()
            .map(|(n, accepted, _, f)| {
                let mut c = SimServerConfig::new(*n, accepted.clone());
                c.start_delay = Duration::from_millis(20);
                if c.run_length > Duration::from_millis(300) {
                    c.run_length = Duration::from_millis(300);
                }
                c.result_delay = Duration::from_millis(20);
                c.zip_base64_len = 4096;
                f(&mut c);
                c
            })
            .collect(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    let port = common::free_port();
    // Every server has run before (an earlier record, with an outcome other than the one
    // this test expects of it) and its due instant passed a second ago: the daemon catches
    // each one up at its start, however long the commands before it and the start take.
    let soon = common::time::daily_in(-1000);
    for (n, _, _, _) in &fleet {
        let earlier = if *n == "good" {
            jellyfin_export_scheduler::record::Outcome::Skipped
        } else {
            jellyfin_export_scheduler::record::Outcome::Completed
        };
        common::records::ran_before(&state, n, earlier);
    }
    let token_file = dir.path().join("endpoint-token");
    std::fs::write(&token_file, format!("{ENDPOINT_TOKEN}\n")).unwrap();
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nlog_format = \"json\"\nlog_level = \"trace\"\nshutdown_grace = \"10s\"\napi_token_file = \"{}\"\n\
         [defaults]\nschedule = \"{soon}\"\ntimezone = \"UTC\"\npoll_interval = \"50ms\"\nstart_grace = \"800ms\"\ntimeout = \"1s\"\nretries = 1\nretry_backoff = \"50ms\"\n",
        state.display(),
        token_file.display(),
    );
    for (n, _, sent, _) in &fleet {
        text.push_str(&format!(
            "\n[[servers]]\nname = \"{n}\"\nurl = \"{}\"\napi_key = \"{sent}\"\n",
            sim.url(n)
        ));
        // These need longer than the 1 s timeout the slow server is cut by.
        if *n == "cancelled" || *n == "crashing" {
            text.push_str("timeout = \"30s\"\n");
        }
    }
    // Nothing listens there: deliveries fail and are logged, which is what is checked.
    text = text.replace(
        "\n[[servers]]\nname = \"good\"",
        &format!("\n[[notify]]\nurl = \"http://127.0.0.1:1/hooks/{WEBHOOK_TOKEN}\"\nretries = 1\n\n[[servers]]\nname = \"good\""),
    );
    text.push_str(&format!(
        "ping_url = \"http://127.0.0.1:1/ping/{PING_TOKEN}\"\n"
    ));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config.to_str().unwrap();
    let mut emitted = String::new();

    // `interrupted`: a run started with --no-wait whose task is gone when the daemon resumes it.
    let (code, out) = run(
        &["trigger", "vanishing", "--no-wait", "--config", cfg],
        &[("RUST_LOG", "trace")],
    );
    assert_eq!(code, Some(0), "{out}");
    emitted.push_str(&out);

    // The daemon, JSON logs at trace level.
    let log_path = dir.path().join("daemon.log");
    let daemon = Daemon::spawn(
        command(["run", "--config", cfg]).env("RUST_LOG", "trace"),
        &log_path,
    );
    // `cancelled`: someone cancels that server's run on Jellyfin.
    let h = sim.server("cancelled");
    let url = format!(
        "{}/ScheduledTasks/Running/d6eb93f1d1591e7d5e6c70f1d25e6fdd",
        sim.url("cancelled")
    );
    let ckey = fleet.iter().find(|f| f.0 == "cancelled").unwrap().1.clone();
    wait_until(
        Duration::from_secs(20),
        "the cancelled server's run started",
        || h.task_state().state == TaskState::Running,
    )
    .await;
    reqwest::Client::new()
        .delete(url)
        .header("Authorization", format!("MediaBrowser Token=\"{ckey}\""))
        .send()
        .await
        .unwrap();

    let expected = [
        ("good", "completed"),
        ("failing", "failed"),
        ("logerror", "failed"),
        ("slow", "timed_out"),
        ("restarting", "aborted"),
        ("crashing", "lost"),
        ("importing", "skipped"),
        ("refusing", "trigger_failed"),
        ("cancelled", "cancelled"),
        ("vanishing", "interrupted"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<&str> = expected
            .iter()
            .filter(|(n, o)| {
                !std::fs::read_to_string(state.join(format!("history/{n}.jsonl")))
                    .unwrap_or_default()
                    .contains(&format!("\"outcome\":\"{o}\""))
            })
            .map(|(n, _)| *n)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outcomes not recorded in 30 s for {missing:?}; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The HTTP endpoints: with the token, without it, and with a wrong one.
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for path in [
        "/",
        "/metrics",
        "/api/v1/servers",
        "/api/v1/servers/good/history",
        "/api/v1/servers/refusing/history",
        "/healthz",
        "/readyz",
    ] {
        for token in [Some(ENDPOINT_TOKEN), None, Some("not-the-token-0000000000")] {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await.unwrap();
            for (name, value) in answer.headers() {
                emitted.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
            }
            emitted.push_str(&answer.text().await.unwrap());
        }
    }
    // The healthcheck command.
    emitted.push_str(&run(&["healthcheck", "--config", cfg], &[]).1);
    // A reload through the command: its output and the reload status file (on disk, below).
    let (code, out) = run(&["reload", "--config", cfg], &[]);
    assert_eq!(code, Some(0), "{out}");
    emitted.push_str(&out);
    daemon.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let mut daemon = daemon;
        daemon.0.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(0));
    emitted.push_str(&std::fs::read_to_string(&log_path).unwrap());

    // The commands, text logs at trace level.
    for args in [
        vec!["check", "--config", cfg],
        vec!["check", "--config", cfg, "--format", "json"],
        vec!["check", "--no-secrets", "--config", cfg],
        vec!["doctor", "--config", cfg],
        vec!["doctor", "--config", cfg, "--format", "json"],
        vec!["history", "--config", cfg, "--limit", "0"],
        vec![
            "history", "--config", cfg, "--limit", "0", "--format", "json",
        ],
        vec!["trigger", "good", "--config", cfg],
        vec!["trigger", "refusing", "--config", cfg],
        vec!["trigger", "failing", "--config", cfg],
    ] {
        emitted.push_str(&run(&args, &[("RUST_LOG", "trace")]).1);
    }
    // Config errors, with the key written inline next to the mistakes.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        text.replace(
            "poll_interval = \"50ms\"",
            "poll_interval = \"0s\"\nbogus = 1",
        ),
    )
    .unwrap();
    let (code, out) = run(&["check", "--config", broken.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    emitted.push_str(&out);
    // Everything on disk.
    all_files(&state, &mut emitted);

    assert!(
        emitted.len() > 50_000,
        "too little was gathered ({} bytes) for this test to mean much",
        emitted.len()
    );
    assert!(
        emitted.contains("\"level\":\"TRACE\"") || emitted.contains("TRACE"),
        "trace-level lines were gathered"
    );
    for (n, accepted, sent, _) in &fleet {
        for key in [accepted, sent] {
            assert!(
                !emitted.contains(key.as_str()),
                "the key of {n} appears in the output"
            );
        }
    }
    assert!(
        emitted.contains("jellyfin_export_runs_total"),
        "the token opened /metrics"
    );
    assert!(
        !emitted.contains(ENDPOINT_TOKEN),
        "the endpoint's API token appears in the output"
    );
}

/// The database URL (its password) never leaves either: the daemon on the PostgreSQL
/// backend at trace level, `check`, `history` (text and JSON), `trigger`, `archive`, a
/// database that cannot be reached, and every file in the state directory.
/// (The test cluster trusts loopback, so it accepts the URL's password without checking it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_appears_in_nothing_the_program_emits() {
    const DB_PASSWORD: &str = "DBPASS-7c1e9b24f05d";
    let cluster = common::pg::Cluster::start();
    let url = cluster
        .url()
        .replace("postgres@", &format!("postgres:{DB_PASSWORD}@"));
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let daemon = "backend = \"postgres\"\ndatabase_url_env = \"DB_URL\"\nlease_ttl = \"2s\"\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"trace\"";
    let env = common::config::ConfigFile::quick(
        daemon,
        "",
        &[("t", sim.url("t"), "schedule = \"*/2 * * * * *\"")],
    );
    let cfg = env.arg();
    let log = env.dir.path().join("daemon.log");
    let mut d = Daemon::spawn(command(["run", "--config", cfg]).env("DB_URL", &url), &log);
    let db = common::pg::connect(&cluster).await;
    let start = Instant::now();
    loop {
        let n: i64 = match db.query_one("SELECT count(*) FROM run_history", &[]).await {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        if n >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "two runs recorded within 30 s; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut emitted = String::new();
    let with_url = [("DB_URL", url.as_str())];
    for args in [
        &["check", "--config", cfg][..],
        &["history", "--config", cfg],
        &["history", "--config", cfg, "--format", "json"],
        &["trigger", "t", "--config", cfg],
        &["archive", "list", "--config", cfg],
    ] {
        let (_, out) = run(args, &with_url);
        emitted.push_str(&out);
    }
    let unreachable = format!("postgresql://postgres:{DB_PASSWORD}@127.0.0.1:9/postgres");
    let down = [("DB_URL", unreachable.as_str())];
    for args in [
        &["history", "--config", cfg][..],
        &["run", "--config", cfg],
        &["trigger", "t", "--config", cfg],
        &["archive", "list", "--config", cfg],
    ] {
        let (code, out) = run(args, &down);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        emitted.push_str(&out);
    }
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(20)).await;
    emitted.push_str(&d.log());
    all_files(&env.state, &mut emitted);
    assert!(
        emitted.contains("\"outcome\":\"completed\"") && emitted.contains("\"level\":\"TRACE\""),
        "history printed the runs and the daemon logged at trace level"
    );
    assert!(
        !emitted.contains(DB_PASSWORD),
        "the database password leaked:\n{}",
        emitted
            .lines()
            .filter(|l| l.contains(DB_PASSWORD))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !emitted.contains("127.0.0.1:9/"),
        "the unreachable URL was shown"
    );
}
