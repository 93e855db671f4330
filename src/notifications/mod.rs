//! Notifications about runs: `[[notify]]` webhooks (json, ntfy, Slack-compatible) and each
//! server's dead-man's-switch `ping_url`, as a [`DaemonObserver`].
//!
//! Shape: the observer's methods only put an event on a bounded channel and return (a full
//! channel drops the event and counts it). One dispatcher task turns events into
//! deliveries: it keeps each server's failure streak (for `recovered`), picks the targets
//! that want each record, and pushes onto one queue per webhook target and one per server
//! that pings. One task per queue sends, in order, with a timeout and retries with backoff
//! ([`deliver`]). So a slow or dead receiver delays only its own queue, never scheduling,
//! tracking or the other receivers.
//!
//! What it does not do: read the config file or the clock, or write anything. Secrets:
//! URLs are [`Secret`]s and logs show only [`redacted`] forms.
//!
//! # `recovered`
//!
//! A record is a recovery when it is `completed` and the server's last run that was
//! neither `skipped` nor `cancelled` failed. That streak is kept in memory, updated by
//! every record the daemon reports. It is seeded from the server's recorded runs, through
//! the backend's reader ([`Records`]: the history file with files, `run_history` with
//! PostgreSQL, so an instance that has just taken over counts the runs the old leader
//! recorded), lazily and once per server: when a `completed` or failed record arrives for
//! a server not seen yet, its records are read (by the dispatcher, never by the daemon)
//! up to that record. Lazily, because `config_applied` has no state directory and reading
//! 10 000 histories at start would delay nothing useful; from history rather than the
//! status board because the board holds only the newest records, and a streak may be
//! longer. Runs
//! of a manual `trigger` are seen only through that seeding: a `trigger` that succeeds
//! while the daemon runs does not end a streak the daemon knows about.
//!
//! # Pings
//!
//! `/start` when a run starts (the daemon's `run_started`: never for a skip decided before
//! the start), the bare URL on `completed`, `/fail` on every other outcome. A `skipped`
//! record gets `/fail` only when its run had sent `/start` (the plugin refused the export
//! after the start): the monitor would otherwise wait for the end of a started run and
//! alert anyway; a skip before the start (the previous run is still going) sends nothing,
//! since that run's own end will. `rid` is the run id as a UUID ([`message::ping_rid`]).

pub mod deliver;
pub mod message;

use crate::config::{Config, NotifyOn, NotifyTarget, ServerConfig};
use crate::daemon::DaemonObserver;
use crate::record::{Outcome, RunRecord};
use crate::records::Records;
use crate::secret::{Secret, redacted};
use deliver::{Backoff, Pushed, Queue};
use message::{Notice, PingKind, is_failure};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

pub use message::{ping_rid, ping_url};

/// Tuning that the config does not expose; tests shorten the waits.
#[derive(Clone, Debug)]
pub struct NotifyOptions {
    /// Entries a receiver's queue holds before the oldest is dropped.
    pub queue_capacity: usize,
    /// Events waiting for the dispatcher before new ones are dropped.
    pub event_capacity: usize,
    pub backoff: Backoff,
    /// One ping request's limit (Healthchecks answers in milliseconds).
    pub ping_timeout: Duration,
    /// Ping retries after the first attempt.
    pub ping_retries: u32,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            queue_capacity: 256,
            event_capacity: 4096,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            ping_timeout: Duration::from_secs(10),
            ping_retries: 3,
        }
    }
}

enum Event {
    Started {
        server: String,
        ping_url: Secret,
        run_id: String,
    },
    Recorded {
        ping_url: Option<Secret>,
        record: Box<RunRecord>,
    },
}

/// The observer the daemon calls; see the module doc.
pub struct NotifyObserver {
    events: mpsc::Sender<Event>,
    targets: watch::Sender<Arc<Vec<NotifyTarget>>>,
    dropped_events: AtomicU64,
    tasks: TaskTracker,
    /// Ends the dispatcher's intake: it then closes the queues, which drain and end.
    closing: CancellationToken,
    /// Ends every task at once, queued deliveries or not.
    abort: CancellationToken,
}

