//! What the daemon knows about each server right now: next due instant, the run in
//! progress, the last record, and when its loop last woke.
//!
//! The scheduling loops and run tasks write it; overlap checks, health, readiness, the
//! systemd `STATUS=` line and the HTTP status API read it. A std `Mutex` is enough: every
//! access is a few field copies, never held across an await.

use crate::record::RunRecord;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// A run being tracked (or waiting for a slot).
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    pub run_id: String,
    pub since: DateTime<Utc>,
    /// The task's state as last seen (`waiting` before a slot was free).
    pub state: String,
    pub percent: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct ServerStatus {
    pub next_due: Option<DateTime<Utc>>,
    pub running: Option<Running>,
    pub last: Option<RunRecord>,
    /// When the server's scheduling loop last woke (monotonic).
    pub heartbeat: Instant,
}

/// Per-server status, by name.
#[derive(Debug, Default)]
pub struct StatusBoard {
    servers: Mutex<BTreeMap<String, ServerStatus>>,
    /// Set once the loops are armed (readiness).
    armed: std::sync::atomic::AtomicBool,
}

impl StatusBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ServerStatus>) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        let mut guard = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn add(&self, server: &str, last: Option<RunRecord>) {
        self.with(|m| {
            m.entry(server.to_owned()).or_insert(ServerStatus {
                next_due: None,
                running: None,
                last,
                heartbeat: Instant::now(),
            });
        });
    }

    pub fn remove(&self, server: &str) {
        self.with(|m| m.remove(server));
    }

    pub fn set_next_due(&self, server: &str, due: Option<DateTime<Utc>>) {
        self.with(|m| {
            if let Some(s) = m.get_mut(server) {
                s.next_due = due;
                s.heartbeat = Instant::now();
            }
        });
    }

    pub fn heartbeat(&self, server: &str) {
        self.with(|m| {
            if let Some(s) = m.get_mut(server) {
                s.heartbeat = Instant::now();
            }
        });
    }

    /// Claim the server for a run; `Err(run id)` of the run already in progress.
    pub fn begin_run(
        &self,
        server: &str,
        run_id: &str,
        since: DateTime<Utc>,
    ) -> Result<(), String> {
        self.with(|m| {
            let s = m.entry(server.to_owned()).or_insert(ServerStatus {
                next_due: None,
                running: None,
                last: None,
                heartbeat: Instant::now(),
            });
            if let Some(r) = &s.running {
                return Err(r.run_id.clone());
            }
            s.running = Some(Running {
                run_id: run_id.to_owned(),
                since,
                state: "waiting".into(),
                percent: None,
            });
            Ok(())
        })
    }

    pub fn progress(&self, server: &str, state: &str, percent: Option<f64>) {
        self.with(|m| {
            if let Some(Running {
                state: st,
                percent: pc,
                ..
            }) = m.get_mut(server).and_then(|s| s.running.as_mut())
            {
                *st = state.to_owned();
                *pc = percent;
            }
        });
    }

    /// The run ended; `record` is its record when one was made.
    pub fn end_run(&self, server: &str, record: Option<RunRecord>) {
        self.with(|m| {
            if let Some(s) = m.get_mut(server) {
                s.running = None;
                if record.is_some() {
                    s.last = record;
                }
            }
        });
    }

    /// A record made outside a run (a skip).
    pub fn recorded(&self, server: &str, record: RunRecord) {
        self.with(|m| {
            if let Some(s) = m.get_mut(server) {
                s.last = Some(record);
            }
        });
    }

    pub fn snapshot(&self) -> BTreeMap<String, ServerStatus> {
        self.with(|m| m.clone())
    }

    pub fn get(&self, server: &str) -> Option<ServerStatus> {
        self.with(|m| m.get(server).cloned())
    }

    pub fn set_armed(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn armed(&self) -> bool {
        self.armed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Servers whose loop has not woken for longer than `limit` (a stuck loop).
    pub fn stale_loops(&self, limit: std::time::Duration) -> Vec<String> {
        self.with(|m| {
            m.iter()
                .filter(|(_, s)| s.heartbeat.elapsed() > limit)
                .map(|(n, _)| n.clone())
                .collect()
        })
    }

    /// One line for systemd's `STATUS=`: "3 servers, 1 running, next export living-room at 03:30 UTC".
    pub fn summary(&self) -> String {
        self.with(|m| {
            let running = m.values().filter(|s| s.running.is_some()).count();
            let next = m
                .iter()
                .filter_map(|(n, s)| s.next_due.map(|d| (d, n)))
                .min();
            let mut line = format!("{} server{}", m.len(), if m.len() == 1 { "" } else { "s" });
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
        })
    }
}
