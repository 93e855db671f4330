//! `doctor`: read-only checks that a config which passes `check` will also work on its
//! first night: each server reached, its key, plugin, task and settings as a run needs
//! them, its clock, and this machine's state folder.
//!
//! Read-only by construction: the only calls are GETs ([`server`] uses the client's
//! `public_info_probe`, `scheduled_tasks`, `plugins` and `migrator_document`), so no task is
//! ever started or cancelled; locally, permissions are asked of the kernel (`access(2)`)
//! and nothing is created. Servers are checked concurrently, each call with a short
//! timeout.
//!
//! Each check has a stable `id`, a [`Status`], a one-line summary, for `warn` and `fail`
//! what to do, and a few facts as data for the JSON report (`docs/commands.md#doctor`
//! documents them). A check that cannot be made because an earlier one failed is
//! `skip`, with the reason.
//!
//! | module | owns |
//! |---|---|
//! | [`net`] | resolving and connecting, the TLS certificate's expiry, clock skew |
//! | [`server`] | the Jellyfin checks of one server, in order |
//! | [`local`] | this machine: the state folder and its free space, the archive folders |
//! | [`render`] | the report as text lines (✓ ! ✗ –) or JSON |
//! | [`cert`] | `notAfter` out of a DER certificate |

pub mod cert;
pub mod database;
pub mod local;
pub mod net;
pub mod render;
pub mod server;

use crate::config::{Config, ServerConfig};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The JSON report's format version; a change that is not an addition raises it.
pub const SCHEMA: u32 = 1;

/// Servers checked at once: enough for a fleet to be quick, few enough that a large one
/// does not open thousands of connections together.
const CONCURRENT_SERVERS: usize = 32;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something needs attention (it says what).
    Warn,
    /// Will not work; a run would fail (it says what to do).
    Fail,
    /// Not checked: it does not apply, or an earlier check failed.
    Skip,
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Stable name (`address`, `tls`, ...).
    pub id: &'static str,
    pub status: Status,
    /// What was found, one line.
    pub summary: String,
    /// For `warn` and `fail`: what to do.
    pub action: Option<String>,
    /// Facts for machines; an object (its keys per check in `docs/commands.md`).
    pub data: Value,
}

impl Check {
    pub fn ok(id: &'static str, summary: impl Into<String>) -> Check {
        Check::new(id, Status::Ok, summary, None)
    }

    pub fn warn(id: &'static str, summary: impl Into<String>, action: impl Into<String>) -> Check {
        Check::new(id, Status::Warn, summary, Some(action.into()))
    }

    pub fn fail(id: &'static str, summary: impl Into<String>, action: impl Into<String>) -> Check {
        Check::new(id, Status::Fail, summary, Some(action.into()))
    }

    pub fn skip(id: &'static str, summary: impl Into<String>) -> Check {
        Check::new(id, Status::Skip, summary, None)
    }

    fn new(
        id: &'static str,
        status: Status,
        summary: impl Into<String>,
        action: Option<String>,
    ) -> Check {
        Check {
            id,
            status,
            summary: summary.into(),
            action,
            data: Value::Object(Default::default()),
        }
    }

    /// The same check with these facts.
    pub fn with(mut self, data: Value) -> Check {
        self.data = data;
        self
    }
}

/// Every check of one server, in order.
#[derive(Clone, Debug, Serialize)]
pub struct ServerReport {
    pub name: String,
    /// The base URL from the config (it never holds a secret: the config refuses user
    /// info and queries).
    pub url: String,
    pub checks: Vec<Check>,
    /// The last export's ZIP, in bytes, when the server said: for the free-space check.
    #[serde(skip)]
    pub last_zip_bytes: Option<u64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub checked_at: DateTime<Utc>,
    pub config: String,
    /// True when no check failed.
    pub ok: bool,
    pub counts: Counts,
    pub servers: Vec<ServerReport>,
    /// This machine's checks.
    pub local: Vec<Check>,
}

/// How many checks came out each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Report {
    fn new(
        config: &Config,
        checked_at: DateTime<Utc>,
        servers: Vec<ServerReport>,
        local: Vec<Check>,
    ) -> Report {
        let mut counts = Counts::default();
        for check in servers.iter().flat_map(|s| &s.checks).chain(&local) {
            match check.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
            }
        }
        Report {
            schema: SCHEMA,
            checked_at,
            config: config.path.display().to_string(),
            ok: counts.fail == 0,
            counts,
            servers,
            local,
        }
    }
}

/// How `doctor` checks.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The limit of each network step (resolve, connect, one request).
    pub timeout: Duration,
}

/// Check `servers` (from `config`) concurrently, then this machine.
pub async fn examine(config: &Config, servers: Vec<ServerConfig>, options: Options) -> Report {
    let checked_at = Utc::now();
    let slots = Arc::new(Semaphore::new(CONCURRENT_SERVERS));
    let checked: Vec<ServerConfig> = servers.clone();
    let tasks: Vec<_> = servers
        .into_iter()
        .map(|server| {
            let slots = slots.clone();
            let who = (server.name.clone(), server.url.to_string());
            let task = tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                server::examine(&server, options, checked_at).await
            });
            (who, task)
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for ((name, url), task) in tasks {
        reports.push(task.await.unwrap_or_else(|e| ServerReport {
            name,
            url,
            checks: vec![Check::fail(
                "doctor",
                format!("the checks of this server stopped: {e}"),
                "this is a bug in doctor; the other servers' checks are complete",
            )],
            last_zip_bytes: None,
        }));
    }
    let largest_zip = reports.iter().filter_map(|r| r.last_zip_bytes).max();
    let archives: Vec<std::path::PathBuf> = checked
        .iter()
        .filter(|s| s.archive.enabled)
        .map(|s| s.archive.root(&config.daemon.state_dir))
        .collect();
    let mut local = local::examine(&config.daemon.state_dir, &archives, largest_zip);
    if let crate::config::Backend::Postgres(pg) = &config.daemon.backend {
        local.extend(database::examine(pg, options.timeout).await);
    }
    Report::new(config, checked_at, reports, local)
}
