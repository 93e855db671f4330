//! `trigger SERVER`: one run now, followed to its end with progress shown, recorded in
//! the history like a scheduled one (trigger `manual`).
//!
//! With `backend = "postgres"` it claims the run in the database like the daemon (claim
//! key `manual:<run_id>`) instead of taking the lock file: see `on_postgres`.
//!
//! It takes the server's lock, so it never runs a server the daemon is running (and the
//! daemon skips the server while it holds the lock). A run an earlier process left in
//! flight is finished and recorded first. With `--no-wait` it returns once Jellyfin has
//! accepted the start and leaves the in-flight marker, so the daemon (or the next
//! `trigger`) records the outcome.

use super::{CommandError, Verdict};
use crate::config::{Backend, Config, PostgresBackend, ServerConfig};
use crate::jellyfin::model::TaskState;
use crate::jellyfin::{JellyfinClient, JellyfinError};
use crate::postgres::{self, Session, claims};
use crate::record::{Outcome, RunRecord, RunRequest, Trigger, new_run_id, summary};
use crate::runner::marker::Marker;
use crate::runner::store::RunStore;
use crate::runner::track::{RunEvents, Started};
use crate::runner::{RecordError, RunEnd, RunObserver, Runner, Wait};
use crate::signals::{SignalEvent, SignalEvents};
use crate::state::{ServerLock, StateDir};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Where progress goes: a live, rewritten line on a terminal, plain lines otherwise.
pub struct Progress<W: Write + Send> {
    out: W,
    live: bool,
    server: String,
    /// A live line is on screen and needs a newline before anything else is printed.
    line_open: bool,
}

impl<W: Write + Send> Progress<W> {
    pub fn new(out: W, live: bool, server: &str) -> Self {
        Progress {
            out,
            live,
            server: server.to_owned(),
            line_open: false,
        }
    }

    fn line(&mut self, text: &str) {
        self.close_live();
        let now = chrono::Local::now().format("%H:%M:%S");
        let _ = writeln!(self.out, "{now} {}: {text}", self.server);
        let _ = self.out.flush();
    }

    fn close_live(&mut self) {
        if self.line_open {
            let _ = writeln!(self.out);
            self.line_open = false;
        }
    }

    fn finish(mut self) -> W {
        self.close_live();
        self.out
    }
}

impl<W: Write + Send> RunEvents for Progress<W> {
    fn started(&mut self, started: &Started) {
        if started.followed {
            self.line(&format!(
                "the task was already running; following it (task {})",
                started.task_id
            ));
        } else {
            self.line(&format!("started (task {})", started.task_id));
        }
    }

    fn progress(&mut self, state: &TaskState, percent: Option<f64>) {
        let pct = percent.map(|p| format!(" {p:.0}%")).unwrap_or_default();
        if self.live {
            let now = chrono::Local::now().format("%H:%M:%S");
            let _ = write!(self.out, "\r\x1b[2K{now} {}: {state}{pct}", self.server);
            let _ = self.out.flush();
            self.line_open = true;
        } else {
            self.line(&format!("{state}{pct}"));
        }
    }

    fn retrying(&mut self, attempt: u32, error: &JellyfinError, delay: Duration) {
        self.line(&format!(
            "attempt {attempt} failed: {error}; retrying in {}",
            humantime::format_duration(delay)
        ));
    }
}

impl<W: Write + Send> RunObserver for Progress<W> {
    fn left_over(&mut self, _marker: &Marker) {
        self.line("an earlier run was left in flight; following it to its end first");
    }

    fn left_over_recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        // A record the disk refused is still worth showing; the error itself is the
        // command's (printed once, by `main`).
        let record = match result {
            Ok(record) => Some(record),
            Err(e) => e.record(),
        };
        if let Some(record) = record {
            self.line(&format!("earlier run: {}", summary(record)));
        }
    }
}

