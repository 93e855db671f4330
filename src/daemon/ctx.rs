//! What the daemon's parts share ([`Ctx`]: the supervisor, the loops and the run tasks),
//! and the observers it tells what it does.

use super::status::StatusBoard;
use crate::config::{Config, ServerConfig};
use crate::record::RunRecord;
use crate::runner::Runner;
use crate::state::StateDir;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared by the supervisor, the loops and the run tasks.
pub(super) struct Ctx {
    pub(super) state: StateDir,
    pub(super) runner: Runner,
    pub(super) status: Arc<StatusBoard>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) max_concurrent_runs: usize,
    /// Run tasks (and skip writers), for the drain at shutdown.
    pub(super) runs: TaskTracker,
    /// Cancelled when the shutdown grace is over: runs still going stop being tracked
    /// (their markers stay).
    pub(super) abort_runs: CancellationToken,
    pub(super) observers: RwLock<Vec<Arc<dyn DaemonObserver>>>,
    /// One HTTP client per `request_timeout` in use (usually one for the whole fleet):
    /// a client per run would cost a connection pool and a TLS setup each (about 18 KiB;
    /// 18 MiB for 1000 runs at once).
    pub(super) http: Mutex<HashMap<Duration, reqwest::Client>>,
    /// The PostgreSQL backend, when `[daemon] backend = "postgres"`: runs are claimed in
    /// the database, by the leader only ([`super::pg_task`]).
    pub(super) pg: Option<super::pg_task::PgDaemon>,
}

/// Something that wants to hear what the daemon does (notifications; a test). Called from
/// the daemon's tasks, so implementations must be quick and never block (hand slow work,
/// like a webhook, to a task of their own).
pub trait DaemonObserver: Send + Sync {
    /// The config in force: at start and after every successful reload.
    fn config_applied(&self, _config: &Config) {}
    /// A run of `server` begins (slot and lock held, before the preflight).
    fn run_started(&self, _server: &ServerConfig, _run_id: &str) {}
    /// A run record was made (whatever the outcome, skips included).
    fn run_recorded(&self, _server: &ServerConfig, _record: &RunRecord) {}
}

impl Ctx {
    pub(super) fn observers(&self) -> Vec<Arc<dyn DaemonObserver>> {
        self.observers.read().map(|o| o.clone()).unwrap_or_default()
    }
}
