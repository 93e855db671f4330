//! What one simulated server does: [`SimServerConfig`] and the enums it is made of.
//!
//! The same struct is built in code by tests and read from a scenario file (`[[servers]]`
//! tables), so every field has a default and durations are humantime strings in TOML.
//! This module only describes behaviour; `model` and `api` carry it out.

use super::fault::FaultRule;
use serde::Deserialize;
use std::time::Duration;

/// Behaviour of one simulated Jellyfin server. Start from [`Default`] and set what a test
/// cares about; [`SimServerConfig::new`] sets the name and key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimServerConfig {
    /// Served under `/s/<name>`; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The administrator API key (Dashboard → API Keys).
    pub api_key: String,
    /// A key of a user who is not an administrator: its requests get 403.
    pub user_key: Option<String>,
    /// Also serve this server at `/` (only one server may).
    pub root: bool,
    /// Accept the legacy auth forms (`X-Emby-Token`, `?api_key=`, `Emby` scheme, ...)
    /// like 10.10; by default they count as anonymous, like 12.0.
    pub legacy_auth: bool,
    /// `Version` in `/System/Info/Public`.
    pub version: String,

    /// From sim start, every route but `/System/Ping` answers 503 HTML for this long.
    #[serde(deserialize_with = "duration")]
    pub starting_for: Duration,
    /// Seconds sent as `Retry-After` with the 503s of starting and of a graceful restart.
    pub retry_after: Option<u32>,

    /// After the 204 the task still shows Idle with the old result for this long.
    #[serde(deserialize_with = "duration")]
    pub start_delay: Duration,
    /// How long a run takes once Running.
    #[serde(deserialize_with = "duration")]
    pub run_length: Duration,
    /// The first progress report (0) comes this long after the run starts; until then
    /// `CurrentProgressPercentage` is absent. Capped at half the run.
    #[serde(deserialize_with = "duration")]
    pub first_progress_after: Duration,
    /// Gap between the task turning Idle and its new `LastExecutionResult` appearing.
    #[serde(deserialize_with = "duration")]
    pub result_delay: Duration,
    /// How a run ends (when nobody cancels it).
    pub outcome: RunOutcome,
    /// `ErrorMessage` of a failed run (and the `ERROR:` line of `completed_with_log_error`).
    pub error_message: String,

    /// What the task does with a DELETE.
    pub cancel: CancelMode,
    /// With `cancel = "honour"`: time spent Cancelling before the run ends Cancelled.
    #[serde(deserialize_with = "duration")]
    pub cancel_delay: Duration,

    /// How many queued follow-up runs Jellyfin starts, one after each run ends, as if a
    /// trigger of its own had fired during the run.
    pub follow_ups: u32,
    /// Gap between a run's end and its follow-up's start.
    #[serde(deserialize_with = "duration")]
    pub follow_up_delay: Duration,
    /// A run is already going when the simulator starts.
    pub running_at_start: bool,

    /// Every run is cut by a graceful restart this long after it starts: result `Aborted`,
    /// then `downtime` of 503s (Ping still answers), then Idle.
    #[serde(deserialize_with = "opt_duration")]
    pub restart_after: Option<Duration>,
    /// Every run is cut by a crash this long after it starts: no result, `downtime` of
    /// dropped connections, then Idle with the previous result.
    #[serde(deserialize_with = "opt_duration")]
    pub crash_after: Option<Duration>,
    /// How long a restart or crash keeps the server away.
    #[serde(deserialize_with = "duration")]
    pub downtime: Duration,

    /// The Migrator plugin's state; anything but `active` hides its task.
    pub plugin: PluginStatus,
    /// The plugin's saved `Mode`.
    pub mode: Mode,
    /// The task's `LastExecutionResult` at sim start (`never`: absent).
    pub history: History,
    /// How long before sim start that result ended.
    #[serde(deserialize_with = "duration")]
    pub history_age: Duration,
    /// Length in characters of `LastExportZipBase64` (rounded down to a multiple of 4).
    pub zip_base64_len: usize,

    /// After the first accepted start the Migrator task is gone (404, not in the list).
    pub task_vanishes: bool,
    /// A second task with the Migrator's key is listed.
    pub duplicate_task_key: bool,
    /// Deterministic faults by endpoint and request number.
    pub faults: Vec<FaultRule>,
}

