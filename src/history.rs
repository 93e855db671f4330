//! Per-server run history on disk: `<state_dir>/history/<server>.jsonl`, one [`RunRecord`]
//! per line (see `docs/history-format.md`). Storage only: the `history` command renders
//! what it reads ([`crate::commands::history`]).
//!
//! This module owns the file format's write guarantees: append + fsync per record, a torn
//! last line skipped on read and cut off on the next append, retention by atomic rewrite,
//! 0600 files. It does not decide what a record says (`runner` does), where the state
//! directory is or who may run a server (`state` does), or what to do when a write fails
//! (the daemon keeps the record and retries).
//!
//! Appends to one server's file are serialised twice: by a per-server mutex within the
//! process (which also guards the cached line count) and by an exclusive `flock` on the
//! file across processes, so the daemon and a manual `trigger` never interleave or cut off
//! each other's half-written line.

use crate::record::RunRecord;
use crate::state::{FILE_MODE, InvalidServerName, StateDir, check_server_name, io_hint};
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tracing::warn;

/// Why a history file could not be read or written. Every message names the file, the OS
/// error and what to do; [`HistoryError::io_error_kind`] lets the caller decide to retry.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read history file {}: {source}; {}", path.display(), io_hint(source.kind()))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write history file {}: {source}; {}", path.display(), io_hint(source.kind()))]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "cannot list history directory {}: {source}; {}",
        path.display(),
        io_hint(source.kind())
    )]
    List { path: PathBuf, source: io::Error },
    #[error(
        "cannot encode a run record for history file {}: {source}; this is a bug, please report it",
        path.display()
    )]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    InvalidServer(#[from] InvalidServerName),
}

impl HistoryError {
    /// The OS error's kind (e.g. `StorageFull`), or `None` when the cause was not I/O.
    /// I/O errors are worth retrying later; the others are not.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        match self {
            HistoryError::Read { source, .. }
            | HistoryError::Write { source, .. }
            | HistoryError::List { source, .. } => Some(source.kind()),
            HistoryError::Encode { .. } | HistoryError::InvalidServer(_) => None,
        }
    }

    /// The file or directory concerned, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            HistoryError::Read { path, .. }
            | HistoryError::Write { path, .. }
            | HistoryError::List { path, .. }
            | HistoryError::Encode { path, .. } => Some(path),
            HistoryError::InvalidServer(_) => None,
        }
    }
}

/// One record as read from the file: parsed, and the exact line text it came from (without
/// the newline), so `history --format json` prints what is stored byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub record: RunRecord,
    pub raw: String,
}

impl Borrow<RunRecord> for StoredRecord {
    fn borrow(&self) -> &RunRecord {
        &self.record
    }
}

/// A server's history as read: the records in file order (oldest first) and a sentence for
/// every line that was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRead {
    pub records: Vec<StoredRecord>,
    pub warnings: Vec<String>,
}

impl HistoryRead {
    /// The parsed records, without their line text.
    pub fn into_records(self) -> Vec<RunRecord> {
        self.records.into_iter().map(|s| s.record).collect()
    }
}

/// The history files of one state directory.
///
/// Methods do blocking file I/O (including fsync); call them from `spawn_blocking` in
/// async code.
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    /// One slot per server. The outer mutex is held only to find the slot, so appends for
    /// different servers (1000 in the same second) fsync in parallel; the slot's mutex
    /// serialises appends to one server. Std mutexes: never held across an await.
    files: Mutex<HashMap<String, Arc<Mutex<Option<Tail>>>>>,
}

/// What we know about the end of a history file after our last append, so the next append
/// needs no read. Trusted only while the file is the same inode with the same length; any
/// other writer (a `trigger` process, a rewrite, a hand edit) changes one of those and
/// forces a rescan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tail {
    dev: u64,
    ino: u64,
    /// File length, which is also the end of the last complete line.
    len: u64,
    /// Non-blank complete lines: the count retention compares with the limit.
    lines: usize,
}

/// How many lines the file may hold before a rewrite trims it back to exactly `limit`.
/// `history_limit` is a promise to the user, so there is no slack: a full file is
/// rewritten on every append, which costs one read and write of the file per run (about
/// 400 KiB for 1000 records), small next to a run that takes seconds to hours.
fn rewrite_threshold(limit: usize) -> usize {
    limit
}

