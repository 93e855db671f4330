//! The checks of one server, in the order a run depends on them: the address, TLS, the
//! server itself and its clock, the key, the plugin and the task, the plugin's
//! configuration (its shape, `Mode`, what an export holds, the last export), and when the
//! next export is due. Only GET requests.

use super::{Check, Options, ServerReport, Status, net};
use crate::config::{MIGRATOR_TASK_KEY, ServerConfig};
use crate::jellyfin::model::{ExportContents, PluginInfo, PublicSystemInfo, TaskInfo};
use crate::jellyfin::{JellyfinClient, JellyfinError, MIGRATOR_PLUGIN_ID, MigratorDocument};
use crate::migrator;
use chrono::{DateTime, Utc};
use serde_json::json;

/// The checks that need the server, in order; those not made are reported `skip`.
const SERVER_CHECKS: [&str; 10] = [
    "tls",
    "server",
    "clock",
    "key",
    "plugin",
    "task",
    "configuration",
    "mode",
    "contents",
    "last_export",
];

/// Every check of `server`.
pub async fn examine(server: &ServerConfig, options: Options, now: DateTime<Utc>) -> ServerReport {
    let mut checks = Vec::new();
    let mut last_zip_bytes = None;
    let address = net::address(&server.url, options.timeout).await;
    let reached = address.status == Status::Ok;
    checks.push(address);
    if reached {
        if let Err(why) = with_server(server, options, now, &mut checks, &mut last_zip_bytes).await
        {
            skip_rest(&mut checks, &why);
        }
    } else {
        skip_rest(&mut checks, "the address takes no connection");
    }
    checks.push(schedule(server, now));
    ServerReport {
        name: server.name.clone(),
        url: server.url.to_string(),
        checks,
        last_zip_bytes,
    }
}

/// The checks that talk to the server. `Err` says why the remaining ones were not made.
async fn with_server(
    server: &ServerConfig,
    options: Options,
    now: DateTime<Utc>,
    checks: &mut Vec<Check>,
    zip: &mut Option<u64>,
) -> Result<(), String> {
    let client = client(server, options).map_err(|e| {
        checks.push(Check::fail(
            "tls",
            e.to_string(),
            "fix the setting the message names",
        ));
        "the HTTP client could not be set up".to_owned()
    })?;
    let probe = client.public_info_probe().await;
    checks.push(net::tls(&server.url, probe.as_ref().map(|(_, p)| p), now));
    let (info, probe) = probe.map_err(|e| {
        checks.push(unanswered("server", &e));
        "the server did not answer /System/Info/Public".to_owned()
    })?;
    checks.push(public_info(&info));
    checks.push(net::clock(&probe));
    let tasks = client.scheduled_tasks().await.map_err(|e| {
        checks.push(unanswered("key", &e));
        "the key was not accepted".to_owned()
    })?;
    checks.push(Check::ok(
        "key",
        "accepted, as an administrator's (the task list answered)",
    ));
    let migrator = server.task_key == MIGRATOR_TASK_KEY;
    if migrator {
        checks.push(match client.plugins().await {
            Ok(list) => plugin(&list),
            Err(e) => unanswered("plugin", &e),
        });
    } else {
        checks.push(Check::skip(
            "plugin",
            format!("task_key is {:?}, not the Migrator's", server.task_key),
        ));
    }
    checks.push(task(&server.task_key, &tasks));
    if !migrator {
        return Err(format!(
            "task_key is {:?}: the Migrator's configuration does not apply",
            server.task_key
        ));
    }
    let document = client.migrator_document().await.map_err(|e| {
        checks.push(configuration_error(&e));
        "the plugin's configuration could not be read".to_owned()
    })?;
    checks.push(configuration(&document));
    checks.push(mode(&document, &server.task_key));
    checks.push(contents(document.contents.as_ref()));
    let (check, bytes) = last_export(&document, now);
    checks.push(check);
    *zip = bytes;
    Ok(())
}

/// A client like the daemon's, with short timeouts, that keeps the TLS peer's certificate.
fn client(server: &ServerConfig, options: Options) -> Result<JellyfinClient, JellyfinError> {
    let http = crate::jellyfin::client_builder(&server.name, options.timeout)?
        .tls_info(true)
        .build()
        .map_err(|e| JellyfinError::Setup {
            server: server.name.clone(),
            cause: e.to_string(),
        })?;
    JellyfinClient::with_http(
        http,
        &server.name,
        &server.url,
        &server.api_key,
        options.timeout,
    )
}

