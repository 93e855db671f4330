//! `run`: the daemon as a process: the instance lock, signals, reload from the file (see
//! [`crate::reload`]).

use super::{CommandError, Verdict};
use crate::config::{Config, LogFormat, WatchMode};
use crate::daemon::{self, DaemonOptions, heartbeat_limit};
use crate::endpoint;
use crate::notifications::NotifyObserver;
use crate::records::Records;
use crate::reload::watch::{self, ConfigWatcher};
use crate::reload::{ReloadCause, Reloader};
use crate::sd_notify::Notifier;
use crate::signals::{SignalEvent, SignalEvents};
use crate::state::{InstanceLock, LockError, StateDir, StateError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The target of this command's log lines, `jellyfin_export_scheduler::commands::run`.
pub const LOG_TARGET: &str = module_path!();

/// After the daemon stops, how long notifications still queued get to go out: enough for
/// the last runs' webhooks and pings, short next to a service manager's stop timeout.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon could not start. `main` logs it (the log is set up by then) under
/// [`LOG_TARGET`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateError),
    /// Another daemon runs on the same state directory.
    #[error(transparent)]
    Instance(#[from] LockError),
    #[error(transparent)]
    Listen(#[from] endpoint::BindError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// `backend = "postgres"`: the database could not be reached or its schema applied.
    #[error("cannot prepare the PostgreSQL database: {0}")]
    Database(#[from] crate::postgres::PgError),
}

/// What the daemon holds before it starts: the state directory and its instance lock, the
/// endpoint's socket and the signal handlers.
struct Prepared {
    state: StateDir,
    _instance: InstanceLock,
    listener: Option<tokio::net::TcpListener>,
    signals: SignalEvents,
}

/// Take the state directory, the lock, the listener and the signals.
async fn prepare(config: &Config) -> Result<Prepared, StartError> {
    let state = StateDir::open(&config.daemon.state_dir)?;
    let instance = InstanceLock::acquire(&state)?;
    if let crate::config::Backend::Postgres(pg) = &config.daemon.backend {
        prepare_database(&pg.url).await?;
    }
    // With or without the endpoint: a fleet due at once holds a lock file and a
    // connection per run, past the common soft limit of 1024 at a few hundred servers.
    raise_open_file_limit();
    let listener = match config.daemon.listen {
        Some(addr) => Some(endpoint::bind(addr).await?),
        None => None,
    };
    let signals = SignalEvents::register().map_err(StartError::Signals)?;
    Ok(Prepared {
        state,
        _instance: instance,
        listener,
        signals,
    })
}

/// The schema brought up to this version's (under an advisory lock: instances starting
/// together apply it once), before anything is claimed.
async fn prepare_database(url: &crate::secret::Secret) -> Result<(), StartError> {
    use crate::postgres::{connect, migrate};
    let mut client = connect(url, std::time::Duration::from_secs(30)).await?;
    let before = migrate::migrate(&mut client).await?;
    if before < migrate::SCHEMA_VERSION {
        info!(
            from = before,
            to = migrate::SCHEMA_VERSION,
            "database schema applied"
        );
    } else {
        info!(version = before, "database schema up to date");
    }
    Ok(())
}

/// The soft open-file limit up to the hard one, for the runs' lock files and connections
/// and the endpoint's connection cap (see [`endpoint::Limits`]); where that is not
/// allowed, the cap follows the soft limit.
fn raise_open_file_limit() {
    let shown = |n: Option<u64>| n.map_or("unlimited".to_owned(), |n| n.to_string());
    match endpoint::raise_nofile_limit() {
        Ok(endpoint::NofileRaise::Raised { from, to }) => info!(
            from = %shown(from),
            to = %shown(to),
            "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
        ),
        Ok(endpoint::NofileRaise::AlreadyAtHard(_)) => {}
        Err(e) => warn!(
            error = %e,
            limit = %shown(endpoint::nofile_limit()),
            "cannot raise the open-file limit (RLIMIT_NOFILE); runs due at once and the HTTP endpoint's connections must fit in the current one (raise it with LimitNOFILE= or ulimit -n)"
        ),
    }
}

/// Run until SIGTERM/SIGINT. Logging must already be set up, in `log_format`.
pub async fn run(
    config_path: &Path,
    config: Config,
    log_format: LogFormat,
) -> Result<Verdict, CommandError> {
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
    let Prepared {
        state,
        _instance,
        listener,
        mut signals,
    } = prepare(&config).await?;
    let notifier = Notifier::from_env();
    let history = Records::for_config(&config, &state);
    // The endpoint keeps the token's digest only; a new token takes a restart.
    let api_token = config.daemon.api_token.clone();
    // Webhooks and pings; it reads the recorded runs (to seed `recovered`) from the backend.
    let notifications = NotifyObserver::start(history.clone());
    let mut reloader = Reloader::start(
        config_path,
        state.clone(),
        &config,
        log_format,
        notifier.clone(),
    );
    let watch_settings = config.daemon.watch;
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
            endpoint::Policy::for_process(api_token.as_ref()),
            endpoint_stop.clone(),
        ));
    }
    let summary = handle.status.summary();
    info!(status = %summary, "schedules armed");
    notifier.ready_with_status(&summary);

    let watcher = ConfigWatcher::start(config_path, watch_settings);
    until_shutdown(&handle, &mut reloader, &mut signals, watcher).await;
    notifier.stopping();
    notifier.status("stopping: waiting for runs in progress");
    handle.shutdown();
    drain(handle, notifications, &mut signals).await;
    endpoint_stop.cancel();
    info!("stopped");
    Ok(Verdict::Fine)
}

/// Reload on SIGHUP and when the watcher saw the config change, until SIGTERM/SIGINT.
async fn until_shutdown(
    handle: &crate::daemon::DaemonHandle,
    reloader: &mut Reloader,
    signals: &mut SignalEvents,
    mut watcher: Option<ConfigWatcher>,
) {
    let path = reloader.path().to_owned();
    loop {
        let applied = tokio::select! {
            event = signals.next() => match event {
                Some(SignalEvent::Reload) => reloader.reload(handle, ReloadCause::Signal).await,
                Some(SignalEvent::Shutdown) | None => break,
            },
            () = watch::changed(&mut watcher) => {
                reloader.reload_if_changed(handle, ReloadCause::Watch).await
            }
        };
        // A reload that changed the watch settings takes effect now (a new watcher first
        // looks by itself, so an edit made meanwhile is not lost).
        if let Some(settings) = applied
            && watcher.as_ref().map(ConfigWatcher::settings) != Some(settings)
            && !(watcher.is_none() && settings.mode == WatchMode::Off)
        {
            watcher = ConfigWatcher::start(&path, settings);
        }
    }
    info!(
        "shutting down: no new runs; waiting for runs in progress (a second signal exits at once)"
    );
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
