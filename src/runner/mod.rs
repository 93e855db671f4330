//! A run's whole life, composed in one place: finish a run an earlier process left in
//! flight, start, write the in-flight marker, track, record, clear the marker, and tell
//! the one who asked as it goes ([`RunObserver`]).
//!
//! The daemon and `trigger` both go through [`Runner::run`], so the guarantees hold for
//! both: a run that Jellyfin accepted has a marker until its record is written; a record
//! is written once per run; a run left in flight is recorded before the next one starts.
//! The caller holds the server's lock ([`crate::state::ServerLock`]) so no two processes
//! do this for one server at once.
//!
//! Its parts: [`track`] talks to Jellyfin (preflight, start, poll, verify, the outcome as
//! data); [`store`] is the backend's side of a run (with files: the markers of [`marker`]
//! and the history files of [`crate::history`]); the record itself is [`crate::record`]'s. A verified export is archived
//! here, between tracking and the record ([`crate::archive`]: the verify read staged its
//! ZIP; this puts it in place and prunes, or fails the run saying why). History, marker
//! and archive writes are blocking (fsync), so they run on tokio's blocking pool, at most
//! [`DISK_WRITERS`] at a time ([`DiskPermits`], shared with the store): 1000 runs ending
//! together would otherwise start a thread each.

pub mod marker;
pub mod store;
pub mod track;

use crate::archive::{self, ArchiveError, FAILURE_PREFIX, FolderStats, Keeper, Kept};
use crate::config::{MIGRATOR_TASK_KEY, ServerConfig};
use crate::history::{History, HistoryError};
use crate::jellyfin::JellyfinClient;
use crate::record::{Outcome, RunRecord, RunRequest, SCHEDULER_VERSION};
use crate::state::{ServerLock, StateDir};
use chrono::Utc;
use marker::{Marker, MarkerError, Markers};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{BeforeStart, RunStore};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use track::{Ended, NoEvents, RunEvents, StartResult};

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
    /// PostgreSQL did not take the record (unreachable, a timeout): kept and written again
    /// later, if the run's claim is still this instance's by then.
    #[error("the run's record was not written to PostgreSQL: {source}")]
    Database {
        record: Box<RunRecord>,
        source: crate::postgres::PgError,
    },
    /// PostgreSQL: another instance adopted the run's claim (a newer lease epoch than
    /// `epoch`, or the leader took over a `trigger`'s claim gone stale), so it records the
    /// run; this record is not written.
    #[error(
        "another instance took this run over (its claim, held under lease epoch {epoch}, is no longer this process's); it records the run"
    )]
    TakenOver { record: Box<RunRecord>, epoch: i64 },
}

impl RecordError {
    /// The record that was not written, when the run got that far.
    pub fn record(&self) -> Option<&RunRecord> {
        match self {
            RecordError::History { record, .. }
            | RecordError::Database { record, .. }
            | RecordError::TakenOver { record, .. } => Some(record),
            RecordError::Join(_) => None,
        }
    }
}

/// How far [`Runner::run`] goes with the run it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Track the run to its end and record it.
    Follow,
    /// Return once Jellyfin has accepted the start, leaving the marker: the daemon (or the
    /// next `trigger`) records the outcome. A run that does not start is recorded at once.
    StartOnly,
}

/// How [`Runner::run`] ended.
// One per run, returned once: the record (larger since it holds the archive's facts) is
// not worth a box that every caller would have to open.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RunEnd {
    /// The run ended (or never started) and its record was written; or, on an error, it is
    /// in the error and kept to be written again.
    Recorded(Result<RunRecord, RecordError>),
    /// [`Wait::StartOnly`]: Jellyfin accepted the start. Whether the marker was written:
    /// without it, nobody will record the run.
    Started(Result<(), MarkerError>),
    /// A one-shot runner ([`Runner::new`]) finished a run left in flight but the disk
    /// refused its record: no new run was started, so the left-over's marker stays and
    /// the next process records it. The record is in the error.
    LeftOverNotRecorded(RecordError),
    /// PostgreSQL: another instance adopted the run's claim, so this process does nothing
    /// more (before the start request: nothing was sent); that instance goes on with it.
    TakenOver,
}

