//! Notifications against local receivers on 127.0.0.1: which outcome goes to which target,
//! `recovered` once after failures, the `servers` filter, each format's body and headers,
//! retries, pings with their run id, a hanging receiver that delays no scheduled run, and
//! logs that never show a secret URL's path.
//!
//! The receivers are tiny HTTP servers in this file (on the library's own HTTP/1.1 server)
//! that record every request. Most tests
//! drive the observer directly with synthetic records (clearer than arranging outcomes on
//! a simulated Jellyfin); the timing and ping tests run the real daemon against the
//! simulator. Waits are bounded and fail with a sentence; nothing sleeps to synchronise.
//! Each receiver gets its notifications in order (one queue per target), so a test that
//! ends with a record every target wants knows that nothing else is still on the way.

use chrono::Utc;
use jellyfin_export_scheduler::config::{Config, ServerConfig};
use jellyfin_export_scheduler::daemon::{DaemonHandle, DaemonObserver};
use jellyfin_export_scheduler::history::History;
use jellyfin_export_scheduler::notifications::deliver::Backoff;
use jellyfin_export_scheduler::notifications::{NotifyObserver, NotifyOptions, ping_rid};
use jellyfin_export_scheduler::record::{
    Outcome, RunRecord, SCHEDULER_VERSION, Trigger, new_run_id, summary,
};
use jellyfin_export_scheduler::records::Records;
use jellyfin_export_scheduler::secret::Secret;
use jellyfin_export_scheduler::sim::http1::{Conn, Request, Response, TEXT};
use jellyfin_export_scheduler::sim::{RunOutcome, SimServerConfig};
use jellyfin_export_scheduler::state::StateDir;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

mod common;

use common::daemon::stop;
use common::sim::simulator;
use common::time::schedule_at as at;

// ---------------------------------------------------------------------------------------
// Receivers

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// 200 to everything.
    Ok,
    /// Reads the request, records it, never answers.
    Hang,
    /// 500 to the first n requests, then 200.
    FailFirst(usize),
    /// 500 to everything.
    AlwaysFail,
}

/// A request a receiver got, as the library's HTTP/1.1 server parsed it, with its target
/// (path and query) as sent.
#[derive(Clone, Debug)]
struct Req {
    target: String,
    request: Request,
}

impl std::ops::Deref for Req {
    type Target = Request;
    fn deref(&self) -> &Request {
        &self.request
    }
}

impl Req {
    fn json(&self) -> Value {
        common::json_body(&self.body)
    }

    /// `(server, on)` of a `json`-format notification.
    fn server_and_on(&self) -> (String, String) {
        let v = self.json();
        (
            v["record"]["server"].as_str().unwrap_or("?").to_owned(),
            v["on"].as_str().unwrap_or("?").to_owned(),
        )
    }
}