impl NotifyObserver {
    /// Start the dispatcher (needs a tokio runtime). `records` are the recorded runs that
    /// seed `recovered` (the daemon's backend's).
    pub fn start(records: Records) -> Arc<NotifyObserver> {
        NotifyObserver::start_with(records, NotifyOptions::default())
    }

    pub fn start_with(records: Records, options: NotifyOptions) -> Arc<NotifyObserver> {
        let (events, rx) = mpsc::channel(options.event_capacity.max(1));
        let (targets, targets_rx) = watch::channel(Arc::new(Vec::new()));
        let tasks = TaskTracker::new();
        let closing = CancellationToken::new();
        let abort = CancellationToken::new();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "jellyfin-export-scheduler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            // Building fails only when the TLS backend cannot start; the default client
            // has the same backend, and notifications must not stop the daemon.
            .unwrap_or_default();
        let dispatcher = Dispatcher {
            records,
            client,
            options,
            tasks: tasks.clone(),
            abort: abort.clone(),
            targets: Vec::new(),
            pings: HashMap::new(),
            streaks: HashMap::new(),
            started: HashSet::new(),
        };
        tasks.spawn(
            dispatcher
                .run(rx, targets_rx, closing.clone())
                .instrument(info_span!("notifications")),
        );
        Arc::new(NotifyObserver {
            events,
            targets,
            dropped_events: AtomicU64::new(0),
            tasks,
            closing,
            abort,
        })
    }

    fn enqueue(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            // Full (a burst far beyond any fleet's) or closed (shutting down).
            if self.dropped_events.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!(
                    "notification events are arriving faster than they are handled; some are dropped (logged once)"
                );
            }
        }
    }

    /// Events dropped because the dispatcher's channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// Stop taking events and give queued deliveries up to `grace` to go out (a dead
    /// receiver with retries could take minutes); then stop everything.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "notifications still queued at exit are dropped"
            );
            self.abort.cancel();
            self.tasks.wait().await;
        }
    }
}

impl DaemonObserver for NotifyObserver {
    fn config_applied(&self, config: &Config) {
        self.targets.send_replace(Arc::new(config.notify.clone()));
    }

    fn run_started(&self, server: &ServerConfig, run_id: &str) {
        if let Some(ping_url) = &server.ping_url {
            self.enqueue(Event::Started {
                server: server.name.clone(),
                ping_url: ping_url.clone(),
                run_id: run_id.to_owned(),
            });
        }
    }

    fn run_recorded(&self, server: &ServerConfig, record: &RunRecord) {
        self.enqueue(Event::Recorded {
            ping_url: server.ping_url.clone(),
            record: Box::new(record.clone()),
        });
    }
}

/// A webhook target's queue and its sending task.
struct TargetWorker {
    target: NotifyTarget,
    queue: Arc<Queue<Notice>>,
    stop: CancellationToken,
}

struct PingMsg {
    url: Secret,
    kind: PingKind,
    run_id: String,
}