fn skip_rest(checks: &mut Vec<Check>, why: &str) {
    for id in SERVER_CHECKS {
        if !checks.iter().any(|c| c.id == id) {
            checks.push(Check::skip(id, format!("not checked: {why}")));
        }
    }
}

/// A call that failed: the client's message says what and what to do.
fn unanswered(id: &'static str, e: &JellyfinError) -> Check {
    let action = match e {
        JellyfinError::Unauthorized { .. } => {
            "create a new API key in Dashboard → API Keys and put it where the config reads it"
        }
        JellyfinError::Forbidden { .. } => {
            "use an API key from Dashboard → API Keys (always an administrator's), not a user's token"
        }
        JellyfinError::Unavailable { .. } => {
            "wait until the server has started (or its migration ended), then run doctor again"
        }
        JellyfinError::Timeout { .. } => {
            "check the server's load; doctor's --timeout (or the server's request_timeout for runs) may need to be longer"
        }
        _ => "see the message; check url in the config",
    };
    Check::fail(id, e.to_string(), action)
}

/// `/System/Info/Public`: name, version, and what the version means here.
fn public_info(info: &PublicSystemInfo) -> Check {
    let name = info.server_name.as_deref().unwrap_or("(no name)");
    let version = info.version.as_deref().unwrap_or("(no version)");
    let data =
        json!({"name": info.server_name, "version": info.version, "product": info.product_name});
    if let Some(product) = info.product_name.as_deref()
        && product != "Jellyfin Server"
    {
        return Check::warn(
            "server",
            format!("{name:?} says it is {product:?} {version}, not Jellyfin Server"),
            "check that url points at Jellyfin (not a proxy's page or another media server)",
        )
        .with(data);
    }
    let parsed = version
        .split('.')
        .take(2)
        .map(|p| p.parse::<u32>().ok())
        .collect::<Option<Vec<u32>>>();
    let summary = format!("{name:?}, Jellyfin {version}");
    match parsed.as_deref() {
        Some([major, minor]) if (*major, *minor) < (10, 8) => Check::warn(
            "server",
            format!("{summary}: older than 10.8, the oldest version this tool follows"),
            "upgrade Jellyfin to 10.8 or newer",
        ),
        Some([10, _]) => Check::ok(
            "server",
            format!("{summary} (accepts legacy auth until 12.0; this tool does not use it)"),
        ),
        Some([12, _]) => Check::ok(
            "server",
            format!("{summary} (refuses legacy auth from 12.0, e.g. X-Emby-Token or ?api_key=: other scripts may get 401; this tool sends the Authorization header)"),
        ),
        Some(_) => Check::warn(
            "server",
            format!("{summary}: newer than 12.0, the newest version this tool follows"),
            "watch the first runs after the upgrade; report what changed if a run fails",
        ),
        None => Check::warn(
            "server",
            format!("{summary}: the version is not major.minor.patch"),
            "check that url points at Jellyfin",
        ),
    }
    .with(data)
}

/// The Migrator plugin in `/Plugins`: listed, Active, alone under its id.
fn plugin(list: &[PluginInfo]) -> Check {
    let under_id: Vec<&PluginInfo> = list
        .iter()
        .filter(|p| {
            p.id.replace('-', "")
                .eq_ignore_ascii_case(MIGRATOR_PLUGIN_ID)
        })
        .collect();
    let Some(p) = under_id
        .iter()
        .find(|p| p.name.as_deref() == Some("Migrator"))
        .or(under_id.first())
    else {
        return Check::fail(
            "plugin",
            format!(
                "the Migrator plugin is not installed ({} plugins listed)",
                list.len()
            ),
            "install the Migrator plugin (Dashboard → Plugins), then restart Jellyfin",
        )
        .with(json!({"version": null, "status": null}));
    };
    let version = p.version.as_deref().unwrap_or("(no version)");
    let status = p.status.as_deref().unwrap_or("(no status)");
    let data = json!({"version": p.version, "status": p.status});
    if !p.is_active() {
        return Check::fail(
            "plugin",
            format!("Migrator {version} is installed but {status}"),
            "only Active plugins run: look at the plugin in Dashboard → Plugins and at Jellyfin's log (it may have failed to load), then restart Jellyfin",
        )
        .with(data);
    }
    if under_id.len() > 1 {
        let names: Vec<&str> = under_id.iter().filter_map(|p| p.name.as_deref()).collect();
        return Check::warn(
            "plugin",
            format!("Migrator {version}, Active, but {} plugins share its id ({})", under_id.len(), names.join(", ")),
            "remove the other plugin built from the Migrator's template (Dashboard → Plugins) and restart Jellyfin: Jellyfin serves only one of their configurations",
        )
        .with(data);
    }
    Check::ok("plugin", format!("Migrator {version}, Active")).with(data)
}

