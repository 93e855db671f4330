//! What a loaded config is: [`Config`] and the values it holds. A value of these types is
//! valid (loading refuses the file otherwise), so later code never checks it again.

use crate::archive::ArchiveSettings;
use crate::record::Outcome;
use crate::schedule::Schedule;
use crate::secret::Secret;
use chrono_tz::Tz;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

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
    /// `api_token_file`'s token: when set, the endpoint answers everything but `/healthz`
    /// and `/readyz` only to requests that carry it.
    pub api_token: Option<Secret>,
    /// Where runs are claimed and recorded: files in `state_dir` (the default) or
    /// PostgreSQL, shared by several instances.
    pub backend: Backend,
    /// Whether and how the config file is watched for changes.
    pub watch: WatchConfig,
}

/// `watch_config` and its timings: how the running daemon notices an edited config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    pub mode: WatchMode,
    /// How long the file must stay unchanged after a change before it is read: a burst
    /// of writes (an editor's save, a copy) becomes one reload.
    pub debounce: Duration,
    /// How often `poll` looks at the file.
    pub poll_interval: Duration,
}

/// `watch_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Change events of the config's folder from the kernel (inotify); `poll` where they
    /// cannot be had.
    Auto,
    /// Look at the file's metadata and content every `watch_poll_interval`: for network
    /// file systems, whose changes made on another machine raise no event here.
    Poll,
    /// Reload only on SIGHUP (`reload`).
    Off,
}

impl WatchMode {
    /// The spelling in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchMode::Auto => "auto",
            WatchMode::Poll => "poll",
            WatchMode::Off => "off",
        }
    }
}

/// `[daemon] backend`.
#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    /// Lock files, in-flight markers and JSON Lines history in `state_dir`: one instance.
    Files,
    /// Leases, claims and history in PostgreSQL: several instances, one leader.
    Postgres(PostgresBackend),
}

/// `backend = "postgres"` and its keys.
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresBackend {
    /// The connection URL (it usually holds a password): never shown.
    pub url: Secret,
    /// Which key gave it; shown instead of it.
    pub url_source: KeySource,
    /// How long the leader's lease holds without renewal.
    pub lease_ttl: Duration,
    /// `instance_name`; `None` means the default, host:pid ([`PostgresBackend::instance`]).
    pub instance_name: Option<String>,
}

impl PostgresBackend {
    /// The name this instance holds leases and claims under: `instance_name`, or the
    /// host's name and this process's id.
    pub fn instance(&self) -> String {
        self.instance_name.clone().unwrap_or_else(|| {
            let uname = rustix::system::uname();
            format!(
                "{}:{}",
                uname.nodename().to_string_lossy(),
                std::process::id()
            )
        })
    }
}

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
    /// Where and how its verified exports are kept (`[archive]`, layered).
    pub archive: ArchiveSettings,
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
            && self.archive == other.archive
    }
}
