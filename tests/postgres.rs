//! The PostgreSQL backend's parts against a real server (a private cluster per test, see
//! `common::pg`): migrations applied once however many instances start together, the
//! lease with its epoch and trust deadline, and claims whose writes are fenced by it.
//! These are library-level; the failover scenarios that drive the binaries come with the
//! backend's wiring (docs/high-availability.md).

use jellyfin_export_scheduler::config::ServerConfig;
use jellyfin_export_scheduler::daemon::status::Leader;
use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::jellyfin::JellyfinClient;
use jellyfin_export_scheduler::postgres::claims::{self, Adopted, ClaimState, Claimed};
use jellyfin_export_scheduler::postgres::leadership::{Leadership, Role};
use jellyfin_export_scheduler::postgres::lease::{self, Lease};
use jellyfin_export_scheduler::postgres::{PgError, Session, connect, migrate};
use jellyfin_export_scheduler::record::Outcome;
use jellyfin_export_scheduler::runner::marker::Marker;
use jellyfin_export_scheduler::runner::store::RunStore;
use jellyfin_export_scheduler::runner::track::NoEvents;
use jellyfin_export_scheduler::runner::{RecordError, RunEnd, Runner, Wait};
use jellyfin_export_scheduler::secret::Secret;
use jellyfin_export_scheduler::state::StateDir;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

mod common;

use common::pg::Cluster;

const CONNECT: Duration = Duration::from_secs(5);

/// The `lease_ttl` the tests' triggers and leases run with: how old a `trigger`'s
/// heartbeat may grow before `adopt` takes its claim.
const STALE: Duration = Duration::from_secs(30);

async fn client(cluster: &Cluster) -> Client {
    connect(&Secret::new(cluster.url()), CONNECT)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}\nserver log:\n{}", cluster.log()))
}

/// A migrated database and two sessions on it, as two instances would have.
async fn two_instances(cluster: &Cluster) -> (Client, Client) {
    let (mut a, b) = (client(cluster).await, client(cluster).await);
    migrate::migrate(&mut a).await.unwrap();
    (a, b)
}

