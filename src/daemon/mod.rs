//! The long-running service: one scheduling loop per enabled server, runs as tasks of
//! their own, a concurrency limit across servers, catch-up and resumption at start, live
//! reload, and a graceful drain on shutdown.
//!
//! Shape (as in mini-redis): [`start`] spawns a supervisor task and returns a
//! [`DaemonHandle`]; the caller (the `run` command, or a test) turns signals into
//! [`DaemonHandle::reload`] and [`DaemonHandle::shutdown`]. Nothing here reads signals,
//! the config file or the process environment, so tests drive the daemon in-process.
//!
//! What it guarantees: never two runs of one server at once (the status board in-process,
//! the server lock file across processes); a due instant that arrives during a run is
//! recorded `skipped`; at most `max_concurrent_runs` runs tracked at once (a run waiting for
//! a slot is not skipped); one server's trouble stays in its own tasks.

mod ctx;
mod descriptors;
mod pg_task;
mod run_task;
mod server_loop;
pub mod status;

use crate::archive;
use crate::config::{Backend, CatchUp, Config, DaemonConfig, ServerConfig};
use crate::history::HistoryError;
use crate::postgres::Session;
use crate::postgres::claims::Adopted;
use crate::postgres::leadership::Leadership;
use crate::record::{RunRecord, Trigger};
use crate::runner::marker::Marker;
use crate::runner::store::RunStore;
use crate::runner::{self, Runner};
use crate::sd_notify::Notifier;
use crate::state::StateDir;
use chrono::Utc;
use ctx::Ctx;
pub use ctx::DaemonObserver;
use server_loop::Startup;
pub use server_loop::{MAX_SLEEP, next_fire, sleep_until_due};
use status::StatusBoard;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, error, info, info_span, warn};

/// How many of each history's newest records the daemon reads when it starts, from the
/// end of the file: the board's last success and last time per outcome come from them,
/// and catch-up looks among them for the latest due instant's record. As many as the
/// default `history_limit` keeps, so with it the whole history counts, as when it was read
/// whole; a longer history is not read whole at every start.
const STARTUP_RECORDS: usize = 1000;

/// How often records that could not be written (full disk) are tried again.
const UNWRITTEN_RETRY: Duration = Duration::from_secs(15);

/// PostgreSQL: how often the leader deletes old done claims (and once at each takeover).
const CLAIM_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Options of [`start_with`].
#[derive(Default)]
pub struct DaemonOptions {
    pub notifier: Option<Notifier>,
    pub observers: Vec<Arc<dyn DaemonObserver>>,
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReloadSummary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// `[daemon]` keys that changed but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reloaded: {} added, {} removed, {} changed",
            self.added, self.removed, self.changed
        )?;
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; {} changed but needs a restart to take effect",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

enum Command {
    Reload(Box<Config>, oneshot::Sender<ReloadSummary>),
}

/// Control of a started daemon.
pub struct DaemonHandle {
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    pub status: Arc<StatusBoard>,
    ctx: Arc<Ctx>,
}

impl DaemonHandle {
    /// Apply a new, already validated config; returns what changed.
    pub async fn reload(&self, config: Config) -> Option<ReloadSummary> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Reload(Box::new(config), tx))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// A reload was asked for but the file was invalid (the daemon runs on).
    pub fn reload_failed(&self) {
        self.ctx.status.reload_failed();
    }

    /// Stop scheduling and drain runs (up to `shutdown_grace`); [`wait`](Self::wait) for the end.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Until the daemon has stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    /// Cancelling this token stops tracking runs at once (a second signal), without
    /// waiting for the shutdown grace; their markers stay for the next start.
    pub fn abort_runs(&self) -> CancellationToken {
        self.ctx.abort_runs.clone()
    }
}

/// [`start_with`] without a service manager or observers.
pub async fn start(config: Config, state: StateDir) -> DaemonHandle {
    start_with(config, state, DaemonOptions::default()).await
}

