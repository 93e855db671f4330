//! Reloading the config from its file in the running daemon: what SIGHUP does, and what
//! the config watcher ([`watch`]) has done the same way when the file changed.
//!
//! One attempt: tell the service manager (`RELOADING=1`), read and validate the file in the
//! daemon's own environment (secrets included: the daemon is where they must be readable),
//! apply the difference or keep the config in force, `READY=1` with a fresh status line,
//! and record the result in the [reload status file](status) that the `reload` command
//! waits for. The status file is written last, so that whoever sees the result there can
//! count on the service manager having been told first.

pub mod status;
pub mod watch;

use crate::config::{Config, ConfigError, LoadEnv, LogFormat, Secrets, WatchConfig, sha256_hex};
use crate::daemon::DaemonHandle;
use crate::sd_notify::Notifier;
use crate::state::StateDir;
use chrono::{SecondsFormat, Utc};
use status::{ReloadResult, ReloadStatus};
use std::path::{Path, PathBuf};
use tracing::{debug, error, info, warn};

/// What asked for a reload. Both do the same; the log and the reload status say which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadCause {
    /// SIGHUP (`reload`, `systemctl reload`, `docker kill -s HUP`).
    Signal,
    /// The config watcher saw the file change.
    Watch,
}

impl ReloadCause {
    /// `cause` in the reload status file.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadCause::Signal => "signal",
            ReloadCause::Watch => "watch",
        }
    }

    /// How the log line starts.
    fn describe(self) -> &'static str {
        match self {
            ReloadCause::Signal => "SIGHUP",
            ReloadCause::Watch => "config file changed",
        }
    }
}

/// The daemon's side of reloads: one per daemon.
pub struct Reloader {
    path: PathBuf,
    state: StateDir,
    notifier: Notifier,
    last: ReloadStatus,
}

impl Reloader {
    /// Records the config the daemon started with (generation 0, `applied`) and the log
    /// format in effect (the config's, or the one `run` was told).
    pub fn start(
        path: &Path,
        state: StateDir,
        config: &Config,
        log_format: LogFormat,
        notifier: Notifier,
    ) -> Reloader {
        let pid = std::process::id();
        let pid_start = status::process_start(pid).unwrap_or_else(|e| {
            warn!(error = %e, "cannot read this process's start time; `reload` without --pid will not find this daemon");
            0
        });
        let last = ReloadStatus {
            version: status::VERSION,
            pid,
            pid_start,
            config: path.to_owned(),
            log_format: match log_format {
                LogFormat::Json => "json".into(),
                LogFormat::Text => "text".into(),
            },
            generation: 0,
            cause: "start".into(),
            started_usec: crate::sd_notify::monotonic_usec(),
            at: now(),
            result: ReloadResult::Applied,
            sha256: Some(config.digest.clone()),
            in_force_sha256: config.digest.clone(),
            summary: "started".into(),
            problems: Vec::new(),
        };
        let reloader = Reloader {
            path: path.to_owned(),
            state,
            notifier,
            last,
        };
        reloader.record();
        reloader
    }

    /// The config file it reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reload when the file's content differs from what the last attempt read (a
    /// missing or unreadable file counts as content of its own): what the watcher asks
    /// for, since it sees events that changed nothing. Returns what
    /// [`reload`](Self::reload) returns, `None` when nothing changed.
    pub async fn reload_if_changed(
        &mut self,
        handle: &DaemonHandle,
        cause: ReloadCause,
    ) -> Option<WatchConfig> {
        let path = self.path.clone();
        let now = tokio::task::spawn_blocking(move || {
            Config::read_text(&path)
                .ok()
                .map(|t| sha256_hex(t.as_bytes()))
        })
        .await
        .ok()?;
        if now == self.last.sha256 {
            debug!(
                "config file touched but its content is what the last reload read; nothing to do"
            );
            return None;
        }
        self.reload(handle, cause).await
    }

    /// One reload attempt; `cause` says what asked for it. Returns the watch settings of
    /// the config now in force when the file was applied (`None` when it was refused), so
    /// that the caller can follow a change of them.
    pub async fn reload(
        &mut self,
        handle: &DaemonHandle,
        cause: ReloadCause,
    ) -> Option<WatchConfig> {
        info!("{}: reloading {}", cause.describe(), self.path.display());
        self.notifier.reloading();
        let mut next = self.last.clone();
        next.generation += 1;
        next.cause = cause.as_str().into();
        let mut applied = None;
        next.started_usec = crate::sd_notify::monotonic_usec();
        next.summary.clear();
        next.problems.clear();
        match load(&self.path) {
            Ok(config) => {
                for w in &config.warnings {
                    warn!("{w}");
                }
                next.sha256 = Some(config.digest.clone());
                next.in_force_sha256 = config.digest.clone();
                next.result = ReloadResult::Applied;
                applied = Some(config.daemon.watch);
                if let Some(summary) = handle.reload(config).await {
                    info!(
                        added = summary.added,
                        removed = summary.removed,
                        changed = summary.changed,
                        "{summary}"
                    );
                    next.summary = summary.to_string();
                }
            }
            Err((digest, e)) => {
                for line in e.lines() {
                    error!("{line}");
                }
                error!("reload failed; still running on the previous config");
                handle.reload_failed();
                next.sha256 = digest;
                next.result = ReloadResult::Refused;
                next.problems = e.lines();
            }
        }
        self.notifier.ready_with_status(&handle.status.summary());
        next.at = now();
        self.last = next;
        self.record();
        applied
    }

    fn record(&self) {
        if let Err(e) = status::write(&self.state, &self.last) {
            warn!(
                path = %status::path(self.state.root()).display(),
                error = %e,
                "cannot write the reload status; `reload` cannot confirm this reload"
            );
        }
    }
}

/// The file, validated with secrets; on failure also the digest of what was read (none
/// when the file could not be read at all).
fn load(path: &Path) -> Result<Config, (Option<String>, ConfigError)> {
    let text = Config::read_text(path).map_err(|e| (None, e))?;
    let digest = sha256_hex(text.as_bytes());
    Config::from_text(&text, path, &LoadEnv::process(), Secrets::Resolve)
        .map_err(|e| (Some(digest), e))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