/// What the one who asked for a run hears as it goes, beyond Jellyfin's side of it
/// ([`RunEvents`]): the daemon logs it, shows it on its board and tells its observers;
/// `trigger` prints it. Every method has an empty default.
pub trait RunObserver: RunEvents {
    /// A run an earlier process left in flight is finished before the new one starts.
    fn left_over(&mut self, _marker: &Marker) {}
    /// That left-over run was recorded (or its record could not be written).
    fn left_over_recorded(&mut self, _result: &Result<RunRecord, RecordError>) {}
    /// The new run begins: the preflight comes next.
    fn starting(&mut self, _request: &RunRequest) {}
    /// The run asked for was recorded (or its record could not be written).
    fn recorded(&mut self, _result: &Result<RunRecord, RecordError>) {}
    /// A run's export was archived (and the folder pruned): what the server's archive
    /// folder holds now.
    fn archived(&mut self, _folder: &FolderStats) {}
}

impl RunObserver for NoEvents {}

/// How many of a runner's marker, history and archive writes (the archive's rename,
/// folder sync and pruning) run at once, each on a thread of the blocking pool. Each
/// still fsyncs (a record is durable before it counts). Two, not more: the writes of a
/// fleet land in the same few directories, and more writers only wait for each other on
/// the directory's lock, spinning on the CPU the start phase needs (8 writers: fleet
/// p99 580–613 ms; 2: 415–459 ms; 1: 435–456 ms, in paired runs of the fleet benchmark).
pub const DISK_WRITERS: usize = 2;

/// The longest a started run's in-flight marker waits for the other runs of the process
/// to finish their start phase ([`track::after_starts`]). The marker is what lets a
/// restarted daemon record a run that was going when it stopped; this is how much longer
/// a run may go unmarked when a whole fleet starts together, and in exchange its writes
/// (a file, a rename, two fsyncs each) leave the CPU to the starts still to go out.
pub const MARKER_DEFER: Duration = Duration::from_secs(2);

/// [`DISK_WRITERS`] permits for blocking file work, shared by a runner, its clones and its
/// files store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DiskPermits(Arc<Semaphore>);

impl DiskPermits {
    pub fn new() -> DiskPermits {
        DiskPermits(Arc::new(Semaphore::new(DISK_WRITERS)))
    }

    /// `work` on the blocking pool once a permit is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        // The semaphore is never closed, so the permit always comes.
        let _permit = self.0.acquire().await;
        tokio::task::spawn_blocking(work).await
    }
}

impl Default for DiskPermits {
    fn default() -> Self {
        DiskPermits::new()
    }
}

/// Runs and records through one backend ([`RunStore`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Runner {
    store: RunStore,
    /// Records the disk refused, with their server's `history_limit`: written again by
    /// [`write_unwritten`](Self::write_unwritten), so nothing is lost.
    /// Each with the store it goes to (with PostgreSQL, its claim's epoch).
    unwritten: Arc<Mutex<Vec<Unwritten>>>,
    /// The state directory, under which the archive is by default.
    state_root: PathBuf,
    /// Whether this process lives on to call [`write_unwritten`](Self::write_unwritten)
    /// (the daemon). Only then may a new run replace the marker of a left-over run whose
    /// record the disk refused: a process that exits would lose that run.
    writes_later: bool,
    /// Permits for the blocking file work (the files store shares them).
    disk: DiskPermits,
}

impl Runner {
    /// A runner for one process that exits after its run (`trigger`): a left-over run
    /// whose record cannot be written stops it before it starts a new one.
    pub fn new(state: &StateDir) -> Runner {
        let disk = DiskPermits::new();
        Runner {
            store: RunStore::files(state, disk.clone()),
            unwritten: Arc::new(Mutex::new(Vec::new())),
            state_root: state.root().to_path_buf(),
            writes_later: false,
            disk,
        }
    }

    /// A runner for the daemon, which keeps records the disk refused and writes them
    /// again later ([`write_unwritten`](Self::write_unwritten)).
    pub fn writing_later(state: &StateDir) -> Runner {
        Runner {
            writes_later: true,
            ..Runner::new(state)
        }
    }

    /// A runner on `store` (the PostgreSQL backend: one per claim, [`RunStore::postgres`]),
    /// for the daemon, which writes refused records again later.
    /// `state` holds the archive (unless `[archive] dir` says otherwise).
    pub fn on(store: RunStore, state: &StateDir) -> Runner {
        Runner {
            store,
            ..Runner::writing_later(state)
        }
    }

