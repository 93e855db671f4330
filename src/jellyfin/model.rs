//! The Jellyfin wire types a run needs, decoded leniently.
//!
//! Jellyfin writes PascalCase names, leaves null fields out, writes dates with 1 to 7
//! fractional digits and may add enum values in later versions. So every field that can be
//! absent is an `Option`, unknown fields are ignored, enums keep unknown spellings as
//! `Other(String)` instead of failing, and dates are parsed by hand (with or without `Z`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use std::fmt;

/// `State` of a scheduled task.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum TaskState {
    Idle,
    Running,
    Cancelling,
    /// A state this program does not know (a newer Jellyfin).
    Other(String),
}

impl From<String> for TaskState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Idle" => TaskState::Idle,
            "Running" => TaskState::Running,
            "Cancelling" => TaskState::Cancelling,
            _ => TaskState::Other(s),
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskState::Idle => f.write_str("Idle"),
            TaskState::Running => f.write_str("Running"),
            TaskState::Cancelling => f.write_str("Cancelling"),
            TaskState::Other(s) => f.write_str(s),
        }
    }
}

/// `Status` of a finished run.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum TaskStatus {
    Completed,
    Failed,
    Cancelled,
    Aborted,
    Other(String),
}

impl From<String> for TaskStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Completed" => TaskStatus::Completed,
            "Failed" => TaskStatus::Failed,
            "Cancelled" => TaskStatus::Cancelled,
            "Aborted" => TaskStatus::Aborted,
            _ => TaskStatus::Other(s),
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Completed => f.write_str("Completed"),
            TaskStatus::Failed => f.write_str("Failed"),
            TaskStatus::Cancelled => f.write_str("Cancelled"),
            TaskStatus::Aborted => f.write_str("Aborted"),
            TaskStatus::Other(s) => f.write_str(s),
        }
    }
}

/// `TaskResult`: the only trace of a finished run (the next run overwrites it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskResult {
    #[serde(default, deserialize_with = "lenient_date")]
    pub start_time_utc: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_date")]
    pub end_time_utc: Option<DateTime<Utc>>,
    pub status: Option<TaskStatus>,
    pub name: Option<String>,
    pub key: Option<String>,
    pub id: Option<String>,
    pub error_message: Option<String>,
    pub long_error_message: Option<String>,
}

impl TaskResult {
    /// The identity of a result for "is this a new run?": its start and end times.
    pub fn same_run(&self, other: &TaskResult) -> bool {
        self.start_time_utc == other.start_time_utc && self.end_time_utc == other.end_time_utc
    }
}

/// `TaskInfo`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskInfo {
    pub name: Option<String>,
    pub state: TaskState,
    pub current_progress_percentage: Option<f64>,
    pub id: String,
    pub last_execution_result: Option<TaskResult>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub is_hidden: Option<bool>,
    pub key: Option<String>,
}

/// `PluginInfo` from `GET /Plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    pub id: String,
    pub status: Option<String>,
}

impl PluginInfo {
    pub fn is_active(&self) -> bool {
        self.status.as_deref() == Some("Active")
    }
}

/// `GET /System/Info/Public`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicSystemInfo {
    pub server_name: Option<String>,
    pub version: Option<String>,
    pub product_name: Option<String>,
    pub id: Option<String>,
}

/// The fields of the Migrator plugin's configuration that a run reads. The document also
/// holds `LastExportZipBase64` and `LastImportZipBase64` (whole ZIPs, megabytes): they are
/// not fields here, and the client strips them from the body before decoding, so they are
/// never kept or logged.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MigratorConfig {
    /// `Mode`: `None` when absent, `Some(None)` when null.
    #[serde(default, deserialize_with = "present_string")]
    pub mode: Option<Option<String>>,
    #[serde(default, deserialize_with = "lenient_date")]
    pub last_export_utc: Option<DateTime<Utc>>,
    pub last_export_path: Option<String>,
    pub last_export_log: Option<String>,
    /// Fields every Migrator configuration has (value types, written whatever their
    /// value); only their presence is read. All come before the ZIPs in the document.
    #[serde(default)]
    include_users: Option<IgnoredAny>,
    #[serde(default)]
    include_libraries: Option<IgnoredAny>,
    #[serde(default)]
    include_watch_history: Option<IgnoredAny>,
    #[serde(default)]
    include_devices: Option<IgnoredAny>,
}

