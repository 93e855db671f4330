//! Run claims: one row per (server, due instant) or (server, `manual:<run_id>`), inserted
//! before the start request in a statement that checks the claimant's lease, then moved
//! `claimed → posting → started → done` by writes fenced by the claim's epoch and holder:
//! once another instance has adopted the claim (a takeover's newer epoch, or the leader
//! taking over a `trigger`'s claim whose heartbeat went stale), the old owner's writes
//! change 0 rows.
//! The history record is written in the same statement that marks the claim done, so a
//! run has one record, written by its current owner.

use super::PgError;
use super::lease::LEASE_NAME;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Client;

/// What [`claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The row is ours: go on and start the run.
    Won,
    /// The key was claimed already (by anyone, ever): start nothing, record nothing.
    Taken,
    /// Another run is active on the server: start nothing; the due instant is recorded
    /// `skipped` ([`skip`]), as the files backend does.
    Busy,
    /// Our lease is not valid in the database (expired, or another holder): start nothing.
    NotLeader,
}

/// Where a claim stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimState {
    /// Inserted; the start request was not sent.
    Claimed,
    /// The start request may have been sent.
    Posting,
    /// Jellyfin accepted the start; the snapshot says how to re-attach.
    Started,
    Done,
}

impl ClaimState {
    fn parse(s: &str) -> Option<ClaimState> {
        Some(match s {
            "claimed" => ClaimState::Claimed,
            "posting" => ClaimState::Posting,
            "started" => ClaimState::Started,
            "done" => ClaimState::Done,
            _ => return None,
        })
    }
}

/// A claim a takeover adopted: go on from where it stood.
#[derive(Clone, Debug, PartialEq)]
pub struct Adopted {
    pub server: String,
    pub claim_key: String,
    pub run_id: String,
    pub state: ClaimState,
    /// What re-attaching needs (the in-flight marker), for `Started` claims.
    pub snapshot: Option<serde_json::Value>,
    /// When the claim went `posting` (the database's clock): a run of the task begun since
    /// may be this claim's.
    pub posted_at: Option<DateTime<Utc>>,
}

impl Adopted {
    /// Whether a `trigger` asked for the run (claim key `manual:<run_id>`).
    pub fn is_manual(&self) -> bool {
        self.claim_key.starts_with("manual:")
    }
}

/// Inserts the claim of `(server, claim_key)` for `run_id` under our lease `(holder,
/// epoch)`, in one statement that checks the lease is still valid and holds it (`FOR
/// SHARE`) so no takeover can slip between the check and the insert.
pub async fn claim(
    client: &Client,
    holder: &str,
    epoch: i64,
    server: &str,
    claim_key: &str,
    run_id: &str,
) -> Result<Claimed, PgError> {
    let row = client
        .query_one(
            "WITH lease AS (
                 SELECT epoch FROM scheduler_lease
                  WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                    FOR SHARE
             ), inserted AS (
                 INSERT INTO run_claims (server, claim_key, run_id, epoch, holder, state)
                 SELECT $4, $5, $6, epoch, $2, 'claimed' FROM lease
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM lease), EXISTS (SELECT 1 FROM inserted),
                    EXISTS (SELECT 1 FROM run_claims WHERE server = $4 AND claim_key = $5)",
            &[&LEASE_NAME, &holder, &epoch, &server, &claim_key, &run_id],
        )
        .await?;
    // Not inserted and the key not there before the statement: the one-active-claim index
    // refused it. (A claim of the same key committed during the statement reads as Busy;
    // the skip record it leads to then conflicts on the key and is not written.)
    Ok(
        match (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
        ) {
            (false, _, _) => Claimed::NotLeader,
            (true, true, _) => Claimed::Won,
            (true, false, true) => Claimed::Taken,
            (true, false, false) => Claimed::Busy,
        },
    )
}

/// The epoch a claim handed over ([`hand_over`]) carries: older than any lease's, so the
/// next leader adopts it (at its next renewal, or at its takeover).
pub const HANDED_OVER: i64 = 0;

