//! What the daemon knows and shows about each server, in one place ([`ServerView`]): its
//! settings, its scheduling loop (next due instant, last wake), the run in progress, its
//! recent records and the counters of `/metrics`; and how the last reload went.
//!
//! The daemon writes it: the supervisor at start and at every reload (settings, and the
//! newest records of each history, read once from its tail), the loops and the run tasks
//! as they go. Overlap checks, health, readiness, the systemd `STATUS=` line, metrics, the
//! status API and page read it. "Last success" and the outcome strip thus survive a
//! restart; counters (`runs_total`, the duration histogram) count from process start, as
//! Prometheus expects. It holds no API key: only names, URLs (which the config refuses to
//! carry credentials in), schedules and records.
//!
//! A std `Mutex` is enough: every access is a few field copies, never held across an
//! await.

use crate::archive::FolderStats;
use crate::config::{Config, ServerConfig};
use crate::postgres::leadership::{Leadership, Role};
use crate::record::{Outcome, RunRecord};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Outcomes kept per server for the status page's strip.
pub const RECENT: usize = 20;
/// Upper bounds (seconds) of the run duration histogram: exports take seconds to hours.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// A run being tracked (or waiting for a slot).
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    pub run_id: String,
    pub since: DateTime<Utc>,
    /// The task's state as last seen (`waiting` before a slot was free).
    pub state: String,
    pub percent: Option<f64>,
}

/// One server as the daemon knows it.
#[derive(Clone, Debug)]
pub struct ServerView {
    pub name: String,
    pub url: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    /// In the config now (a removed server keeps its counters until restart).
    pub configured: bool,
    /// When its scheduling loop last woke (monotonic); `None` while it has no loop
    /// (disabled, removed, or not armed yet).
    pub heartbeat: Option<Instant>,
    /// The next due instant, jitter included.
    pub next_due: Option<DateTime<Utc>>,
    pub running: Option<Running>,
    pub runs_total: BTreeMap<Outcome, u64>,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then +Inf.
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_seconds: f64,
    pub duration_count: u64,
    pub last_by_outcome: BTreeMap<Outcome, DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The newest records, newest last. Boxed: a deque's first push makes room for four,
    /// and four whole records per server were 13 of the 10 000-server fleet's peak MiB.
    pub recent: VecDeque<Box<RunRecord>>,
    /// The last contact with the server worked; `None` before any contact.
    pub up: Option<bool>,
    /// What its archive folder holds; `None` when the server does not archive.
    pub archive: Option<FolderStats>,
}

impl ServerView {
    fn new(server: &ServerConfig) -> Self {
        ServerView {
            name: server.name.clone(),
            url: server.url.to_string(),
            schedule: server.schedule.expr().to_owned(),
            timezone: server.timezone.name().to_owned(),
            enabled: server.enabled,
            configured: true,
            heartbeat: None,
            next_due: None,
            running: None,
            runs_total: BTreeMap::new(),
            duration_buckets: [0; DURATION_BUCKETS.len() + 1],
            duration_sum_seconds: 0.0,
            duration_count: 0,
            last_by_outcome: BTreeMap::new(),
            last_success: None,
            recent: VecDeque::new(),
            up: None,
            archive: None,
        }
    }

    /// Take the settings shown from `server`.
    fn configure(&mut self, server: &ServerConfig) {
        self.url = server.url.to_string();
        self.schedule = server.schedule.expr().to_owned();
        self.timezone = server.timezone.name().to_owned();
        self.enabled = server.enabled;
        self.configured = true;
    }

    /// Remember a record for timestamps and the strip (history at start and new runs).
    fn remember(&mut self, r: &RunRecord) {
        let when = r.finished_at.unwrap_or(r.triggered_at);
        self.last_by_outcome.insert(r.outcome, when);
        if r.outcome == Outcome::Completed {
            self.last_success = Some(self.last_success.map_or(when, |t| t.max(when)));
        }
        self.recent.push_back(Box::new(r.clone()));
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// Count a record made by this process.
    fn count(&mut self, r: &RunRecord) {
        *self.runs_total.entry(r.outcome).or_default() += 1;
        if r.outcome != Outcome::Skipped
            && let Some(ms) = r.duration_ms
        {
            let secs = ms as f64 / 1000.0;
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    self.duration_buckets[i] += 1;
                }
            }
            self.duration_buckets[DURATION_BUCKETS.len()] += 1;
            self.duration_sum_seconds += secs;
            self.duration_count += 1;
        }
    }

    /// Worth keeping: in the config, scheduled or running, or with counters (Prometheus
    /// counters must not vanish).
    fn kept(&self) -> bool {
        self.configured
            || self.heartbeat.is_some()
            || self.running.is_some()
            || !self.runs_total.is_empty()
    }
}