/// The task, by key, exactly once.
fn task(key: &str, tasks: &[TaskInfo]) -> Check {
    let found: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.key.as_deref() == Some(key))
        .collect();
    match found.as_slice() {
        [] => Check::fail(
            "task",
            format!(
                "no task with key {key} among the server's {} tasks",
                tasks.len()
            ),
            if key == MIGRATOR_TASK_KEY {
                "the Migrator plugin provides it: install it and make it Active (Dashboard → Plugins), then restart Jellyfin"
            } else {
                "check task_key in the config (tasks are found by Key, never by name)"
            },
        ),
        [t] => {
            let name = t.name.as_deref().unwrap_or("(no name)");
            let last = t.last_execution_result.as_ref().map_or_else(
                || "never run".to_owned(),
                |r| match (&r.status, r.end_time_utc) {
                    (Some(s), Some(end)) => {
                        format!("last run {s} at {}", end.format("%Y-%m-%d %H:%M UTC"))
                    }
                    (Some(s), None) => format!("last run {s}"),
                    _ => "last run unknown".to_owned(),
                },
            );
            Check::ok("task", format!("{name:?} ({}), {}, {last}", t.id, t.state))
                .with(json!({"id": t.id, "name": t.name, "state": t.state.to_string()}))
        }
        many => Check::fail(
            "task",
            format!(
                "{} tasks have key {key} (ids {})",
                many.len(),
                many.iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "remove the duplicate plugin (Dashboard → Plugins) and restart Jellyfin: runs refuse to guess",
        ),
    }
}

fn configuration_error(e: &JellyfinError) -> Check {
    match e {
        JellyfinError::NotMigrator { .. } => Check::fail(
            "configuration",
            e.to_string(),
            "remove the other plugin (Dashboard → Plugins) and restart Jellyfin",
        ),
        e => unanswered("configuration", e),
    }
}

/// The configuration has the Migrator's shape (the client refuses it otherwise).
fn configuration(doc: &MigratorDocument) -> Check {
    let fields: serde_json::Map<String, serde_json::Value> = doc
        .zip_fields
        .iter()
        .map(|(name, len)| (name.clone(), json!(len)))
        .collect();
    let skipped = if doc.zip_fields.is_empty() {
        String::new()
    } else {
        let total: u64 = doc.zip_fields.iter().map(|(_, n)| n).sum();
        format!(
            "; its ZIP fields ({}) were skipped unread",
            human_bytes(total)
        )
    };
    Check::ok("configuration", format!("the Migrator's{skipped}"))
        .with(json!({"zip_fields": fields}))
}

/// `Mode` runs an Export.
fn mode(doc: &MigratorDocument, key: &str) -> Check {
    let op = doc.config.operation();
    let data = json!({"mode": doc.config.mode_text(), "operation": op.name()});
    match migrator::refusal(&doc.config, key, None) {
        Some(why) => Check::fail("mode", format!("{op}: runs are refused"), why).with(data),
        None => match doc.config.mode_text() {
            Some("Export") => Check::ok("mode", "Export"),
            Some(text) => Check::ok(
                "mode",
                format!("{text:?} runs an Export (the plugin trims it and ignores case)"),
            ),
            None => Check::ok("mode", "not set: the plugin runs an Export"),
        }
        .with(data),
    }
}

