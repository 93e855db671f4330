//! `archive list|verify|prune`: the archived exports on disk, checked against the history
//! that recorded them, and pruned by the retention in the config.
//!
//! No Jellyfin: the archive folder is this host's, the records come from the backend (the
//! state directory's history files, or PostgreSQL's `run_history`, where the config's
//! secrets give the database URL). An identity file given to `verify --identity` is
//! secret: only its path is ever printed.

use super::history::align_columns;
use super::{CommandError, Verdict};
use crate::archive::encrypt::{decrypt, read_identities};
use crate::archive::store::{self, ArchiveFile};
use crate::archive::zipcheck::{self, ZipFacts};
use crate::config::{Backend, Config, ServerConfig};
use crate::digest::hex;
use crate::record::{RunRecord, format_bytes};
use crate::records::{PgRecords, Records};
use crate::runner;
use crate::state::StateDir;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One archiving server: its name, folder and settings.
struct Folder<'a> {
    server: &'a ServerConfig,
    dir: PathBuf,
}

/// The servers whose archives a command looks at: `only`, or every server that archives.
/// A named server that does not archive is said so on `err`.
fn folders<'a>(
    config: &'a Config,
    only: Option<&str>,
    err: &mut impl Write,
) -> Result<Vec<Folder<'a>>, CommandError> {
    let servers: Vec<&ServerConfig> = match only {
        Some(name) => vec![
            config
                .server(name)
                .ok_or_else(|| CommandError::UnknownServer {
                    name: name.to_owned(),
                    config: config.path.clone(),
                    known: Some(config.servers.iter().map(|s| s.name.clone()).collect()),
                })?,
        ],
        None => config.servers.iter().collect(),
    };
    let root = &config.daemon.state_dir;
    let mut out = Vec::new();
    for s in servers {
        match runner::keeper(s, root, "") {
            Some(k) => out.push(Folder {
                server: s,
                dir: k.dir,
            }),
            None if only.is_some() => {
                let _ = writeln!(
                    err,
                    "{} does not archive its exports ([archive] enabled = false, or its runs are not verified Migrator exports)",
                    s.name
                );
            }
            None => {}
        }
    }
    Ok(out)
}

fn list_files(folder: &Folder<'_>) -> Result<Vec<ArchiveFile>, CommandError> {
    store::list(&folder.dir, &folder.server.name).map_err(|e| {
        CommandError::Archive(format!(
            "cannot list the archive folder {}: {e}",
            folder.dir.display()
        ))
    })
}

/// Where `list` and `verify` read the records of the archived runs: the backend's
/// ([`Records`]: the state directory's history files, or PostgreSQL's `run_history`),
/// on a runtime of their own, since the rest of these commands is plain file work.
struct ArchivedRecords {
    /// `None`: a files backend whose state directory does not exist has no records.
    records: Option<Records>,
    runtime: tokio::runtime::Runtime,
}

