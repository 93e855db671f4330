//! The real binary's `trigger` against what the Migrator plugin really does (issue #10's
//! table, row by row): an Import upload kept in the configuration, a followed Import or
//! Verify, a cancel from the dashboard, our own timeout, `Mode` spelled loosely, another
//! plugin answering under the Migrator's id. And the peak memory of `trigger` when the
//! configuration carries a 200 MB Import upload, measured, not guessed.
//!
//! The simulated Jellyfin runs in the test process; the binary is a child process talking
//! to it over loopback. Waits are bounded and fail with a sentence.

use jellyfin_export_scheduler::sim::{Mode, SimServerConfig, Simulator, TaskState};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jellyfin-export-scheduler");
const KEY: &str = "b4c8f1e2d4b5968778695a4b3c2d1e0f";

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
}

/// A config with one `[[servers]]` table per `(name, url, extra lines)`.
fn write_config(servers: &[(&str, String, &str)]) -> Env {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut toml = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[defaults]\nschedule = \"@daily\"\ntimezone = \"UTC\"\npoll_interval = \"50ms\"\nstart_grace = \"2s\"\nretries = 0\n",
        state.display()
    );
    for (name, url, extra) in servers {
        toml.push_str(&format!(
            "\n[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi_key = \"{KEY}\"\n{extra}"
        ));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Env {
        _dir: dir,
        config,
        state,
    }
}

fn sim_server(name: &str, f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    let mut c = SimServerConfig::new(name, KEY);
    c.start_delay = Duration::from_millis(20);
    c.run_length = Duration::from_millis(300);
    c.result_delay = Duration::from_millis(20);
    c.zip_base64_len = 4096;
    f(&mut c);
    c
}

