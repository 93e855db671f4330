//! The daemon in-process, on its config's state directory.

use jellyfin_export_scheduler::config::Config;
use jellyfin_export_scheduler::daemon::{self, DaemonHandle, DaemonObserver, DaemonOptions};
use jellyfin_export_scheduler::state::StateDir;
use std::sync::Arc;
use std::time::Duration;

/// Starts it and returns once its schedules are armed.
pub async fn start(config: Config) -> DaemonHandle {
    start_observed(config, Vec::new()).await
}

/// [`start`], with `observers` hearing what it does.
pub async fn start_observed(
    config: Config,
    observers: Vec<Arc<dyn DaemonObserver>>,
) -> DaemonHandle {
    let state = StateDir::open(&config.daemon.state_dir).unwrap();
    let options = DaemonOptions {
        notifier: None,
        observers,
    };
    daemon::start_with(config, state, options).await
}

/// Shuts it down and waits (at most 10 s) until it has stopped.
pub async fn stop(handle: DaemonHandle) {
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the daemon stopped within 10 s");
}