/// Inserts the claim of a run asked for by `trigger` (`holder`, which never holds the
/// lease), key `manual:<run_id>`, under the epoch the lease row holds now, read and held
/// (`FOR SHARE`) in the same statement: the live leader's, or the last leader's when none
/// is live, [`HANDED_OVER`] when none ever led. Its epoch and holder fence the trigger's
/// writes. `None`: another run is active on the server.
///
/// The claim's heartbeat starts now; the trigger keeps it fresh ([`heartbeat`]) every
/// third of `ttl` (its `lease_ttl`) while it waits, and the leader adopts a trigger's
/// claim whose heartbeat is older than `ttl` ([`adopt`]). The trigger's own `ttl` is kept
/// with the claim, so a leader configured with another `lease_ttl` judges it right.
pub async fn claim_manual(
    client: &Client,
    holder: &str,
    server: &str,
    run_id: &str,
    ttl: Duration,
) -> Result<Option<i64>, PgError> {
    let ttl_secs = ttl.as_secs_f64();
    let key = format!("manual:{run_id}");
    let row = client
        .query_one(
            "WITH lease AS (
                 SELECT epoch FROM scheduler_lease WHERE name = $1 FOR SHARE
             ), inserted AS (
                 INSERT INTO run_claims (server, claim_key, run_id, epoch, holder, state,
                                         heartbeat_at, heartbeat_ttl)
                 VALUES ($3, $4, $5, COALESCE((SELECT epoch FROM lease), $6), $2, 'claimed',
                         now(), make_interval(secs => $7))
                 ON CONFLICT DO NOTHING
                 RETURNING epoch
             )
             SELECT (SELECT epoch FROM inserted)",
            &[
                &LEASE_NAME,
                &holder,
                &server,
                &key,
                &run_id,
                &HANDED_OVER,
                &ttl_secs,
            ],
        )
        .await?;
    Ok(row.get::<_, Option<i64>>(0))
}

/// An open claim of ours handed over to whoever leads (`trigger --no-wait` once started,
/// or a `trigger` interrupted): its epoch becomes [`HANDED_OVER`], so the leader adopts it
/// at its next renewal and goes on from where it stood (a `started` run is followed from
/// its snapshot to its record, never started again). `false`: it was not ours (adopted
/// meanwhile) or is done.
pub async fn hand_over(
    client: &Client,
    run_id: &str,
    epoch: i64,
    holder: &str,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "UPDATE run_claims
                SET epoch = $4, heartbeat_at = NULL, heartbeat_ttl = NULL, updated_at = now()
              WHERE run_id = $1 AND epoch = $2 AND holder = $3 AND state <> 'done'",
            &[&run_id, &epoch, &holder, &HANDED_OVER],
        )
        .await?;
    Ok(n == 1)
}

/// A `trigger`'s heartbeat on its claim while it waits: `heartbeat_at = now()`, fenced by
/// epoch and holder. `false`: the claim is no longer its own (the leader adopted it after
/// the heartbeat went stale): the trigger stops, changing nothing. `true`: it is (a claim
/// the trigger has just marked done is still its own; its heartbeat is then not written).
pub async fn heartbeat(
    client: &Client,
    run_id: &str,
    epoch: i64,
    holder: &str,
) -> Result<bool, PgError> {
    let row = client
        .query_one(
            "WITH beat AS (
                 UPDATE run_claims SET heartbeat_at = now()
                  WHERE run_id = $1 AND epoch = $2 AND holder = $3 AND state <> 'done'
              RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM beat)
                 OR EXISTS (SELECT 1 FROM run_claims
                             WHERE run_id = $1 AND epoch = $2 AND holder = $3)",
            &[&run_id, &epoch, &holder],
        )
        .await?;
    Ok(row.get(0))
}

/// `claimed → posting`, just before the start request. `false`: the claim is no longer
/// ours (adopted): send nothing.
pub async fn posting(
    client: &Client,
    run_id: &str,
    epoch: i64,
    holder: &str,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "UPDATE run_claims SET state = 'posting', posted_at = now(), updated_at = now()
              WHERE run_id = $1 AND epoch = $2 AND holder = $3 AND state = 'claimed'",
            &[&run_id, &epoch, &holder],
        )
        .await?;
    Ok(n == 1)
}

