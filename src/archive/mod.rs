//! The archive of verified exports: every run verified as a completed Export leaves its
//! ZIP (the plugin's `LastExportZipBase64`) in `<archive dir>/<server>/`, proven to be
//! that run's, checksummed, optionally age-encrypted, and pruned restic-style.
//!
//! # One read, not two
//!
//! The ZIP is taken from the **verify read** itself: the one `GET
//! /Plugins/{id}/Configuration` that judges the run also streams the ZIP to disk
//! ([`read_keeping`]), rather than a second read after the verdict. One response is one
//! snapshot of the configuration, so the `LastExportLog` that judges the run and the ZIP
//! whose `export.log` must equal it come from the same moment: a queued follow-up run
//! cannot slip its log or its ZIP in between two reads (the plugin writes the log first
//! and the ZIP last, so a second read could pair this run's log with the next run's
//! ZIP, or the reverse). It also moves the document over the network once instead of
//! twice. The price is that the ZIP is written before the verdict is known; a run that is
//! not a good export just has its temporary file removed. The preflight, and a
//! verification without the archive, stop reading once they have the fields they need
//! (`jellyfin::members`); this read goes on through the ZIP and stops after it, so an
//! Import upload stored after the ZIP is not read.
//!
//! # What happens to a run
//!
//! 1. [`read_keeping`]: stage the ZIP ([`stage`]) while the configuration is read; the
//!    ZIP is checked as it passes ([`zipcheck`]): every entry's CRC, the central
//!    directory, `export.log`'s SHA-256, the users in `users_basic.json`.
//! 2. The run's verdict (`crate::migrator::judge`); for an export, [`Staged::prove`]: its
//!    `export.log` is this run's `LastExportLog`.
//! 3. [`keep`]: rename into place, sync the folder, then prune ([`retention`]).
//!
//! A failure at any step makes the run `failed` with a reason beginning
//! [`FAILURE_PREFIX`]; only the temporary file is removed, nothing older is touched, and
//! no pruning happens.

pub mod encrypt;
pub mod retention;
pub mod stage;
pub mod store;
pub mod zipcheck;

use crate::jellyfin::model::MigratorConfig;
use crate::jellyfin::zip_field::NotBase64;
use crate::jellyfin::{JellyfinClient, JellyfinError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use encrypt::Recipients;
use retention::Retention;
use stage::Stage;
pub use stage::Staged;
use std::io;
use std::path::{Path, PathBuf};
pub use store::FolderStats;

/// How the reason of a run that exported but was not archived begins.
pub const FAILURE_PREFIX: &str = "exported on the server, but not archived: ";

/// A server's archive settings, as the config resolves them.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveSettings {
    pub enabled: bool,
    /// `None`: `<state_dir>/archive`.
    pub dir: Option<PathBuf>,
    /// The rules set ([`Retention::DEFAULT`] applies when none is).
    pub retention: Retention,
    /// Empty: files are not encrypted.
    pub recipients: Recipients,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            enabled: true,
            dir: None,
            retention: Retention::default(),
            recipients: Recipients::default(),
        }
    }
}

impl ArchiveSettings {
    /// The archive's folder for a daemon whose state directory is `state_dir`.
    pub fn root(&self, state_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| state_dir.join("archive"))
    }

    /// The policy in force: the rules set, or the default when none is.
    pub fn policy(&self) -> Retention {
        if self.retention.is_unset() {
            Retention::DEFAULT
        } else {
            self.retention
        }
    }
}

/// Where and how one run's export is kept.
#[derive(Clone, Debug)]
pub struct Keeper {
    /// `<archive dir>/<server>`.
    pub dir: PathBuf,
    pub server: String,
    pub run_id: String,
    pub recipients: Recipients,
    pub policy: Retention,
    /// The server's timezone: the days, weeks and months of retention.
    pub timezone: Tz,
}

/// An archived run, as its record tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub path: PathBuf,
    /// The file on disk: its size and SHA-256 (what `sha256sum` prints).
    pub bytes: u64,
    pub sha256: String,
    pub encrypted: bool,
    /// The ZIP itself (the same as the file's when not encrypted).
    pub zip_bytes: u64,
    pub zip_sha256: String,
    pub entries: u64,
    pub users: u64,
}