/// `lease.refresh` until it holds, at most `limit`; fails saying what never happened.
async fn acquire_within(lease: &mut Lease, db: &Client, limit: Duration) -> (i64, Duration) {
    let start = Instant::now();
    loop {
        if let Some(epoch) = lease.refresh(db).await.unwrap() {
            return (epoch, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{} did not acquire the lease within {limit:?}",
            lease.holder()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_when_instances_start_together() {
    let cluster = Cluster::start();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(client(&cluster).await);
    }
    assert_eq!(migrate::version(&sessions[0]).await.unwrap(), 0);
    let results = futures_util::future::join_all(sessions.iter_mut().map(migrate::migrate)).await;
    let before: Vec<i32> = results.into_iter().map(|r| r.unwrap()).collect();
    // Exactly one found an empty database; the others found it migrated.
    assert_eq!(before.iter().filter(|v| **v == 0).count(), 1, "{before:?}");
    assert!(
        before
            .iter()
            .all(|v| *v == 0 || *v == migrate::SCHEMA_VERSION)
    );
    let mut newer = sessions.pop().unwrap();
    let db = &sessions[0];
    assert_eq!(migrate::version(db).await.unwrap(), migrate::SCHEMA_VERSION);
    let rows: i64 = db
        .query_one("SELECT count(*) FROM scheduler_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as i32, migrate::SCHEMA_VERSION);

    // A database migrated by a newer program is refused, and left as it is.
    db.execute("INSERT INTO scheduler_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    let err = migrate::migrate(&mut newer).await.unwrap_err();
    assert!(
        matches!(err, PgError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "the database's schema is version 99, newer than this version of the program knows"
        ),
        "{err}"
    );
    assert_eq!(migrate::version(db).await.unwrap(), 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_has_one_holder_and_passes_on_only_when_it_expires() {
    let cluster = Cluster::start();
    let (a_db, b_db) = two_instances(&cluster).await;
    let ttl = Duration::from_secs(2);
    let (mut a, mut b) = (Lease::new("a", ttl), Lease::new("b", ttl));

    let (epoch_a, _) = acquire_within(&mut a, &a_db, CONNECT).await;
    assert_eq!(
        b.refresh(&b_db).await.unwrap(),
        None,
        "b must not lead while a does"
    );
    assert_eq!(a.refresh(&a_db).await.unwrap(), Some(epoch_a), "a renews");
    let shown = lease::current(&b_db).await.unwrap().unwrap();
    assert_eq!(
        (shown.holder.as_str(), shown.epoch, shown.live),
        ("a", epoch_a, true)
    );

    // a stops renewing (paused): b takes over once the lease ran out, with a new epoch.
    let paused = Instant::now();
    let (epoch_b, _) = acquire_within(&mut b, &b_db, ttl * 3).await;
    assert_eq!(epoch_b, epoch_a + 1);
    assert!(
        paused.elapsed() >= ttl / 2,
        "b took over before a's lease could expire"
    );
    // a's own deadline passed before b could take over: it trusts nothing any more...
    assert_eq!(a.trusted_epoch(Instant::now()), None);
    // ...and its renewal finds the lease gone.
    assert_eq!(a.refresh(&a_db).await.unwrap(), None);
    assert_eq!(a.last_epoch(), None);

    // A clean shutdown hands over at once.
    b.release(&b_db).await.unwrap();
    let (epoch_a2, waited) = acquire_within(&mut a, &a_db, CONNECT).await;
    assert_eq!(epoch_a2, epoch_b + 1);
    assert!(waited < ttl, "a waited {waited:?} after a release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_deadline_runs_from_the_attempts_start_on_the_monotonic_clock() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let ttl = Duration::from_secs(10);
    let mut a = Lease::new("a", ttl);
    let before = Instant::now();
    let (epoch, _) = acquire_within(&mut a, &db, CONNECT).await;
    let after = Instant::now();
    assert_eq!(a.trusted_epoch(after), Some(epoch));
    // Trusted up to (attempt start + ttl) at the latest, which is no later than
    // (after + ttl) and no earlier than (before + ttl).
    assert_eq!(
        a.trusted_epoch(before + ttl - Duration::from_millis(1)),
        Some(epoch)
    );
    assert_eq!(a.trusted_epoch(after + ttl), None);
    assert_eq!(a.interval(), ttl / 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_unique_per_due_instant_and_fenced_by_the_epoch() {
    let cluster = Cluster::start();
    let (a_db, b_db) = two_instances(&cluster).await;
    let ttl = Duration::from_secs(2);
    let (mut a, mut b) = (Lease::new("a", ttl), Lease::new("b", ttl));
    let (ea, _) = acquire_within(&mut a, &a_db, CONNECT).await;
    let due = "2026-11-30T03:30:00Z";

    // Only the lease holder claims, and only once per (server, due instant).
    assert_eq!(
        claims::claim(&b_db, "b", 1, "lr", due, "r-b")
            .await
            .unwrap(),
        Claimed::NotLeader
    );
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", due, "r1")
            .await
            .unwrap(),
        Claimed::Won
    );
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", due, "r2")
            .await
            .unwrap(),
        Claimed::Taken
    );
    // One active claim per server: a manual run waits for the scheduled one.
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", "manual:r3", "r3")
            .await
            .unwrap(),
        Claimed::Busy
    );
    assert!(claims::posting(&a_db, "r1", ea, "a").await.unwrap());
    let marker = json!({"run_id": "r1", "last_end_before": null});
    assert!(
        claims::started(&a_db, "r1", ea, "a", &marker)
            .await
            .unwrap()
    );

    // a pauses; b takes over and adopts the run in flight, snapshot and all.
    let (eb, _) = acquire_within(&mut b, &b_db, ttl * 3).await;
    let adopted = claims::adopt(&b_db, "b", eb).await.unwrap();
    assert_eq!(
        adopted,
        vec![Adopted {
            server: "lr".into(),
            claim_key: due.into(),
            run_id: "r1".into(),
            state: ClaimState::Started,
            snapshot: Some(marker.clone()),
            posted_at: adopted[0].posted_at,
        }]
    );
    // The old leader's late writes change nothing; it cannot claim either.
    assert!(
        !claims::started(&a_db, "r1", ea, "a", &marker)
            .await
            .unwrap()
    );
    let record = json!({"run_id": "r1", "outcome": "completed"}).to_string();
    assert!(
        !claims::finish(&a_db, "r1", (ea, "a"), chrono::Utc::now(), &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", "2026-12-01T03:30:00Z", "r4")
            .await
            .unwrap(),
        Claimed::NotLeader
    );
    // The new owner records the run once.
    assert!(
        claims::finish(&b_db, "r1", (eb, "b"), chrono::Utc::now(), &record, 1000)
            .await
            .unwrap()
    );
    assert!(
        !claims::finish(&b_db, "r1", (eb, "b"), chrono::Utc::now(), &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        claims::history(&a_db, "lr", 10).await.unwrap(),
        vec![record]
    );
    // The due instant stays claimed after the run: never started again.
    assert_eq!(
        claims::claim(&b_db, "b", eb, "lr", due, "r5")
            .await
            .unwrap(),
        Claimed::Taken
    );
    // The server is free for the next run.
    assert_eq!(
        claims::claim(&b_db, "b", eb, "lr", "manual:r6", "r6")
            .await
            .unwrap(),
        Claimed::Won
    );
    assert!(
        claims::adopt(&b_db, "b", eb).await.unwrap().is_empty(),
        "nothing older to adopt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_a_files_history_twice_adds_nothing_the_second_time() {
    use jellyfin_export_scheduler::postgres::import::{Imported, import_server};
    let cluster = Cluster::start();
    let (mut db, _) = two_instances(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/v1.jsonl");
    std::fs::create_dir_all(dir.path().join("history")).unwrap();
    std::fs::copy(&fixture, dir.path().join("history/living-room.jsonl")).unwrap();
    let read = History::new(&state).read("living-room").unwrap();
    let n = read.records.len();
    assert!(n >= 9, "the fixture holds {n} records");

    let first = import_server(&mut db, "living-room", &read.records)
        .await
        .unwrap();
    assert_eq!(first, Imported { read: n, added: n });
    let again = import_server(&mut db, "living-room", &read.records)
        .await
        .unwrap();
    assert_eq!(again, Imported { read: n, added: 0 });

    // Stored byte for byte as the lines hold them, newest first when read back.
    let stored = claims::history(&db, "living-room", 1000).await.unwrap();
    let mut by_time: Vec<&_> = read.records.iter().collect();
    by_time.sort_by_key(|r| std::cmp::Reverse((r.record.triggered_at, r.record.run_id.clone())));
    let lines: Vec<String> = by_time.iter().map(|r| r.raw.clone()).collect();
    assert_eq!(stored, lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_trusts_its_lease_only_until_its_deadline_and_its_late_writes_change_nothing()
 {
    use common::proxy::Proxy;
    let cluster = Cluster::start();
    let (_, b_db) = two_instances(&cluster).await;
    let proxy = Proxy::start(([127, 0, 0, 1], cluster.port).into()).await;
    let through_proxy = cluster.url().replace(
        &format!(":{}/", cluster.port),
        &format!(":{}/", proxy.addr.port()),
    );
    let a_db = connect(&Secret::new(through_proxy), CONNECT).await.unwrap();
    let ttl = Duration::from_secs(2);
    let (mut a, mut b) = (Lease::new("a", ttl), Lease::new("b", ttl));
    let (ea, _) = acquire_within(&mut a, &a_db, CONNECT).await;
    let due = "2026-11-30T03:30:00Z";
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", due, "r1")
            .await
            .unwrap(),
        Claimed::Won
    );
    assert!(claims::posting(&a_db, "r1", ea, "a").await.unwrap());
    let marker = json!({"run_id": "r1"});
    assert!(
        claims::started(&a_db, "r1", ea, "a", &marker)
            .await
            .unwrap()
    );

    // The network between a and the database goes silent: a's renewal gets no answer,
    // and the daemon bounds each attempt by the renew interval.
    proxy.stop_forwarding();
    let cut = Instant::now();
    let renew = tokio::time::timeout(a.interval(), a.refresh(&a_db)).await;
    assert!(
        renew.is_err(),
        "a renewal through a silent network must not answer"
    );
    // a trusts its lease until its deadline at the latest: one lease after the start of
    // its last successful renewal, which was before the cut.
    let deadline = cut + ttl;
    assert_eq!(
        a.trusted_epoch(deadline),
        None,
        "a still trusts its lease past its deadline"
    );

    // b takes over once the lease ran out in the database, and adopts the run in flight.
    let (eb, _) = acquire_within(&mut b, &b_db, ttl * 3).await;
    // b acquired before this instant, and a stopped trusting before b could acquire.
    let b_leads = Instant::now();
    assert!(eb > ea);
    assert_eq!(
        a.trusted_epoch(b_leads),
        None,
        "a and b both trusted a lease at once"
    );
    let adopted = claims::adopt(&b_db, "b", eb).await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].state, ClaimState::Started);

    // The network comes back: the held renewal reaches the database late and changes
    // nothing; so do a's other late writes. a learns it lost the lease.
    proxy.resume();
    let record = json!({"run_id": "r1", "outcome": "completed"}).to_string();
    assert!(
        !claims::finish(&a_db, "r1", (ea, "a"), chrono::Utc::now(), &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        claims::claim(&a_db, "a", ea, "lr", "2026-12-01T03:30:00Z", "r2")
            .await
            .unwrap(),
        Claimed::NotLeader
    );
    assert_eq!(a.refresh(&a_db).await.unwrap(), None);
    let shown = lease::current(&b_db).await.unwrap().unwrap();
    assert_eq!((shown.holder.as_str(), shown.epoch), ("b", eb));
    assert!(
        claims::finish(&b_db, "r1", (eb, "b"), chrono::Utc::now(), &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        claims::history(&b_db, "lr", 10).await.unwrap(),
        vec![record]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_shorter_than_the_lease_keeps_the_leader_and_its_epoch() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let ttl = Duration::from_secs(10);
    let mut a = Lease::new("a", ttl);
    let (epoch, _) = acquire_within(&mut a, &db, CONNECT).await;
    cluster.restart_immediate();
    // The old session is gone: the attempt fails and changes nothing.
    let err = a.refresh(&db).await.unwrap_err();
    assert!(matches!(err, PgError::Database(_)), "{err}");
    assert_eq!(a.last_epoch(), Some(epoch));
    // Reconnected, the leader renews the same lease: no change of holder, no new epoch.
    let db = client(&cluster).await;
    assert_eq!(a.refresh(&db).await.unwrap(), Some(epoch));
    let shown = lease::current(&db).await.unwrap().unwrap();
    assert_eq!(
        (shown.holder.as_str(), shown.epoch, shown.live),
        ("a", epoch, true)
    );
}

/// `history` with `backend = "postgres"` shows what it shows with files, from the same
/// records: a files history imported into `run_history`, read by the binary both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_command_reads_the_database_as_it_reads_the_files() {
    use common::bin::bin_async;
    use common::config::ConfigFile;
    use jellyfin_export_scheduler::postgres::import::import_server;
    let cluster = Cluster::start();
    let (mut db, _) = two_instances(&cluster).await;
    let servers = [("living-room", "http://127.0.0.1:9".to_owned(), "")];
    let files = ConfigFile::quick("", "schedule = \"@daily\"", &servers);
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/v1.jsonl");
    std::fs::create_dir_all(files.state.join("history")).unwrap();
    for server in ["living-room", "den"] {
        let text = std::fs::read_to_string(&fixture).unwrap();
        // Another server's records: its name and run ids of its own.
        let text = text
            .replace("living-room", server)
            .replace("\"run_id\":\"019a", &format!("\"run_id\":\"{server}-019a"));
        std::fs::write(files.state.join(format!("history/{server}.jsonl")), text).unwrap();
        let read = History::new(&StateDir::open(&files.state).unwrap())
            .read(server)
            .unwrap();
        import_server(&mut db, server, &read.records).await.unwrap();
    }
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"",
        cluster.url()
    );
    let postgres = ConfigFile::quick(&daemon, "schedule = \"@daily\"", &servers);

    for args in [
        &["history"][..],
        &["history", "--format", "json"],
        &["history", "--limit", "3", "--format", "json"],
        &["history", "living-room", "--limit", "2"],
        &["history", "den", "--format", "json"],
    ] {
        let from_files = bin_async(&[args, &["--config", files.arg()]].concat()).await;
        let from_db = bin_async(&[args, &["--config", postgres.arg()]].concat()).await;
        assert!(from_db.status.success(), "{args:?}: {}", from_db.how);
        assert!(
            !from_db.stdout.is_empty(),
            "{args:?} printed records: {}",
            from_db.how
        );
        assert_eq!(
            String::from_utf8_lossy(&from_db.stdout),
            String::from_utf8_lossy(&from_files.stdout),
            "{args:?}: the database's history differs from the files'"
        );
        let stderr = String::from_utf8_lossy(&from_db.stderr);
        assert!(
            !stderr.contains(&cluster.url()) && !stderr.contains("postgresql://"),
            "the database URL is never shown: {stderr}"
        );
    }
}

/// The server `t` of `sim` as a config's `[[servers]]` entry gives it.
fn sim_server_config(sim: &jellyfin_export_scheduler::sim::Simulator) -> ServerConfig {
    let text = common::config::text(
        std::path::Path::new("/unused"),
        "",
        "",
        &[("t", sim.url("t"), "schedule = \"@daily\"")],
    );
    common::config::parse(&text).servers.remove(0)
}

fn jellyfin(server: &ServerConfig) -> JellyfinClient {
    JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )
    .unwrap()
}

/// The runner of the runs claimed by `holder` under `epoch`, on `cluster`.
fn pg_runner(cluster: &Cluster, (epoch, holder): (i64, &str), state: &std::path::Path) -> Runner {
    let session = Arc::new(Session::new(Secret::new(cluster.url()), CONNECT));
    Runner::on(
        RunStore::postgres(session, epoch, holder),
        &StateDir::open(state).unwrap(),
    )
}

/// `(state, snapshot is set)` of `run_id`'s claim, and how many records it has.
async fn claim_and_records(db: &Client, run_id: &str) -> (String, bool, i64) {
    let claim = db
        .query_one(
            "SELECT state, snapshot IS NOT NULL FROM run_claims WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    let records: i64 = db
        .query_one(
            "SELECT count(*) FROM run_history WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    (claim.get(0), claim.get(1), records)
}

/// A claimed run goes claimed → posting → started → done through the runner, its record
/// written with the claim's end, byte for byte as a history line; run again under the
/// same claim, it sends no second start request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_run_is_started_once_and_recorded_with_its_claims_end() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let server = sim_server_config(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut lease = Lease::new("a", Duration::from_secs(30));
    let epoch = lease.refresh(&db).await.unwrap().unwrap();
    let request = common::runs::manual_request();
    let key = format!("manual:{}", request.run_id);
    let claimed = claims::claim(&db, "a", epoch, "t", &key, &request.run_id)
        .await
        .unwrap();
    assert_eq!(claimed, Claimed::Won);

    let runner = pg_runner(&cluster, (epoch, "a"), dir.path());
    let end = runner
        .run(
            &jellyfin(&server),
            &server,
            &request,
            &mut NoEvents,
            Wait::Follow,
        )
        .await;
    let record = match end {
        RunEnd::Recorded(Ok(record)) => record,
        other => panic!("the run was not recorded: {other:?}"),
    };
    assert_eq!(record.outcome, Outcome::Completed, "{record:?}");
    assert_eq!(
        claim_and_records(&db, &request.run_id).await,
        ("done".to_owned(), true, 1)
    );
    let stored = claims::history(&db, "t", 10).await.unwrap();
    assert_eq!(stored, vec![serde_json::to_string(&record).unwrap()]);
    assert_eq!(sim.server("t").start_requests().len(), 1);

    // The same claim again (a bug, a replay): nothing is sent.
    let again = runner
        .run(
            &jellyfin(&server),
            &server,
            &request,
            &mut NoEvents,
            Wait::Follow,
        )
        .await;
    assert!(matches!(again, RunEnd::TakenOver), "{again:?}");
    assert_eq!(
        sim.server("t").start_requests().len(),
        1,
        "one start request"
    );
    assert_eq!(claim_and_records(&db, &request.run_id).await.2, 1);
}

/// A leader stops after Jellyfin accepted the start; the instance that takes over adopts
/// the claim and follows the run from its snapshot (no second start), and records it
/// once; the old leader's own record, late, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_run_is_followed_from_its_snapshot_and_recorded_once() {
    let cluster = Cluster::start();
    let (a_db, b_db) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_millis(1500);
    })])
    .await;
    let server = sim_server_config(&sim);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(600);
    let (mut a, mut b) = (Lease::new("a", ttl), Lease::new("b", ttl));
    let ea = a.refresh(&a_db).await.unwrap().unwrap();
    let request = common::runs::manual_request();
    let key = "2026-11-30T03:30:00Z";
    assert_eq!(
        claims::claim(&a_db, "a", ea, "t", key, &request.run_id)
            .await
            .unwrap(),
        Claimed::Won
    );
    let a_runner = pg_runner(&cluster, (ea, "a"), dir.path());
    let started = a_runner
        .run(
            &jellyfin(&server),
            &server,
            &request,
            &mut NoEvents,
            Wait::StartOnly,
        )
        .await;
    assert!(matches!(started, RunEnd::Started(Ok(()))), "{started:?}");
    assert_eq!(
        claim_and_records(&a_db, &request.run_id).await,
        ("started".to_owned(), true, 0)
    );

    // a stops renewing; b takes over once the lease has expired and adopts the claim.
    let (eb, _) = acquire_within(&mut b, &b_db, Duration::from_secs(5)).await;
    assert!(eb > ea);
    let adopted = claims::adopt(&b_db, "b", eb).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].state, ClaimState::Started);
    let marker: Marker = serde_json::from_value(adopted[0].snapshot.clone().unwrap()).unwrap();
    assert_eq!(marker.request, request);

    let b_runner = pg_runner(&cluster, (eb, "b"), dir.path());
    let recorded = b_runner
        .resume_adopted(&jellyfin(&server), &server, marker.clone(), &mut NoEvents)
        .await;
    let record = match recorded {
        Some(Ok(record)) => record,
        other => panic!("b did not record the adopted run: {other:?}"),
    };
    assert_eq!(record.outcome, Outcome::Completed, "{record:?}");
    assert_eq!(record.run_id, request.run_id);
    assert_eq!(
        sim.server("t").start_requests().len(),
        1,
        "never a second start"
    );

    // a wakes up and records the run it started: fenced out, nothing written.
    let late = a_runner
        .resume_adopted(&jellyfin(&server), &server, marker, &mut NoEvents)
        .await;
    assert!(
        matches!(late, Some(Err(RecordError::TakenOver { epoch, .. })) if epoch == ea),
        "{late:?}"
    );
    assert_eq!(a_runner.unwritten(), 0, "a fenced-out record is not kept");
    assert_eq!(
        claim_and_records(&b_db, &request.run_id).await,
        ("done".to_owned(), true, 1)
    );
    assert_eq!(sim.server("t").start_requests().len(), 1);
}

/// Polls `what` every 10 ms until it gives `Some`, at most `limit`; fails naming `event`.
async fn within<T>(
    limit: Duration,
    event: &str,
    mut what: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = what() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{event} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_leadership(
    url: String,
    holder: &str,
    ttl: Duration,
) -> (
    Leadership,
    tokio::sync::mpsc::Receiver<Vec<Adopted>>,
    CancellationToken,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let stop = CancellationToken::new();
    let l = Leadership::spawn(Secret::new(url), holder.to_owned(), ttl, tx, stop.clone());
    (l, rx, stop)
}

/// Two instances' leadership tasks: one leads, the other follows and names it. The
/// leader cut off from the database (a proxy that stops forwarding) stops trusting its
/// lease before the other takes over; the new leader adopts the old one's open claim;
/// once the network is back, the old leader follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_is_replaced_and_its_open_claims_adopted() {
    use common::proxy::Proxy;
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let proxy = Proxy::start(([127, 0, 0, 1], cluster.port).into()).await;
    let through_proxy = cluster.url().replace(
        &format!(":{}/", cluster.port),
        &format!(":{}/", proxy.addr.port()),
    );
    let ttl = Duration::from_secs(1);
    let (a, _a_adopted, a_stop) = spawn_leadership(through_proxy, "a", ttl);
    let (ea, _) = within(Duration::from_secs(10), "a leading", || a.trusted_epoch()).await;
    let (b, mut b_adopted, b_stop) = spawn_leadership(cluster.url(), "b", ttl);
    within(Duration::from_secs(10), "b following a", || {
        match b.role() {
            Role::Following { leader: Some(h) } if h.holder == "a" && h.epoch == ea => Some(()),
            _ => None,
        }
    })
    .await;
    let claimed = claims::claim(&db, "a", ea, "t", "2026-11-30T03:30:00Z", "run-a")
        .await
        .unwrap();
    assert_eq!(claimed, Claimed::Won);

    proxy.stop_forwarding();
    let (eb, takeover) = within(Duration::from_secs(10), "b taking over", || {
        let eb = b.trusted_epoch()?;
        assert_eq!(
            a.trusted_epoch(),
            None,
            "a still trusts its lease when b leads"
        );
        Some(eb)
    })
    .await;
    assert!(eb > ea, "a new epoch: {eb} after {ea}");
    // The lease runs out at most a ttl after a's last renewal, and b tries every ttl/3.
    assert!(
        takeover < ttl + ttl / 3 + Duration::from_secs(1),
        "b took over after {takeover:?}"
    );
    println!(
        "takeover after the leader was cut off: {} ms",
        takeover.as_millis()
    );
    let adopted = tokio::time::timeout(Duration::from_secs(5), b_adopted.recv())
        .await
        .expect("b hands over the adopted claims")
        .unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(
        (adopted[0].run_id.as_str(), adopted[0].state),
        ("run-a", ClaimState::Claimed)
    );

    proxy.resume();
    within(Duration::from_secs(10), "a following b", || {
        match a.role() {
            Role::Following { leader: Some(h) } if h.holder == "b" => Some(()),
            _ => None,
        }
    })
    .await;
    assert_eq!(b.trusted_epoch(), Some(eb), "b keeps leading");
    a_stop.cancel();
    b_stop.cancel();
}

/// A leader that stops cleanly gives its lease up: the other instance takes over at its
/// next attempt, well before the lease would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_the_lease_over_at_once() {
    let cluster = Cluster::start();
    two_instances(&cluster).await;
    let ttl = Duration::from_secs(6);
    let (a, _a_adopted, a_stop) = spawn_leadership(cluster.url(), "a", ttl);
    within(Duration::from_secs(10), "a leading", || a.trusted_epoch()).await;
    let (b, _b_adopted, b_stop) = spawn_leadership(cluster.url(), "b", ttl);
    within(Duration::from_secs(10), "b following", || match b.role() {
        Role::Following { leader: Some(_) } => Some(()),
        _ => None,
    })
    .await;
    a_stop.cancel();
    let (_, takeover) = within(ttl, "b taking over", || b.trusted_epoch()).await;
    assert!(
        takeover < ttl / 3 + Duration::from_secs(1),
        "b took over after {takeover:?}, as if the lease had expired"
    );
    assert_eq!(a.trusted_epoch(), None);
    b_stop.cancel();
}

/// A due instant that arrives while the server's run is still going is Busy, recorded
/// `skipped` under the lease in one statement, and never claimed again; a skip by an
/// instance that does not hold the lease, or of a key already claimed, writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_instant_during_a_run_is_recorded_skipped_once() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let mut lease = Lease::new("a", Duration::from_secs(30));
    let e = lease.refresh(&db).await.unwrap().unwrap();
    let (due1, due2) = ("2026-11-30T03:30:00Z", "2026-11-30T03:31:00Z");
    assert_eq!(
        claims::claim(&db, "a", e, "t", due1, "r1").await.unwrap(),
        Claimed::Won
    );
    assert_eq!(
        claims::claim(&db, "a", e, "t", due2, "r2").await.unwrap(),
        Claimed::Busy
    );
    let at = chrono::Utc::now();
    let line = r#"{"run_id":"r2","outcome":"skipped"}"#;
    assert!(
        !claims::skip(&db, "b", e, "t", due2, "r2", at, line, 1000)
            .await
            .unwrap(),
        "b does not hold the lease"
    );
    assert!(
        !claims::skip(&db, "a", e, "t", due1, "r1b", at, line, 1000)
            .await
            .unwrap(),
        "due1 is claimed by the run in progress"
    );
    assert!(
        claims::skip(&db, "a", e, "t", due2, "r2", at, line, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        claim_and_records(&db, "r2").await,
        ("done".to_owned(), false, 1)
    );
    assert_eq!(
        claims::claim(&db, "a", e, "t", due2, "r2c").await.unwrap(),
        Claimed::Taken,
        "a skipped due instant is never claimed again"
    );
    let records: i64 = db
        .query_one("SELECT count(*) FROM run_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(records, 1, "only the skip is recorded");
}

/// A daemon in-process on the PostgreSQL backend, as instance `name`, its state directory
/// in `dir`, running server `t` of `sim` every 2 s.
async fn pg_daemon(
    cluster: &Cluster,
    name: &str,
    dir: &std::path::Path,
    sim: &jellyfin_export_scheduler::sim::Simulator,
) -> jellyfin_export_scheduler::daemon::DaemonHandle {
    pg_daemon_on(cluster, name, dir, sim, "*/2 * * * * *").await
}

/// [`pg_daemon`] on `schedule`.
async fn pg_daemon_on(
    cluster: &Cluster,
    name: &str,
    dir: &std::path::Path,
    sim: &jellyfin_export_scheduler::sim::Simulator,
    schedule: &str,
) -> jellyfin_export_scheduler::daemon::DaemonHandle {
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"\nlease_ttl = \"2s\"\ninstance_name = \"{name}\"",
        cluster.url()
    );
    let text = common::config::text(
        &dir.join(name),
        &daemon,
        "",
        &[("t", sim.url("t"), &format!("schedule = \"{schedule}\""))],
    );
    common::daemon::start(common::config::parse(&text)).await
}

/// `(claim key, run id, outcome)` of every record, oldest first.
async fn recorded(db: &Client) -> Vec<(String, String, String)> {
    db.query(
        "SELECT c.claim_key, h.run_id, h.record->>'outcome' FROM run_history h
           JOIN run_claims c USING (run_id) ORDER BY h.triggered_at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// [`recorded`] once it holds a record, polled every 50 ms for at most 20 s; fails saying
/// which `event` never happened, with the claims as they stand.
async fn first_records(db: &Client, event: &str) -> Vec<(String, String, String)> {
    let limit = Duration::from_secs(20);
    let start = Instant::now();
    loop {
        let rows = recorded(db).await;
        if !rows.is_empty() {
            return rows;
        }
        if start.elapsed() >= limit {
            let claims: Vec<(String, i64, String, String)> = db
                .query(
                    "SELECT claim_key, epoch, holder, state FROM run_claims",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            panic!("{event} within {limit:?}: no record; claims {claims:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two daemons on one database: only the leader runs the schedule, each due instant is
/// started at most once and recorded once; when the leader stops, the other takes over
/// the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_run_each_due_instant_once_and_the_follower_takes_over() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_millis(300);
    })])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let a = pg_daemon(&cluster, "a", dir.path(), &sim).await;
    let b = pg_daemon(&cluster, "b", dir.path(), &sim).await;
    let completed =
        |rows: &[(String, String, String)]| rows.iter().filter(|r| r.2 == "completed").count();
    let start = Instant::now();
    while completed(&recorded(&db).await) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "three runs recorded within 30 s: {:?}",
            recorded(&db).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = lease::current(&db).await.unwrap().unwrap();
    let (stays, goes) = if leader.holder == "a" { (b, a) } else { (a, b) };
    // Who leads, as the board, sd_notify's status line and /metrics say it.
    assert_eq!(
        goes.status.leader(),
        Some(Leader::Leading {
            epoch: leader.epoch
        })
    );
    let following = Leader::Following {
        leader: Some((leader.holder.clone(), leader.epoch)),
    };
    assert_eq!(stays.status.leader(), Some(following));
    let line = format!("leading (lease epoch {})", leader.epoch);
    assert!(
        goes.status.summary().ends_with(&line),
        "{}",
        goes.status.summary()
    );
    let line = format!("following {} (lease epoch {})", leader.holder, leader.epoch);
    assert!(
        stays.status.summary().ends_with(&line),
        "{}",
        stays.status.summary()
    );
    let metrics = metrics_of(&goes.status).await;
    assert!(
        metrics.contains("\njellyfin_export_leader 1\n"),
        "{metrics}"
    );
    let epoch_line = format!("\njellyfin_export_lease_epoch {}\n", leader.epoch);
    assert!(metrics.contains(&epoch_line), "{metrics}");
    let metrics = metrics_of(&stays.status).await;
    assert!(
        metrics.contains("\njellyfin_export_leader 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains(&epoch_line), "{metrics}");
    common::daemon::stop(goes).await;
    let before = recorded(&db).await.len();
    let start = Instant::now();
    loop {
        let now = lease::current(&db).await.unwrap().unwrap();
        let rows = recorded(&db).await;
        if now.holder != leader.holder && rows.len() >= before + 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the other daemon took over and recorded two runs within 30 s: {now:?} {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::daemon::stop(stays).await;

    let rows = recorded(&db).await;
    let keys: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(
        keys.len(),
        rows.len(),
        "one record per due instant: {rows:?}"
    );
    let starts = sim.server("t").start_requests().len();
    assert_eq!(
        starts,
        completed(&rows),
        "one start request per completed run: {rows:?}"
    );
    let open: i64 = db
        .query_one("SELECT count(*) FROM run_claims WHERE state <> 'done'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "every claim ended with its record");
}

/// A server that has run before, whose due instant passed while no instance led: the
/// instance that starts leading runs it once (trigger `catch_up`, claimed under its key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_instant_missed_while_nobody_led_is_caught_up_once() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    db.execute(
        "INSERT INTO run_claims (server, claim_key, run_id, epoch, holder, state)
         VALUES ('t', '2026-01-01T03:30:00.000Z', 'earlier', 0, 'x', 'done')",
        &[],
    )
    .await
    .unwrap();
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let dir = tempfile::tempdir().unwrap();
    let missed = chrono::Utc::now() - chrono::Duration::minutes(10);
    let missed = chrono::Timelike::with_nanosecond(&missed, 0).unwrap();
    let schedule = common::time::daily_at(missed);
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &schedule).await;
    let rows = first_records(&db, "the missed due instant was caught up").await;
    common::daemon::stop(a).await;
    let key = missed.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].2.as_str()),
        (key.as_str(), "completed")
    );
    let trigger: String = db
        .query_one("SELECT record->>'trigger' FROM run_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(trigger, "catch_up");
    assert_eq!(sim.server("t").start_requests().len(), 1);
}

/// A daemon started on PostgreSQL puts each server's newest records from `run_history` on
/// its board, as it does from the history files' tails: the status page's last runs and
/// `/metrics`' last-success time are right after a restart; they are shown, not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_starting_on_postgres_shows_the_last_runs_from_the_database() {
    use jellyfin_export_scheduler::history::StoredRecord;
    let cluster = Cluster::start();
    let (mut db, _) = two_instances(&cluster).await;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/v1.jsonl");
    let text = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("\"living-room\"", "\"t\"");
    // Read as history files are (the fixture ends with a torn line, skipped).
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(files.path().join("history")).unwrap();
    std::fs::write(files.path().join("history/t.jsonl"), text).unwrap();
    let stored: Vec<StoredRecord> = History::new(&StateDir::open(files.path()).unwrap())
        .read("t")
        .unwrap()
        .records;
    assert!(stored.len() > 5, "{stored:?}");
    jellyfin_export_scheduler::postgres::import::import_server(&mut db, "t", &stored)
        .await
        .unwrap();
    let newest_success = stored
        .iter()
        .filter(|s| s.record.outcome == Outcome::Completed)
        .map(|s| s.record.finished_at.unwrap_or(s.record.triggered_at))
        .max()
        .expect("the fixture has a completed run");
    let newest = stored
        .iter()
        .max_by_key(|s| (s.record.triggered_at, s.record.run_id.clone()))
        .unwrap();

    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let dir = tempfile::tempdir().unwrap();
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &far).await;
    let view = a.status.get("t").expect("server t is on the board");
    let metrics = metrics_of(&a.status).await;
    common::daemon::stop(a).await;

    assert_eq!(view.recent.len(), stored.len(), "{:?}", view.recent);
    assert_eq!(
        view.recent.back().map(|r| r.run_id.as_str()),
        Some(newest.record.run_id.as_str()),
        "the newest run last"
    );
    assert_eq!(view.last_success, Some(newest_success));
    assert!(view.runs_total.is_empty(), "shown, not counted: {view:?}");
    let line = format!(
        "\njellyfin_export_last_success_timestamp_seconds{{server=\"t\"}} {:.3}\n",
        newest_success.timestamp_millis() as f64 / 1000.0
    );
    assert!(metrics.contains(&line), "{line} in {metrics}");
    assert!(
        sim.server("t").start_requests().is_empty(),
        "nothing was due"
    );
}

/// `/metrics` as the endpoint serves it for `status`.
async fn metrics_of(
    status: &Arc<jellyfin_export_scheduler::daemon::status::StatusBoard>,
) -> String {
    use jellyfin_export_scheduler::endpoint::{self, Policy, Sources};
    let listener = endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(endpoint::serve(
        listener,
        Sources {
            status: status.clone(),
            heartbeat_limit: Duration::from_secs(60),
            history: jellyfin_export_scheduler::records::Records::files(
                &StateDir::open(dir.path()).unwrap(),
            ),
        },
        Policy::for_process(None),
        stop.clone(),
    ));
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    body
}

/// `doctor` checks the database: it answers, its schema version, who leads (none yet,
/// then the instance holding the lease); an unreachable database fails its check, without
/// the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_database_schema_and_leader() {
    use common::bin::bin_async;
    use common::config::ConfigFile;
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let servers = [("t", sim.url("t"), "schedule = \"@daily\"")];
    let config_on = |url: &str| {
        let daemon = format!("backend = \"postgres\"\ndatabase_url = \"{url}\"");
        ConfigFile::quick(&daemon, "", &servers)
    };
    let local = |out: &[u8]| -> Vec<(String, String, String)> {
        let doc: serde_json::Value = serde_json::from_slice(out).unwrap();
        doc["local"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| ["database", "schema", "leader"].contains(&c["id"].as_str().unwrap()))
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                (s("id"), s("status"), s("summary"))
            })
            .collect()
    };
    let config = config_on(&cluster.url());
    let o = bin_async(&["doctor", "--format", "json", "--config", config.arg()]).await;
    let checks = local(&o.stdout);
    assert_eq!(checks.len(), 3, "{checks:?}\n{}", o.how);
    assert_eq!(
        (checks[0].1.as_str(), checks[1].1.as_str()),
        ("ok", "ok"),
        "{checks:?}"
    );
    assert_eq!(checks[1].2, "schema version 2");
    assert_eq!(
        (checks[2].1.as_str(), checks[2].2.as_str()),
        ("warn", "no instance has led yet")
    );

    let mut lease = Lease::new("backup-a", Duration::from_secs(30));
    let epoch = lease.refresh(&db).await.unwrap().unwrap();
    let o = bin_async(&["doctor", "--format", "json", "--config", config.arg()]).await;
    let checks = local(&o.stdout);
    assert_eq!(
        (checks[2].1.as_str(), checks[2].2.as_str()),
        (
            "ok",
            format!("backup-a leads (lease epoch {epoch})").as_str()
        )
    );

    let down = config_on("postgresql://postgres:PW-4d2a@127.0.0.1:9/postgres");
    let o = bin_async(&["doctor", "--format", "json", "--config", down.arg()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", o.how);
    let checks = local(&o.stdout);
    assert_eq!(
        (checks[0].0.as_str(), checks[0].1.as_str()),
        ("database", "fail"),
        "{checks:?}"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !all.contains("PW-4d2a") && !all.contains("127.0.0.1:9/"),
        "{all}"
    );
}

/// `history import --from DIR` copies a files state directory's history into the
/// database (applying the schema first), adds nothing the second time, and `history` then
/// prints from the database what it printed from the files. With backend = "files" it is
/// refused (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_import_moves_a_files_history_once() {
    use common::bin::bin_async;
    use common::config::ConfigFile;
    let cluster = Cluster::start();
    let servers = [("living-room", "http://127.0.0.1:9".to_owned(), "")];
    let files = ConfigFile::quick("", "schedule = \"@daily\"", &servers);
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/v1.jsonl");
    std::fs::create_dir_all(files.state.join("history")).unwrap();
    std::fs::copy(&fixture, files.state.join("history/living-room.jsonl")).unwrap();
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"",
        cluster.url()
    );
    let postgres = ConfigFile::quick(&daemon, "schedule = \"@daily\"", &servers);
    let from = files.state.to_str().unwrap();

    let import = [
        "history",
        "import",
        "--from",
        from,
        "--config",
        postgres.arg(),
    ];
    let first = bin_async(&import).await;
    assert!(first.status.success(), "{}", first.how);
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    let n = History::new(&StateDir::open(&files.state).unwrap())
        .read("living-room")
        .unwrap()
        .records
        .len();
    assert_eq!(
        said,
        format!("living-room: {n} records read, {n} added (0 already there)\n")
    );
    let again = bin_async(&import).await;
    let said = String::from_utf8_lossy(&again.stdout).into_owned();
    assert_eq!(
        said,
        format!("living-room: {n} records read, 0 added ({n} already there)\n")
    );

    let json = ["history", "--format", "json", "--limit", "0", "--config"];
    let from_files = bin_async(&[&json[..], &[files.arg()]].concat()).await;
    let from_db = bin_async(&[&json[..], &[postgres.arg()]].concat()).await;
    assert!(!from_db.stdout.is_empty());
    assert_eq!(from_db.stdout, from_files.stdout);

    let refused = bin_async(&["history", "import", "--from", from, "--config", files.arg()]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.how);
}

