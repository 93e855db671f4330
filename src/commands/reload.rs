//! `reload`: make the running daemon re-read its config, and say what it made of it.
//!
//! 1. Validate the file here, without its secrets (the daemon resolves those in its own
//!    environment). Invalid: every problem on stderr, exit 2, and the daemon is not touched.
//! 2. Find the daemon: `--pid` (systemd's `$MAINPID`), else the pid in the state
//!    directory's [reload status file](crate::reload::status), checked against the
//!    process's start time so that a reused pid is never signalled.
//! 3. Send it SIGHUP and poll the status file (bounded by `--timeout`) for an attempt that
//!    began after the signal. Applied, with the digest of the file validated here: exit 0.
//!    Refused: the daemon's problems on stderr, exit 2. Anything else (no daemon, no
//!    answer in time, a version of the file other than the one validated here): exit 1.
//!
//! Needs no other program (no `kill`), so it works as `ExecReload=` in the unit's sandbox,
//! where its output goes to the journal next to the daemon's, in the daemon's log format.

use super::{CommandError, Verdict};
use crate::config::{Config, ConfigError, LoadEnv, LogFormat, default_state_dir};
use crate::reload::status::{self, ReadError, ReloadResult, ReloadStatus};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the status file is read while waiting.
const POLL: Duration = Duration::from_millis(50);

/// What `reload` was asked.
pub struct Options {
    /// The daemon's pid (systemd's `$MAINPID`); `None`: the one in the status file.
    pub pid: Option<u32>,
    /// How long to wait for the daemon's answer.
    pub timeout: Duration,
    /// The format of this command's lines; `None`: the daemon's log format.
    pub log_format: Option<LogFormat>,
}

/// Why the daemon did not apply the file, or why this command cannot tell.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid here; nothing was sent.
    #[error(
        "{error}\n{}: not reloaded: nothing was sent to the daemon, which keeps running on its current config",
        path.display()
    )]
    Invalid { path: PathBuf, error: ConfigError },
    #[error(
        "{source}; is the daemon running with this config's state directory {}? (a changed [daemon] state_dir takes effect only after a restart)",
        state_dir.display()
    )]
    NoStatus {
        state_dir: PathBuf,
        source: ReadError,
    },
    /// `--pid` is not the daemon that writes the status file.
    #[error(
        "pid {asked} is not the daemon that reports in {} (that is pid {reporting}); is pid {asked} a jellyfin-export-scheduler daemon with this state directory?",
        file.display()
    )]
    NotTheDaemon {
        asked: u32,
        reporting: u32,
        file: PathBuf,
    },
    /// The process the status file names is gone (or is another one now).
    #[error(
        "no daemon is running on state directory {}: the last one (pid {pid}, in {}) has exited; start it, or give its pid with --pid",
        state_dir.display(),
        file.display()
    )]
    NotRunning {
        state_dir: PathBuf,
        pid: u32,
        file: PathBuf,
    },
    #[error("{0} is not a process id")]
    BadPid(u32),
    #[error(
        "not allowed to signal the daemon (pid {pid}): run reload as the daemon's user or as root"
    )]
    NotAllowed { pid: u32 },
    #[error("the daemon (pid {pid}) is not running")]
    Gone { pid: u32 },
    #[error("cannot send SIGHUP to the daemon (pid {pid}): {errno}")]
    Signal { pid: u32, errno: rustix::io::Errno },
    #[error(
        "the daemon restarted (pid {pid} is now pid {now}) before it reported on the reload; the new one runs on the file as it was at its start"
    )]
    Restarted { pid: u32, now: u32 },
    #[error("the daemon (pid {pid}) exited before it reported on the reload; see its log")]
    Exited { pid: u32 },
    #[error(
        "the daemon (pid {pid}) did not report on the reload within {}{}; it may still apply it: see its log (journalctl -u jellyfin-export-scheduler), or raise --timeout",
        humantime::format_duration(*timeout),
        last_read.as_ref().map(|e| format!(" (last read of the status file: {e})")).unwrap_or_default()
    )]
    NoAnswer {
        pid: u32,
        timeout: Duration,
        /// Why the status file could not be read the last time, if it could not.
        last_read: Option<ReadError>,
    },
    #[error(
        "{}: the daemon (pid {pid}) applied another version of this file: {changed}; run reload again to confirm the current one",
        path.display()
    )]
    OtherVersion {
        path: PathBuf,
        pid: u32,
        changed: FileChanged,
    },
    /// The daemon refused the file: its problems, one line each.
    #[error(
        "{}{}: refused by the daemon (pid {pid}), which keeps running on its previous config{}",
        problems.iter().map(|p| format!("{p}\n")).collect::<String>(),
        path.display(),
        changed.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Refused {
        path: PathBuf,
        pid: u32,
        problems: Vec<String>,
        /// Set when the daemon read another version of the file than this command.
        changed: Option<FileChanged>,
    },
}

