//! The answers of one simulated server. A request is classified ([`Route`]), recorded in
//! the server's journal and judged by its fault rules; then it passes the gates (crashed,
//! restarting, still starting), the method and auth checks, and gets its answer: Ping,
//! public info, the task list and task routes (start, cancel), the plugin list and plugin
//! configurations. Faults bend the answer last.
//!
//! Plugin and task ids are matched case-insensitively like ASP.NET; JSON is PascalCase with
//! null fields left out. The task state machine lives in `model` and the task documents in
//! `tasks`; this module only reads and pokes them.

use super::auth::{Caller, caller};
use super::cell::ServerCell;
use super::config::{PluginStatus, SimServerConfig};
use super::fault::{self, Fault};
use super::model::{CancelAnswer, DownKind, ServerState};
use super::plugin::{MIGRATOR_PLUGIN_ID, template_document};
use super::route::{Endpoint, Route};
use super::seed::{FNV_OFFSET, fnv1a, hex_id, splitmix64};
use super::tasks::{find_task, task_list};
use crate::sim::http1::{HTML, JSON, PROBLEM_JSON, Request, Response, TEXT};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::Instant;

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
    let (reply, skew) = {
        let mut inner = cell.lock();
        let now = Instant::now();
        inner.state.advance(now);
        let reply = answer(&mut inner.state, &route, req, base, now);
        (reply, inner.state.cfg.clock_skew_secs)
    };
    // Kestrel dates every answer; `doctor` reads the server's clock from it.
    let reply = match reply {
        Reply::Send(r) => Reply::Send(dated(r, skew)),
        Reply::Reset(r) => Reply::Reset(dated(r, skew)),
        Reply::Drop => Reply::Drop,
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

/// `r` with a `Date` header: now, on a clock `skew` seconds off. The text is made once per
/// second (per thread) and kept, as Kestrel keeps its `Date` value for a second.
fn dated(r: Response, skew: i64) -> Response {
    thread_local! {
        static DATE: std::cell::RefCell<Option<(i64, String)>> = const { std::cell::RefCell::new(None) };
    }
    let now = chrono::Utc::now() + chrono::Duration::seconds(skew);
    let second = now.timestamp();
    let value = DATE.with_borrow_mut(|kept| match kept {
        Some((at, text)) if *at == second => text.clone(),
        _ => {
            let text = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            *kept = Some((second, text.clone()));
            text
        }
    });
    r.with_header("Date", value)
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
        Endpoint::TaskList => json_response(&task_list(st, now)),
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
                CancelAnswer::Accepted => Response::empty(204),
                CancelAnswer::NotRunning => server_error(),
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
    fn plugin_ids_are_guids_in_either_form() {
        assert_eq!(
            normalize_guid("EB5D7894-8EEF-4B36-AA6F-5D124E828CE1").as_deref(),
            Some(MIGRATOR_PLUGIN_ID)
        );
    }
}
