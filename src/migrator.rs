//! What the Migrator plugin's configuration tells about a run, read as the plugin's source
//! writes it (`ExportService.RunAsync`, `ExportLogger`, `PluginConfiguration`).
//!
//! The plugin's one task performs an Export, a Verify or an Import, chosen by its saved
//! `Mode` when a run starts. It catches its own errors *and* its cancellation, so Jellyfin
//! records `Completed` for nearly every run, and every run in every mode ends by writing
//! `LastExportLog`, `LastExportPath` and `LastExportUtc`. So:
//!
//! - before a start (or before following a run already going), `Mode` must run an Export;
//! - after a `Completed` run, a new `LastExportUtc` proves only that *some* run ended: the
//!   log's first line (`HH:mm:ss Migrator Export started`) says which operation it was,
//!   its canceled `ERROR:` line says it was stopped, any other `ERROR:` line that the
//!   export is incomplete.
//!
//! Pure functions over [`MigratorConfig`]; `runner::track` turns them into outcomes.

use crate::jellyfin::model::{MigratorConfig, Operation, TaskInfo, TaskResult};
use crate::record::format_duration;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How `Mode` is shown in a reason: bare when it is the plugin's own spelling, quoted
/// otherwise (so `" import "` is visible as such).
fn shown_mode(config: &MigratorConfig) -> String {
    match config.mode_text() {
        Some(text) if text == config.operation().name() => text.to_owned(),
        Some(text) => format!("{text:?}"),
        None => "null".to_owned(),
    }
}

/// Why the task must not be started (`running` is `None`) or followed (`running` is the
/// task going on), or `None` when `Mode` runs an Export.
pub fn refusal(config: &MigratorConfig, key: &str, running: Option<&TaskInfo>) -> Option<String> {
    let op = config.operation();
    if op == Operation::Export {
        return None;
    }
    let mode = shown_mode(config);
    Some(match running {
        None => format!(
            "the Migrator plugin is set to Mode = {mode}, so its task would run {} instead of an export; \
             open Dashboard → Plugins → Migrator, set the mode back to Export and save",
            op.with_article()
        ),
        Some(task) => format!(
            "task {key} was already {} on the server (started outside this scheduler{}), and the Migrator plugin is set to Mode = {mode}, \
             so that run is {} (the plugin reads Mode when a run starts), not an export; if_running = \"follow\" follows only exports, \
             so it was not followed: set the mode back to Export once it has ended",
            task.state,
            task.current_progress_percentage
                .map(|p| format!(", {p:.0}% done"))
                .unwrap_or_default(),
            op.with_article()
        ),
    })
}

/// What a run that Jellyfin recorded as `Completed` really did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new Export, with no `ERROR:` line.
    Exported { path: Option<String> },
    /// The run was cancelled: the plugin stopped, logged the canceled line and ended
    /// `Completed`. `ran` is Jellyfin's start to end, when both are known.
    Stopped { line: String, ran: Option<Duration> },
    /// Not a complete export; the reason says why.
    NotExported(String),
}

/// Judge the run that started at `run_start` (Jellyfin's time) and produced `result`.
pub fn judge(config: &MigratorConfig, result: &TaskResult, run_start: DateTime<Utc>) -> Verdict {
    let written = match config.last_export_utc {
        Some(t) if t >= run_start => t,
        other => {
            return Verdict::NotExported(format!(
                "the task ended Completed but no export was written during the run (LastExportUtc is {}, the run started {})",
                other.map_or_else(|| "unset".to_owned(), |t| t.to_rfc3339()),
                run_start.to_rfc3339()
            ));
        }
    };
    let log = config.export_log();
    let first = log.first_line.unwrap_or("(the log is empty)");
    match log.started {
        None => {
            return Verdict::NotExported(format!(
                "the run's log (written {}) does not begin with \"Migrator Export started\", so which operation ran cannot be told; it begins {first:?}",
                written.to_rfc3339()
            ));
        }
        Some(op) if op != Operation::Export => {
            return Verdict::NotExported(format!(
                "the run was {}, not an export: its log begins {first:?}; set the Migrator plugin's mode back to Export (Dashboard → Plugins → Migrator)",
                op.with_article()
            ));
        }
        Some(_) => {}
    }
    if let Some(line) = log.cancelled {
        let ran = match (result.start_time_utc, result.end_time_utc) {
            (Some(s), Some(e)) => (e - s).to_std().ok(),
            _ => None,
        };
        return Verdict::Stopped {
            line: line.to_owned(),
            ran,
        };
    }
    match log.errors.as_slice() {
        [] => Verdict::Exported {
            path: config.last_export_path.clone(),
        },
        [only] => Verdict::NotExported(format!("the export log reports an error: {only:?}")),
        [first, ..] => Verdict::NotExported(format!(
            "the export log reports {} errors; the first: {first:?}",
            log.errors.len()
        )),
    }
}