impl ReloadError {
    /// 2 when the file is invalid (here or for the daemon), 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            ReloadError::Invalid { .. } | ReloadError::Refused { .. } => super::exit::USAGE,
            _ => super::exit::FAILED,
        }
    }
}

/// The file the daemon read is not the version this command validated.
#[derive(Debug)]
pub struct FileChanged {
    /// The SHA-256 of the file as validated here.
    pub here: String,
    /// As the daemon read it; `None` when it could not.
    pub there: Option<String>,
}

impl fmt::Display for FileChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the file changed after this command checked it (sha256 {} here, {} as the daemon read it)",
            short(&self.here),
            self.there.as_deref().map_or("unreadable", short)
        )
    }
}

/// A [`ReloadError`] as the command shows it: each line in the daemon's log format, so
/// the journal (where `ExecReload=` writes) stays one format.
#[derive(Debug)]
pub struct ReloadFailed {
    pub format: LogFormat,
    pub error: ReloadError,
}

impl ReloadFailed {
    pub fn exit_status(&self) -> u8 {
        self.error.exit_status()
    }
}

impl fmt::Display for ReloadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.error.to_string();
        for (i, message) in text.lines().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", line(self.format, "ERROR", message))?;
        }
        Ok(())
    }
}

impl std::error::Error for ReloadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// One line: the message as it is, or a flat JSON object like the daemon's log lines.
fn line(format: LogFormat, level: &str, message: &str) -> String {
    match format {
        LogFormat::Text => message.to_owned(),
        LogFormat::Json => serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": level,
            "target": module_path!(),
            "message": message,
        })
        .to_string(),
    }
}

/// The command. The result goes to `out` as text, or to `err` as JSON (with the errors,
/// which `main` prints).
pub fn reload(
    config_path: &Path,
    opts: &Options,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    let checked = Config::load_without_secrets(config_path);
    let state_dir = match &checked {
        Ok(c) => c.daemon.state_dir.clone(),
        Err(_) => state_dir_of_invalid(config_path),
    };
    let found = status::read(&state_dir);
    let format = opts.log_format.unwrap_or_else(|| {
        found
            .as_ref()
            .map_or(LogFormat::Text, ReloadStatus::log_format)
    });
    let failed = |error| CommandError::from(ReloadFailed { format, error });
    let config = checked.map_err(|error| {
        failed(ReloadError::Invalid {
            path: config_path.to_owned(),
            error,
        })
    })?;
    let (pid, answer) = ask(found, &state_dir, opts).map_err(failed)?;
    let applied = judge(&config, pid, &answer).map_err(failed)?;
    let _ = match format {
        LogFormat::Text => writeln!(out, "{applied}"),
        LogFormat::Json => writeln!(err, "{}", line(format, "INFO", &applied)),
    };
    Ok(Verdict::Fine)
}

/// Signal the daemon the status file names (or `--pid`, once checked) and wait for its
/// answer.
fn ask(
    found: Result<ReloadStatus, ReadError>,
    state_dir: &Path,
    opts: &Options,
) -> Result<(u32, ReloadStatus), ReloadError> {
    let status = found.map_err(|source| ReloadError::NoStatus {
        state_dir: state_dir.to_owned(),
        source,
    })?;
    let pid = daemon_pid(&status, opts.pid, state_dir)?;
    let signalled_usec = crate::sd_notify::monotonic_usec();
    send_hup(pid)?;
    let answer = wait_for_answer(state_dir, pid, signalled_usec, opts.timeout)?;
    Ok((pid, answer))
}