impl MigratorConfig {
    /// The members the preflight reads: `Mode` and the shape fields (a few hundred bytes
    /// into the document).
    pub const PREFLIGHT: &'static [&'static str] = &[
        "Mode",
        "IncludeUsers",
        "IncludeLibraries",
        "IncludeWatchHistory",
        "IncludeDevices",
    ];
    /// The members the verification reads: the preflight's and the last run's log, path
    /// and time (all before the ZIPs).
    pub const VERIFY: &'static [&'static str] = &[
        "Mode",
        "IncludeUsers",
        "IncludeLibraries",
        "IncludeWatchHistory",
        "IncludeDevices",
        "LastExportLog",
        "LastExportPath",
        "LastExportUtc",
    ];

    /// A configuration with the Migrator's shape and this `Mode` (tests, fixtures).
    pub fn with_mode(mode: Option<&str>) -> Self {
        MigratorConfig {
            mode: Some(mode.map(str::to_owned)),
            include_users: Some(IgnoredAny),
            include_libraries: Some(IgnoredAny),
            include_watch_history: Some(IgnoredAny),
            include_devices: Some(IgnoredAny),
            ..Default::default()
        }
    }

    /// The Migrator's fields this configuration lacks (empty for the Migrator's). The
    /// plugin's id is its template's, so another plugin can answer under it.
    pub fn missing_fields(&self) -> Vec<&'static str> {
        [
            ("Mode", self.mode.is_some()),
            ("IncludeUsers", self.include_users.is_some()),
            ("IncludeLibraries", self.include_libraries.is_some()),
            ("IncludeWatchHistory", self.include_watch_history.is_some()),
            ("IncludeDevices", self.include_devices.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| name)
        .collect()
    }

    /// `Mode` as saved (`None` when null or absent).
    pub fn mode_text(&self) -> Option<&str> {
        self.mode.as_ref()?.as_deref()
    }

    /// The operation the task's next run performs, read as the plugin reads `Mode`.
    pub fn operation(&self) -> Operation {
        Operation::from_mode(self.mode_text())
    }

    /// What `LastExportLog` says about the run that wrote it.
    pub fn export_log(&self) -> ExportLog<'_> {
        ExportLog::read(self.last_export_log.as_deref().unwrap_or(""))
    }
}

/// The `Include*` and `Selected*` fields of the Migrator's configuration: what its next
/// export writes. Defaults are the plugin's constructor's.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExportContents {
    pub include_users: bool,
    /// `users_basic.json` carries password hashes.
    pub include_user_password_hashes: bool,
    pub include_libraries: bool,
    pub include_permissions: bool,
    pub include_watch_history: bool,
    /// `devices.json`, with each device's access token.
    pub include_devices: bool,
    /// Empty: every user.
    pub selected_user_ids: Vec<String>,
    pub selected_usernames: Vec<String>,
    /// Empty: every library.
    pub selected_library_ids: Vec<String>,
}

impl Default for ExportContents {
    fn default() -> Self {
        ExportContents {
            include_users: true,
            include_user_password_hashes: false,
            include_libraries: true,
            include_permissions: true,
            include_watch_history: true,
            include_devices: true,
            selected_user_ids: Vec::new(),
            selected_usernames: Vec::new(),
            selected_library_ids: Vec::new(),
        }
    }
}

/// The operation one run of the Migrator's task performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Export,
    Verify,
    Import,
}

impl Operation {
    /// The plugin's rule: `Mode` trimmed and compared without case; null, empty or any
    /// other value runs an Export.
    pub fn from_mode(mode: Option<&str>) -> Operation {
        Operation::named(mode.unwrap_or("")).unwrap_or(Operation::Export)
    }

