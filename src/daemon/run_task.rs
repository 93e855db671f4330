//! A run task: what the daemon does around one run. It waits for a slot
//! (`max_concurrent_runs`), takes the server's lock and hands the run to the runner
//! ([`crate::runner`]), hearing it as a [`RunObserver`]: progress on the status board, the
//! end (of the run asked for, and of a run left in flight that the runner finished first)
//! in the log, on the board and to the observers. Skips (the previous run still going,
//! the server busy elsewhere) are written here too.

use super::ctx::Ctx;
use crate::archive::FolderStats;
use crate::config::ServerConfig;
use crate::jellyfin::model::TaskState;
use crate::jellyfin::{JellyfinClient, JellyfinError};
use crate::record::{Outcome, RunRecord, RunRequest};
use crate::runner::marker::Marker;
use crate::runner::track::RunEvents;
use crate::runner::{self, RecordError, RunObserver, Wait};
use crate::state::{LockError, ServerLock};
use chrono::Utc;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, Span, error, info, warn};

/// What a run task does once it holds a slot and the server's lock.
pub(super) enum Job {
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
pub(super) async fn run_task(ctx: &Arc<Ctx>, cfg: &ServerConfig, job: Job) {
    if let (Some(pg), Job::Run(request)) = (&ctx.pg, &job) {
        // Boxed, as every phase of a run is: the run task is spawned at the size of its
        // largest await point, and a fleet due at once spawns a thousand (`Runner::run`).
        return Box::pin(super::pg_task::run(ctx, pg, cfg, request.clone())).await;
    }
    let Some(_slot) = take_slot(ctx).await else {
        return;
    };
    ctx.status.progress(&cfg.name, "starting", None);
    let _lock = match lock_server(ctx, cfg, job.run_id()) {
        Ok(lock) => lock,
        Err(e) => return Box::pin(not_started(ctx, cfg, job, e)).await,
    };
    let Some(client) = jellyfin_client(ctx, cfg) else {
        return;
    };
    let mut observer = DaemonRun { ctx, cfg };
    let work = async {
        match job {
            Job::Resume(marker) => {
                info!(task_id = %marker.started.task_id, since = %marker.started.accepted_at.to_rfc3339(), "resuming a run left in flight by an earlier process");
                Box::pin(ctx.runner.resume(&client, cfg, &mut observer)).await;
            }
            Job::Run(request) => {
                Box::pin(
                    ctx.runner
                        .run(&client, cfg, &request, &mut observer, Wait::Follow),
                )
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
pub(super) async fn take_slot(ctx: &Ctx) -> Option<OwnedSemaphorePermit> {
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
    let record = runner::not_started(cfg, &request, outcome, reason);
    write_record(ctx, cfg, record).await
}

/// The server's Jellyfin client on the shared HTTP client, telling the board whether the
/// server answers.
pub(super) fn jellyfin_client(ctx: &Ctx, cfg: &ServerConfig) -> Option<JellyfinClient> {
    let client = http_client(ctx, cfg).and_then(|http| {
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
pub(super) struct DaemonRun<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) cfg: &'a ServerConfig,
}

impl RunEvents for DaemonRun<'_> {
    fn progress(&mut self, state: &TaskState, percent: Option<f64>) {
        self.ctx
            .status
            .progress(&self.cfg.name, &state.to_string(), percent);
    }
}

impl RunObserver for DaemonRun<'_> {
    /// A run left in flight is recorded like any other: logged, on the board, to the
    /// observers.
    fn left_over_recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        self.recorded(result);
    }

    fn starting(&mut self, request: &RunRequest) {
        info!(trigger = %request.trigger, "run started");
        for o in self.ctx.observers() {
            o.run_started(self.cfg, &request.run_id);
        }
    }

    fn archived(&mut self, folder: &FolderStats) {
        self.ctx
            .status
            .set_archive(&self.cfg.name, Some(folder.clone()));
    }

    fn recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        log_result(result);
        match result {
            Ok(r) => announce(self.ctx, self.cfg, r),
            Err(RecordError::History { record, .. }) => announce(self.ctx, self.cfg, record),
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
    announce(ctx, cfg, &record);
    match ctx.runner.write(record, cfg.history_limit).await {
        Ok(_) => {}
        Err(RecordError::History { record, source }) => {
            error!(run_id = %record.run_id, error = %source, "record not written; kept in memory and written again later");
        }
        Err(e) => error!(error = %e, "record not written"),
    }
}

/// Record `request` as skipped because of `reason` while the server's run goes on,
/// without waiting for the disk.
pub(super) fn record_skip(
    ctx: &Arc<Ctx>,
    cfg: ServerConfig,
    request: &RunRequest,
    reason: String,
    span: &Span,
) {
    let ctx2 = ctx.clone();
    if ctx.pg.is_some() {
        let request = request.clone();
        let task = async move {
            if let Some(pg) = &ctx2.pg {
                super::pg_task::skip(&ctx2, pg, &cfg, &request, reason).await;
            }
        };
        ctx.runs.spawn(task.instrument(span.clone()));
        return;
    }
    let record = runner::not_started(&cfg, request, Outcome::Skipped, reason);
    ctx.runs
        .spawn(async move { write_record(&ctx2, &cfg, record).await }.instrument(span.clone()));
}

/// The shared HTTP client for the server's request timeout.
fn http_client(ctx: &Ctx, cfg: &ServerConfig) -> Result<reqwest::Client, JellyfinError> {
    let mut clients = ctx.http.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(&cfg.request_timeout) {
        return Ok(c.clone());
    }
    let c = crate::jellyfin::http_client(&cfg.name, cfg.request_timeout)?;
    clients.insert(cfg.request_timeout, c.clone());
    Ok(c)
}

/// Put a record on the board and tell the observers.
pub(super) fn announce(ctx: &Ctx, server: &ServerConfig, record: &RunRecord) {
    ctx.status.record(server, record);
    for o in ctx.observers() {
        o.run_recorded(server, record);
    }
}