/// Arm every enabled server's loop (resuming runs left in flight and catching up a missed
/// due instant first) and return once they are armed. `notifier` gets the watchdog pings
/// (only while every loop keeps waking) and status lines.
pub async fn start_with(config: Config, state: StateDir, options: DaemonOptions) -> DaemonHandle {
    let notifier = options.notifier.unwrap_or_else(Notifier::disabled);
    for o in &options.observers {
        o.config_applied(&config);
    }
    let status = Arc::new(StatusBoard::default());
    let (pg, adopted, lease_stop) = postgres_backend(&config);
    if let Some(pg) = &pg {
        status.set_leadership(pg.leadership.clone());
    }
    let ctx = Arc::new(Ctx {
        runner: match &pg {
            // Epoch 0 is nobody's: this runner only writes refused records again, each
            // through the claim's own store.
            Some(pg) => Runner::on(
                RunStore::postgres(pg.session.clone(), 0, &pg.holder),
                &state,
            ),
            None => Runner::writing_later(&state),
        },
        pg,
        state,
        status: status.clone(),
        slots: Arc::new(Semaphore::new(config.daemon.max_concurrent_runs)),
        max_concurrent_runs: config.daemon.max_concurrent_runs,
        runs: TaskTracker::new(),
        abort_runs: CancellationToken::new(),
        observers: std::sync::RwLock::new(options.observers),
        http: Mutex::new(std::collections::HashMap::new()),
    });
    let stop = CancellationToken::new();
    let (tx, rx) = mpsc::channel(4);
    let mut supervisor = Supervisor {
        ctx: ctx.clone(),
        daemon: config.daemon.clone(),
        loops: BTreeMap::new(),
        stop: stop.clone(),
        notifier,
        adopted,
        lease_stop,
        caught_up_epoch: None,
    };
    supervisor.arm(&config, true).await;
    status.set_armed();
    let done = tokio::spawn(supervisor.run(rx));
    DaemonHandle {
        commands: tx,
        stop,
        done,
        status,
        ctx,
    }
}

struct LoopHandle {
    /// Shared, not copied: the loop holds only a pointer to it across its sleep.
    config: watch::Sender<Arc<ServerConfig>>,
    cancel: CancellationToken,
}

struct Supervisor {
    ctx: Arc<Ctx>,
    daemon: DaemonConfig,
    loops: BTreeMap<String, LoopHandle>,
    stop: CancellationToken,
    notifier: Notifier,
    /// PostgreSQL: the claims adopted at each takeover, to follow.
    adopted: Option<mpsc::Receiver<Vec<Adopted>>>,
    /// PostgreSQL: gives the lease up, after the drain.
    lease_stop: CancellationToken,
    /// PostgreSQL: the epoch whose takeover was caught up on.
    caught_up_epoch: Option<i64>,
}

/// The PostgreSQL backend's parts, with `backend = "postgres"`: a session for the claims
/// and records, the leadership task, its adopted claims, and what stops it.
fn postgres_backend(
    config: &Config,
) -> (
    Option<pg_task::PgDaemon>,
    Option<mpsc::Receiver<Vec<Adopted>>>,
    CancellationToken,
) {
    let lease_stop = CancellationToken::new();
    let Backend::Postgres(pg) = &config.daemon.backend else {
        return (None, None, lease_stop);
    };
    let holder = pg.instance();
    let (tx, rx) = mpsc::channel(16);
    let leadership = Leadership::spawn(
        pg.url.clone(),
        holder.clone(),
        pg.lease_ttl,
        tx,
        lease_stop.clone(),
    );
    info!(instance = %holder, lease_ttl_ms = pg.lease_ttl.as_millis() as u64, "PostgreSQL backend: runs are claimed by the instance that leads");
    let session = Arc::new(Session::new(pg.url.clone(), PG_TIMEOUT));
    let daemon = pg_task::PgDaemon {
        session,
        leadership,
        holder,
    };
    (Some(daemon), Some(rx), lease_stop)
}

/// How long a claim or record statement may take before it counts as failed.
const PG_TIMEOUT: Duration = Duration::from_secs(10);

