//! Run tasks on the PostgreSQL backend (docs/high-availability.md): a claim in the
//! database instead of the server's lock file, under this instance's lease epoch, and a
//! runner bound to that claim ([`RunStore::postgres`]), whose every write is fenced by the
//! epoch. Only the leader claims: a follower's loops tick but start nothing.
//!
//! Due work: `(server, due instant)` is claimed once, by anyone, ever; a due instant that
//! arrives while the server's run goes on is recorded `skipped` in one statement with its
//! claim. Adopted claims (from [`Leadership`]) go on from where they stood, never started
//! twice: a due instant's `claimed` claim is started; a `trigger`'s `claimed` claim (the
//! trigger is gone: interrupted, killed, or unheard of for a lease) is recorded
//! `interrupted`, not started in its place; `started` is followed from its snapshot;
//! `posting` is looked up on Jellyfin and followed if it began.

use super::ctx::Ctx;
use super::run_task::{DaemonRun, announce, jellyfin_client, take_slot};
use super::status::StatusBoard;
use crate::config::ServerConfig;
use crate::postgres::claims::{self, Adopted, ClaimState, Claimed};
use crate::postgres::leadership::Leadership;
use crate::postgres::{self, PgError, Session};
use crate::record::{Outcome, RunRequest, Trigger};
use crate::runner::marker::Marker;
use crate::runner::store::RunStore;
use crate::runner::{self, Runner, Wait};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// What the daemon needs of the PostgreSQL backend.
#[derive(Debug)]
pub struct PgDaemon {
    pub session: Arc<Session>,
    pub leadership: Leadership,
    /// The name this instance holds the lease and its claims under.
    pub holder: String,
}

impl PgDaemon {
    fn runner(&self, ctx: &Ctx, epoch: i64) -> Runner {
        ctx.runner.with_store(RunStore::postgres(
            self.session.clone(),
            epoch,
            &self.holder,
        ))
    }
}

/// The claim key of a run: its due instant, or `manual:<run_id>` for a run asked for.
pub fn claim_key(request: &RunRequest) -> String {
    match request.scheduled_for {
        Some(due) => due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("manual:{}", request.run_id),
    }
}

/// A new run: claimed under our trusted epoch, then run by a runner bound to the claim.
pub(super) async fn run(ctx: &Arc<Ctx>, pg: &PgDaemon, cfg: &ServerConfig, request: RunRequest) {
    let Some(_slot) = take_slot(ctx).await else {
        return;
    };
    let Some(epoch) = pg.leadership.trusted_epoch() else {
        info!("not leading (or the lease is no longer trusted); the leader runs it");
        return;
    };
    let key = claim_key(&request);
    let claimed = pg
        .session
        .with(|c| {
            let (holder, key, run_id) = (&pg.holder, &key, &request.run_id);
            async move { claims::claim(&c, holder, epoch, &cfg.name, key, run_id).await }
        })
        .await;
    match claimed {
        Ok(Claimed::Won) => {}
        Ok(Claimed::Taken) => return info!(claim_key = %key, "claimed already; nothing to do"),
        Ok(Claimed::NotLeader) => return info!("the lease is no longer ours; not started"),
        Ok(Claimed::Busy) => {
            let reason = "another run of this server is still in progress".to_owned();
            return skip(ctx, pg, cfg, &request, reason).await;
        }
        Err(e) => return error!(error = %e, "cannot claim the run; not started"),
    }
    ctx.status.progress(&cfg.name, "starting", None);
    let Some(client) = jellyfin_client(ctx, cfg) else {
        return;
    };
    let mut observer = DaemonRun { ctx, cfg };
    let runner = pg.runner(ctx, epoch);
    let work = runner.run(&client, cfg, &request, &mut observer, Wait::Follow);
    tokio::select! {
        _ = work => {}
        _ = ctx.abort_runs.cancelled() => {
            info!("shutting down during the run; its claim lets the next leader follow it");
        }
    }
}

/// Whether `server` has any claim (a run, a skip) in the database: catch-up, as with files,
/// only makes up for a due instant missed by a server that has run before. (Pruning,
/// [`prune_claims`], keeps each server's newest claim. Records are not asked: a history
/// imported from files has records without claims, and the due instant the files daemon
/// ran last would be run again.)
pub(super) async fn has_run_before(pg: &PgDaemon, server: &str) -> bool {
    let found = pg
        .session
        .with(|c| async move {
            let row = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM run_claims WHERE server = $1)",
                    &[&server],
                )
                .await?;
            Ok(row.get::<_, bool>(0))
        })
        .await;
    found.unwrap_or_else(|e| {
        warn!(error = %e, "cannot tell whether the server ran before; no catch-up");
        false
    })
}