    /// This runner on another store (the PostgreSQL backend: one per claim, with its
    /// epoch), sharing its records not written yet, so one
    /// [`write_unwritten`](Self::write_unwritten) retries them all.
    pub fn with_store(&self, store: RunStore) -> Runner {
        Runner {
            store,
            ..self.clone()
        }
    }

    /// The history files, with the files backend.
    pub fn history(&self) -> Option<&History> {
        match &self.store {
            RunStore::Files { history, .. } => Some(history),
            RunStore::Postgres { .. } => None,
        }
    }

    /// Create the files a server's runs re-use if they are missing: its lock file in
    /// `state` and, with the files backend, its in-flight marker's spare
    /// ([`ServerLock::prepare`], [`Markers::prepare`]), on a disk permit. The daemon does
    /// it ahead of the first due instant, so that a due instant creates no file (1000
    /// servers due the same second spent 40 % of the daemon's CPU in that second creating
    /// them). A failure is only logged: the run's own attempt reports it.
    pub async fn prepare_server(&self, state: &StateDir, server: &str) {
        let (state, markers, name) = (state.clone(), self.markers().cloned(), server.to_owned());
        let _ = self
            .disk
            .run(move || {
                if let Err(e) = ServerLock::prepare(&state, &name) {
                    debug!(server = %name, error = %e, "cannot create the server's lock file ahead of its runs");
                }
                if let Some(Err(e)) = markers.map(|m| m.prepare(&name)) {
                    debug!(server = %name, error = %e, "cannot create the server's in-flight marker spare ahead of its runs");
                }
            })
            .await;
    }

    /// The in-flight markers, with the files backend.
    pub fn markers(&self) -> Option<&Markers> {
        match &self.store {
            RunStore::Files { markers, .. } => Some(markers),
            RunStore::Postgres { .. } => None,
        }
    }

    /// A run's life: finish a run left in flight first, then start the one `request` asks
    /// for, write its marker, and (with [`Wait::Follow`]) track it, record it and clear
    /// the marker. `observer` hears each step.
    pub async fn run(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        request: &RunRequest,
        observer: &mut dyn RunObserver,
        wait: Wait,
    ) -> RunEnd {
        // Each phase's future is boxed: a spawned run is allocated at the size of its
        // largest await point, and a fleet due the same second spawns a thousand runs at
        // once. Boxed, each run holds only the phase it is in (the daemon's run task was
        // 7376 bytes at its spawn, 2000 with the phases boxed).
        if let Some(Err(e)) = Box::pin(self.finish_left_over(client, settings, observer)).await
            && !self.writes_later
        {
            return RunEnd::LeftOverNotRecorded(e);
        }
        observer.starting(request);
        match Box::pin(self.store.before_start(&request.run_id)).await {
            BeforeStart::Send => {}
            BeforeStart::TakenOver => return RunEnd::TakenOver,
            BeforeStart::Unmarked(e) => {
                let reason = format!(
                    "not started: the run's claim could not be marked before the start request ({e})"
                );
                let ended = Ended::without_result(Outcome::TriggerFailed, reason);
                let record = record_of(settings, request, ended, 0);
                return RunEnd::Recorded(Box::pin(self.record(record, settings, observer)).await);
            }
        }
        let started = match Box::pin(track::start(client, settings, observer)).await {
            StartResult::Started(started) => started,
            StartResult::NotStarted { ended, attempts } => {
                let record = record_of(settings, request, ended, attempts);
                return RunEnd::Recorded(Box::pin(self.record(record, settings, observer)).await);
            }
        };
        let marker = Marker::new(&settings.name, &settings.task_key, request, &started);
        // After the other runs' starts (at most MARKER_DEFER): see `track::after_starts`.
        track::after_starts(MARKER_DEFER).await;
        let written = self.store.started(marker).await;
        if matches!(written, Err(MarkerError::TakenOver)) {
            // The instance that adopted the claim follows the run and records it: tracking
            // it here too would only end in a record that changes nothing.
            return RunEnd::TakenOver;
        }
        if wait == Wait::StartOnly {
            return RunEnd::Started(written);
        }
        if let Err(e) = written {
            // The run goes on; only a crash before its end would lose it.
            warn!(server = %settings.name, run_id = %request.run_id, error = %e, "in-flight marker not written");
        }
        let keeper = keeper(settings, &self.state_root, &request.run_id);
        let ended = Box::pin(track::track(
            client,
            settings,
            &started,
            observer,
            keeper.as_ref(),
        ))
        .await;
        let record = Box::pin(self.record_keeping(
            settings,
            request,
            ended,
            started.attempts,
            keeper,
            observer,
        ))
        .await;
        RunEnd::Recorded(Box::pin(self.record(record, settings, observer)).await)
    }