struct Dispatcher {
    /// The recorded runs that seed the streaks.
    records: Records,
    client: reqwest::Client,
    options: NotifyOptions,
    tasks: TaskTracker,
    abort: CancellationToken,
    targets: Vec<TargetWorker>,
    /// Per server, created at its first ping.
    pings: HashMap<String, Arc<Queue<PingMsg>>>,
    /// Per server: failed runs since the last `completed` (absent: not known yet).
    streaks: HashMap<String, u32>,
    /// Runs that sent `/start` and have no record yet.
    started: HashSet<String>,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut targets: watch::Receiver<Arc<Vec<NotifyTarget>>>,
        closing: CancellationToken,
    ) {
        let initial = targets.borrow_and_update().clone();
        self.apply(&initial);
        loop {
            tokio::select! {
                // Targets first: records after a reload go to the new targets.
                biased;
                r = targets.changed() => {
                    if r.is_err() { break }
                    let t = targets.borrow_and_update().clone();
                    self.apply(&t);
                }
                e = events.recv() => match e {
                    Some(e) => self.handle(e).await,
                    None => break,
                },
                _ = closing.cancelled() => {
                    // What the daemon reported before the shutdown still goes out.
                    events.close();
                    while let Some(e) = events.recv().await {
                        self.handle(e).await;
                    }
                    break;
                }
            }
        }
        for w in &self.targets {
            w.queue.close();
        }
        for q in self.pings.values() {
            q.close();
        }
    }

    /// Keep the workers of targets that did not change; stop the others (their queued
    /// notifications are dropped: the user removed or changed that target); start new ones.
    fn apply(&mut self, wanted: &[NotifyTarget]) {
        let mut old: Vec<Option<TargetWorker>> = std::mem::take(&mut self.targets)
            .into_iter()
            .map(Some)
            .collect();
        for target in wanted {
            let reuse = old
                .iter_mut()
                .find(|w| w.as_ref().is_some_and(|w| &w.target == target))
                .and_then(Option::take);
            let worker = match reuse {
                Some(w) => w,
                None => self.spawn_target(target.clone()),
            };
            self.targets.push(worker);
        }
        for w in old.into_iter().flatten() {
            w.stop.cancel();
        }
        if !self.wants_recovered() {
            // Nobody asks for `recovered`: forget the streaks, so a target that asks
            // later starts from the history, not from a stale memory.
            self.streaks.clear();
        }
    }

    fn wants_recovered(&self) -> bool {
        self.targets
            .iter()
            .any(|w| w.target.on.contains(&NotifyOn::Recovered))
    }

    fn spawn_target(&self, target: NotifyTarget) -> TargetWorker {
        let queue = Arc::new(Queue::new(self.options.queue_capacity));
        let stop = self.abort.child_token();
        let worker = TargetWorker {
            target: target.clone(),
            queue: queue.clone(),
            stop: stop.clone(),
        };
        let client = self.client.clone();
        let backoff = self.options.backoff;
        self.tasks.spawn(async move {
            while let Some(notice) = queue.pop(&stop).await {
                let rendered = message::render(target.format, &notice);
                let req = deliver::Request {
                    method: reqwest::Method::POST,
                    url: &target.url,
                    shown: &target.shown,
                    content_type: Some(rendered.content_type),
                    headers: &rendered.headers,
                    body: rendered.body,
                    timeout: target.timeout,
                    retries: target.retries,
                };
                let record = &notice.record;
                match deliver::send(&client, &req, backoff, &stop).await {
                    Ok(attempts) => {
                        debug!(receiver = %target.shown, server = %record.server, run_id = %record.run_id, on = %notice.on, attempts, "notification sent");
                        deliver::report_drops_recovered(&queue, &target.shown);
                    }
                    Err(f) => warn!(
                        receiver = %target.shown, server = %record.server, run_id = %record.run_id,
                        on = %notice.on, attempts = f.attempts, error = %f.error,
                        "notification not delivered; dropped"
                    ),
                }
            }
        });
        worker
    }

    fn ping_queue(&mut self, server: &str) -> Arc<Queue<PingMsg>> {
        if let Some(q) = self.pings.get(server) {
            return q.clone();
        }
        let queue = Arc::new(Queue::<PingMsg>::new(self.options.queue_capacity));
        let stop = self.abort.child_token();
        let client = self.client.clone();
        let backoff = self.options.backoff;
        let (timeout, retries) = (self.options.ping_timeout, self.options.ping_retries);
        let q = queue.clone();
        let name = server.to_owned();
        self.tasks.spawn(async move {
            while let Some(ping) = q.pop(&stop).await {
                let Some(url) = message::ping_url(ping.url.expose(), ping.kind, &ping.run_id)
                else {
                    continue; // validated at load; a URL that cannot take a path is skipped
                };
                let shown = redacted(&url);
                let url = Secret::new(url.as_str());
                let req = deliver::Request {
                    method: reqwest::Method::GET,
                    url: &url,
                    shown: &shown,
                    content_type: None,
                    headers: &[],
                    body: Vec::new(),
                    timeout,
                    retries,
                };
                match deliver::send(&client, &req, backoff, &stop).await {
                    Ok(_) => {
                        debug!(server = %name, run_id = %ping.run_id, ping = ping.kind.as_str(), receiver = %shown, "ping sent");
                        deliver::report_drops_recovered(&q, &shown);
                    }
                    Err(f) => warn!(
                        server = %name, run_id = %ping.run_id, ping = ping.kind.as_str(),
                        receiver = %shown, attempts = f.attempts, error = %f.error,
                        "ping not delivered; dropped"
                    ),
                }
            }
        });
        self.pings.insert(server.to_owned(), queue.clone());
        queue
    }

    fn push_ping(&mut self, server: &str, url: Secret, kind: PingKind, run_id: &str) {
        let queue = self.ping_queue(server);
        let pushed = queue.push(PingMsg {
            url,
            kind,
            run_id: run_id.to_owned(),
        });
        if pushed == (Pushed::DroppedOldest { first: true }) {
            warn!(server = %server, "the ping receiver is not keeping up; its oldest queued pings are dropped (logged once until it recovers)");
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Started {
                server,
                ping_url,
                run_id,
            } => {
                self.started.insert(run_id.clone());
                self.push_ping(&server, ping_url, PingKind::Start, &run_id);
            }
            Event::Recorded { ping_url, record } => {
                let record = *record;
                let was_started = self.started.remove(&record.run_id);
                if let Some(url) = ping_url {
                    let kind = match record.outcome {
                        Outcome::Completed => Some(PingKind::Success),
                        Outcome::Skipped if !was_started => None,
                        _ => Some(PingKind::Fail),
                    };
                    if let Some(kind) = kind {
                        self.push_ping(&record.server, url, kind, &record.run_id);
                    }
                }
                let recovered_after = self.update_streak(&record).await;
                self.notify(record, recovered_after);
            }
        }
    }

    /// Update the server's streak with `record`; the failed runs it ends when it is a
    /// recovery.
    async fn update_streak(&mut self, record: &RunRecord) -> Option<u32> {
        let counts = is_failure(record.outcome) || record.outcome == Outcome::Completed;
        if !counts || !self.wants_recovered() {
            return None;
        }
        let before = match self.streaks.get(&record.server) {
            Some(n) => *n,
            None => self.seed(record).await,
        };
        if record.outcome == Outcome::Completed {
            self.streaks.insert(record.server.clone(), 0);
            (before > 0).then_some(before)
        } else {
            self.streaks
                .insert(record.server.clone(), before.saturating_add(1));
            None
        }
    }

    /// The failed runs at the end of the server's records before `record` (which the
    /// daemon may have written already, or not yet).
    async fn seed(&self, record: &RunRecord) -> u32 {
        let run_id = record.run_id.as_str();
        let records = match self.records.read(&record.server, None).await {
            Ok(r) => r.into_records(),
            Err(e) => {
                warn!(server = %record.server, error = %e, "history unreadable; `recovered` counts from now on");
                return 0;
            }
        };
        let end = records
            .iter()
            .position(|r| r.run_id == run_id)
            .unwrap_or(records.len());
        let mut failures = 0;
        for r in records[..end].iter().rev() {
            match r.outcome {
                Outcome::Completed => break,
                o if is_failure(o) => failures += 1,
                _ => {}
            }
        }
        failures
    }

    fn notify(&mut self, record: RunRecord, recovered_after: Option<u32>) {
        for w in &self.targets {
            if !w.target.covers(&record.server) {
                continue;
            }
            let on = if recovered_after.is_some() && w.target.on.contains(&NotifyOn::Recovered) {
                NotifyOn::Recovered
            } else if w.target.on.contains(&NotifyOn::Outcome(record.outcome)) {
                NotifyOn::Outcome(record.outcome)
            } else {
                continue;
            };
            let after = recovered_after.filter(|_| on == NotifyOn::Recovered);
            let notice = Notice::new(on, record.clone(), after);
            if w.queue.push(notice) == (Pushed::DroppedOldest { first: true }) {
                warn!(receiver = %w.target.shown, "the receiver is not keeping up; its oldest queued notifications are dropped (logged once until it recovers)");
            }
        }
    }
}