/// The command. `out` gets progress and the summary.
pub async fn trigger<W: Write + Send>(
    config: &Config,
    server_name: &str,
    no_wait: bool,
    out: W,
    live: bool,
) -> Result<Verdict, CommandError> {
    let Some(server) = config.server(server_name) else {
        return Err(CommandError::UnknownServer {
            name: server_name.to_owned(),
            config: config.path.clone(),
            known: Some(config.servers.iter().map(|s| s.name.clone()).collect()),
        });
    };
    let now = chrono::Utc::now();
    let request = RunRequest {
        run_id: new_run_id(now),
        trigger: Trigger::Manual,
        scheduled_for: None,
        triggered_at: now,
    };
    let wait = if no_wait {
        Wait::StartOnly
    } else {
        Wait::Follow
    };
    if let Backend::Postgres(pg) = &config.daemon.backend {
        return on_postgres(config, pg, server, &request, wait, out, live).await;
    }
    let (state, _lock, client) = prepare(config, server, &request)?;
    let mut progress = Progress::new(out, live, &server.name);
    let end = Runner::new(&state)
        .run(&client, server, &request, &mut progress, wait)
        .await;
    report(progress.finish(), end, wait, config, server, &request)
}

/// How long `trigger` waits for PostgreSQL to accept a connection, and for a statement.
const PG_TIMEOUT: Duration = Duration::from_secs(10);

/// The run on the PostgreSQL backend: claimed (`manual:<run_id>`) under the lease's epoch
/// instead of the lock file, then run by a runner bound to that claim, every write fenced
/// by its epoch and holder. While it waits, the trigger keeps its claim's heartbeat fresh
/// ([`TriggerClaim::heartbeats`]); should it be killed, or paused or cut off for longer
/// than `lease_ttl`, the leader adopts the claim, and this process's writes change
/// nothing: it stops, saying so. With `--no-wait` the started claim is handed over to the
/// leader, which follows the run and records it; so is the claim of a trigger interrupted
/// (SIGINT, SIGTERM) while it waits.
async fn on_postgres<W: Write + Send>(
    config: &Config,
    pg: &PostgresBackend,
    server: &ServerConfig,
    request: &RunRequest,
    wait: Wait,
    out: W,
    live: bool,
) -> Result<Verdict, CommandError> {
    let mut signals = catch_shutdown();
    let claim = TriggerClaim::take(pg, server, request).await?;
    let state = StateDir::open(&config.daemon.state_dir)?;
    let jellyfin = JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )?;
    let mut progress = Progress::new(out, live, &server.name);
    let store = RunStore::postgres(claim.session.clone(), claim.epoch, &claim.holder);
    let runner = Runner::on(store, &state);
    let taken_over = CommandError::TakenOver {
        server: server.name.clone(),
        run_id: request.run_id.clone(),
    };
    let end = tokio::select! {
        end = runner.run(&jellyfin, server, request, &mut progress, wait) => end,
        () = shutdown_asked(signals.as_mut()) => {
            // Its claim would otherwise keep the server busy until the leader adopts it.
            progress.line("interrupted; handing the run over to the instance that leads");
            claim.hand_over().await?;
            return Err(CommandError::Interrupted {
                server: server.name.clone(),
                run_id: request.run_id.clone(),
            });
        }
        () = claim.heartbeats(pg.lease_ttl / 3) => {
            progress.finish();
            return Err(taken_over);
        }
    };
    match end {
        RunEnd::Started(Ok(())) => {
            claim.hand_over().await?;
        }
        RunEnd::TakenOver | RunEnd::Recorded(Err(RecordError::TakenOver { .. })) => {
            progress.finish();
            return Err(taken_over);
        }
        _ => {}
    }
    report(progress.finish(), end, wait, config, server, request)
}

/// The claim a `trigger` holds on PostgreSQL: its run, the epoch it was claimed under, and
/// the holder name that fences its writes (`trigger <run id> on <instance_name>`).
struct TriggerClaim {
    session: Arc<Session>,
    run_id: String,
    epoch: i64,
    holder: String,
}

impl TriggerClaim {
    /// Claims `request`'s run of `server` (the schema brought up to date first); another
    /// run active on the server is [`CommandError::ClaimBusy`].
    async fn take(
        pg: &PostgresBackend,
        server: &ServerConfig,
        request: &RunRequest,
    ) -> Result<TriggerClaim, CommandError> {
        let mut client = postgres::connect(&pg.url, PG_TIMEOUT).await?;
        postgres::migrate::migrate(&mut client).await?;
        let holder = format!("trigger {} on {}", request.run_id, pg.instance());
        let (name, run_id) = (server.name.as_str(), request.run_id.as_str());
        let epoch = claims::claim_manual(&client, &holder, name, run_id, pg.lease_ttl)
            .await?
            .ok_or_else(|| CommandError::ClaimBusy {
                server: server.name.clone(),
            })?;
        Ok(TriggerClaim {
            session: Arc::new(Session::new(pg.url.clone(), PG_TIMEOUT)),
            run_id: request.run_id.clone(),
            epoch,
            holder,
        })
    }

