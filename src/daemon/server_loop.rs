//! One server's scheduling loop and the run tasks it spawns.
//!
//! The loop sleeps until the next due instant (plus the server's jitter), then hands the
//! run to a task of its own and goes straight back to sleep, so that a due instant that
//! arrives during a long run is seen and recorded as `skipped`. Sleeps are capped at
//! [`MAX_SLEEP`] and the wall clock is read again after every wake: a clock step forward
//! fires the awaited slot once (no burst of old slots), a step back never fires a slot twice
//! (due instants only move forward), and the loop's heartbeat shows it is alive.

use super::Ctx;
use crate::config::ServerConfig;
use crate::jellyfin::JellyfinClient;
use crate::jellyfin::model::TaskState;
use crate::record::{Outcome, RunRecord, RunRequest, Trigger, new_run_id};
use crate::runner::marker::Marker;
use crate::runner::track::RunEvents;
use crate::runner::{self, RecordError, RunObserver, Wait};
use crate::schedule::{Schedule, jitter_offset};
use crate::state::{LockError, ServerLock};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, info, info_span, warn};

/// The longest a loop sleeps before looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Work for a server's first moments: a run left in flight, a missed due instant.
#[derive(Debug, Default)]
pub struct Startup {
    pub resume: Option<Marker>,
    pub catch_up: Option<DateTime<Utc>>,
}

impl Startup {
    pub fn is_empty(&self) -> bool {
        self.resume.is_none() && self.catch_up.is_none()
    }
}

/// Sleep until due, dispatch, repeat; until `stop` is cancelled.
pub async fn server_loop(
    ctx: Arc<Ctx>,
    mut config: watch::Receiver<ServerConfig>,
    stop: CancellationToken,
    startup: Startup,
) {
    let name = config.borrow().name.clone();
    let span = Span::current();
    if !startup.is_empty() {
        let cfg = config.borrow().clone();
        startup_work(&ctx, cfg, startup, &span);
    }
    // The last due instant handled: the next one is strictly later, whatever the clock does.
    let mut handled: Option<DateTime<Utc>> = None;
    'schedule: loop {
        let cfg = config.borrow_and_update().clone();
        let now = Utc::now();
        let after = handled.map_or(now, |h| h.max(now));
        let Some((due, fire_at)) = next_fire(&cfg.schedule, &name, cfg.jitter, after) else {
            warn!(schedule = %cfg.schedule.expr(), "the schedule matches no future instant; nothing will run until the config changes");
            ctx.status.set_next_due(&name, None);
            tokio::select! {
                _ = stop.cancelled() => return,
                r = config.changed() => if r.is_err() { return } else { continue 'schedule },
            }
        };
        ctx.status.set_next_due(&name, Some(fire_at));
        info!(next_due = %fire_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "next export");
        tokio::select! {
            _ = sleep_until_due(fire_at, || ctx.status.heartbeat(&name)) => {}
            _ = stop.cancelled() => return,
            r = config.changed() => {
                if r.is_err() { return }
                info!("schedule settings changed; next due instant recomputed");
                continue 'schedule;
            }
        }
        handled = Some(due);
        dispatch(&ctx, cfg, Trigger::Schedule, Some(due), &span);
    }
}

/// The next due instant strictly after `after` and the instant the loop fires for it (the
/// due instant plus the server's jitter offset). `None` when the schedule never matches again.
/// Public so that the benchmark (`benches/fleet.rs`) times the loop's own arithmetic.
pub fn next_fire(
    schedule: &Schedule,
    server_name: &str,
    jitter: Duration,
    after: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let due = schedule.next_after(after)?;
    let fire_at =
        due + chrono::Duration::from_std(jitter_offset(server_name, jitter)).unwrap_or_default();
    Some((due, fire_at))
}

/// Sleep until the wall clock reaches `fire_at`: tokio sleeps of at most [`MAX_SLEEP`], the
/// clock read again after each, `on_wake` called after each sleep (the loop's heartbeat).
/// Cancel-safe: the loop drops it on shutdown or a config change. Public so that the
/// benchmark measures the loop's own waiting.
pub async fn sleep_until_due(fire_at: DateTime<Utc>, mut on_wake: impl FnMut()) {
    loop {
        let now = Utc::now();
        if now >= fire_at {
            return;
        }
        let wait = (fire_at - now).to_std().unwrap_or_default().min(MAX_SLEEP);
        tokio::time::sleep(wait).await;
        on_wake();
    }
}

