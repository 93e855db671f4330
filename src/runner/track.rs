//! One run of a server's task: preflight, start, track, verify, and the outcome as data.
//!
//! Jellyfin has no run id: the only trace of a finished run is the task's
//! `LastExecutionResult`, which the next run overwrites, and the start is asynchronous. So a
//! run is tracked the way docs/jellyfin-api.md describes: snapshot the task before starting it,
//! start it, then poll until a result that differs from the snapshot appears (the first one
//! is ours), tolerating the moment when the task is Idle but its result not yet written, and
//! calling the run `lost` only when that lasts longer than `start_grace`.
//!
//! The phases are separate functions so the runner ([`crate::runner`]) can resume [`track`]
//! from an in-flight marker after a restart. Nothing here reads the config file or writes
//! files itself: when the runner passes a [`Keeper`], the verify read also stages the
//! export's ZIP through [`crate::archive`] (a temporary file, handed back in
//! [`Ended::export`]), and the runner makes the run's [`Ended`] into its record. Every
//! future here can be dropped at an await point without leaving anything half-done (the
//! daemon does so on shutdown; a staged ZIP dropped so removes its file).

use crate::archive::{self, ArchiveError, Keeper, Staged};
use crate::config::{IfRunning, MIGRATOR_TASK_KEY, ServerConfig};
use crate::jellyfin::model::{MigratorConfig, TaskInfo, TaskResult, TaskState, TaskStatus};
use crate::jellyfin::{CancelAnswer, JellyfinClient, JellyfinError};
use crate::migrator::{self, Verdict};
use crate::record::Outcome;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

/// How many verifications that keep their export (stream its ZIP to a file, checked and
/// fsynced, on a blocking thread each) run at once in this process. 1000 runs ending
/// together otherwise held 512 threads and 158 MiB (the fleet bench); a slot is held for
/// the one read, so the others wait a few milliseconds each.
pub const ARCHIVE_READS: usize = 8;
static ARCHIVE_READ_SLOTS: Semaphore = Semaphore::const_new(ARCHIVE_READS);

/// How many runs are in their start phase (task lookup, `Mode` check, start request) at
/// once in this process. When a whole fleet is due the same second, every run's start
/// waits behind the work of all the others either way; a bound keeps that work (and its
/// connections and buffers) to a few dozen at a time, so starts go out in a steady
/// stream from the first milliseconds instead of all together at the end.
pub const START_PHASES: usize = 64;
static START_PHASE_SLOTS: Semaphore = Semaphore::const_new(START_PHASES);

/// Runs in this process waiting for a start-phase slot or holding one (not those waiting
/// out a retry's backoff), and a notice each time that count falls to zero: work that can
/// come after the starts ([`after_starts`]) waits for it.
static STARTING: AtomicUsize = AtomicUsize::new(0);
static STARTS_SETTLED: Notify = Notify::const_new();
/// Set when the daemon begins to stop ([`stop_waiting_for_starts`]): from then on nothing
/// waits for the starts.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// One run counted in [`STARTING`] while this lives (so also when its future is dropped).
struct Starting;

impl Starting {
    fn enter() -> Starting {
        STARTING.fetch_add(1, Ordering::SeqCst);
        Starting
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if STARTING.fetch_sub(1, Ordering::SeqCst) == 1 {
            STARTS_SETTLED.notify_waiters();
        }
    }
}

/// The daemon begins to stop: [`after_starts`] returns at once from now on, so that the
/// markers it held back are written before the shutdown grace is over and tracking is cut
/// off (a run without its marker could not be recorded by the next start). For the rest
/// of the process's life: a daemon stops once.
pub fn stop_waiting_for_starts() {
    STOPPING.store(true, Ordering::SeqCst);
    STARTS_SETTLED.notify_waiters();
}

/// Wait until no run of this process is in its start phase, or `limit` has passed. For
/// work that must follow a start but need not delay the others: when a fleet is due the
/// same second, the in-flight markers of the runs started first would otherwise be
/// written on the CPU the last starts are waiting for.
pub async fn after_starts(limit: Duration) {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        let settled = STARTS_SETTLED.notified();
        tokio::pin!(settled);
        // Registered before the count is read, so a fall to zero in between is not missed.
        settled.as_mut().enable();
        if STARTING.load(Ordering::SeqCst) == 0 || STOPPING.load(Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            _ = &mut settled => {}
            _ = &mut deadline => return,
        }
    }
}