/// A config file for server `t` of `sim` on state directory `state`, archiving, with
/// `daemon` lines in `[daemon]`.
fn archiving_config(
    state: &std::path::Path,
    daemon: &str,
    sim: &jellyfin_export_scheduler::sim::Simulator,
) -> String {
    let servers = [("t", sim.url("t"), "schedule = \"@daily\"")];
    let mut text = common::config::text(state, daemon, "", &servers);
    text.push_str("\n[archive]\nkeep_last = 5\n");
    text
}

/// `archive list` and `archive verify` on PostgreSQL read the archived runs' records from
/// `run_history` (this host's archive folder, the fleet's records); `prune` works on the
/// folder alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_commands_read_the_records_from_the_database() {
    use common::bin::{bin_async, describe, text};
    use common::config::ConfigFile;
    let cluster = Cluster::start();
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let files = ConfigFile::new(|state| archiving_config(state, "", &sim));
    let ran = bin_async(&["trigger", "t", "--config", files.arg()]).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"",
        cluster.url()
    );
    let postgres = ConfigFile::new(|_| archiving_config(&files.state, &daemon, &sim));
    let from = files.state.to_str().unwrap();
    let import = ["history", "import", "--from", from, "--config"];
    let ran = bin_async(&[&import[..], &[postgres.arg()]].concat()).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    // From here on the record is only in the database.
    std::fs::remove_file(files.state.join("history/t.jsonl")).unwrap();

    let list = ["archive", "list", "--format", "json", "--config"];
    let ran = bin_async(&[&list[..], &[postgres.arg()]].concat()).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    let line = common::json_body(ran.stdout.trim_ascii());
    assert_eq!(line["server"], "t", "{}", describe(&ran));
    assert_eq!(
        line["export_users"],
        3,
        "from the record: {}",
        describe(&ran)
    );
    assert!(line["sha256"].is_string(), "{}", describe(&ran));

    let verify = ["archive", "verify", "--config", postgres.arg()];
    let ran = bin_async(&verify).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert!(text(&ran.stdout).starts_with("ok "), "{}", describe(&ran));

    let prune = ["archive", "prune", "--dry-run", "--config", postgres.arg()];
    let ran = bin_async(&prune).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert!(
        text(&ran.stdout).contains(": keep (newest"),
        "{}",
        describe(&ran)
    );

    // Without its record in the database, the file has nothing to be checked against.
    let db = client(&cluster).await;
    db.execute("DELETE FROM run_history", &[]).await.unwrap();
    let ran = bin_async(&verify).await;
    assert!(
        text(&ran.stderr).contains("no record of run"),
        "{}",
        describe(&ran)
    );
    assert!(
        !describe(&ran).contains(&cluster.url()),
        "the database URL never appears"
    );
}