/// `→ started` with the snapshot re-attaching needs, once Jellyfin accepted the start.
/// `false`: the claim is no longer ours.
pub async fn started(
    client: &Client,
    run_id: &str,
    epoch: i64,
    holder: &str,
    snapshot: &serde_json::Value,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "UPDATE run_claims SET state = 'started', snapshot = $4, updated_at = now()
              WHERE run_id = $1 AND epoch = $2 AND holder = $3
                AND state IN ('claimed', 'posting', 'started')",
            &[&run_id, &epoch, &holder, snapshot],
        )
        .await?;
    Ok(n == 1)
}

/// The tail of the statements that write a record (`$n` is the record's text): the record
/// into `run_history` from the `done` rows (none when the fenced write before it changed
/// nothing), then the server's older records beyond `history_limit` deleted, as the files
/// backend trims its history file. The new record always stays; the others are kept
/// newest first by when their run was asked for. Selects whether the record was written.
fn record_and_trim(first: usize) -> String {
    // `$keep`: how many of the older records stay ([`others_kept`]).
    let (at, record, keep) = (first, first + 1, first + 2);
    format!(
        "written AS (
             INSERT INTO run_history (run_id, server, triggered_at, record)
             SELECT run_id, server, ${at}, ${record}::text::json FROM done
          RETURNING server
         ), beyond AS (
             SELECT run_id FROM run_history
              WHERE server = (SELECT server FROM written)
              ORDER BY triggered_at DESC, run_id DESC
             OFFSET ${keep}
         ), trimmed AS (
             DELETE FROM run_history WHERE run_id IN (SELECT run_id FROM beyond)
         )
         SELECT EXISTS (SELECT 1 FROM written)"
    )
}

/// The records kept besides the new one, for a `history_limit`.
fn others_kept(history_limit: usize) -> i64 {
    i64::try_from(history_limit.saturating_sub(1)).unwrap_or(i64::MAX)
}

/// `→ done` and the run's record (its JSON line), in one statement: the record is written
/// (and the server's history trimmed to `history_limit`) if and only if the claim was ours
/// and not done yet. `false`: nothing was written (another instance owns the run now and
/// records it, or it is recorded already).
pub async fn finish(
    client: &Client,
    run_id: &str,
    (epoch, holder): (i64, &str),
    triggered_at: DateTime<Utc>,
    record: &str,
    history_limit: usize,
) -> Result<bool, PgError> {
    let keep = others_kept(history_limit);
    let statement = format!(
        "WITH done AS (
             UPDATE run_claims SET state = 'done', updated_at = now()
              WHERE run_id = $1 AND epoch = $2 AND holder = $3 AND state <> 'done'
          RETURNING run_id, server
         ), {}",
        record_and_trim(4)
    );
    let row = client
        .query_one(
            &statement,
            &[&run_id, &epoch, &holder, &triggered_at, &record, &keep],
        )
        .await?;
    Ok(row.get(0))
}