/// A run that Jellyfin accepted (or one already going that we follow): everything needed
/// to track it, also after a restart (the daemon stores it in the in-flight marker).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub task_id: String,
    /// The task's `LastExecutionResult` before the start; a result that differs is ours.
    pub snapshot: Option<SnapshotResult>,
    /// When Jellyfin accepted the start (our clock); `timeout` counts from here.
    pub accepted_at: DateTime<Utc>,
    pub attempts: u32,
    /// True when the task was already running and `if_running = "follow"` adopted it.
    pub followed: bool,
}

/// The identity of a `TaskResult` (what is compared to find a new one), serialisable for
/// the in-flight marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl SnapshotResult {
    fn of(r: &TaskResult) -> Self {
        SnapshotResult {
            start: r.start_time_utc,
            end: r.end_time_utc,
            status: r.status.as_ref().map(ToString::to_string),
        }
    }

    fn matches(&self, r: &TaskResult) -> bool {
        self.start == r.start_time_utc && self.end == r.end_time_utc
    }
}

/// True when `result` is a run that ended after the snapshot was taken.
fn is_new(snapshot: &Option<SnapshotResult>, result: &TaskResult) -> bool {
    snapshot.as_ref().is_none_or(|s| !s.matches(result))
}

/// The task's result if it is a new one.
fn new_result(snapshot: &Option<SnapshotResult>, result: Option<TaskResult>) -> Option<TaskResult> {
    result.filter(|r| is_new(snapshot, r))
}

/// Things a caller may want to hear about while a run goes on (a live progress line, the
/// in-flight marker). All methods have empty defaults.
pub trait RunEvents: Send {
    /// Jellyfin accepted the start (or we adopted a running task).
    fn started(&mut self, _started: &Started) {}
    /// The task's state or progress changed.
    fn progress(&mut self, _state: &TaskState, _percent: Option<f64>) {}
    /// A transient failure; the next attempt follows after `delay`.
    fn retrying(&mut self, _attempt: u32, _error: &JellyfinError, _delay: Duration) {}
}

/// For callers that need no events.
pub struct NoEvents;
impl RunEvents for NoEvents {}

/// How a run ended, before it becomes a record.
#[derive(Debug)]
pub struct Ended {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub jellyfin_status: Option<String>,
    /// Jellyfin's start and end of the run, when a result was seen.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub export_path: Option<String>,
    /// With a [`Keeper`], for a verified export: its ZIP staged and proven to be this
    /// run's, or why it could not be.
    pub export: Option<Result<Staged, ArchiveError>>,
}

impl Ended {
    /// An end without a result from Jellyfin: the run never started, or was lost.
    pub fn without_result(outcome: Outcome, reason: String) -> Self {
        Ended {
            outcome,
            reason: Some(reason),
            jellyfin_status: None,
            started_at: None,
            finished_at: None,
            export_path: None,
            export: None,
        }
    }
}

/// The result of the start phase.
#[derive(Debug)]
pub enum StartResult {
    Started(Started),
    /// Not started: skipped or trigger_failed, with the attempts made.
    NotStarted {
        ended: Ended,
        attempts: u32,
    },
}

/// Preflight and start, with retries of transient failures.
pub async fn start(
    client: &JellyfinClient,
    server: &ServerConfig,
    events: &mut dyn RunEvents,
) -> StartResult {
    let mut attempts: u32 = 0;
    // Once a start request may have reached Jellyfin (it failed in transit), a Running task
    // on the next attempt is most likely ours and is followed, not skipped.
    let mut start_maybe_sent = false;
    let mut snapshot_before_first_send: Option<Option<SnapshotResult>> = None;
    let mut failures: u32 = 0;
    loop {
        // Held for the attempt only, not across a retry's wait. Never closed.
        let starting = Starting::enter();
        let slot = START_PHASE_SLOTS.acquire().await.ok();
        // Boxed: only the runs holding a slot need the requests' state (see `Runner::run`).
        let attempt = Box::pin(attempt_start(
            client,
            server,
            &mut attempts,
            &mut start_maybe_sent,
            &mut snapshot_before_first_send,
        ))
        .await;
        drop(slot);
        drop(starting);
        let error = match attempt {
            Ok(AttemptResult::Started(started)) => {
                events.started(&started);
                return StartResult::Started(started);
            }
            Ok(AttemptResult::NotStarted(ended)) => {
                return StartResult::NotStarted { ended, attempts };
            }
            Err(e) => e,
        };
        if !error.is_transient() || failures >= server.retries {
            let reason = if error.is_transient() && server.retries > 0 {
                format!("{error} (gave up after {} tries)", failures + 1)
            } else {
                error.to_string()
            };
            return StartResult::NotStarted {
                ended: Ended::without_result(Outcome::TriggerFailed, reason),
                attempts,
            };
        }
        let backoff = server
            .retry_backoff
            .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(3600));
        let delay = error.retry_after().map_or(backoff, |ra| ra.max(backoff));
        failures += 1;
        info!(server = %server.name, attempt = failures, delay_ms = delay.as_millis() as u64, error = %error, "start failed; retrying");
        events.retrying(failures, &error, delay);
        tokio::time::sleep(delay).await;
    }
}

