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

use super::exit;
use crate::config::{Config, LoadEnv, LogFormat, default_state_dir};
use crate::reload::status::{self, ReloadResult, ReloadStatus};
use std::io::Write;
use std::path::Path;
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

/// Where the command's lines go: plain lines (results on `out`, problems on `err`), or,
/// when the daemon logs JSON, flat JSON objects like its log lines, all on `err`.
struct Say<O, E> {
    format: LogFormat,
    out: O,
    err: E,
}

impl<O: Write, E: Write> Say<O, E> {
    fn info(&mut self, message: &str) {
        match self.format {
            LogFormat::Text => {
                let _ = writeln!(self.out, "{message}");
            }
            LogFormat::Json => self.json("INFO", message),
        }
    }

    fn error(&mut self, message: &str) {
        match self.format {
            LogFormat::Text => {
                let _ = writeln!(self.err, "{message}");
            }
            LogFormat::Json => self.json("ERROR", message),
        }
    }

    fn json(&mut self, level: &str, message: &str) {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": level,
            "target": module_path!(),
            "message": message,
        });
        let _ = writeln!(self.err, "{line}");
    }
}

/// The command.
pub fn reload<O: Write, E: Write>(config_path: &Path, opts: &Options, out: O, err: E) -> u8 {
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
    let mut say = Say { format, out, err };
    let config = match checked {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                say.error(&line);
            }
            say.error(&format!(
                "{}: not reloaded: nothing was sent to the daemon, which keeps running on its current config",
                config_path.display()
            ));
            return exit::USAGE;
        }
    };
    let status = match found {
        Ok(s) => s,
        Err(e) => {
            say.error(&format!(
                "{e}; is the daemon running with this config's state directory {}? (a changed [daemon] state_dir takes effect only after a restart)",
                state_dir.display()
            ));
            return exit::FAILED;
        }
    };
    let pid = match daemon_pid(&status, opts.pid, &state_dir) {
        Ok(pid) => pid,
        Err(message) => {
            say.error(&message);
            return exit::FAILED;
        }
    };
    let signalled_usec = crate::notify::monotonic_usec();
    if let Err(message) = send_hup(pid) {
        say.error(&message);
        return exit::FAILED;
    }
    match wait_for_answer(&state_dir, pid, signalled_usec, opts.timeout) {
        Ok(answer) => judge(&mut say, &config, pid, &answer),
        Err(message) => {
            say.error(&message);
            exit::FAILED
        }
    }
}

/// Where the daemon's state probably is when the file is invalid, only to find its log
/// format: `[daemon] state_dir` as written when the TOML parses and it needs no expansion,
/// else the default (systemd's `$STATE_DIRECTORY`, which `ExecReload=` gets too).
fn state_dir_of_invalid(config_path: &Path) -> std::path::PathBuf {
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
fn daemon_pid(status: &ReloadStatus, asked: Option<u32>, state_dir: &Path) -> Result<u32, String> {
    let file = status::path(state_dir);
    match asked {
        Some(pid) if pid == status.pid => Ok(pid),
        Some(pid) => Err(format!(
            "pid {pid} is not the daemon that reports in {} (that is pid {}); is pid {pid} a jellyfin-export-scheduler daemon with this state directory?",
            file.display(),
            status.pid
        )),
        None if status.pid_start != 0
            && status::process_start(status.pid).ok() == Some(status.pid_start) =>
        {
            Ok(status.pid)
        }
        None => Err(format!(
            "no daemon is running on state directory {}: the last one (pid {}, in {}) has exited; start it, or give its pid with --pid",
            state_dir.display(),
            status.pid,
            file.display()
        )),
    }
}

fn send_hup(pid: u32) -> Result<(), String> {
    use rustix::process::{Pid, Signal, kill_process};
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{pid} is not a process id"))?;
    kill_process(target, Signal::HUP).map_err(|e| match e {
        rustix::io::Errno::PERM => format!(
            "not allowed to signal the daemon (pid {pid}): run reload as the daemon's user or as root"
        ),
        rustix::io::Errno::SRCH => format!("the daemon (pid {pid}) is not running"),
        e => format!("cannot send SIGHUP to the daemon (pid {pid}): {e}"),
    })
}

/// Poll the status file until it holds an attempt that began after `signalled_usec`.
fn wait_for_answer(
    state_dir: &Path,
    pid: u32,
    signalled_usec: u64,
    timeout: Duration,
) -> Result<ReloadStatus, String> {
    let deadline = Instant::now() + timeout;
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("{pid} is not a process id"))?;
    let mut last_error = None;
    loop {
        match status::read(state_dir) {
            Ok(s) if s.pid != pid => {
                return Err(format!(
                    "the daemon restarted (pid {pid} is now pid {}) before it reported on the reload; the new one runs on the file as it was at its start",
                    s.pid
                ));
            }
            Ok(s) if s.generation > 0 && s.started_usec >= signalled_usec => return Ok(s),
            Ok(_) => {}
            Err(e) => last_error = Some(e.to_string()),
        }
        if rustix::process::test_kill_process(target) == Err(rustix::io::Errno::SRCH) {
            return Err(format!(
                "the daemon (pid {pid}) exited before it reported on the reload; see its log"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the daemon (pid {pid}) did not report on the reload within {}{}; it may still apply it: see its log (journalctl -u jellyfin-export-scheduler), or raise --timeout",
                humantime::format_duration(timeout),
                last_error
                    .map(|e| format!(" (last read of the status file: {e})"))
                    .unwrap_or_default()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Exit status and lines for the daemon's answer about `config`'s file.
fn judge<O: Write, E: Write>(
    say: &mut Say<O, E>,
    config: &Config,
    pid: u32,
    answer: &ReloadStatus,
) -> u8 {
    let path = config.path.display();
    let ours = answer.sha256.as_deref() == Some(config.digest.as_str());
    let changed = || {
        format!(
            "the file changed after this command checked it (sha256 {} here, {} as the daemon read it)",
            short(&config.digest),
            answer.sha256.as_deref().map_or("unreadable", short)
        )
    };
    match answer.result {
        ReloadResult::Applied if ours => {
            say.info(&format!(
                "{path}: applied by the daemon (pid {pid}, reload {}): {}",
                answer.generation, answer.summary
            ));
            exit::OK
        }
        ReloadResult::Applied => {
            say.error(&format!(
                "{path}: the daemon (pid {pid}) applied another version of this file: {}; run reload again to confirm the current one",
                changed()
            ));
            exit::FAILED
        }
        ReloadResult::Refused => {
            for line in &answer.problems {
                say.error(line);
            }
            let note = if ours {
                String::new()
            } else {
                format!(" ({})", changed())
            };
            say.error(&format!(
                "{path}: refused by the daemon (pid {pid}), which keeps running on its previous config{note}"
            ));
            exit::USAGE
        }
    }
}

/// The first 12 hex digits of a digest, enough to tell versions apart in a message.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