/// What the next export will hold; password hashes and device tokens are said out loud.
fn contents(contents: Option<&ExportContents>) -> Check {
    let Some(c) = contents else {
        return Check::warn(
            "contents",
            "the Include* settings are not of the types the plugin writes; what an export holds is unknown",
            "open the plugin's page (Dashboard → Plugins → Migrator) and save its settings again",
        );
    };
    let users = match (
        c.include_users,
        c.selected_user_ids.len() + c.selected_usernames.len(),
    ) {
        (false, _) => None,
        (true, 0) => Some("all users".to_owned()),
        (true, n) => Some(format!("{n} selected users")),
    };
    let libraries = match (c.include_libraries, c.selected_library_ids.len()) {
        (false, _) => None,
        (true, 0) => Some("all libraries".to_owned()),
        (true, n) => Some(format!("{n} selected libraries")),
    };
    let mut parts: Vec<String> = users.into_iter().chain(libraries).collect();
    if c.include_permissions {
        parts.push("permissions".into());
    }
    if c.include_watch_history {
        parts.push("watch history".into());
    }
    let mut sensitive = Vec::new();
    if c.include_users && c.include_user_password_hashes {
        sensitive.push("users' password hashes");
    }
    if c.include_devices {
        sensitive.push("devices with their access tokens");
    }
    let data = json!({
        "users": c.include_users,
        "password_hashes": c.include_users && c.include_user_password_hashes,
        "libraries": c.include_libraries,
        "permissions": c.include_permissions,
        "watch_history": c.include_watch_history,
        "devices": c.include_devices,
        "selected_users": c.selected_user_ids.len() + c.selected_usernames.len(),
        "selected_libraries": c.selected_library_ids.len(),
        "sensitive": !sensitive.is_empty(),
    });
    let summary = if parts.is_empty() {
        "the log only".to_owned()
    } else {
        parts.join(", ")
    };
    if sensitive.is_empty() {
        return Check::ok("contents", summary).with(data);
    }
    Check::warn(
        "contents",
        format!("{summary}; sensitive: {}", sensitive.join(" and ")),
        "treat the exports (the plugin's folder on the server, the ZIP in its configuration, any copy) like passwords; untick Include devices / Include password hashes in the plugin's settings if you do not need them",
    )
    .with(data)
}

/// The last export: when, what its log says, and how large its ZIP is.
fn last_export(doc: &MigratorDocument, now: DateTime<Utc>) -> (Check, Option<u64>) {
    let zip = doc
        .zip_fields
        .iter()
        .find(|(name, _)| name == "LastExportZipBase64")
        .map(|(_, len)| len / 4 * 3);
    let Some(at) = doc.config.last_export_utc else {
        return (
            Check::warn(
                "last_export",
                "no export yet",
                "run one now to see the whole way work: jellyfin-export-scheduler trigger <server>",
            )
            .with(json!({"at": null, "operation": null, "errors": 0, "zip_bytes": zip})),
            zip,
        );
    };
    let log = doc.config.export_log();
    let age = crate::record::format_duration((now - at).num_milliseconds().max(0) as u64);
    let op = log.started.map_or("an unknown operation", |o| o.name());
    let zip_text = zip.map_or("no ZIP".to_owned(), |b| format!("ZIP {}", human_bytes(b)));
    let when = format!("{} ({age} ago)", at.format("%Y-%m-%d %H:%M UTC"));
    let data = json!({"at": at, "operation": log.started.map(|o| o.name()), "errors": log.errors.len(), "zip_bytes": zip});
    let check = if log.started != Some(crate::jellyfin::model::Operation::Export) {
        Check::warn(
            "last_export",
            format!("{when}: the last run was {op}, {zip_text}"),
            "the newest ZIP is not an export's: keep the previous one until the next export ends well",
        )
    } else if let Some(first) = log.errors.first() {
        Check::warn(
            "last_export",
            format!(
                "{when}: Export with {} ERROR line(s), the first: {first}; {zip_text}",
                log.errors.len()
            ),
            "the export is incomplete: read the log on the plugin's page and fix its cause",
        )
    } else {
        Check::ok(
            "last_export",
            format!("{when}: Export, no ERROR line, {zip_text}"),
        )
    };
    (check.with(data), zip)
}

/// When the next export is due, in the server's zone and in UTC.
fn schedule(server: &ServerConfig, now: DateTime<Utc>) -> Check {
    if !server.enabled {
        return Check::skip("schedule", "enabled = false: no export is scheduled");
    }
    let Some((due, fire_at)) =
        crate::daemon::next_fire(&server.schedule, &server.name, server.jitter, now)
    else {
        return Check::warn(
            "schedule",
            format!("{:?} is never due again", server.schedule.expr()),
            "fix schedule in the config",
        );
    };
    let local = due.with_timezone(&server.timezone);
    let jitter = if fire_at > due {
        format!(
            ", started {} later by jitter",
            crate::record::format_duration((fire_at - due).num_milliseconds() as u64)
        )
    } else {
        String::new()
    };
    Check::ok(
        "schedule",
        format!(
            "next export {} {} ({} UTC){jitter}",
            local.format("%Y-%m-%d %H:%M:%S"),
            server.timezone,
            due.format("%Y-%m-%d %H:%M:%S")
        ),
    )
    .with(json!({"next_utc": due, "next_local": local.to_rfc3339(), "timezone": server.timezone.name(), "fire_at_utc": fire_at}))
}

/// Bytes as KiB, MiB, GiB (binary, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