    /// The claim's heartbeat, every `interval`, until the claim is no longer this
    /// trigger's (the leader adopted it: this process was paused or cut off for longer
    /// than the lease). A heartbeat the database does not take is said in the log and
    /// tried again at the next tick: should that last a lease, the leader adopts the claim
    /// and the next one that gets through says so.
    async fn heartbeats(&self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let (run_id, epoch, holder) = (self.run_id.as_str(), self.epoch, self.holder.as_str());
            let beat = self
                .session
                .with(|c| async move { claims::heartbeat(&c, run_id, epoch, holder).await })
                .await;
            match beat {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the claim's heartbeat was not written; should this last lease_ttl, the leader takes the run over")
                }
            }
        }
    }

    /// Hands the claim over to whoever leads (fenced: only if it is still this
    /// trigger's).
    async fn hand_over(&self) -> Result<bool, CommandError> {
        let (run_id, epoch, holder) = (self.run_id.as_str(), self.epoch, self.holder.as_str());
        self.session
            .with(|c| async move { claims::hand_over(&c, run_id, epoch, holder).await })
            .await
            .map_err(|source| CommandError::NotHandedOver {
                run_id: self.run_id.clone(),
                source,
            })
    }
}

/// SIGINT or SIGTERM, caught so that an interrupted `trigger` on PostgreSQL hands its run
/// over rather than leave its claim open; `None` (could not be caught): never.
fn catch_shutdown() -> Option<SignalEvents> {
    match SignalEvents::register() {
        Ok(signals) => Some(signals),
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGINT and SIGTERM; a trigger interrupted now leaves its run's claim open until the lease changes hands");
            None
        }
    }
}

/// Until SIGINT or SIGTERM arrives (never, without `signals`).
async fn shutdown_asked(signals: Option<&mut SignalEvents>) {
    if let Some(signals) = signals {
        while let Some(event) = signals.next().await {
            if event == SignalEvent::Shutdown {
                return;
            }
        }
    }
    std::future::pending().await
}

/// The state directory, the server's lock and a client for it.
fn prepare(
    config: &Config,
    server: &ServerConfig,
    request: &RunRequest,
) -> Result<(StateDir, ServerLock, JellyfinClient), CommandError> {
    let state = StateDir::open(&config.daemon.state_dir)?;
    let holder = format!(
        "manual trigger run {}, since {}",
        request.run_id,
        request
            .triggered_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let lock = ServerLock::acquire(&state, &server.name, &holder)?;
    let client = JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )?;
    Ok((state, lock, client))
}

/// The last words on `out`, and what the run came to.
fn report(
    mut out: impl Write,
    end: RunEnd,
    wait: Wait,
    config: &Config,
    server: &ServerConfig,
    request: &RunRequest,
) -> Result<Verdict, CommandError> {
    match end {
        RunEnd::Started(Ok(())) => {
            let who = match config.daemon.backend {
                Backend::Files => format!("The daemon (or the next `trigger {}`)", server.name),
                Backend::Postgres(_) => "The instance that leads".to_owned(),
            };
            let _ = writeln!(
                out,
                "{}: started [run {}]; not waiting. {who} records its outcome; see `history {}`.",
                server.name, request.run_id, server.name
            );
            Ok(Verdict::Fine)
        }
        RunEnd::TakenOver => Err(CommandError::TakenOver {
            server: server.name.clone(),
            run_id: request.run_id.clone(),
        }),
        RunEnd::Started(Err(source)) => Err(CommandError::MarkerNotWritten {
            source,
            state_dir: config.daemon.state_dir.clone(),
        }),
        RunEnd::Recorded(Ok(record)) => {
            let _ = writeln!(out, "{}", summary(&record));
            Ok(if record.outcome == Outcome::Completed {
                Verdict::Fine
            } else {
                Verdict::Failed
            })
        }
        RunEnd::LeftOverNotRecorded(source) => Err(CommandError::LeftOverNotRecorded {
            source,
            state_dir: config.daemon.state_dir.clone(),
        }),
        RunEnd::Recorded(Err(e)) => {
            // The run ended: what it came to is worth showing though its record is not
            // written.
            if let (Wait::Follow, RecordError::History { record, .. }) = (wait, &e) {
                let _ = writeln!(out, "{}", summary(record));
            }
            Err(CommandError::RecordNotWritten(e))
        }
    }
}
