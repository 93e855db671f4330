//! The record of one run: what the history file stores, what `history` prints and what
//! notifications carry; the request that starts a run, whose fields it repeats; and how a
//! record reads for people ([`summary`], [`format_duration`]), which `trigger`, the
//! notifications, the status page and the Migrator's reasons share.
//!
//! This module only describes the data; writing it to disk is `history`'s job and deciding
//! the outcome is `runner`'s. Field names and outcome spellings are part of the on-disk format
//! (see `docs/history-format.md`): renaming one breaks every history file already written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a run ended. Outcomes are data, not errors: a failed export is a normal result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The task ended `Completed` and (when verified) the export really happened.
    Completed,
    /// The task ended `Failed`, or ended `Completed` while the export did not happen.
    Failed,
    /// The task ended `Cancelled` (someone cancelled it, not us on a timeout).
    Cancelled,
    /// Jellyfin shut down gracefully during the run and recorded `Aborted`.
    Aborted,
    /// The run took longer than `timeout`; we cancelled it.
    TimedOut,
    /// The run vanished: the task went Idle without a new result (crash, restart, or a
    /// start that never happened).
    Lost,
    /// We decided not to start (task already running, plugin not in Export mode, previous
    /// run still in progress).
    Skipped,
    /// The task could not be started (server unreachable, key refused, task missing).
    TriggerFailed,
    /// The daemon stopped during the run and could not find out how it ended.
    Interrupted,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::Aborted,
        Outcome::TimedOut,
        Outcome::Lost,
        Outcome::Skipped,
        Outcome::TriggerFailed,
        Outcome::Interrupted,
    ];

    /// The spelling used in history files, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Aborted => "aborted",
            Outcome::TimedOut => "timed_out",
            Outcome::Lost => "lost",
            Outcome::Skipped => "skipped",
            Outcome::TriggerFailed => "trigger_failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a run happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A due instant of the server's cron schedule.
    Schedule,
    /// `jellyfin-export-scheduler trigger SERVER`.
    Manual,
    /// At daemon start, for a due instant missed while the daemon was down.
    CatchUp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What asked for a run: the first fields of its record, and of its in-flight marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub run_id: String,
    pub trigger: Trigger,
    /// The due instant (absent for manual runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When we decided to run.
    pub triggered_at: DateTime<Utc>,
}

/// One line of `<state_dir>/history/<server>.jsonl`.
///
/// Optional fields are left out of the JSON when unknown, never written as `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub server: String,
    pub task_key: String,
    pub trigger: Trigger,
    /// The due instant this run was for; absent for manual runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When we decided to run (our clock).
    pub triggered_at: DateTime<Utc>,
    /// Jellyfin's `StartTimeUtc` of the run, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Jellyfin's `EndTimeUtc` of the run, when known; else when we stopped tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub outcome: Outcome,
    /// Jellyfin's own `Status` of the run's result (`Completed`, `Failed`, ...), when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jellyfin_status: Option<String>,
    /// A sentence for people; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The plugin's `LastExportPath` after a verified export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_path: Option<String>,
    /// The file the export was archived to (`[archive]`), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_path: Option<String>,
    /// That file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
    /// That file's SHA-256, in lowercase hex (what `sha256sum` prints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    /// Whether that file is age-encrypted (`.zip.age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_encrypted: Option<bool>,
    /// The export's ZIP itself: its size, and its SHA-256 (the decrypted file's, for an
    /// encrypted archive; the same as `archive_sha256` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_sha256: Option<String>,
    /// The files in the ZIP, and the users in its `users_basic.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_entries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_users: Option<u64>,
    /// How many start requests were sent: 1 normally, more when transient failures were
    /// retried, 0 when none was (skipped, followed, failed before the start).
    pub attempts: u32,
    pub scheduler_version: String,
}

/// This program's version, as written into every record.
pub const SCHEDULER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A new run id: 12 hex digits of milliseconds since the epoch, then 8 random hex digits.
/// Sorts by time, is unique across restarts, and is safe in file names.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let ms = now.timestamp_millis().max(0) as u64;
    format!("{:012x}{:08x}", ms & 0xffff_ffff_ffff, h.finish() as u32)
}

/// One line about a finished run, for people: `living-room: failed after 12.3s: <reason>
/// (export in <path>) [run 01a2...]`.
pub fn summary(r: &RunRecord) -> String {
    let mut s = format!("{}: {}", r.server, r.outcome);
    if let Some(ms) = r.duration_ms {
        s.push_str(&format!(" after {}", format_duration(ms)));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!(": {reason}"));
    }
    if let Some(path) = &r.export_path {
        s.push_str(&format!(" (export in {path})"));
    }
    if let Some(path) = &r.archive_path {
        s.push_str(&format!(" (archived to {path}"));
        if let Some(bytes) = r.archive_bytes {
            s.push_str(&format!(", {}", format_bytes(bytes)));
        }
        if let Some(users) = r.export_users {
            s.push_str(&format!(
                ", {users} user{}",
                if users == 1 { "" } else { "s" }
            ));
        }
        s.push(')');
    }
    s.push_str(&format!(" [run {}]", r.run_id));
    s
}

/// `812 B`, `64.0 KiB`, `12.3 MiB`, `1.5 GiB`: sizes for people (one decimal, rounded
/// down, so a file is never shown bigger than it is).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scaled = bytes as f64 / 1024.0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    format!("{:.1} {}", (scaled * 10.0).floor() / 10.0, UNITS[unit])
}

/// `0.4s`, `12.3s` under a minute (tenths, rounded down), `4m 05s` under an hour, then
/// `2h 03m 04s`.
pub fn format_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{secs}.{}s", (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!(
            "{}h {:02}m {:02}s",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_spellings_match_serde() {
        for o in Outcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
        }
    }

    #[test]
    fn run_ids_are_unique_and_sortable() {
        let t = Utc::now();
        let a = new_run_id(t);
        let b = new_run_id(t);
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let later = new_run_id(t + chrono::Duration::seconds(1));
        assert!(later > a && later > b);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(49_152), "48.0 KiB");
        assert_eq!(format_bytes(12_999_999), "12.3 MiB");
        assert_eq!(format_bytes(500 * 1024 * 1024), "500.0 MiB");
        assert_eq!(format_bytes(1_610_612_736), "1.5 GiB");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(format_duration(0), "0.0s");
        assert_eq!(format_duration(450), "0.4s");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(59_999), "59.9s");
        assert_eq!(format_duration(60_000), "1m 00s");
        assert_eq!(format_duration(245_000), "4m 05s");
        assert_eq!(format_duration(3_599_999), "59m 59s");
        assert_eq!(format_duration(3_600_000), "1h 00m 00s");
        assert_eq!(format_duration(7_384_000), "2h 03m 04s");
    }
}
