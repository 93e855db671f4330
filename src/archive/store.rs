//! The archive on disk: one folder per server, one file per archived run.
//!
//! ```text
//! <archive dir>/                    0700 when we create it
//!   <server>/                       0700
//!     <server>-<yyyymmddThhmmssZ>-<run_id>.zip       0600, the run's ZIP
//!     <server>-<yyyymmddThhmmssZ>-<run_id>.zip.age   0600, the same, encrypted
//!     .<run_id>.partial                              a file being written
//! ```
//!
//! The time is Jellyfin's start of the run, in UTC. Only names of exactly this form are
//! ever listed, pruned or deleted: anything else in the folder is someone else's.

use super::retention::{self, Keep, Retention};
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Mode of the folders we create, and of the files (the export holds password hashes and
/// device tokens).
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;
const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// One archived run's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: PathBuf,
    pub server: String,
    /// Jellyfin's start of the run (from the name).
    pub taken_at: DateTime<Utc>,
    pub run_id: String,
    pub encrypted: bool,
    pub bytes: u64,
    pub modified: Option<SystemTime>,
}

/// The file name of a run's archive.
pub fn file_name(server: &str, taken_at: DateTime<Utc>, run_id: &str, encrypted: bool) -> String {
    format!(
        "{server}-{}-{run_id}.zip{}",
        taken_at.format(STAMP),
        if encrypted { ".age" } else { "" }
    )
}

/// The name of the file a run's archive is written to before it is complete.
pub fn partial_name(run_id: &str) -> String {
    format!(".{run_id}.partial")
}

/// (time, run id, encrypted) of a name [`file_name`] wrote for `server`; `None` for
/// anything else.
pub fn parse_name(server: &str, name: &str) -> Option<(DateTime<Utc>, String, bool)> {
    let rest = name.strip_prefix(server)?.strip_prefix('-')?;
    let (stem, encrypted) = match rest.strip_suffix(".zip.age") {
        Some(stem) => (stem, true),
        None => (rest.strip_suffix(".zip")?, false),
    };
    let (stamp, run_id) = stem.split_once('-')?;
    if stamp.len() != 16 || !is_run_id(run_id) {
        return None;
    }
    let taken = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?.and_utc();
    Some((taken, run_id.to_owned(), encrypted))
}

/// What `record::new_run_id` makes: 20 lowercase hex digits.
fn is_run_id(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The archive files of `server` in its folder `dir`, oldest first. A folder that does
/// not exist holds none.
pub fn list(dir: &Path, server: &str) -> io::Result<Vec<ArchiveFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((taken_at, run_id, encrypted)) = parse_name(server, &name) else {
            continue;
        };
        // Not following links: a link someone put here is not one of our files.
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        files.push(ArchiveFile {
            path: entry.path(),
            server: server.to_owned(),
            taken_at,
            run_id,
            encrypted,
            bytes: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    files.sort_by(|a, b| (a.taken_at, &a.run_id).cmp(&(b.taken_at, &b.run_id)));
    Ok(files)
}

/// What a server's folder holds: for `/metrics` and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderStats {
    pub files: u64,
    pub bytes: u64,
    /// When the newest file was written.
    pub newest_written: Option<DateTime<Utc>>,
}

pub fn stats(files: &[ArchiveFile]) -> FolderStats {
    FolderStats {
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.bytes).sum(),
        newest_written: files
            .iter()
            .filter_map(|f| f.modified)
            .max()
            .map(DateTime::<Utc>::from),
    }
}

/// Create `dir` and its missing parents, mode 0700. Folders that exist are left as they
/// are: their owner may have chosen their modes.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "a file is in the way of the archive folder",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
        }
        Err(e) => Err(e),
    }
}

/// Flush a folder's entries (a rename or an unlink in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove what an interrupted write left (`.<run_id>.partial`): ours, and never
/// complete. Errors are left for the next time.
pub fn remove_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
            .is_some_and(is_run_id);
        if ours {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// One file's fate under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fate {
    pub file: ArchiveFile,
    /// Empty: deleted (or to be, in a dry run).
    pub keep: Vec<Keep>,
    /// Deleting it failed.
    pub error: Option<String>,
}