impl ArchivedRecords {
    fn for_config(config: &Config) -> Result<ArchivedRecords, CommandError> {
        let records = match &config.daemon.backend {
            Backend::Files => {
                let dir = &config.daemon.state_dir;
                match dir.exists() {
                    true => Some(Records::files(&StateDir::open_existing(dir)?)),
                    false => None,
                }
            }
            Backend::Postgres(pg) => {
                Some(Records::Postgres(Arc::new(PgRecords::new(pg.url.clone()))))
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CommandError::Runtime)?;
        Ok(ArchivedRecords { records, runtime })
    }

    /// The records of `server` that archived a file, by run id; what was wrong with the
    /// records skipped, on `err`.
    fn of(
        &self,
        server: &str,
        err: &mut impl Write,
    ) -> Result<HashMap<String, RunRecord>, CommandError> {
        let Some(records) = &self.records else {
            return Ok(HashMap::new());
        };
        let read = self.runtime.block_on(records.read(server, None))?;
        for w in &read.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
        Ok(read
            .into_records()
            .into_iter()
            .filter(|r| r.archive_path.is_some())
            .map(|r| (r.run_id.clone(), r))
            .collect())
    }
}

/// `archive list [SERVER]`: each archived file, oldest first per server.
pub fn list(
    config: &Config,
    server: Option<&str>,
    format: Format,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    let mut rows = vec![
        [
            "SERVER",
            "TAKEN (UTC)",
            "SIZE",
            "USERS",
            "ENCRYPTED",
            "FILE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut lines = String::new();
    let archived = ArchivedRecords::for_config(config)?;
    for folder in folders(config, server, &mut err)? {
        let records = archived.of(&folder.server.name, &mut err)?;
        for f in list_files(&folder)? {
            let record = records.get(&f.run_id);
            let users = record.and_then(|r| r.export_users);
            match format {
                Format::Text => rows.push(vec![
                    f.server.clone(),
                    f.taken_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    format_bytes(f.bytes),
                    users.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    if f.encrypted { "yes" } else { "no" }.to_owned(),
                    f.path.display().to_string(),
                ]),
                Format::Json => {
                    let line = serde_json::json!({
                        "server": f.server,
                        "path": f.path,
                        "taken_at": f.taken_at,
                        "run_id": f.run_id,
                        "bytes": f.bytes,
                        "encrypted": f.encrypted,
                        "sha256": record.and_then(|r| r.archive_sha256.clone()),
                        "export_users": users,
                        "export_entries": record.and_then(|r| r.export_entries),
                    });
                    lines.push_str(&format!("{line}\n"));
                }
            }
        }
    }
    let text = match format {
        Format::Text if rows.len() == 1 => {
            let _ = writeln!(err, "no archived exports");
            return Ok(Verdict::Fine);
        }
        Format::Text => align_columns(&rows),
        Format::Json => lines,
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(Verdict::Fine)
}

/// `archive verify [SERVER] [--identity FILE]`: every archived file re-hashed against the
/// record of its run; a plain ZIP (or, with `identity`, a decrypted one) opened and its
/// content checked against the record too. Each mismatch is a line naming the file on
/// `out`, and the verdict is `Failed`.
pub fn verify(
    config: &Config,
    server: Option<&str>,
    identity: Option<&Path>,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    let identities = match identity {
        Some(path) => Some(read_identities(path).map_err(CommandError::Identity)?),
        None => None,
    };
    let (mut checked, mut bad) = (0, 0);
    let archived = ArchivedRecords::for_config(config)?;
    for folder in folders(config, server, &mut err)? {
        let records = archived.of(&folder.server.name, &mut err)?;
        for f in list_files(&folder)? {
            checked += 1;
            let Some(record) = records.get(&f.run_id) else {
                let _ = writeln!(
                    err,
                    "note: {}: no record of run {} in the history, so there is nothing to check it against",
                    f.path.display(),
                    f.run_id
                );
                continue;
            };
            let problems = check_file(&f, record, identities.as_deref());
            let line = if problems.is_empty() {
                format!("ok        {}", f.path.display())
            } else {
                bad += 1;
                format!("MISMATCH  {}: {}", f.path.display(), problems.join("; "))
            };
            writeln!(out, "{line}").map_err(CommandError::Output)?;
        }
    }
    let _ = writeln!(
        err,
        "{checked} archive file{} checked, {bad} mismatch{}",
        if checked == 1 { "" } else { "s" },
        if bad == 1 { "" } else { "es" }
    );
    Ok(if bad == 0 {
        Verdict::Fine
    } else {
        Verdict::Failed
    })
}

/// What is wrong with `f` against `record`; empty when nothing is.
fn check_file(
    f: &ArchiveFile,
    record: &RunRecord,
    identities: Option<&[Box<dyn age::Identity>]>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match hash_file(&f.path) {
        Err(e) => return vec![format!("cannot read it: {e}")],
        Ok((bytes, sha)) => {
            if record.archive_bytes.is_some_and(|b| b != bytes) {
                problems.push(format!(
                    "{bytes} bytes, the history says {}",
                    record.archive_bytes.unwrap_or(0)
                ));
            }
            if record.archive_sha256.as_deref().is_some_and(|s| s != sha) {
                problems.push("its SHA-256 is not the one the history recorded".to_owned());
            }
        }
    }
    let opened = match (f.encrypted, identities) {
        (true, None) => return problems,
        (true, Some(ids)) => open_encrypted(&f.path, ids),
        (false, _) => File::open(&f.path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(inspect_hashing),
    };
    match opened {
        Err(e) => problems.push(e),
        Ok((facts, sha)) => problems.extend(content_problems(&facts, &sha, record)),
    }
    problems
}

fn open_encrypted(
    path: &Path,
    ids: &[Box<dyn age::Identity>],
) -> Result<(ZipFacts, String), String> {
    let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let plain = decrypt(BufReader::new(file), ids)?;
    inspect_hashing(plain)
}

/// The ZIP read from `input`: what it holds and its SHA-256.
fn inspect_hashing(input: impl Read) -> Result<(ZipFacts, String), String> {
    let mut hashing = Hashing::new(input);
    let facts = zipcheck::inspect(&mut hashing).map_err(|e| e.to_string())?;
    Ok((facts, hashing.finish().1))
}

fn content_problems(facts: &ZipFacts, sha: &str, record: &RunRecord) -> Vec<String> {
    let mut problems = Vec::new();
    if record.export_sha256.as_deref().is_some_and(|s| s != sha) {
        problems.push(
            "the ZIP inside is not the one the history recorded (its SHA-256 differs)".to_owned(),
        );
    }
    if record.export_entries.is_some_and(|n| n != facts.entries) {
        problems.push(format!(
            "the ZIP holds {} entries, the history says {}",
            facts.entries,
            record.export_entries.unwrap_or(0)
        ));
    }
    if facts.export_log_sha256.is_none() {
        problems.push(format!("the ZIP holds no {}", zipcheck::EXPORT_LOG));
    }
    let users = facts.users.clone().and_then(Result::ok);
    if record.export_users.is_some() && users != record.export_users {
        problems.push(format!(
            "the ZIP's {} lists {} users, the history says {}",
            zipcheck::USERS_FILE,
            users.map_or_else(|| "no".to_owned(), |n| n.to_string()),
            record.export_users.unwrap_or(0)
        ));
    }
    problems
}

/// Size and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut h = Hashing::new(File::open(path)?);
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.finish())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (self.bytes, hex(self.ctx.finish().as_ref()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// `archive prune [SERVER] [--dry-run]`: each server's retention applied now; every file's
/// fate on `out` (kept, and why; deleted, or would be).
pub fn prune(
    config: &Config,
    server: Option<&str>,
    dry_run: bool,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, CommandError> {
    let mut failed = false;
    for folder in folders(config, server, &mut err)? {
        let s = folder.server;
        let fates = store::prune(
            &folder.dir,
            &s.name,
            &s.archive.policy(),
            s.timezone,
            dry_run,
        )
        .map_err(|e| {
            CommandError::Archive(format!("cannot prune {}: {e}", folder.dir.display()))
        })?;
        for fate in fates {
            let what = match (&fate.error, fate.keep.is_empty(), dry_run) {
                (Some(e), _, _) => {
                    failed = true;
                    format!("NOT DELETED ({e})")
                }
                (None, true, true) => "would delete".to_owned(),
                (None, true, false) => "deleted".to_owned(),
                (None, false, _) => format!(
                    "keep ({})",
                    fate.keep
                        .iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            writeln!(out, "{}: {what}", fate.file.path.display()).map_err(CommandError::Output)?;
        }
    }
    Ok(if failed {
        Verdict::Failed
    } else {
        Verdict::Fine
    })
}