struct Receiver {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(
                    Conn::new(stream, "receiver"),
                    behaviour,
                    reqs.clone(),
                ));
            }
        });
        Receiver { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What logs may show of this receiver's URLs.
    fn shown(&self) -> String {
        format!("http://{} (path hidden)", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Req> {
        let start = Instant::now();
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {n} requests at {}; have {}: {:#?}",
                self.addr,
                r.len(),
                r.iter()
                    .map(|q| format!("{} {}", q.method, q.target))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Records the connection's one request and answers it as `behaviour` says, then closes.
async fn answer(mut conn: Conn, behaviour: Behaviour, reqs: Arc<Mutex<Vec<Req>>>) {
    let Ok(Some(request)) = conn.read_request().await else {
        return;
    };
    let target = match request.query.as_str() {
        "" => request.path.clone(),
        query => format!("{}?{query}", request.path),
    };
    let n = {
        let mut reqs = reqs.lock().unwrap();
        reqs.push(Req { target, request });
        reqs.len() - 1
    };
    let status = match behaviour {
        Behaviour::Ok => 200,
        Behaviour::Hang => std::future::pending().await,
        Behaviour::FailFirst(k) if n < k => 500,
        Behaviour::FailFirst(_) => 200,
        Behaviour::AlwaysFail => 500,
    };
    let _ = conn
        .write(&Response::new(status, Some(TEXT), "ok"), true)
        .await;
}

// ---------------------------------------------------------------------------------------
// Config, records, observer

/// A config with one `[[servers]]` per (name, extra lines) and the given `[[notify]]` text.
fn config(state: &Path, servers: &[(&str, String)], notify: &str) -> Config {
    config_with_urls(state, servers, notify, "http://127.0.0.1:9", "")
}

fn config_with_urls(
    state: &Path,
    servers: &[(&str, String)],
    notify: &str,
    server_url: &str,
    defaults: &str,
) -> Config {
    let servers: Vec<(&str, String, &str)> = servers
        .iter()
        .map(|(name, extra)| (*name, server_url.replace("{name}", name), extra.as_str()))
        .collect();
    let defaults = format!("schedule = \"@yearly\"\n{defaults}");
    let text = common::config::text(state, "listen = \"\"", &defaults, &servers) + notify;
    common::config::parse(&text)
}

fn server(c: &Config, name: &str) -> ServerConfig {
    c.server(name).unwrap().clone()
}

fn record(server: &str, outcome: Outcome) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        run_id: new_run_id(now),
        server: server.into(),
        task_key: "JellyfinMigratorExport".into(),
        trigger: Trigger::Schedule,
        scheduled_for: Some(now),
        triggered_at: now,
        started_at: None,
        finished_at: Some(now),
        duration_ms: Some(12_300),
        outcome,
        jellyfin_status: None,
        reason: (outcome != Outcome::Completed).then(|| format!("it was {outcome}")),
        export_path: None,
        attempts: 1,
        scheduler_version: SCHEDULER_VERSION.into(),
        archive_path: None,
        archive_bytes: None,
        archive_sha256: None,
        archive_encrypted: None,
        export_bytes: None,
        export_sha256: None,
        export_entries: None,
        export_users: None,
    }
}

/// Short waits between retries, so retry tests take milliseconds.
fn fast() -> NotifyOptions {
    NotifyOptions {
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        },
        ..NotifyOptions::default()
    }
}

fn observer(state: &Path, options: NotifyOptions) -> Arc<NotifyObserver> {
    NotifyObserver::start_with(Records::files(&StateDir::open(state).unwrap()), options)
}

fn notify_table(url: &str, extra: &str) -> String {
    format!("\n[[notify]]\nurl = \"{url}\"\n{extra}\n")
}

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Which notifications

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_reaches_the_targets_that_list_it_and_pings_its_check() {
    let default_rx = Receiver::start(Behaviour::Ok).await;
    let all_rx = Receiver::start(Behaviour::Ok).await;
    let narrow_rx = Receiver::start(Behaviour::Ok).await;
    let ping_rx = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();

    let all_on: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("\"{o}\""))
        .chain(["\"recovered\"".into()])
        .collect();
    let notify = [
        notify_table(&default_rx.url("/default"), ""),
        notify_table(
            &all_rx.url("/all"),
            &format!("on = [{}]", all_on.join(", ")),
        ),
        notify_table(&narrow_rx.url("/narrow"), "on = [\"completed\", \"lost\"]"),
    ]
    .concat();
    // One server per outcome, so that no record is another's recovery.
    let mut names: Vec<String> = Outcome::ALL.iter().map(|o| format!("s-{o}")).collect();
    names.push("s-skipped-after-start".into());
    let mut servers: Vec<(&str, String)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                format!("ping_url = \"{}\"", ping_rx.url(&format!("/ping/{n}"))),
            )
        })
        .collect();
    servers.push(("zz-sentinel", String::new()));
    let cfg = config(dir.path(), &servers, &notify);
    let obs = observer(dir.path(), fast());
    obs.config_applied(&cfg);

    let mut run_ids = std::collections::HashMap::new();
    for o in Outcome::ALL {
        let name = format!("s-{o}");
        let r = record(&name, o);
        // A skip decided before the start (previous run still going) never started.
        if o != Outcome::Skipped {
            obs.run_started(&server(&cfg, &name), &r.run_id);
        }
        obs.run_recorded(&server(&cfg, &name), &r);
        run_ids.insert(name, r.run_id);
    }
    // A skip decided after the start (the plugin is in Import mode).
    let r = record("s-skipped-after-start", Outcome::Skipped);
    obs.run_started(&server(&cfg, "s-skipped-after-start"), &r.run_id);
    obs.run_recorded(&server(&cfg, "s-skipped-after-start"), &r);
    run_ids.insert("s-skipped-after-start".into(), r.run_id);
    // Every target wants this one, and each target's deliveries are in order: once it
    // is there, nothing else is on its way.
    obs.run_recorded(
        &server(&cfg, "zz-sentinel"),
        &record("zz-sentinel", Outcome::Lost),
    );

    let expect = |wanted: &[Outcome], extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Outcome::ALL
            .iter()
            .filter(|o| wanted.contains(o))
            .map(|o| (format!("s-{o}"), o.to_string()))
            .collect();
        v.extend(extra.iter().map(|(s, o)| (s.to_string(), o.to_string())));
        v.push(("zz-sentinel".into(), "lost".into()));
        v
    };
    let cases = [
        (
            &default_rx,
            expect(
                &[
                    Outcome::Failed,
                    Outcome::TimedOut,
                    Outcome::Lost,
                    Outcome::TriggerFailed,
                ],
                &[],
            ),
        ),
        (
            &all_rx,
            expect(&Outcome::ALL, &[("s-skipped-after-start", "skipped")]),
        ),
        (
            &narrow_rx,
            expect(&[Outcome::Completed, Outcome::Lost], &[]),
        ),
    ];
    for (rx, want) in cases {
        let got: Vec<(String, String)> = rx
            .wait_for(want.len(), WAIT)
            .await
            .iter()
            .map(Req::server_and_on)
            .collect();
        assert_eq!(got, want, "receiver {}", rx.addr);
    }

    // Pings: /start for runs that started; the bare URL on completed; /fail on the rest,
    // and on a skip only when its run had started.
    let mut want_pings: Vec<String> = Vec::new();
    for name in &names {
        let rid = ping_rid(&run_ids[name]);
        let base = format!("/ping/{name}");
        match name.as_str() {
            "s-skipped" => {}
            "s-completed" => {
                want_pings.push(format!("{base}/start?rid={rid}"));
                want_pings.push(format!("{base}?rid={rid}"));
            }
            _ => {
                want_pings.push(format!("{base}/start?rid={rid}"));
                want_pings.push(format!("{base}/fail?rid={rid}"));
            }
        }
    }
    let pings = ping_rx.wait_for(want_pings.len(), WAIT).await;
    let mut got: Vec<String> = pings.iter().map(|r| r.target.clone()).collect();
    assert!(pings.iter().all(|r| r.method == "GET"), "{pings:#?}");
    // Each server's pings are in order; servers' queues are independent.
    for name in &names {
        let mine: Vec<&String> = got
            .iter()
            .filter(|t| {
                t.starts_with(&format!("/ping/{name}/")) || t.starts_with(&format!("/ping/{name}?"))
            })
            .collect();
        let want: Vec<&String> = want_pings
            .iter()
            .filter(|t| {
                t.starts_with(&format!("/ping/{name}/")) || t.starts_with(&format!("/ping/{name}?"))
            })
            .collect();
        assert_eq!(mine, want, "pings of {name}");
    }
    got.sort();
    want_pings.sort();
    assert_eq!(got, want_pings);
    obs.shutdown(Duration::from_secs(2)).await;
}