    /// `Export`, `Verify` or `Import` in any case, trimmed; `None` for anything else.
    pub fn named(word: &str) -> Option<Operation> {
        let word = word.trim();
        [Operation::Export, Operation::Verify, Operation::Import]
            .into_iter()
            .find(|op| word.eq_ignore_ascii_case(op.name()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Export => "Export",
            Operation::Verify => "Verify",
            Operation::Import => "Import",
        }
    }

    /// "an Export", "a Verify", "an Import".
    pub fn with_article(self) -> String {
        let article = if self == Operation::Verify { "a" } else { "an" };
        format!("{article} {}", self.name())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the Migrator's export log says. Its lines are `HH:mm:ss message` (server local
/// time); the first is `Migrator {Mode} started`; errors are `HH:mm:ss ERROR: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportLog<'a> {
    /// The first line that is not blank.
    pub first_line: Option<&'a str>,
    /// The operation the first line names, when it is `Migrator {Mode} started`.
    pub started: Option<Operation>,
    /// Every `ERROR:` line, trimmed, in order.
    pub errors: Vec<&'a str>,
    /// The first error line saying the operation was cancelled (the plugin catches the
    /// cancellation, logs it and ends `Completed`).
    pub cancelled: Option<&'a str>,
}

/// The messages .NET gives `OperationCanceledException` and `TaskCanceledException`.
const CANCEL_MESSAGES: [&str; 2] = ["The operation was canceled.", "A task was canceled."];

impl<'a> ExportLog<'a> {
    pub fn read(log: &'a str) -> Self {
        let first_line = log.lines().map(str::trim).find(|l| !l.is_empty());
        let started = first_line.and_then(|l| {
            let message = without_time(l);
            let word = message
                .strip_prefix("Migrator ")?
                .strip_suffix(" started")?;
            Operation::named(word)
        });
        let errors: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| without_time(l).starts_with("ERROR:"))
            .collect();
        let cancelled = errors
            .iter()
            .copied()
            .find(|l| CANCEL_MESSAGES.iter().any(|m| l.contains(m)));
        ExportLog {
            first_line,
            started,
            errors,
            cancelled,
        }
    }
}

/// A log line without its `HH:mm:ss ` stamp.
fn without_time(line: &str) -> &str {
    let b = line.as_bytes();
    let stamped = b.len() >= 9
        && b[..8].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
        && b[8] == b' ';
    if stamped { &line[9..] } else { line }
}

/// Parse a Jellyfin date: RFC 3339 with any fraction length; a date without an offset is
/// UTC (.NET writes some that way); .NET's `DateTime.MinValue` means "never".
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })?;
    (t.timestamp() > 0).then_some(t)
}

fn lenient_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => parse_date(&s)
            .map(Some)
            .or_else(|| {
                // A year-one placeholder is "never"; anything else unreadable is an error.
                s.starts_with("0001-01-01").then_some(None)
            })
            .ok_or_else(|| serde::de::Error::custom(format!("invalid date {s:?}"))),
    }
}

