//! The Jellyfin routes of one simulated server: routing under its base path, the
//! starting/down gates, authentication, the JSON documents, and where faults bend answers.
//!
//! Routes and ids are matched case-insensitively like ASP.NET; JSON is PascalCase with null
//! fields left out. The task state machine lives in `model`; this module only reads and
//! pokes it.

use super::auth::{Caller, caller};
use super::config::{PluginStatus, SimServerConfig, SimTask};
use super::fault::{self, Fault};
use super::journal::Journal;
use super::model::{DownKind, ServerState, TaskResult, TaskState};
use super::plugin::{MIGRATOR_PLUGIN_ID, template_document};
use super::route::{Endpoint, Route};
use super::seed::{FNV_OFFSET, fnv1a, hex_id, splitmix64};
use super::time::SimTime;
use crate::http1::{HTML, JSON, PROBLEM_JSON, Request, Response, TEXT};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

pub const MIGRATOR_TASK_ID: &str = "d6eb93f1d1591e7d5e6c70f1d25e6fdd";
pub const MIGRATOR_TASK_KEY: &str = "JellyfinMigratorExport";
pub const MIGRATOR_TASK_NAME: &str = "Migration: Export Data";
/// Id of the second task that claims the Migrator's key (`duplicate_task_key`).
pub const DUPLICATE_TASK_ID: &str = "0e3d5f2b8c1a4d7e9f6b3a2c1d0e9f8a";

/// One server: its state and its journal under one lock (held only for bookkeeping,
/// never across an await).
#[derive(Debug)]
pub(crate) struct ServerCell {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub state: ServerState,
    pub journal: Journal,
}

impl ServerCell {
    pub fn new(state: ServerState) -> Self {
        ServerCell {
            inner: Mutex::new(Inner {
                state,
                journal: Journal::default(),
            }),
        }
    }