fn append(state: &Path, r: &RunRecord) {
    History::new(&StateDir::open(state).unwrap())
        .append(r, 1000)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_is_sent_once_after_failures_counted_from_the_history() {
    let rx = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            ("r", String::new()),
            ("fresh", String::new()),
            ("ok", String::new()),
        ],
        &notify_table(&rx.url("/hook"), ""),
    );
    // Before the daemon started: r's last runs failed (a skip since changes nothing); ok's
    // last real run completed.
    for (server, o) in [
        ("r", Outcome::Completed),
        ("r", Outcome::Failed),
        ("r", Outcome::Skipped),
        ("ok", Outcome::Failed),
        ("ok", Outcome::Completed),
        ("ok", Outcome::Cancelled),
    ] {
        append(dir.path(), &record(server, o));
    }
    let obs = observer(dir.path(), fast());
    obs.config_applied(&cfg);
    let mut sent = Vec::new();
    for (name, o) in [
        ("fresh", Outcome::Completed), // no history: nothing to recover from
        ("ok", Outcome::Completed),    // last real run completed: no news
        ("r", Outcome::Completed),     // recovered after 1
        ("r", Outcome::Completed),     // just completed: nothing
        ("r", Outcome::Cancelled),     // not in `on`, streak unchanged
        ("r", Outcome::Failed),
        ("r", Outcome::Skipped),
        ("r", Outcome::TimedOut),
        ("r", Outcome::Completed), // recovered after 2
    ] {
        let rec = record(name, o);
        // As the daemon does: the record is in the history before observers hear of it.
        append(dir.path(), &rec);
        obs.run_recorded(&server(&cfg, name), &rec);
        sent.push(rec);
    }
    let got = rx.wait_for(4, WAIT).await;
    let kinds: Vec<(String, String)> = got.iter().map(Req::server_and_on).collect();
    assert_eq!(
        kinds,
        [
            ("r", "recovered"),
            ("r", "failed"),
            ("r", "timed_out"),
            ("r", "recovered")
        ]
        .map(|(s, o)| (s.to_owned(), o.to_owned()))
    );
    let summaries: Vec<String> = got
        .iter()
        .map(|r| r.json()["summary"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        summaries[0],
        format!("{} (recovered after 1 failed run)", summary(&sent[2]))
    );
    assert_eq!(
        summaries[3],
        format!("{} (recovered after 2 failed runs)", summary(&sent[8]))
    );
    obs.shutdown(Duration::from_secs(2)).await;
    assert_eq!(rx.requests().len(), 4, "nothing after the last recovery");
}

