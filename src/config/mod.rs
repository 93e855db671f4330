//! The configuration file: TOML text → a validated [`Config`].
//!
//! Loading happens in two steps, as in ripgrep's argument handling: [`reader`] walks the
//! spanned TOML document and collects *every* problem (unknown keys, wrong types, bad
//! values) with the file, line, column and key path of each; this module then turns the raw
//! values into a [`Config`] whose schedules are compiled, URLs parsed, names unique and API
//! keys read. A `Config` that exists is valid: later code never re-checks it.
//!
//! Secrets (API keys, webhook URLs, ping URLs) are read only when asked for
//! ([`Secrets::Resolve`]): commands that contact no server load with [`Secrets::Skip`], so
//! that `history` works where the keys are not (outside the systemd unit, whose
//! `${CREDENTIALS_DIRECTORY}` only the service sees).
//!
//! What this module does not do: contact servers (that is the `check` command's promise),
//! or read the wall clock (due instants are `schedule`'s, with a clock passed in).

mod placeholder;
mod reader;

use crate::record::Outcome;
use crate::schedule::Schedule;
use crate::secret::{Secret, redacted};
use crate::timezone;
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
/// 10 000 servers is about 1 MiB, and toml's parsed document can cost up to ~80 times the
/// file's size (8 MiB of tiny values peaked at 640 MB), so an absurd file must be cut early.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Whether loading reads the secrets: API keys (`api_key*`), webhook URLs (`url*` of
/// `[[notify]]`) and `ping_url`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Read and validate every secret: what the commands that contact servers need.
    Resolve,
    /// Check only that each secret has exactly one source of the right type; read no key
    /// file or variable for it and leave every secret value alone (they are
    /// [`Secret::unresolved`]). For commands that read local state only.
    Skip,
}

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Whether the secrets were read ([`Secrets::Resolve`]) or not.
    pub secrets: Secrets,
    /// The SHA-256 of the file's bytes as parsed, in lowercase hex (what `sha256sum`
    /// prints): names exactly which version of the file a reload applied.
    pub digest: String,
    pub daemon: DaemonConfig,
    /// In file order.
    pub servers: Vec<ServerConfig>,
    /// `[[notify]]` webhook targets, in file order.
    pub notify: Vec<NotifyTarget>,
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

/// What a `[[notify]]` target wants to hear about: a run that ended with an outcome, or
/// the first `completed` run after one or more failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyOn {
    Outcome(Outcome),
    /// The first `completed` after failed, timed_out, lost, trigger_failed, aborted or
    /// interrupted runs (`skipped` and `cancelled` runs in between don't count either way).
    Recovered,
}

impl NotifyOn {
    /// `on`'s default: every kind of failure that needs a person, and the all-clear.
    pub const DEFAULT: [NotifyOn; 5] = [
        NotifyOn::Outcome(Outcome::Failed),
        NotifyOn::Outcome(Outcome::TimedOut),
        NotifyOn::Outcome(Outcome::Lost),
        NotifyOn::Outcome(Outcome::TriggerFailed),
        NotifyOn::Recovered,
    ];

    /// The spelling in `on` (an outcome's own, or `recovered`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Outcome(o) => o.as_str(),
            NotifyOn::Recovered => "recovered",
        }
    }

    fn parse(s: &str) -> Option<NotifyOn> {
        if s == "recovered" {
            return Some(NotifyOn::Recovered);
        }
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .map(NotifyOn::Outcome)
    }
}

impl fmt::Display for NotifyOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a notification is written for its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyFormat {
    /// `{"event": "run_finished", "on": ..., "summary": ..., "record": <the history record>}`.
    Json,
    /// ntfy: the summary as plain text, with `Title`, `Priority` and `Tags` headers.
    Ntfy,
    /// `{"text": summary}`: Slack and Mattermost incoming webhooks, Discord's `/slack` URL.
    Slack,
}

