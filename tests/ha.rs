//! Failover, driving the real binaries: two `run` daemons on the PostgreSQL backend (a
//! private cluster, `common::pg`), the simulated Jellyfin in the test process, a 2 s
//! lease and a schedule every 3 s. Both daemons start at the same instant (so they also
//! race to apply the schema). Each scenario then does something to the leader or the
//! database and checks, from the simulator's own request log and the database:
//! - at most one start request per due instant (no two in one 3 s slot of the simulator's
//!   log), and no more start requests than claims;
//! - one record per finished claim, and one claim per due instant;
//! - the other instance takes over within the promised 60 s (the table printed at the
//!   end of each scenario says how long it took);
//! - no panic in either daemon's log.

use jellyfin_export_scheduler::sim::Simulator;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

mod common;

use common::bin::Daemon;
use common::config::ConfigFile;
use common::pg::Cluster;
use common::proxy::Proxy;
use common::sim::{sim_server, simulator};

/// The promise: takeover within a minute of the leader's death or pause.
const PROMISED: Duration = Duration::from_secs(60);
/// Bounded waits for things that take a few seconds.
const WAIT: Duration = Duration::from_secs(40);

struct Stand {
    cluster: Cluster,
    db: Client,
    sim: Simulator,
    configs: Vec<ConfigFile>,
    daemons: Vec<Daemon>,
}

/// Every 3 s: the scenarios' schedule.
const EVERY_3S: &str = "*/3 * * * * *";

/// A config for instance `name`, on the database at `url`, server `t` on `schedule`.
fn config(name: &str, url: &str, sim: &Simulator, schedule: &str) -> ConfigFile {
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{url}\"\nlease_ttl = \"2s\"\ninstance_name = \"{name}\"\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\nshutdown_grace = \"200ms\""
    );
    ConfigFile::quick(
        &daemon,
        "",
        &[("t", sim.url("t"), &format!("schedule = \"{schedule}\""))],
    )
}

impl Stand {
    /// The cluster, the simulator, and daemons `a` and `b` started together; `a` reaches
    /// the database through `proxy` when given.
    async fn start(proxy_for_a: bool) -> (Stand, Option<Proxy>) {
        Stand::start_on(proxy_for_a, EVERY_3S, Duration::from_millis(1500)).await
    }

    /// [`Stand::start`] with server `t` on `schedule`, each run taking `run_length`.
    async fn start_on(
        proxy_for_a: bool,
        schedule: &str,
        run_length: Duration,
    ) -> (Stand, Option<Proxy>) {
        let cluster = Cluster::start();
        let sim = simulator(vec![sim_server("t", |c| {
            c.run_length = run_length;
        })])
        .await;
        let proxy = if proxy_for_a {
            Some(Proxy::start(([127, 0, 0, 1], cluster.port).into()).await)
        } else {
            None
        };
        let a_url = match &proxy {
            Some(p) => cluster.url().replace(
                &format!(":{}/", cluster.port),
                &format!(":{}/", p.addr.port()),
            ),
            None => cluster.url(),
        };
        let configs = vec![
            config("a", &a_url, &sim, schedule),
            config("b", &cluster.url(), &sim, schedule),
        ];
        let daemons = configs
            .iter()
            .map(|c| Daemon::run(&c.path, &c.dir.path().join("daemon.log")))
            .collect();
        let db = common::pg::connect(&cluster).await;
        let stand = Stand {
            cluster,
            db,
            sim,
            configs,
            daemons,
        };
        (stand, proxy)
    }

    fn index(name: &str) -> usize {
        if name == "a" { 0 } else { 1 }
    }

