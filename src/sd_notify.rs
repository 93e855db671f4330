//! The service manager's notification protocol (`sd_notify(3)`): one datagram per message
//! to the unix socket named by `$NOTIFY_SOCKET`, a filesystem path or, when it starts with
//! `@`, an abstract socket.
//!
//! This module owns the wire format and the environment it reads (`NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`, `WATCHDOG_PID`); it does not decide when to send what (the daemon
//! does). Without `NOTIFY_SOCKET` every call is a no-op, so the daemon calls these
//! unconditionally. A message that cannot be sent is logged, never fatal: the service
//! manager would rather see a late daemon than a dead one.
//!
//! Written by hand rather than with the `sd-notify` crate: the protocol is a few lines on
//! top of `std::os::unix::net::UnixDatagram` (which handles abstract addresses itself), and
//! this way it logs instead of returning errors the daemon could only log. The one thing
//! std can't give safely, `CLOCK_MONOTONIC` as a number for `MONOTONIC_USEC=`, comes from
//! `rustix` (already in the dependency tree, and this crate forbids `unsafe`).

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sends notifications to the service manager, or nothing when there is none.
///
/// Cheap to clone; clones share the "already warned" flag so a broken socket is reported
/// once, not on every watchdog ping.
#[derive(Clone, Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
    warned: Arc<AtomicBool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// The name after the `@`, without the leading NUL the kernel sees.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From this process's environment: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`.
    /// A no-op notifier when `NOTIFY_SOCKET` is unset or empty.
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// From the given values of the three variables, as seen by the process `pid` (what
    /// [`from_env`](Self::from_env) passes; tests pass their own, since changing the
    /// environment of a running process is unsafe).
    pub fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        pid: u32,
    ) -> Notifier {
        let target = notify_socket.and_then(parse_target);
        // systemd sets WATCHDOG_PID to the main process; a child that inherited the
        // variables must not ping on its parent's behalf.
        let for_us = match watchdog_pid {
            None => true,
            Some(p) => p.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(pid),
        };
        let watchdog = watchdog_usec
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us && target.is_some())
            .map(Duration::from_micros);
        Notifier {
            target,
            watchdog,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Notifier {
        Notifier::from_vars(None, None, None, 0)
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` was usable).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Startup (or a reload) is complete: schedules are armed.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// [`ready`](Self::ready) and [`status`](Self::status) in one datagram, so that
    /// whoever sees the unit become ready (`systemctl start` returns) already sees its
    /// status line.
    pub fn ready_with_status(&self, status: &str) {
        self.send(&format!("READY=1\n{}", status_line(status)));
    }

    /// A reload begins. Carries `MONOTONIC_USEC=` so that systemd ≥ 253 with
    /// `Type=notify-reload` can tell this reload from an older one; older versions ignore it.
    /// Follow it with [`ready_with_status`](Self::ready_with_status) once the new
    /// configuration is in force.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// Shutdown begins.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// A one-line status shown by `systemctl status` (newlines become spaces).
    pub fn status(&self, status: &str) {
        self.send(&status_line(status));
    }

    /// Keep-alive for `WatchdogSec=`. Sent only when the watchdog is armed for this
    /// process, so calling it on a timer is always fine.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// How often to call [`watchdog`](Self::watchdog): half of `WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` advises. `None` when no watchdog is armed for this process
    /// (unset, zero, or `WATCHDOG_PID` names another process).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// Send a raw message (`KEY=value` lines). An error is returned, not logged; the named
    /// methods above log it instead.
    pub fn notify(&self, message: &str) -> std::io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        let sent = match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        if sent != message.len() {
            return Err(std::io::Error::other(format!(
                "sent {sent} of {} bytes",
                message.len()
            )));
        }
        Ok(())
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.notify(message) {
            let first = message.lines().next().unwrap_or_default();
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, message = first, "cannot notify the service manager");
            } else {
                tracing::warn!(
                    error = %e,
                    socket = %self.target_display(),
                    message = first,
                    "cannot notify the service manager (NOTIFY_SOCKET); further failures are logged at debug level"
                );
            }
        }
    }

    fn target_display(&self) -> String {
        match &self.target {
            None => String::new(),
            Some(Target::Path(p)) => p.display().to_string(),
            Some(Target::Abstract(name)) => format!("@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// `@name` → abstract socket, `/path` → path; anything else (empty, relative, `vsock:`)
/// is not a socket this client can reach, so notifications are off, with a warning.
fn parse_target(value: &OsStr) -> Option<Target> {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => None,
        Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
        Some(b'/') => Some(Target::Path(PathBuf::from(OsString::from(value)))),
        Some(_) => {
            tracing::warn!(
                value = %value.to_string_lossy(),
                "NOTIFY_SOCKET is neither an absolute path nor an abstract socket (@name); not notifying the service manager"
            );
            None
        }
    }
}

/// `STATUS=` and the status on one line (newlines become spaces).
fn status_line(status: &str) -> String {
    format!("STATUS={}", status.replace(['\n', '\r'], " "))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC=` with;
/// one clock for every process since boot, so the reload status can compare instants
/// taken by the daemon and by `reload`.
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket bound in a fresh temporary directory, and a notifier aimed at it.
    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::from_vars(Some(path.as_os_str()), None, None, 1);
        (dir, socket, notifier)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .expect("no notification arrived within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn without_notify_socket_everything_is_a_no_op() {
        let n = Notifier::from_vars(None, Some(OsStr::new("200000")), None, 1);
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.reloading();
        n.status("x");
        n.watchdog();
        n.stopping();
        assert!(n.notify("READY=1").is_ok());
        assert!(!Notifier::disabled().is_enabled());
        assert!(!Notifier::from_vars(Some(OsStr::new("")), None, None, 1).is_enabled());
    }

    #[test]
    fn sends_each_state_as_one_datagram() {
        let (_dir, socket, n) = listener();
        assert!(n.is_enabled());
        n.ready();
        assert_eq!(recv(&socket), "READY=1");
        n.status("3 servers, next export living-room at 03:30");
        assert_eq!(
            recv(&socket),
            "STATUS=3 servers, next export living-room at 03:30"
        );
        n.stopping();
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (_dir, socket, n) = listener();
        let before = monotonic_usec();
        n.reloading();
        let after = monotonic_usec();
        let msg = recv(&socket);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("a MONOTONIC_USEC= line")
            .parse()
            .unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn ready_and_its_status_line_arrive_together() {
        let (_dir, socket, n) = listener();
        n.ready_with_status("1 server,\nnext export living-room at 03:30");
        assert_eq!(
            recv(&socket),
            "READY=1\nSTATUS=1 server, next export living-room at 03:30"
        );
    }

    #[test]
    fn a_status_stays_on_one_line() {
        let (_dir, socket, n) = listener();
        n.status("one\ntwo\r\nthree");
        assert_eq!(recv(&socket), "STATUS=one two  three");
    }

    #[test]
    fn reaches_an_abstract_socket() {
        let name = format!(
            "jes-notify-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::from_vars(Some(OsStr::new(&format!("@{name}"))), None, None, 1);
        n.ready();
        assert_eq!(recv(&socket), "READY=1");
    }

    #[test]
    fn watchdog_pings_at_half_the_interval_for_the_named_process_only() {
        let (_dir, socket, n) = listener();
        assert_eq!(n.watchdog_interval(), None);
        n.watchdog(); // not armed: nothing sent
        n.ready();
        assert_eq!(recv(&socket), "READY=1");

        let path = socket.local_addr().unwrap();
        let path = path.as_pathname().unwrap().as_os_str();
        let usec = Some(OsStr::new("200000"));
        let armed = Notifier::from_vars(Some(path), usec, Some(OsStr::new("42")), 42);
        assert_eq!(armed.watchdog_interval(), Some(Duration::from_millis(100)));
        armed.watchdog();
        assert_eq!(recv(&socket), "WATCHDOG=1");

        let no_pid = Notifier::from_vars(Some(path), usec, None, 42);
        assert_eq!(no_pid.watchdog_interval(), Some(Duration::from_millis(100)));
        let other = Notifier::from_vars(Some(path), usec, Some(OsStr::new("41")), 42);
        assert_eq!(other.watchdog_interval(), None);
        for bad in ["0", "", "soon", "-5"] {
            let n = Notifier::from_vars(Some(path), Some(OsStr::new(bad)), None, 42);
            assert_eq!(n.watchdog_interval(), None, "WATCHDOG_USEC={bad:?}");
        }
    }

    #[test]
    fn a_missing_socket_is_an_error_for_notify_and_only_a_log_line_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody-listens.sock");
        let n = Notifier::from_vars(Some(path.as_os_str()), None, None, 1);
        assert!(n.notify("READY=1").is_err());
        n.ready();
        n.ready();
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn rejects_relative_and_unknown_socket_addresses() {
        for v in ["notify.sock", "vsock:2:1234"] {
            assert!(
                !Notifier::from_vars(Some(OsStr::new(v)), None, None, 1).is_enabled(),
                "{v}"
            );
        }
    }
}