    /// Only the run an earlier process left in flight (the daemon's start): track it to
    /// its end and record it, as the run asked for. `None` when there is none, or when its
    /// record is written already (then its marker is just cleared).
    pub async fn resume(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        observer: &mut dyn RunObserver,
    ) -> Option<Result<RunRecord, RecordError>> {
        let marker = match self.store.left_over(&settings.name) {
            Ok(m) => m?,
            Err(e) => {
                warn!(server = %settings.name, error = %e, "in-flight marker skipped");
                return None;
            }
        };
        self.resume_adopted(client, settings, marker, observer)
            .await
    }

    /// A run this instance adopted, its marker at hand: tracked to its end and recorded,
    /// never started again. PostgreSQL: a claim taken over from an instance that stopped
    /// leading, its snapshot the marker it stored; files: [`resume`](Self::resume)'s
    /// marker, left by an earlier process.
    pub async fn resume_adopted(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        marker: Marker,
        observer: &mut dyn RunObserver,
    ) -> Option<Result<RunRecord, RecordError>> {
        let result = self.finish(client, settings, marker, observer).await?;
        self.keep_if_unwritten(&result, settings.history_limit);
        observer.recorded(&result);
        Some(result)
    }

    /// A run adopted in `posting` (PostgreSQL: its start request may have gone out at
    /// `posted_at`, but Jellyfin's answer was never stored): looked up on Jellyfin
    /// ([`track::look_up`]), never started again. Found: its snapshot is stored in the
    /// claim and it is followed to its record. Not found (or Jellyfin did not answer):
    /// recorded `interrupted`, saying why. `None`: the claim was adopted again meanwhile.
    pub async fn resume_posted(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        request: &RunRequest,
        posted_at: chrono::DateTime<Utc>,
        observer: &mut dyn RunObserver,
    ) -> Option<Result<RunRecord, RecordError>> {
        let posted = posted_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let reason = match track::look_up(client, settings, posted_at).await {
            Ok(Some(started)) => {
                let marker = Marker::new(&settings.name, &settings.task_key, request, &started);
                match self.store.started(marker.clone()).await {
                    Err(MarkerError::TakenOver) => return None,
                    Err(e) => {
                        warn!(server = %settings.name, run_id = %request.run_id, error = %e, "snapshot of the adopted run not stored")
                    }
                    Ok(()) => {}
                }
                return self
                    .resume_adopted(client, settings, marker, observer)
                    .await;
            }
            Ok(None) => format!(
                "the instance that claimed this run stopped after its start request may have gone out ({posted}); Jellyfin showed no run of {} begun since, for start_grace ({}), so it is not started again (at most one start per claim)",
                settings.task_key,
                humantime::format_duration(settings.start_grace)
            ),
            Err(e) => format!(
                "the instance that claimed this run stopped after its start request may have gone out ({posted}), and Jellyfin did not answer the look-up ({e}); it is not started again (at most one start per claim)"
            ),
        };
        let ended = Ended::without_result(Outcome::Interrupted, reason);
        let mut record = record_of(settings, request, ended, 0);
        // The request's time is not kept in the claim: no duration to tell.
        record.duration_ms = None;
        Some(self.record(record, settings, observer).await)
    }

    /// Before a new run: finish the one left in flight (a `trigger --no-wait`, or a marker
    /// that could not be resumed at start). Not a run of ours whose record only waits for
    /// the disk: it would be recorded twice. Its record is kept if the disk refuses it,
    /// as for the run asked for; in the daemon the new run's marker then replaces the
    /// left-over's (the kept record is written later), elsewhere [`run`](Self::run) stops.
    async fn finish_left_over(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        observer: &mut dyn RunObserver,
    ) -> Option<Result<RunRecord, RecordError>> {
        let marker = self
            .store
            .left_over(&settings.name)
            .ok()
            .flatten()
            .filter(|m| !self.is_unwritten(&m.request.run_id))?;
        observer.left_over(&marker);
        let result = self.finish(client, settings, marker, observer).await?;
        self.keep_if_unwritten(&result, settings.history_limit);
        observer.left_over_recorded(&result);
        Some(result)
    }