/// Apply `policy` to `server`'s files in `dir` (days in `tz`): delete what no rule keeps,
/// unless `dry_run`. Each file's fate, oldest first.
pub fn prune(
    dir: &Path,
    server: &str,
    policy: &Retention,
    tz: Tz,
    dry_run: bool,
) -> io::Result<Vec<Fate>> {
    let files = list(dir, server)?;
    let taken: Vec<DateTime<Utc>> = files.iter().map(|f| f.taken_at).collect();
    let decisions = retention::decide(&taken, policy, tz);
    let mut deleted = false;
    let fates: Vec<Fate> = files
        .into_iter()
        .zip(decisions)
        .map(|(file, keep)| {
            let mut error = None;
            if keep.is_empty() && !dry_run {
                match fs::remove_file(&file.path) {
                    Ok(()) => deleted = true,
                    Err(e) => error = Some(e.to_string()),
                }
            }
            Fate { file, keep, error }
        })
        .collect();
    if deleted {
        sync_dir(dir)?;
    }
    Ok(fates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_written_here_are_ours() {
        let t: DateTime<Utc> = "2026-11-27T02:30:01Z".parse().unwrap();
        let id = "019ac3a1d2400a1b2c3d";
        let name = file_name("living-room", t, id, false);
        assert_eq!(
            name,
            "living-room-20261127T023001Z-019ac3a1d2400a1b2c3d.zip"
        );
        assert_eq!(
            parse_name("living-room", &name),
            Some((t, id.to_owned(), false))
        );
        let age = file_name("living-room", t, id, true);
        assert_eq!(
            parse_name("living-room", &age),
            Some((t, id.to_owned(), true))
        );
        for other in [
            "living-room-20261127T023001Z-019ac3a1d2400a1b2c3d.zip.bak",
            "living-room-20261127T023001Z-019AC3A1D2400A1B2C3D.zip",
            "living-room-20261127T0230Z-019ac3a1d2400a1b2c3d.zip",
            "living-20261127T023001Z-019ac3a1d2400a1b2c3d.zip",
            "living-room-20261127T023001Z-019ac3a1d2400a1b2c3d-copy.zip",
            "my-export.zip",
            ".019ac3a1d2400a1b2c3d.partial",
        ] {
            assert_eq!(parse_name("living-room", other), None, "{other}");
        }
        // A server whose name starts like another's never claims its files.
        assert_eq!(parse_name("living", &name), None);
    }

    #[test]
    fn prune_deletes_only_its_own_files_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let t0: DateTime<Utc> = "2026-11-01T02:30:00Z".parse().unwrap();
        for d in 0..5 {
            let t = t0 + chrono::Duration::days(d);
            let id = format!("{:020x}", d);
            fs::write(dir.path().join(file_name("s", t, &id, d % 2 == 0)), b"zip").unwrap();
        }
        for stranger in [
            "s-notes.txt",
            "s-20261101T023000Z-00000000000000000000.zip.bak",
        ] {
            fs::write(dir.path().join(stranger), b"mine").unwrap();
        }
        let none = Retention::default();
        let dry = prune(dir.path(), "s", &none, chrono_tz::UTC, true).unwrap();
        assert_eq!(dry.iter().filter(|f| f.keep.is_empty()).count(), 4);
        assert_eq!(
            list(dir.path(), "s").unwrap().len(),
            5,
            "a dry run deletes nothing"
        );
        let fates = prune(dir.path(), "s", &none, chrono_tz::UTC, false).unwrap();
        assert_eq!(fates.last().unwrap().keep, [Keep::Newest]);
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&"s-notes.txt".to_owned()));
        assert!(
            left.iter()
                .any(|n| n.ends_with(".zip.age") && n.contains("20261105"))
        );
    }
}
