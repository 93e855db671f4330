//! The real binary: exit codes, output, files on disk. The simulated Jellyfin runs in the
//! test process; the binary is a child process talking to it over loopback.

use jellyfin_export_scheduler::sim::{Mode, RunOutcome};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;

use common::KEY;
use common::bin::{Ran, bin, bin_async, command, describe, run, run_async, text};
use common::config::ConfigFile;
use common::records::{history_json, history_lines, marker_json};
use common::sim::{sim_server, simulator};
use common::wait::wait_until;

/// A config file with one `@daily` server per `(name, url)`.
fn write_config(servers: &[(&str, String)]) -> ConfigFile {
    let servers: Vec<(&str, String, &str)> = servers
        .iter()
        .map(|(name, url)| (*name, url.clone(), ""))
        .collect();
    common::config::daily(&servers)
}

/// `check` on a shipped config, with the credentials directory holding a real-looking key.
fn check_shipped(name: &str, vars: &[(&str, &str)]) -> Ran {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("living-room"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    run(command(["check", "--config", path.to_str().unwrap()])
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .envs(vars.iter().copied()))
}

#[test]
fn shipped_configs_pass_check_and_name_their_placeholders() {
    // minimal.toml, copied as it is: valid (exit 0), with one warning saying what to edit.
    let o = check_shipped("minimal.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains(": OK, 1 server (1 enabled)"),
        "{}",
        describe(&o)
    );
    let stderr = text(&o.stderr);
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{}", describe(&o));
    let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/minimal.toml");
    let url_line = std::fs::read_to_string(minimal)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("url = "))
        .unwrap()
        + 1;
    let want = format!(
        "minimal.toml:{url_line}:7: servers[0].url: \"http://jellyfin.example.com:8096/\" still holds"
    );
    assert!(
        warnings[0].starts_with("warning: ") && warnings[0].contains(&want),
        "{}",
        describe(&o)
    );

    // example.toml: valid too; its example host is named, nothing else.
    let o = check_shipped(
        "example.toml",
        &[("CABIN_JELLYFIN_KEY", "fedcba9876543210fedcba9876543210")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains(": OK, 2 servers (2 enabled)"),
        "{}",
        describe(&o)
    );
    assert!(!text(&o.stdout).contains("notify:"), "{}", describe(&o));
    assert!(!text(&o.stdout).contains("ping:"), "{}", describe(&o));
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", describe(&o));
    assert!(stderr.contains(": servers[1].url: "), "{}", describe(&o));
}

#[test]
fn placeholder_warnings_keep_the_exit_status_and_never_show_a_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "YOUR-API-KEY-KEYTAIL\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[servers]]\nname = \"a\"\nurl = \"http://192.168.1.20:8096\"\napi_key_file = \"key\"\n\
         schedule = \"@daily\"\nping_url = \"https://hc-ping.com/change-me-PINGTAIL\"\n\n\
         [[notify]]\nurl_env = \"HOOK\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config.to_str().unwrap();
    let hook = "https://hooks.example.com/services/HOOKTAIL";
    for format in ["text", "json"] {
        let o = run(command(["check", "--config", cfg, "--format", format]).env("HOOK", hook));
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let stderr = text(&o.stderr);
        let want = [
            format!("warning: {cfg}:4:16: servers[0].api_key_file: the API key read from "),
            format!(
                "warning: {cfg}:6:12: servers[0].ping_url: the ping URL looks like a placeholder"
            ),
            format!(
                "warning: {cfg}:9:11: notify[0].url_env: the webhook URL looks like a placeholder"
            ),
        ];
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), want.len(), "{}", describe(&o));
        for (got, want) in lines.iter().zip(&want) {
            assert!(got.starts_with(want.as_str()), "got  {got}\nwant {want}…");
        }
        let all = format!("{}{stderr}", text(&o.stdout));
        for secret in [
            "KEYTAIL",
            "YOUR-API-KEY",
            "PINGTAIL",
            "change-me",
            "HOOKTAIL",
            "/services/",
        ] {
            assert!(!all.contains(secret), "{secret} leaked:\n{all}");
        }
    }
    // A config with problems still exits 2, warnings or not.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "retries = -1\n",
    )
    .unwrap();
    let o = run(command(["check", "--config", cfg]).env("HOOK", hook));
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(!text(&o.stderr).contains("HOOKTAIL"), "{}", describe(&o));
}