/// `trigger SERVER` to its end, off the async runtime.
async fn trigger(env: &Env, server: &str) -> Output {
    let config = env.config.clone();
    let server = server.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["trigger", &server, "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

/// The outcome and reason of the last record in `server`'s history file.
fn last_record(state: &Path, server: &str) -> (String, String) {
    let text = std::fs::read_to_string(state.join(format!("history/{server}.jsonl")))
        .unwrap_or_else(|e| panic!("no history for {server}: {e}"));
    let line = text.lines().last().expect("one record");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (
        v["outcome"].as_str().unwrap().to_owned(),
        v["reason"].as_str().unwrap_or("").to_owned(),
    )
}

/// Check exit code, the outcome line on stdout, and the stored record's outcome and reason.
fn expect(o: &Output, env: &Env, server: &str, outcome: &str, reason_has: &[&str]) {
    let want_code = if outcome == "completed" { 0 } else { 1 };
    assert_eq!(
        o.status.code(),
        Some(want_code),
        "{server}: {}",
        describe(o)
    );
    assert!(
        text(&o.stdout).contains(&format!("{server}: {outcome}")),
        "{server}: {}",
        describe(o)
    );
    let (stored, reason) = last_record(&env.state, server);
    assert_eq!(stored, outcome, "{server}: {reason}");
    for part in reason_has {
        assert!(
            reason.contains(part),
            "{server}: {part:?} not in {reason:?}"
        );
        assert!(
            text(&o.stdout).contains(part),
            "{server}: the printed reason has {part:?}: {}",
            describe(o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_table_through_trigger() {
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            // A 21 MB ZIP once uploaded on the Import tab (28 million base64 characters).
            sim_server("uploaded", |c| c.import_zip_base64_len = 28_000_000),
            sim_server("importing", |c| {
                c.mode = Mode::Import;
                c.running_at_start = true;
                c.run_length = Duration::from_secs(60);
            }),
            sim_server("verifying", |c| {
                c.mode = Mode::Verify;
                c.running_at_start = true;
                c.run_length = Duration::from_secs(60);
            }),
            sim_server("cancelled", |c| c.run_length = Duration::from_secs(20)),
            sim_server("slow", |c| c.run_length = Duration::from_secs(20)),
            sim_server("spaced", |c| c.mode_text = Some(" export ".into())),
            sim_server("shouting", |c| c.mode_text = Some(" IMPORT ".into())),
            sim_server("template", |c| c.plugin_id_collision = true),
        ],
    )
    .await
    .unwrap();
    let follow = "if_running = \"follow\"\n";
    let env = write_config(&[
        ("uploaded", sim.url("uploaded"), ""),
        ("importing", sim.url("importing"), follow),
        ("verifying", sim.url("verifying"), follow),
        ("cancelled", sim.url("cancelled"), ""),
        ("slow", sim.url("slow"), "timeout = \"500ms\"\n"),
        ("spaced", sim.url("spaced"), ""),
        ("shouting", sim.url("shouting"), ""),
        ("template", sim.url("template"), ""),
    ]);

    let o = trigger(&env, "uploaded").await;
    expect(&o, &env, "uploaded", "completed", &[]);

    for (server, word) in [("importing", "Import"), ("verifying", "Verify")] {
        let o = trigger(&env, server).await;
        expect(
            &o,
            &env,
            server,
            "skipped",
            &[
                &format!("Mode = {word}, so that run is "),
                "if_running = \"follow\" follows only exports",
            ],
        );
        assert!(sim.server(server).start_requests().is_empty(), "{server}");
    }

    // Someone cancels the run in the dashboard while `trigger` follows it.
    let running = {
        let config = env.config.clone();
        Command::new(BIN)
            .args(["trigger", "cancelled", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let h = sim.server("cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.task_state().state != TaskState::Running {
        assert!(
            Instant::now() < deadline,
            "the cancelled server's run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = reqwest::Client::new()
        .delete(format!(
            "{}/ScheduledTasks/Running/d6eb93f1d1591e7d5e6c70f1d25e6fdd",
            sim.url("cancelled")
        ))
        .header("Authorization", format!("MediaBrowser Token=\"{KEY}\""))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let o = tokio::task::spawn_blocking(move || running.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    expect(
        &o,
        &env,
        "cancelled",
        "cancelled",
        &[
            "cancelled on the server (not by this scheduler): the plugin stopped after running ",
            "Jellyfin recorded it as Completed",
        ],
    );

    let o = trigger(&env, "slow").await;
    expect(
        &o,
        &env,
        "slow",
        "timed_out",
        &[
            "did not finish within 500ms; cancel requested; the plugin stopped after running ",
            "The operation was canceled.",
        ],
    );

    let o = trigger(&env, "spaced").await;
    expect(&o, &env, "spaced", "completed", &[]);
    let o = trigger(&env, "shouting").await;
    expect(
        &o,
        &env,
        "shouting",
        "skipped",
        &["Mode = \" IMPORT \", so its task would run an Import instead of an export"],
    );
    assert!(sim.server("shouting").start_requests().is_empty());

    let o = trigger(&env, "template").await;
    expect(
        &o,
        &env,
        "template",
        "trigger_failed",
        &[
            "is not the Migrator's: it has no Mode, IncludeUsers, IncludeLibraries, IncludeWatchHistory, IncludeDevices",
        ],
    );
}

/// Peak RSS (KiB) of `trigger SERVER`, from `getrusage(RUSAGE_CHILDREN)` of a Python
/// parent whose only child is the binary: its high-water mark, exactly.
async fn trigger_peak_rss_kib(env: &Env, server: &str) -> (u64, Output) {
    let config = env.config.clone();
    let name = server.to_owned();
    let o = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(
                "import resource, subprocess, sys\n\
                 r = subprocess.run(sys.argv[1:], capture_output=True)\n\
                 sys.stderr.buffer.write(r.stdout + r.stderr)\n\
                 print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)",
            )
            .arg(BIN)
            .args(["trigger", &name, "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .expect("python3 runs (every machine this project builds on has it)")
    })
    .await
    .unwrap();
    let out = text(&o.stdout);
    let mut words = out.split_whitespace();
    let kib: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no ru_maxrss from python: {}", describe(&o)));
    assert_eq!(
        words.next(),
        Some("0"),
        "trigger {server} did not complete: {}",
        text(&o.stderr)
    );
    (kib, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_import_upload_costs_trigger_no_more_memory() {
    // 200 MiB of ZIP as base64: 279 620 268 characters in LastImportZipBase64, read twice
    // per run (the Mode check before the start, the verification after it).
    let upload = 200 * 1024 * 1024 / 3 * 4;
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            sim_server("plain", |c| c.zip_base64_len = 64 * 1024),
            sim_server("uploaded", |c| {
                c.zip_base64_len = 64 * 1024;
                c.import_zip_base64_len = upload;
            }),
        ],
    )
    .await
    .unwrap();
    let env = write_config(&[
        ("plain", sim.url("plain"), ""),
        ("uploaded", sim.url("uploaded"), ""),
    ]);
    let started = Instant::now();
    let (plain, _) = trigger_peak_rss_kib(&env, "plain").await;
    let (uploaded, _) = trigger_peak_rss_kib(&env, "uploaded").await;
    let config_reads = sim
        .server("uploaded")
        .requests()
        .iter()
        .filter(|q| q.endpoint == jellyfin_export_scheduler::sim::Endpoint::PluginConfig)
        .count();
    println!(
        "peak RSS of `trigger`: {plain} KiB without an upload, {uploaded} KiB with a {:.0} MiB Import upload \
         ({config_reads} configuration reads of {:.0} MB each; both runs took {:.1} s)",
        upload as f64 * 0.75 / 1_048_576.0,
        upload as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(config_reads, 2, "the Mode check and the verification");
    assert_eq!(last_record(&env.state, "uploaded").0, "completed");
    // Holding the upload once would add 280 MB; 32 MiB of slack covers allocator noise.
    assert!(
        uploaded <= plain + 32 * 1024,
        "the upload raised trigger's peak RSS from {plain} KiB to {uploaded} KiB"
    );
}
