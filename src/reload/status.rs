//! The reload status file, `<state_dir>/reload-status.json`: how the daemon tells the
//! `reload` command (and anyone reading the state directory) what it made of its config.
//!
//! The daemon writes it when it starts (generation 0: the config it started with) and after
//! every reload attempt (generation + 1), always whole: a temporary file, fsynced, renamed
//! over the old one, so a reader sees the previous version or the new one, never half.
//! Only the daemon that holds the state directory's instance lock writes it.
//!
//! ```json
//! {"version":1,"pid":4242,"pid_start":1234567,"config":"/etc/jellyfin-export-scheduler/config.toml",
//!  "log_format":"text","generation":2,"cause":"watch","started_usec":81234567890,"at":"2026-11-27T02:30:00.123Z","result":"refused",
//!  "sha256":"9f86d0…","in_force_sha256":"2c26b4…","summary":"",
//!  "problems":["/etc/jellyfin-export-scheduler/config.toml:7:12: servers[0].schedule: invalid cron expression …"]}
//! ```
//!
//! `sha256` is the digest of the file as this attempt read it (what `sha256sum` prints;
//! `null` when it could not be read), `in_force_sha256` that of the config the daemon runs
//! on afterwards. `pid_start` is the process's start time (field 22 of `/proc/PID/stat`),
//! so that a pid reused by another process is never taken for the daemon. Problems are the
//! config loader's lines, which never quote a secret.

use crate::config::LogFormat;
use crate::state::{StateDir, write_private_file};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The format's version; a reader refuses others.
pub const VERSION: u32 = 1;
/// The file's name in the state directory.
pub const FILE_NAME: &str = "reload-status.json";

/// What the daemon did with a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// Valid: now in force (for generation 0, the config the daemon started with).
    Applied,
    /// Invalid or unreadable: the daemon runs on the config it had.
    Refused,
}

/// The file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub version: u32,
    pub pid: u32,
    pub pid_start: u64,
    /// The config file the daemon reads.
    pub config: PathBuf,
    /// The log format in effect (`text` or `json`), so that `reload`, whose output goes to
    /// the same journal, writes lines of the same kind.
    pub log_format: String,
    pub generation: u64,
    /// What asked for this attempt: `start` (generation 0), `signal` (SIGHUP) or `watch`
    /// (the config watcher saw the file change). Absent in files of older versions.
    #[serde(default)]
    pub cause: String,
    /// When this attempt began (`CLOCK_MONOTONIC`, µs): `reload` waits for an attempt that
    /// began after its signal, so a reload still in progress from before is never taken
    /// for its own.
    pub started_usec: u64,
    /// When this attempt ended, RFC 3339 UTC.
    pub at: String,
    pub result: ReloadResult,
    pub sha256: Option<String>,
    pub in_force_sha256: String,
    /// For `applied`: what changed (`reloaded: 1 added, 0 removed, 2 changed`).
    pub summary: String,
    /// For `refused`: every problem, one line each.
    pub problems: Vec<String>,
}

impl ReloadStatus {
    pub fn log_format(&self) -> LogFormat {
        match self.log_format.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// `<state_dir>/reload-status.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Replace the file with `status`, atomically (temporary file, fsync, rename).
pub fn write(state: &StateDir, status: &ReloadStatus) -> io::Result<()> {
    let target = path(state.root());
    let tmp = state.root().join(format!("{FILE_NAME}.tmp"));
    let mut bytes = serde_json::to_vec(status).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_private_file(&tmp, &bytes)?;
    std::fs::rename(&tmp, &target)
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "{}: not found: no daemon has started on this state directory (or it is an older version)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a reload status this version understands: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// Read the file in `state_dir`.
pub fn read(state_dir: &Path) -> Result<ReloadStatus, ReadError> {
    let path = path(state_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing { path }),
        Err(source) => return Err(ReadError::Io { path, source }),
    };
    let status: ReloadStatus = serde_json::from_slice(&text).map_err(|e| ReadError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if status.version != VERSION {
        return Err(ReadError::Invalid {
            path,
            reason: format!("version {} (this one reads {VERSION})", status.version),
        });
    }
    Ok(status)
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`).
/// Two processes with the same pid never have the same start time.
pub fn process_start(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time"),
        )
    })
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_start(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts with field 3 (the state); field 22 is the 20th from there.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 12345 67 18446744073709551615";
        assert_eq!(parse_start(line), Some(987654));
        assert_eq!(parse_start("4242 (x) S 1"), None);
        let own = process_start(std::process::id()).unwrap();
        assert_eq!(process_start(std::process::id()).unwrap(), own);
    }

    #[test]
    fn write_replaces_the_file_whole_and_read_checks_the_version() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert!(matches!(read(tmp.path()), Err(ReadError::Missing { .. })));
        let mut status = ReloadStatus {
            version: VERSION,
            pid: 1,
            pid_start: 2,
            config: "/etc/x.toml".into(),
            log_format: "json".into(),
            generation: 0,
            cause: "start".into(),
            started_usec: 5,
            at: "2026-11-27T02:30:00.000Z".into(),
            result: ReloadResult::Applied,
            sha256: Some("ab".into()),
            in_force_sha256: "ab".into(),
            summary: String::new(),
            problems: vec![],
        };
        write(&state, &status).unwrap();
        status.generation = 1;
        status.result = ReloadResult::Refused;
        status.problems = vec!["x.toml:1:1: bad".into()];
        write(&state, &status).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), status);
        assert_eq!(status.log_format(), LogFormat::Json);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(tmp.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tmp.path().join("reload-status.json.tmp").exists());

        std::fs::write(path(tmp.path()), r#"{"version":9}"#).unwrap();
        let err = read(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a reload status"), "{err}");
    }
}
