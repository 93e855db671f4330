//! The configuration file: TOML text → a validated [`Config`].
//!
//! Loading happens in two steps, as in ripgrep's argument handling: [`reader`] walks the
//! spanned TOML document and collects *every* problem (unknown keys, wrong types, bad
//! values) with the file, line, column and key path of each; this module then turns the raw
//! values into a [`Config`] whose schedules are compiled, URLs parsed, names unique and API
//! keys read. A `Config` that exists is valid: later code never re-checks it.
//!
//! What this module does not do: contact servers (that is the `check` command's promise),
//! or read the wall clock (due instants are `schedule`'s, with a clock passed in).

mod reader;

use crate::schedule::{self, Schedule};
use crate::secret::Secret;
use chrono_tz::Tz;
use reader::{LineIndex, Located, TableReader};
pub use reader::{MAX_STRING_BYTES, Problem};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::{DeTable, DeValue};
use url::Url;

/// Where the config file is when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jellyfin-export-scheduler/config.toml";
/// Where state lives when neither the config nor systemd's `$STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/jellyfin-export-scheduler";
/// The Migrator plugin's export task.
pub const MIGRATOR_TASK_KEY: &str = "JellyfinMigratorExport";
/// Config files larger than this are refused before they are parsed: a real config for
/// 10 000 servers is about 2 MiB, and an absurd file must not cost unbounded memory.
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    /// In file order.
    pub servers: Vec<ServerConfig>,
    /// Things worth telling the user that do not stop the config from working.
    pub warnings: Vec<String>,
}

/// `[daemon]`: settings of the process as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub log_format: LogFormat,
    /// A tracing `EnvFilter` directive (`info`, `debug`, `jellyfin_export_scheduler=debug`).
    pub log_level: String,
    pub max_concurrent_runs: usize,
    pub shutdown_grace: Duration,
    /// Where the read-only HTTP endpoint (health, metrics, status) listens; `None` = off.
    pub listen: Option<std::net::SocketAddr>,
}

/// The HTTP endpoint's address when the config does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// After downtime, whether to run a missed export once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    None,
    Last,
}

/// What to do when the task is already running on the server when a run is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfRunning {
    /// Record `skipped` and leave the running task alone.
    Skip,
    /// Track the run that is already going as this run.
    Follow,
}

/// Where a server's API key came from; shown instead of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
    Inline,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "file {}", p.display()),
            KeySource::Env(v) => write!(f, "environment variable {v}"),
            KeySource::Inline => f.write_str("inline api_key"),
        }
    }
}

/// One `[[servers]]` entry with `[defaults]` and built-in defaults applied.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    /// The server's base URL, always ending in `/` so that joining keeps a base path.
    pub url: Url,
    pub api_key: Secret,
    pub api_key_source: KeySource,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub enabled: bool,
    pub task_key: String,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub jitter: Duration,
    pub catch_up: CatchUp,
    pub catch_up_window: Duration,
    pub if_running: IfRunning,
    pub history_limit: usize,
    /// How long the task may stay Idle with its old result after our start before the run
    /// counts as `lost` (Jellyfin starts tasks asynchronously).
    pub start_grace: Duration,
    /// Check the Migrator plugin's `LastExportUtc`/`LastExportLog` after a `Completed` run.
    pub verify_export: bool,
}

impl ServerConfig {
    /// True when this server's settings differ in a way a running daemon must act on.
    /// `Schedule` has no `PartialEq`, so it is compared by expression and zone.
    pub fn same_settings(&self, other: &ServerConfig) -> bool {
        self.name == other.name
            && self.url == other.url
            && self.api_key == other.api_key
            && self.schedule.expr() == other.schedule.expr()
            && self.timezone == other.timezone
            && self.enabled == other.enabled
            && self.task_key == other.task_key
            && self.poll_interval == other.poll_interval
            && self.timeout == other.timeout
            && self.request_timeout == other.request_timeout
            && self.retries == other.retries
            && self.retry_backoff == other.retry_backoff
            && self.jitter == other.jitter
            && self.catch_up == other.catch_up
            && self.catch_up_window == other.catch_up_window
            && self.if_running == other.if_running
            && self.history_limit == other.history_limit
            && self.start_grace == other.start_grace
            && self.verify_export == other.verify_export
    }
}