/// One `[[notify]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyTarget {
    /// The webhook URL: a capability (whoever has it may post), so it is a [`Secret`];
    /// validated as an http(s) URL with a host.
    pub url: Secret,
    /// What logs show of `url`: `scheme://host[:port] (path hidden)`.
    pub shown: String,
    /// In file order, without duplicates.
    pub on: Vec<NotifyOn>,
    /// Only these servers' runs; `None` = every server.
    pub servers: Option<Vec<String>>,
    pub format: NotifyFormat,
    /// One delivery attempt's limit (connect to the end of the answer).
    pub timeout: Duration,
    /// Attempts after the first before the notification is dropped.
    pub retries: u32,
}

impl NotifyTarget {
    /// Whether this target is about `server` at all.
    pub fn covers(&self, server: &str) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == server))
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
    /// A dead-man's-switch check (Healthchecks.io style) pinged at each run's start and
    /// end. A capability URL, hence a [`Secret`].
    pub ping_url: Option<Secret>,
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
            && self.ping_url == other.ping_url
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
            system_timezone: &timezone::system_timezone,
        }
    }
}

impl Config {
    /// Read, parse and validate the file at `path` with the process's environment,
    /// secrets included.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &LoadEnv::process())
    }

    /// [`load`](Self::load) without reading any secret ([`Secrets::Skip`]): for commands
    /// that contact no server.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::load_opts(path, &LoadEnv::process(), Secrets::Skip)
    }

    /// Load with the given environment, secrets included.
    pub fn load_with(path: &Path, env: &LoadEnv<'_>) -> Result<Config, ConfigError> {
        Config::load_opts(path, env, Secrets::Resolve)
    }

    pub fn load_opts(
        path: &Path,
        env: &LoadEnv<'_>,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        let text = Config::read_text(path)?;
        Config::from_text(&text, path, env, secrets)
    }

    /// The file's text, read with the bounds every load applies (at most
    /// [`MAX_CONFIG_BYTES`], UTF-8). With [`from_text`](Self::from_text), for a caller that
    /// needs the exact bytes it validated (the reload status names them by digest).
    pub fn read_text(path: &Path) -> Result<String, ConfigError> {
        read_bounded(path)
    }

    /// Validate text read from `path` and add the warnings a load gives (an inline key in
    /// a file others can read, a non-loopback endpoint).
    pub fn from_text(
        text: &str,
        path: &Path,
        env: &LoadEnv<'_>,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::parse_opts(text, path, env, secrets)?;
        if let Some(w) = inline_key_readable_warning(path, &config) {
            config.warnings.push(w);
        }
        let placeholders = placeholder::warnings(text, path, &config);
        config.warnings.extend(placeholders);
        if let Some(addr) = config.daemon.listen
            && !addr.ip().is_loopback()
        {
            config.warnings.push(format!(
                "{}: [daemon] listen = \"{addr}\" is not a loopback address: health, metrics and run status are readable from the network (nothing served can change anything or holds a key); in a container, publish the port on the host's loopback only (ports: \"127.0.0.1:{port}:{port}\")",
                path.display(),
                port = addr.port()
            ));
        }
        Ok(config)
    }

    /// Validate config text, secrets included. `path` names the file in messages and
    /// anchors relative `api_key_file` paths (relative to the config file's folder).
    pub fn parse(text: &str, path: &Path, env: &LoadEnv<'_>) -> Result<Config, ConfigError> {
        Config::parse_opts(text, path, env, Secrets::Resolve)
    }

    pub fn parse_opts(
        text: &str,
        path: &Path,
        env: &LoadEnv<'_>,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let load = Load { path, env, secrets };
        let config = build(text, &load, &mut problems);
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

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// What a load reads besides the text: where the file is (messages, relative paths), the
/// environment, and whether to read secrets.
struct Load<'a> {
    path: &'a Path,
    env: &'a LoadEnv<'a>,
    secrets: Secrets,
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

const TOP_KEYS: &[&str] = &["daemon", "defaults", "servers", "notify"];
const NOTIFY_KEYS: &[&str] = &[
    "url", "url_file", "url_env", "on", "servers", "format", "timeout", "retries",
];
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
/// Keys only a server may set: they identify one server (`ping_url` identifies one check
/// on the monitor, so sharing it would mix servers' pings).
const IDENTITY_KEYS: &[&str] = &[
    "name",
    "url",
    "api_key",
    "api_key_file",
    "api_key_env",
    "ping_url",
];

fn build(text: &str, load: &Load<'_>, problems: &mut Vec<Problem>) -> Option<Config> {
    let (path, env) = (load.path, load.env);
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
    // Every name the file gives, valid or not, so that `[[notify]] servers` is checked
    // against what the user wrote (an invalid server is reported once, at the server).
    let mut names_given: Vec<String> = Vec::new();
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
                if let Some(n) = table.get("name").and_then(|v| v.get_ref().as_str()) {
                    names_given.push(n.to_owned());
                }
                table.check_keys(&[SETTING_KEYS, IDENTITY_KEYS].concat(), &[], problems);
                if let Some(server) = read_server(table, &defaults, load, &mut schedules, problems)
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
    let mut notify = Vec::new();
    if let Some(list) = root.array_of_tables("notify", problems) {
        for table in &list {
            table.check_keys(NOTIFY_KEYS, &[], problems);
            if let Some(target) = read_notify(table, &names_given, load, problems) {
                notify.push(target);
            }
        }
    }
    Some(Config {
        path: path.to_owned(),
        secrets: load.secrets,
        digest: sha256_hex(text.as_bytes()),
        daemon: daemon?,
        servers,
        notify,
        warnings: Vec::new(),
    })
}

/// The state directory when the config sets no `state_dir`: systemd's `$STATE_DIRECTORY`
/// (StateDirectory=; the first when several), else [`DEFAULT_STATE_DIR`].
pub fn default_state_dir(env: &LoadEnv<'_>) -> PathBuf {
    (env.var)("STATE_DIRECTORY")
        .and_then(|v| v.split(':').next().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
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
        None => Some(default_state_dir(env)),
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
        timezone::parse_timezone(&s.value)
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
    load: &Load<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Vec<Problem>,
) -> Option<ServerConfig> {
    let own = read_settings(t, problems);
    let name = read_server_name(t, problems);
    let url = match t.string("url", problems) {
        Some(u) => parse_server_url(&u, problems),
        None => {
            if t.get("url").is_none() {
                problems.push(t.missing("url"));
            }
            None
        }
    };
    let api_key = read_api_key(t, load, problems);
    let ping_url = read_ping_url(t, load.secrets, problems);
    let (timezone, schedule) = read_schedule(t, &own, defaults, load.env, schedules, problems);
    let timings = read_timings(t, &own, defaults, problems);
    let task_key = pick(&own.task_key, &defaults.task_key)
        .map(|k| k.value)
        .unwrap_or_else(|| MIGRATOR_TASK_KEY.to_owned());

    let timings = timings?;
    let (api_key, api_key_source) = api_key?;
    Some(ServerConfig {
        name: name?,
        url: url?,
        api_key,
        api_key_source,
        schedule: schedule?,
        timezone: timezone?,
        enabled: plain(&own.enabled, &defaults.enabled, true).ok()?,
        task_key,
        poll_interval: timings.poll_interval,
        timeout: timings.timeout,
        request_timeout: timings.request_timeout,
        retries: u32::try_from(plain(&own.retries, &defaults.retries, 3).ok()?).ok()?,
        retry_backoff: timings.retry_backoff,
        jitter: timings.jitter,
        catch_up: plain(&own.catch_up, &defaults.catch_up, CatchUp::Last).ok()?,
        catch_up_window: timings.catch_up_window,
        if_running: plain(&own.if_running, &defaults.if_running, IfRunning::Skip).ok()?,
        history_limit: usize::try_from(
            plain(&own.history_limit, &defaults.history_limit, 1000).ok()?,
        )
        .ok()?,
        start_grace: timings.start_grace,
        verify_export: plain(&own.verify_export, &defaults.verify_export, true).ok()?,
        ping_url: ping_url.ok()?,
    })
}

fn read_server_name(t: &TableReader<'_>, problems: &mut Vec<Problem>) -> Option<String> {
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
    name
}

/// `ping_url`: an http(s) URL, a secret; with [`Secrets::Skip`] only its type is checked.
fn read_ping_url(
    t: &TableReader<'_>,
    secrets: Secrets,
    problems: &mut Vec<Problem>,
) -> Result<Option<Secret>, ()> {
    match t.string("ping_url", problems) {
        None => Ok(None),
        Some(_) if secrets == Secrets::Skip => Ok(Some(Secret::unresolved())),
        Some(u) => parse_secret_url(&u.value, &u, "the ping URL", problems)
            .map(|_| Some(Secret::new(u.value.trim())))
            .ok_or(()),
    }
}

/// The timezone and the compiled schedule.
fn read_schedule(
    t: &TableReader<'_>,
    own: &Settings,
    defaults: &Settings,
    env: &LoadEnv<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Vec<Problem>,
) -> (Option<Tz>, Option<Schedule>) {
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
    (timezone, schedule)
}

/// A server's durations, defaults applied.
struct Timings {
    poll_interval: Duration,
    timeout: Duration,
    request_timeout: Duration,
    retry_backoff: Duration,
    jitter: Duration,
    catch_up_window: Duration,
    start_grace: Duration,
}

fn read_timings(
    t: &TableReader<'_>,
    own: &Settings,
    defaults: &Settings,
    problems: &mut Vec<Problem>,
) -> Option<Timings> {
    type Setting = Option<Result<Located<Duration>, ()>>;
    let dur = |own: &Setting, def: &Setting, fallback: Duration| match pick(own, def) {
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
    Some(Timings {
        poll_interval: poll_interval.ok()?.0,
        timeout: timeout.ok()?.0,
        request_timeout: request_timeout.ok()?.0,
        retry_backoff: retry_backoff.ok()?.0,
        jitter: jitter.ok()?.0,
        catch_up_window: catch_up_window.ok()?.0,
        start_grace: start_grace.ok()?.0,
    })
}

fn read_notify(
    t: &TableReader<'_>,
    server_names: &[String],
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<NotifyTarget> {
    let url = read_webhook_url(t, load, problems);
    let on = read_notify_on(t, problems);
    let servers = read_notify_servers(t, server_names, problems);
    let format = t
        .choice(
            "format",
            &[
                ("json", NotifyFormat::Json),
                ("ntfy", NotifyFormat::Ntfy),
                ("slack", NotifyFormat::Slack),
            ],
            problems,
        )
        .unwrap_or(Ok(NotifyFormat::Json));
    let timeout = match t.located_duration("timeout", problems) {
        None => Ok(Duration::from_secs(10)),
        Some(Err(())) => Err(()),
        Some(Ok(d)) if d.value.is_zero() => {
            problems.push(d.problem("must be greater than zero".into()));
            Err(())
        }
        Some(Ok(d)) => Ok(d.value),
    };
    let retries = t.bounded_int("retries", 0, 100, problems).unwrap_or(Ok(3));

    let (url, shown) = url?;
    Some(NotifyTarget {
        url,
        shown,
        on: on.ok()?,
        servers: servers.ok()?,
        format: format.ok()?,
        timeout: timeout.ok()?,
        retries: u32::try_from(retries.ok()?).ok()?,
    })
}

/// The webhook URL and what may be shown of it.
fn read_webhook_url(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(Secret, String)> {
    let (raw, source, loc) = match read_secret_source(t, &WEBHOOK_URL_KEYS, load, problems)? {
        SecretRead::Value(raw, source, loc) => (raw, source, loc),
        SecretRead::NotRead(source) => {
            return Some((
                Secret::unresolved(),
                format!("the webhook URL from {} (not read)", url_origin(&source)),
            ));
        }
    };
    // A URL file usually ends with a newline; a URL never contains white space.
    let value = raw.trim();
    let from = url_origin(&source);
    if value.is_empty() {
        problems.push(loc.problem(format!("the webhook URL from {from} is empty")));
        return None;
    }
    let parsed = parse_secret_url(
        value,
        &loc,
        &format!("the webhook URL from {from}"),
        problems,
    )?;
    Some((Secret::new(value), redacted(&parsed)))
}

/// Where a webhook URL comes from, in words.
fn url_origin(source: &KeySource) -> String {
    match source {
        KeySource::Inline => "url".to_owned(),
        other => other.to_string(),
    }
}

fn read_notify_on(t: &TableReader<'_>, problems: &mut Vec<Problem>) -> Result<Vec<NotifyOn>, ()> {
    let list = match t.string_array("on", problems) {
        None => return Ok(NotifyOn::DEFAULT.to_vec()),
        Some(Err(())) => return Err(()),
        Some(Ok(list)) => list,
    };
    if list.value.is_empty() {
        problems.push(list.problem(
            "empty: this target would never be sent anything; list outcomes (or leave on out for the default), or remove the [[notify]] table".into(),
        ));
        return Err(());
    }
    let names: Vec<&str> = Outcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain(["recovered"])
        .collect();
    let mut out: Vec<NotifyOn> = Vec::new();
    let mut ok = true;
    for item in &list.value {
        match NotifyOn::parse(item.value.trim()) {
            Some(on) => {
                if !out.contains(&on) {
                    out.push(on);
                }
            }
            None => {
                ok = false;
                let hint = match reader::closest(&item.value, &names) {
                    Some(s) => format!("did you mean {s:?}?"),
                    None => format!("expected one of: {}", names.join(", ")),
                };
                problems.push(item.problem(format!(
                    "{:?} is not an outcome or \"recovered\"; {hint}",
                    item.value
                )));
            }
        }
    }
    if ok { Ok(out) } else { Err(()) }
}

fn read_notify_servers(
    t: &TableReader<'_>,
    server_names: &[String],
    problems: &mut Vec<Problem>,
) -> Result<Option<Vec<String>>, ()> {
    let list = match t.string_array("servers", problems) {
        None => return Ok(None),
        Some(Err(())) => return Err(()),
        Some(Ok(list)) => list,
    };
    if list.value.is_empty() {
        problems
            .push(list.problem("empty: leave servers out to be told about every server".into()));
        return Err(());
    }
    let known: Vec<&str> = server_names.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for item in &list.value {
        if known.contains(&item.value.as_str()) {
            if !out.contains(&item.value) {
                out.push(item.value.clone());
            }
            continue;
        }
        ok = false;
        let hint = match reader::closest(&item.value, &known) {
            Some(s) => format!("did you mean {s:?}?"),
            None => format!("servers in this file: {}", known.join(", ")),
        };
        problems.push(item.problem(format!(
            "no server named {:?} in this file; {hint}",
            item.value
        )));
    }
    if ok { Ok(Some(out)) } else { Err(()) }
}

/// An http(s) URL with a host, for a value that is a secret: messages describe it as
/// `what` and never quote it (a webhook's path is its password).
fn parse_secret_url<T>(
    value: &str,
    loc: &Located<T>,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<Url> {
    let url = match Url::parse(value.trim()) {
        Ok(url) => url,
        Err(e) => {
            problems.push(loc.problem(format!(
                "{what} is not a URL ({e}); write it like \"https://host/path\" (the value is not shown: it is a secret)"
            )));
            return None;
        }
    };
    if url.scheme() != "http" && url.scheme() != "https" {
        problems.push(loc.problem(format!(
            "{what} uses scheme {:?}; only http and https are supported",
            url.scheme()
        )));
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(loc.problem(format!("{what} has no host")));
        return None;
    }
    Some(url)
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

/// The three keys a secret may come from, and how messages name it.
struct SecretKeys {
    inline: &'static str,
    file: &'static str,
    env: &'static str,
    /// "API key", "webhook URL".
    noun: &'static str,
    /// Appended to the "none given" message.
    missing_hint: &'static str,
    /// "set it to ..." when the variable is unset.
    env_hint: &'static str,
}

const API_KEY_KEYS: SecretKeys = SecretKeys {
    inline: "api_key",
    file: "api_key_file",
    env: "api_key_env",
    noun: "API key",
    missing_hint: " (create a key in Jellyfin: Dashboard → API Keys)",
    env_hint: "the server's API key",
};

const WEBHOOK_URL_KEYS: SecretKeys = SecretKeys {
    inline: "url",
    file: "url_file",
    env: "url_env",
    noun: "webhook URL",
    missing_hint: " (the receiver's incoming-webhook or topic URL)",
    env_hint: "the webhook URL",
};

/// What [`read_secret_source`] found.
enum SecretRead {
    /// The raw text (not yet trimmed), where it came from, and where to point a problem.
    Value(String, KeySource, Located<String>),
    /// A valid source that was not read ([`Secrets::Skip`]). A file path is as written,
    /// `${VAR}` not expanded.
    NotRead(KeySource),
}

/// Exactly one of a secret's three sources: the inline value, a file (`${VAR}` expanded,
/// relative to the config file) or an environment variable. With [`Secrets::Skip`] the
/// source is checked but not read.
fn read_secret_source(
    t: &TableReader<'_>,
    keys: &SecretKeys,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<SecretRead> {
    let inline = t.string(keys.inline, problems);
    let file = t.string(keys.file, problems);
    let var = t.string(keys.env, problems);
    let any_given = inline.is_some() || file.is_some() || var.is_some();
    let present_keys: Vec<&str> = [keys.inline, keys.file, keys.env]
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    let one_of = format!("{}, {}, {}", keys.file, keys.env, keys.inline);
    if present_keys.len() > 1 {
        let loc = t.key_location(present_keys[1]);
        problems.push(loc.problem(format!(
            "more than one {} source ({}); give exactly one of {one_of}",
            keys.noun,
            present_keys.join(", ")
        )));
        return None;
    }
    if present_keys.is_empty() {
        problems.push(t.header_problem(
            keys.file,
            format!(
                "no {}: give exactly one of {one_of}{}",
                keys.noun, keys.missing_hint
            ),
        ));
        return None;
    }
    if !any_given {
        return None; // present but of the wrong type: already reported
    }
    if load.secrets == Secrets::Skip {
        return Some(SecretRead::NotRead(match (inline, file, var) {
            (Some(_), _, _) => KeySource::Inline,
            (_, Some(f), _) => KeySource::File(PathBuf::from(f.value)),
            (_, _, v) => KeySource::Env(v?.value),
        }));
    }
    if let Some(v) = inline {
        return Some(SecretRead::Value(v.value.clone(), KeySource::Inline, v));
    }
    if let Some(f) = file {
        return read_secret_file(f, keys, load, problems);
    }
    let v = var?;
    match (load.env.var)(&v.value) {
        Some(s) => Some(SecretRead::Value(s, KeySource::Env(v.value.clone()), v)),
        None => {
            problems.push(
                v.problem(format!(
                    "environment variable {} is not set; set it to {}",
                    v.value, keys.env_hint
                ))
                .secret_unavailable(),
            );
            None
        }
    }
}

/// A secret's `*_file`: `${VAR}` expanded, then read (bounded). A variable that is not set
/// or a file that cannot be read is a secret this environment cannot see.
fn read_secret_file(
    f: Located<String>,
    keys: &SecretKeys,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<SecretRead> {
    let before = problems.len();
    let Some(path) = expand_path(&f, load.path.parent(), load.env, problems) else {
        for p in &mut problems[before..] {
            p.unavailable_secret = true;
        }
        return None;
    };
    match read_key_file(&path) {
        Ok(Some(s)) => Some(SecretRead::Value(s, KeySource::File(path), f)),
        Ok(None) => {
            problems.push(f.problem(format!(
                "{} file {} is larger than {MAX_KEY_FILE_BYTES} bytes; is this the right file?",
                keys.noun,
                path.display()
            )));
            None
        }
        Err(e) => {
            problems.push(
                f.problem(format!(
                    "cannot read {} file {}: {e}; check that it exists and that this user may read it",
                    keys.noun,
                    path.display()
                ))
                .secret_unavailable(),
            );
            None
        }
    }
}

fn read_api_key(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(Secret, KeySource)> {
    let (raw, source, loc) = match read_secret_source(t, &API_KEY_KEYS, load, problems)? {
        SecretRead::Value(raw, source, loc) => (raw, source, loc),
        SecretRead::NotRead(source) => return Some((Secret::unresolved(), source)),
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
    // A FIFO would block the load forever and a device may never end: only files.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
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
