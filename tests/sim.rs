//! The simulated Jellyfin, observed over HTTP the way the real client sees it: status
//! codes, bodies, wire format, run life cycle, cancels, restarts, auth, base paths, faults.
//!
//! Requests go through a real HTTP client (reqwest), a new connection each; only the tests
//! of the HTTP server itself (pipelining, malformed requests, broken answers) write and
//! read raw bytes, so that a broken answer is seen as it is. Waits are bounded polls that
//! fail with a sentence; durations are kept in the tens to hundreds of milliseconds.

use jellyfin_export_scheduler::sim::bulk::decode_base64;
use jellyfin_export_scheduler::sim::{
    CANCELED, CancelMode, DUPLICATE_TASK_ID, Endpoint, Fault, FaultRule, History,
    MIGRATOR_PLUGIN_ID, MIGRATOR_TASK_ID, MIGRATOR_TASK_KEY, Mode, PluginStatus, Requests,
    RunOutcome, Scenario, SimServerConfig, SimTask, Simulator, TaskState,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::sim::simulator as sim;
use common::wait::wait_until_async as wait_until;

const KEY: &str = "admin-key-0123456789abcdef0123456";
const USER_KEY: &str = "user-key-0123456789abcdef01234567";
const TASK: &str = "/ScheduledTasks/d6eb93f1d1591e7d5e6c70f1d25e6fdd";
const START: &str = "/ScheduledTasks/Running/d6eb93f1d1591e7d5e6c70f1d25e6fdd";
const CONFIG: &str = "/Plugins/eb5d78948eef4b36aa6f5d124e828ce1/Configuration";

// ---------------------------------------------------------------- helpers

/// A server with short timings; tests override what they exercise.
fn fast(name: &str) -> SimServerConfig {
    SimServerConfig {
        name: name.into(),
        api_key: KEY.into(),
        user_key: Some(USER_KEY.into()),
        start_delay: Duration::from_millis(40),
        run_length: Duration::from_millis(200),
        first_progress_after: Duration::from_millis(30),
        result_delay: Duration::from_millis(60),
        cancel_delay: Duration::from_millis(60),
        follow_up_delay: Duration::from_millis(40),
        downtime: Duration::from_millis(200),
        ..Default::default()
    }
}

/// The items of a JSON array; anything else fails the test.
fn items(v: &Value) -> &[Value] {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
}

/// [`fast`], then what the test is about.
fn fast_with(name: &str, f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    let mut c = fast(name);
    f(&mut c);
    c
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        common::json_body(&self.body)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Everything the server sent before it closed, and how the read ended (for the tests of
/// the HTTP server itself).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Option<std::io::Error>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write request");
    let mut out = Vec::new();
    let err = s.read_to_end(&mut out).await.err();
    (out, err)
}

/// Parse one raw answer; `Err` says why it is not a complete HTTP answer.
fn parse(bytes: &[u8]) -> Result<(Resp, usize), String> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {} bytes", bytes.len()))?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or("no Content-Length")?;
    let body = &bytes[end + 4..];
    if body.len() < len {
        return Err(format!("body truncated: {} of {len} bytes", body.len()));
    }
    let resp = Resp {
        status,
        headers,
        body: body[..len].to_vec(),
    };
    Ok((resp, end + 4 + len))
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "POST" {
        r.push_str("Content-Length: 0\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// One request with reqwest on a connection of its own (`Host: sim`, as every test's
/// answers expect); `Err` says why there is no whole answer.
async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    // One client for the file (building one loads the TLS roots); no idle connections.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("an HTTP client")
    });
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client
        .request(method, format!("http://{addr}{path}"))
        .header("Host", "sim")
        .header("Connection", "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = answer
        .bytes()
        .await
        .map_err(|e| format!("body cut off: {e}"))?
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    try_send(addr, method, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn auth(key: &str) -> String {
    format!(r#"MediaBrowser Client="sim-tests", Version="1", Token="{key}""#)
}

/// An authenticated call to server `name`.
async fn call(sim: &Simulator, name: &str, method: &str, path: &str) -> Resp {
    call_with(sim, KEY, method, &format!("/s/{name}{path}")).await
}

/// A call to `path` with `key` in the `Authorization` header.
async fn call_with(sim: &Simulator, key: &str, method: &str, path: &str) -> Resp {
    send(sim.addr(), method, path, &[("Authorization", &auth(key))]).await
}

async fn task(sim: &Simulator, name: &str) -> Value {
    let r = call(sim, name, "GET", TASK).await;
    assert_eq!(r.status, 200, "GET task on {name}: {}", r.text());
    r.json()
}

async fn plugin_config(sim: &Simulator, name: &str) -> Value {
    let r = call(sim, name, "GET", CONFIG).await;
    assert_eq!(r.status, 200, "GET plugin config on {name}");
    r.json()
}

const WAIT: Duration = Duration::from_secs(5);

/// Start a run and wait until its result replaces the old one; returns the task document.
async fn run_to_result(sim: &Simulator, name: &str) -> Value {
    let old = task(sim, name).await["LastExecutionResult"].clone();
    assert_eq!(call(sim, name, "POST", START).await.status, 204);
    wait_for_new_result(sim, name, &old).await
}

async fn wait_for_new_result(sim: &Simulator, name: &str, old: &Value) -> Value {
    wait_for_result_of(sim, name, MIGRATOR_TASK_ID, old).await
}

/// Wait until the task with this id is Idle with a result other than `old`.
async fn wait_for_result_of(sim: &Simulator, name: &str, task_id: &str, old: &Value) -> Value {
    let path = format!("/ScheduledTasks/{task_id}");
    let deadline = Instant::now() + WAIT;
    loop {
        // A restarting server answers 503 for a while: keep polling through it.
        let r = call(sim, name, "GET", &path).await;
        let t = if r.status == 200 {
            r.json()
        } else {
            Value::from(r.status)
        };
        if t["State"] == "Idle" && t["LastExecutionResult"] != *old {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting until {name} shows a new LastExecutionResult of {task_id}; last: {t}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn assert_no_nulls(v: &Value, at: &str) {
    match v {
        Value::Null => panic!("null at {at}"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            assert!(
                k.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{at}.{k} is not PascalCase"
            );
            assert_no_nulls(v, &format!("{at}.{k}"))
        }),
        _ => {}
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Fraction digits of a Jellyfin date, checking its shape on the way.
fn fraction_len(date: &str) -> usize {
    let (whole, frac) = date
        .split_once('.')
        .unwrap_or_else(|| panic!("no fraction: {date}"));
    assert_eq!(whole.len(), 19, "date {date}");
    let frac = frac
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("no Z: {date}"));
    assert!(
        (1..=7).contains(&frac.len()) && frac.bytes().all(|b| b.is_ascii_digit()),
        "{date}"
    );
    frac.len()
}

/// What Python's `zipfile` (a reader independent of this project) makes of a ZIP: it
/// checks every entry's CRC, and tells each entry's size and the text of the small ones.
fn python_reads_zip(zip: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    std::fs::write(&path, zip).unwrap();
    let script = "import json, sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  bad = z.testzip()\n\
                  assert bad is None, 'bad CRC in ' + bad\n\
                  print(json.dumps({'sizes': {i.filename: i.file_size for i in z.infolist()},\n\
                  'texts': {i.filename: z.read(i).decode() for i in z.infolist() if i.file_size < 200000}}))";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs (every machine this project builds on has it)");
    assert!(
        out.status.success(),
        "Python's zipfile refused the ZIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The ZIP in a configuration field, decoded.
fn zip_in(cfg: &Value, field: &str) -> Vec<u8> {
    decode_base64(cfg[field].as_str().unwrap_or_else(|| panic!("no {field}")))
        .unwrap_or_else(|| panic!("{field} is not base64"))
}

/// The entry names of a ZIP as Python lists them, sorted.
fn entry_names(read: &Value) -> Vec<String> {
    let mut v: Vec<String> = read["sizes"].as_object().unwrap().keys().cloned().collect();
    v.sort();
    v
}

/// Check the first log line is `HH:mm:ss Migrator {word} started` at the run's start in
/// the server's local time (the default `utc_offset`, +01:00).
fn assert_log_starts(log: &str, word: &str, start: &Value) {
    let local = time(start) + chrono::Duration::hours(1);
    let want = format!("{} Migrator {word} started", local.format("%H:%M:%S"));
    assert_eq!(log.lines().next(), Some(want.as_str()), "{log}");
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not a date: {v}"))
        .with_timezone(&chrono::Utc)
}

// ---------------------------------------------------------------- endpoints and wire format

#[tokio::test]
async fn ping_and_public_info_need_no_key() {
    let sim = sim(vec![fast("a")]).await;
    let r = send(sim.addr(), "GET", "/s/a/System/Ping", &[]).await;
    assert_eq!((r.status, r.json()), (200, Value::from("Jellyfin Server")));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = send(sim.addr(), "GET", "/s/a/system/info/PUBLIC", &[]).await;
    assert_eq!(r.status, 200);
    let info = r.json();
    for k in [
        "LocalAddress",
        "ServerName",
        "Version",
        "ProductName",
        "OperatingSystem",
        "Id",
        "StartupWizardCompleted",
    ] {
        assert!(info.get(k).is_some(), "{k} missing in {info}");
    }
    assert_eq!(info["LocalAddress"], "http://sim/s/a");
    assert!(is_id(info["Id"].as_str().unwrap()));
}

#[tokio::test]
async fn task_list_is_sorted_pascal_case_without_nulls() {
    let sim = sim(vec![fast("a")]).await;
    let r = call(&sim, "a", "GET", "/scheduledtasks").await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_no_nulls(&list, "tasks");
    let tasks = list.as_array().unwrap();
    assert!(tasks.len() >= 4, "migrator plus built-ins: {list}");
    let names: Vec<&str> = tasks.iter().map(|t| t["Name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(tasks.iter().all(|t| is_id(t["Id"].as_str().unwrap())));
    for task in SimTask::ALL {
        let t = tasks.iter().find(|t| t["Key"] == task.key()).unwrap();
        assert_eq!(t["Id"], task.id(), "the real id of {}", task.key());
    }
    let by_name = |n: &str| tasks.iter().find(|t| t["Name"] == n).unwrap()["Id"].clone();
    assert_eq!(
        by_name("Scan Media Library"),
        "7738148ffcd07979c7ceb148e06b3aed"
    );
    assert_eq!(
        by_name("Clean Cache Directory"),
        "241d4fcb19a1d557ee62428e411da609"
    );
    assert_eq!(
        by_name("Clean Log Directory"),
        "1c8ede62c521bea0bf851344f5b8ca40"
    );
    let m = tasks
        .iter()
        .find(|t| t["Key"] == MIGRATOR_TASK_KEY)
        .unwrap();
    assert_eq!(m["Name"], "Migration: Export Data");
    assert_eq!(m["Category"], "Migration");
    assert_eq!(m["Id"], MIGRATOR_TASK_ID);
    assert_eq!(m["Triggers"], serde_json::json!([]));
    assert_eq!(m["State"], "Idle");
    assert_eq!(m["IsHidden"], false);
    assert!(
        m.get("CurrentProgressPercentage").is_none(),
        "no progress when Idle"
    );
    let res = &m["LastExecutionResult"];
    assert_eq!(res["Status"], "Completed");
    assert!(res.get("ErrorMessage").is_none());
    assert_eq!(
        (res["Key"].as_str(), res["Id"].as_str()),
        (Some(MIGRATOR_TASK_KEY), Some(MIGRATOR_TASK_ID))
    );
}

#[tokio::test]
async fn unknown_task_is_404_problem_json_and_ids_ignore_case() {
    let sim = sim(vec![fast("a")]).await;
    for (method, path) in [
        ("GET", "/ScheduledTasks/00000000000000000000000000000000"),
        (
            "POST",
            "/ScheduledTasks/Running/ffffffffffffffffffffffffffffffff",
        ),
        (
            "DELETE",
            "/ScheduledTasks/Running/ffffffffffffffffffffffffffffffff",
        ),
    ] {
        {
            let r = call(&sim, "a", method, path).await;
            assert_eq!(r.status, 404, "{method} {path}");
            assert_eq!(
                r.header("Content-Type"),
                Some("application/problem+json; charset=utf-8")
            );
            assert_eq!(r.json()["status"], 404);
        }
    }
    let r = call(&sim, "a", "GET", &TASK.to_uppercase()).await;
    assert_eq!(
        (r.status, r.json()["Id"].as_str()),
        (200, Some(MIGRATOR_TASK_ID))
    );
    // Task ids are compared as given: the dashed GUID form is not found.
    for method in ["GET", "POST"] {
        let path = if method == "GET" {
            "/ScheduledTasks/d6eb93f1-d159-1e7d-5e6c-70f1d25e6fdd"
        } else {
            "/ScheduledTasks/Running/d6eb93f1-d159-1e7d-5e6c-70f1d25e6fdd"
        };
        assert_eq!(call(&sim, "a", method, path).await.status, 404, "{method}");
    }
    assert_eq!(
        send(sim.addr(), "GET", "/s/nope/System/Ping", &[])
            .await
            .status,
        404
    );
    let r = call(
        &sim,
        "a",
        "GET",
        "/ScheduledTasks/Running/ffffffffffffffffffffffffffffffff",
    )
    .await;
    assert_eq!(r.status, 405, "GET on the start route");
}

#[tokio::test]
async fn plugins_and_configuration_with_dashed_id() {
    let sim = sim(vec![fast("a")]).await;
    let plugins = call(&sim, "a", "GET", "/Plugins").await.json();
    assert_no_nulls(&plugins, "plugins");
    let m = items(&plugins)
        .iter()
        .find(|p| p["Id"] == MIGRATOR_PLUGIN_ID)
        .unwrap();
    assert_eq!(
        (m["Name"].as_str(), m["Status"].as_str()),
        (Some("Migrator"), Some("Active"))
    );
    for k in ["Version", "Description", "CanUninstall", "HasImage"] {
        assert!(m.get(k).is_some(), "{k}");
    }
    assert_eq!(m["Version"], "1.0.0.0");
    assert_eq!(m["ConfigurationFileName"], "Jellyfin.Plugin.Template.xml");
    let ids: Vec<&str> = items(&plugins)
        .iter()
        .map(|p| p["Id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"a628c0dafac54c7e9d1a7134223f14c8"),
        "OMDb: {ids:?}"
    );
    assert!(
        ids.contains(&"b8715ed16c4745289ad3f72deb539cd4"),
        "TMDb: {ids:?}"
    );
    let cfg = plugin_config(&sim, "a").await;
    assert_no_nulls(&cfg, "config");
    for (field, default) in [
        ("ExportDirectory", serde_json::json!("")),
        ("VerifyDirectory", serde_json::json!("")),
        ("ImportDirectory", serde_json::json!("")),
        ("IncludeUsers", serde_json::json!(true)),
        ("IncludeUserPasswordHashes", serde_json::json!(false)),
        ("IncludeLibraries", serde_json::json!(true)),
        ("IncludePermissions", serde_json::json!(true)),
        ("IncludeWatchHistory", serde_json::json!(true)),
        ("IncludeDevices", serde_json::json!(true)),
        ("SelectedUserIds", serde_json::json!([])),
        ("SelectedUsernames", serde_json::json!([])),
        ("SelectedLibraryIds", serde_json::json!([])),
        ("SelectedLibraryPaths", serde_json::json!([])),
        ("ImportIncludeLibraries", serde_json::json!(false)),
        ("ImportIncludeUsers", serde_json::json!(true)),
    ] {
        assert_eq!(cfg[field], default, "{field}");
    }
    for absent in [
        "LastImportZipBase64",
        "LastImportAnalysisJson",
        "LastImportExtractPath",
        "LastImportUtc",
        "LastImportLog",
        "ImportSelectedLibraryIds",
        "ImportLibraryPathMappingsJson",
        "IncludePasswordHashes",
    ] {
        assert!(
            cfg.get(absent).is_none(),
            "{absent} before any upload or import"
        );
    }
    let dashed = call(
        &sim,
        "a",
        "GET",
        "/Plugins/EB5D7894-8EEF-4B36-AA6F-5D124E828CE1/Configuration",
    )
    .await;
    assert_eq!(dashed.json(), cfg);
    assert_eq!(cfg["Mode"], "Export");
    assert!(
        cfg["LastExportPath"]
            .as_str()
            .unwrap()
            .starts_with("/var/lib/jellyfin/plugins/Migrator/exports/")
    );
    assert_eq!(
        cfg["LastExportZipBase64"].as_str().unwrap().len(),
        64 * 1024
    );
    let r = call(
        &sim,
        "a",
        "GET",
        "/Plugins/00000000000000000000000000000000/Configuration",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_zip_is_a_real_archive_sized_by_the_scenario() {
    let sim = sim(vec![fast_with("big", |c| c.zip_base64_len = 3_000_000)]).await;
    let cfg = plugin_config(&sim, "big").await;
    assert_eq!(
        cfg["LastExportZipBase64"].as_str().unwrap().len(),
        3_000_000
    );
    let zip = zip_in(&cfg, "LastExportZipBase64");
    assert_eq!(zip.len(), 2_250_000, "3/4 of the base64, to the byte");
    let read = python_reads_zip(&zip);
    assert_eq!(
        entry_names(&read),
        [
            "devices.json",
            "export.log",
            "libraries.json",
            "users_basic.json",
            "watch_history/alice.json",
            "watch_history/bob.json",
            "watch_history/kids.json"
        ]
    );
    assert_eq!(read["texts"]["export.log"], cfg["LastExportLog"]);
    assert!(read["sizes"]["watch_history/kids.json"].as_u64().unwrap() > 2_000_000);
    assert_eq!(sim.server("big").last_export_zip().unwrap(), zip);
}

#[tokio::test]
async fn never_ran_has_no_result_and_no_export() {
    let sim = sim(vec![fast_with("a", |c| c.history = History::Never)]).await;
    let t = task(&sim, "a").await;
    assert!(t.get("LastExecutionResult").is_none(), "{t}");
    let cfg = plugin_config(&sim, "a").await;
    assert_no_nulls(&cfg, "config");
    for k in ["LastExportUtc", "LastExportPath", "LastExportZipBase64"] {
        assert!(cfg.get(k).is_none(), "{k} in {cfg}");
    }
    let t = run_to_result(&sim, "a").await;
    assert_eq!(t["LastExecutionResult"]["Status"], "Completed");
}

// ---------------------------------------------------------------- a run's life

#[tokio::test]
async fn start_is_async_then_running_then_idle_before_the_new_result() {
    let sim = sim(vec![fast_with("a", |c| {
        c.start_delay = Duration::from_millis(150);
        c.run_length = Duration::from_millis(600);
        c.first_progress_after = Duration::from_millis(150);
        c.result_delay = Duration::from_millis(200);
    })])
    .await;
    let before = task(&sim, "a").await;
    let old = before["LastExecutionResult"].clone();
    let cfg_before = plugin_config(&sim, "a").await;

    let r = call(&sim, "a", "POST", START).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let t = task(&sim, "a").await;
    assert_eq!(
        (t["State"].as_str(), &t["LastExecutionResult"]),
        (Some("Idle"), &old),
        "right after the 204"
    );

    // Watch every state until the new result shows, then check the order seen.
    let mut seen: Vec<(String, Option<i64>, bool)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let t = task(&sim, "a").await;
        let state = t["State"].as_str().unwrap().to_string();
        let new = t["LastExecutionResult"] != old;
        let progress = t
            .get("CurrentProgressPercentage")
            .map(|p| p.as_i64().unwrap());
        if seen.last() != Some(&(state.clone(), progress, new)) {
            seen.push((state.clone(), progress, new));
        }
        if new {
            break t;
        }
        assert!(Instant::now() < deadline, "no new result; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let running: Vec<_> = seen.iter().filter(|s| s.0 == "Running").collect();
    assert!(!running.is_empty(), "never Running: {seen:?}");
    assert_eq!(
        running[0].1, None,
        "progress absent until the first report: {seen:?}"
    );
    assert!(
        running.iter().any(|s| s.1 == Some(0)),
        "progress 0 reported: {seen:?}"
    );
    let after_run = seen.iter().rposition(|s| s.0 == "Running").unwrap();
    assert!(
        seen[after_run + 1..]
            .iter()
            .any(|s| s.0 == "Idle" && s.1.is_none() && !s.2),
        "Idle with the old result before the new one: {seen:?}"
    );
    let res = &last["LastExecutionResult"];
    assert_eq!(res["Status"], "Completed");
    assert!(time(&res["StartTimeUtc"]) > time(&old["EndTimeUtc"]));
    assert!(time(&res["EndTimeUtc"]) > time(&res["StartTimeUtc"]));

    let cfg = plugin_config(&sim, "a").await;
    assert_ne!(cfg["LastExportUtc"], cfg_before["LastExportUtc"]);
    assert!(time(&cfg["LastExportUtc"]) >= time(&res["StartTimeUtc"]));
    let path = cfg["LastExportPath"].as_str().unwrap();
    let folder = path.rsplit('/').next().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(folder, "%Y%m%d_%H%M%S").is_ok(),
        "{path}"
    );
    let log = cfg["LastExportLog"].as_str().unwrap();
    assert_log_starts(log, "Export", &res["StartTimeUtc"]);
    assert!(!log.contains("ERROR:"), "{log}");
    assert!(time(&cfg["LastExportUtc"]) <= time(&res["EndTimeUtc"]));
    assert_eq!(
        folder,
        time(&res["StartTimeUtc"])
            .format("%Y%m%d_%H%M%S")
            .to_string(),
        "the folder is named by the run's start in UTC"
    );
}

#[tokio::test]
async fn second_start_is_204_and_nothing_happens() {
    let sim = sim(vec![fast_with("a", |c| {
        c.run_length = Duration::from_millis(400)
    })])
    .await;
    let h = sim.server("a");
    assert_eq!(call(&sim, "a", "POST", START).await.status, 204);
    wait_until(WAIT, "the task runs", || async {
        task(&sim, "a").await["State"] == "Running"
    })
    .await;
    let r = call(&sim, "a", "POST", START).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let old = task(&sim, "a").await["LastExecutionResult"].clone();
    let t = wait_for_new_result(&sim, "a", &old).await;
    assert_eq!(h.task_state().runs_started, 1, "no queued run, no restart");
    assert_eq!(h.start_requests().len(), 2);
    assert_eq!(t["State"], "Idle");
}

#[tokio::test]
async fn cancel_on_idle_or_cancelling_is_500_text() {
    let sim = sim(vec![fast_with("a", |c| c.cancel = CancelMode::Stuck)]).await;
    let r = call(&sim, "a", "DELETE", START).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Error processing request.")
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    call(&sim, "a", "POST", START).await;
    wait_until(WAIT, "the task runs", || async {
        task(&sim, "a").await["State"] == "Running"
    })
    .await;
    assert_eq!(call(&sim, "a", "DELETE", START).await.status, 204);
    assert_eq!(task(&sim, "a").await["State"], "Cancelling");
    assert_eq!(
        call(&sim, "a", "DELETE", START).await.status,
        500,
        "already Cancelling"
    );
}

async fn start_then_cancel(sim: &Simulator, name: &str, task_id: &str) -> Value {
    let task_path = format!("/ScheduledTasks/{task_id}");
    let running = format!("/ScheduledTasks/Running/{task_id}");
    let get = || async { call(sim, name, "GET", &task_path).await.json() };
    let old = get().await["LastExecutionResult"].clone();
    assert_eq!(call(sim, name, "POST", &running).await.status, 204);
    let msg = format!("{name} runs");
    wait_until(WAIT, &msg, || async { get().await["State"] == "Running" }).await;
    let r = call(sim, name, "DELETE", &running).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(get().await["State"], "Cancelling");
    old
}

#[tokio::test]
async fn the_migrator_stops_when_cancelled_and_ends_completed_with_its_canceled_line() {
    let sim = sim(vec![
        fast_with("honour", |c| {
            c.cancel = CancelMode::Honour;
            c.run_length = Duration::from_secs(30);
        }),
        fast_with("stuck", |c| {
            c.cancel = CancelMode::Stuck;
            c.run_length = Duration::from_millis(150);
        }),
    ])
    .await;
    let before = plugin_config(&sim, "honour").await;
    let old = start_then_cancel(&sim, "honour", MIGRATOR_TASK_ID).await;
    let t = wait_for_new_result(&sim, "honour", &old).await;
    let res = &t["LastExecutionResult"];
    assert_eq!(res["Status"], "Completed", "the plugin swallows its cancel");
    assert!(res.get("ErrorMessage").is_none());
    assert!(
        time(&res["EndTimeUtc"]) - time(&res["StartTimeUtc"]) < chrono::Duration::seconds(5),
        "it stopped, long before its natural end"
    );
    let cfg = plugin_config(&sim, "honour").await;
    assert!(time(&cfg["LastExportUtc"]) > time(&before["LastExportUtc"]));
    let log = cfg["LastExportLog"].as_str().unwrap();
    assert_log_starts(log, "Export", &res["StartTimeUtc"]);
    let last = log.lines().last().unwrap();
    assert!(
        last.ends_with(&format!("ERROR: Export failed: {CANCELED}: {CANCELED}")),
        "{log}"
    );
    // The ZIP holds what the run wrote before it stopped: here only its log.
    let read = python_reads_zip(&zip_in(&cfg, "LastExportZipBase64"));
    assert_eq!(entry_names(&read), ["export.log"]);
    assert_eq!(read["texts"]["export.log"].as_str(), Some(log));

    start_then_cancel(&sim, "stuck", MIGRATOR_TASK_ID).await;
    let h = sim.server("stuck");
    // Asserting that nothing happens needs time to pass: well past the run's end and
    // the cancel delay, it is still Cancelling.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.task_state().state, TaskState::Cancelling);
    assert_eq!(task(&sim, "stuck").await["State"], "Cancelling");
    // A graceful shutdown writes Aborted only for a Running task, not a Cancelling one.
    let old = task(&sim, "stuck").await["LastExecutionResult"].clone();
    h.restart_gracefully();
    wait_until(WAIT, "the server is back", || async {
        call(&sim, "stuck", "GET", TASK).await.status == 200
    })
    .await;
    let t = task(&sim, "stuck").await;
    assert_eq!(
        (t["State"].as_str(), &t["LastExecutionResult"]),
        (Some("Idle"), &old)
    );
}

#[tokio::test]
async fn other_tasks_end_cancelled_or_ignore_the_cancel() {
    let scan = SimTask::ScanMediaLibrary.id();
    let sim = sim(vec![
        fast_with("honour", |c| {
            c.task = SimTask::ScanMediaLibrary;
            c.cancel = CancelMode::Honour;
            c.run_length = Duration::from_secs(30);
        }),
        fast_with("ignore", |c| {
            c.task = SimTask::ScanMediaLibrary;
            c.cancel = CancelMode::Ignore;
            c.run_length = Duration::from_millis(400);
        }),
    ])
    .await;
    let cfg_before = plugin_config(&sim, "honour").await;
    let old = start_then_cancel(&sim, "honour", scan).await;
    let t = wait_for_result_of(&sim, "honour", scan, &old).await;
    assert_eq!(t["LastExecutionResult"]["Status"], "Cancelled");
    assert_eq!(t["LastExecutionResult"]["Key"], "RefreshLibrary");
    assert_eq!(
        plugin_config(&sim, "honour").await,
        cfg_before,
        "no Migrator run happened"
    );
    assert_eq!(task(&sim, "honour").await["State"], "Idle");

    let old = start_then_cancel(&sim, "ignore", scan).await;
    let t = wait_for_result_of(&sim, "ignore", scan, &old).await;
    let res = &t["LastExecutionResult"];
    assert_eq!(res["Status"], "Completed", "ran to its end");
    assert!(
        time(&res["EndTimeUtc"]) - time(&res["StartTimeUtc"])
            >= chrono::Duration::milliseconds(390)
    );
}

#[tokio::test]
async fn every_outcome() {
    let sim = sim(vec![
        fast_with("ok", |c| c.outcome = RunOutcome::Completed),
        fast_with("failed", |c| {
            c.outcome = RunOutcome::Failed;
            c.error_message = "disk full".into();
        }),
        fast_with("logerr", |c| {
            c.outcome = RunOutcome::CompletedWithLogError;
            c.error_message = "database is locked".into();
        }),
    ])
    .await;
    let mut before = Vec::new();
    for n in ["ok", "failed", "logerr"] {
        before.push(plugin_config(&sim, n).await);
    }
    let (ok, failed, logerr) = tokio::join!(
        run_to_result(&sim, "ok"),
        run_to_result(&sim, "failed"),
        run_to_result(&sim, "logerr"),
    );

    let r = &ok["LastExecutionResult"];
    assert_eq!(r["Status"], "Completed");
    let cfg = plugin_config(&sim, "ok").await;
    assert!(time(&cfg["LastExportUtc"]) > time(&before[0]["LastExportUtc"]));

    let r = &failed["LastExecutionResult"];
    assert_eq!(
        (r["Status"].as_str(), r["ErrorMessage"].as_str()),
        (Some("Failed"), Some("disk full"))
    );
    assert!(
        r["LongErrorMessage"].as_str().unwrap().contains("   at "),
        "a stack trace"
    );
    assert_eq!(
        plugin_config(&sim, "failed").await,
        before[1],
        "Failed writes nothing: log, path, time and ZIP are the previous run's"
    );

    let r = &logerr["LastExecutionResult"];
    assert_eq!(r["Status"], "Completed");
    assert!(r.get("ErrorMessage").is_none());
    let cfg = plugin_config(&sim, "logerr").await;
    let log = cfg["LastExportLog"].as_str().unwrap();
    assert!(
        log.contains(
            "ERROR: Failed to export watch history: database is locked: database is locked"
        ),
        "{log}"
    );
    assert!(
        time(&cfg["LastExportUtc"]) > time(&before[2]["LastExportUtc"]),
        "an error that does not stop the export: everything is written"
    );
    let read = python_reads_zip(&zip_in(&cfg, "LastExportZipBase64"));
    assert!(read["sizes"].get("users_basic.json").is_some());
    assert!(read["sizes"].get("watch_history/alice.json").is_none());
}

#[tokio::test]
async fn every_run_in_every_mode_ends_with_log_path_time_and_a_real_zip() {
    let sim = sim(vec![
        fast_with("export", |c| c.include_user_password_hashes = true),
        fast_with("verify", |c| c.mode = Mode::Verify),
        fast_with("import", |c| c.mode = Mode::Import),
        fast_with("flags", |c| {
            c.include_libraries = false;
            c.include_watch_history = false;
            c.include_devices = false;
        }),
    ])
    .await;
    for (name, word, files) in [
        (
            "export",
            "Export",
            &[
                "devices.json",
                "export.log",
                "libraries.json",
                "users_basic.json",
                "watch_history/alice.json",
                "watch_history/bob.json",
                "watch_history/kids.json",
            ][..],
        ),
        ("verify", "Verify", &["export.log"][..]),
        ("import", "Import", &["export.log"][..]),
        ("flags", "Export", &["export.log", "users_basic.json"][..]),
    ] {
        let before = plugin_config(&sim, name).await;
        let t = run_to_result(&sim, name).await;
        let res = &t["LastExecutionResult"];
        assert_eq!(res["Status"], "Completed", "{name}");
        let cfg = plugin_config(&sim, name).await;
        let utc = time(&cfg["LastExportUtc"]);
        assert!(
            utc > time(&before["LastExportUtc"])
                && utc >= time(&res["StartTimeUtc"])
                && utc <= time(&res["EndTimeUtc"]),
            "{name}: every run moves LastExportUtc"
        );
        assert_ne!(cfg["LastExportPath"], before["LastExportPath"], "{name}");
        let log = cfg["LastExportLog"].as_str().unwrap();
        assert_log_starts(log, word, &res["StartTimeUtc"]);
        assert!(
            log.lines()
                .all(|l| l.as_bytes().get(2) == Some(&b':') && l.as_bytes().get(8) == Some(&b' ')),
            "every line is HH:mm:ss message: {log}"
        );
        assert_ne!(
            cfg["LastExportZipBase64"], before["LastExportZipBase64"],
            "{name}"
        );
        let read = python_reads_zip(&zip_in(&cfg, "LastExportZipBase64"));
        assert_eq!(entry_names(&read), files, "{name}");
        assert_eq!(read["texts"]["export.log"].as_str(), Some(log), "{name}");
        match name {
            "export" => {
                let users = read["texts"]["users_basic.json"].as_str().unwrap();
                assert!(users.contains("$PBKDF2-SHA512$"), "hashes by their flag");
                let devices = read["texts"]["devices.json"].as_str().unwrap();
                assert!(devices.contains("AccessToken"));
            }
            "verify" => assert!(
                log.contains(&format!(
                    "Verifying export at: {}",
                    before["LastExportPath"].as_str().unwrap()
                )),
                "{log}"
            ),
            "import" => assert!(
                log.contains("ERROR: No import ZIP uploaded. Please upload an export ZIP from the Import tab."),
                "{log}"
            ),
            _ => {
                assert!(log.contains("IncludeWatchHistory=false; skipping watch-history export"));
                assert!(log.contains("IncludeDevices=false; skipping devices export"));
            }
        }
    }
    sim.server("import").set_mode(Mode::Verify);
    assert_eq!(plugin_config(&sim, "import").await["Mode"], "Verify");
}

#[tokio::test]
async fn mode_is_kept_as_saved_and_read_like_the_plugin_reads_it() {
    let sim = sim(vec![fast_with("a", |c| {
        c.mode_text = Some(" export ".into())
    })])
    .await;
    let h = sim.server("a");
    assert_eq!(plugin_config(&sim, "a").await["Mode"], " export ");
    assert_eq!(h.mode(), Mode::Export);
    for (saved, word, mode) in [
        (" export ", "export", Mode::Export),
        ("IMPORT", "IMPORT", Mode::Import),
        ("Backup", "Export", Mode::Export),
        ("", "Export", Mode::Export),
        ("verify\t", "verify", Mode::Verify),
    ] {
        h.set_mode_text(saved);
        assert_eq!(h.mode(), mode, "{saved:?}");
        let res = run_to_result(&sim, "a").await["LastExecutionResult"].clone();
        let log = plugin_config(&sim, "a").await["LastExportLog"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_log_starts(&log, word, &res["StartTimeUtc"]);
    }
}

#[tokio::test]
async fn an_import_upload_stays_and_an_import_run_analyses_it() {
    let sim = sim(vec![fast_with("a", |c| c.import_zip_base64_len = 400_000)]).await;
    let cfg = plugin_config(&sim, "a").await;
    assert_eq!(cfg["Mode"], "Export");
    let upload = cfg["LastImportZipBase64"].clone();
    assert_eq!(upload.as_str().unwrap().len(), 400_000);
    let read = python_reads_zip(&zip_in(&cfg, "LastImportZipBase64"));
    assert!(
        read["sizes"].get("users_basic.json").is_some(),
        "an export ZIP was uploaded"
    );
    assert!(cfg.get("LastImportUtc").is_none(), "no import ran yet");

    // An export leaves the upload where it is.
    run_to_result(&sim, "a").await;
    let cfg = plugin_config(&sim, "a").await;
    assert_eq!(cfg["LastImportZipBase64"], upload);

    // An Import (Mode set back by hand) analyses it and records the LastImport* fields.
    sim.server("a").set_mode(Mode::Import);
    let res = run_to_result(&sim, "a").await["LastExecutionResult"].clone();
    let cfg = plugin_config(&sim, "a").await;
    assert_eq!(cfg["LastImportZipBase64"], upload, "nothing ever clears it");
    for k in [
        "LastImportAnalysisJson",
        "LastImportExtractPath",
        "LastImportUtc",
        "LastImportLog",
    ] {
        assert!(cfg.get(k).is_some(), "{k}");
    }
    let log = cfg["LastExportLog"].as_str().unwrap();
    assert_log_starts(log, "Import", &res["StartTimeUtc"]);
    assert!(log.contains("Import analysis finished."), "{log}");
    assert!(time(&cfg["LastImportUtc"]) >= time(&res["StartTimeUtc"]));

    // The Import tab: a new upload, and Mode becomes Import.
    sim.server("a").set_mode(Mode::Export);
    sim.server("a").upload_import_zip(40_000);
    let cfg = plugin_config(&sim, "a").await;
    assert_eq!(
        (
            cfg["Mode"].as_str(),
            cfg["LastImportZipBase64"].as_str().map(str::len)
        ),
        (Some("Import"), Some(40_000))
    );
}

#[tokio::test]
async fn a_zip_that_fails_to_build_leaves_the_previous_one() {
    let sim = sim(vec![fast_with("a", |c| c.zip_fails = true)]).await;
    let before = plugin_config(&sim, "a").await;
    let res = run_to_result(&sim, "a").await["LastExecutionResult"].clone();
    assert_eq!(res["Status"], "Completed");
    let cfg = plugin_config(&sim, "a").await;
    assert!(time(&cfg["LastExportUtc"]) > time(&before["LastExportUtc"]));
    let log = cfg["LastExportLog"].as_str().unwrap();
    assert!(
        !log.contains("ERROR"),
        "the ZIP's error came after the log was saved: {log}"
    );
    assert_eq!(cfg["LastExportZipBase64"], before["LastExportZipBase64"]);
    let read = python_reads_zip(&zip_in(&cfg, "LastExportZipBase64"));
    assert_eq!(read["texts"]["export.log"], before["LastExportLog"]);
    assert_ne!(
        read["texts"]["export.log"], cfg["LastExportLog"],
        "a stale ZIP"
    );
}

#[tokio::test]
async fn another_template_plugin_with_the_migrators_id_serves_its_configuration() {
    let sim = sim(vec![fast_with("a", |c| c.plugin_id_collision = true)]).await;
    let plugins = call(&sim, "a", "GET", "/Plugins").await.json();
    let names: Vec<&str> = items(&plugins)
        .iter()
        .filter(|p| p["Id"] == MIGRATOR_PLUGIN_ID)
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Migrator", "Template"]);
    let cfg = plugin_config(&sim, "a").await;
    assert_eq!(
        cfg,
        serde_json::json!({"TrueFalseSetting": true, "AnInteger": 2, "AString": "string", "Options": "AnotherOption"})
    );
    assert_eq!(task(&sim, "a").await["Key"], MIGRATOR_TASK_KEY);
}

#[tokio::test]
async fn dates_have_one_to_seven_digits_that_vary() {
    let sim = sim(vec![fast("a")]).await;
    let mut lens = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let t = run_to_result(&sim, "a").await;
        lens.insert(fraction_len(
            t["LastExecutionResult"]["StartTimeUtc"].as_str().unwrap(),
        ));
        lens.insert(fraction_len(
            t["LastExecutionResult"]["EndTimeUtc"].as_str().unwrap(),
        ));
        lens.insert(fraction_len(
            plugin_config(&sim, "a").await["LastExportUtc"]
                .as_str()
                .unwrap(),
        ));
    }
    for t in call(&sim, "a", "GET", "/ScheduledTasks")
        .await
        .json()
        .as_array()
        .unwrap()
    {
        lens.insert(fraction_len(
            t["LastExecutionResult"]["EndTimeUtc"].as_str().unwrap(),
        ));
    }
    assert!(lens.len() >= 3, "fraction lengths seen: {lens:?}");
    // The same stored result reads the same every time.
    assert_eq!(task(&sim, "a").await, task(&sim, "a").await);
}

#[tokio::test]
async fn a_queued_follow_up_overwrites_the_result() {
    let sim = sim(vec![fast_with("a", |c| c.follow_ups = 1)]).await;
    let h = sim.server("a");
    let first = run_to_result(&sim, "a").await["LastExecutionResult"].clone();
    let second = wait_for_new_result(&sim, "a", &first).await["LastExecutionResult"].clone();
    assert!(time(&second["StartTimeUtc"]) > time(&first["EndTimeUtc"]));
    assert_eq!(h.task_state().runs_started, 2);
    assert_eq!(
        h.start_requests().len(),
        1,
        "the second run was Jellyfin's own"
    );
}

#[tokio::test]
async fn already_running_at_start_and_by_control() {
    let sim = sim(vec![
        fast_with("busy", |c| {
            c.running_at_start = true;
            c.run_length = Duration::from_millis(500);
        }),
        fast("idle"),
    ])
    .await;
    assert_eq!(task(&sim, "busy").await["State"], "Running");
    let h = sim.server("idle");
    h.start_run_now();
    assert_eq!(task(&sim, "idle").await["State"], "Running");
    h.start_run_now(); // while running: queued
    let first = wait_for_new_result(
        &sim,
        "idle",
        &task(&sim, "idle").await["LastExecutionResult"].clone(),
    )
    .await;
    wait_for_new_result(&sim, "idle", &first["LastExecutionResult"]).await;
    assert_eq!(h.task_state().runs_started, 2);
}

// ---------------------------------------------------------------- restarts, crashes, starting

#[tokio::test]
async fn graceful_restart_mid_run_records_aborted_then_503_then_idle() {
    let sim = sim(vec![fast_with("a", |c| {
        c.run_length = Duration::from_secs(30);
        c.restart_after = Some(Duration::from_millis(100));
        c.downtime = Duration::from_millis(300);
        c.retry_after = Some(7);
    })])
    .await;
    let old = task(&sim, "a").await["LastExecutionResult"].clone();
    let started = chrono::Utc::now();
    call(&sim, "a", "POST", START).await;
    wait_until(
        WAIT,
        "the restart makes the task route answer 503",
        || async { call(&sim, "a", "GET", TASK).await.status == 503 },
    )
    .await;
    let r = call(&sim, "a", "GET", TASK).await;
    assert_eq!(
        (r.header("Content-Type"), r.header("Retry-After")),
        (Some("text/html; charset=utf-8"), Some("7"))
    );
    assert!(r.text().contains("<html"));
    assert_eq!(
        call(&sim, "a", "GET", "/System/Ping").await.status,
        200,
        "Ping answers while down"
    );
    assert_eq!(
        call(&sim, "a", "GET", "/System/Info/Public").await.status,
        503
    );
    let t = wait_for_new_result(&sim, "a", &old).await;
    let res = &t["LastExecutionResult"];
    assert_eq!(res["Status"], "Aborted");
    let shutdown = time(&res["EndTimeUtc"]) - time(&res["StartTimeUtc"]);
    assert!(
        shutdown < chrono::Duration::seconds(5),
        "ended at the shutdown, not the run's end"
    );
    assert!(time(&res["StartTimeUtc"]) >= started - chrono::Duration::seconds(1));
}

#[tokio::test]
async fn crash_mid_run_drops_connections_then_idle_with_the_previous_result() {
    let sim = sim(vec![fast_with("a", |c| {
        c.run_length = Duration::from_secs(30);
        c.crash_after = Some(Duration::from_millis(100));
        c.downtime = Duration::from_millis(300);
    })])
    .await;
    let old = task(&sim, "a").await["LastExecutionResult"].clone();
    call(&sim, "a", "POST", START).await;
    let a = auth(KEY);
    let path = format!("/s/a{TASK}");
    wait_until(WAIT, "the crash leaves requests unanswered", || async {
        try_send(sim.addr(), "GET", &path, &[("Authorization", &a)])
            .await
            .is_err()
    })
    .await;
    assert!(
        try_send(sim.addr(), "GET", "/s/a/System/Ping", &[])
            .await
            .is_err(),
        "a crashed server answers nothing"
    );
    wait_until(WAIT, "the server is back", || async {
        try_send(sim.addr(), "GET", &path, &[("Authorization", &a)])
            .await
            .is_ok()
    })
    .await;
    let t = task(&sim, "a").await;
    assert_eq!(
        (t["State"].as_str(), &t["LastExecutionResult"]),
        (Some("Idle"), &old)
    );

    // The same by control, mid-run.
    sim.server("a").update(|c| c.crash_after = None);
    call(&sim, "a", "POST", START).await;
    wait_until(WAIT, "the task runs", || async {
        task(&sim, "a").await["State"] == "Running"
    })
    .await;
    sim.server("a").crash();
    assert!(sim.server("a").task_state().down);
    wait_until(WAIT, "the server is back", || async {
        !sim.server("a").task_state().down
    })
    .await;
    assert_eq!(task(&sim, "a").await["LastExecutionResult"], old);
}

#[tokio::test]
async fn restart_by_control_while_running() {
    let sim = sim(vec![fast_with("a", |c| {
        c.run_length = Duration::from_secs(30)
    })])
    .await;
    call(&sim, "a", "POST", START).await;
    wait_until(WAIT, "the task runs", || async {
        task(&sim, "a").await["State"] == "Running"
    })
    .await;
    sim.server("a").restart_gracefully();
    assert_eq!(call(&sim, "a", "GET", TASK).await.status, 503);
    wait_until(WAIT, "the server is back", || async {
        call(&sim, "a", "GET", TASK).await.status == 200
    })
    .await;
    assert_eq!(
        task(&sim, "a").await["LastExecutionResult"]["Status"],
        "Aborted"
    );
}

#[tokio::test]
async fn starting_answers_503_except_ping() {
    let sim = sim(vec![fast_with("a", |c| {
        c.starting_for = Duration::from_millis(300);
        c.retry_after = Some(3);
    })])
    .await;
    let r = send(sim.addr(), "GET", "/s/a/System/Info/Public", &[]).await;
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("3")));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(call(&sim, "a", "GET", "/ScheduledTasks").await.status, 503);
    assert_eq!(
        send(sim.addr(), "GET", "/s/a/System/Ping", &[])
            .await
            .status,
        200
    );
    wait_until(WAIT, "the server has started", || async {
        send(sim.addr(), "GET", "/s/a/System/Info/Public", &[])
            .await
            .status
            == 200
    })
    .await;
}

// ---------------------------------------------------------------- the plugin

#[tokio::test]
async fn missing_or_inactive_plugin_hides_the_task() {
    let sim = sim(vec![
        fast_with("missing", |c| c.plugin = PluginStatus::Missing),
        fast_with("broken", |c| c.plugin = PluginStatus::Malfunctioned),
        fast_with("off", |c| c.plugin = PluginStatus::Disabled),
    ])
    .await;
    for (name, status) in [
        ("missing", None),
        ("broken", Some("Malfunctioned")),
        ("off", Some("Disabled")),
    ] {
        let plugins = call(&sim, name, "GET", "/Plugins").await.json();
        let m = items(&plugins)
            .iter()
            .find(|p| p["Id"] == MIGRATOR_PLUGIN_ID);
        assert_eq!(m.map(|m| m["Status"].as_str().unwrap()), status, "{name}");
        let tasks = call(&sim, name, "GET", "/ScheduledTasks").await.json();
        assert!(
            !tasks
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["Key"] == MIGRATOR_TASK_KEY),
            "{name}"
        );
        assert_eq!(call(&sim, name, "GET", TASK).await.status, 404, "{name}");
        assert_eq!(call(&sim, name, "POST", START).await.status, 404, "{name}");
        assert_eq!(call(&sim, name, "GET", CONFIG).await.status, 404, "{name}");
    }
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn auth_only_by_the_authorization_header() {
    let sim = sim(vec![
        fast_with("new", |c| c.version = "12.0.0".into()),
        // 10.11 accepts the legacy forms unless EnableLegacyAuthorization is turned off.
        fast_with("old", |c| c.version = "10.11.5".into()),
        fast_with("off", |c| {
            c.version = "10.11.5".into();
            c.legacy_auth = Some(false);
        }),
    ])
    .await;
    let a = sim.addr();
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        send(a, "GET", path, &h).await
    };
    let r = get("/s/new/ScheduledTasks", vec![]).await;
    assert_eq!((r.status, r.body.len()), (401, 0));
    let r = get(
        "/s/new/ScheduledTasks",
        vec![("Authorization", auth("wrong"))],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (401, 0));
    assert_eq!(
        get(
            "/s/new/ScheduledTasks",
            vec![("Authorization", auth(USER_KEY))]
        )
        .await
        .status,
        403
    );
    for ok in [
        format!("MediaBrowser Token=\"{KEY}\""),
        format!("mediabrowser Token={KEY}"),
        format!(
            "MEDIABROWSER Client=\"x\", Device=\"d\", DeviceId=\"i\", Version=\"1\", Token=\"{KEY}\""
        ),
    ] {
        assert_eq!(
            get("/s/new/ScheduledTasks", vec![("Authorization", ok.clone())])
                .await
                .status,
            200,
            "{ok}"
        );
    }
    assert_eq!(
        get(
            "/s/new/ScheduledTasks",
            vec![("Authorization", format!("MediaBrowser token=\"{KEY}\""))]
        )
        .await
        .status,
        401,
        "Token is case-sensitive"
    );
    let legacy: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("X-Emby-Token", vec![("X-Emby-Token", KEY.to_string())]),
        (
            "X-MediaBrowser-Token",
            vec![("X-MediaBrowser-Token", KEY.to_string())],
        ),
        (
            "Emby scheme",
            vec![("Authorization", format!("Emby Token=\"{KEY}\""))],
        ),
        (
            "X-Emby-Authorization",
            vec![(
                "X-Emby-Authorization",
                format!("MediaBrowser Token=\"{KEY}\""),
            )],
        ),
    ];
    for (what, headers) in legacy {
        assert_eq!(
            get("/s/new/ScheduledTasks", headers.clone()).await.status,
            401,
            "{what} refused like 12.0"
        );
        assert_eq!(
            get("/s/off/ScheduledTasks", headers.clone()).await.status,
            401,
            "{what} refused with legacy_auth = false"
        );
        let path = "/s/old/ScheduledTasks";
        assert_eq!(
            get(path, headers).await.status,
            200,
            "{what} accepted by 10.11 by default"
        );
    }
    let q = format!("/s/new/ScheduledTasks?api_key={KEY}");
    assert_eq!(send(a, "GET", &q, &[]).await.status, 401);
    let q = format!("/s/old/ScheduledTasks?api_key={KEY}");
    assert_eq!(send(a, "GET", &q, &[]).await.status, 200);
}

#[tokio::test]
async fn requests_are_recorded_with_their_headers() {
    let sim = sim(vec![fast("a")]).await;
    let a = auth(KEY);
    send(
        sim.addr(),
        "GET",
        "/s/a/ScheduledTasks?isHidden=false",
        &[("Authorization", &a), ("User-Agent", "tester/1")],
    )
    .await;
    let reqs = sim.server("a").requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("GET", "/s/a/ScheduledTasks", "isHidden=false")
    );
    assert_eq!(r.endpoint, Endpoint::TaskList);
    assert_eq!(r.header("user-agent"), Some("tester/1"));
    assert_eq!(r.header("authorization"), Some(a.as_str()));
}

// ---------------------------------------------------------------- base paths

#[tokio::test]
async fn two_servers_under_their_base_paths_and_one_at_the_root() {
    let sim = sim(vec![
        fast_with("one", |c| c.root = true),
        fast_with("two", |c| {
            c.mode = Mode::Verify;
            c.api_key = "other-key".into();
        }),
    ])
    .await;
    let one = call_with(&sim, KEY, "GET", &format!("/s/one{CONFIG}")).await;
    let two = call_with(&sim, "other-key", "GET", &format!("/S/two{CONFIG}")).await;
    assert_eq!(
        (one.json()["Mode"].as_str(), two.json()["Mode"].as_str()),
        (Some("Export"), Some("Verify"))
    );
    assert_eq!(
        send(
            sim.addr(),
            "GET",
            &format!("/s/two{CONFIG}"),
            &[("Authorization", &auth(KEY))]
        )
        .await
        .status,
        401,
        "keys are per server"
    );
    let root = send(sim.addr(), "GET", CONFIG, &[("Authorization", &auth(KEY))]).await;
    assert_eq!(root.json()["Mode"], "Export");
    assert_eq!(
        send(sim.addr(), "GET", "/System/Info/Public", &[])
            .await
            .json()["LocalAddress"],
        "http://sim"
    );
    let r = call_with(&sim, "other-key", "POST", &format!("/s/two{START}")).await;
    assert_eq!(r.status, 204);
    wait_until(WAIT, "two runs", || async {
        sim.server("two").task_state().state == TaskState::Running
    })
    .await;
    assert_eq!(sim.server("one").task_state().state, TaskState::Idle);
    assert_eq!(sim.url("two"), format!("http://{}/s/two", sim.addr()));
    assert!(sim.banner().contains(&format!(
        "two  http://{}/s/two  api key: other-key",
        sim.addr()
    )));
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_server_sets_are_refused() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for servers in [
        vec![fast("a"), fast("a")],
        vec![
            fast_with("a", |c| c.root = true),
            fast_with("b", |c| c.root = true),
        ],
        vec![fast("a/b")],
        vec![],
    ] {
        let err = Simulator::start(addr, servers)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

// ---------------------------------------------------------------- HTTP itself

#[tokio::test]
async fn keep_alive_pipelining_and_connection_close() {
    let sim = sim(vec![fast("a")]).await;
    let mut s = TcpStream::connect(sim.addr()).await.unwrap();
    let two = b"GET /s/a/System/Ping HTTP/1.1\r\nHost: x\r\n\r\nGET /s/a/System/Ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(two).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .await
        .expect("server closes after Connection: close");
    let (first, used) = parse(&out).unwrap();
    let (second, _) = parse(&out[used..]).unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.header("Connection"), None);
    assert_eq!(second.header("Connection"), Some("close"));
}

#[tokio::test]
async fn malformed_requests_get_400_and_close_and_never_hurt_the_server() {
    let sim = sim(vec![fast("a")]).await;
    for bad in [
        &b"HELLO\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /s/a/System/Ping HTTP/1.1\r\nbad header\r\n\r\n",
        b"POST /s/a/x HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /s/a/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let (out, _) = raw(sim.addr(), bad).await;
        let (r, _) =
            parse(&out).unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(bad)));
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
    }
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let (out, _) = raw(sim.addr(), &huge).await;
    assert_eq!(parse(&out).map(|r| r.0.status), Ok(400), "oversized head");
    // Seeded junk: the server must keep answering.
    let mut seed = 42u64;
    for _ in 0..50 {
        let len = (splitmix(&mut seed) % 300) as usize;
        let junk: Vec<u8> = (0..len).map(|_| splitmix(&mut seed) as u8).collect();
        let mut s = TcpStream::connect(sim.addr()).await.unwrap();
        let _ = s.write_all(&junk).await;
        drop(s);
    }
    assert_eq!(
        send(sim.addr(), "GET", "/s/a/System/Ping", &[])
            .await
            .status,
        200
    );
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------- faults

fn with_faults(name: &str, faults: Vec<FaultRule>) -> SimServerConfig {
    SimServerConfig {
        faults,
        ..fast(name)
    }
}

#[tokio::test]
async fn drop_first_n_then_answer() {
    let sim = sim(vec![with_faults(
        "a",
        vec![FaultRule::new(
            Some(Endpoint::Task),
            Requests::first(2),
            Fault::Drop,
        )],
    )])
    .await;
    let a = auth(KEY);
    let path = format!("/s/a{TASK}");
    for i in 1..=2 {
        assert!(
            try_send(sim.addr(), "GET", &path, &[("Authorization", &a)])
                .await
                .is_err(),
            "request {i} dropped"
        );
    }
    assert_eq!(
        send(sim.addr(), "GET", &path, &[("Authorization", &a)])
            .await
            .status,
        200
    );
    assert_eq!(
        send(sim.addr(), "GET", "/s/a/System/Ping", &[])
            .await
            .status,
        200,
        "other endpoints untouched"
    );
}

#[tokio::test]
async fn dropped_start_may_still_have_started() {
    let sim = sim(vec![
        with_faults(
            "after",
            vec![FaultRule::new(
                Some(Endpoint::StartTask),
                Requests::All,
                Fault::DropAfterProcessing,
            )],
        ),
        with_faults(
            "before",
            vec![FaultRule::new(
                Some(Endpoint::StartTask),
                Requests::All,
                Fault::Drop,
            )],
        ),
    ])
    .await;
    let a = auth(KEY);
    for name in ["after", "before"] {
        let path = format!("/s/{name}{START}");
        assert!(
            try_send(sim.addr(), "POST", &path, &[("Authorization", &a)])
                .await
                .is_err()
        );
    }
    wait_until(WAIT, "the start processed before the drop runs", || async {
        sim.server("after").task_state().runs_started == 1
    })
    .await;
    assert_eq!(sim.server("before").task_state().runs_started, 0);
    assert_eq!(sim.server("before").start_requests().len(), 1);
}

#[tokio::test]
async fn broken_bodies() {
    let rule = |f| vec![FaultRule::new(Some(Endpoint::Task), Requests::nth(1), f)];
    let sim = sim(vec![
        with_faults("reset", rule(Fault::ResetMidBody)),
        with_faults("garbage", rule(Fault::Garbage)),
        with_faults("trunc", rule(Fault::TruncatedJson)),
        with_faults("enums", rule(Fault::UnknownEnums)),
        with_faults("e500", rule(Fault::ServerError)),
        with_faults(
            "e503",
            rule(Fault::Unavailable {
                retry_after: Some(9),
            }),
        ),
    ])
    .await;
    let a = auth(KEY);
    let get = |name: &str| {
        let path = format!("/s/{name}{TASK}");
        let a = a.clone();
        let addr = sim.addr();
        async move { raw(addr, &request_bytes("GET", &path, &[("Authorization", &a)])).await }
    };

    let (bytes, _) = get("reset").await;
    let e = parse(&bytes)
        .err()
        .unwrap_or_else(|| panic!("a reset answer parsed"));
    assert!(e.contains("truncated") || e.contains("head"), "{e}");

    let (bytes, _) = get("garbage").await;
    let (r, _) = parse(&bytes).unwrap();
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (200, Some("application/json; charset=utf-8"))
    );
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    let (bytes, _) = get("trunc").await;
    let (r, _) = parse(&bytes).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&r.body).is_err(),
        "{}",
        r.text()
    );

    let (bytes, _) = get("enums").await;
    let t = parse(&bytes).unwrap().0.json();
    assert_eq!(
        (
            t["State"].as_str(),
            t["LastExecutionResult"]["Status"].as_str()
        ),
        (Some("Pausing"), Some("Exploded"))
    );

    let (bytes, _) = get("e500").await;
    assert_eq!(parse(&bytes).unwrap().0.status, 500);
    let (bytes, _) = get("e503").await;
    let r = parse(&bytes).unwrap().0;
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("9")));

    // Only the first request was hit.
    for name in ["reset", "garbage", "trunc", "enums", "e500", "e503"] {
        assert_eq!(task(&sim, name).await["State"], "Idle", "{name}");
    }
}

#[tokio::test]
async fn latency_and_request_ranges_on_any_endpoint() {
    let sim = sim(vec![with_faults(
        "a",
        vec![
            FaultRule::new(None, Requests::range(2, 3), Fault::ServerError),
            FaultRule::new(
                Some(Endpoint::Ping),
                Requests::All,
                Fault::Latency(Duration::from_millis(150)),
            ),
        ],
    )])
    .await;
    let t0 = Instant::now();
    assert_eq!(
        send(sim.addr(), "GET", "/s/a/System/Ping", &[])
            .await
            .status,
        200
    );
    assert!(t0.elapsed() >= Duration::from_millis(150), "slow answer");
    assert_eq!(call(&sim, "a", "GET", "/Plugins").await.status, 500);
    assert_eq!(call(&sim, "a", "GET", TASK).await.status, 500);
    assert_eq!(call(&sim, "a", "GET", TASK).await.status, 200);
}

#[tokio::test]
async fn task_vanishes_after_the_start_and_duplicate_keys() {
    let sim = sim(vec![
        fast_with("gone", |c| c.task_vanishes = true),
        fast_with("dup", |c| c.duplicate_task_key = true),
    ])
    .await;
    assert_eq!(call(&sim, "gone", "POST", START).await.status, 204);
    assert_eq!(call(&sim, "gone", "GET", TASK).await.status, 404);
    let tasks = call(&sim, "gone", "GET", "/ScheduledTasks").await.json();
    assert!(
        !tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Key"] == MIGRATOR_TASK_KEY)
    );

    let tasks = call(&sim, "dup", "GET", "/ScheduledTasks").await.json();
    let ids: Vec<&str> = items(&tasks)
        .iter()
        .filter(|t| t["Key"] == MIGRATOR_TASK_KEY)
        .map(|t| t["Id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&MIGRATOR_TASK_ID) && ids.contains(&DUPLICATE_TASK_ID));
}

#[tokio::test]
async fn the_example_scenario_serves() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulate-scenario.toml");
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sim = sim(scenario.servers).await;
    for name in sim.names() {
        assert_eq!(
            send(sim.addr(), "GET", &format!("/s/{name}/System/Ping"), &[])
                .await
                .status,
            200,
            "{name}"
        );
    }
    assert_eq!(
        send(sim.addr(), "GET", "/System/Ping", &[]).await.status,
        200,
        "the root server"
    );
}

#[tokio::test]
async fn a_fleet_of_a_thousand_is_cheap_to_start_and_trigger() {
    let servers: Vec<_> = (0..1000).map(|i| fast(&format!("s{i:04}"))).collect();
    let sim = sim(servers).await;
    let a = auth(KEY);
    for i in (0..1000).step_by(100) {
        let r = send(
            sim.addr(),
            "POST",
            &format!("/s/s{i:04}{START}"),
            &[("Authorization", &a)],
        )
        .await;
        assert_eq!(r.status, 204);
    }
    wait_until(WAIT, "the started servers run", || async {
        (0..1000)
            .step_by(100)
            .all(|i| sim.server(&format!("s{i:04}")).task_state().runs_started == 1)
    })
    .await;
    assert_eq!(sim.server("s0001").task_state().runs_started, 0);
}

#[tokio::test]
async fn the_simulate_command_serves_the_demo_at_the_root_and_under_its_name() {
    // A free port: bind, read it, release it (the command binds it again).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let serving = tokio::spawn(jellyfin_export_scheduler::commands::simulate::simulate(
        addr,
        None,
        std::io::sink(),
    ));
    wait_until(WAIT, "the demo answers at /s/demo", || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let a = auth("demo-api-key-0000000000000000000");
    for base in ["", "/s/demo"] {
        let r = send(
            addr,
            "GET",
            &format!("{base}{TASK}"),
            &[("Authorization", &a)],
        )
        .await;
        assert_eq!(r.status, 200, "{base}");
    }
    // Dropping the future stops the simulator.
    serving.abort();
    let _ = serving.await;
    wait_until(WAIT, "the port is closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
}