/// Records run `run_id` of `(server, claim_key)` as not started (`record`, its history
/// line: `skipped` while another run is active), under our lease, in one statement: a
/// claim already `done` and its record (the history trimmed to `history_limit`). `false`:
/// the lease is not ours, or the key was claimed meanwhile (that claim's run is recorded
/// instead).
#[allow(clippy::too_many_arguments)]
pub async fn skip(
    client: &Client,
    holder: &str,
    epoch: i64,
    server: &str,
    claim_key: &str,
    run_id: &str,
    triggered_at: DateTime<Utc>,
    record: &str,
    history_limit: usize,
) -> Result<bool, PgError> {
    let keep = others_kept(history_limit);
    let statement = format!(
        "WITH lease AS (
             SELECT epoch FROM scheduler_lease
              WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                FOR SHARE
         ), done AS (
             INSERT INTO run_claims (server, claim_key, run_id, epoch, holder, state)
             SELECT $4, $5, $6, epoch, $2, 'done' FROM lease
             ON CONFLICT DO NOTHING
             RETURNING run_id, server
         ), {}",
        record_and_trim(7)
    );
    let row = client
        .query_one(
            &statement,
            &[
                &LEASE_NAME,
                &holder,
                &epoch,
                &server,
                &claim_key,
                &run_id,
                &triggered_at,
                &record,
                &keep,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// A takeover, and after it every renewal: the open claims (not done) the leader takes
/// over become ours, under our lease, checked in the same statement:
///
/// - a claim of an older epoch without a heartbeat: the last leader's, or one handed over
///   ([`HANDED_OVER`]);
/// - a `trigger`'s claim (it has a heartbeat) whose heartbeat is older than the trigger's
///   `lease_ttl` (kept with the claim): the trigger was killed, or paused or cut off that
///   long. A trigger's claim with a fresh heartbeat stays the trigger's, whatever its
///   epoch.
///
/// Adopted claims lose their heartbeat (the lease is theirs now), and the old holder's
/// writes, fenced by holder as well as epoch, change nothing. Returns them, to go on from
/// where each stood.
pub async fn adopt(client: &Client, holder: &str, epoch: i64) -> Result<Vec<Adopted>, PgError> {
    let rows = client
        .query(
            "WITH lease AS (
                 SELECT epoch FROM scheduler_lease
                  WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                    FOR SHARE
             )
             UPDATE run_claims c
                SET epoch = lease.epoch, holder = $2, heartbeat_at = NULL,
                    heartbeat_ttl = NULL, updated_at = now()
               FROM lease
              WHERE c.state <> 'done'
                AND CASE WHEN c.heartbeat_at IS NULL THEN c.epoch < lease.epoch
                         ELSE c.heartbeat_at < now() - c.heartbeat_ttl END
          RETURNING c.server, c.claim_key, c.run_id, c.state, c.snapshot, c.posted_at",
            &[&LEASE_NAME, &holder, &epoch],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Adopted {
            server: r.get(0),
            claim_key: r.get(1),
            run_id: r.get(2),
            // The CHECK constraint allows no other value; were there one, re-attaching
            // (never starting) is the safe reading.
            state: ClaimState::parse(r.get(3)).unwrap_or(ClaimState::Posting),
            snapshot: r.get(4),
            posted_at: r.get(5),
        })
        .collect())
}

/// Deletes at most `batch` claims that are done and have been for longer than `kept_for`,
/// under our lease `(holder, epoch)`, checked in the same statement (a leader cut off
/// deletes nothing). Each server's newest claim stays, whatever its age: catch-up at a
/// takeover asks whether a server has run before by its claims (a history imported from
/// files has none, and must not make the first leader run again a due instant the files
/// daemon ran). Such a claim can no longer matter once no instance would dispatch
/// its due instant again (the daemon says how long that is: the longest
/// `catch_up_window` plus a margin). Returns how many went: fewer than `batch` means none
/// is left.
pub async fn prune(
    client: &Client,
    (holder, epoch): (&str, i64),
    kept_for: Duration,
    batch: i64,
) -> Result<u64, PgError> {
    let kept_secs = kept_for.as_secs_f64();
    let n = client
        .execute(
            "WITH lease AS (
                 SELECT epoch FROM scheduler_lease
                  WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                    FOR SHARE
             ), old AS (
                 SELECT c.server, c.claim_key FROM run_claims c, lease
                  WHERE c.state = 'done' AND c.updated_at < now() - make_interval(secs => $4)
                    AND EXISTS (SELECT 1 FROM run_claims n
                                 WHERE n.server = c.server AND n.claimed_at > c.claimed_at)
                  LIMIT $5
             )
             DELETE FROM run_claims c USING old
              WHERE c.server = old.server AND c.claim_key = old.claim_key",
            &[&LEASE_NAME, &holder, &epoch, &kept_secs, &batch],
        )
        .await?;
    Ok(n)
}

/// The newest `limit` records of `server`, newest first, each the line history JSON Lines
/// would hold, byte for byte.
pub async fn history(client: &Client, server: &str, limit: i64) -> Result<Vec<String>, PgError> {
    let rows = client
        .query(
            "SELECT record::text FROM run_history WHERE server = $1
              ORDER BY triggered_at DESC, run_id DESC LIMIT $2",
            &[&server, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