/// " after running 12.3s" (written as `history` writes durations), or nothing when the
/// run's times are unknown.
pub fn ran_for(ran: Option<Duration>) -> String {
    ran.map(|d| {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        format!(" after running {}", format_duration(ms))
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jellyfin::model::TaskStatus;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn result() -> TaskResult {
        TaskResult {
            start_time_utc: Some(at("2025-10-07T06:49:12.5Z")),
            end_time_utc: Some(at("2025-10-07T06:49:22.6Z")),
            status: Some(TaskStatus::Completed),
            name: None,
            key: None,
            id: None,
            error_message: None,
            long_error_message: None,
        }
    }

    fn config(utc: Option<&str>, log: &str) -> MigratorConfig {
        let mut c = MigratorConfig::with_mode(Some("Export"));
        c.last_export_utc = utc.map(at);
        c.last_export_path = Some("/exports/20251007_064912".into());
        c.last_export_log = Some(log.into());
        c
    }

    #[test]
    fn every_verdict_from_a_table() {
        let start = at("2025-10-07T06:49:12.5Z");
        let new = Some("2025-10-07T06:49:22.6Z");
        let ok = "07:49:12 Migrator Export started\n07:49:20 Device export completed.\n";
        let cases: [(Option<&str>, &str, &str); 8] = [
            (new, ok, "exported"),
            (new, "07:49:12 Migrator export started\n", "exported"),
            (
                None,
                ok,
                "no export was written during the run (LastExportUtc is unset",
            ),
            (
                Some("2025-10-06T06:49:22Z"),
                ok,
                "no export was written during the run",
            ),
            (
                new,
                "07:49:12 Migrator Import started\n",
                "the run was an Import, not an export: its log begins \"07:49:12 Migrator Import started\"",
            ),
            (
                new,
                "07:49:12 Migrator Verify started\n07:49:13 ERROR: Export failed: The operation was canceled.: x\n",
                "the run was a Verify",
            ),
            (
                new,
                "INFO: Migration task started\n",
                "does not begin with \"Migrator Export started\"",
            ),
            (
                new,
                "07:49:12 Migrator Export started\n07:49:13 ERROR: a: a\n07:49:14 ERROR: b: b\n",
                "the export log reports 2 errors; the first: \"07:49:13 ERROR: a: a\"",
            ),
        ];
        for (utc, log, want) in cases {
            let verdict = judge(&config(utc, log), &result(), start);
            let text = match &verdict {
                Verdict::Exported { path } => {
                    assert_eq!(path.as_deref(), Some("/exports/20251007_064912"));
                    "exported".to_owned()
                }
                Verdict::NotExported(why) => why.clone(),
                Verdict::Stopped { line, .. } => format!("stopped {line}"),
            };
            assert!(text.contains(want), "{utc:?} {log:?}: {text}");
        }
        let stopped = judge(
            &config(
                new,
                "07:49:12 Migrator Export started\n07:49:13 ERROR: Export failed: The operation was canceled.: The operation was canceled.\n",
            ),
            &result(),
            start,
        );
        assert_eq!(
            stopped,
            Verdict::Stopped {
                line: "07:49:13 ERROR: Export failed: The operation was canceled.: The operation was canceled.".into(),
                ran: Some(Duration::from_millis(10_100)),
            }
        );
        assert_eq!(
            ran_for(Some(Duration::from_millis(10_100))),
            " after running 10.1s"
        );
        let one = judge(
            &config(
                new,
                "07:49:12 Migrator Export started\n07:49:13 ERROR: hashes: locked\n",
            ),
            &result(),
            start,
        );
        assert_eq!(
            one,
            Verdict::NotExported(
                "the export log reports an error: \"07:49:13 ERROR: hashes: locked\"".into()
            )
        );
    }

    #[test]
    fn refusals_name_the_mode_and_the_operation() {
        let c = |m: &str| MigratorConfig::with_mode(Some(m));
        assert_eq!(refusal(&c(" export "), "K", None), None);
        assert_eq!(refusal(&MigratorConfig::with_mode(None), "K", None), None);
        let r = refusal(&c("Import"), "K", None).unwrap();
        assert!(r.starts_with("the Migrator plugin is set to Mode = Import, so its task would run an Import instead of an export"), "{r}");
        let r = refusal(&c(" verify"), "K", None).unwrap();
        assert!(
            r.contains("Mode = \" verify\", so its task would run a Verify"),
            "{r}"
        );
        let task: TaskInfo =
            serde_json::from_str(r#"{"State":"Running","CurrentProgressPercentage":40,"Id":"ab"}"#)
                .unwrap();
        let r = refusal(&c("IMPORT"), "JellyfinMigratorExport", Some(&task)).unwrap();
        assert!(
            r.starts_with(
                "task JellyfinMigratorExport was already Running on the server (started outside this scheduler, 40% done), and"
            ),
            "{r}"
        );
        assert!(
            r.contains("Mode = \"IMPORT\", so that run is an Import"),
            "{r}"
        );
        assert!(r.contains("was not followed"), "{r}");
    }
}
