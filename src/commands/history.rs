//! `history [SERVER]`: recorded runs, newest first, as a table or as the stored JSON lines.
//!
//! The table is this command's ([`format_table`]); `demo` prints its history with it too.
//! Reading the files is [`crate::history`]'s job.

use super::{CommandError, Verdict};
use crate::config::{Backend, Config};
use crate::history::StoredRecord;
use crate::record::{RunRecord, format_bytes, format_duration};
use crate::records::{PgRecords, Records};
use crate::state::{StateDir, check_server_name};
use chrono_tz::Tz;
use std::borrow::Borrow;
use std::io::Write;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The command: the records on `out`, notes and warnings (lines that could not be read)
/// on `err`. `limit` 0 means every record. The records come from the config's backend.
pub async fn history(
    config: &Config,
    server: Option<&str>,
    limit: usize,
    format: Format,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    if let Some(name) = server {
        // A server removed from the config may still have history worth reading.
        if config.server(name).is_none() && check_server_name(name).is_err() {
            return Err(CommandError::UnknownServer {
                name: name.to_owned(),
                config: config.path.clone(),
                known: None,
            });
        }
    }
    let Some(source) = source(config, &mut err)? else {
        return Ok(Verdict::Fine);
    };
    let servers = match server {
        Some(s) => vec![s.to_owned()],
        None => source.servers().await?,
    };
    // PostgreSQL sends one server's newest `limit` only (its order is the one shown); a
    // history file is read whole, since its order is the file's.
    let by_time = matches!(source, Records::Postgres(_));
    let newest = (by_time && limit > 0 && servers.len() == 1).then_some(limit);
    let mut records: Vec<StoredRecord> = Vec::new();
    for name in &servers {
        let read = source.read(name, newest).await?;
        for w in &read.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
        records.extend(read.records);
    }
    // Newest first; a stable sort keeps file order among equal times.
    records.sort_by_key(|r| std::cmp::Reverse(r.record.triggered_at));
    if limit > 0 {
        records.truncate(limit);
    }
    if records.is_empty() {
        let _ = writeln!(
            err,
            "no runs recorded yet{}",
            server.map(|s| format!(" for {s}")).unwrap_or_default()
        );
        return Ok(Verdict::Fine);
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
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(Verdict::Fine)
}

/// `history import --from DIR`: each server's JSON Lines history in `from` copied into the
/// database of `config`'s PostgreSQL backend (its schema applied first), one transaction
/// per server, keyed by run id: importing twice adds nothing. One line per server on
/// `out`; lines that could not be read are warned about on `err`.
pub async fn import(
    config: &Config,
    from: &std::path::Path,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    let Backend::Postgres(pg) = &config.daemon.backend else {
        return Err(CommandError::ImportNeedsPostgres {
            config: config.path.clone(),
        });
    };
    let state = StateDir::open_existing(from)?;
    let history = crate::history::History::new(&state);
    let mut client = crate::postgres::connect(&pg.url, IMPORT_TIMEOUT)
        .await
        .map_err(crate::records::ReadError::from)?;
    crate::postgres::migrate::migrate(&mut client)
        .await
        .map_err(crate::records::ReadError::from)?;
    for server in history.servers()? {
        let read = history.read(&server)?;
        for w in &read.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
        let done = crate::postgres::import::import_server(&mut client, &server, &read.records)
            .await
            .map_err(crate::records::ReadError::from)?;
        let _ = writeln!(
            out,
            "{server}: {} records read, {} added ({} already there)",
            done.read,
            done.added,
            done.read - done.added
        );
    }
    Ok(Verdict::Fine)
}

/// How long `history import` waits for the database to accept a connection.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the records are: the config's backend. `None` (said on `err`) when the files
/// backend's state directory does not exist: nothing was ever recorded.
fn source(config: &Config, err: &mut impl Write) -> Result<Option<Records>, CommandError> {
    if let Backend::Postgres(pg) = &config.daemon.backend {
        return Ok(Some(Records::Postgres(Arc::new(PgRecords::new(
            pg.url.clone(),
        )))));
    }
    let dir = &config.daemon.state_dir;
    if !dir.exists() {
        let _ = writeln!(
            err,
            "no runs recorded yet: the state directory {} does not exist",
            dir.display()
        );
        return Ok(None);
    }
    // Read only: nothing is created, whoever runs this (root, on the service's directory).
    let state = StateDir::open_existing(dir)?;
    Ok(Some(Records::files(&state)))
}

/// The `history` command's table: one row per record, in the order given (the caller
/// chooses, typically newest first). Columns WHEN, SERVER (only when the records span more
/// than one server), TRIGGER, OUTCOME, DURATION, SIZE and USERS (of the archived export,
/// `-` when none was archived), REASON (last, unpadded). No records gives an empty string,
/// so the caller can say so in its own words.
///
/// WHEN is `triggered_at` in the zone `zone_of` gives for the record's server (the zone its
/// schedule is read in, so a `0 30 3 * * *` run shows 03:30), with its UTC offset: a time
/// without its zone is ambiguous across servers, hosts and the repeated hour of a DST
/// change. The header names the zone when every row has the same one.
pub fn format_table<R: Borrow<RunRecord>>(records: &[R], zone_of: impl Fn(&str) -> Tz) -> String {
    if records.is_empty() {
        return String::new();
    }
    let first_server = &records[0].borrow().server;
    let show_server = records.iter().any(|r| &r.borrow().server != first_server);
    let zones: Vec<Tz> = records
        .iter()
        .map(|r| zone_of(&r.borrow().server))
        .collect();
    let one_zone = zones.iter().all(|z| *z == zones[0]);

    let mut rows: Vec<Vec<String>> = Vec::with_capacity(records.len() + 1);
    let mut header = vec![if one_zone {
        format!("WHEN ({})", zones[0].name())
    } else {
        "WHEN (each server's zone)".to_owned()
    }];
    if show_server {
        header.push("SERVER".to_owned());
    }
    header.extend(["TRIGGER", "OUTCOME", "DURATION", "SIZE", "USERS", "REASON"].map(String::from));
    rows.push(header);
    for (r, zone) in records.iter().zip(&zones) {
        let r = r.borrow();
        let mut row = vec![
            r.triggered_at
                .with_timezone(zone)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string(),
        ];
        if show_server {
            row.push(one_line(&r.server));
        }
        row.push(r.trigger.as_str().to_owned());
        row.push(r.outcome.as_str().to_owned());
        row.push(
            r.duration_ms
                .map_or_else(|| "-".to_owned(), format_duration),
        );
        row.push(r.archive_bytes.map_or_else(|| "-".to_owned(), format_bytes));
        row.push(
            r.export_users
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        );
        // A reason may quote a server's error text; keep it on one line.
        row.push(r.reason.as_deref().map(one_line).unwrap_or_default());
        rows.push(row);
    }

    align_columns(&rows)
}

/// Rows as text: each column padded to its widest cell, two spaces apart, trailing
/// spaces trimmed. The `archive list` table is laid out the same way.
pub fn align_columns(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut widths = vec![0; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < columns {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Control characters (newlines, tabs, escapes) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The records exactly as stored, one per line, in the order given.
pub fn format_json_lines(records: &[StoredRecord]) -> String {
    let mut out = String::with_capacity(records.iter().map(|r| r.raw.len() + 1).sum());
    for r in records {
        out.push_str(&r.raw);
        out.push('\n');
    }
    out
}