    /// The lock; a panic elsewhere while holding it leaves data that is still usable.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the connection should do.
#[derive(Debug)]
pub(crate) enum Reply {
    Send(Response),
    /// Send the head and half the body, then reset.
    Reset(Response),
    /// Close without answering.
    Drop,
}

/// Answer one request to `cell`. `path` is the part after the base path; `base` is the
/// base path itself (`/s/<name>` or empty), for `LocalAddress`.
pub(crate) async fn handle(cell: &ServerCell, req: &Request, path: &str, base: &str) -> Reply {
    let route = Route::classify(&req.method, path);
    let verdict = {
        let mut inner = cell.lock();
        let (nth, total) = inner.journal.record(req, route.endpoint);
        fault::judge(&inner.state.cfg.faults, route.endpoint, nth, total)
    };
    if !verdict.latency.is_zero() {
        tokio::time::sleep(verdict.latency).await;
    }
    match verdict.fault {
        Some(Fault::Drop) => return Reply::Drop,
        Some(Fault::ServerError) => return Reply::Send(server_error()),
        Some(Fault::Unavailable { retry_after }) => return Reply::Send(unavailable(retry_after)),
        _ => {}
    }
    let reply = {
        let mut inner = cell.lock();
        let now = Instant::now();
        inner.state.advance(now);
        answer(&mut inner.state, &route, req, base, now)
    };
    match (verdict.fault, reply) {
        (Some(Fault::DropAfterProcessing), _) => Reply::Drop,
        (Some(Fault::ResetMidBody), Reply::Send(r)) => Reply::Reset(r),
        (Some(Fault::Garbage), Reply::Send(_)) => Reply::Send(Response::new(
            200,
            Some(JSON),
            &b"<html><body>upstream said: \x00\xff{{not json"[..],
        )),
        (Some(Fault::TruncatedJson), Reply::Send(r)) => Reply::Send(r.truncated()),
        (Some(Fault::UnknownEnums), Reply::Send(r)) => Reply::Send(unknown_enums(r)),
        (_, reply) => reply,
    }
}

fn answer(st: &mut ServerState, route: &Route, req: &Request, base: &str, now: Instant) -> Reply {
    let ep = route.endpoint;
    match st.down() {
        Some(DownKind::Crash) => return Reply::Drop,
        Some(DownKind::Graceful) if ep != Endpoint::Ping => {
            return Reply::Send(unavailable(st.cfg.retry_after));
        }
        _ => {}
    }
    if ep != Endpoint::Ping && st.starting(now) {
        return Reply::Send(unavailable(st.cfg.retry_after));
    }
    if ep == Endpoint::Other {
        return Reply::Send(Response::empty(404));
    }
    if !route.method_ok {
        return Reply::Send(Response::empty(405));
    }
    if !ep.anonymous() {
        match caller(req, &st.cfg) {
            Caller::Admin => {}
            Caller::User => return Reply::Send(Response::empty(403)),
            Caller::Anonymous => return Reply::Send(Response::empty(401)),
        }
    }
    Reply::Send(match ep {
        Endpoint::Ping => json_response(&json!("Jellyfin Server")),
        Endpoint::PublicInfo => public_info(st, req, base),
        Endpoint::TaskList => {
            let mut tasks = tasks(st, now);
            tasks.sort_by(|a, b| (a.name, a.id).cmp(&(b.name, b.id)));
            json_response(&tasks)
        }
        Endpoint::Task => match find_task(st, now, &route.id) {
            Some(t) => json_response(&t),
            None => not_found(),
        },
        Endpoint::StartTask => match find_task(st, now, &route.id).map(|t| t.id) {
            Some(id) if id == st.cfg.task.id() => {
                st.request_start(now);
                Response::empty(204)
            }
            // The other listed tasks are not simulated: a start is accepted and
            // forgotten, like a start of a task that finishes at once.
            Some(_) => Response::empty(204),
            None => not_found(),
        },
        Endpoint::StopTask => match find_task(st, now, &route.id).map(|t| t.id) {
            Some(id) if id == st.cfg.task.id() => match st.request_cancel(now) {
                super::model::CancelAnswer::Accepted => Response::empty(204),
                super::model::CancelAnswer::NotRunning => server_error(),
            },
            Some(_) => server_error(),
            None => not_found(),
        },
        Endpoint::Plugins => json_response(&plugins(&st.cfg)),
        Endpoint::PluginConfig => plugin_config(st, &route.id),
        Endpoint::Other => Response::empty(404),
    })
}

fn json_response<T: Serialize + ?Sized>(doc: &T) -> Response {
    match serde_json::to_vec(doc) {
        Ok(body) => Response::json(body),
        Err(_) => server_error(),
    }
}

fn server_error() -> Response {
    Response::new(500, Some(TEXT), "Error processing request.")
}

/// What Jellyfin says while starting or restarting (and an IP filter, without a body).
fn unavailable(retry_after: Option<u32>) -> Response {
    let r = Response::new(
        503,
        Some(HTML),
        "<!DOCTYPE html><html><head><title>Jellyfin</title></head><body>\
         <h1>Jellyfin Server is starting up. Please try again later.</h1></body></html>",
    );
    match retry_after {
        Some(s) => r.with_header("Retry-After", s.to_string()),
        None => r,
    }
}

fn not_found() -> Response {
    static TRACE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut seed = TRACE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let trace = format!("00-{}-{:016x}-00", hex_id(&mut seed), splitmix64(&mut seed));
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        "title": "Not Found",
        "status": 404,
        "traceId": trace,
    });
    Response::new(404, Some(PROBLEM_JSON), body.to_string())
}

/// The `UnknownEnums` fault: future enum values in an otherwise fine document.
fn unknown_enums(mut r: Response) -> Response {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match (k.as_str(), &v) {
                        ("State", Value::String(_)) => *v = json!("Pausing"),
                        ("Status", Value::String(_)) => *v = json!("Exploded"),
                        _ => walk(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Ok(mut doc) = serde_json::from_slice::<Value>(&r.body) {
        walk(&mut doc);
        r.body = doc.to_string().into_bytes();
    }
    r
}

fn public_info(st: &ServerState, req: &Request, base: &str) -> Response {
    let host = req.header("Host").unwrap_or("localhost");
    let id = hex_id(&mut fnv1a(FNV_OFFSET, st.cfg.name.as_bytes()));
    json_response(&json!({
        "LocalAddress": format!("http://{host}{base}"),
        "ServerName": st.cfg.name,
        "Version": st.cfg.version,
        "ProductName": "Jellyfin Server",
        "OperatingSystem": "Linux",
        "Id": id,
        "StartupWizardCompleted": true,
    }))
}

/// `TaskInfo`, field order as Jellyfin writes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskInfo<'a> {
    name: &'a str,
    state: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_number"
    )]
    current_progress_percentage: Option<f64>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_execution_result: Option<ResultDoc<'a>>,
    triggers: Value,
    description: &'a str,
    category: &'a str,
    is_hidden: bool,
    key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResultDoc<'a> {
    start_time_utc: SimTime,
    end_time_utc: SimTime,
    status: &'static str,
    name: &'a str,
    key: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_error_message: Option<String>,
}