    /// Track a run left in flight to its end and record it, or just clear its marker if
    /// its record is written already (a crash between the two).
    async fn finish(
        &self,
        client: &JellyfinClient,
        settings: &ServerConfig,
        marker: Marker,
        observer: &mut dyn RunObserver,
    ) -> Option<Result<RunRecord, RecordError>> {
        let run_id = &marker.request.run_id;
        if self.store.already_recorded(&settings.name, run_id).await {
            info!(server = %settings.name, run_id = %run_id, "run left in flight was already recorded; clearing its marker");
            self.store.clear_left_over(&settings.name, run_id);
            return None;
        }
        info!(server = %settings.name, run_id = %run_id, task_id = %marker.started.task_id, since = %marker.started.accepted_at, "resuming a run left in flight by an earlier process");
        let keeper = keeper(settings, &self.state_root, run_id);
        let (started, request) = (&marker.started, &marker.request);
        let ended = track::resume(client, settings, started, observer, keeper.as_ref()).await;
        let record = self
            .record_keeping(settings, request, ended, started.attempts, keeper, observer)
            .await;
        Some(self.append_and_clear(record, settings.history_limit).await)
    }

    /// The record of a run that ended so: with its export archived when the verify read
    /// staged and proved it, or `failed` saying why it could not be archived. Nothing is
    /// pruned after a failure, and only the run's own temporary file is removed.
    async fn record_keeping(
        &self,
        settings: &ServerConfig,
        request: &RunRequest,
        mut ended: Ended,
        attempts: u32,
        keeper: Option<Keeper>,
        observer: &mut dyn RunObserver,
    ) -> RunRecord {
        let export = ended.export.take();
        let mut record = record_of(settings, request, ended, attempts);
        let (Some(keeper), Some(export)) = (keeper, export) else {
            return record;
        };
        if record.outcome != Outcome::Completed {
            return record;
        }
        let taken_at = record.started_at.unwrap_or(record.triggered_at);
        let kept = match export {
            Ok(staged) => self
                .disk
                .run(move || archive::keep(staged, &keeper, taken_at))
                .await
                .unwrap_or_else(|e| Err(ArchiveError::Writer(e.to_string()))),
            Err(e) => Err(e),
        };
        match kept {
            Ok(kept) => {
                note_kept(&mut record, &kept);
                observer.archived(&kept.stats);
            }
            Err(e) => {
                record.outcome = Outcome::Failed;
                record.reason = Some(format!("{FAILURE_PREFIX}{e}"));
            }
        }
        record
    }

    /// Write the record of the run asked for, keep it if the disk refuses it, and tell the
    /// observer.
    async fn record(
        &self,
        record: RunRecord,
        settings: &ServerConfig,
        observer: &mut dyn RunObserver,
    ) -> Result<RunRecord, RecordError> {
        let result = self.append_and_clear(record, settings.history_limit).await;
        self.keep_if_unwritten(&result, settings.history_limit);
        observer.recorded(&result);
        result
    }

    /// Write a record made outside a run (a skip); one the disk refuses is kept and
    /// written again later. Only a marker of this same run is cleared, so a run in
    /// progress keeps its marker.
    pub async fn write(
        &self,
        record: RunRecord,
        history_limit: usize,
    ) -> Result<RunRecord, RecordError> {
        let result = self.append_and_clear(record, history_limit).await;
        self.keep_if_unwritten(&result, history_limit);
        result
    }

    /// Write the record and close the run's life in the store ([`RunStore::record`]).
    async fn append_and_clear(
        &self,
        record: RunRecord,
        history_limit: usize,
    ) -> Result<RunRecord, RecordError> {
        self.store.record(record, history_limit).await
    }

    fn is_unwritten(&self, run_id: &str) -> bool {
        self.unwritten
            .lock()
            .map(|u| u.iter().any(|(r, _, _)| r.run_id == run_id))
            .unwrap_or(false)
    }

    /// Keep a record the disk refused, to write it again later (once per run).
    fn keep_if_unwritten(&self, result: &Result<RunRecord, RecordError>, history_limit: usize) {
        if let Err(RecordError::History { record, .. } | RecordError::Database { record, .. }) =
            result
        {
            self.keep(RunRecord::clone(record), history_limit);
        }
    }

