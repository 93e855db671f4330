//! `doctor [SERVER…]`: read-only checks of each enabled server (or the ones named) and of
//! this machine, printed as one line per check or as JSON (see [`crate::doctor`]).
//! Verdict: fine unless a check failed; a bad config is an error before any check.

use super::{CommandError, Verdict};
use crate::config::{Config, ServerConfig};
use crate::doctor::{self, render};
use std::io::Write;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What `doctor` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only these servers (enabled or not); empty: every enabled server.
    pub servers: Vec<String>,
    pub format: Format,
    /// The limit of each network step.
    pub timeout: Duration,
    /// Colour the marks (a terminal without `NO_COLOR`).
    pub colour: bool,
}

/// Check and print; [`Verdict::Failed`] when a check failed.
pub async fn doctor(
    config: &Config,
    options: &Options,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    let servers = chosen(config, &options.servers)?;
    let report = doctor::examine(
        config,
        servers,
        doctor::Options {
            timeout: options.timeout,
        },
    )
    .await;
    let text = match options.format {
        Format::Text => render::text(&report, options.colour),
        Format::Json => render::json(&report) + "\n",
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(if report.ok {
        Verdict::Fine
    } else {
        Verdict::Failed
    })
}

/// The servers named (each must exist), or every enabled one.
fn chosen(config: &Config, names: &[String]) -> Result<Vec<ServerConfig>, CommandError> {
    if names.is_empty() {
        return Ok(config
            .servers
            .iter()
            .filter(|s| s.enabled)
            .cloned()
            .collect());
    }
    let mut out: Vec<ServerConfig> = Vec::new();
    for name in names {
        let Some(server) = config.servers.iter().find(|s| &s.name == name) else {
            return Err(CommandError::UnknownServer {
                name: name.clone(),
                config: config.path.clone(),
                known: Some(config.servers.iter().map(|s| s.name.clone()).collect()),
            });
        };
        if !out.iter().any(|s| &s.name == name) {
            out.push(server.clone());
        }
    }
    Ok(out)
}