/// .NET writes a double that holds a whole number without a fraction: `0`, `100`.
fn whole_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => s.serialize_i64(*x as i64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

struct Builtin {
    task: SimTask,
    name: &'static str,
    description: &'static str,
    category: &'static str,
    interval_hours: u64,
}

/// Jellyfin's own tasks the simulated server lists (their real keys and ids).
const BUILTINS: [Builtin; 3] = [
    Builtin {
        task: SimTask::CleanCacheDirectory,
        name: "Clean Cache Directory",
        description: "Deletes cache files no longer needed by the system.",
        category: "Maintenance",
        interval_hours: 24,
    },
    Builtin {
        task: SimTask::ScanMediaLibrary,
        name: "Scan Media Library",
        description: "Scans your media library for new files and refreshes metadata.",
        category: "Library",
        interval_hours: 12,
    },
    Builtin {
        task: SimTask::CleanLogDirectory,
        name: "Clean Log Directory",
        description: "Deletes log files that are more than 3 days old.",
        category: "Maintenance",
        interval_hours: 24,
    },
];

fn result_doc<'a>(r: &TaskResult, name: &'a str, key: &'a str, id: &'a str) -> ResultDoc<'a> {
    ResultDoc {
        start_time_utc: r.start,
        end_time_utc: r.end,
        status: r.status.as_jellyfin(),
        name,
        key,
        id,
        error_message: r.error_message.clone(),
        long_error_message: r.long_error_message.clone(),
    }
}

/// State, progress and last result of a listed task: live for the driven task, fixed
/// for the others.
fn task_status<'a>(
    st: &ServerState,
    now: Instant,
    task: SimTask,
    fixed: Option<&TaskResult>,
    name: &'a str,
) -> (&'static str, Option<f64>, Option<ResultDoc<'a>>) {
    let doc = |r: &TaskResult| result_doc(r, name, task.key(), task.id());
    if st.cfg.task != task {
        return ("Idle", None, fixed.map(doc));
    }
    let view = st.view(now);
    let progress = if view.state == TaskState::Idle {
        None
    } else {
        view.progress
    };
    (
        view.state.as_jellyfin(),
        progress,
        view.last_result.as_ref().map(doc),
    )
}

/// Every task this server lists now, unsorted.
fn tasks(st: &ServerState, now: Instant) -> Vec<TaskInfo<'static>> {
    let mut out = Vec::new();
    let plugin_loaded = st.cfg.plugin == PluginStatus::Active;
    let gone = |task: SimTask| st.vanished && st.cfg.task == task;
    if plugin_loaded && !gone(SimTask::Migrator) {
        let (state, progress, last) = task_status(
            st,
            now,
            SimTask::Migrator,
            st.migrator_result.as_ref(),
            MIGRATOR_TASK_NAME,
        );
        out.push(TaskInfo {
            name: MIGRATOR_TASK_NAME,
            state,
            current_progress_percentage: progress,
            id: MIGRATOR_TASK_ID,
            last_execution_result: last,
            triggers: json!([]),
            description: "Run migration operation (Export/Verify)",
            category: "Migration",
            is_hidden: false,
            key: MIGRATOR_TASK_KEY,
        });
    }
    if plugin_loaded && st.cfg.duplicate_task_key {
        out.push(TaskInfo {
            name: MIGRATOR_TASK_NAME,
            state: "Idle",
            current_progress_percentage: None,
            id: DUPLICATE_TASK_ID,
            last_execution_result: None,
            triggers: json!([]),
            description: "Run migration operation (Export/Verify)",
            category: "Migration",
            is_hidden: false,
            key: MIGRATOR_TASK_KEY,
        });
    }
    for (b, r) in BUILTINS.iter().zip(&st.builtin_results) {
        if gone(b.task) {
            continue;
        }
        let (state, progress, last) = task_status(st, now, b.task, Some(r), b.name);
        out.push(TaskInfo {
            name: b.name,
            state,
            current_progress_percentage: progress,
            id: b.task.id(),
            last_execution_result: last,
            triggers: json!([{
                "Type": "IntervalTrigger",
                "IntervalTicks": b.interval_hours * 36_000_000_000u64,
            }]),
            description: b.description,
            category: b.category,
            is_hidden: false,
            key: b.task.key(),
        });
    }
    out
}

