//! `run`: the daemon as a process: the instance lock, signals, reload from the file (see
//! [`crate::reload`]).

use super::exit;
use crate::config::{Config, LogFormat};
use crate::daemon::{self, DaemonOptions, heartbeat_limit};
use crate::endpoint;
use crate::history::History;
use crate::notifications::NotifyObserver;
use crate::notify::Notifier;
use crate::reload::Reloader;
use crate::signals::{SignalEvent, SignalEvents};
use crate::state::{InstanceLock, StateDir};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// After the daemon stops, how long notifications still queued get to go out: enough for
/// the last runs' webhooks and pings, short next to a service manager's stop timeout.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);
use tracing::{error, info, warn};

/// What the daemon holds before it starts: the state directory and its instance lock, the
/// endpoint's socket and the signal handlers.
struct Prepared {
    state: StateDir,
    _instance: InstanceLock,
    listener: Option<tokio::net::TcpListener>,
    signals: SignalEvents,
}

/// Take the state directory, the lock, the listener and the signals, or say why not.
async fn prepare(config: &Config) -> Option<Prepared> {
    let state = StateDir::open(&config.daemon.state_dir)
        .map_err(|e| error!("{e}"))
        .ok()?;
    let instance = InstanceLock::acquire(&state)
        .map_err(|e| error!("{e}"))
        .ok()?;
    let listener = match config.daemon.listen {
        Some(addr) => Some(endpoint::bind(addr).await.map_err(|e| error!("{e}")).ok()?),
        None => None,
    };
    let signals = SignalEvents::register()
        .map_err(|e| error!("cannot install signal handlers: {e}"))
        .ok()?;
    Some(Prepared {
        state,
        _instance: instance,
        listener,
        signals,
    })
}

/// Run until SIGTERM/SIGINT. Logging must already be set up, in `log_format`.
pub async fn run(config_path: &Path, config: Config, log_format: LogFormat) -> u8 {
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
    let Some(Prepared {
        state,
        _instance,
        listener,
        mut signals,
    }) = prepare(&config).await
    else {
        return exit::FAILED;
    };
    let notifier = Notifier::from_env();
    let history = Arc::new(History::new(&state));
    // Webhooks and pings; it reads the histories (to seed `recovered`) of this state dir.
    let notifications = NotifyObserver::start(state.clone());
    let mut reloader = Reloader::start(
        config_path,
        state.clone(),
        &config,
        log_format,
        notifier.clone(),
    );
    let handle = daemon::start_with(
        config,
        state,
        DaemonOptions {
            notifier: Some(notifier.clone()),
            observers: vec![notifications.clone() as Arc<dyn crate::daemon::DaemonObserver>],
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
                history,
            },
            endpoint_stop.clone(),
        ));
    }
    let summary = handle.status.summary();
    info!(status = %summary, "schedules armed");
    notifier.ready();
    notifier.status(&summary);

    while let Some(event) = signals.next().await {
        match event {
            SignalEvent::Reload => reloader.reload(&handle, "SIGHUP").await,
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
    drain(handle, notifications, &mut signals).await;
    endpoint_stop.cancel();
    info!("stopped");
    exit::OK
}

/// Wait for the daemon's drain and the last notifications, unless a second signal asks to
/// leave now.
async fn drain(
    handle: crate::daemon::DaemonHandle,
    notifications: Arc<NotifyObserver>,
    signals: &mut SignalEvents,
) {
    let abort_runs = handle.abort_runs();
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
            abort_runs.cancel();
            // The runs stop at their next await; don't let a stuck one hold the exit.
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }
}