/// Why a config could not be loaded. `Display` prints one line per problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{path}: cannot read the config file: {source}; check the path given with --config and its permissions"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the config file is {size} bytes, more than the {max} bytes a config may have; is this the right file?"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Each problem as its own line (`FILE:LINE:COL: key.path: what is wrong`).
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_owned).collect()
    }
}

/// At most this many problems are printed: enough to fix a real file in one go, while a
/// file of a million broken lines does not turn into hundreds of megabytes of messages.
pub const MAX_SHOWN_PROBLEMS: usize = 100;

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(MAX_SHOWN_PROBLEMS)
        .map(|p| p.render(path))
        .collect();
    if problems.len() > MAX_SHOWN_PROBLEMS {
        lines.push(format!(
            "{}: {} more problems not shown (the first {MAX_SHOWN_PROBLEMS} are above)",
            path.display(),
            problems.len() - MAX_SHOWN_PROBLEMS
        ));
    }
    lines.join("\n")
}

/// What loading may read besides the file: environment variables (for `api_key_env`,
/// `$TZ`, `$STATE_DIRECTORY`, `${CREDENTIALS_DIRECTORY}` in paths) and the system's
/// timezone. Tests pass their own; [`Config::load`] uses the process's.
pub struct LoadEnv<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub system_timezone: &'a dyn Fn() -> Tz,
}

impl LoadEnv<'static> {
    pub fn process() -> LoadEnv<'static> {
        LoadEnv {
            var: &|name| std::env::var(name).ok(),
            system_timezone: &schedule::system_timezone,
        }
    }
}

impl Config {
    /// Read, parse and validate the file at `path` with the process's environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &LoadEnv::process())
    }

    pub fn load_with(path: &Path, env: &LoadEnv<'_>) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        let mut config = Config::parse(&text, path, env)?;
        if let Some(w) = inline_key_readable_warning(path, &config) {
            config.warnings.push(w);
        }
        if let Some(addr) = config.daemon.listen
            && !addr.ip().is_loopback()
        {
            config.warnings.push(format!(
                "{}: [daemon] listen = \"{addr}\" is not a loopback address: health, metrics and run status are readable from the network (nothing served can change anything or holds a key)",
                path.display()
            ));
        }
        Ok(config)
    }

    /// Validate config text. `path` names the file in messages and anchors relative
    /// `api_key_file` paths (relative to the config file's folder).
    pub fn parse(text: &str, path: &Path, env: &LoadEnv<'_>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let config = build(text, path, env, &mut problems);
        problems.sort_by_key(|p| p.offset);
        problems.dedup();
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size,
            max: MAX_CONFIG_BYTES,
        });
    }
    let mut text = String::new();
    // take() also bounds a file that grows (or a FIFO that never ends) while we read.
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            read_err(std::io::Error::new(
                e.kind(),
                format!("{e} (the file must be UTF-8 text)"),
            ))
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: text.len() as u64,
            max: MAX_CONFIG_BYTES,
        });
    }
    Ok(text)
}

/// An inline `api_key` in a file that group or others can read is a leak waiting to
/// happen; it still works, so this is a warning.
fn inline_key_readable_warning(path: &Path, config: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let inline: Vec<&str> = config
        .servers
        .iter()
        .filter(|s| s.api_key_source == KeySource::Inline)
        .map(|s| s.name.as_str())
        .collect();
    if inline.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{}: api_key is written inline for {} and the file is readable by other users (mode {:o}); \
             run `chmod 600 {}` or move the key to api_key_file / api_key_env",
            path.display(),
            inline.join(", "),
            mode & 0o777,
            path.display()
        )
    })
}

