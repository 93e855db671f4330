//! Fault injection: 50 simulated servers on a schedule every 3 seconds, each given a fault
//! from a seeded mix, against the real daemon in-process.
//!
//! Asserted: nothing panics and the daemon keeps going; every due slot of every server has
//! exactly one history record, with the outcome its fault implies; servers without faults
//! complete every slot on time; memory does not keep growing from cycle to cycle.
//! Bounded: about 20 s.

use chrono::{DateTime, Utc};
use jellyfin_export_scheduler::daemon;
use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::record::{Outcome, RunRecord};
use jellyfin_export_scheduler::sim::{
    CancelMode, Endpoint, Fault, FaultRule, Requests, SimServerConfig,
};
use jellyfin_export_scheduler::state::StateDir;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::KEY;

const SERVERS: usize = 50;
const SEED: u64 = 0x5eed_2026_1126;
/// Slots of the schedule (every 3 s) that are let run.
const SLOTS: usize = 5;

/// splitmix64: a tiny seeded generator, so the mix is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The faults of the mix and what each implies, slot by slot (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    None,
    Refused,
    ResetMidBodyOnce,
    SlowerThanRequestTimeout,
    ServerErrorsOnStart,
    RetryAfter503Once,
    GarbageTaskList,
    TruncatedJsonOnce,
    UnknownEnums,
    TaskVanishes,
    GracefulRestart,
    Crash,
    CancelHangs,
    AlreadyRunning,
}

const KINDS: [Kind; 14] = [
    Kind::None,
    Kind::Refused,
    Kind::ResetMidBodyOnce,
    Kind::SlowerThanRequestTimeout,
    Kind::ServerErrorsOnStart,
    Kind::RetryAfter503Once,
    Kind::GarbageTaskList,
    Kind::TruncatedJsonOnce,
    Kind::UnknownEnums,
    Kind::TaskVanishes,
    Kind::GracefulRestart,
    Kind::Crash,
    Kind::CancelHangs,
    Kind::AlreadyRunning,
];

impl Kind {
    fn expected(self, slot: usize) -> Outcome {
        use Outcome::*;
        match self {
            Kind::None
            | Kind::ResetMidBodyOnce
            | Kind::RetryAfter503Once
            | Kind::TruncatedJsonOnce => Completed,
            Kind::Refused
            | Kind::SlowerThanRequestTimeout
            | Kind::ServerErrorsOnStart
            | Kind::GarbageTaskList => TriggerFailed,
            // A state Jellyfin may add later: never Idle, so the new result decides, and
            // an unknown status is a failure.
            Kind::UnknownEnums => Failed,
            // Gone after the first start: that run is lost, later ones can't find the task.
            Kind::TaskVanishes if slot == 0 => Lost,
            Kind::TaskVanishes => TriggerFailed,
            Kind::GracefulRestart => Aborted,
            Kind::Crash => Lost,
            // The first run times out; the task then hangs in Cancelling, so every later
            // slot finds it running.
            Kind::CancelHangs if slot == 0 => TimedOut,
            Kind::CancelHangs => Skipped,
            // Running when the daemon arrives; done by the second slot.
            Kind::AlreadyRunning if slot == 0 => Skipped,
            Kind::AlreadyRunning => Completed,
        }
    }