impl History {
    pub fn new(state: &StateDir) -> History {
        History {
            dir: state.history_dir(),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// `<state_dir>/history/<server>.jsonl`, for a valid server name only.
    pub fn file_path(&self, server: &str) -> Result<PathBuf, InvalidServerName> {
        check_server_name(server)?;
        Ok(self.dir.join(format!("{server}.jsonl")))
    }

    /// Appends `record` to its server's file (`record.server`) and fsyncs it. When the file
    /// then holds more than `history_limit` records, rewrites it to the newest
    /// `history_limit` (no slack; `rewrite_threshold` says why). A limit of 0 is treated as 1
    /// so the record just written is kept.
    ///
    /// On error nothing of the record stays in the file (a partial write is cut back), so
    /// the caller can simply append it again later. A failed retention rewrite is not an
    /// error: the record is safely written, and the rewrite is retried on a later append.
    pub fn append(&self, record: &RunRecord, history_limit: usize) -> Result<(), HistoryError> {
        let path = self.file_path(&record.server)?;
        let mut line = serde_json::to_string(record).map_err(|source| HistoryError::Encode {
            path: path.clone(),
            source,
        })?;
        // Compact serde_json escapes every newline inside strings, so this is the only one.
        line.push('\n');

        let slot = self.slot(&record.server);
        let mut cached = lock_slot(&slot);
        let write_err = |source| HistoryError::Write {
            path: path.clone(),
            source,
        };

        let mut file = open_locked(&path).map_err(write_err)?;
        let meta = file.metadata().map_err(write_err)?;
        let mut tail = match *cached {
            Some(t) if t.dev == meta.dev() && t.ino == meta.ino() && t.len == meta.len() => t,
            _ => {
                *cached = None;
                scan_and_repair(&mut file, &path, &meta).map_err(write_err)?
            }
        };

        if let Err(source) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            // Cut back whatever reached the file so a retry does not duplicate the record
            // or leave a torn line. Best effort: if this fails too, the rescan forced by
            // `cached = None` cuts a torn line on the next append.
            let _ = file.set_len(tail.len).and_then(|()| file.sync_data());
            *cached = None;
            return Err(write_err(source));
        }
        tail.len += line.len() as u64;
        tail.lines += 1;

        let limit = history_limit.max(1);
        if tail.lines > rewrite_threshold(limit) {
            match rewrite_newest(&mut file, &path, limit, tail.len) {
                Ok(new_tail) => tail = new_tail,
                Err(source) => {
                    warn!(
                        path = %path.display(),
                        error = %source,
                        hint = io_hint(source.kind()),
                        "could not trim history file to its newest {limit} records; \
                         the record was written, trimming is retried on a later append"
                    );
                    // The file may or may not have been replaced: look again next time.
                    *cached = None;
                    return Ok(());
                }
            }
        }
        *cached = Some(tail);
        Ok(())
        // `file` closes here, which releases the flock after the slot's cache is updated.
    }

    /// Reads a server's history. A missing file is an empty history. Lines that can't be
    /// used (a torn last line, a corrupt line) are skipped with a warning each; only an
    /// unreadable file is an error.
    pub fn read(&self, server: &str) -> Result<HistoryRead, HistoryError> {
        // Parsed after the file is closed: the lock is held only while reading.
        Ok(
            match self.reading(server, |file, len, _| read_range(file, 0, len))? {
                Some((bytes, path)) => parse(&bytes, &path),
                None => HistoryRead::default(),
            },
        )
    }

    /// The newest `n` records of a server's history (oldest first, like [`read`](Self::read)),
    /// read backwards from the end of the file: a block, then twice as much, until the
    /// bytes read hold `n` records or the whole file. So a start-up that wants the recent
    /// past of 1000 servers does not read 1000 whole files. Lines are judged as `read`
    /// judges them (a torn last line is skipped with the same warning, a complete record
    /// without its newline kept); a corrupt line is skipped with a warning naming its place
    /// from the end, and lines older than the oldest record returned are not reported.
    pub fn tail(&self, server: &str, n: usize) -> Result<HistoryRead, HistoryError> {
        let read = self.reading(server, |file, len, path| tail_of(file, len, n, path))?;
        Ok(read.map(|(read, _)| read).unwrap_or_default())
    }

    /// `f` on a server's history file (its length when opened, under a shared lock, and
    /// its path), with the path; `None` when the file does not exist.
    fn reading<T>(
        &self,
        server: &str,
        f: impl FnOnce(&mut File, u64, &Path) -> io::Result<T>,
    ) -> Result<Option<(T, PathBuf)>, HistoryError> {
        let path = self.file_path(server)?;
        let read_err = |source| HistoryError::Read {
            path: path.clone(),
            source,
        };
        let Some((mut file, len)) = open_shared(&path).map_err(read_err)? else {
            return Ok(None);
        };
        let out = f(&mut file, len, &path).map_err(read_err)?;
        Ok(Some((out, path)))
    }

    /// The newest record of a server, if any. Warnings are logged, not returned.
    pub fn last(&self, server: &str) -> Result<Option<RunRecord>, HistoryError> {
        let read = self.read(server)?;
        for w in &read.warnings {
            warn!(server, "{w}");
        }
        Ok(read.records.into_iter().next_back().map(|s| s.record))
    }

    /// Servers that have a history file, sorted. Files whose names are not `<server>.jsonl`
    /// for a valid server name (temp files, hand-made copies) are ignored.
    pub fn servers(&self) -> Result<Vec<String>, HistoryError> {
        let list_err = |source| HistoryError::List {
            path: self.dir.clone(),
            source,
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(list_err(e)),
        };
        let mut servers = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let Some(server) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
                continue;
            };
            if check_server_name(server).is_ok() {
                servers.insert(server.to_owned());
            }
        }
        Ok(servers.into_iter().collect())
    }

    fn slot(&self, server: &str) -> Arc<Mutex<Option<Tail>>> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.entry(server.to_owned()).or_default().clone()
    }
}

