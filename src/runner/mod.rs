//! A server's run with its bookkeeping: in-flight marker, history record, and the
//! resumption of a run an earlier process left behind.
//!
//! The daemon and `trigger` both go through here, so the guarantees hold for both: a run
//! that Jellyfin accepted has a marker until its record is written; a record is written
//! once per run. The caller holds the server's lock ([`crate::state::ServerLock`]) so no
//! two processes do this for one server at once.
//!
//! History and marker writes are blocking (fsync), so they run on tokio's blocking pool.

pub mod marker;
pub mod track;

use crate::config::ServerConfig;
use crate::history::{History, HistoryError};
use crate::jellyfin::JellyfinClient;
use crate::record::RunRecord;
use crate::record::RunRequest;
use crate::state::StateDir;
use marker::{Marker, MarkerError, Markers};
use std::sync::Arc;
use tracing::{info, warn};
use track::{RunEvents, StartResult};

/// Why a finished run's record could not be made durable. The record itself is kept here
/// so that nothing is lost: the caller can show it and write it again later.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{source}")]
    History {
        record: Box<RunRecord>,
        source: HistoryError,
    },
    #[error("history write did not finish: {0}")]
    Join(String),
}

/// Runs and records on one state directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Runner {
    history: Arc<History>,
    markers: Markers,
}

impl Runner {
    pub fn new(state: &StateDir) -> Runner {
        Runner {
            history: Arc::new(History::new(state)),
            markers: Markers::new(state),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn markers(&self) -> &Markers {
        &self.markers
    }

    /// Run one export and record it.
    pub async fn run(
        &self,
        client: &JellyfinClient,
        server: &ServerConfig,
        request: &RunRequest,
        events: &mut dyn RunEvents,
    ) -> Result<RunRecord, RecordError> {
        let (ended, attempts) = match track::start(client, server, events).await {
            StartResult::NotStarted { ended, attempts } => (ended, attempts),
            StartResult::Started(started) => {
                let marker = Marker::new(&server.name, &server.task_key, request, &started);
                if let Err(e) = self.write_marker(marker).await {
                    // The run goes on; only a crash before its end would lose it.
                    warn!(server = %server.name, run_id = %request.run_id, error = %e, "in-flight marker not written");
                }
                let ended = track::track(client, server, &started, events).await;
                (ended, started.attempts)
            }
        };
        let record = track::record(server, request, ended, attempts);
        self.append_and_clear(record, server.history_limit).await
    }

    /// If an earlier process left a run of this server in flight, track it to its end
    /// and record it (or just clear the marker if its record is already written).
    pub async fn resume_left_over(
        &self,
        client: &JellyfinClient,
        server: &ServerConfig,
        events: &mut dyn RunEvents,
    ) -> Option<Result<RunRecord, RecordError>> {
        let marker = match self.markers.read(&server.name) {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => {
                warn!(server = %server.name, error = %e, "in-flight marker skipped");
                return None;
            }
        };
        if self
            .already_recorded(&server.name, &marker.request.run_id)
            .await
        {
            info!(server = %server.name, run_id = %marker.request.run_id, "run left in flight was already recorded; clearing its marker");
            if let Err(e) = self.markers.remove(&server.name) {
                warn!(server = %server.name, run_id = %marker.request.run_id, error = %e, "marker not removed");
            }
            return None;
        }
        info!(server = %server.name, run_id = %marker.request.run_id, task_id = %marker.started.task_id, since = %marker.started.accepted_at, "resuming a run left in flight by an earlier process");
        let ended = track::resume(client, server, &marker.started, events).await;
        let record = track::record(server, &marker.request, ended, marker.started.attempts);
        Some(self.append_and_clear(record, server.history_limit).await)
    }

    async fn already_recorded(&self, server: &str, run_id: &str) -> bool {
        let history = self.history.clone();
        let (server, run_id) = (server.to_owned(), run_id.to_owned());
        tokio::task::spawn_blocking(move || {
            history
                .read(&server)
                .map(|r| r.records.iter().any(|s| s.record.run_id == run_id))
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    async fn write_marker(&self, marker: Marker) -> Result<(), MarkerError> {
        let markers = self.markers.clone();
        tokio::task::spawn_blocking(move || markers.write(&marker))
            .await
            .unwrap_or_else(|e| {
                Err(MarkerError::Write {
                    path: std::path::PathBuf::from("inflight"),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// Append the record, then remove the marker (in that order: a crash between the two
    /// leaves a marker whose run id is in the history, which the next start just clears).
    pub async fn append_and_clear(
        &self,
        record: RunRecord,
        history_limit: usize,
    ) -> Result<RunRecord, RecordError> {
        let history = self.history.clone();
        let markers = self.markers.clone();
        tokio::task::spawn_blocking(move || {
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
        })
        .await
        .unwrap_or_else(|e| Err(RecordError::Join(e.to_string())))
    }
}