impl Supervisor {
    /// Start loops for every enabled server that has none. The board learns the config
    /// first; the servers new to it get the newest records of their history, read once.
    async fn arm(&mut self, config: &Config, at_daemon_start: bool) -> usize {
        let markers_left = self
            .ctx
            .runner
            .markers()
            .map(|m| m.servers())
            .unwrap_or_default();
        for name in &markers_left {
            if !config.servers.iter().any(|s| &s.name == name && s.enabled) {
                warn!(server = %name, "a run of this server was left in flight, but the server is not (or no longer) enabled in the config; its outcome is recorded when the server is enabled again");
            }
        }
        let fresh = self.ctx.status.apply_config(config);
        self.scan_archives(config).await;
        let to_arm: Vec<ServerConfig> = config
            .servers
            .iter()
            .filter(|s| s.enabled && !self.loops.contains_key(&s.name))
            .cloned()
            .collect();
        let mut startups = self.read_startup(fresh, &to_arm, at_daemon_start).await;
        let enabled = config.servers.iter().filter(|s| s.enabled).count();
        descriptors::reserve(descriptors::for_runs(
            enabled.min(config.daemon.max_concurrent_runs),
        ));
        let added = to_arm.len();
        for server in to_arm {
            let startup = startups.remove(&server.name).unwrap_or_default();
            self.spawn_loop(server, startup);
        }
        added
    }