#[derive(Default)]
struct Inner {
    servers: BTreeMap<String, ServerView>,
    reload_ok: bool,
    reload_success_at: Option<DateTime<Utc>>,
    /// PostgreSQL: this instance's leadership, read when asked.
    leadership: Option<Leadership>,
}

/// Where this instance stands among several (PostgreSQL backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// This instance leads under `epoch`, its lease trusted now.
    Leading { epoch: i64 },
    /// Another instance leads (`holder`, `epoch`), or none is known (`None`).
    Following { leader: Option<(String, i64)> },
}

impl std::fmt::Display for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leader::Leading { epoch } => write!(f, "leading (lease epoch {epoch})"),
            Leader::Following {
                leader: Some((holder, epoch)),
            } => write!(f, "following {holder} (lease epoch {epoch})"),
            Leader::Following { leader: None } => write!(f, "following (no instance leads now)"),
        }
    }
}

/// Every server the daemon knows, by name. Share it as `Arc<StatusBoard>`.
#[derive(Default)]
pub struct StatusBoard {
    inner: Mutex<Inner>,
    /// Set once the loops are armed (readiness).
    armed: AtomicBool,
}

impl StatusBoard {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// `server`'s view, made if need be.
    fn view<'a>(i: &'a mut Inner, server: &ServerConfig) -> &'a mut ServerView {
        i.servers
            .entry(server.name.clone())
            .or_insert_with(|| ServerView::new(server))
    }

    /// On the scheduling loop of `name`, if it has one.
    fn with_loop(&self, name: &str, f: impl FnOnce(&mut ServerView)) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(name).filter(|v| v.heartbeat.is_some()) {
                f(v);
            }
        });
    }

    /// The config in force (at start and after every successful reload): settings shown,
    /// servers no longer configured marked so. Returns the servers new to the board, whose
    /// history the caller reads (once) and hands to [`remember`](Self::remember).
    pub fn apply_config(&self, config: &Config) -> Vec<String> {
        self.with(|i| {
            for v in i.servers.values_mut() {
                v.configured = false;
            }
            let mut new = Vec::new();
            for s in &config.servers {
                match i.servers.get_mut(&s.name) {
                    Some(v) => v.configure(s),
                    None => {
                        i.servers.insert(s.name.clone(), ServerView::new(s));
                        new.push(s.name.clone());
                    }
                }
            }
            i.servers.retain(|_, v| v.kept());
            i.reload_ok = true;
            i.reload_success_at = Some(Utc::now());
            new
        })
    }

    /// A reload was refused (the file was invalid); the daemon runs on the old config.
    pub fn reload_failed(&self) {
        self.with(|i| i.reload_ok = false);
    }

    /// Records of `name` made before this process (oldest first): shown, not counted.
    pub fn remember(&self, name: &str, records: &[RunRecord]) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(name) {
                for r in records {
                    v.remember(r);
                }
            }
        });
    }

    /// A record was made (whatever the outcome, skips included): counted and shown.
    pub fn record(&self, server: &ServerConfig, record: &RunRecord) {
        self.with(|i| {
            let v = StatusBoard::view(i, server);
            v.count(record);
            v.remember(record);
        });
    }

    /// What the server's archive folder holds (after a scan, or after an archive and its
    /// pruning); `None` when the server does not archive.
    pub fn set_archive(&self, server: &str, folder: Option<FolderStats>) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(server) {
                v.archive = folder;
            }
        });
    }

    /// Jellyfin answered (or did not) during a run: the server is up or not.
    pub fn contact(&self, server: &str, ok: bool) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(server) {
                v.up = Some(ok);
            }
        });
    }

    /// The server's scheduling loop starts (its heartbeat counts from now).
    pub fn loop_started(&self, server: &ServerConfig) {
        self.with(|i| {
            let v = StatusBoard::view(i, server);
            v.heartbeat.get_or_insert_with(Instant::now);
        });
    }

    /// The server's loop stopped (removed or disabled by a reload): nothing wakes it any
    /// more, so it stops counting for health at once. A run in progress stays on the board
    /// until it ends.
    pub fn loop_stopped(&self, server: &str) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(server) {
                v.heartbeat = None;
                v.next_due = None;
            }
        });
    }

    pub fn set_next_due(&self, server: &str, due: Option<DateTime<Utc>>) {
        self.with_loop(server, |v| {
            v.next_due = due;
            v.heartbeat = Some(Instant::now());
        });
    }

    pub fn heartbeat(&self, server: &str) {
        self.with_loop(server, |v| v.heartbeat = Some(Instant::now()));
    }

    /// Claim the server for a run; `Err(run id)` of the run already in progress.
    pub fn begin_run(
        &self,
        server: &ServerConfig,
        run_id: &str,
        since: DateTime<Utc>,
    ) -> Result<(), String> {
        self.with(|i| {
            let v = StatusBoard::view(i, server);
            if let Some(r) = &v.running {
                return Err(r.run_id.clone());
            }
            v.running = Some(Running {
                run_id: run_id.to_owned(),
                since,
                state: "waiting".into(),
                percent: None,
            });
            Ok(())
        })
    }

    pub fn progress(&self, server: &str, state: &str, percent: Option<f64>) {
        self.with(|i| {
            if let Some(r) = i.servers.get_mut(server).and_then(|v| v.running.as_mut()) {
                r.state = state.to_owned();
                r.percent = percent;
            }
        });
    }

    /// The run ended.
    pub fn end_run(&self, server: &str) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(server) {
                v.running = None;
            }
        });
    }

    /// Every server known, by name.
    pub fn servers(&self) -> Vec<ServerView> {
        self.with(|i| i.servers.values().cloned().collect())
    }

    /// Every server known, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ServerView> {
        self.with(|i| i.servers.clone())
    }

    pub fn get(&self, server: &str) -> Option<ServerView> {
        self.with(|i| i.servers.get(server).cloned())
    }

    /// (last reload ok, when the config in force was applied).
    /// PostgreSQL: the leadership whose role the board shows.
    pub fn set_leadership(&self, leadership: Leadership) {
        self.with(|i| i.leadership = Some(leadership));
    }

    /// Where this instance stands, with the PostgreSQL backend (`None` with files).
    pub fn leader(&self) -> Option<Leader> {
        let leadership = self.with(|i| i.leadership.clone())?;
        Some(match (leadership.trusted_epoch(), leadership.role()) {
            (Some(epoch), _) => Leader::Leading { epoch },
            (None, Role::Following { leader: Some(h) }) if h.live => Leader::Following {
                leader: Some((h.holder, h.epoch)),
            },
            (None, _) => Leader::Following { leader: None },
        })
    }

    pub fn reload(&self) -> (bool, Option<DateTime<Utc>>) {
        self.with(|i| (i.reload_ok, i.reload_success_at))
    }

    pub fn set_armed(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// Servers whose loop has not woken for longer than `limit` (a stuck loop).
    pub fn stale_loops(&self, limit: std::time::Duration) -> Vec<String> {
        self.with(|i| {
            i.servers
                .iter()
                .filter(|(_, v)| v.heartbeat.is_some_and(|h| h.elapsed() > limit))
                .map(|(n, _)| n.clone())
                .collect()
        })
    }

    /// One line for systemd's `STATUS=`: "3 servers, 1 running, next export living-room at 03:30 UTC".
    pub fn summary(&self) -> String {
        let line = self.with(|i| {
            // A server whose loop stopped still counts while its last run goes on.
            let scheduled: Vec<(&String, &ServerView)> = i
                .servers
                .iter()
                .filter(|(_, v)| v.heartbeat.is_some() || v.running.is_some())
                .collect();
            let n = scheduled.len();
            let running = scheduled
                .iter()
                .filter(|(_, v)| v.running.is_some())
                .count();
            let next = scheduled
                .iter()
                .filter_map(|(n, v)| v.next_due.map(|d| (d, *n)))
                .min();
            let mut line = format!("{n} server{}", if n == 1 { "" } else { "s" });
            if running > 0 {
                line.push_str(&format!(", {running} running"));
            }
            if let Some((due, name)) = next {
                line.push_str(&format!(
                    ", next export {name} at {}",
                    due.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            line
        });
        match self.leader() {
            Some(leader) => format!("{line}; {leader}"),
            None => line,
        }
    }
}
