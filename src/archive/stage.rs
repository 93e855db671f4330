//! Writing a run's ZIP as it arrives: on a blocking thread, pieces come off a bounded
//! channel, go through SHA-256 and (when the server has recipients) age encryption into
//! a temporary file, while [`zipcheck`] reads them as a ZIP. At the end
//! the file is flushed and fsynced; it becomes the archive only when the runner renames
//! it ([`Staged::commit`]). Dropped before that, at any point, it is removed.
//!
//! Memory stays flat whatever the ZIP's size: the channel holds a few 64 KiB pieces, and
//! the reader, the encryptor and the file each buffer one more.

use super::encrypt::Recipients;
use super::store::{self, FILE_MODE};
use super::zipcheck::{self, EXPORT_LOG, USERS_FILE, ZipFacts, ZipProblem};
use super::{ArchiveError, Archived, Keeper};
use crate::digest::hex;
use ring::digest::{Context, SHA256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Pieces of ZIP waiting for the writer: with the client's 64 KiB pieces, half a
/// megabyte at most.
const QUEUE: usize = 8;

/// A ZIP being written: the sender for its pieces and the writer's outcome.
pub struct Stage {
    tx: mpsc::Sender<Vec<u8>>,
    writer: tokio::task::JoinHandle<Result<Staged, ArchiveError>>,
}

impl Stage {
    /// Start writing `keeper`'s run into its folder.
    pub fn begin(keeper: &Keeper) -> Stage {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (dir, run_id, recipients) = (
            keeper.dir.clone(),
            keeper.run_id.clone(),
            keeper.recipients.clone(),
        );
        let writer = tokio::task::spawn_blocking(move || write(rx, &dir, &run_id, &recipients));
        Stage { tx, writer }
    }

    pub fn sender(&self) -> &mpsc::Sender<Vec<u8>> {
        &self.tx
    }

    /// No more pieces: wait for the file to be complete and synced.
    pub async fn finish(self) -> Result<Staged, ArchiveError> {
        drop(self.tx);
        self.writer
            .await
            .unwrap_or_else(|e| Err(ArchiveError::Writer(e.to_string())))
    }
}

/// A complete, synced temporary file and what was read in it; removed when dropped
/// unless committed.
#[derive(Debug)]
pub struct Staged {
    temp: TempFile,
    pub facts: ZipFacts,
    pub zip_bytes: u64,
    pub zip_sha256: String,
    pub file_bytes: u64,
    pub file_sha256: String,
    pub encrypted: bool,
}

impl Staged {
    /// The proof that this ZIP is the run's export: it holds `export.log`, whose content
    /// is `log` (the run's `LastExportLog`), and `users_basic.json`, an array of users.
    pub fn prove(self, log: Option<&str>) -> Result<Staged, ArchiveError> {
        let Some(log_hash) = self.facts.export_log_sha256 else {
            return Err(ArchiveError::Missing(EXPORT_LOG));
        };
        match &self.facts.users {
            None => return Err(ArchiveError::Missing(USERS_FILE)),
            Some(Err(why)) => return Err(ArchiveError::Users(why.clone())),
            Some(Ok(_)) => {}
        }
        let want = ring::digest::digest(&SHA256, log.unwrap_or("").as_bytes());
        if log_hash[..] != *want.as_ref() {
            return Err(ArchiveError::Stale);
        }
        Ok(self)
    }

    /// Rename the file to `name` in its folder and sync the folder: the archive now holds
    /// the run.
    pub fn commit(mut self, name: &str) -> Result<Archived, ArchiveError> {
        let dir = self
            .temp
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = dir.join(name);
        fs::rename(&self.temp.path, &path).map_err(|source| ArchiveError::Io {
            action: "rename the written archive to",
            path: path.clone(),
            source,
        })?;
        self.temp.committed = true;
        store::sync_dir(&dir).map_err(|source| ArchiveError::Io {
            action: "sync the archive folder",
            path: dir,
            source,
        })?;
        Ok(Archived {
            path,
            bytes: self.file_bytes,
            sha256: self.file_sha256.clone(),
            encrypted: self.encrypted,
            zip_bytes: self.zip_bytes,
            zip_sha256: self.zip_sha256.clone(),
            entries: self.facts.entries,
            users: self.facts.users.clone().and_then(Result::ok).unwrap_or(0),
        })
    }
}

/// The temporary file; removed on drop unless committed.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The blocking writer: folder, temporary file, the pipeline, sync.
fn write(
    rx: mpsc::Receiver<Vec<u8>>,
    dir: &Path,
    run_id: &str,
    recipients: &Recipients,
) -> Result<Staged, ArchiveError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Io {
            action,
            path,
            source,
        }
    };
    store::ensure_dir(dir).map_err(io_error("create the archive folder", dir))?;
    store::remove_partials(dir);
    let path = dir.join(store::partial_name(run_id));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(io_error("create", &path))?;
    let temp = TempFile {
        path: path.clone(),
        committed: false,
    };
    let encrypted = !recipients.is_empty();
    let hashed = HashingFile {
        out: BufWriter::with_capacity(64 * 1024, file),
        // A plain file is the ZIP: its hash is the ZIP's, computed once.
        hash: encrypted.then(|| Context::new(&SHA256)),
        bytes: 0,
    };
    let output = if !encrypted {
        Output::Plain(hashed)
    } else {
        Output::Age(Box::new(
            recipients
                .encrypt(hashed)
                .map_err(io_error("write", &path))?,
        ))
    };
    let mut input = Pieces {
        rx,
        piece: Vec::new(),
        at: 0,
        tee: Tee {
            output,
            hash: Context::new(&SHA256),
            bytes: 0,
        },
    };
    let facts = match zipcheck::inspect(&mut input) {
        Ok(facts) => facts,
        Err(ZipProblem::Read(source)) => return Err(io_error("write", &path)(source)),
        Err(ZipProblem::Format(detail)) => return Err(ArchiveError::NotAZip(detail)),
    };
    let Tee {
        output,
        hash,
        bytes,
    } = input.tee;
    let mut file = output.finish().map_err(io_error("write", &path))?;
    file.out.flush().map_err(io_error("write", &path))?;
    file.out
        .get_ref()
        .sync_all()
        .map_err(io_error("sync", &path))?;
    let zip_sha256 = hex(hash.finish().as_ref());
    Ok(Staged {
        temp,
        facts,
        zip_bytes: bytes,
        file_sha256: match file.hash {
            Some(h) => hex(h.finish().as_ref()),
            None => zip_sha256.clone(),
        },
        zip_sha256,
        file_bytes: file.bytes,
        encrypted,
    })
}