/// Locks a server's slot. A poisoned slot (a panic mid-append) only means the cache may be
/// wrong, so forget it and carry on: the next append rescans the file.
fn lock_slot(slot: &Mutex<Option<Tail>>) -> MutexGuard<'_, Option<Tail>> {
    slot.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        *guard = None;
        guard
    })
}

/// How often `open_locked` reopens a file that was replaced while it waited for the lock.
/// Each retry means another writer finished a rewrite; far fewer than this ever happen.
const MAX_REOPENS: usize = 100;

/// Opens (creating, 0600) the history file for appending and takes its exclusive flock.
///
/// A retention rewrite replaces the file by rename, so after waiting for the lock we may
/// hold a lock on a file that is no longer at `path`; appending there would lose the
/// record. Hence: check that the locked file is still the one at `path`, else reopen.
fn open_locked(path: &Path) -> io::Result<File> {
    for _ in 0..MAX_REOPENS {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)?;
        file.lock()?;
        let held = file.metadata()?;
        match fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "the file was replaced {MAX_REOPENS} times while waiting for its lock"
    )))
}

/// Reads the whole file (the first append to it in this process, or after someone else
/// wrote it), counts its complete lines and cuts off a torn last line, so the append that
/// follows starts on a line of its own.
fn scan_and_repair(file: &mut File, path: &Path, meta: &fs::Metadata) -> io::Result<Tail> {
    let bytes = read_range(file, 0, meta.len())?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = count_lines(&bytes[..complete]);
    let partial = &bytes[complete..];
    let mut len = bytes.len() as u64;
    if !partial.is_empty() {
        if serde_json::from_slice::<serde_json::Value>(partial).is_ok() {
            // A whole JSON value, only its newline missing (a hand edit, or a crash between
            // the two): complete it rather than lose it. A crash mid-write leaves a prefix
            // of a line, and no proper prefix of a JSON object is itself valid JSON.
            file.write_all(b"\n")?;
            len += 1;
            lines += 1;
            warn!(path = %path.display(), "history file's last line had no newline; added one");
        } else {
            file.set_len(complete as u64)?;
            len = complete as u64;
            warn!(
                path = %path.display(),
                bytes = partial.len(),
                "cut off the incomplete last line of a history file (left by a crash during a write)"
            );
        }
        file.sync_data()?;
    }
    Ok(Tail {
        dev: meta.dev(),
        ino: meta.ino(),
        len,
        lines,
    })
}

/// [`History::tail`] of a file `len` bytes long.
fn tail_of(
    file: &mut (impl Read + Seek),
    len: u64,
    n: usize,
    path: &Path,
) -> io::Result<HistoryRead> {
    let mut span = TAIL_BLOCK;
    loop {
        let start = len.saturating_sub(span);
        let bytes = read_range(file, start, len)?;
        // Unless the read reaches the file's start, its first line is cut: leave it out.
        let whole = if start == 0 {
            Some(&bytes[..])
        } else {
            bytes
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| &bytes[i + 1..])
        };
        if let Some(whole) = whole {
            let lines = judge_lines(whole, path, Numbering::FromEnd);
            let records = lines
                .iter()
                .filter(|l| matches!(l, Line::Record(_)))
                .count();
            if records >= n || start == 0 {
                return Ok(newest(lines, n));
            }
        }
        span = span.saturating_mul(2);
    }
}