    /// What each server's archive folder holds, onto the board (at start, and at every
    /// reload, since `[archive]` may have moved or turned on): one directory listing per
    /// archiving server, on the blocking pool.
    async fn scan_archives(&self, config: &Config) {
        let root = self.ctx.state.root().to_path_buf();
        let folders: Vec<(String, Option<PathBuf>)> = config
            .servers
            .iter()
            .map(|s| (s.name.clone(), runner::keeper(s, &root, "").map(|k| k.dir)))
            .collect();
        let status = self.ctx.status.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (name, dir) in folders {
                let stats = dir.map(|dir| match archive::store::list(&dir, &name) {
                    Ok(files) => archive::store::stats(&files),
                    Err(e) => {
                        warn!(server = %name, dir = %dir.display(), error = %e, "cannot list the archive folder");
                        archive::FolderStats::default()
                    }
                });
                status.set_archive(&name, stats);
            }
        })
        .await;
    }

    /// The newest records of each server new to the board (onto it; from the database
    /// with PostgreSQL, else from disk on the blocking pool), and for each server to arm, what it must do before its schedule:
    /// resume a marker, catch up a missed due instant.
    async fn read_startup(
        &self,
        fresh: Vec<String>,
        to_arm: &[ServerConfig],
        at_daemon_start: bool,
    ) -> HashMap<String, Startup> {
        if let Some(pg) = &self.ctx.pg {
            pg_task::remember_records(pg, &self.ctx.status, &fresh, STARTUP_RECORDS).await;
        }
        let runner = self.ctx.runner.clone();
        let status = self.ctx.status.clone();
        let to_arm = to_arm.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut tails = HashMap::new();
            let Some(history) = runner.history() else {
                return HashMap::new();
            };
            for name in fresh {
                let tail = history
                    .tail(&name, STARTUP_RECORDS)
                    .map(|r| (r.warnings.clone(), r.into_records()));
                if let Ok((_, records)) = &tail {
                    status.remember(&name, records);
                }
                tails.insert(name, tail);
            }
            to_arm
                .iter()
                .map(|s| {
                    let startup = startup(&runner, s, tails.get(&s.name), at_daemon_start);
                    (s.name.clone(), startup)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    fn spawn_loop(&mut self, server: ServerConfig, startup: Startup) {
        let name = server.name.clone();
        self.ctx.status.loop_started(&server);
        let cancel = self.stop.child_token();
        let span = info_span!("server", server = %name);
        // Handed to a run task now, so the loop's future (one per server, alive as long
        // as the daemon) need not carry it.
        if !startup.is_empty() {
            server_loop::startup_work(&self.ctx, server.clone(), startup, &span);
        }
        // The first due instant is worked out here, not in the loop's first turn, so that
        // the board (and the status line sent with READY=1 right after arming) already
        // names the next export when this returns.
        let first = server_loop::next_fire(&server.schedule, &name, server.jitter, Utc::now());
        self.ctx
            .status
            .set_next_due(&name, first.map(|(_, fire_at)| fire_at));
        let (tx, rx) = watch::channel(Arc::new(server));
        tokio::spawn(
            server_loop::server_loop(self.ctx.clone(), rx, cancel.clone(), first).instrument(span),
        );
        self.loops.insert(name, LoopHandle { config: tx, cancel });
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut retry = tokio::time::interval(UNWRITTEN_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Watchdog pings (and a fresh STATUS= line) at half WatchdogSec=, or every 30 s.
        let mut watch =
            tokio::time::interval(self.notifier.watchdog_interval().unwrap_or(MAX_SLEEP));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(CLAIM_PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = watch.tick() => self.watchdog(),
                Some(cmd) = commands.recv() => match cmd {
                    Command::Reload(config, reply) => {
                        let summary = self.reload(*config).await;
                        let _ = reply.send(summary);
                    }
                },
                _ = retry.tick() => self.ctx.runner.write_unwritten().await,
                _ = prune.tick() => self.prune_claims(),
                Some(claims) = next_adopted(&mut self.adopted) => self.follow_adopted(claims),
                epoch = next_epoch(self.ctx.pg.as_ref().map(|pg| pg.leadership.clone()), self.caught_up_epoch) => {
                    self.catch_up_at_takeover(epoch);
                    self.prune_claims();
                }
            }
        }
        let lease_stop = self.lease_stop.clone();
        self.drain().await;
        lease_stop.cancel();
    }

    /// Adopted claims (PostgreSQL, at a takeover), each followed by a run task of its own.
    fn follow_adopted(&self, claims: Vec<Adopted>) {
        for claim in claims {
            let Some(cfg) = self
                .loops
                .get(&claim.server)
                .map(|h| h.config.borrow().clone())
            else {
                warn!(server = %claim.server, run_id = %claim.run_id, "adopted a run of a server this instance does not schedule; it stays open until an instance that has it leads");
                continue;
            };
            let on_board = self
                .ctx
                .status
                .begin_run(&cfg, &claim.run_id, Utc::now())
                .is_ok();
            let ctx = self.ctx.clone();
            let span = info_span!("server", server = %cfg.name);
            self.ctx.runs.spawn(
                async move {
                    if let Some(pg) = &ctx.pg {
                        pg_task::adopted(&ctx, pg, &cfg, claim).await;
                    }
                    if on_board {
                        ctx.status.end_run(&cfg.name);
                    }
                }
                .instrument(span),
            );
        }
    }

    /// PostgreSQL, when this instance starts leading under a new epoch: each server with
    /// `catch_up = "last"` that has run before gets the latest due instant within its
    /// `catch_up_window` dispatched once more. Its claim key makes that a no-op when that
    /// due instant was claimed already (by the old leader); otherwise it was missed while
    /// nobody led, and runs now.
    fn catch_up_at_takeover(&mut self, epoch: i64) {
        if self.caught_up_epoch == Some(epoch) {
            return;
        }
        self.caught_up_epoch = Some(epoch);
        for handle in self.loops.values() {
            let cfg = handle.config.borrow().clone();
            if cfg.catch_up != CatchUp::Last {
                continue;
            }
            let jitter = crate::schedule::jitter_offset(&cfg.name, cfg.jitter);
            let now = Utc::now() - chrono::Duration::from_std(jitter).unwrap_or_default();
            let Some(due) = cfg.schedule.latest_at_or_before(now, cfg.catch_up_window) else {
                continue;
            };
            let ctx = self.ctx.clone();
            let span = info_span!("server", server = %cfg.name);
            tokio::spawn(
                async move {
                    let Some(pg) = &ctx.pg else { return };
                    if pg_task::has_run_before(pg, &cfg.name).await {
                        info!(due = %due.to_rfc3339(), "leading now: catching up the latest due instant unless it was claimed");
                        server_loop::dispatch(
                            &ctx,
                            ServerConfig::clone(&cfg),
                            Trigger::CatchUp,
                            Some(due),
                            &Span::current(),
                        );
                    }
                }
                .instrument(span),
            );
        }
    }

    /// PostgreSQL, on the leader: a pass of claim retention in a task of its own (the done
    /// claims older than [`pg_task::claims_kept_for`] the servers' catch-up windows).
    fn prune_claims(&self) {
        let Some(epoch) = self
            .ctx
            .pg
            .as_ref()
            .and_then(|pg| pg.leadership.trusted_epoch())
        else {
            return;
        };
        let windows = self
            .loops
            .values()
            .map(|h| h.config.borrow().catch_up_window);
        let kept_for = pg_task::claims_kept_for(windows.collect::<Vec<_>>());
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Some(pg) = &ctx.pg {
                pg_task::prune_claims(pg, epoch, kept_for).await;
            }
        });
    }

    /// Ping the watchdog only while every loop keeps waking: a stuck loop stops the pings
    /// and the service manager restarts the daemon.
    fn watchdog(&self) {
        let stale = self.ctx.status.stale_loops(heartbeat_limit());
        if stale.is_empty() {
            self.notifier.watchdog();
        } else {
            error!(servers = %stale.join(", "), "scheduling loops stopped waking; not pinging the watchdog");
        }
        self.notifier.status(&self.ctx.status.summary());
    }

    async fn reload(&mut self, config: Config) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let old = &self.daemon;
        let new = &config.daemon;
        if old.state_dir != new.state_dir {
            summary.needs_restart.push("state_dir");
        }
        if old.log_format != new.log_format {
            summary.needs_restart.push("log_format");
        }
        if old.log_level != new.log_level {
            summary.needs_restart.push("log_level");
        }
        if old.max_concurrent_runs != new.max_concurrent_runs {
            summary.needs_restart.push("max_concurrent_runs");
        }
        if old.listen != new.listen {
            summary.needs_restart.push("listen");
        }
        // Compared by value: a changed token file counts, even under the same path.
        if old.api_token != new.api_token {
            summary.needs_restart.push("api_token_file");
        }
        // Where runs are claimed and recorded: switching it under running work would split
        // a run's life between two stores.
        if old.backend != new.backend {
            summary.needs_restart.push("backend");
        }
        // The grace applies to the next shutdown: nothing to restart for it.
        self.daemon.shutdown_grace = new.shutdown_grace;

        let wanted: BTreeMap<&str, &ServerConfig> = config
            .servers
            .iter()
            .filter(|s| s.enabled)
            .map(|s| (s.name.as_str(), s))
            .collect();
        let gone: Vec<String> = self
            .loops
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(h) = self.loops.remove(&name) {
                // The loop stops scheduling; a run in progress goes on and is recorded.
                h.cancel.cancel();
                self.ctx.status.loop_stopped(&name);
                info!(server = %name, "server removed from the config; no more runs are scheduled for it");
                summary.removed += 1;
            }
        }
        for (name, server) in &wanted {
            if let Some(h) = self.loops.get(*name)
                && !h.config.borrow().same_settings(server)
            {
                let _ = h.config.send(Arc::new((*server).clone()));
                summary.changed += 1;
            }
        }
        summary.added = self.arm(&config, false).await;
        for o in self.ctx.observers() {
            o.config_applied(&config);
        }
        summary
    }

    /// Stop scheduling, give runs `shutdown_grace` to end, then stop tracking the rest
    /// (their markers stay for the next start).
    async fn drain(self) {
        for h in self.loops.values() {
            h.cancel.cancel();
        }
        // Markers held back for other runs' starts are written now, within the grace.
        crate::runner::track::stop_waiting_for_starts();
        self.ctx.runs.close();
        let running = self.ctx.runs.len();
        if running > 0 {
            info!(
                runs = running,
                grace_ms = self.daemon.shutdown_grace.as_millis() as u64,
                "waiting for runs in progress to finish"
            );
        }
        if tokio::time::timeout(self.daemon.shutdown_grace, self.ctx.runs.wait())
            .await
            .is_err()
        {
            warn!(
                runs = self.ctx.runs.len(),
                "shutdown grace over; runs still going are left in flight and resumed at the next start"
            );
            self.ctx.abort_runs.cancel();
            self.ctx.runs.wait().await;
        }
        self.ctx.runner.write_unwritten().await;
        let lost = self.ctx.runner.unwritten();
        if lost > 0 {
            error!(
                records = lost,
                "records could not be written before exit; their runs' in-flight markers (where the run had started) let the next start record them"
            );
        }
    }
}