const TOP_KEYS: &[&str] = &["daemon", "defaults", "servers"];
const DAEMON_KEYS: &[&str] = &[
    "listen",
    "state_dir",
    "log_format",
    "log_level",
    "max_concurrent_runs",
    "shutdown_grace",
];
/// Keys a server may set itself or inherit from `[defaults]`.
const SETTING_KEYS: &[&str] = &[
    "schedule",
    "enabled",
    "timezone",
    "task_key",
    "poll_interval",
    "timeout",
    "request_timeout",
    "retries",
    "retry_backoff",
    "jitter",
    "catch_up",
    "catch_up_window",
    "if_running",
    "history_limit",
    "start_grace",
    "verify_export",
];
/// Keys only a server may set: they identify one server.
const IDENTITY_KEYS: &[&str] = &["name", "url", "api_key", "api_key_file", "api_key_env"];

fn build(
    text: &str,
    path: &Path,
    env: &LoadEnv<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let idx = LineIndex::new(text);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim();
            problems.push(idx.problem(offset, "", format!("invalid TOML: {message}")));
            return None;
        }
    };
    let root = TableReader::root(&idx, doc.get_ref());
    root.check_keys(TOP_KEYS, &[], problems);

    let daemon = match root.table("daemon", problems) {
        Some(t) => read_daemon(&t, path, env, problems),
        None => read_daemon(&TableReader::empty(&idx, "daemon"), path, env, problems),
    };
    let defaults = match root.table("defaults", problems) {
        Some(t) => {
            t.check_keys(
                SETTING_KEYS,
                &[(IDENTITY_KEYS, "identifies one server and cannot be a default; set it in each [[servers]] entry")],
                problems,
            );
            read_settings(&t, problems)
        }
        None => Settings::default(),
    };
    let mut servers = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Fleets share a few expressions; compiling each once keeps a 10 000-server config fast.
    let mut schedules = ScheduleCache::new();
    match root.array_of_tables("servers", problems) {
        None => problems.push(idx.problem(
            text.len(),
            "servers",
            "no [[servers]] entries; add at least one server (see config/example.toml)".into(),
        )),
        Some(list) if list.is_empty() => problems.push(idx.problem(
            text.len(),
            "servers",
            "no [[servers]] entries; add at least one server (see config/example.toml)".into(),
        )),
        Some(list) => {
            for (i, table) in list.iter().enumerate() {
                table.check_keys(&[SETTING_KEYS, IDENTITY_KEYS].concat(), &[], problems);
                if let Some(server) =
                    read_server(table, &defaults, path, env, &mut schedules, problems)
                {
                    if let Some(first) = seen.get(&server.name) {
                        let loc = table.key_location("name");
                        problems.push(loc.problem(format!(
                            "duplicate server name {:?} (also servers[{first}]); names must be unique",
                            server.name
                        )));
                    } else {
                        seen.insert(server.name.clone(), i);
                    }
                    servers.push(server);
                }
            }
        }
    }
    Some(Config {
        path: path.to_owned(),
        daemon: daemon?,
        servers,
        warnings: Vec::new(),
    })
}