/// What [`History::tail`] reads first from the end of a file: a few hundred records.
const TAIL_BLOCK: u64 = 64 * 1024;

/// Opens a history file for reading under a shared lock, with its length; `None` when it
/// does not exist. The lock waits out an append in progress, which would otherwise look
/// like a torn last line for a moment.
fn open_shared(path: &Path) -> io::Result<Option<(File, u64)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.lock_shared()?;
    let len = file.metadata()?.len();
    Ok(Some((file, len)))
}

/// Bytes `start..end` of the file, `end` being its length when we looked, under our lock.
/// Reading by length rather than to EOF keeps a history path that points at a device (say
/// someone symlinked it to /dev/zero) from reading forever.
fn read_range(file: &mut (impl Read + Seek), start: u64, end: u64) -> io::Result<Vec<u8>> {
    let len = end.saturating_sub(start);
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.seek(SeekFrom::Start(start))?;
    file.by_ref().take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !is_blank(l))
        .count()
    // `split` yields an empty piece after the final newline; it is blank, so not counted.
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Replaces the file with its newest `limit` non-blank lines: temp file (0600) in the same
/// directory, fsync, rename over, fsync the directory. Lines are kept as they are, parsed
/// or not: a line this version can't read may come from a newer one and is not ours to drop.
fn rewrite_newest(file: &mut File, path: &Path, limit: usize, len: u64) -> io::Result<Tail> {
    let bytes = read_range(file, 0, len)?;
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !is_blank(l))
        .collect();
    let keep = &lines[lines.len().saturating_sub(limit)..];

    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    // Not `*.jsonl`, so `servers()` never lists it; one fixed name per server, since we hold
    // the server's lock, and a leftover from a crash is simply overwritten.
    tmp_name.push(".tmp");
    let tmp_path = dir.join(tmp_name);
    let result = (|| {
        let mut tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp_path)?;
        let mut out = Vec::with_capacity(bytes.len());
        for l in keep {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        tmp.write_all(&out)?;
        tmp.sync_all()?;
        let meta = tmp.metadata()?;
        fs::rename(&tmp_path, path)?;
        File::open(dir)?.sync_all()?;
        Ok(Tail {
            dev: meta.dev(),
            ino: meta.ino(),
            len: out.len() as u64,
            lines: keep.len(),
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// Parses a history file's bytes into records and warnings. Never fails: a bad line is a
/// warning, not a lost history.
fn parse(bytes: &[u8], path: &Path) -> HistoryRead {
    let mut out = HistoryRead::default();
    for line in judge_lines(bytes, path, Numbering::FromStart) {
        match line {
            Line::Record(r) => out.records.push(r),
            Line::Skipped(w) => out.warnings.push(w),
        }
    }
    out
}

/// The newest `n` records of judged `lines`, with the warnings of the lines after the
/// oldest of them.
fn newest(lines: Vec<Line>, n: usize) -> HistoryRead {
    let mut out = HistoryRead::default();
    let mut taken = 0;
    for line in lines.into_iter().rev() {
        if taken == n {
            break;
        }
        match line {
            Line::Record(r) => {
                out.records.push(r);
                taken += 1;
            }
            Line::Skipped(w) => out.warnings.push(w),
        }
    }
    out.records.reverse();
    out.warnings.reverse();
    out
}

/// A non-blank line of a history file, judged.
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every line is a record: boxing would cost an allocation per line"
)]
enum Line {
    Record(StoredRecord),
    /// Why it was skipped.
    Skipped(String),
}

/// How warnings name a line: from the file's start (a whole file was read) or from its
/// end (only its tail was).
#[derive(Clone, Copy)]
enum Numbering {
    FromStart,
    FromEnd,
}

/// Judges the lines of `bytes` (whole lines of a history file up to its end), in file
/// order. Blank lines are left out.
fn judge_lines(bytes: &[u8], path: &Path, numbering: Numbering) -> Vec<Line> {
    let ends_with_newline = bytes.last().is_none_or(|&b| b == b'\n');
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After a final newline `split` yields one empty piece; without one, the last piece is
    // an unterminated line.
    let unterminated = if ends_with_newline {
        pieces.pop();
        None
    } else {
        pieces.pop()
    };
    let total = pieces.len() + usize::from(unterminated.is_some());
    let place = |i: usize| match numbering {
        Numbering::FromStart => format!("line {}", i + 1),
        Numbering::FromEnd => format!("line {} from the end", total - i),
    };
    let count = pieces.len();
    let mut out: Vec<Line> = pieces
        .into_iter()
        .enumerate()
        .filter_map(|(i, line)| judge_line(line, &place(i), path))
        .collect();
    if let Some(line) = unterminated {
        // A complete record that only lacks its newline is kept (the next append adds the
        // newline); anything else is the torn end of a write.
        let complete = serde_json::from_slice::<serde_json::Value>(line).is_ok();
        if complete {
            out.extend(judge_line(line, &place(count), path));
        } else {
            out.push(Line::Skipped(format!(
                "history file {}: last line is incomplete (crash during a write?); it was \
                 skipped and will be removed on the next write",
                path.display()
            )));
        }
    }
    out
}

/// One line; `None` when it is blank. `place` names it in a warning (`line 3`).
fn judge_line(line: &[u8], place: &str, path: &Path) -> Option<Line> {
    if is_blank(line) {
        return None;
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            return Some(Line::Skipped(format!(
                "history file {}: {place} is not valid UTF-8 ({e}); it was skipped",
                path.display()
            )));
        }
    };
    Some(match serde_json::from_str::<RunRecord>(text) {
        Ok(record) => Line::Record(StoredRecord {
            record,
            raw: text.to_owned(),
        }),
        Err(e) => Line::Skipped(format!(
            "history file {}: {place} is not a valid run record ({e}); it was skipped",
            path.display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_threshold_is_the_limit() {
        // history_limit is a promise to the user: no more records than that are kept.
        assert_eq!(rewrite_threshold(1), 1);
        assert_eq!(rewrite_threshold(1000), 1000);
        assert_eq!(rewrite_threshold(usize::MAX), usize::MAX);
    }

    /// Counts the bytes read through it.
    struct Counting<R> {
        inner: R,
        read: u64,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn a_tail_reads_from_the_end_only_what_it_needs() {
        let record = |n: u32| {
            format!(
                r#"{{"run_id":"{n:020x}","server":"a","task_key":"k","trigger":"manual","triggered_at":"2026-11-27T02:30:00Z","outcome":"completed","attempts":1,"scheduler_version":"0.1.0"}}"#
            )
        };
        let mut text = "not a record\n".repeat(100_000);
        for n in 0..10 {
            text.push_str(&record(n));
            text.push('\n');
        }
        let len = text.len() as u64;
        let path = Path::new("/x/a.jsonl");
        let mut file = Counting {
            inner: io::Cursor::new(text.into_bytes()),
            read: 0,
        };
        let tail = tail_of(&mut file, len, 3, path).unwrap();
        let ids: Vec<&str> = tail
            .records
            .iter()
            .map(|r| r.record.run_id.as_str())
            .collect();
        assert_eq!(ids, [7, 8, 9].map(|n| format!("{n:020x}")));
        assert!(tail.warnings.is_empty(), "{:?}", tail.warnings);
        assert_eq!(file.read, TAIL_BLOCK, "one block of a {len}-byte file");

        // More records than one block holds: blocks of twice the size, up to the start.
        let mut file = Counting {
            inner: file.inner,
            read: 0,
        };
        let tail = tail_of(&mut file, len, 11, path).unwrap();
        assert_eq!(tail.records.len(), 10);
        assert_eq!(tail.warnings.len(), 100_000);
        assert!(file.read > len, "read up to the start: {} bytes", file.read);
    }

    #[test]
    fn parse_counts_lines_from_one_and_keeps_an_unterminated_complete_record() {
        let p = Path::new("/x/a.jsonl");
        let r = parse(b"", p);
        assert!(r.records.is_empty() && r.warnings.is_empty());
        let r = parse(b"\n\n  \n", p);
        assert!(r.records.is_empty() && r.warnings.is_empty(), "{r:?}");
        let r = parse(b"{\"x\":1}\n{\"y\"", p);
        assert_eq!(r.warnings.len(), 2, "{r:?}");
        assert!(
            r.warnings[0].contains("line 1 is not a valid run record"),
            "{r:?}"
        );
        assert!(r.warnings[1].contains("last line is incomplete"), "{r:?}");
        // Complete JSON without its newline is not torn: it is reported as a bad record
        // (here), or kept if it is one (tests/history.rs).
        let r = parse(b"{\"x\":1}", p);
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("line 1 is not a valid run record"),
            "{r:?}"
        );
    }
}