/// A server's newest records (and the warnings of reading them), or why they could not be
/// read.
type Tail = Result<(Vec<String>, Vec<RunRecord>), HistoryError>;

/// What a server must do before its schedule: resume the run left in flight, catch up a
/// due instant missed while the daemon was down (at the daemon's start only, from the
/// history's `tail`; a server a reload enables again has none read).
fn startup(
    runner: &Runner,
    server: &ServerConfig,
    tail: Option<&Tail>,
    at_daemon_start: bool,
) -> Startup {
    let read = runner.markers().map_or(Ok(None), |m| m.read(&server.name));
    let resume: Option<Marker> = match read {
        Ok(m) => m,
        Err(e) => {
            warn!(server = %server.name, error = %e, "in-flight marker ignored");
            None
        }
    };
    let records = match tail {
        Some(Ok((warnings, records))) => {
            for w in warnings {
                warn!(server = %server.name, "{w}");
            }
            records
        }
        Some(Err(e)) => {
            error!(server = %server.name, error = %e, "history unreadable; catch-up is off for this start");
            return Startup {
                resume,
                catch_up: None,
            };
        }
        None => {
            return Startup {
                resume,
                catch_up: None,
            };
        }
    };
    let catch_up = if at_daemon_start && server.catch_up == CatchUp::Last {
        missed_due(server, records, resume.as_ref())
    } else {
        None
    };
    Startup { resume, catch_up }
}