#[test]
fn check_exit_codes_and_exact_json() {
    let env = write_config(&[("living-room", "http://127.0.0.1:9".into())]);
    let cfg = env.arg();
    let o = bin(&[
        "check",
        "--config",
        cfg,
        "--after",
        "2026-11-26T12:00:00Z",
        "--format",
        "json",
        "--next",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(
        text(&o.stdout),
        "{\"servers\":[{\"name\":\"living-room\",\"enabled\":true,\"schedule\":\"@daily\",\"timezone\":\"UTC\",\"next\":[\"2026-11-27T00:00:00Z\",\"2026-11-28T00:00:00Z\"]}]}\n"
    );
    let o = bin(&["check", "--config", cfg, "--after", "2026-11-26T12:00:00Z"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains("next: Fri 2026-11-27 00:00:00 UTC  2026-11-27T00:00:00Z"),
        "{}",
        describe(&o)
    );

    let bad = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/every_problem_reported.toml");
    let o = bin(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).lines().count() >= 5, "{}", describe(&o));

    let o = bin(&["check", "--config", "/nonexistent/config.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(text(&o.stderr).contains("/nonexistent/config.toml: cannot read the config file"));

    let o = bin(&["check", "--after", "tomorrow"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let o = bin(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_records_history_and_exits_by_outcome() {
    let sim = simulator(vec![
        sim_server("good", |_| {}),
        sim_server("bad", |c| c.outcome = RunOutcome::Failed),
        sim_server("importing", |c| c.mode = Mode::Import),
    ])
    .await;
    let env = write_config(&[
        ("good", sim.url("good")),
        ("bad", sim.url("bad")),
        ("importing", sim.url("importing")),
    ]);
    let cfg = env.arg();

    let o = bin_async(&["trigger", "good", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("good: started (task d6eb93f1d1591e7d5e6c70f1d25e6fdd)"),
        "{}",
        describe(&o)
    );
    assert!(
        out.contains("Running"),
        "plain progress lines when not a terminal: {}",
        describe(&o)
    );
    assert!(out.contains("good: completed after"), "{}", describe(&o));
    assert_eq!(history_lines(&env.state, "good").len(), 1);

    let o = bin_async(&["trigger", "bad", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(text(&o.stdout).contains("bad: failed"), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains("No space left on device"),
        "{}",
        describe(&o)
    );

    let o = bin_async(&["trigger", "importing", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains("importing: skipped"),
        "{}",
        describe(&o)
    );

    let o = bin_async(&["trigger", "nope", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        text(&o.stderr).contains("no server named \"nope\""),
        "{}",
        describe(&o)
    );

    // history: newest first across servers; json is the stored lines byte for byte.
    let o = bin_async(&["history", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let table = text(&o.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("WHEN") && rows[0].contains("SERVER"),
        "{table}"
    );
    assert_eq!(rows.len(), 4, "{table}");
    assert!(
        rows[1].contains("importing") && rows[1].contains("skipped"),
        "{table}"
    );
    assert!(
        rows[3].contains("good") && rows[3].contains("completed"),
        "{table}"
    );
    // Times are in each server's configured zone (UTC here, whatever the system's zone),
    // with the offset, and the header names the zone.
    let mut in_new_york = command(["history", "good", "--config", cfg]);
    in_new_york.env("TZ", "America/New_York");
    let o = run_async(in_new_york).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let table = text(&o.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("WHEN (UTC)  "), "{table}");
    assert!(
        rows[1..].iter().all(|r| r.get(19..28) == Some(" +00:00  ")),
        "{table}"
    );

    let o = bin_async(&["history", "good", "--config", cfg, "--format", "json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stored = history_lines(&env.state, "good").join("\n") + "\n";
    assert_eq!(text(&o.stdout), stored);

    let o = bin_async(&[
        "history", "--config", cfg, "--limit", "1", "--format", "json",
    ])
    .await;
    assert_eq!(text(&o.stdout).lines().count(), 1);

    // No output anywhere carries the key.
    for server in ["good", "bad", "importing"] {
        for line in history_lines(&env.state, server) {
            assert!(!line.contains(KEY));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_trigger_on_a_busy_server_is_refused_and_no_wait_leaves_a_marker() {
    let sim = simulator(vec![sim_server("slow", |c| {
        c.run_length = Duration::from_secs(2)
    })])
    .await;
    let env = write_config(&[("slow", sim.url("slow"))]);
    let cfg = env.arg();

    let first = command(["trigger", "slow", "--config", cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The lock file names its holder once the first trigger holds it.
    let lock = env.state.join("locks/slow.lock");
    wait_until(
        Duration::from_secs(10),
        "the first trigger took the lock",
        || {
            std::fs::read_to_string(&lock)
                .unwrap_or_default()
                .contains("manual trigger")
        },
    )
    .await;
    let o = bin_async(&["trigger", "slow", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        text(&o.stderr).contains("server slow is busy: pid"),
        "{}",
        describe(&o)
    );
    assert!(
        text(&o.stderr).contains("manual trigger run"),
        "{}",
        describe(&o)
    );
    let status = tokio::task::spawn_blocking(move || {
        let mut first = first;
        first.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(history_lines(&env.state, "slow").len(), 1);

    // --no-wait: returns at once, leaves a marker; the next trigger records that run first.
    let o = bin_async(&["trigger", "slow", "--config", cfg, "--no-wait"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(text(&o.stdout).contains("not waiting"), "{}", describe(&o));
    assert!(env.state.join("inflight/slow.json").exists());
    assert_eq!(
        history_lines(&env.state, "slow").len(),
        1,
        "not recorded yet"
    );
    let o = bin_async(&["trigger", "slow", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        text(&o.stdout).contains("earlier run: slow: completed"),
        "{}",
        describe(&o)
    );
    let lines = history_lines(&env.state, "slow");
    assert_eq!(lines.len(), 3, "the no-wait run and the new one: {lines:?}");
    assert!(!env.state.join("inflight/slow.json").exists());
    let ids: std::collections::HashSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "one record per run");
}

/// Regression: a `trigger` that finished a run left in flight whose record the disk refused
/// went on to start a new run, whose marker replaced the left-over's; the process then
/// exited and the left-over run was lost. Now it starts nothing, keeps the marker, says so
/// once, and the next `trigger` (disk back) records the left-over run first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_left_over_run_cannot_be_recorded_starts_no_new_run() {
    let full = Path::new("/dev/full");
    assert!(
        full.exists(),
        "this test fills the disk with /dev/full, which is missing here"
    );
    let sim = simulator(vec![sim_server("slow", |c| {
        c.run_length = Duration::from_millis(500)
    })])
    .await;
    let env = write_config(&[("slow", sim.url("slow"))]);
    let cfg = env.arg();

    let o = bin_async(&["trigger", "slow", "--config", cfg, "--no-wait"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let left_over = marker_json(&env.state, "slow").expect("--no-wait leaves a marker")["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The disk is full: the left-over run ends, its record cannot be written.
    let history = env.state.join("history/slow.jsonl");
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&history);
    std::os::unix::fs::symlink(full, &history).unwrap();
    let o = bin_async(&["trigger", "slow", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let err = text(&o.stderr);
    assert!(err.contains("no new run was started"), "{}", describe(&o));
    assert_eq!(
        err.matches("error:").count(),
        1,
        "said once: {}",
        describe(&o)
    );
    assert!(
        text(&o.stdout).contains("earlier run: slow: completed"),
        "{}",
        describe(&o)
    );
    assert_eq!(
        sim.server("slow").start_requests().len(),
        1,
        "only the --no-wait run was started"
    );
    let kept = marker_json(&env.state, "slow").expect("the left-over's marker is kept");
    assert_eq!(kept["run_id"].as_str(), Some(left_over.as_str()));

    // The disk is back: the next trigger records the left-over run, then its own.
    std::fs::remove_file(&history).unwrap();
    let o = bin_async(&["trigger", "slow", "--config", cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let ids: Vec<String> = history_json(&env.state, "slow")
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], left_over, "the left-over run is recorded first");
    assert!(marker_json(&env.state, "slow").is_none());
}

/// With `backend = "postgres"`, `trigger`, `history`, `archive` and `run` use the database
/// (here unreachable: exit 1, saying so, without the URL), and never quietly fall back to
/// the state directory.
#[test]
fn commands_on_postgres_say_an_unreachable_database_without_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let config_text = format!(
        "[daemon]\nstate_dir = \"{}\"\nbackend = \"postgres\"\ndatabase_url_env = \"DB_URL\"\n\n[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"{KEY}\"\nschedule = \"@daily\"\ntimezone = \"UTC\"\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, config_text).unwrap();
    let cfg = config.to_str().unwrap();
    let url = "postgresql://sched:PGSECRET-77@127.0.0.1:9/sched";
    for args in [
        vec!["trigger", "a", "--config", cfg],
        vec!["history", "--config", cfg],
        vec!["archive", "list", "--config", cfg],
    ] {
        let o = run(command(&args).env("DB_URL", url));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(
            all.lines().any(|l| l.starts_with("error: PostgreSQL: ")),
            "{args:?}: {}",
            describe(&o)
        );
        assert!(
            !all.contains("PGSECRET") && !all.contains("127.0.0.1:9"),
            "{args:?}: the URL is shown: {all}"
        );
    }
    assert!(
        !dir.path().join("state").exists(),
        "nothing was written to a state directory"
    );
    let o = run(command(["run", "--config", cfg]).env("DB_URL", url));
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        all.contains("cannot prepare the PostgreSQL database: PostgreSQL: "),
        "{}",
        describe(&o)
    );
    assert!(
        !all.contains("PGSECRET") && !all.contains("127.0.0.1:9"),
        "the URL is shown: {all}"
    );
    // `check` validates the keys (the URL included) and passes.
    let o = run(command(["check", "--config", cfg]).env("DB_URL", url));
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(!format!("{}{}", text(&o.stdout), text(&o.stderr)).contains("PGSECRET"));
}