fn read_daemon(
    t: &TableReader<'_>,
    config_path: &Path,
    env: &LoadEnv<'_>,
    problems: &mut Vec<Problem>,
) -> Option<DaemonConfig> {
    t.check_keys(DAEMON_KEYS, &[], problems);
    let state_dir = match t.string("state_dir", problems) {
        Some(s) if s.value.trim().is_empty() => {
            problems.push(s.problem("must not be empty".into()));
            None
        }
        Some(s) => Some(expand_path(&s, config_path.parent(), env, problems)?),
        // systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
        None => Some(
            (env.var)("STATE_DIRECTORY")
                .and_then(|v| v.split(':').next().map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        ),
    };
    let log_format = t.choice(
        "log_format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        problems,
    );
    let log_level = match t.string("log_level", problems) {
        Some(s) => match tracing_subscriber::EnvFilter::try_new(&s.value) {
            Ok(_) => Some(s.value),
            Err(e) => {
                problems.push(s.problem(format!(
                    "{e}; use one of trace, debug, info, warn, error, off, or a directive like \"jellyfin_export_scheduler=debug\""
                )));
                None
            }
        },
        None => Some("info".to_owned()),
    };
    let listen = match t.string("listen", problems) {
        None => Some(DEFAULT_LISTEN.parse().ok()),
        Some(l) if l.value.trim().is_empty() => Some(None),
        Some(l) => match l.value.trim().parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(Some(addr)),
            Err(_) => {
                problems.push(l.problem(format!(
                    "{:?} is not an address with a port, like \"127.0.0.1:9810\" or \"[::1]:9810\" (\"\" turns the endpoint off)",
                    l.value
                )));
                None
            }
        },
    };
    let max_concurrent_runs = t.positive_int("max_concurrent_runs", 100_000, problems);
    let shutdown_grace = t.duration("shutdown_grace", problems);
    Some(DaemonConfig {
        state_dir: state_dir?,
        log_format: log_format.unwrap_or(Ok(LogFormat::Text)).ok()?,
        log_level: log_level?,
        max_concurrent_runs: max_concurrent_runs
            .unwrap_or(Ok(16))
            .ok()?
            .try_into()
            .ok()?,
        shutdown_grace: shutdown_grace.unwrap_or(Ok(Duration::from_secs(30))).ok()?,
        listen: listen?,
    })
}

/// The per-server settings as read from one table; `None` where the table is silent,
/// `Some(Err(()))` where it said something invalid (already reported).
#[derive(Clone, Default)]
struct Settings {
    schedule: Option<Located<String>>,
    enabled: Option<Result<bool, ()>>,
    timezone: Option<Result<Located<Tz>, ()>>,
    task_key: Option<Located<String>>,
    poll_interval: Option<Result<Located<Duration>, ()>>,
    timeout: Option<Result<Located<Duration>, ()>>,
    request_timeout: Option<Result<Located<Duration>, ()>>,
    retries: Option<Result<u64, ()>>,
    retry_backoff: Option<Result<Located<Duration>, ()>>,
    jitter: Option<Result<Located<Duration>, ()>>,
    catch_up: Option<Result<CatchUp, ()>>,
    catch_up_window: Option<Result<Located<Duration>, ()>>,
    if_running: Option<Result<IfRunning, ()>>,
    history_limit: Option<Result<u64, ()>>,
    start_grace: Option<Result<Located<Duration>, ()>>,
    verify_export: Option<Result<bool, ()>>,
}

fn read_settings(t: &TableReader<'_>, problems: &mut Vec<Problem>) -> Settings {
    let nonzero = |d: Option<Result<Located<Duration>, ()>>, problems: &mut Vec<Problem>| {
        d.map(|r| {
            r.and_then(|d| {
                if d.value.is_zero() {
                    problems.push(d.problem("must be greater than zero".into()));
                    Err(())
                } else {
                    Ok(d)
                }
            })
        })
    };
    let timezone = t.string("timezone", problems).map(|s| {
        schedule::parse_timezone(&s.value)
            .map(|tz| s.with(tz))
            .map_err(|e| {
                problems.push(s.problem(e));
            })
    });
    let task_key = t.string("task_key", problems).and_then(|s| {
        if s.value.trim().is_empty() {
            problems.push(s.problem("must not be empty".into()));
            None
        } else {
            Some(s)
        }
    });
    Settings {
        schedule: t.string("schedule", problems),
        enabled: t.bool("enabled", problems),
        timezone,
        task_key,
        poll_interval: nonzero(t.located_duration("poll_interval", problems), problems),
        timeout: nonzero(t.located_duration("timeout", problems), problems),
        request_timeout: nonzero(t.located_duration("request_timeout", problems), problems),
        retries: t.bounded_int("retries", 0, 100, problems),
        retry_backoff: t.located_duration("retry_backoff", problems),
        jitter: t.located_duration("jitter", problems),
        catch_up: t.choice(
            "catch_up",
            &[("none", CatchUp::None), ("last", CatchUp::Last)],
            problems,
        ),
        catch_up_window: nonzero(t.located_duration("catch_up_window", problems), problems),
        if_running: t.choice(
            "if_running",
            &[("skip", IfRunning::Skip), ("follow", IfRunning::Follow)],
            problems,
        ),
        history_limit: t.bounded_int("history_limit", 1, 10_000_000, problems),
        start_grace: nonzero(t.located_duration("start_grace", problems), problems),
        verify_export: t.bool("verify_export", problems),
    }
}