/// The binary's config file on the PostgreSQL backend of `cluster`: server `t` of `sim`,
/// due once a day, 12 hours from now (nothing falls due during a test).
fn pg_config_file(
    cluster: &Cluster,
    sim: &jellyfin_export_scheduler::sim::Simulator,
) -> common::config::ConfigFile {
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"\ninstance_name = \"cli\"",
        cluster.url()
    );
    let far = common::time::schedule_at(chrono::Utc::now() + chrono::Duration::hours(12));
    common::config::ConfigFile::new(|state| {
        common::config::text(state, &daemon, "", &[("t", sim.url("t"), &far)])
    })
}

/// `(claim key, epoch, holder)` of the one claim there is.
async fn the_claim(db: &Client) -> (String, i64, String) {
    let rows = db
        .query("SELECT claim_key, epoch, holder FROM run_claims", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one claim");
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

/// Waits until `daemon` leads; its epoch.
async fn leading(daemon: &jellyfin_export_scheduler::daemon::DaemonHandle) -> i64 {
    within(
        Duration::from_secs(20),
        "the daemon leading",
        || match daemon.status.leader() {
            Some(Leader::Leading { epoch }) => Some(epoch),
            _ => None,
        },
    )
    .await
    .0
}

/// `trigger` with no daemon running claims the run (`manual:<run_id>`), starts it once,
/// follows it and records it once, its claim done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_with_no_daemon_running_runs_and_records_once() {
    use common::bin::{bin_async, describe, text};
    let cluster = Cluster::start();
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let cfg = pg_config_file(&cluster, &sim);
    let ran = bin_async(&["trigger", "t", "--config", cfg.arg()]).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert!(
        text(&ran.stdout).contains("completed"),
        "{}",
        describe(&ran)
    );
    let db = client(&cluster).await;
    let rows = recorded(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, format!("manual:{}", rows[0].1));
    assert_eq!(rows[0].2, "completed");
    assert_eq!(sim.server("t").start_requests().len(), 1);
    let (_, epoch, holder) = the_claim(&db).await;
    assert_eq!(epoch, claims::HANDED_OVER, "no lease ever: epoch 0");
    assert!(
        holder.starts_with("trigger ") && holder.ends_with(" on cli"),
        "{holder}"
    );
    let trigger: String = db
        .query_one("SELECT record->>'trigger' FROM run_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(trigger, "manual");

    // A second trigger while nothing runs: a run of its own, recorded too.
    let ran = bin_async(&["trigger", "t", "--config", cfg.arg()]).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert_eq!(recorded(&db).await.len(), 2);
    assert_eq!(sim.server("t").start_requests().len(), 2);
}

/// `trigger` while a daemon leads claims under the leader's epoch, read in its claim's
/// statement; the leader does not adopt it (same epoch), so it is started once and
/// recorded once, by the trigger. While it runs, the server is busy for another trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_while_a_daemon_leads_claims_under_its_epoch_and_runs_once() {
    use common::bin::{Running, bin_async, command, describe};
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_secs(3);
    })])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &far).await;
    let epoch = leading(&a).await;
    let cfg = pg_config_file(&cluster, &sim);
    let first = Running::start(
        command(["trigger", "t", "--config", cfg.arg()]).stdin(std::process::Stdio::null()),
    );
    within(
        Duration::from_secs(20),
        "the trigger's run starting",
        || (!sim.server("t").start_requests().is_empty()).then_some(()),
    )
    .await;
    let busy = bin_async(&["trigger", "t", "--config", cfg.arg()]).await;
    assert_eq!(busy.status.code(), Some(1), "{}", describe(&busy));
    assert!(
        common::bin::text(&busy.stderr).contains("server t is busy"),
        "{}",
        describe(&busy)
    );
    let ran = first.finish().await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    common::daemon::stop(a).await;
    let (key, claim_epoch, holder) = the_claim(&db).await;
    assert!(key.starts_with("manual:"), "{key}");
    assert_eq!(claim_epoch, epoch, "claimed under the leader's epoch");
    assert_ne!(holder, "a", "the trigger kept its claim");
    let rows = recorded(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "completed");
    assert_eq!(sim.server("t").start_requests().len(), 1);
}

