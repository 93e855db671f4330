//! What people and scrapers are shown about each server: counters and timestamps for
//! `/metrics`, the configured schedule for `/api/v1/servers`, and the recent outcomes for
//! the status page.
//!
//! A [`DaemonObserver`]: the daemon tells it about configs, runs and records; the HTTP
//! endpoint reads it. At start (and for servers a reload adds) it reads the server's history
//! once, so "last success" and the outcome strip survive a restart; counters
//! (`runs_total`, the duration histogram) count from process start, as Prometheus expects.
//! It holds no API key: only names, URLs (which the config refuses to carry credentials
//! in), schedules and records.

use crate::config::{Config, ServerConfig};
use crate::daemon::DaemonObserver;
use crate::history::History;
use crate::record::{Outcome, RunRecord};
use crate::state::StateDir;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Outcomes kept per server for the status page's strip.
pub const RECENT: usize = 20;
/// Upper bounds (seconds) of the run duration histogram: exports take seconds to hours.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// One server as shown.
#[derive(Clone, Debug)]
pub struct ServerView {
    pub name: String,
    pub url: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    /// In the config now (a removed server keeps its counters until restart).
    pub configured: bool,
    pub runs_total: BTreeMap<Outcome, u64>,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then +Inf.
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_seconds: f64,
    pub duration_count: u64,
    pub last_by_outcome: BTreeMap<Outcome, DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Newest last.
    pub recent: VecDeque<RunRecord>,
    /// The last contact with the server worked; `None` before any contact.
    pub up: Option<bool>,
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
            runs_total: BTreeMap::new(),
            duration_buckets: [0; DURATION_BUCKETS.len() + 1],
            duration_sum_seconds: 0.0,
            duration_count: 0,
            last_by_outcome: BTreeMap::new(),
            last_success: None,
            recent: VecDeque::new(),
            up: None,
        }
    }

    /// Remember a record for timestamps and the strip (history seeding and new runs).
    fn remember(&mut self, r: &RunRecord) {
        let when = r.finished_at.unwrap_or(r.triggered_at);
        self.last_by_outcome.insert(r.outcome, when);
        if r.outcome == Outcome::Completed {
            self.last_success = Some(self.last_success.map_or(when, |t| t.max(when)));
        }
        self.recent.push_back(r.clone());
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
}

#[derive(Default)]
struct Inner {
    servers: BTreeMap<String, ServerView>,
    reload_ok: bool,
    reload_success_at: Option<DateTime<Utc>>,
}

/// The observer; share it as `Arc<Monitor>` between the daemon and the endpoint.
pub struct Monitor {
    history: Option<History>,
    inner: Mutex<Inner>,
}

impl Monitor {
    /// `state`: where to read each server's history once (None: start empty).
    pub fn new(state: Option<&StateDir>) -> Monitor {
        Monitor {
            history: state.map(History::new),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Every server known, by name.
    pub fn servers(&self) -> Vec<ServerView> {
        self.with(|i| i.servers.values().cloned().collect())
    }

    pub fn server(&self, name: &str) -> Option<ServerView> {
        self.with(|i| i.servers.get(name).cloned())
    }

    /// (last reload ok, when the config in force was applied).
    pub fn reload(&self) -> (bool, Option<DateTime<Utc>>) {
        self.with(|i| (i.reload_ok, i.reload_success_at))
    }

    fn seed(&self, name: &str) -> Vec<RunRecord> {
        let Some(history) = &self.history else {
            return Vec::new();
        };
        history
            .read(name)
            .map(|r| r.into_records())
            .unwrap_or_default()
    }
}

impl DaemonObserver for Monitor {
    fn config_applied(&self, config: &Config) {
        let known: std::collections::HashSet<String> =
            self.with(|i| i.servers.keys().cloned().collect());
        // History is read outside the lock: a large fleet's files take a moment.
        let mut seeded: HashMap<String, Vec<RunRecord>> = HashMap::new();
        for s in &config.servers {
            if !known.contains(&s.name) {
                seeded.insert(s.name.clone(), self.seed(&s.name));
            }
        }
        self.with(|i| {
            for v in i.servers.values_mut() {
                v.configured = false;
            }
            for s in &config.servers {
                let view = i
                    .servers
                    .entry(s.name.clone())
                    .or_insert_with(|| ServerView::new(s));
                view.url = s.url.to_string();
                view.schedule = s.schedule.expr().to_owned();
                view.timezone = s.timezone.name().to_owned();
                view.enabled = s.enabled;
                view.configured = true;
                for r in seeded.remove(&s.name).unwrap_or_default() {
                    view.remember(&r);
                }
            }
            // A removed server that has nothing to show goes; one with counters stays
            // (Prometheus counters must not vanish) but is marked as not configured.
            i.servers
                .retain(|_, v| v.configured || !v.runs_total.is_empty());
            i.reload_ok = true;
            i.reload_success_at = Some(Utc::now());
        });
    }

    fn reload_attempted(&self, ok: bool) {
        if !ok {
            self.with(|i| i.reload_ok = false);
        }
    }

    fn run_recorded(&self, server: &ServerConfig, record: &RunRecord) {
        self.with(|i| {
            let v = i
                .servers
                .entry(server.name.clone())
                .or_insert_with(|| ServerView::new(server));
            v.count(record);
            v.remember(record);
        });
    }

    fn contact(&self, server: &str, ok: bool) {
        self.with(|i| {
            if let Some(v) = i.servers.get_mut(server) {
                v.up = Some(ok);
            }
        });
    }
}