/// A member that is present: `Some(None)` when null, else its string (a number or bool
/// written as its text, like an enum saved as an integer). An absent member stays `None`
/// through `#[serde(default)]`.
fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    let v: serde_json::Value = serde_json::Value::deserialize(d)?;
    Ok(Some(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_example() {
        let json = r#"{"Name":"Migration: Export Data","State":"Running","CurrentProgressPercentage":0,
 "Id":"d6eb93f1d1591e7d5e6c70f1d25e6fdd",
 "LastExecutionResult":{"StartTimeUtc":"2025-10-07T06:49:12.1234567Z","EndTimeUtc":"2025-10-07T06:49:22.5Z",
   "Status":"Completed","Name":"Migration: Export Data","Key":"JellyfinMigratorExport","Id":"d6eb93f1d1591e7d5e6c70f1d25e6fdd"},
 "Triggers":[],"Description":"Run migration operation (Export/Verify)","Category":"Migration","IsHidden":false,"Key":"JellyfinMigratorExport"}"#;
        let t: TaskInfo = serde_json::from_str(json).unwrap();
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.current_progress_percentage, Some(0.0));
        let r = t.last_execution_result.unwrap();
        assert_eq!(r.status, Some(TaskStatus::Completed));
        assert_eq!(
            r.start_time_utc.unwrap().to_rfc3339(),
            "2025-10-07T06:49:12.123456700+00:00"
        );
        assert_eq!(
            r.end_time_utc.unwrap().timestamp_subsec_millis(),
            500,
            "one fractional digit"
        );
    }

    #[test]
    fn unknown_enum_values_and_missing_fields_decode() {
        let t: TaskInfo = serde_json::from_str(r#"{"State":"Pausing","Id":"ab"}"#).unwrap();
        assert_eq!(t.state, TaskState::Other("Pausing".into()));
        assert!(t.last_execution_result.is_none());
        let r: TaskResult = serde_json::from_str(r#"{"Status":"Exploded"}"#).unwrap();
        assert_eq!(r.status, Some(TaskStatus::Other("Exploded".into())));
    }

    #[test]
    fn dates_without_offset_are_utc_and_min_value_is_never() {
        assert_eq!(
            parse_date("2025-10-07T06:49:12.12").unwrap().to_rfc3339(),
            "2025-10-07T06:49:12.120+00:00"
        );
        assert_eq!(parse_date("0001-01-01T00:00:00"), None);
        let c: MigratorConfig =
            serde_json::from_str(r#"{"Mode":2,"LastExportUtc":"0001-01-01T00:00:00"}"#).unwrap();
        assert_eq!(c.mode_text(), Some("2"));
        assert_eq!(c.last_export_utc, None);
    }

    #[test]
    fn mode_is_read_like_the_plugin_reads_it() {
        for (mode, op) in [
            (Some("Export"), Operation::Export),
            (Some(" export "), Operation::Export),
            (Some("EXPORT"), Operation::Export),
            (None, Operation::Export),
            (Some(""), Operation::Export),
            (Some("Backup"), Operation::Export),
            (Some("2"), Operation::Export),
            (Some("Import"), Operation::Import),
            (Some(" iMPORT\t"), Operation::Import),
            (Some("verify"), Operation::Verify),
            (Some(" VERIFY "), Operation::Verify),
        ] {
            assert_eq!(Operation::from_mode(mode), op, "{mode:?}");
        }
    }

    #[test]
    fn the_migrators_shape_is_its_fields_and_a_null_mode_is_still_there() {
        let migrator = r#"{"ExportDirectory":"","Mode":null,"IncludeUsers":true,"IncludeLibraries":true,"IncludeWatchHistory":false,"IncludeDevices":true}"#;
        let c: MigratorConfig = serde_json::from_str(migrator).unwrap();
        assert!(c.missing_fields().is_empty());
        assert_eq!(c.operation(), Operation::Export);
        let template = r#"{"TrueFalseSetting":true,"AnInteger":2,"AString":"string","Options":"AnotherOption"}"#;
        let c: MigratorConfig = serde_json::from_str(template).unwrap();
        assert_eq!(
            c.missing_fields(),
            [
                "Mode",
                "IncludeUsers",
                "IncludeLibraries",
                "IncludeWatchHistory",
                "IncludeDevices"
            ]
        );
        let no_mode = migrator.replace(r#""Mode":null,"#, "");
        let c: MigratorConfig = serde_json::from_str(&no_mode).unwrap();
        assert_eq!(c.missing_fields(), ["Mode"]);
    }

    /// `doc` with only the members named in `keep`.
    fn only(doc: &serde_json::Value, keep: &[&str]) -> MigratorConfig {
        let kept: serde_json::Map<String, serde_json::Value> = doc
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(serde_json::Value::Object(kept)).unwrap()
    }

    #[test]
    fn the_member_lists_hold_every_field_a_read_uses() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"ExportDirectory":"","Mode":"Verify","IncludeUsers":true,"IncludeLibraries":true,
            "IncludeWatchHistory":false,"IncludeDevices":true,"SelectedUserIds":[],
            "LastExportLog":"07:49:12 Migrator Export started","LastExportPath":"/x/20251007_064912",
            "LastExportUtc":"2025-10-07T06:49:22.5Z","LastExportZipBase64":"",
            "ImportIncludeUsers":true}"#,
        )
        .unwrap();
        let whole: MigratorConfig = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(only(&doc, MigratorConfig::VERIFY), whole);
        let preflight = only(&doc, MigratorConfig::PREFLIGHT);
        assert_eq!(preflight.mode, whole.mode);
        assert_eq!(preflight.missing_fields(), whole.missing_fields());
        assert!(
            MigratorConfig::PREFLIGHT
                .iter()
                .all(|m| MigratorConfig::VERIFY.contains(m))
        );
    }

    #[test]
    fn the_export_log_names_its_operation_errors_and_cancel() {
        let log = ExportLog::read(
            "\n07:49:12 Migrator export started\n07:49:12 Data path: /var/lib/jellyfin\n\
             07:49:13 ERROR: Failed to extract password hashes: locked: locked\n\
             07:49:15 User ERROR: not an error line\n\
             07:49:17 ERROR: export failed: The operation was canceled.: The operation was canceled.\n",
        );
        assert_eq!(log.first_line, Some("07:49:12 Migrator export started"));
        assert_eq!(log.started, Some(Operation::Export));
        assert_eq!(log.errors.len(), 2);
        assert_eq!(
            log.cancelled,
            Some(
                "07:49:17 ERROR: export failed: The operation was canceled.: The operation was canceled."
            )
        );
        let log = ExportLog::read("INFO: start\n  ERROR: disk full \nERROR: second");
        assert_eq!(
            (log.started, log.errors),
            (None, vec!["ERROR: disk full", "ERROR: second"])
        );
        assert_eq!(
            ExportLog::read("08:00:00 Migrator Import started").started,
            Some(Operation::Import)
        );
        assert_eq!(
            ExportLog::read("08:00:00 Migrator Backup started").started,
            None
        );
        assert_eq!(ExportLog::read("").first_line, None);
    }
}