/// `trigger --no-wait` while a daemon leads: it starts the run and hands its claim over
/// (epoch 0); the leader adopts it at its next renewal, follows it from its snapshot
/// (never starting it again) and records it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_no_wait_hands_the_run_to_the_leader_which_records_it_once() {
    use common::bin::{bin_async, describe, text};
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_secs(2);
    })])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &far).await;
    let epoch = leading(&a).await;
    let cfg = pg_config_file(&cluster, &sim);
    let ran = bin_async(&["trigger", "t", "--no-wait", "--config", cfg.arg()]).await;
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert!(
        text(&ran.stdout).contains("The instance that leads records its outcome"),
        "{}",
        describe(&ran)
    );
    let rows = first_records(&db, "the leader recorded the handed-over run").await;
    common::daemon::stop(a).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].0.starts_with("manual:"), "{rows:?}");
    assert_eq!(rows[0].2, "completed");
    let (_, claim_epoch, holder) = the_claim(&db).await;
    assert_eq!(
        (claim_epoch, holder.as_str()),
        (epoch, "a"),
        "adopted by the leader"
    );
    assert_eq!(
        sim.server("t").start_requests().len(),
        1,
        "never started again"
    );
}

/// The run ids of `server`'s records, newest first.
async fn history_ids(db: &Client, server: &str) -> Vec<String> {
    db.query(
        "SELECT run_id FROM run_history WHERE server = $1 ORDER BY triggered_at DESC, run_id DESC",
        &[&server],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `history_limit` on PostgreSQL: the statement that writes a record (a claim's end, a
/// skip) also trims that server's `run_history` to `history_limit`, the new record always
/// kept and the others newest first, as the files backend trims its history file. Only
/// a write that counts trims: one fenced out (the claim done already, the lease not ours)
/// deletes nothing. Other servers are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_a_record_trims_the_servers_history_to_its_limit() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let t0 = chrono::Utc::now() - chrono::Duration::days(10);
    for (server, i) in [("t", 1), ("t", 2), ("t", 3), ("t", 4), ("t", 5), ("u", 1)] {
        let at = t0 + chrono::Duration::days(i);
        let record = format!(r#"{{"run_id":"{server}{i}"}}"#);
        db.execute(
            "INSERT INTO run_history (run_id, server, triggered_at, record)
             VALUES ($1, $2, $3, $4::text::json)",
            &[&format!("{server}{i}"), &server, &at, &record],
        )
        .await
        .unwrap();
    }
    let mut lease = Lease::new("a", Duration::from_secs(30));
    let e = lease.refresh(&db).await.unwrap().unwrap();
    let due = "2026-11-30T03:30:00Z";
    assert_eq!(
        claims::claim(&db, "a", e, "t", due, "new").await.unwrap(),
        Claimed::Won
    );
    // The new run was asked for before the newest kept one: it stays all the same.
    let at = t0 + chrono::Duration::hours(36);
    let line = r#"{"run_id":"new","outcome":"completed"}"#;
    assert!(
        claims::finish(&db, "new", (e, "a"), at, line, 3)
            .await
            .unwrap()
    );
    assert_eq!(history_ids(&db, "t").await, ["t5", "t4", "new"]);
    assert_eq!(
        history_ids(&db, "u").await,
        ["u1"],
        "another server's history"
    );

    // Fenced out: nothing written, nothing trimmed.
    assert!(
        !claims::finish(&db, "new", (e, "a"), at, line, 1)
            .await
            .unwrap()
    );
    let skipped = r#"{"run_id":"s","outcome":"skipped"}"#;
    let later = "2026-11-30T03:31:00Z";
    assert!(
        !claims::skip(&db, "b", e, "t", later, "s", at, skipped, 1)
            .await
            .unwrap()
    );
    assert_eq!(history_ids(&db, "t").await, ["t5", "t4", "new"]);

    // A skip written under the lease trims too.
    let now = chrono::Utc::now();
    assert!(
        claims::skip(&db, "a", e, "t", later, "s", now, skipped, 2)
            .await
            .unwrap()
    );
    assert_eq!(history_ids(&db, "t").await, ["s", "t5"]);
    assert_eq!(history_ids(&db, "u").await, ["u1"]);
}

/// The runs `trigger` records on PostgreSQL follow the server's `history_limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_runs_follow_the_servers_history_limit() {
    use common::bin::{bin_async, describe};
    let cluster = Cluster::start();
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let daemon = format!(
        "backend = \"postgres\"\ndatabase_url = \"{}\"",
        cluster.url()
    );
    let extra = "schedule = \"@daily\"\nhistory_limit = 2";
    let cfg = common::config::ConfigFile::new(|state| {
        common::config::text(state, &daemon, "", &[("t", sim.url("t"), extra)])
    });
    for _ in 0..3 {
        let ran = bin_async(&["trigger", "t", "--config", cfg.arg()]).await;
        assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    }
    let db = client(&cluster).await;
    let kept = history_ids(&db, "t").await;
    let claims: Vec<String> = db
        .query(
            "SELECT run_id FROM run_claims ORDER BY claimed_at DESC, run_id DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(claims.len(), 3);
    assert_eq!(kept, claims[..2], "the two newest runs are kept");
}

/// A `trigger` interrupted (SIGINT) while it follows its run hands the claim over rather
/// than leave it open: the leader adopts it at its next renewal, follows the run from its
/// snapshot and records it once; one start request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_trigger_hands_its_run_to_the_leader() {
    use common::bin::{Running, command, describe, text};
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_secs(4);
    })])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &far).await;
    let epoch = leading(&a).await;
    let cfg = pg_config_file(&cluster, &sim);
    let trigger = Running::start(
        command(["trigger", "t", "--config", cfg.arg()]).stdin(std::process::Stdio::null()),
    );
    within(Duration::from_secs(20), "the trigger's run started", || {
        (!sim.server("t").start_requests().is_empty()).then_some(())
    })
    .await;
    common::bin::signal(trigger.child.id(), "INT");
    let ran = trigger.finish().await;
    assert_eq!(ran.status.code(), Some(1), "{}", describe(&ran));
    assert!(
        text(&ran.stderr).contains("error: interrupted; run "),
        "{}",
        describe(&ran)
    );
    let rows = first_records(&db, "the leader recorded the interrupted trigger's run").await;
    common::daemon::stop(a).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "completed", "{rows:?}");
    let (_, claim_epoch, holder) = the_claim(&db).await;
    assert_eq!(
        (claim_epoch, holder.as_str()),
        (epoch, "a"),
        "adopted by the leader"
    );
    assert_eq!(
        sim.server("t").start_requests().len(),
        1,
        "never started again"
    );
}