/// How long a done claim is kept: the longest `catch_up_window` of `servers` (at least the
/// default, 24 h) plus [`CLAIM_MARGIN`]. A due instant is dispatched at its time, or again
/// by catch-up as the latest due instant within `catch_up_window` of now, never older:
/// past that, its claim cannot meet a second dispatch, so deleting it cannot make a
/// second start.
pub fn claims_kept_for(servers: impl IntoIterator<Item = Duration>) -> Duration {
    let window = servers
        .into_iter()
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(24 * 3600));
    window.saturating_add(CLAIM_MARGIN)
}

/// The margin on top of the catch-up window: for a leader whose clock is behind, and for
/// instances rolled out one by one with a longer `catch_up_window` than the one pruning.
/// A claim is a short row; a week of them is nothing to keep.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Claims deleted per statement, so one pass never holds many rows locked at once.
pub const PRUNE_BATCH: i64 = 1000;

/// Statements per pass: a backlog larger than this goes at the next pass.
const PRUNE_BATCHES_PER_PASS: usize = 100;

/// One pass of claim retention, by the leader: the done claims older than `kept_for`,
/// deleted in batches of [`PRUNE_BATCH`], each statement fenced by the lease (under
/// `epoch`; a leader that lost its lease deletes nothing). Returns how many went.
pub(super) async fn prune_claims(pg: &PgDaemon, epoch: i64, kept_for: Duration) -> u64 {
    let mut total = 0;
    for _ in 0..PRUNE_BATCHES_PER_PASS {
        let holder = pg.holder.as_str();
        let pruned = pg
            .session
            .with(
                |c| async move { claims::prune(&c, (holder, epoch), kept_for, PRUNE_BATCH).await },
            )
            .await;
        match pruned {
            Ok(n) => {
                total += n;
                if n < PRUNE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %e, "old claims not pruned; the next pass tries again");
                break;
            }
        }
    }
    if total > 0 {
        info!(pruned = total, kept_for = %humantime::format_duration(kept_for), "old done claims deleted");
    }
    total
}

/// The newest `newest` records of each of `servers` from `run_history`, onto the board
/// (shown, not counted), as the files backend reads its histories' tails at start: the
/// status page's last runs and the metrics' last-success times survive a restart. A
/// database that cannot be read leaves the board empty for that server, said in the log.
pub(super) async fn remember_records(
    pg: &PgDaemon,
    status: &StatusBoard,
    servers: &[String],
    newest: usize,
) {
    let newest = i64::try_from(newest).unwrap_or(i64::MAX);
    for server in servers {
        let read = pg
            .session
            .with(|c| async move { postgres::records::read(&c, server, Some(newest)).await })
            .await;
        match read {
            Ok(lines) => {
                let read = crate::records::parse(server, lines);
                for w in &read.warnings {
                    warn!(server = %server, "{w}");
                }
                status.remember(server, &read.into_records());
            }
            Err(e) => {
                warn!(server = %server, error = %e, "cannot read the server's last runs from the database; the status page shows none until its next run")
            }
        }
    }
}

/// A due instant not started because of `reason`: recorded `skipped` with its claim, once.
pub(super) async fn skip(
    ctx: &Arc<Ctx>,
    pg: &PgDaemon,
    cfg: &ServerConfig,
    request: &RunRequest,
    reason: String,
) {
    let Some(epoch) = pg.leadership.trusted_epoch() else {
        return;
    };
    let record = runner::not_started(cfg, request, Outcome::Skipped, reason);
    let key = claim_key(request);
    let written = match serde_json::to_string(&record) {
        Ok(line) => {
            pg.session
                .with(|c| {
                    let (holder, key, line) = (&pg.holder, &key, &line);
                    let (run_id, at) = (&record.run_id, record.triggered_at);
                    let (server, limit) = (&cfg.name, cfg.history_limit);
                    async move {
                        claims::skip(&c, holder, epoch, server, key, run_id, at, line, limit).await
                    }
                })
                .await
        }
        Err(e) => Err(PgError::Encode(e.to_string())),
    };
    match written {
        Ok(true) => {
            info!(outcome = %record.outcome, reason = %record.reason.as_deref().unwrap_or(""), "run not started");
            announce(ctx, cfg, &record);
        }
        Ok(false) => {
            info!(claim_key = %key, "not recorded: claimed meanwhile, or no longer leading")
        }
        Err(e) => error!(error = %e, "the skipped run's record was not written"),
    }
}