impl Default for SimServerConfig {
    fn default() -> Self {
        SimServerConfig {
            name: "demo".into(),
            api_key: "demo-api-key-0000000000000000000".into(),
            user_key: None,
            root: false,
            legacy_auth: false,
            version: "10.11.5".into(),
            starting_for: Duration::ZERO,
            retry_after: None,
            start_delay: Duration::from_millis(50),
            run_length: Duration::from_secs(1),
            first_progress_after: Duration::from_millis(20),
            result_delay: Duration::from_millis(200),
            outcome: RunOutcome::Completed,
            error_message: "Export failed: No space left on device".into(),
            cancel: CancelMode::Honour,
            cancel_delay: Duration::from_millis(200),
            follow_ups: 0,
            follow_up_delay: Duration::from_millis(100),
            running_at_start: false,
            restart_after: None,
            crash_after: None,
            downtime: Duration::from_secs(2),
            plugin: PluginStatus::Active,
            mode: Mode::Export,
            history: History::Completed,
            history_age: Duration::from_secs(24 * 3600),
            zip_base64_len: 64 * 1024,
            task_vanishes: false,
            duplicate_task_key: false,
            faults: Vec::new(),
        }
    }
}

impl SimServerConfig {
    /// Defaults with this name and admin key.
    pub fn new(name: impl Into<String>, api_key: impl Into<String>) -> Self {
        SimServerConfig {
            name: name.into(),
            api_key: api_key.into(),
            ..Default::default()
        }
    }

    /// Problems that make the config unusable, as sentences naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let n = &self.name;
        if n.is_empty() {
            out.push("name must not be empty".to_string());
        } else if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            out.push(format!(
                "name {n:?} may only hold letters, digits, '.', '_' and '-' (it is a URL path segment)"
            ));
        }
        if self.api_key.is_empty() {
            out.push(format!("server {n:?}: api_key must not be empty"));
        }
        if self.user_key.as_deref() == Some(self.api_key.as_str()) {
            out.push(format!("server {n:?}: user_key must differ from api_key"));
        }
        out
    }
}

/// How a run ends when nobody cancels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// `Completed`, and the plugin records a new export.
    Completed,
    /// `Failed` with `ErrorMessage` and a stack trace.
    Failed,
    /// `Completed`, but the plugin log has an `ERROR:` line and `LastExportUtc` is old.
    CompletedWithLogError,
    /// `Completed`, clean log, but `LastExportUtc` is old: nothing was exported.
    NoExport,
}

/// What the task does with a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelMode {
    /// Cancelling for `cancel_delay`, then Idle with `Cancelled`.
    #[serde(alias = "honor")]
    Honour,
    /// Cancelling until the run's normal end, then its normal outcome (the plugin
    /// swallows the cancellation).
    Ignore,
    /// Cancelling until a restart or crash.
    Stuck,
}

/// The Migrator plugin's `Status` in `/Plugins`, or `Missing` when it is not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    Active,
    Missing,
    Restart,
    Deleted,
    Superceded,
    Malfunctioned,
    NotSupported,
    Disabled,
}

impl PluginStatus {
    /// Jellyfin's spelling; `None` for a plugin that is not there at all.
    pub fn as_jellyfin(self) -> Option<&'static str> {
        Some(match self {
            PluginStatus::Active => "Active",
            PluginStatus::Missing => return None,
            PluginStatus::Restart => "Restart",
            PluginStatus::Deleted => "Deleted",
            PluginStatus::Superceded => "Superceded",
            PluginStatus::Malfunctioned => "Malfunctioned",
            PluginStatus::NotSupported => "NotSupported",
            PluginStatus::Disabled => "Disabled",
        })
    }
}

/// The operation the plugin's task runs, from its saved configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[serde(alias = "Export")]
    Export,
    #[serde(alias = "Import")]
    Import,
    #[serde(alias = "Verify")]
    Verify,
}

impl Mode {
    pub fn as_jellyfin(self) -> &'static str {
        match self {
            Mode::Export => "Export",
            Mode::Import => "Import",
            Mode::Verify => "Verify",
        }
    }
}

/// The task's `LastExecutionResult` when the simulator starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// The task never ran: no `LastExecutionResult`, no export in the plugin config.
    Never,
    Completed,
    Failed,
    Cancelled,
    Aborted,
}

/// A humantime string (`"250ms"`, `"10s"`, `"1h 5m"`).
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(crate) fn opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. \"250ms\", \"10s\", \"2m\")"))
}