/// With `backend = "postgres"` the streak is seeded from `run_history`, the records every
/// instance wrote, not from this host's history files (which may say otherwise: here they
/// say the last run completed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_counts_the_failures_the_database_holds_on_postgres() {
    let cluster = common::pg::Cluster::start();
    let db = common::pg::connect(&cluster).await;
    let mut session = jellyfin_export_scheduler::postgres::connect(
        &Secret::new(cluster.url()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    jellyfin_export_scheduler::postgres::migrate::migrate(&mut session)
        .await
        .unwrap();
    let rx = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("r", String::new())],
        &notify_table(&rx.url("/hook"), ""),
    );
    // The database: r's last two real runs failed (written by another instance).
    for o in [Outcome::Completed, Outcome::Failed, Outcome::TimedOut] {
        let r = record("r", o);
        db.execute(
            "INSERT INTO run_history (run_id, server, triggered_at, record)
             VALUES ($1, $2, $3, $4::text::json)",
            &[
                &r.run_id,
                &r.server,
                &r.triggered_at,
                &serde_json::to_string(&r).unwrap(),
            ],
        )
        .await
        .unwrap();
    }
    // This host's files say the opposite: they must not be read.
    append(dir.path(), &record("r", Outcome::Failed));
    append(dir.path(), &record("r", Outcome::Completed));

    let records = Records::Postgres(Arc::new(
        jellyfin_export_scheduler::records::PgRecords::new(Secret::new(cluster.url())),
    ));
    let obs = NotifyObserver::start_with(records, fast());
    obs.config_applied(&cfg);
    let done = record("r", Outcome::Completed);
    obs.run_recorded(&server(&cfg, "r"), &done);
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got[0].server_and_on(), ("r".into(), "recovered".into()));
    assert_eq!(
        got[0].json()["summary"],
        format!("{} (recovered after 2 failed runs)", summary(&done)).as_str()
    );
    obs.shutdown(Duration::from_secs(2)).await;
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_filter_limits_a_target_to_its_servers() {
    let rx = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("a", String::new()), ("b", String::new())],
        &notify_table(&rx.url("/hook"), "servers = [\"a\"]"),
    );
    let obs = observer(dir.path(), fast());
    obs.config_applied(&cfg);
    for (s, o) in [
        ("b", Outcome::Failed),
        ("a", Outcome::Failed),
        ("b", Outcome::Lost),
        ("a", Outcome::TimedOut),
    ] {
        obs.run_recorded(&server(&cfg, s), &record(s, o));
    }
    let got: Vec<(String, String)> = rx
        .wait_for(2, WAIT)
        .await
        .iter()
        .map(Req::server_and_on)
        .collect();
    assert_eq!(
        got,
        [("a", "failed"), ("a", "timed_out")].map(|(s, o)| (s.to_owned(), o.to_owned()))
    );
    obs.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replaces_the_targets() {
    let first = Receiver::start(Behaviour::Ok).await;
    let second = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let servers = [("a", String::new())];
    let before = config(dir.path(), &servers, &notify_table(&first.url("/1"), ""));
    let after = config(dir.path(), &servers, &notify_table(&second.url("/2"), ""));
    let obs = observer(dir.path(), fast());
    obs.config_applied(&before);
    obs.run_recorded(&server(&before, "a"), &record("a", Outcome::Failed));
    first.wait_for(1, WAIT).await;
    obs.config_applied(&after);
    obs.run_recorded(&server(&after, "a"), &record("a", Outcome::Lost));
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].server_and_on(), ("a".into(), "lost".into()));
    obs.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        first.requests().len(),
        1,
        "the old target got nothing after the reload"
    );
}

