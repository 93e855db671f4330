//! `check`: validate a config without contacting any server and show what the schedules
//! will do: the next due instants in local time and UTC, the jitter, and what the DST
//! rules make of the coming clock changes.
//!
//! It reads the secrets too (API key files, variables), as the daemon will; a secret this
//! environment cannot see (systemd's `${CREDENTIALS_DIRECTORY}` exists only inside the unit)
//! is named as such, and `--no-secrets` validates everything else.

use super::{CommandError, Verdict};
use crate::config::{Config, ConfigError, LoadEnv, Secrets, ServerConfig};
use crate::schedule::jitter_offset;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How far ahead `check` looks for DST changes worth a note.
const DST_LOOKAHEAD: chrono::Duration = chrono::Duration::days(366);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The `--format json` document: exactly these fields, in this order.
#[derive(Serialize)]
struct JsonReport<'a> {
    servers: Vec<JsonServer<'a>>,
}

#[derive(Serialize)]
struct JsonServer<'a> {
    name: &'a str,
    enabled: bool,
    schedule: &'a str,
    timezone: &'a str,
    next: Vec<String>,
}

/// Why `check` refuses a config: the loader's problems, then, when some of them are
/// secrets this environment cannot read, which ones and how to check the rest.
#[derive(Debug, thiserror::Error)]
#[error("{error}{}", unreadable.as_ref().map(|u| format!("\n{u}")).unwrap_or_default())]
pub struct CheckError {
    pub error: ConfigError,
    pub unreadable: Option<UnreadableSecrets>,
}

/// Secrets of a config that this environment cannot read (systemd's credentials exist
/// only inside the unit).
#[derive(Debug)]
pub struct UnreadableSecrets {
    /// The config file.
    pub path: PathBuf,
    /// Where each one is configured (`servers[0].api_key_file`).
    pub keys: Vec<String>,
    /// Everything else in the file is valid.
    pub rest_valid: bool,
}

impl fmt::Display for UnreadableSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} secret{} cannot be read here ({}). The service reads them in its own environment (under systemd, LoadCredential= provides ${{CREDENTIALS_DIRECTORY}}, which exists only inside the unit); {}",
            self.path.display(),
            self.keys.len(),
            if self.keys.len() == 1 { "" } else { "s" },
            self.keys.join(", "),
            if self.rest_valid {
                "everything else in the file is valid (`check --no-secrets` checks it without them)"
            } else {
                "`check --no-secrets` checks everything else without them"
            }
        )
    }
}

/// Load `path` for `check`: with its secrets, or without (`no_secrets`).
pub fn load(path: &Path, env: &LoadEnv<'_>, no_secrets: bool) -> Result<Config, CheckError> {
    let secrets = if no_secrets {
        Secrets::Skip
    } else {
        Secrets::Resolve
    };
    let error = match Config::load_opts(path, env, secrets) {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let keys: Vec<String> = match &error {
        ConfigError::Invalid { problems, .. } => problems
            .iter()
            .filter(|p| p.unavailable_secret)
            .map(|p| p.path.clone())
            .collect(),
        _ => Vec::new(),
    };
    let unreadable = (!keys.is_empty()).then(|| {
        let all =
            matches!(&error, ConfigError::Invalid { problems, .. } if problems.len() == keys.len());
        UnreadableSecrets {
            path: path.to_owned(),
            rest_valid: all && Config::load_opts(path, env, Secrets::Skip).is_ok(),
            keys,
        }
    });
    Err(CheckError { error, unreadable })
}

/// The command, for a config [`load`]ed (its warnings shown): the report on `out`.
pub fn check(
    config: &Config,
    after: DateTime<Utc>,
    next: usize,
    format: Format,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    let text = report(config, after, next, format);
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(Verdict::Fine)
}

/// The report for a valid config: text for people or the JSON document.
pub fn report(config: &Config, after: DateTime<Utc>, next: usize, format: Format) -> String {
    match format {
        Format::Json => {
            let doc = JsonReport {
                servers: config
                    .servers
                    .iter()
                    .map(|s| JsonServer {
                        name: &s.name,
                        enabled: s.enabled,
                        schedule: s.schedule.expr(),
                        timezone: s.timezone.name(),
                        next: s
                            .schedule
                            .upcoming(after, next)
                            .iter()
                            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                            .collect(),
                    })
                    .collect(),
            };
            // Serialising plain strings and bools cannot fail.
            serde_json::to_string(&doc).unwrap_or_default() + "\n"
        }
        Format::Text => text_report(config, after, next),
    }
}

fn text_report(config: &Config, after: DateTime<Utc>, next: usize) -> String {
    let enabled = config.servers.iter().filter(|s| s.enabled).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: OK, {} server{} ({} enabled), state in {}",
        config.path.display(),
        config.servers.len(),
        if config.servers.len() == 1 { "" } else { "s" },
        enabled,
        config.daemon.state_dir.display()
    );
    if config.secrets == Secrets::Skip {
        let _ = writeln!(
            out,
            "secrets: not read (--no-secrets): API keys, webhook and ping URLs were checked for their source only"
        );
    }
    for target in &config.notify {
        let on: Vec<String> = target.on.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "notify: {} as {} on {}{}",
            target.shown,
            match target.format {
                crate::config::NotifyFormat::Json => "json",
                crate::config::NotifyFormat::Ntfy => "ntfy",
                crate::config::NotifyFormat::Slack => "slack",
            },
            on.join(", "),
            target
                .servers
                .as_ref()
                .map(|s| format!(" for {}", s.join(", ")))
                .unwrap_or_default()
        );
    }
    for server in &config.servers {
        out.push('\n');
        server_text(&mut out, server, after, next);
    }
    out
}

fn server_text(out: &mut String, s: &ServerConfig, after: DateTime<Utc>, next: usize) {
    let _ = writeln!(
        out,
        "{}{}  {}  schedule \"{}\" in {}",
        s.name,
        if s.enabled { "" } else { " (disabled)" },
        s.url,
        s.schedule.expr(),
        s.timezone.name()
    );
    if s.ping_url.is_some() {
        let _ = writeln!(
            out,
            "  ping: a dead-man's-switch URL is set (start, success, fail)"
        );
    }
    let jitter = jitter_offset(&s.name, s.jitter);
    if !s.jitter.is_zero() {
        let _ = writeln!(
            out,
            "  jitter: each run starts {} after its due instant (stable, from the name; jitter = {})",
            format_offset(jitter),
            humantime::format_duration(s.jitter)
        );
    }
    let upcoming = s.schedule.upcoming(after, next);
    if upcoming.is_empty() {
        let _ = writeln!(
            out,
            "  next: never (the expression matches no future instant)"
        );
    }
    for (i, due) in upcoming.iter().enumerate() {
        let local = due.with_timezone(&s.timezone);
        let _ = writeln!(
            out,
            "  {} {}  {}",
            if i == 0 { "next:" } else { "     " },
            local.format("%a %Y-%m-%d %H:%M:%S %Z"),
            due.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    for note in s.schedule.dst_notes(after, after + DST_LOOKAHEAD) {
        let _ = writeln!(out, "  dst:  {note}");
    }
}

fn format_offset(d: Duration) -> String {
    format!("+{:.3}s", d.as_secs_f64())
}
