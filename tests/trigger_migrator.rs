//! The real binary's `trigger` against what the Migrator plugin really does (issue #10's
//! table, row by row): an Import upload kept in the configuration, a followed Import or
//! Verify, a cancel from the dashboard, our own timeout, `Mode` spelled loosely, another
//! plugin answering under the Migrator's id. And the peak memory of `trigger` when the
//! configuration carries a 200 MB Import upload, measured, not guessed.
//!
//! The simulated Jellyfin runs in the test process; the binary is a child process talking
//! to it over loopback. Waits are bounded and fail with a sentence.

use jellyfin_export_scheduler::sim::{Mode, SimServerConfig, TaskState};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::bin::{Ran, Running, bin_async, clean, command, describe, run_async, text};
use common::config::{ConfigFile, daily as write_config};
use common::sim::simulator;
use common::wait::wait_until;

/// A server that runs 300 ms and exports 4 KiB, then `f`.
fn sim_server(name: &str, f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    common::sim::sim_server(name, |c| {
        c.run_length = Duration::from_millis(300);
        c.zip_base64_len = 4096;
        f(c)
    })
}

/// `trigger SERVER` to its end, off the async runtime.
async fn trigger(env: &ConfigFile, server: &str) -> Ran {
    bin_async(&["trigger", server, "--config", env.arg()]).await
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
fn expect(o: &Ran, env: &ConfigFile, server: &str, outcome: &str, reason_has: &[&str]) {
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
    let sim = simulator(vec![
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
    ])
    .await;
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
    let running = Running::start(&mut command([
        "trigger",
        "cancelled",
        "--config",
        env.arg(),
    ]));
    let h = sim.server("cancelled");
    wait_until(
        Duration::from_secs(10),
        "the cancelled server's run started",
        || h.task_state().state == TaskState::Running,
    )
    .await;
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
    let o = running.finish().await;
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
async fn trigger_peak_rss_kib(env: &ConfigFile, server: &str) -> (u64, Ran) {
    let mut python = Command::new("python3");
    clean(&mut python)
        .arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], capture_output=True)\n\
             sys.stderr.buffer.write(r.stdout + r.stderr)\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)",
        )
        .arg(common::bin::BIN)
        .args(["trigger", server, "--config", env.arg()]);
    let o = run_async(python).await;
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
    let sim = simulator(vec![
        sim_server("plain", |c| c.zip_base64_len = 64 * 1024),
        sim_server("uploaded", |c| {
            c.zip_base64_len = 64 * 1024;
            c.import_zip_base64_len = upload;
        }),
    ])
    .await;
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
