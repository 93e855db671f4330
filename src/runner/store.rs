//! Where a run's life is kept between its start and its record, and where the record
//! goes: the one interface [`Runner`](super::Runner) composes a run through, whatever the
//! backend (`[daemon] backend`).
//!
//! The files backend ([`RunStore::Files`]) is what the scheduler always did: an in-flight
//! marker in the state directory while the run goes, a line appended to the server's
//! history file at its end, then the marker removed. The caller holds the server's lock
//! file for the run.
//!
//! The PostgreSQL backend ([`RunStore::Postgres`], docs/high-availability.md) works on the
//! run's claim, inserted by the caller before the run under its lease epoch, and fences
//! every write with that epoch and the claim's holder: a left-over run is an adopted claim handed to the runner
//! ([`Runner::resume_adopted`](super::Runner::resume_adopted)), not something it looks
//! for; "before the start request" marks the claim `posting`; "started" stores the marker
//! as the claim's snapshot; the record is written in the statement that marks the claim
//! done. Once another instance has adopted the claim (a newer epoch, or the leader taking
//! over a `trigger`'s claim gone stale), each of these changes nothing and says so.
//!
//! File writes are blocking (fsync), so they run on tokio's blocking pool, on the
//! runner's [`DiskPermits`].

use super::marker::{Marker, MarkerError, Markers};
use super::{DiskPermits, RecordError};
use crate::history::History;
use crate::postgres::{PgError, Session, claims};
use crate::record::RunRecord;
use crate::state::StateDir;
use std::sync::Arc;
use tracing::{info, warn};

/// Whether the start request may be sent.
#[derive(Debug)]
pub enum BeforeStart {
    Send,
    /// The claim was adopted by another instance: send nothing, it goes on with the run.
    TakenOver,
    /// The claim could not be marked: send nothing (the claim stays `claimed`, so whoever
    /// holds it next starts it).
    Unmarked(PgError),
}

/// A backend's side of a run, cheap to clone.
#[derive(Clone, Debug)]
pub enum RunStore {
    /// The state directory: in-flight markers and history JSON Lines.
    Files {
        history: Arc<History>,
        markers: Markers,
        disk: DiskPermits,
    },
    /// The claim of one run in PostgreSQL, held by `holder` under lease epoch `epoch`.
    Postgres {
        db: Arc<Session>,
        epoch: i64,
        holder: Arc<str>,
    },
}

impl RunStore {
    /// The files backend on `state`, its writes on `disk`'s permits.
    pub fn files(state: &StateDir, disk: DiskPermits) -> RunStore {
        RunStore::Files {
            history: Arc::new(History::new(state)),
            markers: Markers::new(state),
            disk,
        }
    }

    /// The PostgreSQL backend for runs claimed by `holder` under lease epoch `epoch`.
    /// Epochs start at 1, so a store with epoch 0 changes nothing and starts nothing.
    pub fn postgres(db: Arc<Session>, epoch: i64, holder: &str) -> RunStore {
        RunStore::Postgres {
            db,
            epoch,
            holder: Arc::from(holder),
        }
    }

    /// The run an earlier process left in flight on `server`, if any: one the runner must
    /// finish before it starts another.
    pub fn left_over(&self, server: &str) -> Result<Option<Marker>, MarkerError> {
        match self {
            RunStore::Files { markers, .. } => markers.read(server),
            RunStore::Postgres { .. } => Ok(None),
        }
    }

    /// Forget the left-over run of `server` whose record is written already (a crash
    /// between writing the record and clearing its marker).
    pub fn clear_left_over(&self, server: &str, run_id: &str) {
        match self {
            RunStore::Files { markers, .. } => {
                if let Err(e) = markers.remove(server) {
                    warn!(server = %server, run_id = %run_id, error = %e, "marker not removed");
                }
            }
            RunStore::Postgres { .. } => {}
        }
    }