/// The holder a `trigger` claims under.
const TRIGGER: &str = "trigger r1 on host:42";

/// Ages `run_id`'s heartbeat past [`STALE`], as a trigger killed (or paused) that long
/// leaves it.
async fn age_heartbeat(db: &Client, run_id: &str) {
    let n = db
        .execute(
            "UPDATE run_claims SET heartbeat_at = now() - interval '31 seconds' WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "no claim {run_id} to age");
}

/// `(holder, heartbeat is set)` of `run_id`'s claim.
async fn holder_of(db: &Client, run_id: &str) -> (String, bool) {
    let row = db
        .query_one(
            "SELECT holder, heartbeat_at IS NOT NULL FROM run_claims WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A `trigger`'s claim, made under the leader's epoch, is the trigger's while its
/// heartbeat is fresh; once it is older than the lease (the trigger killed with -9), the
/// leader's next renewal adopts it, under the same epoch; the trigger's late writes
/// (it was only paused) then change nothing, and the run is recorded once, by the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggers_claim_is_adopted_once_its_heartbeat_is_stale_and_its_late_writes_change_nothing()
 {
    let cluster = Cluster::start();
    let (a_db, t_db) = two_instances(&cluster).await;
    let mut a = Lease::new("a", STALE);
    let e = a.refresh(&a_db).await.unwrap().unwrap();
    assert_eq!(
        claims::claim_manual(&t_db, TRIGGER, "t", "r1", STALE)
            .await
            .unwrap(),
        Some(e),
        "the trigger claims under the leader's epoch"
    );
    assert_eq!(holder_of(&a_db, "r1").await, (TRIGGER.to_owned(), true));

    // Fresh: the leader's renewals leave it alone, however often they adopt.
    assert!(claims::adopt(&a_db, "a", e).await.unwrap().is_empty());
    assert!(claims::heartbeat(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(claims::posting(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(claims::heartbeat(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(claims::adopt(&a_db, "a", e).await.unwrap().is_empty());
    // While it is the trigger's, the server is busy for the leader.
    assert_eq!(
        claims::claim(&a_db, "a", e, "t", "2026-11-30T03:30:00Z", "r2")
            .await
            .unwrap(),
        Claimed::Busy
    );

    // Stale: adopted, under the same epoch, the heartbeat gone, with when it went posting.
    age_heartbeat(&a_db, "r1").await;
    let adopted = claims::adopt(&a_db, "a", e).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(
        (adopted[0].claim_key.as_str(), adopted[0].state),
        ("manual:r1", ClaimState::Posting)
    );
    assert!(adopted[0].is_manual());
    assert!(adopted[0].posted_at.is_some(), "{adopted:?}");
    assert_eq!(holder_of(&a_db, "r1").await, ("a".to_owned(), false));
    assert!(
        claims::adopt(&a_db, "a", e).await.unwrap().is_empty(),
        "adopted once"
    );

    // The trigger wakes: every write of its own changes nothing, and it can tell.
    let marker = json!({"run_id": "r1"});
    let record = json!({"run_id": "r1", "outcome": "completed"}).to_string();
    let at = chrono::Utc::now();
    assert!(!claims::heartbeat(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(!claims::posting(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(
        !claims::started(&t_db, "r1", e, TRIGGER, &marker)
            .await
            .unwrap()
    );
    assert!(!claims::hand_over(&t_db, "r1", e, TRIGGER).await.unwrap());
    assert!(
        !claims::finish(&t_db, "r1", (e, TRIGGER), at, &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(holder_of(&a_db, "r1").await, ("a".to_owned(), false));
    // The leader records it, once.
    assert!(
        claims::finish(&a_db, "r1", (e, "a"), at, &record, 1000)
            .await
            .unwrap()
    );
    assert!(
        !claims::finish(&a_db, "r1", (e, "a"), at, &record, 1000)
            .await
            .unwrap()
    );
    assert_eq!(claims::history(&a_db, "t", 10).await.unwrap(), vec![record]);
}

/// A takeover (a newer epoch) leaves a live trigger's claim to the trigger, which goes on
/// and records its run; a claim the trigger hands over is adopted at the next renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_triggers_claim_survives_a_takeover_and_is_adopted_once_handed_over() {
    let cluster = Cluster::start();
    let (a_db, b_db) = two_instances(&cluster).await;
    let t_db = client(&cluster).await;
    let (mut a, mut b) = (Lease::new("a", STALE), Lease::new("b", STALE));
    let ea = a.refresh(&a_db).await.unwrap().unwrap();
    assert_eq!(
        claims::claim_manual(&t_db, TRIGGER, "t", "r1", STALE)
            .await
            .unwrap(),
        Some(ea)
    );
    let other = "trigger r3 on host:43";
    assert_eq!(
        claims::claim_manual(&t_db, other, "u", "r3", STALE)
            .await
            .unwrap(),
        Some(ea)
    );
    // a stops cleanly; b leads under a newer epoch.
    a.release(&a_db).await.unwrap();
    let eb = b.refresh(&b_db).await.unwrap().unwrap();
    assert!(eb > ea);
    assert!(
        claims::adopt(&b_db, "b", eb).await.unwrap().is_empty(),
        "live triggers' claims stay theirs"
    );
    assert!(claims::heartbeat(&t_db, "r1", ea, TRIGGER).await.unwrap());
    let record = json!({"run_id": "r1", "outcome": "completed"}).to_string();
    let at = chrono::Utc::now();
    assert!(
        claims::finish(&t_db, "r1", (ea, TRIGGER), at, &record, 1000)
            .await
            .unwrap()
    );
    // Its claim done, the trigger's heartbeat still says the claim is its own.
    assert!(claims::heartbeat(&t_db, "r1", ea, TRIGGER).await.unwrap());

    // The other trigger is interrupted and hands its claim over: the next renewal adopts it.
    assert!(claims::hand_over(&t_db, "r3", ea, other).await.unwrap());
    let adopted = claims::adopt(&b_db, "b", eb).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(
        (adopted[0].run_id.as_str(), adopted[0].state),
        ("r3", ClaimState::Claimed)
    );
    assert!(!claims::heartbeat(&t_db, "r3", ea, other).await.unwrap());
    assert_eq!(holder_of(&b_db, "r3").await, ("b".to_owned(), false));
}

/// A claim adopted in `posting` (its start request may have gone out, Jellyfin's answer
/// never stored) is looked up on Jellyfin, never posted again: a run begun since is
/// followed and recorded; none is recorded `interrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_adopted_in_posting_is_looked_up_never_posted_again() {
    let cluster = Cluster::start();
    let (a_db, t_db) = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |c| {
        c.run_length = Duration::from_millis(300);
    })])
    .await;
    let server = sim_server_config(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut a = Lease::new("a", STALE);
    let e = a.refresh(&a_db).await.unwrap().unwrap();
    let runner = pg_runner(&cluster, (e, "a"), dir.path());
    let jf = jellyfin(&server);

    for sent in [true, false] {
        let request = common::runs::manual_request();
        let run_id = request.run_id.as_str();
        claims::claim_manual(&t_db, TRIGGER, "t", run_id, STALE)
            .await
            .unwrap()
            .expect("the server is free");
        assert!(claims::posting(&t_db, run_id, e, TRIGGER).await.unwrap());
        if sent {
            // The trigger's start request reaches Jellyfin; then it is killed.
            let task = jf.find_task(&server.task_key).await.unwrap();
            jf.start_task(&task.id).await.unwrap();
        }
        age_heartbeat(&a_db, run_id).await;
        let adopted = claims::adopt(&a_db, "a", e).await.unwrap();
        assert_eq!(adopted.len(), 1, "{adopted:?}");
        let posted_at = adopted[0].posted_at.expect("posting keeps its time");
        let recorded = runner
            .resume_posted(&jf, &server, &request, posted_at, &mut NoEvents)
            .await;
        let record = match recorded {
            Some(Ok(record)) => record,
            other => panic!("the adopted run was not recorded: {other:?}"),
        };
        let expected = if sent {
            Outcome::Completed
        } else {
            Outcome::Interrupted
        };
        assert_eq!(record.outcome, expected, "sent: {sent}: {record:?}");
        if !sent {
            let reason = record.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("not started again"), "{reason}");
        }
        assert_eq!(
            claim_and_records(&a_db, run_id).await,
            ("done".to_owned(), sent, 1)
        );
    }
    assert_eq!(
        sim.server("t").start_requests().len(),
        1,
        "only the trigger's start request, never one from the leader"
    );
}

/// Claim retention: the leader deletes the done claims older than what it is told to keep,
/// in batches, each statement fenced by its lease; open claims and recent ones stay, and a
/// leader that lost its lease deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_done_claims_are_pruned_by_the_leader_in_fenced_batches() {
    let cluster = Cluster::start();
    let (a_db, b_db) = two_instances(&cluster).await;
    let mut a = Lease::new("a", STALE);
    let e = a.refresh(&a_db).await.unwrap().unwrap();
    // Five done claims ten days old, one done yesterday, one open and old, and a server
    // whose only claim is old (its newest: kept, catch-up reads it).
    a_db.batch_execute(
        "INSERT INTO run_claims
                (server, claim_key, run_id, epoch, holder, state, claimed_at, updated_at)
         SELECT 't', 'old' || i, 'old' || i, 1, 'a', 'done',
                now() - interval '10 days', now() - interval '10 days'
           FROM generate_series(1, 5) AS i;
         INSERT INTO run_claims
                (server, claim_key, run_id, epoch, holder, state, claimed_at, updated_at)
         VALUES ('t', 'recent', 'recent', 1, 'a', 'done',
                 now() - interval '1 day', now() - interval '1 day'),
                ('u', 'open', 'open', 1, 'a', 'started',
                 now() - interval '30 days', now() - interval '30 days'),
                ('v', 'lonely', 'lonely', 1, 'a', 'done',
                 now() - interval '30 days', now() - interval '30 days');",
    )
    .await
    .unwrap();
    let kept_for = Duration::from_secs(9 * 24 * 3600);
    let left = || async {
        let rows = a_db
            .query("SELECT run_id FROM run_claims ORDER BY run_id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
    };

    // Not the leader (another holder, or an old epoch): nothing goes.
    assert_eq!(
        claims::prune(&b_db, ("b", e), kept_for, 2).await.unwrap(),
        0
    );
    assert_eq!(
        claims::prune(&b_db, ("a", e - 1), kept_for, 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(left().await.len(), 8);

    // The leader: two, two, one, then none (a short batch says it is done).
    let batches: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(claims::prune(&a_db, ("a", e), kept_for, 2).await.unwrap());
        }
        v
    };
    assert_eq!(batches, [2, 2, 1, 0]);
    assert_eq!(left().await, ["lonely", "open", "recent"]);
}

/// The daemon on PostgreSQL prunes old done claims when it starts leading: a claim done
/// long before the longest catch-up window (plus the week's margin) goes, a recent one
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leading_daemon_prunes_claims_older_than_catch_up_can_reach() {
    let cluster = Cluster::start();
    let (db, _) = two_instances(&cluster).await;
    db.batch_execute(
        "INSERT INTO run_claims
                (server, claim_key, run_id, epoch, holder, state, claimed_at, updated_at)
         VALUES ('t', 'ancient', 'ancient', 1, 'x', 'done',
                 now() - interval '9 days', now() - interval '9 days'),
                ('t', 'recent', 'recent', 1, 'x', 'done',
                 now() - interval '7 days', now() - interval '7 days');",
    )
    .await
    .unwrap();
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let dir = tempfile::tempdir().unwrap();
    let far = common::time::daily_at(chrono::Utc::now() + chrono::Duration::hours(12));
    // The default catch_up_window, 24 h: claims done for over 8 days go.
    let a = pg_daemon_on(&cluster, "a", dir.path(), &sim, &far).await;
    leading(&a).await;
    let ids = || async {
        let rows = db
            .query("SELECT run_id FROM run_claims ORDER BY run_id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
    };
    let start = Instant::now();
    while ids().await.contains(&"ancient".to_owned()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the leader did not prune the old claim: {:?}",
            ids().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::daemon::stop(a).await;
    // (It has run before, so the leader also caught up the latest due instant: a claim.)
    let left = ids().await;
    assert!(left.contains(&"recent".to_owned()), "{left:?}");
}

/// The systemd way (`LoadCredential=database-url:…`, the unit unchanged): the URL read
/// from `${CREDENTIALS_DIRECTORY}/database-url`, a 0600 file, by the real binary, whose
/// `doctor` then reaches the database; the URL shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_comes_as_a_credential_like_an_api_key() {
    use common::bin::{command, run_async};
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start();
    let _ = two_instances(&cluster).await;
    let sim = common::sim::simulator(vec![common::sim::sim_server("t", |_| {})]).await;
    let credentials = tempfile::tempdir().unwrap();
    let file = credentials.path().join("database-url");
    std::fs::write(&file, format!("{}\n", cluster.url())).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon =
        "backend = \"postgres\"\ndatabase_url_file = \"${CREDENTIALS_DIRECTORY}/database-url\"";
    let config = common::config::ConfigFile::quick(
        daemon,
        "",
        &[("t", sim.url("t"), "schedule = \"@daily\"")],
    );
    let mut doctor = command(["doctor", "--format", "json", "--config", config.arg()]);
    doctor.env("CREDENTIALS_DIRECTORY", credentials.path());
    let o = run_async(doctor).await;
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --format json: {e}\n{}", o.how));
    let status = |id: &str| {
        doc["local"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(status("database").as_deref(), Some("ok"), "{doc:#}");
    assert_eq!(status("schema").as_deref(), Some("ok"), "{doc:#}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !all.contains(&cluster.url()),
        "the URL is never shown: {all}"
    );
}
