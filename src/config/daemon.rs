//! `[daemon]`: settings of the process as a whole.

use super::env::{LoadEnv, expand_path};
use super::model::{DaemonConfig, LogFormat, WatchConfig, WatchMode};
use super::problem::{Problems, Reported};
use super::reader::TableReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where state lives when neither the config nor systemd's `$STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/jellyfin-export-scheduler";

/// The HTTP endpoint's address when the config does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

pub(super) const DAEMON_KEYS: &[&str] = &[
    "listen",
    "state_dir",
    "log_format",
    "log_level",
    "max_concurrent_runs",
    "shutdown_grace",
    "watch_config",
    "watch_debounce",
    "watch_poll_interval",
];

/// `watch_debounce` when the config does not say: longer than an editor's save (a
/// rename, or a truncate and a write) takes, short enough to feel immediate.
pub const DEFAULT_WATCH_DEBOUNCE: Duration = Duration::from_secs(1);
/// `watch_poll_interval` when the config does not say: a stat and a read of a small file.
pub const DEFAULT_WATCH_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The state directory when the config sets no `state_dir`: systemd's `$STATE_DIRECTORY`
/// (StateDirectory=; the first when several), else [`DEFAULT_STATE_DIR`].
pub fn default_state_dir(env: &LoadEnv<'_>) -> PathBuf {
    (env.var)("STATE_DIRECTORY")
        .and_then(|v| v.split(':').next().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

pub(super) fn read_daemon(
    t: &TableReader<'_>,
    config_path: &Path,
    env: &LoadEnv<'_>,
    problems: &mut Problems,
) -> Result<DaemonConfig, Reported> {
    t.check_keys(DAEMON_KEYS, &[], problems);
    let state_dir = match t.string("state_dir", problems) {
        Ok(Some(s)) if s.value.trim().is_empty() => {
            Err(problems.report(s.problem("must not be empty".into())))
        }
        // An unexpandable path ends the read of [daemon] here: the keys below go unchecked.
        Ok(Some(s)) => Ok(problems.check(expand_path(&s, config_path.parent(), env))?),
        Ok(None) => Ok(default_state_dir(env)),
        Err(reported) => Err(reported),
    };
    let log_format = t.choice(
        "log_format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        problems,
    );
    let log_level = t.string("log_level", problems).and_then(|s| match s {
        Some(s) => match tracing_subscriber::EnvFilter::try_new(&s.value) {
            Ok(_) => Ok(s.value),
            Err(e) => Err(problems.report(s.problem(format!(
                "{e}; use one of trace, debug, info, warn, error, off, or a directive like \"jellyfin_export_scheduler=debug\""
            )))),
        },
        None => Ok("info".to_owned()),
    });
    let listen = t.string("listen", problems).and_then(|l| match l {
        None => Ok(DEFAULT_LISTEN.parse().ok()),
        Some(l) if l.value.trim().is_empty() => Ok(None),
        Some(l) => match l.value.trim().parse::<std::net::SocketAddr>() {
            Ok(addr) => Ok(Some(addr)),
            Err(_) => Err(problems.report(l.problem(format!(
                "{:?} is not an address with a port, like \"127.0.0.1:9810\" or \"[::1]:9810\" (\"\" turns the endpoint off)",
                l.value
            )))),
        },
    });
    let max_concurrent_runs = t.positive_int("max_concurrent_runs", 100_000, problems);
    let shutdown_grace = t.duration("shutdown_grace", problems);
    let watch = read_watch(t, problems);
    Ok(DaemonConfig {
        state_dir: state_dir?,
        log_format: log_format?.unwrap_or(LogFormat::Text),
        log_level: log_level?,
        // At most 100 000, so it fits.
        max_concurrent_runs: max_concurrent_runs?.map_or(16, |n| n as usize),
        shutdown_grace: shutdown_grace?.unwrap_or(Duration::from_secs(30)),
        listen: listen?,
        watch: watch?,
    })
}

/// `watch_config`, `watch_debounce`, `watch_poll_interval`.
fn read_watch(t: &TableReader<'_>, problems: &mut Problems) -> Result<WatchConfig, Reported> {
    let mode = t.choice(
        "watch_config",
        &[
            ("auto", WatchMode::Auto),
            ("poll", WatchMode::Poll),
            ("off", WatchMode::Off),
        ],
        problems,
    );
    let debounce = t.nonzero_duration("watch_debounce", problems);
    let poll_interval = t.nonzero_duration("watch_poll_interval", problems);
    Ok(WatchConfig {
        mode: mode?.unwrap_or(WatchMode::Auto),
        debounce: debounce?.map_or(DEFAULT_WATCH_DEBOUNCE, |d| d.value),
        poll_interval: poll_interval?.map_or(DEFAULT_WATCH_POLL_INTERVAL, |d| d.value),
    })
}
