//! In-flight markers: a run that Jellyfin accepted but whose outcome is not recorded yet.
//!
//! When a run starts, a marker `<state_dir>/inflight/<server>.json` is written (atomically:
//! temp file, fsync, rename, fsync of the directory) with everything needed to resume
//! tracking: the run id, the task id, the pre-start snapshot and the times. It is removed
//! once the run's record is in the history file. A process that dies in between (SIGKILL,
//! crash, reboot, a `trigger --no-wait`) leaves the marker, and the next process that takes
//! the server's lock resumes the run from it and records its real outcome once.
//!
//! "Once" holds across a crash between appending the record and removing the marker: a
//! marker whose run id is already in the history is simply removed.

use crate::record::RunRequest;
use crate::runner::track::Started;
use crate::state::{StateDir, write_private_file};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The marker file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// What asked for the run. Its fields sit at the top of the file, as they always have
    /// (`tests/fixtures/inflight/v1.json`).
    #[serde(flatten)]
    pub request: RunRequest,
    pub server: String,
    pub task_key: String,
    pub started: Started,
    /// The process that wrote it (for people reading the file).
    pub pid: u32,
    pub scheduler_version: String,
}

impl Marker {
    pub fn new(server: &str, task_key: &str, request: &RunRequest, started: &Started) -> Marker {
        Marker {
            request: request.clone(),
            server: server.to_owned(),
            task_key: task_key.to_owned(),
            started: started.clone(),
            pid: std::process::id(),
            scheduler_version: crate::record::SCHEDULER_VERSION.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("cannot write in-flight marker {}: {source}; if this process stops before the run ends, the run's outcome will not be recorded", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read in-flight marker {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("in-flight marker {} is not readable ({source}); it was moved to {}.corrupt", path.display(), path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// PostgreSQL: the snapshot (the marker, kept in the run's claim) was not stored.
    #[error(
        "cannot store the run's snapshot in its claim: {0}; if this instance stops before the run ends, the instance that takes over cannot follow it and records it as interrupted"
    )]
    Snapshot(crate::postgres::PgError),
    /// PostgreSQL: another instance adopted the run's claim; it follows the run now.
    #[error(
        "another instance took this run over (its claim is no longer this process's); it follows the run and records it"
    )]
    TakenOver,
    #[error("cannot remove in-flight marker {}: {source}; the run was recorded, and the marker will be cleared at the next start", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The markers of one state directory.
#[derive(Clone, Debug)]
pub struct Markers {
    dir: PathBuf,
}

impl Markers {
    pub fn new(state: &StateDir) -> Markers {
        Markers {
            dir: state.inflight_dir(),
        }
    }

    fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.json"))
    }

    /// Write (or replace) the marker of a server's run, durably.
    pub fn write(&self, marker: &Marker) -> Result<(), MarkerError> {
        let path = self.path(&marker.server);
        let err = |source| MarkerError::Write {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(marker).map_err(|e| err(std::io::Error::other(e)))?;
        let spare = self.spare(&marker.server);
        match write_private_file(&spare, &json) {
            // A spare left by another user (a `trigger` run as root): ours is made anew.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                std::fs::remove_file(&spare).map_err(err)?;
                write_private_file(&spare, &json).map_err(err)?;
            }
            written => written.map_err(err)?,
        }
        std::fs::rename(&spare, &path).map_err(err)?;
        sync_dir(&self.dir).map_err(err)?;
        Ok(())
    }

    /// The server's spare file, `.<server>.json.tmp`: a marker is written there and renamed
    /// into place, and a cleared marker is renamed back there. So a server's runs re-use
    /// one file instead of creating and deleting one each (1000 file creations in one
    /// second cost the fleet benchmark's start phase 12% of the daemon's CPU).
    fn spare(&self, server: &str) -> PathBuf {
        self.dir.join(format!(".{server}.json.tmp"))
    }

    /// Creates the server's spare file if it is missing (the daemon does so when it arms
    /// the server), so that even its first run creates no file.
    pub fn prepare(&self, server: &str) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.spare(server))
            .map(drop)
    }

    /// The marker of a server, if one was left. A corrupt marker is moved aside (so it does
    /// not block the server forever) and reported.
    pub fn read(&self, server: &str) -> Result<Option<Marker>, MarkerError> {
        let path = self.path(server);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MarkerError::Read { path, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(source) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(&path, &aside);
                Err(MarkerError::Corrupt { path, source })
            }
        }
    }

    /// Servers that have a marker, sorted.
    pub fn servers(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let server = name.strip_suffix(".json")?;
                (!server.starts_with('.')).then(|| server.to_owned())
            })
            .collect();
        out.sort();
        out
    }

    /// Remove a server's marker if it is the one of run `run_id` (a marker of another run
    /// is not ours to clear: that run is not recorded yet).
    pub fn remove_if_run(&self, server: &str, run_id: &str) -> Result<(), MarkerError> {
        match self.read(server) {
            Ok(Some(m)) if m.request.run_id == run_id => self.remove(server),
            Ok(_) | Err(MarkerError::Corrupt { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Remove a server's marker after its run was recorded: it becomes the server's spare
    /// file (see [`Markers::spare`]).
    pub fn remove(&self, server: &str) -> Result<(), MarkerError> {
        let path = self.path(server);
        match std::fs::rename(&path, self.spare(server)) {
            Ok(()) => sync_dir(&self.dir).map_err(|source| MarkerError::Remove { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(MarkerError::Remove { path, source }),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Trigger;
    use crate::runner::track::SnapshotResult;
    use chrono::Utc;

    fn marker(server: &str) -> Marker {
        let now = Utc::now();
        Marker::new(
            server,
            "JellyfinMigratorExport",
            &RunRequest {
                run_id: crate::record::new_run_id(now),
                trigger: Trigger::Schedule,
                scheduled_for: Some(now),
                triggered_at: now,
            },
            &Started {
                task_id: "d6eb93f1d1591e7d5e6c70f1d25e6fdd".into(),
                snapshot: Some(SnapshotResult {
                    start: Some(now),
                    end: None,
                    status: Some("Completed".into()),
                }),
                accepted_at: now,
                attempts: 1,
                followed: false,
            },
        )
    }

    #[test]
    fn write_read_remove_roundtrip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let markers = Markers::new(&state);
        assert_eq!(markers.read("a").unwrap(), None);
        let m = marker("a");
        markers.write(&m).unwrap();
        assert_eq!(markers.read("a").unwrap(), Some(m));
        assert_eq!(markers.servers(), ["a"]);
        let mode = std::fs::metadata(state.inflight_dir().join("a.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        markers.remove("a").unwrap();
        assert_eq!(markers.read("a").unwrap(), None);
        assert!(markers.servers().is_empty());
        markers.remove("a").unwrap();
    }

    #[test]
    fn runs_of_a_prepared_server_reuse_one_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let markers = Markers::new(&state);
        markers.prepare("a").unwrap();
        let inode =
            |name: &str| std::fs::metadata(state.inflight_dir().join(name)).map(|m| m.ino());
        let spare = inode(".a.json.tmp").unwrap();
        for _ in 0..3 {
            let m = marker("a");
            markers.write(&m).unwrap();
            assert_eq!(
                inode("a.json").unwrap(),
                spare,
                "the marker is the spare renamed"
            );
            assert!(
                inode(".a.json.tmp").is_err(),
                "no spare while a marker is written"
            );
            assert_eq!(markers.read("a").unwrap(), Some(m));
            markers.remove("a").unwrap();
            assert_eq!(
                inode(".a.json.tmp").unwrap(),
                spare,
                "the cleared marker is the spare"
            );
            assert_eq!(markers.read("a").unwrap(), None);
            assert!(markers.servers().is_empty(), "the spare is not a marker");
        }
        // Preparing again keeps the spare (and whatever it holds) as it is.
        markers.prepare("a").unwrap();
        assert_eq!(inode(".a.json.tmp").unwrap(), spare);
    }

    #[test]
    fn corrupt_marker_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let markers = Markers::new(&state);
        std::fs::write(state.inflight_dir().join("a.json"), b"{\"run_id\": tor").unwrap();
        let err = markers.read("a").unwrap_err().to_string();
        assert!(err.contains("is not readable"), "{err}");
        assert_eq!(markers.read("a").unwrap(), None);
        assert!(state.inflight_dir().join("a.json.corrupt").exists());
    }
}
