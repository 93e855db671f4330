//! `history [SERVER]`: recorded runs, newest first, as a table or as the stored JSON lines.

use super::exit;
use crate::config::Config;
use crate::history::{History, StoredRecord, format_json_lines, format_table};
use crate::state::{StateDir, check_server_name};
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The command. `limit` 0 means every record.
pub fn history<W: Write>(
    config: &Config,
    server: Option<&str>,
    limit: usize,
    format: Format,
    mut out: W,
) -> u8 {
    if let Some(name) = server {
        // A server removed from the config may still have history worth reading.
        if config.server(name).is_none() && check_server_name(name).is_err() {
            eprintln!(
                "error: no server named {name:?} in {}",
                config.path.display()
            );
            return exit::USAGE;
        }
    }
    let dir = &config.daemon.state_dir;
    if !dir.exists() {
        eprintln!(
            "no runs recorded yet: the state directory {} does not exist",
            dir.display()
        );
        return exit::OK;
    }
    // Read only: nothing is created, whoever runs this (root, on the service's directory).
    let state = match StateDir::open_existing(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let history = History::new(&state);
    let servers = match server {
        Some(s) => vec![s.to_owned()],
        None => match history.servers() {
            Ok(list) => list,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        },
    };
    let mut records: Vec<StoredRecord> = Vec::new();
    for name in &servers {
        match history.read(name) {
            Ok(read) => {
                for w in &read.warnings {
                    eprintln!("warning: {w}");
                }
                records.extend(read.records);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        }
    }
    // Newest first; a stable sort keeps file order among equal times.
    records.sort_by_key(|r| std::cmp::Reverse(r.record.triggered_at));
    if limit > 0 {
        records.truncate(limit);
    }
    if records.is_empty() {
        eprintln!(
            "no runs recorded yet{}",
            server.map(|s| format!(" for {s}")).unwrap_or_default()
        );
        return exit::OK;
    }
    let text = match format {
        Format::Text => {
            // A server no longer in the config is shown in the system's zone (labelled).
            let system = crate::timezone::system_timezone();
            format_table(&records, |name| {
                config.server(name).map_or(system, |s| s.timezone)
            })
        }
        Format::Json => format_json_lines(&records),
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(_) => exit::FAILED,
    }
}