/// An adopted claim, on from where it stood: never a second start.
pub(super) async fn adopted(ctx: &Arc<Ctx>, pg: &PgDaemon, cfg: &ServerConfig, claim: Adopted) {
    let Some(_slot) = take_slot(ctx).await else {
        return;
    };
    let Some(epoch) = pg.leadership.trusted_epoch() else {
        return warn!(run_id = %claim.run_id, "adopted run left: the lease is no longer trusted");
    };
    let Some(client) = jellyfin_client(ctx, cfg) else {
        return;
    };
    let runner = pg.runner(ctx, epoch);
    let mut observer = DaemonRun { ctx, cfg };
    let snapshot: Option<Marker> = claim
        .snapshot
        .clone()
        .and_then(|s| serde_json::from_value(s).ok());
    let request = request_of(&claim);
    let work = async {
        match (claim.state, snapshot, claim.posted_at) {
            (ClaimState::Claimed, _, _) if claim.is_manual() => {
                let reason = "the `trigger` that asked for this run stopped (interrupted, killed, or unheard of for longer than lease_ttl) before its start request; the leader does not start it in its place".to_owned();
                interrupted(&runner, cfg, &request, reason, &mut observer).await;
            }
            (ClaimState::Claimed, _, _) => {
                info!(claim_key = %claim.claim_key, "adopted a claimed run that was never started; starting it");
                runner
                    .run(&client, cfg, &request, &mut observer, Wait::Follow)
                    .await;
            }
            (_, Some(marker), _) => {
                info!(task_id = %marker.started.task_id, "adopted a run in flight; following it");
                runner
                    .resume_adopted(&client, cfg, marker, &mut observer)
                    .await;
            }
            (_, None, Some(posted_at)) => {
                info!(claim_key = %claim.claim_key, "adopted a run whose start request may have gone out; looking it up on Jellyfin");
                runner
                    .resume_posted(&client, cfg, &request, posted_at, &mut observer)
                    .await;
            }
            (_, None, None) => {
                let reason = "the instance that claimed this run stopped between its start request and Jellyfin's answer; it is not started again (at most one start per due instant)".to_owned();
                interrupted(&runner, cfg, &request, reason, &mut observer).await;
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = ctx.abort_runs.cancelled() => {}
    }
}

/// An adopted claim that is not run: recorded `interrupted` for `reason`, starting nothing
/// (a `trigger`'s claim never started, or a `posting` claim from before schema version 2,
/// which has no time to look the run up by).
async fn interrupted(
    runner: &Runner,
    cfg: &ServerConfig,
    request: &RunRequest,
    reason: String,
    observer: &mut DaemonRun<'_>,
) {
    let mut record = runner::not_started(cfg, request, Outcome::Interrupted, reason);
    record.duration_ms = None;
    warn!(run_id = %record.run_id, "adopted run recorded as interrupted");
    let result = runner.write(record, cfg.history_limit).await;
    crate::runner::RunObserver::recorded(observer, &result);
}

/// The request a claim stands for (a claim keeps its key and run id; the request's time
/// is not kept, so it reads as now).
fn request_of(claim: &Adopted) -> RunRequest {
    let due: Option<DateTime<Utc>> = DateTime::parse_from_rfc3339(&claim.claim_key)
        .ok()
        .map(|d| d.with_timezone(&Utc));
    RunRequest {
        run_id: claim.run_id.clone(),
        trigger: if due.is_some() {
            Trigger::Schedule
        } else {
            Trigger::Manual
        },
        scheduled_for: due,
        triggered_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn claims_are_kept_for_the_longest_catch_up_window_and_a_week() {
        let table = [
            (vec![], DAY + CLAIM_MARGIN),
            (vec![Duration::from_secs(3600)], DAY + CLAIM_MARGIN),
            (vec![DAY, 3 * DAY, 2 * DAY], 3 * DAY + CLAIM_MARGIN),
            (vec![Duration::MAX], Duration::MAX),
        ];
        for (windows, kept) in table {
            assert_eq!(claims_kept_for(windows.clone()), kept, "{windows:?}");
        }
    }
}