// ---------------------------------------------------------------------------------------
// Formats and delivery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_has_its_body_and_headers() {
    let json_rx = Receiver::start(Behaviour::Ok).await;
    let ntfy_rx = Receiver::start(Behaviour::Ok).await;
    let slack_rx = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = [
        notify_table(&json_rx.url("/json"), "format = \"json\""),
        notify_table(&ntfy_rx.url("/topic"), "format = \"ntfy\""),
        notify_table(&slack_rx.url("/services/T/B/X"), "format = \"slack\""),
    ]
    .concat();
    let cfg = config(dir.path(), &[("living-room", String::new())], &notify);
    let obs = observer(dir.path(), fast());
    obs.config_applied(&cfg);
    let failed = record("living-room", Outcome::Failed);
    let mut done = record("living-room", Outcome::Completed);
    done.export_path = Some("/exports/20261126_184020".into());
    for r in [&failed, &done] {
        append(dir.path(), r);
        obs.run_recorded(&server(&cfg, "living-room"), r);
    }
    let recovered_summary = format!("{} (recovered after 1 failed run)", summary(&done));

    let json = json_rx.wait_for(2, WAIT).await;
    assert_eq!(json[0].method, "POST");
    assert_eq!(json[0].header("content-type"), Some("application/json"));
    assert_eq!(
        json[0].json(),
        serde_json::json!({
            "event": "run_finished",
            "on": "failed",
            "summary": summary(&failed),
            "record": serde_json::to_value(&failed).unwrap(),
        })
    );
    assert_eq!(json[1].json()["on"], "recovered");
    assert_eq!(json[1].json()["summary"], recovered_summary.as_str());
    // The record is the history line as stored.
    let stored: RunRecord = serde_json::from_value(json[1].json()["record"].clone()).unwrap();
    assert_eq!(stored, done);

    let ntfy = ntfy_rx.wait_for(2, WAIT).await;
    assert_eq!(ntfy[0].target, "/topic");
    assert_eq!(
        ntfy[0].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(String::from_utf8_lossy(&ntfy[0].body), summary(&failed));
    assert_eq!(ntfy[0].header("title"), Some("living-room: failed"));
    assert_eq!(ntfy[0].header("priority"), Some("high"));
    assert!(ntfy[0].header("tags").unwrap().contains("warning"));
    assert_eq!(String::from_utf8_lossy(&ntfy[1].body), recovered_summary);
    assert_eq!(ntfy[1].header("title"), Some("living-room: recovered"));
    assert_eq!(ntfy[1].header("priority"), Some("default"));
    assert!(ntfy[1].header("tags").unwrap().contains("white_check_mark"));

    let slack = slack_rx.wait_for(2, WAIT).await;
    assert_eq!(slack[0].header("content-type"), Some("application/json"));
    assert_eq!(
        slack[0].json(),
        serde_json::json!({ "text": summary(&failed) })
    );
    assert_eq!(
        slack[1].json(),
        serde_json::json!({ "text": recovered_summary })
    );
    obs.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_a_dead_receiver_gives_up_after_its_retries() {
    let flaky = Receiver::start(Behaviour::FailFirst(2)).await;
    let dead = Receiver::start(Behaviour::AlwaysFail).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = [
        notify_table(&flaky.url("/flaky"), "retries = 3"),
        notify_table(&dead.url("/dead"), "retries = 1"),
    ]
    .concat();
    let cfg = config(dir.path(), &[("a", String::new())], &notify);
    let obs = observer(dir.path(), fast());
    obs.config_applied(&cfg);
    let first = record("a", Outcome::Failed);
    obs.run_recorded(&server(&cfg, "a"), &first);

    let got = flaky.wait_for(3, WAIT).await;
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "the same notification each time"
    );
    assert_eq!(got[0].json()["record"]["run_id"], first.run_id.as_str());

    // 1 attempt + 1 retry, then dropped; the next notification is tried afresh.
    let second = record("a", Outcome::Lost);
    dead.wait_for(2, WAIT).await;
    obs.run_recorded(&server(&cfg, "a"), &second);
    let got = dead.wait_for(4, WAIT).await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["record"]["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [&first.run_id, &first.run_id, &second.run_id, &second.run_id].map(|s| s.clone())
    );
    obs.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        flaky.requests().len(),
        4,
        "3 for the first, 1 for the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_calls_return_at_once_while_the_receiver_hangs() {
    let hang = Receiver::start(Behaviour::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("a", format!("ping_url = \"{}\"", hang.url("/ping")))],
        &notify_table(&hang.url("/hook"), "timeout = \"1h\"\nretries = 100"),
    );
    let obs = observer(
        dir.path(),
        NotifyOptions {
            queue_capacity: 8,
            ..fast()
        },
    );
    obs.config_applied(&cfg);
    let a = server(&cfg, "a");
    // Waiting for the receiver would take its timeout (1 h) per call: calls that return
    // at all, with most of the events dropped from the full queue, never waited. (A bound
    // in seconds would race with the machine's load, not with the receiver.)
    let calls = tokio::task::spawn_blocking(move || {
        for _ in 0..10_000 {
            let r = record("a", Outcome::Failed);
            obs.run_started(&a, &r.run_id);
            obs.run_recorded(&a, &r);
        }
        obs
    });
    let obs = tokio::time::timeout(BLOCKED, calls)
        .await
        .expect("20 000 observer calls did not return while the receiver hangs: they wait for it")
        .unwrap();
    hang.wait_for(2, WAIT).await; // one webhook and one ping hang, unanswered
    let stop = Instant::now();
    tokio::time::timeout(BLOCKED, obs.shutdown(Duration::from_millis(200)))
        .await
        .expect("shutdown waits for a hanging receiver (its timeout is 1 h)");
    eprintln!("shutdown with a hanging receiver took {:?}", stop.elapsed());
}

