//! The configuration file: TOML text → a validated [`Config`].
//!
//! Loading happens in two steps, as in ripgrep's argument handling. First each section's
//! reader walks its part of the spanned TOML document and records *every* problem
//! (unknown keys, wrong types, bad values) with the file, line, column and key path of
//! each, and goes on: a read that fails returns `Err(Reported)`, which only recording a
//! problem makes, so nothing fails without saying why. Then the values that were read
//! become a [`Config`] whose schedules are compiled, URLs parsed, names unique and API
//! keys read; if anything was reported, the load is a [`ConfigError`] holding the
//! problems as data, and the caller prints them. A `Config` that exists is valid: later
//! code never re-checks it.
//!
//! Secrets (API keys, webhook URLs, ping URLs) are read only when asked for
//! ([`Secrets::Resolve`]): commands that contact no server load with [`Secrets::Skip`], so
//! that `history` works where the keys are not (outside the systemd unit, whose
//! `${CREDENTIALS_DIRECTORY}` only the service sees).
//!
//! What this module does not do: contact servers (that is the `check` command's promise),
//! or read the wall clock (due instants are `schedule`'s, with a clock passed in).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | this one | loading: read the file, walk the document, [`ConfigError`] |
//! | `model` | the validated values: [`Config`], [`ServerConfig`], [`NotifyTarget`]… |
//! | `backend` | `[daemon] backend` and the PostgreSQL keys (the database URL is a secret) |
//! | `daemon`, `server`, `notify` | reading `[daemon]`, `[[servers]]` and `[defaults]`, `[[notify]]`; each section's table of keys |
//! | `archive` | `[archive]` and the `archive` tables of `[defaults]` and servers, layered |
//! | `settings` | the keys a server may inherit from `[defaults]`: one table, with each key's kind |
//! | `secret_source` | a secret's one source (inline, file or variable), read only when asked |
//! | `env` | what a load reads besides the text: variables, the system's zone, `${VAR}` paths |
//! | `reader` | typed values out of the spanned TOML: absent, a value, or reported |
//! | `problem` | what is wrong and where: [`Problem`]s, collected with their place |
//! | `placeholder` | warnings for values a copied example still holds |

mod archive;
mod backend;
mod daemon;
mod env;
mod model;
mod notify;
mod placeholder;
mod problem;
mod reader;
mod secret_source;
mod server;
mod settings;

pub use crate::digest::sha256_hex;
pub use backend::{DEFAULT_LEASE_TTL, check_database_url};
pub use daemon::{
    DEFAULT_LISTEN, DEFAULT_STATE_DIR, DEFAULT_WATCH_DEBOUNCE, DEFAULT_WATCH_POLL_INTERVAL,
    default_state_dir,
};
pub use env::LoadEnv;
pub use model::{
    Backend, CatchUp, Config, DaemonConfig, IfRunning, KeySource, LogFormat, NotifyFormat,
    NotifyOn, NotifyTarget, PostgresBackend, Secrets, ServerConfig, WatchConfig, WatchMode,
};
pub use problem::Problem;
pub use reader::MAX_STRING_BYTES;
pub use server::{MIGRATOR_TASK_KEY, valid_server_name};

use daemon::read_daemon;
use env::Load;
use notify::read_notify;
use problem::{LineIndex, Problems, Reported};
use reader::TableReader;
use server::{read_defaults, read_servers};
use std::path::{Path, PathBuf};
use toml::de::DeTable;

/// Where the config file is when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jellyfin-export-scheduler/config.toml";