    fn keep(&self, record: RunRecord, history_limit: usize) {
        let mut u = self.unwritten.lock().unwrap_or_else(|e| e.into_inner());
        if !u.iter().any(|(r, _, _)| r.run_id == record.run_id) {
            u.push((record, history_limit, self.store.clone()));
        }
    }

    /// Records the disk refused that are still waiting.
    pub fn unwritten(&self) -> usize {
        self.unwritten.lock().map(|u| u.len()).unwrap_or(0)
    }

    /// Try again to write the records the disk refused; those it still refuses stay.
    pub async fn write_unwritten(&self) {
        let pending: Vec<Unwritten> =
            std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()));
        let mut still = Vec::new();
        for (record, limit, store) in pending {
            for (record, limit) in store.record_again(vec![(record, limit)]).await {
                still.push((record, limit, store.clone()));
            }
        }
        let mut u = self.unwritten.lock().unwrap_or_else(|e| e.into_inner());
        for kept in still {
            if !u.iter().any(|(r, _, _)| r.run_id == kept.0.run_id) {
                u.push(kept);
            }
        }
    }
}

/// A record not written yet, its server's `history_limit`, and where it goes.
type Unwritten = (RunRecord, usize, RunStore);

/// Where run `run_id` of `settings`' server keeps its export: `None` when the server does
/// not archive (turned off, or runs whose export is not verified: only a verified
/// Migrator export is archived). `state_root` holds the archive unless `dir` is set.
pub fn keeper(settings: &ServerConfig, state_root: &Path, run_id: &str) -> Option<Keeper> {
    let a = &settings.archive;
    if !a.enabled || !settings.verify_export || settings.task_key != MIGRATOR_TASK_KEY {
        return None;
    }
    Some(Keeper {
        dir: a.root(state_root).join(&settings.name),
        server: settings.name.clone(),
        run_id: run_id.to_owned(),
        recipients: a.recipients.clone(),
        policy: a.policy(),
        timezone: settings.timezone,
    })
}

/// The archive's facts in the record, and the pruning in the log.
fn note_kept(record: &mut RunRecord, kept: &Kept) {
    let a = &kept.archived;
    record.archive_path = Some(a.path.display().to_string());
    record.archive_bytes = Some(a.bytes);
    record.archive_sha256 = Some(a.sha256.clone());
    record.archive_encrypted = Some(a.encrypted);
    record.export_bytes = Some(a.zip_bytes);
    record.export_sha256 = Some(a.zip_sha256.clone());
    record.export_entries = Some(a.entries);
    record.export_users = Some(a.users);
    for path in &kept.pruned {
        info!(server = %record.server, path = %path.display(), "archive file deleted by retention");
    }
    for e in &kept.prune_errors {
        warn!(server = %record.server, error = %e, "retention could not prune the archive; the new archive is in place");
    }
}

/// The record of a run the daemon did not start because of `reason` (`skipped`: the
/// previous run is still going, another process holds the server; `trigger_failed`: the
/// server's lock could not be taken), taking no time.
pub fn not_started(
    settings: &ServerConfig,
    request: &RunRequest,
    outcome: Outcome,
    reason: String,
) -> RunRecord {
    let ended = Ended::without_result(outcome, reason);
    let mut record = record_of(settings, request, ended, 0);
    record.duration_ms = Some(0);
    record
}

/// The history record of a run that ended so.
fn record_of(
    server: &ServerConfig,
    request: &RunRequest,
    ended: Ended,
    attempts: u32,
) -> RunRecord {
    let finished_at = ended.finished_at.unwrap_or_else(Utc::now);
    let from = ended.started_at.unwrap_or(request.triggered_at);
    let duration_ms = u64::try_from((finished_at - from).num_milliseconds()).ok();
    RunRecord {
        run_id: request.run_id.clone(),
        server: server.name.clone(),
        task_key: server.task_key.clone(),
        trigger: request.trigger,
        scheduled_for: request.scheduled_for,
        triggered_at: request.triggered_at,
        started_at: ended.started_at,
        finished_at: Some(finished_at),
        duration_ms,
        outcome: ended.outcome,
        jellyfin_status: ended.jellyfin_status,
        reason: ended.reason,
        export_path: ended.export_path,
        attempts,
        scheduler_version: SCHEDULER_VERSION.to_owned(),
        archive_path: None,
        archive_bytes: None,
        archive_sha256: None,
        archive_encrypted: None,
        export_bytes: None,
        export_sha256: None,
        export_entries: None,
        export_users: None,
    }
}
