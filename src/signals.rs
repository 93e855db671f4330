//! Signals as events: SIGHUP asks for a reload, SIGTERM and SIGINT for a shutdown.
//!
//! signal-hook installs the handlers (async-signal-safe: they only write to a pipe) and
//! signal-hook-tokio turns them into a stream the `run` command awaits next to the daemon.
//! Registering replaces the default action, so the process never dies of these signals
//! mid-write; what each means is decided by the caller (a second shutdown signal exits at
//! once).

use futures_util::stream::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    Reload,
    Shutdown,
}

/// The process's SIGHUP/SIGTERM/SIGINT, from now on.
pub struct SignalEvents {
    signals: Signals,
}

impl SignalEvents {
    pub fn register() -> std::io::Result<SignalEvents> {
        Ok(SignalEvents {
            signals: Signals::new([SIGHUP, SIGTERM, SIGINT])?,
        })
    }

    /// The next signal; `None` only if the stream was closed.
    pub async fn next(&mut self) -> Option<SignalEvent> {
        loop {
            match self.signals.next().await? {
                SIGHUP => return Some(SignalEvent::Reload),
                SIGTERM | SIGINT => return Some(SignalEvent::Shutdown),
                _ => continue,
            }
        }
    }
}