enum AttemptResult {
    Started(Started),
    NotStarted(Ended),
}

async fn attempt_start(
    client: &JellyfinClient,
    server: &ServerConfig,
    attempts: &mut u32,
    start_maybe_sent: &mut bool,
    first_snapshot: &mut Option<Option<SnapshotResult>>,
) -> Result<AttemptResult, JellyfinError> {
    // Never cache the id: it changes when a plugin renames its class.
    let task = client.find_task(&server.task_key).await?;
    let current = task.last_execution_result.as_ref().map(SnapshotResult::of);

    if *start_maybe_sent {
        // An earlier start request may have gone through: if the task runs or has a new
        // result since the first snapshot, that is our run.
        let snapshot = first_snapshot.clone().flatten();
        if task.state != TaskState::Idle
            || task
                .last_execution_result
                .as_ref()
                .is_some_and(|r| is_new(&snapshot, r))
        {
            return Ok(AttemptResult::Started(Started {
                task_id: task.id,
                snapshot,
                accepted_at: Utc::now(),
                attempts: *attempts,
                followed: false,
            }));
        }
    }

    if task.state != TaskState::Idle {
        return already_running(client, server, task, current, *attempts).await;
    }
    if let Some(refused) = mode_refusal(client, server, None).await? {
        return Ok(AttemptResult::NotStarted(refused));
    }

    if first_snapshot.is_none() {
        *first_snapshot = Some(current.clone());
    }
    *attempts += 1;
    *start_maybe_sent = true;
    client.start_task(&task.id).await?;
    info!(server = %server.name, task_id = %task.id, attempt = *attempts, "start accepted");
    Ok(AttemptResult::Started(Started {
        task_id: task.id,
        snapshot: current,
        accepted_at: Utc::now(),
        attempts: *attempts,
        followed: false,
    }))
}

/// The task is already going (not started by us): skip it, or follow it when
/// `if_running = "follow"` and it is an export.
async fn already_running(
    client: &JellyfinClient,
    server: &ServerConfig,
    task: TaskInfo,
    snapshot: Option<SnapshotResult>,
    attempts: u32,
) -> Result<AttemptResult, JellyfinError> {
    match server.if_running {
        IfRunning::Skip => {
            let progress = task
                .current_progress_percentage
                .map(|p| format!(", {p:.0}% done"))
                .unwrap_or_default();
            Ok(AttemptResult::NotStarted(Ended::without_result(
                Outcome::Skipped,
                format!(
                    "task {} was already {} on the server (started outside this scheduler{progress}); if_running = \"skip\"",
                    server.task_key, task.state
                ),
            )))
        }
        IfRunning::Follow => {
            if let Some(refused) = mode_refusal(client, server, Some(&task)).await? {
                return Ok(AttemptResult::NotStarted(refused));
            }
            info!(server = %server.name, task_id = %task.id, "task already running; following it (if_running = \"follow\")");
            Ok(AttemptResult::Started(Started {
                task_id: task.id,
                snapshot,
                accepted_at: Utc::now(),
                attempts,
                followed: true,
            }))
        }
    }
}

/// For the Migrator's task: `skipped` unless its `Mode` runs an Export (its configuration
/// is read every time: someone may have used the Import tab since the last run).
async fn mode_refusal(
    client: &JellyfinClient,
    server: &ServerConfig,
    running: Option<&TaskInfo>,
) -> Result<Option<Ended>, JellyfinError> {
    if server.task_key != MIGRATOR_TASK_KEY {
        return Ok(None);
    }
    let config = client.migrator_config(MigratorConfig::PREFLIGHT).await?;
    Ok(migrator::refusal(&config, &server.task_key, running)
        .map(|reason| Ended::without_result(Outcome::Skipped, reason)))
}