/// Why a run's export was not archived. `Display` is what follows [`FAILURE_PREFIX`].
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "the plugin's configuration holds no LastExportZipBase64: the plugin stored no ZIP yet (building this run's ZIP failed; Jellyfin's log says why)"
    )]
    NoZip,
    #[error(
        "the plugin's configuration holds LastExportZipBase64 more than once; which one is this run's cannot be told"
    )]
    Repeated,
    #[error("{0}")]
    NotBase64(NotBase64),
    #[error("LastExportZipBase64 is not a readable ZIP: {0}")]
    NotAZip(String),
    #[error("the ZIP in LastExportZipBase64 holds no {0}, so it is not a Migrator export")]
    Missing(&'static str),
    #[error("users_basic.json in the ZIP is not a list of users: {0}")]
    Users(String),
    #[error(
        "the ZIP in LastExportZipBase64 is an earlier run's: its export.log is not this run's LastExportLog (the plugin keeps the previous ZIP when building a run's ZIP fails; Jellyfin's log says why)"
    )]
    Stale,
    #[error("cannot {action} {}: {source}; {}", path.display(), hint(source.kind()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the archive writer stopped: {0}")]
    Writer(String),
}

/// What to do about an I/O error on the archive, by kind.
fn hint(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind::*;
    match kind {
        PermissionDenied => {
            "make the archive folder writable by the user the scheduler runs as, or set [archive] dir to one it may write (under systemd: StateDirectory= or ReadWritePaths=)"
        }
        StorageFull | QuotaExceeded => {
            "free some disk space, or keep fewer archives (keep_* in [archive])"
        }
        ReadOnlyFilesystem => {
            "the filesystem is read-only; set [archive] dir to a writable place (under systemd, list it in ReadWritePaths=)"
        }
        NotADirectory => "a file is in the way of the archive folder; move it away",
        _ => "check the disk and the archive folder",
    }
}

/// The verify read that keeps the ZIP: the plugin's configuration, and the ZIP it held,
/// written to a temporary file in `keeper`'s folder and checked, or why it could not be.
/// The read's own failure is the caller's, as for a plain read.
pub async fn read_keeping(
    client: &JellyfinClient,
    keeper: &Keeper,
) -> Result<(MigratorConfig, Result<Staged, ArchiveError>), JellyfinError> {
    let stage = Stage::begin(keeper);
    let read = client.migrator_config_with_export(stage.sender()).await;
    let staged = stage.finish().await;
    let (config, zip) = read?;
    let staged = match (zip.occurrences, zip.invalid) {
        (0, _) => Err(ArchiveError::NoZip),
        (_, Some(e)) => Err(ArchiveError::NotBase64(e)),
        (n, None) if n > 1 => Err(ArchiveError::Repeated),
        _ => staged,
    };
    Ok((config, staged))
}

/// What [`keep`] did.
#[derive(Debug)]
pub struct Kept {
    pub archived: Archived,
    /// Files retention deleted.
    pub pruned: Vec<PathBuf>,
    /// Files retention could not delete (or list), as sentences: the archive itself is
    /// fine, so these are warnings.
    pub prune_errors: Vec<String>,
    /// The server's folder afterwards.
    pub stats: FolderStats,
}

/// Put a proven ZIP in place as the run of `taken_at` (Jellyfin's start), then prune.
/// Blocking (renames, fsyncs, deletes).
pub fn keep(
    staged: Staged,
    keeper: &Keeper,
    taken_at: DateTime<Utc>,
) -> Result<Kept, ArchiveError> {
    let name = store::file_name(&keeper.server, taken_at, &keeper.run_id, staged.encrypted);
    let archived = staged.commit(&name)?;
    let (mut pruned, mut prune_errors) = (Vec::new(), Vec::new());
    match store::prune(
        &keeper.dir,
        &keeper.server,
        &keeper.policy,
        keeper.timezone,
        false,
    ) {
        Ok(fates) => {
            for f in fates.into_iter().filter(|f| f.keep.is_empty()) {
                match f.error {
                    None => pruned.push(f.file.path),
                    Some(e) => {
                        prune_errors.push(format!("cannot delete {}: {e}", f.file.path.display()))
                    }
                }
            }
        }
        Err(e) => prune_errors.push(format!("cannot prune {}: {e}", keeper.dir.display())),
    }
    let stats = store::list(&keeper.dir, &keeper.server)
        .map(|files| store::stats(&files))
        .unwrap_or_default();
    Ok(Kept {
        archived,
        pruned,
        prune_errors,
        stats,
    })
}
