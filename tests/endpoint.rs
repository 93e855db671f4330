//! The HTTP endpoint in-process: metrics, the status API, the history API and the page,
//! against a daemon running on the simulator with servers that end differently.

use jellyfin_export_scheduler::daemon::heartbeat_limit;
use jellyfin_export_scheduler::endpoint::{self, Policy, Sources};
use jellyfin_export_scheduler::records::Records;
use jellyfin_export_scheduler::sim::{Mode, RunOutcome, Simulator};
use jellyfin_export_scheduler::state::StateDir;
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::sim::{sim_server, simulator};

struct Setup {
    _dir: tempfile::TempDir,
    base: String,
    sim: Simulator,
    handle: jellyfin_export_scheduler::daemon::DaemonHandle,
}

async fn setup() -> Setup {
    let sim = simulator(vec![
        sim_server("good", |_| {}),
        sim_server("broken", |c| c.outcome = RunOutcome::Failed),
        sim_server("importer", |c| c.mode = Mode::Import),
        sim_server("quiet", |_| {}),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let soon = common::time::daily_in(2000);
    let mut servers: Vec<(&str, String, &str)> = ["good", "broken", "importer"]
        .into_iter()
        .map(|name| (name, sim.url(name), ""))
        .collect();
    servers.push((
        "quiet",
        sim.url("quiet"),
        "schedule = \"0 0 3 * * *\"\ntimezone = \"Europe/Berlin\"",
    ));
    let config = common::config::parse(&common::config::text(
        dir.path(),
        "",
        &format!("schedule = \"{soon}\""),
        &servers,
    ));
    let state = StateDir::open(dir.path()).unwrap();
    let history = Records::files(&state);
    let handle = common::daemon::start(config).await;
    let listener = endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(endpoint::serve(
        listener,
        Sources {
            status: handle.status.clone(),
            heartbeat_limit: heartbeat_limit(),
            history,
        },
        Policy::for_process(None),
        tokio_util::sync::CancellationToken::new(),
    ));
    Setup {
        _dir: dir,
        base,
        sim,
        handle,
    }
}

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// Wait until every scheduled server has a last record in the status API.
async fn wait_for_runs(base: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (_, _, body) = get(&format!("{base}/api/v1/servers")).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let done = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["last"].is_null())
            .count();
        if done == 3 {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "runs did not finish in 15 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_metrics_history_and_page_show_what_happened() {
    let s = setup().await;
    let api = wait_for_runs(&s.base).await;
    let by_name = |n: &str| {
        api["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("good")["last"]["outcome"], "completed");
    assert_eq!(by_name("broken")["last"]["outcome"], "failed");
    assert_eq!(by_name("importer")["last"]["outcome"], "skipped");
    let quiet = by_name("quiet");
    assert!(quiet["last"].is_null());
    assert_eq!(quiet["schedule"], "0 0 3 * * *");
    assert_eq!(quiet["timezone"], "Europe/Berlin");
    assert!(quiet["next_due"].as_str().unwrap().ends_with('Z'));
    assert_eq!(quiet["url"], format!("{}/", s.sim.url("quiet")));

    let (status, ct, metrics) = get(&format!("{}/metrics", s.base)).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    for line in [
        "jellyfin_export_runs_total{server=\"good\",outcome=\"completed\"} 1",
        "jellyfin_export_runs_total{server=\"broken\",outcome=\"failed\"} 1",
        "jellyfin_export_runs_total{server=\"importer\",outcome=\"skipped\"} 1",
        "jellyfin_export_runs_total{server=\"quiet\",outcome=\"completed\"} 0",
        "jellyfin_export_run_duration_seconds_count{server=\"good\"} 1",
        "jellyfin_export_run_duration_seconds_bucket{server=\"good\",le=\"1\"} 1",
        "jellyfin_export_running{server=\"good\"} 0",
        "jellyfin_export_server_up{server=\"good\"} 1",
        "jellyfin_export_config_reload_success 1",
        "jellyfin_export_last_success_timestamp_seconds{server=\"broken\"} 0",
        "jellyfin_export_build_info{version=\"",
        "# TYPE jellyfin_export_run_duration_seconds histogram",
        // The archive (on by default) holds good's export; broken's failed run left none.
        "jellyfin_export_archive_files{server=\"good\"} 1",
        "jellyfin_export_archive_files{server=\"broken\"} 0",
        "jellyfin_export_archive_bytes{server=\"broken\"} 0",
        "jellyfin_export_archive_last_success_timestamp_seconds{server=\"broken\"} 0",
        "# TYPE jellyfin_export_archive_bytes gauge",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(
        metrics.contains("jellyfin_export_last_success_timestamp_seconds{server=\"good\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jellyfin_export_next_run_timestamp_seconds{server=\"quiet\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "jellyfin_export_last_run_timestamp_seconds{server=\"broken\",outcome=\"failed\"} "
        ),
        "{metrics}"
    );

    let (status, _, hist) = get(&format!("{}/api/v1/servers/good/history?limit=5", s.base)).await;
    assert_eq!(status, 200);
    let records: Vec<serde_json::Value> = serde_json::from_str(&hist).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "completed");
    assert_eq!(
        get(&format!("{}/api/v1/servers/nope/history", s.base))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&format!("{}/api/v1/servers/good/history?limit=x", s.base))
            .await
            .0,
        400
    );

    let (status, ct, page) = get(&format!("{}/", s.base)).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        page.contains("<meta http-equiv=\"refresh\""),
        "refreshes itself"
    );
    assert!(
        !page.contains("http://") || !page.contains("<script"),
        "no external assets or scripts"
    );
    assert!(
        !page.contains("src=") && !page.contains("<link"),
        "no external assets"
    );
    for (name, class) in [("good", "ok"), ("broken", "bad"), ("importer", "quiet")] {
        assert!(
            page.contains(&format!("<tr data-server=\"{name}\">")),
            "row for {name}"
        );
        assert!(
            page.contains(&format!("<span class=\"badge {class}\">")),
            "{name} as {class}"
        );
    }
    assert!(page.contains("Mode = Import"), "reasons are shown");
    assert!(
        page.contains(", 3 users<br><small>archive: 1 file, "),
        "the last export's size and users: {page}"
    );
    assert!(page.contains("No space left on device"));

    // Nothing served carries a key.
    for body in [&metrics, &hist, &page, &api.to_string()] {
        assert!(!body.contains(KEY));
    }
    s.handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_a_loop_stops_waking() {
    let s = setup().await;
    // The same daemon seen through an endpoint that expects a wake-up more often than the
    // loops give one: every loop counts as stuck.
    let listener = endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let strict = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    tokio::spawn(endpoint::serve(
        listener,
        Sources {
            status: s.handle.status.clone(),
            heartbeat_limit: Duration::ZERO,
            history: Records::files(&state),
        },
        Policy::for_process(None),
        tokio_util::sync::CancellationToken::new(),
    ));
    let (status, _, body) = get(&format!("{strict}/healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("scheduling loop stopped waking for: broken, good, importer, quiet"),
        "{body}"
    );
    assert_eq!(
        get(&format!("{}/healthz", s.base)).await.0,
        200,
        "the normal limit is fine"
    );
    s.handle.shutdown();
}