/// The most recent due instant within `catch_up_window` that has no record (and is not
/// the run a marker covers), if the server has any history at all.
fn missed_due(
    server: &ServerConfig,
    records: &[RunRecord],
    marker: Option<&Marker>,
) -> Option<chrono::DateTime<Utc>> {
    if records.is_empty() {
        // A first start: nothing was missed, the daemon just did not exist.
        return None;
    }
    let jitter = crate::schedule::jitter_offset(&server.name, server.jitter);
    let now = Utc::now() - chrono::Duration::from_std(jitter).unwrap_or_default();
    let latest = server
        .schedule
        .latest_at_or_before(now, server.catch_up_window)?;
    let covered = records.iter().any(|r| r.scheduled_for == Some(latest))
        || marker.is_some_and(|m| m.request.scheduled_for == Some(latest));
    (!covered).then_some(latest)
}

/// The next adopted claims, when there is a PostgreSQL backend (never, otherwise).
async fn next_adopted(rx: &mut Option<mpsc::Receiver<Vec<Adopted>>>) -> Option<Vec<Adopted>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The epoch this instance leads under once it is not `seen`, when there is a PostgreSQL
/// backend (never, otherwise): it waits for the leadership's role to change.
async fn next_epoch(leadership: Option<Leadership>, seen: Option<i64>) -> i64 {
    let Some(mut leadership) = leadership else {
        return std::future::pending().await;
    };
    loop {
        if let Some(epoch) = leadership.trusted_epoch()
            && Some(epoch) != seen
        {
            return epoch;
        }
        if !leadership.changed().await {
            return std::future::pending().await;
        }
    }
}

/// The longest a healthy loop goes without waking.
pub fn heartbeat_limit() -> Duration {
    MAX_SLEEP * 3
}
