//! One server's scheduling loop: it hands each due instant to a run task
//! ([`super::run_task`]).
//!
//! The loop sleeps until the next due instant (plus the server's jitter), then hands the
//! run to a task of its own and goes straight back to sleep, so that a due instant that
//! arrives during a long run is seen and recorded as `skipped`. Sleeps are capped at
//! [`MAX_SLEEP`] and the wall clock is read again after every wake: a clock step forward
//! fires the awaited slot once (no burst of old slots), a step back never fires a slot twice
//! (due instants only move forward), and the loop's heartbeat shows it is alive.

use super::ctx::Ctx;
use super::run_task::{Job, record_skip, run_task};
use crate::config::ServerConfig;
use crate::record::{RunRequest, Trigger, new_run_id};
use crate::runner::marker::Marker;
use crate::schedule::{Schedule, jitter_offset};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, info_span, warn};

/// The longest a loop sleeps before looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How long before its first due instant a loop makes the files its runs re-use.
const PREPARE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

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

/// Sleep until due, dispatch, repeat; until `stop` is cancelled. `first` is the first
/// [`next_fire`], worked out when the loop was armed.
pub async fn server_loop(
    ctx: Arc<Ctx>,
    mut config: watch::Receiver<Arc<ServerConfig>>,
    stop: CancellationToken,
    first: Option<(DateTime<Utc>, DateTime<Utc>)>,
) {
    let name = config.borrow().name.clone();
    let span = Span::current();
    // The last due instant handled: the next one is strictly later, whatever the clock does.
    let mut handled: Option<DateTime<Utc>> = None;
    let mut prepared = false;
    let mut first = Some(first);
    'schedule: loop {
        // Planned at arming for the settings the loop was armed with; a reload since then
        // plans afresh.
        let armed = first
            .take()
            .filter(|_| !config.has_changed().unwrap_or(true));
        let cfg = config.borrow_and_update().clone();
        let planned = armed.unwrap_or_else(|| {
            let now = Utc::now();
            let after = handled.map_or(now, |h| h.max(now));
            next_fire(&cfg.schedule, &name, cfg.jitter, after)
        });
        let Some((due, fire_at)) = planned else {
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
            _ = prepare_and_wait(&ctx, &name, fire_at, &mut prepared) => {}
            _ = stop.cancelled() => return,
            r = config.changed() => {
                if r.is_err() { return }
                info!("schedule settings changed; next due instant recomputed");
                continue 'schedule;
            }
        }
        handled = Some(due);
        dispatch(
            &ctx,
            ServerConfig::clone(&cfg),
            Trigger::Schedule,
            Some(due),
            &span,
        );
    }
}

/// Sleep until `fire_at`; the first time, a minute before it, make the files the server's
/// runs re-use ([`Runner::prepare_server`](crate::runner::Runner::prepare_server)): not at
/// start-up, where a daemon with 10 000 servers would spend seconds on it before anything
/// is due. Once per state directory in practice: the files stay.
async fn prepare_and_wait(ctx: &Ctx, name: &str, fire_at: DateTime<Utc>, prepared: &mut bool) {
    if !*prepared {
        sleep_until_due(fire_at - PREPARE_AHEAD, || ctx.status.heartbeat(name)).await;
        // In the background: the fire must not wait for it (a run that comes first
        // creates what it needs itself).
        let (runner, state, server) = (ctx.runner.clone(), ctx.state.clone(), name.to_owned());
        tokio::spawn(async move { runner.prepare_server(&state, &server).await });
        *prepared = true;
    }
    sleep_until_due(fire_at, || ctx.status.heartbeat(name)).await;
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
    if let Some(pg) = &ctx.pg
        && pg.leadership.trusted_epoch().is_none()
    {
        // A follower's loop keeps time (and its heartbeat); the leader runs the schedule.
        return info!("not leading; the leader runs this due instant");
    }
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
        record_skip(ctx, cfg, &request, reason, server_span);
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

/// A resumed run and/or a catch-up run, one after the other, as one run task (spawned
/// before the server's loop starts).
pub fn startup_work(ctx: &Arc<Ctx>, cfg: ServerConfig, startup: Startup, server_span: &Span) {
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