    fn configure(self, c: &mut SimServerConfig) {
        match self {
            Kind::None | Kind::Refused => {}
            Kind::ResetMidBodyOnce => c.faults.push(FaultRule::new(
                Some(Endpoint::Task),
                Requests::first(1),
                Fault::ResetMidBody,
            )),
            Kind::SlowerThanRequestTimeout => c.faults.push(FaultRule::new(
                Some(Endpoint::TaskList),
                Requests::All,
                Fault::Latency(Duration::from_millis(700)),
            )),
            Kind::ServerErrorsOnStart => c.faults.push(FaultRule::new(
                Some(Endpoint::StartTask),
                Requests::All,
                Fault::ServerError,
            )),
            Kind::RetryAfter503Once => c.faults.push(FaultRule::new(
                Some(Endpoint::TaskList),
                Requests::first(1),
                Fault::Unavailable {
                    retry_after: Some(0),
                },
            )),
            Kind::GarbageTaskList => c.faults.push(FaultRule::new(
                Some(Endpoint::TaskList),
                Requests::All,
                Fault::Garbage,
            )),
            Kind::TruncatedJsonOnce => c.faults.push(FaultRule::new(
                Some(Endpoint::Task),
                Requests::first(2),
                Fault::TruncatedJson,
            )),
            Kind::UnknownEnums => c.faults.push(FaultRule::new(
                Some(Endpoint::Task),
                Requests::All,
                Fault::UnknownEnums,
            )),
            Kind::TaskVanishes => c.task_vanishes = true,
            Kind::GracefulRestart => {
                c.restart_after = Some(Duration::from_millis(150));
                c.downtime = Duration::from_millis(300);
                c.retry_after = Some(0);
            }
            Kind::Crash => {
                c.crash_after = Some(Duration::from_millis(150));
                c.downtime = Duration::from_millis(300);
            }
            Kind::CancelHangs => {
                c.run_length = Duration::from_secs(60);
                c.cancel = CancelMode::Stuck;
            }
            Kind::AlreadyRunning => {
                // Started before the daemon and still going at the first due instant
                // (about 2.9 s later), over before the second; later runs are short
                // again (see the test).
                c.running_at_start = true;
                c.run_length = Duration::from_millis(4400);
            }
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_servers_with_seeded_faults() {
    let panics = Arc::new(AtomicUsize::new(0));
    {
        let panics = panics.clone();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    }
    let mut rng = Rng(SEED);
    // Every kind at least twice, the rest drawn by the seed; a fifth of the fleet is clean.
    let kinds: Vec<Kind> = (0..SERVERS)
        .map(|i| {
            if i < 2 * KINDS.len() {
                KINDS[i % KINDS.len()]
            } else if rng.next().is_multiple_of(5) {
                Kind::None
            } else {
                KINDS[(rng.next() % KINDS.len() as u64) as usize]
            }
        })
        .collect();
    let names: Vec<String> = (0..SERVERS).map(|i| format!("s{i:02}")).collect();
    // Begin just after a slot boundary, so the first due instant is ~2.9 s away and every
    // fault's timing (below) fits between two slots.
    let every_3s =
        jellyfin_export_scheduler::schedule::Schedule::parse("*/3 * * * * *", chrono_tz::UTC)
            .unwrap();
    let boundary = every_3s.next_after(Utc::now()).unwrap();
    tokio::time::sleep(
        (boundary + chrono::Duration::milliseconds(100) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
    .await;
    let sim = common::sim::simulator(
        names
            .iter()
            .zip(&kinds)
            .map(|(n, k)| {
                let mut c = SimServerConfig::new(n, KEY);
                c.start_delay = Duration::from_millis(30);
                c.run_length = Duration::from_millis(400);
                c.result_delay = Duration::from_millis(30);
                c.zip_base64_len = 1024;
                k.configure(&mut c);
                c
            })
            .collect(),
    )
    .await;
    // The run already going keeps its length; the next ones are ordinary.
    for (n, k) in names.iter().zip(&kinds) {
        if *k == Kind::AlreadyRunning {
            sim.server(n)
                .update(|c| c.run_length = Duration::from_millis(400));
        }
    }
    let refused_port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\nmax_concurrent_runs = 50\nshutdown_grace = \"10s\"\n\
         [defaults]\nschedule = \"*/3 * * * * *\"\ntimezone = \"UTC\"\npoll_interval = \"50ms\"\n\
         request_timeout = \"400ms\"\ntimeout = \"1500ms\"\nstart_grace = \"700ms\"\nretries = 1\nretry_backoff = \"50ms\"\n",
        dir.path().display()
    );
    for (n, k) in names.iter().zip(&kinds) {
        let url = if *k == Kind::Refused {
            format!("http://127.0.0.1:{refused_port}")
        } else {
            sim.url(n)
        };
        text.push_str(&format!(
            "\n[[servers]]\nname = \"{n}\"\nurl = \"{url}\"\napi_key = \"{KEY}\"\n"
        ));
    }
    let config = common::config::parse(&text);
    let schedule = config.servers[0].schedule.clone();
    let state = StateDir::open(dir.path()).unwrap();

    let started_at = Utc::now();
    let handle = daemon::start(config, state.clone()).await;
    let dues: Vec<DateTime<Utc>> = schedule.upcoming(started_at, SLOTS);
    let mut rss_per_cycle = Vec::new();
    for due in &dues {
        let wait = (*due + chrono::Duration::milliseconds(2900) - Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait).await; // pacing to the schedule, not synchronisation: results are read after the drain
        // The simulator keeps every request it saw; drop them so that only the daemon's
        // memory is compared across cycles.
        for n in &names {
            sim.server(n).clear_requests();
        }
        rss_per_cycle.push(rss_kib());
    }
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .expect("the daemon drained within 20 s");

    let history = History::new(&state);
    let mut problems = Vec::new();
    for (n, k) in names.iter().zip(&kinds) {
        let records: Vec<RunRecord> = history.read(n).unwrap().into_records();
        let mut by_slot: BTreeMap<DateTime<Utc>, Vec<&RunRecord>> = BTreeMap::new();
        for r in &records {
            by_slot
                .entry(r.scheduled_for.expect("scheduled runs have scheduled_for"))
                .or_default()
                .push(r);
        }
        let slots: Vec<_> = by_slot.keys().copied().collect();
        if slots != dues {
            problems.push(format!("{n} ({k:?}): slots {slots:?}, expected {dues:?}"));
            continue;
        }
        for (slot, due) in dues.iter().enumerate() {
            let rs = &by_slot[due];
            if rs.len() != 1 {
                problems.push(format!("{n} ({k:?}) slot {slot}: {} records", rs.len()));
                continue;
            }
            let want = k.expected(slot);
            if rs[0].outcome != want {
                problems.push(format!(
                    "{n} ({k:?}) slot {slot}: {} ({}), expected {want}",
                    rs[0].outcome,
                    rs[0].reason.as_deref().unwrap_or("")
                ));
            }
            if *k == Kind::None {
                let late = (rs[0].triggered_at - *due).num_milliseconds();
                if !(0..500).contains(&late) {
                    problems.push(format!(
                        "{n} (clean) slot {slot} started {late} ms after its due instant"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
    // Memory: after the first cycles warm up, no steady growth (a leak per run would add
    // up over 50 servers × cycles).
    let (second, last) = (rss_per_cycle[1], *rss_per_cycle.last().unwrap());
    assert!(
        last <= second + 4 * 1024,
        "RSS grew from {second} KiB (cycle 2) to {last} KiB (cycle {SLOTS}): {rss_per_cycle:?}"
    );
    eprintln!(
        "fault injection: {SERVERS} servers × {SLOTS} slots, RSS per cycle (KiB): {rss_per_cycle:?}"
    );
}
