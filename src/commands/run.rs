//! `run`: the daemon as a process: the instance lock, signals, reload from the file.

use super::exit;
use crate::config::Config;
use crate::daemon::{Daemon, DaemonOptions, heartbeat_limit};
use crate::endpoint;
use crate::history::History;
use crate::monitor::Monitor;
use crate::notifications::NotifyObserver;
use crate::notify::Notifier;
use crate::signals::{SignalEvent, SignalEvents};
use crate::state::{InstanceLock, StateDir};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// After the daemon stops, how long notifications still queued get to go out: enough for
/// the last runs' webhooks and pings, short next to a service manager's stop timeout.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);
use tracing::{error, info, warn};

/// Run until SIGTERM/SIGINT. Logging must already be set up.
pub async fn run(config_path: &Path, config: Config) -> u8 {
    info!(
        version = crate::record::SCHEDULER_VERSION,
        config = %config_path.display(),
        servers = config.servers.len(),
        enabled = config.servers.iter().filter(|s| s.enabled).count(),
        state_dir = %config.daemon.state_dir.display(),
        "starting"
    );
    for w in &config.warnings {
        warn!("{w}");
    }
    let state = match StateDir::open(&config.daemon.state_dir) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return exit::FAILED;
        }
    };
    let _instance = match InstanceLock::acquire(&state) {
        Ok(lock) => lock,
        Err(e) => {
            error!("{e}");
            return exit::FAILED;
        }
    };
    let listener = match config.daemon.listen {
        Some(addr) => match endpoint::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                error!("{e}");
                return exit::FAILED;
            }
        },
        None => None,
    };
    let mut signals = match SignalEvents::register() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return exit::FAILED;
        }
    };
    let notifier = Notifier::from_env();
    let monitor = Arc::new(Monitor::new(Some(&state)));
    let history = Arc::new(History::new(&state));
    // Webhooks and pings; it reads the histories (to seed `recovered`) of this state dir.
    let notifications = NotifyObserver::start(state.clone());
    let handle = Daemon::start_with(
        config,
        state,
        DaemonOptions {
            notifier: Some(notifier.clone()),
            observers: vec![
                monitor.clone(),
                notifications.clone() as Arc<dyn crate::daemon::DaemonObserver>,
            ],
        },
    )
    .await;
    let endpoint_stop = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = listener {
        tokio::spawn(endpoint::serve(
            listener,
            endpoint::Sources {
                status: handle.status.clone(),
                heartbeat_limit: heartbeat_limit(),
                monitor,
                history,
            },
            endpoint_stop.clone(),
        ));
    }
    let summary = handle.status.summary();
    info!(status = %summary, "schedules armed");
    notifier.ready();
    notifier.status(&summary);

    loop {
        let Some(event) = signals.next().await else {
            break;
        };
        match event {
            SignalEvent::Reload => {
                info!("SIGHUP: reloading {}", config_path.display());
                notifier.reloading();
                match Config::load(config_path) {
                    Ok(new) => {
                        for w in &new.warnings {
                            warn!("{w}");
                        }
                        if let Some(summary) = handle.reload(new).await {
                            info!(
                                added = summary.added,
                                removed = summary.removed,
                                changed = summary.changed,
                                "{summary}"
                            );
                        }
                    }
                    Err(e) => {
                        for line in e.lines() {
                            error!("{line}");
                        }
                        error!("reload failed; still running on the previous config");
                        handle.reload_failed();
                    }
                }
                notifier.ready();
                notifier.status(&handle.status.summary());
            }
            SignalEvent::Shutdown => {
                info!(
                    "shutting down: no new runs; waiting for runs in progress (a second signal exits at once)"
                );
                notifier.stopping();
                notifier.status("stopping: waiting for runs in progress");
                handle.shutdown();
                break;
            }
        }
    }
    // Drain, unless a second signal asks to leave now.
    let ctx = handle.ctx().clone();
    let mut wait = Box::pin(async {
        handle.wait().await;
        // The runs that ended during the drain are reported before the exit.
        notifications.shutdown(NOTIFY_GRACE).await;
    });
    tokio::select! {
        _ = &mut wait => {}
        _ = async {
            while let Some(e) = signals.next().await {
                if e == SignalEvent::Shutdown { break; }
            }
        } => {
            info!("second signal: exiting now; runs still going are resumed at the next start");
            ctx.abort_all();
            // The runs stop at their next await; don't let a stuck one hold the exit.
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }
    endpoint_stop.cancel();
    info!("stopped");
    exit::OK
}