    /// Whether `run_id`'s record is written already.
    pub async fn already_recorded(&self, server: &str, run_id: &str) -> bool {
        match self {
            RunStore::Files { history, disk, .. } => {
                let history = history.clone();
                let (server, run_id) = (server.to_owned(), run_id.to_owned());
                disk.run(move || {
                    history
                        .read(&server)
                        .map(|r| r.records.iter().any(|s| s.record.run_id == run_id))
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false)
            }
            // A claim is done exactly when its record is written, and an adopted claim
            // is never done.
            RunStore::Postgres { .. } => false,
        }
    }

    /// Just before the start request (files: nothing to do).
    pub async fn before_start(&self, run_id: &str) -> BeforeStart {
        match self {
            RunStore::Files { .. } => BeforeStart::Send,
            RunStore::Postgres { db, epoch, holder } => {
                let (epoch, holder) = (*epoch, &**holder);
                match db
                    .with(|c| async move { claims::posting(&c, run_id, epoch, holder).await })
                    .await
                {
                    Ok(true) => BeforeStart::Send,
                    Ok(false) => BeforeStart::TakenOver,
                    Err(e) => BeforeStart::Unmarked(e),
                }
            }
        }
    }

    /// Jellyfin accepted the start: keep what resuming the run needs.
    pub async fn started(&self, marker: Marker) -> Result<(), MarkerError> {
        match self {
            RunStore::Files { markers, disk, .. } => {
                let markers = markers.clone();
                disk.run(move || markers.write(&marker))
                    .await
                    .unwrap_or_else(|e| {
                        Err(MarkerError::Write {
                            path: std::path::PathBuf::from("inflight"),
                            source: std::io::Error::other(e.to_string()),
                        })
                    })
            }
            RunStore::Postgres { db, epoch, holder } => {
                let (epoch, holder) = (*epoch, &**holder);
                let snapshot = serde_json::to_value(&marker)
                    .map_err(|e| MarkerError::Snapshot(PgError::Encode(e.to_string())))?;
                let run_id = marker.request.run_id.as_str();
                let stored =
                    db.with(|c| async move {
                        claims::started(&c, run_id, epoch, holder, &snapshot).await
                    })
                    .await
                    .map_err(MarkerError::Snapshot)?;
                if stored {
                    Ok(())
                } else {
                    Err(MarkerError::TakenOver)
                }
            }
        }
    }

    /// Write the run's record and close its life (the marker cleared): a crash between the
    /// two leaves a left-over whose record is written, which the next start just clears.
    pub async fn record(
        &self,
        record: RunRecord,
        history_limit: usize,
    ) -> Result<RunRecord, RecordError> {
        match self {
            RunStore::Files {
                history,
                markers,
                disk,
            } => {
                let (history, markers) = (history.clone(), markers.clone());
                disk.run(move || append_then_clear(&history, &markers, record, history_limit))
                    .await
                    .unwrap_or_else(|e| Err(RecordError::Join(e.to_string())))
            }
            RunStore::Postgres { db, epoch, holder } => {
                finish(db, (*epoch, holder), record, history_limit).await
            }
        }
    }

    /// Write again the records refused earlier; returns those still refused. (A record
    /// whose claim another instance adopted meanwhile is dropped: that instance records
    /// the run.)
    pub async fn record_again(&self, pending: Vec<(RunRecord, usize)>) -> Vec<(RunRecord, usize)> {
        match self {
            RunStore::Files {
                history,
                markers,
                disk,
            } => {
                let (history, markers) = (history.clone(), markers.clone());
                disk.run(move || append_again(&history, &markers, pending))
                    .await
                    .unwrap_or_default()
            }
            RunStore::Postgres { db, epoch, holder } => {
                let mut still = Vec::new();
                for (record, limit) in pending {
                    match finish(db, (*epoch, holder), record, limit).await {
                        Ok(r) => {
                            info!(server = %r.server, run_id = %r.run_id, "record written after an earlier failure");
                        }
                        Err(RecordError::Database { record, source }) => {
                            warn!(server = %record.server, run_id = %record.run_id, error = %source, "record still not written; will try again");
                            still.push((*record, limit));
                        }
                        Err(e) => warn!(error = %e, "record dropped"),
                    }
                }
                still
            }
        }
    }
}

/// The record, with the claim marked done and the server's history trimmed to
/// `history_limit`, in one statement fenced by the claim's epoch and holder.
async fn finish(
    db: &Session,
    (epoch, holder): (i64, &str),
    record: RunRecord,
    history_limit: usize,
) -> Result<RunRecord, RecordError> {
    // The line a history file would hold: the readers show both backends alike.
    let line = match serde_json::to_string(&record) {
        Ok(line) => line,
        Err(e) => {
            return Err(RecordError::Database {
                record: Box::new(record),
                source: PgError::Encode(e.to_string()),
            });
        }
    };
    let (run_id, at) = (record.run_id.as_str(), record.triggered_at);
    let written = db
        .with(|c| {
            let line = line.as_str();
            async move { claims::finish(&c, run_id, (epoch, holder), at, line, history_limit).await }
        })
        .await;
    match written {
        Ok(true) => Ok(record),
        Ok(false) => Err(RecordError::TakenOver {
            record: Box::new(record),
            epoch,
        }),
        Err(source) => Err(RecordError::Database {
            record: Box::new(record),
            source,
        }),
    }
}

/// [`RunStore::record`]'s blocking part for files.
fn append_then_clear(
    history: &History,
    markers: &Markers,
    record: RunRecord,
    history_limit: usize,
) -> Result<RunRecord, RecordError> {
    if let Err(source) = history.append(&record, history_limit) {
        // The marker stays: the next process resumes the run and records it.
        return Err(RecordError::History {
            record: Box::new(record),
            source,
        });
    }
    if let Err(e) = markers.remove_if_run(&record.server, &record.run_id) {
        warn!(server = %record.server, run_id = %record.run_id, error = %e, "marker not removed");
    }
    Ok(record)
}

/// [`RunStore::record_again`]'s blocking part for files.
fn append_again(
    history: &History,
    markers: &Markers,
    pending: Vec<(RunRecord, usize)>,
) -> Vec<(RunRecord, usize)> {
    let mut still = Vec::new();
    for (record, limit) in pending {
        match history.append(&record, limit) {
            Ok(()) => {
                tracing::info!(server = %record.server, run_id = %record.run_id, "record written after an earlier failure");
                let _ = markers.remove_if_run(&record.server, &record.run_id);
            }
            Err(e) => {
                warn!(server = %record.server, run_id = %record.run_id, error = %e, "record still not written; will try again");
                still.push((record, limit));
            }
        }
    }
    still
}