/// Start a run for `due` unless one is in progress, in which case record a skip.
pub fn dispatch(
    ctx: &Arc<Ctx>,
    cfg: ServerConfig,
    trigger: Trigger,
    due: Option<DateTime<Utc>>,
    server_span: &Span,
) {
    let now = Utc::now();
    let request = RunRequest {
        run_id: new_run_id(now),
        trigger,
        scheduled_for: due,
        triggered_at: now,
    };
    if let Err(previous) = ctx.status.begin_run(&cfg, &request.run_id, now) {
        let reason = format!("previous run {previous} still in progress");
        info!(run_id = %request.run_id, previous_run_id = %previous, "skipped: previous run still in progress");
        let record = runner::skipped(&cfg, &request, reason);
        record_outside_run(ctx, cfg, record, server_span);
        return;
    }
    let span = info_span!(parent: server_span, "run", run_id = %request.run_id);
    let ctx2 = ctx.clone();
    ctx.runs.spawn(
        async move {
            run_task(&ctx2, &cfg, Job::Run(request)).await;
            ctx2.status.end_run(&cfg.name);
        }
        .instrument(span),
    );
}

/// A resumed run and/or a catch-up run, one after the other, as one run task.
fn startup_work(ctx: &Arc<Ctx>, cfg: ServerConfig, startup: Startup, server_span: &Span) {
    let now = Utc::now();
    let first_id = startup
        .resume
        .as_ref()
        .map_or_else(|| new_run_id(now), |m| m.request.run_id.clone());
    if ctx.status.begin_run(&cfg, &first_id, now).is_err() {
        return;
    }
    let ctx2 = ctx.clone();
    let span = info_span!(parent: server_span, "run", run_id = %first_id);
    ctx.runs.spawn(
        async move {
            let resumed = startup.resume.is_some();
            if let Some(marker) = startup.resume {
                run_task(&ctx2, &cfg, Job::Resume(marker)).await;
            }
            if let Some(due) = startup.catch_up {
                let request = RunRequest {
                    // Without a resumed run, the id claimed on the board is the catch-up's.
                    run_id: if resumed { new_run_id(Utc::now()) } else { first_id.clone() },
                    trigger: Trigger::CatchUp,
                    scheduled_for: Some(due),
                    triggered_at: Utc::now(),
                };
                info!(run_id = %request.run_id, missed = %due.to_rfc3339(), "catching up a due instant missed while the daemon was down");
                run_task(&ctx2, &cfg, Job::Run(request)).await;
            }
            ctx2.status.end_run(&cfg.name);
        }
        .instrument(span),
    );
}

/// What a run task does once it holds a slot and the server's lock.
enum Job {
    Run(RunRequest),
    /// Only the run an earlier process left in flight (at the daemon's start).
    Resume(Marker),
}

impl Job {
    fn run_id(&self) -> &str {
        match self {
            Job::Run(r) => &r.run_id,
            Job::Resume(m) => &m.request.run_id,
        }
    }
}