/// Where the daemon's state probably is when the file is invalid, only to find its log
/// format: `[daemon] state_dir` as written when the TOML parses and it needs no expansion,
/// else the default (systemd's `$STATE_DIRECTORY`, which `ExecReload=` gets too).
fn state_dir_of_invalid(config_path: &Path) -> PathBuf {
    let written = Config::read_text(config_path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("daemon")?
                .get("state_dir")?
                .as_str()
                .map(str::to_owned)
        })
        .filter(|s| !s.contains('$') && !s.trim().is_empty());
    match written {
        Some(s) => config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(s.trim()),
        None => default_state_dir(&LoadEnv::process()),
    }
}

/// The pid to signal: `asked` when the status file names it; else the file's own, when
/// that process still runs (same start time).
fn daemon_pid(
    status: &ReloadStatus,
    asked: Option<u32>,
    state_dir: &Path,
) -> Result<u32, ReloadError> {
    let file = status::path(state_dir);
    match asked {
        Some(pid) if pid == status.pid => Ok(pid),
        Some(pid) => Err(ReloadError::NotTheDaemon {
            asked: pid,
            reporting: status.pid,
            file,
        }),
        None if status.pid_start != 0
            && status::process_start(status.pid).ok() == Some(status.pid_start) =>
        {
            Ok(status.pid)
        }
        None => Err(ReloadError::NotRunning {
            state_dir: state_dir.to_owned(),
            pid: status.pid,
            file,
        }),
    }
}

fn process(pid: u32) -> Result<rustix::process::Pid, ReloadError> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(ReloadError::BadPid(pid))
}

fn send_hup(pid: u32) -> Result<(), ReloadError> {
    use rustix::process::{Signal, kill_process};
    kill_process(process(pid)?, Signal::HUP).map_err(|errno| match errno {
        rustix::io::Errno::PERM => ReloadError::NotAllowed { pid },
        rustix::io::Errno::SRCH => ReloadError::Gone { pid },
        errno => ReloadError::Signal { pid, errno },
    })
}

/// Poll the status file until it holds an attempt that began after `signalled_usec`.
fn wait_for_answer(
    state_dir: &Path,
    pid: u32,
    signalled_usec: u64,
    timeout: Duration,
) -> Result<ReloadStatus, ReloadError> {
    let deadline = Instant::now() + timeout;
    let target = process(pid)?;
    let mut last_read = None;
    loop {
        match status::read(state_dir) {
            Ok(s) if s.pid != pid => return Err(ReloadError::Restarted { pid, now: s.pid }),
            Ok(s) if s.generation > 0 && s.started_usec >= signalled_usec => return Ok(s),
            Ok(_) => {}
            Err(e) => last_read = Some(e),
        }
        if rustix::process::test_kill_process(target) == Err(rustix::io::Errno::SRCH) {
            return Err(ReloadError::Exited { pid });
        }
        if Instant::now() >= deadline {
            return Err(ReloadError::NoAnswer {
                pid,
                timeout,
                last_read,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// What the daemon's answer about `config`'s file means: the line to show when it applied
/// this very file.
fn judge(config: &Config, pid: u32, answer: &ReloadStatus) -> Result<String, ReloadError> {
    let path = config.path.clone();
    let changed = (answer.sha256.as_deref() != Some(config.digest.as_str())).then(|| FileChanged {
        here: config.digest.clone(),
        there: answer.sha256.clone(),
    });
    match (answer.result, changed) {
        (ReloadResult::Applied, None) => Ok(format!(
            "{}: applied by the daemon (pid {pid}, reload {}): {}",
            path.display(),
            answer.generation,
            answer.summary
        )),
        (ReloadResult::Applied, Some(changed)) => {
            Err(ReloadError::OtherVersion { path, pid, changed })
        }
        (ReloadResult::Refused, changed) => Err(ReloadError::Refused {
            path,
            pid,
            problems: answer.problems.clone(),
            changed,
        }),
    }
}

/// The first 12 hex digits of a digest, enough to tell versions apart in a message.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