/// Config files larger than this are refused before they are parsed: a real config for
/// 10 000 servers is about 1 MiB, and toml's parsed document can cost up to ~80 times the
/// file's size (8 MiB of tiny values peaked at 640 MB), so an absurd file must be cut early.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

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
        config.warnings.extend(unarchived_warnings(path, &config));
        if let Some(w) = endpoint_warning(path, &config.daemon) {
            config.warnings.push(w);
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
        let mut problems = Problems::default();
        let load = Load { path, env, secrets };
        match build(text, &load, &mut problems) {
            // A server or target that could not be read is left out of the Config, so a
            // Config is only good when nothing at all was reported.
            Ok(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: problems.into_sorted(),
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

/// Archiving is on for a server whose exports are not verified: the archive keeps only
/// verified exports, so its runs are not archived. Worth saying, not refusing (archiving
/// is on by default, and `verify_export = false` was a valid choice before it).
fn unarchived_warnings(path: &Path, config: &Config) -> Vec<String> {
    config
        .servers
        .iter()
        .filter(|s| s.archive.enabled && !s.verify_export && s.task_key == MIGRATOR_TASK_KEY)
        .map(|s| {
            format!(
                "{}: server {}: verify_export = false, so its exports are not archived (only verified exports are); set verify_export = true, or archive = {{ enabled = false }} to say so",
                path.display(),
                s.name
            )
        })
        .collect()
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

/// An endpoint open to the network without a token, or a token for no endpoint: both
/// work, and both are probably not what was meant.
fn endpoint_warning(path: &Path, daemon: &DaemonConfig) -> Option<String> {
    match (daemon.listen, &daemon.api_token) {
        (Some(addr), None) if !addr.ip().is_loopback() => Some(format!(
            "{}: [daemon] listen = \"{addr}\" is not a loopback address and no api_token_file is set: the status page, metrics and the API are readable by anyone who can reach the port (nothing served can change anything or holds a key); set api_token_file, or in a container publish the port on the host's loopback only (ports: \"127.0.0.1:{port}:{port}\")",
            path.display(),
            port = addr.port()
        )),
        (None, Some(_)) => Some(format!(
            "{}: [daemon] api_token_file is set but listen = \"\" turns the endpoint off, so the token guards nothing",
            path.display()
        )),
        _ => None,
    }
}

const TOP_KEYS: &[&str] = &["daemon", "defaults", "servers", "notify", "archive"];

fn build(text: &str, load: &Load<'_>, problems: &mut Problems) -> Result<Config, Reported> {
    let path = load.path;
    let idx = LineIndex::new(text);
    let doc = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = e.message().lines().next().unwrap_or("invalid TOML").trim();
        problems.report(idx.problem(offset, "", format!("invalid TOML: {message}")))
    })?;
    let root = TableReader::root(&idx, doc.get_ref());
    root.check_keys(TOP_KEYS, &[], problems);

    // A [daemon] or [defaults] of the wrong type is reported and read as absent.
    let table = |key, problems: &mut Problems| match root.table(key, problems) {
        Ok(Some(t)) => t,
        _ => TableReader::empty(&idx, key),
    };
    let mut warnings = Vec::new();
    let daemon = read_daemon(&table("daemon", problems), load, problems, &mut warnings);
    let defaults_table = table("defaults", problems);
    let defaults = read_defaults(&defaults_table, problems);
    let archive = [
        archive::Layer::of(&defaults_table, load, problems),
        archive::Layer::of(&root, load, problems),
    ];
    let (servers, names_given) = match root.array_of_tables("servers", problems) {
        Ok(Some(list)) if !list.is_empty() => {
            read_servers(&list, &defaults, &archive, load, problems)
        }
        // Absent, empty, or not an array of tables (that is reported too).
        _ => {
            problems.report(idx.problem(
                text.len(),
                "servers",
                "no [[servers]] entries; add at least one server (see config/example.toml)".into(),
            ));
            (Vec::new(), Vec::new())
        }
    };
    let mut notify = Vec::new();
    if let Ok(Some(list)) = root.array_of_tables("notify", problems) {
        for table in &list {
            if let Ok(target) = read_notify(table, &names_given, load, problems) {
                notify.push(target);
            }
        }
    }
    Ok(Config {
        path: path.to_owned(),
        secrets: load.secrets,
        digest: sha256_hex(text.as_bytes()),
        daemon: daemon?,
        servers,
        notify,
        warnings,
    })
}
