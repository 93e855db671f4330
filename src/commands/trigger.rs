//! `trigger SERVER`: one run now, followed to its end with progress shown, recorded in
//! the history like a scheduled one (trigger `manual`).
//!
//! It takes the server's lock, so it never runs a server the daemon is running (and the
//! daemon skips the server while it holds the lock). A run an earlier process left in
//! flight is finished and recorded first. With `--no-wait` it returns once Jellyfin has
//! accepted the start and leaves the in-flight marker, so the daemon (or the next
//! `trigger`) records the outcome.

use super::exit;
use crate::config::{Config, ServerConfig};
use crate::jellyfin::model::TaskState;
use crate::jellyfin::{JellyfinClient, JellyfinError};
use crate::record::{Outcome, RunRecord, RunRequest, Trigger, new_run_id, summary};
use crate::runner::marker::Marker;
use crate::runner::track::{RunEvents, Started};
use crate::runner::{RecordError, RunEnd, RunObserver, Runner, Wait};
use crate::state::{ServerLock, StateDir};
use std::io::Write;
use std::time::Duration;

/// Where progress goes: a live, rewritten line on a terminal, plain lines otherwise.
pub struct Progress<W: Write + Send> {
    out: W,
    live: bool,
    server: String,
    /// A live line is on screen and needs a newline before anything else is printed.
    line_open: bool,
}

impl<W: Write + Send> Progress<W> {
    pub fn new(out: W, live: bool, server: &str) -> Self {
        Progress {
            out,
            live,
            server: server.to_owned(),
            line_open: false,
        }
    }

    fn line(&mut self, text: &str) {
        self.close_live();
        let now = chrono::Local::now().format("%H:%M:%S");
        let _ = writeln!(self.out, "{now} {}: {text}", self.server);
        let _ = self.out.flush();
    }

    fn close_live(&mut self) {
        if self.line_open {
            let _ = writeln!(self.out);
            self.line_open = false;
        }
    }

    fn finish(mut self) -> W {
        self.close_live();
        self.out
    }
}

impl<W: Write + Send> RunEvents for Progress<W> {
    fn started(&mut self, started: &Started) {
        if started.followed {
            self.line(&format!(
                "the task was already running; following it (task {})",
                started.task_id
            ));
        } else {
            self.line(&format!("started (task {})", started.task_id));
        }
    }

    fn progress(&mut self, state: &TaskState, percent: Option<f64>) {
        let pct = percent.map(|p| format!(" {p:.0}%")).unwrap_or_default();
        if self.live {
            let now = chrono::Local::now().format("%H:%M:%S");
            let _ = write!(self.out, "\r\x1b[2K{now} {}: {state}{pct}", self.server);
            let _ = self.out.flush();
            self.line_open = true;
        } else {
            self.line(&format!("{state}{pct}"));
        }
    }

    fn retrying(&mut self, attempt: u32, error: &JellyfinError, delay: Duration) {
        self.line(&format!(
            "attempt {attempt} failed: {error}; retrying in {}",
            humantime::format_duration(delay)
        ));
    }
}

impl<W: Write + Send> RunObserver for Progress<W> {
    fn left_over(&mut self, _marker: &Marker) {
        self.line("an earlier run was left in flight; following it to its end first");
    }

    fn left_over_recorded(&mut self, result: &Result<RunRecord, RecordError>) {
        match result {
            Ok(r) => self.line(&format!("earlier run: {}", summary(r))),
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// The command. `out` gets progress and the summary; errors go to stderr.
pub async fn trigger<W: Write + Send>(
    config: &Config,
    server_name: &str,
    no_wait: bool,
    out: W,
    live: bool,
) -> u8 {
    let Some(server) = config.server(server_name) else {
        let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "error: no server named {server_name:?} in {}; servers: {}",
            config.path.display(),
            names.join(", ")
        );
        return exit::USAGE;
    };
    let now = chrono::Utc::now();
    let request = RunRequest {
        run_id: new_run_id(now),
        trigger: Trigger::Manual,
        scheduled_for: None,
        triggered_at: now,
    };
    let Some((state, _lock, client)) = prepare(config, server, &request) else {
        return exit::FAILED;
    };
    let mut progress = Progress::new(out, live, &server.name);
    let wait = if no_wait {
        Wait::StartOnly
    } else {
        Wait::Follow
    };
    let end = Runner::new(&state)
        .run(&client, server, &request, &mut progress, wait)
        .await;
    report(progress.finish(), end, wait, config, server, &request)
}

/// The state directory, the server's lock and a client for it; or `None`, said on stderr.
fn prepare(
    config: &Config,
    server: &ServerConfig,
    request: &RunRequest,
) -> Option<(StateDir, ServerLock, JellyfinClient)> {
    let state = StateDir::open(&config.daemon.state_dir)
        .map_err(|e| eprintln!("error: {e}"))
        .ok()?;
    let holder = format!(
        "manual trigger run {}, since {}",
        request.run_id,
        request
            .triggered_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let lock = ServerLock::acquire(&state, &server.name, &holder)
        .map_err(|e| eprintln!("error: {e}"))
        .ok()?;
    let client = JellyfinClient::new(
        &server.name,
        &server.url,
        &server.api_key,
        server.request_timeout,
    )
    .map_err(|e| eprintln!("error: {e}"))
    .ok()?;
    Some((state, lock, client))
}

/// The last words on `out` (or stderr) and the exit status.
fn report(
    mut out: impl Write,
    end: RunEnd,
    wait: Wait,
    config: &Config,
    server: &ServerConfig,
    request: &RunRequest,
) -> u8 {
    match end {
        RunEnd::Started(Ok(())) => {
            let _ = writeln!(
                out,
                "{}: started [run {}]; not waiting. The daemon (or the next `trigger {}`) records its outcome; see `history {}`.",
                server.name, request.run_id, server.name, server.name
            );
            exit::OK
        }
        RunEnd::Started(Err(e)) => {
            eprintln!(
                "error: the run started but {e}; its outcome will not be recorded (state directory {})",
                config.daemon.state_dir.display()
            );
            exit::FAILED
        }
        RunEnd::Recorded(Ok(record)) => {
            let _ = writeln!(out, "{}", summary(&record));
            if record.outcome == Outcome::Completed {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        RunEnd::Recorded(Err(e)) => {
            if let (Wait::Follow, RecordError::History { record, .. }) = (wait, &e) {
                let _ = writeln!(out, "{}", summary(record));
            }
            eprintln!("error: the run's record was not written: {e}");
            exit::FAILED
        }
    }
}