/// Longer than any load stretches a call that does not wait, far shorter than the hanging
/// receiver's timeout (1 h) that a call that waits would take.
const BLOCKED: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// With the daemon

fn sim_server(name: &str, run_length_ms: u64) -> SimServerConfig {
    common::sim::sim_server(name, |c| {
        c.run_length = Duration::from_millis(run_length_ms)
    })
}

async fn wait_for_records(state: &Path, server: &str, n: usize) -> Vec<RunRecord> {
    common::records::wait_for_records(state, server, n, WAIT).await
}

async fn start_daemon(cfg: Config, obs: &Arc<NotifyObserver>) -> DaemonHandle {
    common::daemon::start_observed(cfg, vec![obs.clone() as Arc<dyn DaemonObserver>]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_delay_the_next_scheduled_run() {
    let sim = simulator(vec![sim_server("h", 100)]).await;
    let hang = Receiver::start(Behaviour::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_urls(
        dir.path(),
        &[(
            "h",
            format!(
                "schedule = \"* * * * * *\"\nping_url = \"{}\"",
                hang.url("/ping/h")
            ),
        )],
        &notify_table(&hang.url("/hook"), "on = [\"completed\"]\ntimeout = \"1h\""),
        &sim.url("{name}"),
        "",
    );
    let obs = observer(dir.path(), fast());
    let handle = start_daemon(cfg, &obs).await;
    let recs = wait_for_records(dir.path(), "h", 3).await;
    // The receiver has the first run's ping and notification, and answers neither.
    hang.wait_for(2, WAIT).await;
    stop(handle).await;
    obs.shutdown(Duration::from_millis(200)).await;

    // The receiver answers nothing, ever (its timeout is 1 h): a daemon that waited for
    // it would have stopped at the first run. Three runs, each started, tracked and
    // recorded while the first run's ping and notification were still unanswered, show
    // that nothing waits for it. (How late each run started depends on the machine's
    // load, not on the receiver, so it is not asserted.)
    let completed: Vec<&RunRecord> = recs
        .iter()
        .filter(|r| r.outcome == Outcome::Completed)
        .collect();
    assert!(completed.len() >= 3, "{recs:#?}");
    assert!(
        hang.requests()
            .iter()
            .any(|q| q.target.starts_with("/ping/h")),
        "the first run's ping reached the receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_mark_start_success_and_failure_with_the_run_id() {
    let mut bad = sim_server("bad", 100);
    bad.outcome = RunOutcome::Failed;
    let sim = simulator(vec![sim_server("good", 100), bad]).await;
    let pings = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let when = at(Utc::now() + chrono::Duration::seconds(2));
    let servers: Vec<(&str, String)> = ["good", "bad"]
        .into_iter()
        .map(|n| {
            (
                n,
                format!(
                    "{when}\nping_url = \"{}\"",
                    pings.url(&format!("/c/{n}-token"))
                ),
            )
        })
        .collect();
    let cfg = config_with_urls(dir.path(), &servers, "", &sim.url("{name}"), "");
    let obs = observer(dir.path(), fast());
    let handle = start_daemon(cfg, &obs).await;
    let good = wait_for_records(dir.path(), "good", 1).await.remove(0);
    let bad = wait_for_records(dir.path(), "bad", 1).await.remove(0);
    let got = pings.wait_for(4, WAIT).await;
    stop(handle).await;
    obs.shutdown(Duration::from_secs(2)).await;

    assert_eq!(good.outcome, Outcome::Completed);
    assert_eq!(bad.outcome, Outcome::Failed);
    let of = |n: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r.target.starts_with(&format!("/c/{n}-token")))
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    };
    let rid = ping_rid(&good.run_id);
    assert_eq!(
        of("good"),
        [
            format!("GET /c/good-token/start?rid={rid}"),
            format!("GET /c/good-token?rid={rid}")
        ]
    );
    let rid = ping_rid(&bad.run_id);
    assert_eq!(
        of("bad"),
        [
            format!("GET /c/bad-token/start?rid={rid}"),
            format!("GET /c/bad-token/fail?rid={rid}")
        ]
    );
}

/// The archive in the daemon's notifications: a kept export travels with its path and
/// size; one the archive refused (a stale ZIP) is a failure like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_export_and_one_not_archived_reach_the_webhook() {
    let mut stale = sim_server("stale", 100);
    stale.zip_fails = true;
    let sim = simulator(vec![sim_server("kept", 100), stale]).await;
    let hook = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let when = at(Utc::now() + chrono::Duration::seconds(2));
    let servers: Vec<(&str, String)> = ["kept", "stale"]
        .into_iter()
        .map(|n| (n, when.clone()))
        .collect();
    let notify = notify_table(&hook.url("/hook"), "on = [\"completed\", \"failed\"]");
    let cfg = config_with_urls(dir.path(), &servers, &notify, &sim.url("{name}"), "");
    let obs = observer(dir.path(), fast());
    let handle = start_daemon(cfg, &obs).await;
    let kept = wait_for_records(dir.path(), "kept", 1).await.remove(0);
    let failed = wait_for_records(dir.path(), "stale", 1).await.remove(0);
    let got = hook.wait_for(2, WAIT).await;
    stop(handle).await;
    obs.shutdown(Duration::from_secs(2)).await;

    assert_eq!(kept.outcome, Outcome::Completed, "{kept:?}");
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:?}");
    let body = |server: &str| {
        got.iter()
            .map(|r| r.json())
            .find(|j| j["record"]["server"] == server)
            .unwrap_or_else(|| panic!("no notification for {server}"))
    };
    let k = body("kept");
    assert_eq!(k["on"], "completed");
    let path = kept.archive_path.clone().expect("archived");
    assert_eq!(k["record"]["archive_path"], path.as_str());
    assert_eq!(k["record"]["archive_bytes"], kept.archive_bytes.unwrap());
    assert!(
        k["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("archived to {path}"))
    );
    let f = body("stale");
    assert_eq!(f["on"], "failed");
    let reason = f["record"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("exported on the server, but not archived: "),
        "{reason}"
    );
    assert!(f["record"].get("archive_path").is_none(), "{f}");
}

// ---------------------------------------------------------------------------------------
// Logs

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

// current_thread: every task runs on this thread, where the capturing subscriber is set.
#[tokio::test]
async fn secret_urls_never_appear_in_logs() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish(),
    );
    let failing = Receiver::start(Behaviour::AlwaysFail).await;
    let hang = Receiver::start(Behaviour::Hang).await;
    // A port nothing listens on: connection refused.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let notify = [
        notify_table(
            &failing.url("/hook/HOOK-SECRET-PATH?token=HOOK-SECRET-QUERY"),
            "retries = 1",
        ),
        notify_table(
            &hang.url("/hang/HANG-SECRET-PATH"),
            "timeout = \"100ms\"\nretries = 0",
        ),
    ]
    .concat();
    let cfg = config(
        dir.path(),
        &[(
            "a",
            format!("ping_url = \"http://{closed}/PING-SECRET-TOKEN\""),
        )],
        &notify,
    );
    let obs = observer(
        dir.path(),
        NotifyOptions {
            ping_retries: 1,
            queue_capacity: 1,
            ..fast()
        },
    );
    obs.config_applied(&cfg);
    let a = server(&cfg, "a");
    for _ in 0..3 {
        let r = record("a", Outcome::Failed);
        obs.run_started(&a, &r.run_id);
        obs.run_recorded(&a, &r);
    }
    let start = Instant::now();
    let wanted = [
        "notification not delivered; dropped",
        "ping not delivered; dropped",
        "500 Internal Server Error",
        &failing.shown(),
        &hang.shown(),
        &format!("http://{closed} (path hidden)"),
    ];
    loop {
        let text = logs.text();
        if wanted.iter().all(|w| text.contains(w)) && text.contains("not keeping up") {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for the delivery failures to be logged; missing {:?} in:\n{text}",
            wanted
                .iter()
                .filter(|w| !text.contains(*w))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    obs.shutdown(Duration::from_millis(200)).await;
    let text = logs.text();
    assert!(
        !text.contains("SECRET"),
        "a secret URL part was logged:\n{text}"
    );
    assert!(
        !text.contains("/hook"),
        "a webhook path was logged:\n{text}"
    );
}
