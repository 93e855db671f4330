//! What one simulated server does: [`SimServerConfig`] and the enums it is made of.
//!
//! The same struct is built in code by tests and read from a scenario file (`[[servers]]`
//! tables), so every field has a default and durations are humantime strings in TOML.
//! This module only describes behaviour; the task state machine (`model`), the plugin
//! (`plugin`, `export`) and the routes (`api`, `tasks`) carry it out.

use super::duration::{duration, opt_duration};
use super::fault::FaultRule;
use super::zip::{MAX_DEFLATED_INPUT, MAX_ZIP_BYTES, bytes_for_base64_len};
use chrono::FixedOffset;
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
    /// Accept the legacy auth forms (`X-Emby-Token`, `?api_key=`, `Emby` scheme, ...).
    /// Unset: as the `version` does by default (10.x and 11.x accept them, 12.0 and later
    /// refuse them: they then count as anonymous).
    pub legacy_auth: Option<bool>,
    /// `Version` in `/System/Info/Public`.
    pub version: String,
    /// The server's local time, `+HH:MM` or `-HH:MM` from UTC: the Migrator's log lines
    /// are stamped in it.
    #[serde(deserialize_with = "utc_offset")]
    pub utc_offset: FixedOffset,
    /// How far the server's clock is off, in seconds (positive: ahead): every answer's
    /// `Date` header is the real time plus this.
    pub clock_skew_secs: i64,
    /// Which listed task the run behaviour below drives: the Migrator's
    /// (`JellyfinMigratorExport`) or a built-in one (`RefreshLibrary`, `DeleteCacheFiles`,
    /// `CleanLogFiles`), which ends `Cancelled` when cancelled and writes no export.
    pub task: SimTask,

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
    /// `ErrorMessage` of a failed run (and the exception in the `ERROR:` line of
    /// `completed_with_log_error`).
    pub error_message: String,
    /// Building the Migrator's ZIP fails at the end of every run: `LastExportZipBase64`
    /// keeps the previous run's ZIP, and the error is logged after `LastExportLog` was
    /// saved, so the configuration does not show it.
    pub zip_fails: bool,
    /// The Migrator's ZIP is built as the plugin builds it (.NET's
    /// `ZipFile.CreateFromDirectory`: deflated entries) instead of stored entries: the
    /// same files, a smaller ZIP. At most 64 MiB of files (`zip_base64_len`).
    pub zip_deflate: bool,
    /// The Migrator's ZIP is cut short halfway, as a disk that filled up while the plugin
    /// wrote it would leave it.
    pub zip_broken: bool,

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
    /// `Mode` saved with this exact text instead (`" export "`, `"IMPORT"`, `""`, ...); the
    /// plugin trims it and compares without case, and runs an Export for anything else.
    pub mode_text: Option<String>,
    /// `IncludeUserPasswordHashes`: `users_basic.json` carries password hashes.
    pub include_user_password_hashes: bool,
    /// `IncludeLibraries`: an export writes `libraries.json`.
    pub include_libraries: bool,
    /// `IncludeWatchHistory`: an export writes `watch_history/<user>.json`.
    pub include_watch_history: bool,
    /// `IncludeDevices`: an export writes `devices.json` (device access tokens).
    pub include_devices: bool,
    /// Another plugin built from the same template carries the Migrator's id, and
    /// Jellyfin serves *its* configuration (no `Mode`, no `LastExport*`) at the
    /// Migrator's id. `/Plugins` lists both; the Migrator's task is still there.
    pub plugin_id_collision: bool,
    /// The driven task's `LastExecutionResult` at sim start (`never`: absent). For the
    /// Migrator, `completed` comes with an export in its configuration, and `cancelled`
    /// is refused (the plugin ends Completed when cancelled).
    pub history: History,
    /// How long before sim start that result ended.
    #[serde(deserialize_with = "duration")]
    pub history_age: Duration,
    /// Length in characters of `LastExportZipBase64` (rounded down to a multiple of 4):
    /// each export's ZIP is a real archive of its folder, its last watch-history file
    /// filled until the ZIP is 3/4 of this many bytes (or as small as its files allow).
    /// Its text is held up to 1 MiB and made while it is sent beyond (never held whole);
    /// at most 4 GiB of ZIP.
    pub zip_base64_len: usize,
    /// Length in characters of `LastImportZipBase64`: a ZIP someone uploaded on the
    /// plugin's Import tab, which stays in the configuration for good (0: none).
    pub import_zip_base64_len: usize,

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
            legacy_auth: None,
            version: "10.11.5".into(),
            utc_offset: FixedOffset::east_opt(3600).expect("one hour east is a valid offset"),
            clock_skew_secs: 0,
            task: SimTask::Migrator,
            starting_for: Duration::ZERO,
            retry_after: None,
            start_delay: Duration::from_millis(50),
            run_length: Duration::from_secs(1),
            first_progress_after: Duration::from_millis(20),
            result_delay: Duration::from_millis(200),
            outcome: RunOutcome::Completed,
            error_message: "No space left on device".into(),
            zip_fails: false,
            zip_deflate: false,
            zip_broken: false,
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
            mode_text: None,
            include_user_password_hashes: false,
            include_libraries: true,
            include_watch_history: true,
            include_devices: true,
            plugin_id_collision: false,
            history: History::Completed,
            history_age: Duration::from_secs(24 * 3600),
            zip_base64_len: 64 * 1024,
            import_zip_base64_len: 0,
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
        let migrator = self.task == SimTask::Migrator;
        if migrator && self.cancel == CancelMode::Ignore {
            out.push(format!(
                "server {n:?}: cancel = \"ignore\" is not something the Migrator does (it stops when cancelled and ends Completed); use it with task = \"RefreshLibrary\" or another built-in task"
            ));
        }
        if migrator && self.history == History::Cancelled {
            out.push(format!(
                "server {n:?}: history = \"cancelled\" is not a result the Migrator can have (it catches its cancellation and ends Completed); use it with task = \"RefreshLibrary\" or another built-in task"
            ));
        }
        if !migrator && self.outcome == RunOutcome::CompletedWithLogError {
            out.push(format!(
                "server {n:?}: outcome = \"completed_with_log_error\" needs the Migrator's task (only it writes an export log); remove task = \"{}\"",
                self.task.key()
            ));
        }
        for (knob, on) in [
            ("zip_fails", self.zip_fails),
            ("zip_deflate", self.zip_deflate),
            ("zip_broken", self.zip_broken),
        ] {
            if !migrator && on {
                out.push(format!(
                    "server {n:?}: {knob} = true needs the Migrator's task; remove task = \"{}\"",
                    self.task.key()
                ));
            }
        }
        if self.zip_deflate && bytes_for_base64_len(self.zip_base64_len) > MAX_DEFLATED_INPUT {
            out.push(format!(
                "server {n:?}: zip_deflate = true compresses for real, so it takes at most {MAX_DEFLATED_INPUT} bytes of files; lower zip_base64_len to {} or less",
                MAX_DEFLATED_INPUT / 3 * 4
            ));
        }
        for (key, len) in [
            ("zip_base64_len", self.zip_base64_len),
            ("import_zip_base64_len", self.import_zip_base64_len),
        ] {
            if bytes_for_base64_len(len) > MAX_ZIP_BYTES {
                out.push(format!(
                    "server {n:?}: {key} = {len} is more than a 4 GiB ZIP; the simulator writes ZIPs without ZIP64"
                ));
            }
        }
        out
    }

    /// `Mode` as saved at sim start.
    pub fn mode_text(&self) -> String {
        self.mode_text
            .clone()
            .unwrap_or_else(|| self.mode.as_jellyfin().to_owned())
    }

    /// Whether legacy auth forms are accepted: as set, or as the version does by default.
    pub fn accepts_legacy_auth(&self) -> bool {
        self.legacy_auth.unwrap_or_else(|| {
            let major = self
                .version
                .split('.')
                .next()
                .and_then(|m| m.trim().parse::<u32>().ok())
                .unwrap_or(10);
            major < 12
        })
    }
}