/// A run whose start request may have gone out at `posted_at` (PostgreSQL's clock) but
/// whose answer was never kept (a claim adopted in `posting`), looked up on Jellyfin,
/// never started again: the task going now, or a result of the task begun since
/// `posted_at`, is taken to be it, to follow from there. A task still idle with an older
/// result is looked at every `poll_interval` for `start_grace` (Jellyfin may not have
/// begun a start it accepted); `None`: it stayed so (the request never reached Jellyfin,
/// or Jellyfin never ran it). Transient failures are retried as the start phase retries
/// them.
pub async fn look_up(
    client: &JellyfinClient,
    server: &ServerConfig,
    posted_at: DateTime<Utc>,
) -> Result<Option<Started>, JellyfinError> {
    let grace_ends = tokio::time::Instant::now() + server.start_grace;
    let mut failures: u32 = 0;
    loop {
        match client.find_task(&server.task_key).await {
            Ok(task) => {
                if let Some(started) = posted_run(task, posted_at) {
                    return Ok(Some(started));
                }
                if tokio::time::Instant::now() >= grace_ends {
                    return Ok(None);
                }
                tokio::time::sleep(server.poll_interval).await;
            }
            Err(e) if e.is_transient() && failures < server.retries => {
                let delay = server
                    .retry_backoff
                    .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
                    .unwrap_or(Duration::MAX)
                    .min(Duration::from_secs(60));
                failures += 1;
                warn!(server = %server.name, error = %e, "cannot look the adopted run up; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How much earlier than the `posting` time (PostgreSQL's clock) a run Jellyfin shows may
/// have begun and still be taken as the claim's (if it did not end before): Jellyfin's
/// times come from its own clock and may be written with as little as one fractional
/// digit. (The preflight comes after `posting`, so a run begun that shortly before and
/// still going then is the claim's or one its preflight would have found going.)
const CLOCK_TOLERANCE: chrono::Duration = chrono::Duration::seconds(1);

/// [`look_up`]'s judgement of what Jellyfin shows.
fn posted_run(task: TaskInfo, posted_at: DateTime<Utc>) -> Option<Started> {
    let last = task.last_execution_result.as_ref();
    let snapshot = if task.state != TaskState::Idle {
        // Going now: its result, when it comes, is the first that differs from this one.
        last.map(SnapshotResult::of)
    } else if last.is_some_and(|r| {
        // Begun since, and not ended before: a run that ended before the claim went
        // `posting` is an earlier one, however near.
        r.start_time_utc
            .is_some_and(|begun| begun >= posted_at - CLOCK_TOLERANCE)
            && r.end_time_utc.is_none_or(|ended| ended >= posted_at)
    }) {
        // Ended already: with no snapshot, that result is the run's.
        None
    } else {
        return None;
    };
    Some(Started {
        task_id: task.id,
        snapshot,
        accepted_at: posted_at,
        attempts: 1,
        followed: true,
    })
}

/// Poll a started run to its end, keeping a verified export's ZIP as `keeper` says
/// ([`Ended::export`]; `None`: nothing kept).
pub async fn track(
    client: &JellyfinClient,
    server: &ServerConfig,
    started: &Started,
    events: &mut dyn RunEvents,
    keeper: Option<&Keeper>,
) -> Ended {
    track_inner(client, server, started, events, false, keeper).await
}

/// Track a run that an earlier process started (from its in-flight marker). The same as
/// [`track`], except that a task that no longer exists makes the run `interrupted`: we
/// cannot know how it ended.
pub async fn resume(
    client: &JellyfinClient,
    server: &ServerConfig,
    started: &Started,
    events: &mut dyn RunEvents,
    keeper: Option<&Keeper>,
) -> Ended {
    track_inner(client, server, started, events, true, keeper).await
}

async fn track_inner(
    client: &JellyfinClient,
    server: &ServerConfig,
    started: &Started,
    events: &mut dyn RunEvents,
    resuming: bool,
    keeper: Option<&Keeper>,
) -> Ended {
    let deadline = started.accepted_at
        + chrono::Duration::from_std(server.timeout).unwrap_or(chrono::Duration::MAX);
    let mut tracker = Tracker {
        client,
        server,
        started,
        idle_old_since: None,
        saw_running: false,
        unreachable_since: None,
        last_error: None,
        last_progress: None,
        resuming,
        keeper,
    };
    // A run just started is first looked at one `poll_interval` later: Jellyfin starts the
    // task in the background, so a look at once tells nothing, and when a fleet starts
    // together those looks would compete with the starts still to go out. A run resumed
    // after a restart is looked at at once: it may have ended while nobody watched.
    let mut delay = if resuming {
        Duration::ZERO
    } else {
        server.poll_interval
    };
    loop {
        tokio::time::sleep(delay).await;
        delay = server.poll_interval;
        // Look before judging the deadline: a resumed run may have ended on its own while
        // nobody watched, and then its real outcome is what counts.
        match tracker.poll(events).await {
            Poll::Done(ended) => return ended,
            Poll::Continue => {}
            Poll::Backoff(d) => delay = d,
        }
        if Utc::now() >= deadline {
            return tracker.time_out(events).await;
        }
    }
}

// One per poll, moved once: the record in `Done` is not worth a heap allocation.
#[allow(clippy::large_enum_variant)]
enum Poll {
    Done(Ended),
    Continue,
    /// The server is not answering: wait this long before the next look.
    Backoff(Duration),
}

struct Tracker<'a> {
    client: &'a JellyfinClient,
    server: &'a ServerConfig,
    started: &'a Started,
    /// Since when (our clock) the task has been Idle with the old result.
    idle_old_since: Option<DateTime<Utc>>,
    saw_running: bool,
    /// Since when the server has not answered (a restart or crash in progress).
    unreachable_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_progress: Option<(TaskState, Option<i64>)>,
    /// Tracking a run an earlier process started.
    resuming: bool,
    /// Where a verified export's ZIP is kept, if it is.
    keeper: Option<&'a Keeper>,
}

impl Tracker<'_> {
    async fn poll(&mut self, events: &mut dyn RunEvents) -> Poll {
        let task = match self.client.task(&self.started.task_id).await {
            Ok(task) => task,
            Err(e) => return self.poll_failed(e),
        };
        let came_back = self.unreachable_since.take().is_some();
        if came_back {
            info!(server = %self.server.name, "server answers again");
        }
        let progress = (
            task.state.clone(),
            task.current_progress_percentage.map(|p| p.round() as i64),
        );
        if self.last_progress.as_ref() != Some(&progress) {
            debug!(server = %self.server.name, state = %task.state, percent = ?task.current_progress_percentage, "progress");
            events.progress(&task.state, task.current_progress_percentage);
            self.last_progress = Some(progress);
        }
        // The first result that differs from the snapshot is ours, whatever the state: a
        // queued follow-up run may already be Running when we look.
        let state = task.state.clone();
        if let Some(result) = new_result(&self.started.snapshot, task.last_execution_result) {
            return Poll::Done(self.finish(result).await);
        }
        match state {
            TaskState::Idle => {
                let now = Utc::now();
                let since = *self.idle_old_since.get_or_insert(now);
                let grace = chrono::Duration::from_std(self.server.start_grace)
                    .unwrap_or(chrono::Duration::MAX);
                if now - since >= grace {
                    let reason = if self.saw_running || came_back || self.last_error.is_some() {
                        format!(
                            "the task went Idle without a new result for {} (Jellyfin restarted or crashed during the run?){}",
                            humantime::format_duration(self.server.start_grace),
                            self.last_error
                                .as_ref()
                                .map(|e| format!("; last error: {e}"))
                                .unwrap_or_default()
                        )
                    } else {
                        format!(
                            "Jellyfin accepted the start but the task stayed Idle with its previous result for {}; it never ran",
                            humantime::format_duration(self.server.start_grace)
                        )
                    };
                    return Poll::Done(Ended::without_result(Outcome::Lost, reason));
                }
                Poll::Continue
            }
            _ => {
                self.idle_old_since = None;
                self.saw_running = true;
                Poll::Continue
            }
        }
    }

    fn poll_failed(&mut self, e: JellyfinError) -> Poll {
        if matches!(e, JellyfinError::NotFound { .. }) && self.resuming {
            return Poll::Done(Ended::without_result(
                Outcome::Interrupted,
                format!(
                    "this scheduler stopped during the run, and task {} ({}) no longer exists on the server, so how the run ended cannot be known: {e}",
                    self.server.task_key, self.started.task_id
                ),
            ));
        }
        if matches!(e, JellyfinError::NotFound { .. }) {
            return Poll::Done(Ended::without_result(
                Outcome::Lost,
                format!(
                    "task {} ({}) disappeared from the server during the run: {e}",
                    self.server.task_key, self.started.task_id
                ),
            ));
        }
        let now = Utc::now();
        let since = *self.unreachable_since.get_or_insert(now);
        warn!(server = %self.server.name, error = %e, "cannot see the run; will look again");
        self.last_error = Some(e.to_string());
        // Back off while the server is away: poll_interval doubling per minute away, at most
        // a minute between looks, and at least what a 503 asked for.
        let away = (now - since).to_std().unwrap_or_default();
        let factor = 1u32 << (away.as_secs() / 60).min(4);
        let backoff = (self.server.poll_interval * factor).min(Duration::from_secs(60));
        Poll::Backoff(e.retry_after().map_or(backoff, |ra| ra.max(backoff)))
    }

    /// Turn the first new result into an outcome, verifying an export when asked.
    async fn finish(&self, result: TaskResult) -> Ended {
        let status = result.status.clone();
        let mut ended = Ended {
            outcome: Outcome::Failed,
            reason: None,
            jellyfin_status: status.as_ref().map(ToString::to_string),
            started_at: result.start_time_utc,
            finished_at: result.end_time_utc,
            export_path: None,
            export: None,
        };
        match status {
            Some(TaskStatus::Completed) => {
                ended.outcome = Outcome::Completed;
                if self.server.verify_export && self.server.task_key == MIGRATOR_TASK_KEY {
                    self.verify(&result, &mut ended).await;
                }
            }
            Some(TaskStatus::Failed) => {
                ended.reason = Some(format!(
                    "Jellyfin reports the task Failed: {}",
                    result
                        .error_message
                        .as_deref()
                        .unwrap_or("(no error message)")
                ));
            }
            Some(TaskStatus::Cancelled) => {
                ended.outcome = Outcome::Cancelled;
                ended.reason =
                    Some("the task was cancelled on the server (not by this scheduler)".into());
            }
            Some(TaskStatus::Aborted) => {
                ended.outcome = Outcome::Aborted;
                ended.reason =
                    Some("Jellyfin shut down during the run and recorded it as Aborted".into());
            }
            Some(TaskStatus::Other(s)) => {
                ended.reason = Some(format!(
                    "Jellyfin reports status {s:?}, which this version does not know; treated as failed"
                ));
            }
            None => {
                ended.reason = Some("Jellyfin's result for the run has no status".into());
            }
        }
        ended
    }

    /// The Migrator plugin ends Completed even when its export failed, was cancelled or
    /// was not an export at all: check what it wrote. With a keeper, the same read stages
    /// the ZIP, and a verified export's ZIP must then prove to be this run's.
    async fn verify(&self, result: &TaskResult, ended: &mut Ended) {
        let judged = match self.keeper {
            Some(keeper) => {
                // Never closed, so a slot always comes.
                let _slot = ARCHIVE_READ_SLOTS.acquire().await;
                archive::read_keeping(self.client, keeper)
                    .await
                    .map(|(config, staged)| {
                        let verdict = self.verdict(&config, result);
                        (verdict, Some((staged, config.last_export_log)))
                    })
            }
            None => self.judge(result).await.map(|v| (v, None)),
        };
        let (verdict, kept) = match judged {
            Ok(j) => j,
            Err(e) => {
                ended.outcome = Outcome::Failed;
                ended.reason = Some(format!(
                    "the task ended Completed but the export could not be verified: {e}"
                ));
                return;
            }
        };
        match verdict {
            Verdict::Exported { path } => {
                ended.export_path = path;
                ended.export =
                    kept.map(|(staged, log)| staged.and_then(|s| s.prove(log.as_deref())));
            }
            Verdict::Stopped { line, ran } => {
                ended.outcome = Outcome::Cancelled;
                ended.reason = Some(format!(
                    "the run was cancelled on the server (not by this scheduler): the plugin stopped{} and Jellyfin recorded it as Completed; its log: {line:?}",
                    migrator::ran_for(ran)
                ));
            }
            Verdict::NotExported(why) => {
                ended.outcome = Outcome::Failed;
                ended.reason = Some(why);
            }
        }
    }

    /// Read the plugin's configuration and judge the run that produced `result`.
    async fn judge(&self, result: &TaskResult) -> Result<Verdict, JellyfinError> {
        let config = self.client.migrator_config(MigratorConfig::VERIFY).await?;
        Ok(self.verdict(&config, result))
    }

    fn verdict(&self, config: &MigratorConfig, result: &TaskResult) -> Verdict {
        let run_start = result.start_time_utc.unwrap_or(self.started.accepted_at);
        migrator::judge(config, result, run_start)
    }

    /// After our cancel, how the run ended, in words; and the export, if the run managed
    /// to finish one anyway.
    async fn after_cancel(&self, result: &TaskResult) -> (String, Option<String>) {
        let migrator = self.server.task_key == MIGRATOR_TASK_KEY;
        match &result.status {
            Some(TaskStatus::Cancelled) => ("it ended Cancelled".to_owned(), None),
            Some(TaskStatus::Completed) if migrator && self.server.verify_export => {
                match self.judge(result).await {
                    Ok(Verdict::Stopped { line, ran }) => (
                        format!(
                            "the plugin stopped{} and Jellyfin recorded it as Completed; its log: {line:?}",
                            migrator::ran_for(ran)
                        ),
                        None,
                    ),
                    Ok(Verdict::Exported { path }) => (
                        "it finished its export before the cancel took effect (ended Completed, export verified)".to_owned(),
                        path,
                    ),
                    Ok(Verdict::NotExported(why)) => (format!("it ended Completed, but {why}"), None),
                    Err(e) => (
                        format!("it ended Completed; whether the plugin stopped could not be read: {e}"),
                        None,
                    ),
                }
            }
            Some(TaskStatus::Completed) if migrator => (
                "it ended Completed (verify_export = false, so whether the plugin stopped was not checked)".to_owned(),
                None,
            ),
            Some(TaskStatus::Completed) => (
                "it ended Completed (the task did not honour the cancel)".to_owned(),
                None,
            ),
            Some(s) => (format!("it ended {s}"), None),
            None => ("it ended without a status".to_owned(), None),
        }
    }

    /// Past `timeout`: ask Jellyfin to cancel, then wait up to `start_grace` for the result.
    async fn time_out(&mut self, events: &mut dyn RunEvents) -> Ended {
        let limit = humantime::format_duration(self.server.timeout);
        warn!(server = %self.server.name, timeout = %limit, "run exceeded its timeout; cancelling");
        let cancel = self.client.cancel_task(&self.started.task_id).await;
        let cancel_note = match &cancel {
            Ok(CancelAnswer::Requested) => "cancel requested".to_owned(),
            Ok(CancelAnswer::NotRunning) => {
                "the task had already stopped when we cancelled".to_owned()
            }
            Err(e) => format!("the cancel request failed: {e}"),
        };
        let wait_until = Utc::now()
            + chrono::Duration::from_std(self.server.start_grace).unwrap_or(chrono::Duration::MAX);
        loop {
            match self.client.task(&self.started.task_id).await {
                Ok(task) => {
                    if self.last_progress.as_ref().map(|p| &p.0) != Some(&task.state) {
                        events.progress(&task.state, task.current_progress_percentage);
                        self.last_progress = Some((task.state.clone(), None));
                    }
                    let state = task.state.clone();
                    if let Some(result) =
                        new_result(&self.started.snapshot, task.last_execution_result)
                    {
                        let (after, export_path) = self.after_cancel(&result).await;
                        return Ended {
                            outcome: Outcome::TimedOut,
                            reason: Some(format!(
                                "did not finish within {limit}; {cancel_note}; {after}"
                            )),
                            jellyfin_status: result.status.as_ref().map(ToString::to_string),
                            started_at: result.start_time_utc,
                            finished_at: result.end_time_utc,
                            export_path,
                            export: None,
                        };
                    }
                    if Utc::now() >= wait_until {
                        return Ended::without_result(
                            Outcome::TimedOut,
                            format!(
                                "did not finish within {limit}; {cancel_note}, but the task was still {} {} later",
                                state,
                                humantime::format_duration(self.server.start_grace)
                            ),
                        );
                    }
                }
                Err(e) => {
                    if Utc::now() >= wait_until {
                        return Ended::without_result(
                            Outcome::TimedOut,
                            format!("did not finish within {limit}; {cancel_note}; then: {e}"),
                        );
                    }
                }
            }
            tokio::time::sleep(self.server.poll_interval.min(self.server.start_grace)).await;
        }
    }
}
