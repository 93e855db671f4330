//! The real binary under a pretend service manager: `run` is given a `NOTIFY_SOCKET` that
//! this test listens on (and `WATCHDOG_USEC`), and must say READY=1 once armed, a STATUS=
//! line, RELOADING=1 (with MONOTONIC_USEC=) then READY=1 around a SIGHUP (sent by hand and
//! by the `reload` command) and around the config watcher's reload of a saved edit,
//! WATCHDOG=1 again
//! and again, and STOPPING=1 after SIGTERM, then exit 0. The simulated Jellyfin runs in
//! the test process.

use jellyfin_export_scheduler::sim::SimServerConfig;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

mod common;

use common::KEY;
use common::bin::{Daemon, command, run_async};
use common::config::ConfigFile;

/// Generous for a loaded 2-core machine; each wait ends as soon as its message arrives.
const STEP: Duration = Duration::from_secs(15);

/// The daemon as a child process plus every notification line it sent, in order.
struct Notified {
    daemon: Daemon,
    rx: mpsc::UnboundedReceiver<String>,
    /// Every line received so far.
    seen: Vec<String>,
    /// How many of `seen` an `expect` has already consumed.
    cursor: usize,
}

impl Notified {
    fn pid(&self) -> String {
        self.daemon.id().to_string()
    }

    fn signal(&self, sig: &str) {
        self.daemon.signal(sig);
    }

    /// Everything known about the daemon, for a failure message.
    fn report(&mut self) -> String {
        let exit = match self.daemon.0.try_wait() {
            Ok(Some(s)) => format!("it exited with {s}"),
            _ => "it is still running".to_owned(),
        };
        format!(
            "{exit}; notifications so far: {:?}\n--- its stderr:\n{}",
            self.seen,
            self.daemon.log()
        )
    }

    /// Waits (at most [`STEP`]) for a line after those already consumed that satisfies
    /// `pred`; consumes up to and including it and returns it. Fails with a sentence naming
    /// `what` when it doesn't come, or when the daemon exits first.
    async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(i) = self.seen[self.cursor..].iter().position(|l| pred(l)) {
                self.cursor += i + 1;
                return self.seen[self.cursor - 1].clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "the daemon sent no {what} within {STEP:?}; {}",
                    self.report()
                );
            }
            // Wake at least every 100 ms to notice a daemon that died.
            let slice = (deadline - now).min(Duration::from_millis(100));
            match tokio::time::timeout(slice, self.rx.recv()).await {
                Ok(Some(datagram)) => self.seen.extend(datagram.lines().map(str::to_owned)),
                Ok(None) => panic!("the notification listener stopped; {}", self.report()),
                Err(_) => {
                    if let Ok(Some(_)) = self.daemon.0.try_wait() {
                        // Drain what it sent before dying, then give up.
                        while let Ok(d) = self.rx.try_recv() {
                            self.seen.extend(d.lines().map(str::to_owned));
                        }
                        if self.seen[self.cursor..].iter().any(|l| pred(l)) {
                            continue;
                        }
                        panic!("the daemon exited before sending {what}; {}", self.report());
                    }
                }
            }
        }
    }

    /// Whether any line received so far satisfies `pred`.
    fn has_seen(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.seen.iter().any(|l| pred(l))
    }

    /// Waits (at most `within`) for the daemon to exit.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.daemon.0.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let report = self.report();
                panic!("the daemon did not exit within {within:?} of SIGTERM; {report}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A config for one server, `a` at `url`, with the endpoint on a free port.
fn write_config(url: &str) -> ConfigFile {
    let daemon = format!(
        "listen = \"127.0.0.1:{}\"\nshutdown_grace = \"5s\"",
        common::free_port()
    );
    ConfigFile::quick(
        &daemon,
        "schedule = \"@daily\"",
        &[("a", url.to_owned(), "")],
    )
}

/// Starts `run --config CONFIG` with NOTIFY_SOCKET (and WATCHDOG_USEC) pointing at a
/// datagram socket this test reads.
fn start_daemon(dir: &Path, config: &Path, watchdog_usec: &str) -> Notified {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf).await {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let daemon = Daemon::spawn(
        command(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", watchdog_usec),
        &dir.join("daemon.stderr"),
    );
    Notified {
        daemon,
        rx,
        seen: Vec::new(),
        cursor: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_speaks_sd_notify_through_start_reload_watchdog_and_stop() {
    let sim = common::sim::simulator(vec![SimServerConfig::new("a", KEY)]).await;
    let file = write_config(&sim.url("a"));
    let (dir, config) = (&file.dir, &file.path);
    let mut d = start_daemon(dir.path(), config, "200000");

    // Start: READY=1 once the schedules are armed, and a status line about them.
    d.expect("READY=1", |l| l == "READY=1").await;
    if !d.has_seen(|l| l.starts_with("STATUS=")) {
        d.expect("STATUS= line", |l| l.starts_with("STATUS=")).await;
    }
    let status = d.seen.iter().rfind(|l| l.starts_with("STATUS=")).unwrap();
    assert!(
        status.len() > "STATUS=".len(),
        "the STATUS= line is empty; {}",
        d.report()
    );

    // Watchdog: with WATCHDOG_USEC=200000 it must keep pinging (every ~100 ms), so three
    // pings after READY=1 show a loop, not a single message at start.
    for n in 1..=3 {
        d.expect(&format!("WATCHDOG=1 (ping {n} after READY=1)"), |l| {
            l == "WATCHDOG=1"
        })
        .await;
    }

    // Reload: RELOADING=1 with MONOTONIC_USEC=, then READY=1 again.
    d.signal("HUP");
    d.expect("RELOADING=1 after SIGHUP", |l| l == "RELOADING=1")
        .await;
    let usec = d
        .expect("MONOTONIC_USEC= with RELOADING=1", |l| {
            l.starts_with("MONOTONIC_USEC=")
        })
        .await;
    assert!(
        usec["MONOTONIC_USEC=".len()..].parse::<u64>().is_ok(),
        "{usec} is not a number of microseconds"
    );
    d.expect("READY=1 after the reload", |l| l == "READY=1")
        .await;
    d.expect("WATCHDOG=1 after the reload", |l| l == "WATCHDOG=1")
        .await;

    // The same through the `reload` command (ExecReload=): it returns once the daemon has
    // answered, which the daemon does after RELOADING=1, READY=1 and a fresh STATUS=.
    let args = [
        "reload",
        "--config",
        config.to_str().unwrap(),
        "--pid",
        &d.pid(),
    ]
    .map(str::to_owned);
    let out = run_async(command(args)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "reload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d.expect("RELOADING=1 for the reload command", |l| l == "RELOADING=1")
        .await;
    d.expect("READY=1 after it", |l| l == "READY=1").await;
    d.expect("STATUS= after it", |l| l.starts_with("STATUS="))
        .await;

    // A saved edit (watch_config is "auto" by default): the watcher's reload says the same.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(config)
            .unwrap();
        writeln!(f, "# edited").unwrap();
    }
    d.expect("RELOADING=1 for the watcher's reload", |l| {
        l == "RELOADING=1"
    })
    .await;
    d.expect("READY=1 after it", |l| l == "READY=1").await;
    d.expect("STATUS= after it", |l| l.starts_with("STATUS="))
        .await;

    // Stop: STOPPING=1, then exit 0 (nothing is running, so no grace period is needed).
    d.signal("TERM");
    d.expect("STOPPING=1 after SIGTERM", |l| l == "STOPPING=1")
        .await;
    let status = d.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "the daemon's exit after SIGTERM; {}",
        d.report()
    );
    sim.shutdown().await;
}