/// How a run ends when nobody cancels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// `Completed`; the Migrator writes its log, path, time and ZIP.
    Completed,
    /// `Failed` with `ErrorMessage` and a stack trace. For the Migrator this is a throw
    /// before its `try` (creating the run's folder): nothing is written to its
    /// configuration.
    Failed,
    /// The Migrator only: `Completed`, and everything is written, but the log has an
    /// `ERROR:` line that did not stop the export (its watch history failed).
    CompletedWithLogError,
}

/// What the task does with a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelMode {
    /// Cancelling for `cancel_delay`, then it stops. The Migrator swallows the
    /// cancellation: it ends `Completed`, its log's last line
    /// `ERROR: Export failed: The operation was canceled.: …`, and writes its end as
    /// always. Other tasks end `Cancelled`.
    #[serde(alias = "honor")]
    Honour,
    /// Other tasks only: Cancelling until the run's normal end, then its normal outcome.
    Ignore,
    /// Cancelling until a restart or crash.
    Stuck,
}

/// A task the simulated server lists, by its `Key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SimTask {
    #[serde(rename = "JellyfinMigratorExport")]
    Migrator,
    /// "Scan Media Library".
    #[serde(rename = "RefreshLibrary")]
    ScanMediaLibrary,
    /// "Clean Cache Directory".
    #[serde(rename = "DeleteCacheFiles")]
    CleanCacheDirectory,
    /// "Clean Log Directory".
    #[serde(rename = "CleanLogFiles")]
    CleanLogDirectory,
}

impl SimTask {
    pub const ALL: [SimTask; 4] = [
        SimTask::Migrator,
        SimTask::ScanMediaLibrary,
        SimTask::CleanCacheDirectory,
        SimTask::CleanLogDirectory,
    ];

    /// The task's `Key`.
    pub fn key(self) -> &'static str {
        match self {
            SimTask::Migrator => "JellyfinMigratorExport",
            SimTask::ScanMediaLibrary => "RefreshLibrary",
            SimTask::CleanCacheDirectory => "DeleteCacheFiles",
            SimTask::CleanLogDirectory => "CleanLogFiles",
        }
    }

    /// The task's `Id` (MD5 of its class's full name, as Jellyfin derives it).
    pub fn id(self) -> &'static str {
        match self {
            SimTask::Migrator => "d6eb93f1d1591e7d5e6c70f1d25e6fdd",
            SimTask::ScanMediaLibrary => "7738148ffcd07979c7ceb148e06b3aed",
            SimTask::CleanCacheDirectory => "241d4fcb19a1d557ee62428e411da609",
            SimTask::CleanLogDirectory => "1c8ede62c521bea0bf851344f5b8ca40",
        }
    }
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

/// `+HH:MM` / `-HH:MM` (also `Z`) as a fixed offset from UTC.
fn utc_offset<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FixedOffset, D::Error> {
    let s = String::deserialize(d)?;
    parse_utc_offset(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid utc_offset {s:?}: write +HH:MM or -HH:MM, e.g. \"+01:00\""
        ))
    })
}

pub(crate) fn parse_utc_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") {
        return FixedOffset::east_opt(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h.abs() > 14 || !(0..60).contains(&m) || s[1..].starts_with(['+', '-']) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}