/// The ZIP's pieces as a `Read`, each piece written out (hashed, encrypted, to the
/// file) as it is taken off the channel.
struct Pieces {
    rx: mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
    tee: Tee,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            match self.rx.blocking_recv() {
                Some(piece) => {
                    self.tee.write_all(&piece)?;
                    (self.piece, self.at) = (piece, 0);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The ZIP's SHA-256 and size, and the output.
struct Tee {
    output: Output,
    hash: Context,
    bytes: u64,
}

impl Tee {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.hash.update(data);
        self.bytes += data.len() as u64;
        match &mut self.output {
            Output::Plain(f) => f.write_all(data),
            Output::Age(w) => w.write_all(data),
        }
    }
}

// One per archive being written, never in bulk: boxing the plain writer buys nothing.
#[allow(clippy::large_enum_variant)]
enum Output {
    Plain(HashingFile),
    Age(Box<age::stream::StreamWriter<HashingFile>>),
}

impl Output {
    fn finish(self) -> io::Result<HashingFile> {
        match self {
            Output::Plain(f) => Ok(f),
            Output::Age(w) => w.finish(),
        }
    }
}

/// The file, with the size (and, when it is not the ZIP itself, the SHA-256) of what is
/// written to it.
struct HashingFile {
    out: BufWriter<File>,
    hash: Option<Context>,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.out.write(data)?;
        if let Some(h) = &mut self.hash {
            h.update(&data[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
