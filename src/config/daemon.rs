//! `[daemon]`: settings of the process as a whole.

use super::backend::read_backend;
use super::env::{Load, LoadEnv, expand_path};
use super::model::{DaemonConfig, LogFormat, WatchConfig, WatchMode};
use super::problem::{Problems, Reported};
use super::reader::TableReader;
use super::secret_source::{SecretRead, read_optional_secret_file};
use crate::secret::Secret;
use std::path::PathBuf;
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
    "api_token_file",
    "backend",
    "database_url",
    "database_url_file",
    "database_url_env",
    "lease_ttl",
    "instance_name",
    "watch_config",
    "watch_debounce",
    "watch_poll_interval",
];

/// The endpoint's API token: at least this long, so that guessing it is hopeless...
const MIN_TOKEN_LEN: usize = 16;
/// ...and at most this long, as it travels in a request header of at most 8 KiB.
const MAX_TOKEN_LEN: usize = 1024;

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
    load: &Load<'_>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Result<DaemonConfig, Reported> {
    let (config_path, env) = (load.path, load.env);
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
    let api_token = read_api_token(t, load, problems);
    let max_concurrent_runs = t.positive_int("max_concurrent_runs", 100_000, problems);
    let shutdown_grace = t.duration("shutdown_grace", problems);
    let backend = read_backend(t, load, problems, warnings);
    let watch = read_watch(t, problems);
    Ok(DaemonConfig {
        state_dir: state_dir?,
        log_format: log_format?.unwrap_or(LogFormat::Text),
        log_level: log_level?,
        // At most 100 000, so it fits.
        max_concurrent_runs: max_concurrent_runs?.map_or(16, |n| n as usize),
        shutdown_grace: shutdown_grace?.unwrap_or(Duration::from_secs(30)),
        listen: listen?,
        api_token: api_token?,
        backend: backend?,
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

/// `api_token_file`: the token `/metrics`, `/api/…` and the status page require, read like
/// an API key file (`${CREDENTIALS_DIRECTORY}` expanded, relative to the config's folder,
/// surrounding white space dropped). Messages name the file, never its content.
fn read_api_token(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<Option<Secret>, Reported> {
    let (raw, source, loc) =
        match read_optional_secret_file(t, "api_token_file", "API token", load, problems)? {
            None => return Ok(None),
            Some(SecretRead::NotRead(_)) => return Ok(Some(Secret::unresolved())),
            Some(SecretRead::Value(raw, source, loc)) => (raw, source, loc),
        };
    let token = raw.trim();
    let wrong = if token.is_empty() {
        Some("is empty".to_owned())
    } else if !token.bytes().all(is_token68) {
        Some("has characters a Bearer token cannot carry (spaces, quotes, control characters...): only letters, digits and - . _ ~ + / =".to_owned())
    } else if token.len() < MIN_TOKEN_LEN {
        Some(format!(
            "has {} characters; use at least {MIN_TOKEN_LEN}",
            token.len()
        ))
    } else if token.len() > MAX_TOKEN_LEN {
        Some(format!(
            "has {} characters; use at most {MAX_TOKEN_LEN}",
            token.len()
        ))
    } else {
        None
    };
    match wrong {
        Some(what) => Err(problems.report(loc.problem(format!(
            "the API token in {source} {what}; make one with `openssl rand -hex 32` (the value is not shown: it is a secret)"
        )))),
        None => Ok(Some(Secret::new(token))),
    }
}

/// The characters of an HTTP `token68` (RFC 9110 §11.2), what a Bearer token is made of.
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}
