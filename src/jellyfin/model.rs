//! The Jellyfin wire types a run needs, decoded leniently.
//!
//! Jellyfin writes PascalCase names, leaves null fields out, writes dates with 1 to 7
//! fractional digits and may add enum values in later versions. So every field that can be
//! absent is an `Option`, unknown fields are ignored, enums keep unknown spellings as
//! `Other(String)` instead of failing, and dates are parsed by hand (with or without `Z`).

use chrono::{DateTime, NaiveDateTime, Utc};
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
/// holds `LastExportZipBase64` (the whole export, megabytes): it is not a field here, and
/// the client strips it from the body before decoding, so it is never kept or logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MigratorConfig {
    #[serde(default, deserialize_with = "lenient_string")]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "lenient_date")]
    pub last_export_utc: Option<DateTime<Utc>>,
    pub last_export_path: Option<String>,
    pub last_export_log: Option<String>,
}

impl MigratorConfig {
    /// The first line of the export log that reports an error.
    pub fn first_error_line(&self) -> Option<&str> {
        self.last_export_log
            .as_deref()?
            .lines()
            .map(str::trim)
            .find(|l| l.contains("ERROR:"))
    }
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

/// A string, or a number/bool written as its text (an enum saved as an integer).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
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
        assert_eq!(c.mode.as_deref(), Some("2"));
        assert_eq!(c.last_export_utc, None);
    }

    #[test]
    fn first_error_line_finds_the_error() {
        let c = MigratorConfig {
            last_export_log: Some("INFO: start\n  ERROR: disk full \nERROR: second".into()),
            ..Default::default()
        };
        assert_eq!(c.first_error_line(), Some("ERROR: disk full"));
    }
}