/// The server's own value, else the `[defaults]` one, else `fallback`; `Err` when the
/// chosen table said something invalid (already reported).
fn plain<T: Clone>(
    own: &Option<Result<T, ()>>,
    default: &Option<Result<T, ()>>,
    fallback: T,
) -> Result<T, ()> {
    pick(own, default).unwrap_or(Ok(fallback))
}

/// The server's own value if it set one, else the `[defaults]` one.
fn pick<T: Clone>(own: &Option<T>, default: &Option<T>) -> Option<T> {
    own.clone().or_else(|| default.clone())
}

type ScheduleCache = HashMap<(String, Tz), Result<Schedule, String>>;

fn read_server(
    t: &TableReader<'_>,
    defaults: &Settings,
    config_path: &Path,
    env: &LoadEnv<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Vec<Problem>,
) -> Option<ServerConfig> {
    let own = read_settings(t, problems);

    let name = t.string("name", problems).and_then(|n| {
        if valid_server_name(&n.value) {
            Some(n.value)
        } else {
            problems.push(n.problem(format!(
                "{:?} is not a valid server name: use lowercase letters, digits, '-' and '_', starting with a letter or digit (it is used in file names and metric labels)",
                n.value
            )));
            None
        }
    });
    if t.get("name").is_none() {
        problems.push(t.missing("name"));
    }

    let url = match t.string("url", problems) {
        Some(u) => parse_server_url(&u, problems),
        None => {
            if t.get("url").is_none() {
                problems.push(t.missing("url"));
            }
            None
        }
    };

    let api_key = read_api_key(t, config_path, env, problems);

    let timezone = match pick(&own.timezone, &defaults.timezone) {
        Some(Ok(tz)) => Some(tz.value),
        Some(Err(())) => None,
        None => Some((env.system_timezone)()),
    };
    let schedule_src = pick(&own.schedule, &defaults.schedule);
    if schedule_src.is_none() {
        problems.push(t.missing("schedule"));
    }
    // Parse the expression even when the zone is invalid (with UTC), so that both
    // problems are reported in one go.
    let schedule = schedule_src.and_then(|expr| {
        let tz = timezone.unwrap_or(chrono_tz::UTC);
        let compiled = schedules
            .entry((expr.value.clone(), tz))
            .or_insert_with(|| Schedule::parse(&expr.value, tz).map_err(|e| e.to_string()));
        match compiled {
            Ok(s) => timezone.map(|_| s.clone()),
            Err(e) => {
                problems
                    .push(expr.problem(format!("invalid cron expression {:?}: {e}", expr.value)));
                None
            }
        }
    });
    let dur = |own: &Option<Result<Located<Duration>, ()>>,
               def: &Option<Result<Located<Duration>, ()>>,
               fallback: Duration| match pick(own, def) {
        Some(Ok(d)) => Ok((d.value, Some(d))),
        Some(Err(())) => Err(()),
        None => Ok((fallback, None)),
    };

    let poll_interval = dur(
        &own.poll_interval,
        &defaults.poll_interval,
        Duration::from_secs(5),
    );
    let timeout = dur(
        &own.timeout,
        &defaults.timeout,
        Duration::from_secs(6 * 3600),
    );
    if let (Ok((poll, _)), Ok((limit, loc))) = (&poll_interval, &timeout)
        && limit < poll
    {
        let msg = format!(
            "timeout ({}) is shorter than poll_interval ({}); a run could never be seen to finish",
            humantime::format_duration(*limit),
            humantime::format_duration(*poll)
        );
        match loc {
            Some(loc) => problems.push(loc.problem(msg)),
            None => problems.push(t.key_location("poll_interval").problem(msg)),
        }
    }
    let request_timeout = dur(
        &own.request_timeout,
        &defaults.request_timeout,
        Duration::from_secs(30),
    );
    let retry_backoff = dur(
        &own.retry_backoff,
        &defaults.retry_backoff,
        Duration::from_secs(30),
    );
    let jitter = dur(&own.jitter, &defaults.jitter, Duration::ZERO);
    let catch_up_window = dur(
        &own.catch_up_window,
        &defaults.catch_up_window,
        Duration::from_secs(24 * 3600),
    );
    let start_grace = dur(
        &own.start_grace,
        &defaults.start_grace,
        Duration::from_secs(60),
    );

    let task_key = pick(&own.task_key, &defaults.task_key)
        .map(|k| k.value)
        .unwrap_or_else(|| MIGRATOR_TASK_KEY.to_owned());

    Some(ServerConfig {
        name: name?,
        url: url?,
        api_key: api_key.as_ref()?.0.clone(),
        api_key_source: api_key?.1,
        schedule: schedule?,
        timezone: timezone?,
        enabled: plain(&own.enabled, &defaults.enabled, true).ok()?,
        task_key,
        poll_interval: poll_interval.ok()?.0,
        timeout: timeout.ok()?.0,
        request_timeout: request_timeout.ok()?.0,
        retries: u32::try_from(plain(&own.retries, &defaults.retries, 3).ok()?).ok()?,
        retry_backoff: retry_backoff.ok()?.0,
        jitter: jitter.ok()?.0,
        catch_up: plain(&own.catch_up, &defaults.catch_up, CatchUp::Last).ok()?,
        catch_up_window: catch_up_window.ok()?.0,
        if_running: plain(&own.if_running, &defaults.if_running, IfRunning::Skip).ok()?,
        history_limit: usize::try_from(
            plain(&own.history_limit, &defaults.history_limit, 1000).ok()?,
        )
        .ok()?,
        start_grace: start_grace.ok()?.0,
        verify_export: plain(&own.verify_export, &defaults.verify_export, true).ok()?,
    })
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters: safe in file names and metric labels.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

fn parse_server_url(u: &Located<String>, problems: &mut Vec<Problem>) -> Option<Url> {
    if !u.value.contains("://") {
        problems.push(u.problem(format!(
            "{:?} must start with http:// or https://, e.g. \"http://{}\"",
            u.value,
            u.value.trim()
        )));
        return None;
    }
    let mut url = match Url::parse(u.value.trim()) {
        Ok(url) => url,
        Err(e) => {
            problems.push(u.problem(format!(
                "{:?} is not a URL ({e}); write it like \"http://jellyfin.lan:8096\" or \"https://host/jellyfin\"",
                u.value
            )));
            return None;
        }
    };
    if url.scheme() != "http" && url.scheme() != "https" {
        problems.push(u.problem(format!(
            "{:?} uses scheme {:?}; only http and https are supported",
            u.value,
            url.scheme()
        )));
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(u.problem(format!("{:?} has no host", u.value)));
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(u.problem(
            "must not carry a user name or password; the API key is given with api_key_file, api_key_env or api_key".into(),
        ));
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push(u.problem(format!(
            "{:?} must not have a query or fragment (a key in a URL leaks into logs); give only the server's base URL",
            u.value
        )));
        return None;
    }
    // A trailing slash makes Url::join keep the base path (`/jellyfin/` + `System/Ping`).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

fn read_api_key(
    t: &TableReader<'_>,
    config_path: &Path,
    env: &LoadEnv<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(Secret, KeySource)> {
    let inline = t.string("api_key", problems);
    let file = t.string("api_key_file", problems);
    let var = t.string("api_key_env", problems);
    let given: Vec<&str> = [
        ("api_key", &inline),
        ("api_key_file", &file),
        ("api_key_env", &var),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| *k)
    .collect();
    let present_keys: Vec<&str> = ["api_key", "api_key_file", "api_key_env"]
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    if present_keys.len() > 1 {
        let loc = t.key_location(present_keys[1]);
        problems.push(loc.problem(format!(
            "more than one API key source ({}); give exactly one of api_key_file, api_key_env, api_key",
            present_keys.join(", ")
        )));
        return None;
    }
    if present_keys.is_empty() {
        problems.push(t.header_problem(
            "api_key_file",
            "no API key: give exactly one of api_key_file, api_key_env, api_key (create a key in Jellyfin: Dashboard → API Keys)".into(),
        ));
        return None;
    }
    if given.is_empty() {
        return None; // present but of the wrong type: already reported
    }
    let (raw, source, loc) = if let Some(v) = inline {
        (v.value.clone(), KeySource::Inline, v)
    } else if let Some(f) = file {
        let path = expand_path(&f, config_path.parent(), env, problems)?;
        match read_key_file(&path) {
            Ok(Some(s)) => (s, KeySource::File(path), f),
            Ok(None) => {
                problems.push(f.problem(format!(
                    "API key file {} is larger than {MAX_KEY_FILE_BYTES} bytes; a Jellyfin API key is 32 hex digits",
                    path.display()
                )));
                return None;
            }
            Err(e) => {
                problems.push(f.problem(format!(
                    "cannot read API key file {}: {e}; check that it exists and that this user may read it",
                    path.display()
                )));
                return None;
            }
        }
    } else {
        let v = var?;
        match (env.var)(&v.value) {
            Some(s) => (s, KeySource::Env(v.value.clone()), v),
            None => {
                problems.push(v.problem(format!(
                    "environment variable {} is not set; set it to the server's API key",
                    v.value
                )));
                return None;
            }
        }
    };
    // Key files usually end with a newline; a key never contains white space.
    let key = raw.trim();
    if key.is_empty() {
        problems.push(loc.problem(format!("the API key from {source} is empty")));
        return None;
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        problems.push(loc.problem(format!(
            "the API key from {source} contains spaces, quotes or control characters; a Jellyfin API key is 32 hex digits"
        )));
        return None;
    }
    Some((Secret::new(key), source))
}

/// The largest API key file read. A key is 32 hex digits; the bound keeps a mistaken
/// `api_key_file = "/dev/zero"` (or a huge file) from reading until memory runs out.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The file's text, or `None` when it is longer than [`MAX_KEY_FILE_BYTES`].
fn read_key_file(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    Ok((text.len() as u64 <= MAX_KEY_FILE_BYTES).then_some(text))
}

/// Expand `${VAR}` / `$VAR` (for systemd's `${CREDENTIALS_DIRECTORY}`) and make a relative
/// path relative to `base` (the config file's folder).
fn expand_path(
    s: &Located<String>,
    base: Option<&Path>,
    env: &LoadEnv<'_>,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    let mut out = String::new();
    let mut rest = s.value.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => (&body[..end], end + 2),
                None => {
                    problems.push(s.problem(format!("unclosed \"${{\" in path {:?}", s.value)));
                    return None;
                }
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match (env.var)(name) {
            Some(v) => out.push_str(&v),
            None => {
                let hint = if name == "CREDENTIALS_DIRECTORY" {
                    " (systemd sets it when the unit has LoadCredential=; outside systemd, write the path itself)"
                } else {
                    ""
                };
                problems.push(s.problem(format!(
                    "path {:?} uses ${name}, which is not set{hint}",
                    s.value
                )));
                return None;
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    let path = PathBuf::from(out);
    Some(match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    })
}

/// A `DeValue`'s type in words, for "expected a string, found an integer".
fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests;