/// Wait for a slot, take the server's lock and hand the run to the runner, which records
/// it and tells the board and the observers. A shutdown may cut the run: its marker lets
/// the next start record it.
async fn run_task(ctx: &Arc<Ctx>, cfg: &ServerConfig, job: Job) {
    let Some(_slot) = take_slot(ctx).await else {
        return;
    };
    ctx.status.progress(&cfg.name, "starting", None);
    let _lock = match lock_server(ctx, cfg, job.run_id()) {
        Ok(lock) => lock,
        Err(e) => return not_started(ctx, cfg, job, e).await,
    };
    let Some(client) = jellyfin_client(ctx, cfg) else {
        return;
    };
    let mut observer = DaemonRun { ctx, cfg };
    let work = async {
        match job {
            Job::Resume(marker) => {
                info!(task_id = %marker.started.task_id, since = %marker.started.accepted_at.to_rfc3339(), "resuming a run left in flight by an earlier process");
                ctx.runner.resume(&client, cfg, &mut observer).await;
            }
            Job::Run(request) => {
                ctx.runner
                    .run(&client, cfg, &request, &mut observer, Wait::Follow)
                    .await;
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = ctx.abort_runs.cancelled() => {
            info!("shutting down during the run; its in-flight marker lets the next start record it");
        }
    }
}

/// A slot among `max_concurrent_runs`, waiting for one if need be; `None` when the daemon
/// stops tracking runs first.
async fn take_slot(ctx: &Ctx) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = ctx.slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    info!(
        max_concurrent_runs = ctx.max_concurrent_runs,
        "waiting for a run slot (max_concurrent_runs reached)"
    );
    tokio::select! {
        p = ctx.slots.clone().acquire_owned() => p.ok(),
        _ = ctx.abort_runs.cancelled() => None,
    }
}

/// The server's lock, which a `trigger` or another daemon may hold.
fn lock_server(ctx: &Ctx, cfg: &ServerConfig, run_id: &str) -> Result<ServerLock, LockError> {
    let holder = format!(
        "daemon run {run_id}, since {}",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // A non-blocking flock on a small local file: a few microseconds, so it runs here
    // rather than on the blocking pool (1000 runs due at once would spawn a thread each).
    ServerLock::acquire(&ctx.state, &cfg.name, &holder)
}

/// Without the server's lock: a new run is recorded as not started (`skipped` when
/// another process runs the server); a run left in flight waits for a later run.
async fn not_started(ctx: &Arc<Ctx>, cfg: &ServerConfig, job: Job, e: LockError) {
    let request = match job {
        Job::Run(r) => r,
        // The marker stays; a later run of this server resumes it.
        Job::Resume(_) => {
            warn!(error = %e, "cannot resume the run left in flight now");
            return;
        }
    };
    let (outcome, reason) = match &e {
        LockError::Busy { .. } => (Outcome::Skipped, e.to_string()),
        _ => (Outcome::TriggerFailed, e.to_string()),
    };
    info!(outcome = %outcome, reason = %reason, "run not started");
    let mut record = runner::skipped(cfg, &request, reason);
    record.outcome = outcome;
    write_record(ctx, cfg, record).await
}

/// The server's Jellyfin client on the shared HTTP client, telling the board whether the
/// server answers.
fn jellyfin_client(ctx: &Ctx, cfg: &ServerConfig) -> Option<JellyfinClient> {
    let client = ctx
        .http_client(cfg.request_timeout)
        .map_err(|cause| crate::jellyfin::JellyfinError::Setup {
            server: cfg.name.clone(),
            cause,
        })
        .and_then(|http| {
            JellyfinClient::with_http(http, &cfg.name, &cfg.url, &cfg.api_key, cfg.request_timeout)
        });
    match client {
        Ok(c) => {
            let status = ctx.status.clone();
            let server = cfg.name.clone();
            Some(c.with_contact_hook(Arc::new(move |ok| status.contact(&server, ok))))
        }
        Err(e) => {
            error!(error = %e, "cannot build the HTTP client");
            None
        }
    }
}

/// How the daemon hears a run: its progress goes on the status board; how it ends goes
/// to the log, the board and the observers.
struct DaemonRun<'a> {
    ctx: &'a Ctx,
    cfg: &'a ServerConfig,
}

impl RunEvents for DaemonRun<'_> {
    fn progress(&mut self, state: &TaskState, percent: Option<f64>) {
        self.ctx
            .status
            .progress(&self.cfg.name, &state.to_string(), percent);
    }
}

impl RunObserver for DaemonRun<'_> {
    fn left_over_recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        log_result(result);
    }

    fn starting(&mut self, request: &RunRequest) {
        info!(trigger = %request.trigger, "run started");
        for o in self.ctx.observers() {
            o.run_started(self.cfg, &request.run_id);
        }
    }

    fn recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        log_result(result);
        match result {
            Ok(r) => self.ctx.announce(self.cfg, r),
            Err(RecordError::History { record, .. }) => self.ctx.announce(self.cfg, record),
            Err(_) => {}
        }
    }
}

fn log_result(result: &Result<RunRecord, RecordError>) {
    match result {
        Ok(r) => log_finished(r),
        Err(RecordError::History { record, source }) => {
            log_finished(record);
            error!(run_id = %record.run_id, error = %source, "the run's record was not written; it is kept in memory and written again when the disk accepts it (its in-flight marker also stays)");
        }
        Err(e) => error!(error = %e, "the run's record was not written"),
    }
}

fn log_finished(r: &RunRecord) {
    let reason = r.reason.as_deref().unwrap_or("");
    if r.outcome == Outcome::Completed {
        info!(run_id = %r.run_id, outcome = %r.outcome, duration_ms = r.duration_ms.unwrap_or(0), export_path = r.export_path.as_deref().unwrap_or(""), "run finished");
    } else {
        warn!(run_id = %r.run_id, outcome = %r.outcome, duration_ms = r.duration_ms.unwrap_or(0), reason = %reason, "run finished");
    }
}

/// Announce a record made outside a tracked run (a skip) and write it; a record the disk
/// refuses is kept in memory and written again later.
async fn write_record(ctx: &Arc<Ctx>, cfg: &ServerConfig, record: RunRecord) {
    ctx.announce(cfg, &record);
    match ctx.runner.write(record, cfg.history_limit).await {
        Ok(_) => {}
        Err(RecordError::History { record, source }) => {
            error!(run_id = %record.run_id, error = %source, "record not written; kept in memory and written again later");
        }
        Err(e) => error!(error = %e, "record not written"),
    }
}

/// Record a skip while the server's run goes on, without waiting for the disk.
fn record_outside_run(ctx: &Arc<Ctx>, cfg: ServerConfig, record: RunRecord, span: &Span) {
    let ctx2 = ctx.clone();
    ctx.runs
        .spawn(async move { write_record(&ctx2, &cfg, record).await }.instrument(span.clone()));
}