/// The task with this id. Ids are compared without case but as given: Jellyfin looks the
/// id up as a string, so a dashed GUID form is a 404.
fn find_task(st: &ServerState, now: Instant, id: &str) -> Option<TaskInfo<'static>> {
    let id = id.to_ascii_lowercase();
    tasks(st, now).into_iter().find(|t| t.id == id)
}

/// `eb5d7894-8EEF-…` → `eb5d78948eef…`; `None` if it is not a GUID. Plugin ids are GUID
/// route values, so both forms name the same plugin.
fn normalize_guid(id: &str) -> Option<String> {
    let hex: String = id
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

const TMDB_ID: &str = "b8715ed16c4745289ad3f72deb539cd4";
const OMDB_ID: &str = "a628c0dafac54c7e9d1a7134223f14c8";

fn plugins(cfg: &SimServerConfig) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(status) = cfg.plugin.as_jellyfin() {
        out.push(json!({
            "Name": "Migrator",
            "Version": "1.0.0.0",
            "Description": "Export users, libraries, watch history and devices to move them to another Jellyfin server.",
            "Id": MIGRATOR_PLUGIN_ID,
            "CanUninstall": true,
            "HasImage": false,
            "Status": status,
            "ConfigurationFileName": "Jellyfin.Plugin.Template.xml",
        }));
    }
    if cfg.plugin_id_collision {
        out.push(json!({
            "Name": "Template",
            "Version": "1.0.0.0",
            "Description": "Description",
            "Id": MIGRATOR_PLUGIN_ID,
            "CanUninstall": true,
            "HasImage": false,
            "Status": "Active",
            "ConfigurationFileName": "Jellyfin.Plugin.Template.xml",
        }));
    }
    for (name, id, desc) in [
        (
            "OMDb",
            OMDB_ID,
            "Get metadata for movies and other video content from OMDb.",
        ),
        (
            "TMDb",
            TMDB_ID,
            "Get metadata for movies and other video content from TheMovieDb.",
        ),
    ] {
        out.push(json!({
            "Name": name,
            "Version": cfg.version.clone() + ".0",
            "Description": desc,
            "Id": id,
            "CanUninstall": false,
            "HasImage": false,
            "Status": "Active",
        }));
    }
    out
}

fn plugin_config(st: &ServerState, id: &str) -> Response {
    match normalize_guid(id).as_deref() {
        // The template's configuration, when another plugin holds the id and loaded first.
        Some(MIGRATOR_PLUGIN_ID) if st.cfg.plugin_id_collision => {
            Response::streamed(JSON, Arc::new(template_document()))
        }
        // Only a loaded (Active) plugin has a configuration instance to show.
        Some(MIGRATOR_PLUGIN_ID) if st.cfg.plugin == PluginStatus::Active => {
            Response::streamed(JSON, Arc::new(st.plugin.document()))
        }
        Some(TMDB_ID) => json_response(&json!({"TmdbApiKey": "", "IncludeAdult": false})),
        Some(OMDB_ID) => json_response(&json!({"CastAndCrew": false})),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_are_guids_and_the_migrators_task_ids_agree() {
        assert_eq!(
            normalize_guid("EB5D7894-8EEF-4B36-AA6F-5D124E828CE1").as_deref(),
            Some(MIGRATOR_PLUGIN_ID)
        );
        assert_eq!(SimTask::Migrator.id(), MIGRATOR_TASK_ID);
        assert_eq!(SimTask::Migrator.key(), MIGRATOR_TASK_KEY);
    }
}