    /// The live lease's holder, once there is one.
    async fn leader(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some((holder, true)) = self.lease().await {
                return holder;
            }
            self.assert_within(start, WAIT, "an instance leads").await;
        }
    }

    async fn lease(&self) -> Option<(String, bool)> {
        let row = self
            .db
            .query_opt(
                "SELECT holder, expires_at > now() FROM scheduler_lease",
                &[],
            )
            .await
            .ok()??;
        Some((row.get(0), row.get(1)))
    }

    /// Until an instance other than `old` holds a live lease: how long that took.
    async fn takeover_from(&self, old: &str, since: Instant) -> (String, Duration) {
        loop {
            if let Some((holder, true)) = self.lease().await
                && holder != old
            {
                return (holder, since.elapsed());
            }
            self.assert_within(since, PROMISED, "the other instance took over")
                .await;
        }
    }

    /// Until `n` more runs have completed than `before`.
    async fn completed_runs(&self, n: i64, before: i64) {
        let start = Instant::now();
        while self
            .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
            .await
            < before + n
        {
            self.assert_within(start, WAIT, &format!("{n} more runs completed"))
                .await;
        }
    }

    /// Until a run is in flight (Jellyfin accepted its start).
    async fn run_in_flight(&self) -> String {
        let start = Instant::now();
        loop {
            if let Ok(Some(row)) = self
                .db
                .query_opt("SELECT run_id FROM run_claims WHERE state = 'started'", &[])
                .await
            {
                return row.get(0);
            }
            self.assert_within(start, WAIT, "a run is in flight").await;
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .query_one(sql, &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1)
    }

    /// Fails naming `what` (with both logs) once `limit` has passed since `start`; else
    /// a short pause before the next look.
    async fn assert_within(&self, start: Instant, limit: Duration, what: &str) {
        if start.elapsed() > limit {
            panic!(
                "not within {limit:?}: {what}\n--- a's log\n{}\n--- b's log\n{}",
                self.daemons[0].log(),
                self.daemons[1].log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// The promises, checked once the daemons are stopped.
    async fn check(mut self, scenario: &str, takeover: Option<Duration>) {
        for d in &mut self.daemons {
            if let Ok(None) = d.0.try_wait() {
                d.signal("TERM");
                d.wait_exit(Duration::from_secs(20)).await;
            }
        }
        let times = self.sim.server("t").start_requests();
        let starts = times.len() as i64;
        // A run is started right after its due instant (every 3 s, no jitter) and takes
        // 1.5 s: two start requests in one 3 s slot would be two starts of one due instant.
        let mut per_slot = std::collections::BTreeMap::<u64, usize>::new();
        for t in &times {
            let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            *per_slot.entry(secs / 3).or_default() += 1;
        }
        let claimed = self
            .count("SELECT count(*) FROM run_claims c JOIN run_history h USING (run_id) WHERE h.record->>'outcome' <> 'skipped'")
            .await;
        let open = self
            .count("SELECT count(*) FROM run_claims WHERE state <> 'done'")
            .await;
        let unrecorded = self
            .count("SELECT count(*) FROM run_claims c LEFT JOIN run_history h USING (run_id) WHERE c.state = 'done' AND h.run_id IS NULL")
            .await;
        let completed = self
            .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
            .await;
        let logs: Vec<String> = self.daemons.iter().map(|d| d.log()).collect();
        println!(
            "| {scenario:<34} | {:>9} | {starts:>6} | {completed:>9} | {open:>4} |",
            takeover.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis()))
        );
        for (name, log) in ["a", "b"].iter().zip(&logs) {
            assert!(
                !log.contains("panicked"),
                "{scenario}: {name} panicked:\n{log}"
            );
        }
        assert!(starts >= 1, "{scenario}: no run was ever started");
        assert!(
            per_slot.values().all(|n| *n == 1),
            "{scenario}: two start requests for one due instant: {per_slot:?}"
        );
        // Claims still open when the daemons stopped (a run cut by the stop) may have
        // had their start request too.
        assert!(
            starts <= claimed + open,
            "{scenario}: {starts} start requests for {claimed} recorded and {open} open claims"
        );
        assert_eq!(
            unrecorded, 0,
            "{scenario}: a finished claim without its record"
        );
        if let Some(t) = takeover {
            assert!(t < PROMISED, "{scenario}: takeover after {t:?}");
        }
        let _ = (&self.cluster, &self.configs);
    }
}

fn header() {
    println!("| scenario                           |  takeover | starts | completed | open |");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader() {
    let (mut s, _) = Stand::start(false).await;
    let leader = s.leader().await;
    s.completed_runs(1, 0).await;
    s.daemons[Stand::index(&leader)].signal("KILL");
    let since = Instant::now();
    let (_, takeover) = s.takeover_from(&leader, since).await;
    let before = s
        .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
        .await;
    s.completed_runs(2, before).await;
    let _ = s.daemons[Stand::index(&leader)]
        .wait_exit(Duration::from_secs(5))
        .await;
    header();
    s.check("kill -9 of the leader", Some(takeover)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_leader_mid_run_then_sigcont() {
    let (s, _) = Stand::start(false).await;
    let leader = s.leader().await;
    let run_id = s.run_in_flight().await;
    s.daemons[Stand::index(&leader)].signal("STOP");
    let since = Instant::now();
    let (_, takeover) = s.takeover_from(&leader, since).await;
    // The new leader follows the adopted run to its end and records it, once.
    let start = Instant::now();
    while s
        .count(&format!(
            "SELECT count(*) FROM run_history WHERE run_id = '{run_id}'"
        ))
        .await
        < 1
    {
        s.assert_within(start, WAIT, "the adopted run was recorded")
            .await;
    }
    s.daemons[Stand::index(&leader)].signal("CONT");
    let before = s
        .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
        .await;
    s.completed_runs(2, before).await;
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM run_history WHERE run_id = '{run_id}'"
        ))
        .await,
        1
    );
    header();
    s.check("SIGSTOP of the leader mid-run, SIGCONT", Some(takeover))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ctl_restart_immediate() {
    let (s, _) = Stand::start(false).await;
    s.leader().await;
    s.completed_runs(1, 0).await;
    let since = Instant::now();
    s.cluster.restart_immediate();
    let s = Stand {
        db: common::pg::connect(&s.cluster).await,
        ..s
    };
    s.leader().await;
    let resumed = since.elapsed();
    let before = s
        .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
        .await;
    s.completed_runs(2, before).await;
    header();
    s.check("pg_ctl restart -m immediate", Some(resumed)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_forwarding_cuts_the_leader_off() {
    let (s, proxy) = Stand::start(true).await;
    let proxy = proxy.unwrap();
    // a (behind the proxy) must lead for the cut to matter: stop b until a leads.
    let first = s.leader().await;
    if first != "a" {
        s.daemons[1].signal("STOP");
        s.takeover_from("b", Instant::now()).await;
        s.daemons[1].signal("CONT");
    }
    s.completed_runs(1, 0).await;
    proxy.stop_forwarding();
    let since = Instant::now();
    let (_, takeover) = s.takeover_from("a", since).await;
    let before = s
        .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
        .await;
    s.completed_runs(2, before).await;
    proxy.resume();
    let before = s
        .count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'completed'")
        .await;
    s.completed_runs(1, before).await;
    header();
    s.check("a proxy that stops forwarding", Some(takeover))
        .await;
}

/// `trigger --no-wait` while two daemons run (nothing scheduled meanwhile): the started
/// run is handed over to the leader, which adopts it at its next renewal; `kill -9` of
/// the leader while it follows the run: the other instance takes the lease over, adopts
/// the run and records it, once, never starting it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_no_wait_then_kill_9_of_the_leader() {
    use common::bin::{bin_async, describe};
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    let (mut s, _) = Stand::start_on(false, &far, Duration::from_secs(6)).await;
    let leader = s.leader().await;
    let trigger = ["trigger", "t", "--no-wait", "--config", s.configs[0].arg()];
    let ran = bin_async(&trigger).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    let start = Instant::now();
    while s
        .count(&format!(
            "SELECT count(*) FROM run_claims WHERE state = 'started' AND holder = '{leader}'"
        ))
        .await
        < 1
    {
        s.assert_within(start, WAIT, "the leader adopted the handed-over run")
            .await;
    }
    s.daemons[Stand::index(&leader)].signal("KILL");
    let since = Instant::now();
    let (_, takeover) = s.takeover_from(&leader, since).await;
    s.completed_runs(1, 0).await;
    let _ = s.daemons[Stand::index(&leader)]
        .wait_exit(Duration::from_secs(5))
        .await;
    // The new leader also catches up the schedule's last due instant (12 h ago, before
    // the stand existed), which it finds busy with the adopted run: recorded `skipped`.
    let records: Vec<String> =
        s.db.query(
            "SELECT record::text FROM run_history WHERE record->>'outcome' <> 'skipped'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let logs = format!("{}\n---\n{}", s.daemons[0].log(), s.daemons[1].log());
    assert_eq!(
        records.len(),
        1,
        "one record of the run: {records:#?}\n{logs}"
    );
    assert!(
        records[0].contains("\"trigger\":\"manual\""),
        "{records:#?}"
    );
    assert_eq!(s.sim.server("t").start_requests().len(), 1, "started once");
    header();
    s.check("trigger --no-wait, kill -9 of the leader", Some(takeover))
        .await;
}

impl Stand {
    /// Until `sql` counts at least one row; fails naming `what`.
    async fn until_some(&self, sql: &str, what: &str) {
        self.until_some_within(sql, WAIT, what).await
    }

    /// [`until_some`](Self::until_some), for at most `limit`.
    async fn until_some_within(&self, sql: &str, limit: Duration, what: &str) {
        let start = Instant::now();
        while self.count(sql).await < 1 {
            self.assert_within(start, limit, what).await;
        }
    }

    /// A `trigger` of `t` (on a's config), waiting, once Jellyfin has accepted its start:
    /// the process and its run id.
    async fn trigger_in_flight(&self) -> (common::bin::Running, String) {
        use common::bin::{Running, command};
        let args = ["trigger", "t", "--config", self.configs[0].arg()];
        let running = Running::start(command(args).stdin(std::process::Stdio::null()));
        let start = Instant::now();
        loop {
            if let Ok(Some(row)) = self
                .db
                .query_opt(
                    "SELECT run_id FROM run_claims WHERE state = 'started' AND holder LIKE 'trigger %'",
                    &[],
                )
                .await
            {
                return (running, row.get(0));
            }
            self.assert_within(start, WAIT, "the trigger's run started")
                .await;
        }
    }

    /// Until the leader has adopted `run_id` and recorded it (`completed`): how long after
    /// `since` it was adopted.
    async fn adopted_and_recorded(&self, run_id: &str, leader: &str, since: Instant) -> Duration {
        let adopted = format!(
            "SELECT count(*) FROM run_claims WHERE run_id = '{run_id}' AND holder = '{leader}'"
        );
        self.until_some(&adopted, "the leader adopted the trigger's claim")
            .await;
        let took = since.elapsed();
        let recorded = format!(
            "SELECT count(*) FROM run_history WHERE run_id = '{run_id}' AND record->>'outcome' = 'completed'"
        );
        self.until_some(&recorded, "the leader recorded the adopted run")
            .await;
        took
    }
}

/// A `trigger` waiting on its run while two daemons run: SIGSTOP of the trigger past its
/// lease (its heartbeat goes stale), the leader adopts the claim under the same epoch,
/// follows the run and records it; SIGCONT: the trigger's late writes change nothing and
/// it says so in one line, exit 1. Then `kill -9` of a second trigger: adopted and
/// recorded once the same way. Then the server's next scheduled due instant runs as usual
/// (nothing is left busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_paused_or_killed_while_it_waits_is_taken_over_by_the_leader() {
    use common::bin::describe;
    // One due instant, well after both triggers' runs (3 s each) and their takeovers.
    let due = chrono::Utc::now() + chrono::Duration::seconds(45);
    let schedule = common::time::daily_at(due);
    let (s, _) = Stand::start_on(false, &schedule, Duration::from_secs(3)).await;
    let leader = s.leader().await;

    let (paused, paused_run) = s.trigger_in_flight().await;
    common::bin::signal(paused.child.id(), "STOP");
    let stopped = Instant::now();
    let paused_takeover = s.adopted_and_recorded(&paused_run, &leader, stopped).await;
    common::bin::signal(paused.child.id(), "CONT");
    let woke = paused.finish().await;
    assert_eq!(woke.status.code(), Some(1), "{}", describe(&woke));
    let said = common::bin::text(&woke.output.stderr);
    assert_eq!(
        said.lines().count(),
        1,
        "one line on stderr: {}",
        describe(&woke)
    );
    assert!(
        said.contains(&format!(
            "run {paused_run} of t was taken over by the instance that leads"
        )),
        "{}",
        describe(&woke)
    );

    let (mut killed, killed_run) = s.trigger_in_flight().await;
    killed.child.kill().expect("kill -9 of the trigger");
    let _ = killed.child.wait();
    let since = Instant::now();
    let killed_takeover = s.adopted_and_recorded(&killed_run, &leader, since).await;

    // Both runs recorded once, by the leader; each started once.
    for run_id in [&paused_run, &killed_run] {
        let records = s
            .count(&format!(
                "SELECT count(*) FROM run_history WHERE run_id = '{run_id}'"
            ))
            .await;
        assert_eq!(records, 1, "{run_id} recorded once");
    }
    assert_eq!(
        s.sim.server("t").start_requests().len(),
        2,
        "one start each"
    );
    assert!(
        chrono::Utc::now() < due,
        "this machine was too slow for the scenario: the due instant {due} passed before both triggers' runs were recorded"
    );
    // The next due instant: claimed and run by the leader, not found busy.
    let until_due = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    s.until_some_within(
        "SELECT count(*) FROM run_history WHERE record->>'trigger' = 'schedule' AND record->>'outcome' = 'completed'",
        until_due + WAIT,
        "the scheduled due instant ran to completion",
    )
    .await;
    assert_eq!(
        s.count("SELECT count(*) FROM run_history WHERE record->>'outcome' = 'skipped'")
            .await,
        0,
        "nothing was skipped as busy"
    );
    header();
    s.check("trigger SIGSTOP past its lease", Some(paused_takeover))
        .await;
    println!(
        "| {:<34} | {:>9} |",
        "trigger kill -9",
        format!("{} ms", killed_takeover.as_millis())
    );
}
