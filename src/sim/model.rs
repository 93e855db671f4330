//! One simulated server's state: the life of its driven task (the Migrator's, or a built-in
//! one: start, run, cancel, end, result, follow-ups), restarts and crashes, and the plugin
//! configuration a Migrator run changes.
//!
//! Nothing here runs by itself. The state holds future events as instants and
//! [`ServerState::advance`] applies every event that is due whenever someone looks (a
//! request, a test asking). So an idle fleet of a thousand servers costs no task and no
//! timer. Every time a client is shown (a run's start and end) is stamped once, when it
//! happens, as a [`SimTime`].

use super::config::{CancelMode, History, RunOutcome, SimServerConfig, SimTask};
use super::plugin::{PluginConfig, RunEnd};
use super::task_result::{ResultStatus, TaskResult, result};
use super::time::{Clock, SimTime, Stamper};
use std::time::Duration;
use tokio::time::Instant;

/// Jellyfin's `TaskState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Idle,
    Running,
    Cancelling,
}

impl TaskState {
    pub fn as_jellyfin(self) -> &'static str {
        match self {
            TaskState::Idle => "Idle",
            TaskState::Running => "Running",
            TaskState::Cancelling => "Cancelling",
        }
    }
}

/// What a client would see of the driven task now (also what tests assert on).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub state: TaskState,
    pub progress: Option<f64>,
    pub last_result: Option<TaskResult>,
    /// Runs that have begun since sim start (follow-ups and the one at start included).
    pub runs_started: u32,
    /// The server is in a restart or crash downtime.
    pub down: bool,
}

/// One run in progress; its end is fixed when it begins.
#[derive(Clone, Debug)]
struct Run {
    start_time: SimTime,
    /// How long it takes when nobody stops it.
    length: Duration,
    natural_end: Instant,
    first_progress: Instant,
    full_progress: Instant,
    outcome: RunOutcome,
    /// The plugin's `Mode` when the run began (it reads it once, at the start).
    mode_text: String,
    restart_at: Option<Instant>,
    crash_at: Option<Instant>,
}

#[derive(Clone, Debug)]
enum CancelEnd {
    /// Stops then: the Migrator ends `Completed` with its canceled line, others `Cancelled`.
    At(Instant),
    /// Ignored (other tasks): ends at the natural end with the normal outcome.
    Natural,
    /// Never ends by itself.
    Never,
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    /// Start accepted; shows Idle until the run begins at this instant.
    Starting(Instant),
    Running(Run),
    Cancelling(Run, CancelEnd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownKind {
    /// Graceful restart: 503 HTML, Ping still answers.
    Graceful,
    /// Crash: connections dropped unanswered.
    Crash,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    StoreResult,
    Up,
    BeginRun,
    EndRun,
    CancelDone,
    Restart,
    Crash,
}

/// Everything one simulated server remembers.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub cfg: SimServerConfig,
    pub clock: Clock,
    stamper: Stamper,
    phase: Phase,
    last_result: Option<TaskResult>,
    pending_result: Option<(Instant, TaskResult)>,
    follow_ups: u32,
    down: Option<(Instant, DownKind)>,
    /// `task_vanishes` has struck.
    pub vanished: bool,
    pub plugin: PluginConfig,
    runs_started: u32,
    /// Results of the built-in tasks, fixed at sim start (shown unless the task is driven).
    pub builtin_results: Vec<TaskResult>,
    /// The Migrator's result when another task is driven: one export a while ago.
    pub migrator_result: Option<TaskResult>,
}

/// The answer to a cancel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelAnswer {
    Accepted,
    /// Idle or already Cancelling: Jellyfin answers 500.
    NotRunning,
}

impl ServerState {
    pub fn new(cfg: SimServerConfig, clock: Clock) -> Self {
        let mut stamper = Stamper::default();
        let now_utc = clock.base_utc();
        let age = chrono::Duration::from_std(cfg.history_age).unwrap_or(chrono::Duration::days(1));
        // checked: a scenario may ask for an age beyond chrono's calendar.
        let old_end = now_utc
            .checked_sub_signed(age)
            .unwrap_or(now_utc - chrono::Duration::days(1));
        let old_start = old_end
            .checked_sub_signed(chrono::Duration::milliseconds(9_873))
            .unwrap_or(old_end);
        let mut plugin = PluginConfig::new(&cfg);
        let migrator_driven = cfg.task == SimTask::Migrator;
        let past_export = |plugin: &mut PluginConfig, stamper: &mut Stamper| {
            let start = stamper.stamp(old_start);
            let end = stamper.stamp(old_end);
            plugin.end_run(
                &RunEnd {
                    mode_text: "Export".into(),
                    start,
                    length: (old_end - old_start).to_std().unwrap_or_default(),
                    stopped: None,
                    end,
                    log_error: None,
                    zip_fails: false,
                },
                &cfg,
            );
            (start, end)
        };
        let last_result = match cfg.history {
            History::Never => None,
            h => {
                let status = match h {
                    History::Failed => ResultStatus::Failed,
                    History::Cancelled => ResultStatus::Cancelled,
                    History::Aborted => ResultStatus::Aborted,
                    _ => ResultStatus::Completed,
                };
                let (start, end) = if status == ResultStatus::Completed && migrator_driven {
                    past_export(&mut plugin, &mut stamper)
                } else {
                    (stamper.stamp(old_start), stamper.stamp(old_end))
                };
                Some(result(start, end, status, &cfg))
            }
        };
        let migrator_result = (!migrator_driven).then(|| {
            let (start, end) = past_export(&mut plugin, &mut stamper);
            result(start, end, ResultStatus::Completed, &cfg)
        });
        let builtin_results = (1..=3i64)
            .map(|i| {
                let end = now_utc - chrono::Duration::minutes(37 * i + 5);
                let start = end - chrono::Duration::milliseconds(1_234 * i);
                TaskResult {
                    start: stamper.stamp(start),
                    end: stamper.stamp(end),
                    status: ResultStatus::Completed,
                    error_message: None,
                    long_error_message: None,
                }
            })
            .collect();
        let phase = if cfg.running_at_start {
            Phase::Starting(clock.base())
        } else {
            Phase::Idle
        };
        ServerState {
            follow_ups: cfg.follow_ups,
            cfg,
            clock,
            stamper,
            phase,
            last_result,
            pending_result: None,
            down: None,
            vanished: false,
            plugin,
            runs_started: 0,
            builtin_results,
            migrator_result,
        }
    }

    /// Apply every event due at or before `now`, each at its own instant.
    pub fn advance(&mut self, now: Instant) {
        // Bounded so that a config with zero-length runs and endless follow-ups cannot
        // spin here; no event sequence needs this many steps per look.
        for _ in 0..100_000 {
            match self.next_event() {
                Some((at, ev)) if at <= now => self.apply(at, ev),
                _ => return,
            }
        }
    }

    fn next_event(&self) -> Option<(Instant, Event)> {
        let mut best: Option<(Instant, Event)> = None;
        let mut consider = |at: Option<Instant>, ev: Event| {
            if let Some(at) = at
                && best.is_none_or(|(b, _)| at < b)
            {
                best = Some((at, ev));
            }
        };
        consider(
            self.pending_result.as_ref().map(|p| p.0),
            Event::StoreResult,
        );
        consider(self.down.map(|d| d.0), Event::Up);
        match &self.phase {
            Phase::Idle => {}
            Phase::Starting(at) => consider(Some(*at), Event::BeginRun),
            Phase::Running(run) => {
                consider(Some(run.natural_end), Event::EndRun);
                consider(run.restart_at, Event::Restart);
                consider(run.crash_at, Event::Crash);
            }
            Phase::Cancelling(run, end) => {
                match end {
                    CancelEnd::At(at) => consider(Some(*at), Event::CancelDone),
                    CancelEnd::Natural => consider(Some(run.natural_end), Event::EndRun),
                    CancelEnd::Never => {}
                }
                consider(run.restart_at, Event::Restart);
                consider(run.crash_at, Event::Crash);
            }
        }
        best
    }

    fn apply(&mut self, at: Instant, ev: Event) {
        match ev {
            Event::StoreResult => {
                if let Some((_, r)) = self.pending_result.take() {
                    self.last_result = Some(r);
                }
            }
            Event::Up => self.down = None,
            Event::BeginRun => self.begin_run(at),
            Event::EndRun => {
                if let Phase::Running(run) | Phase::Cancelling(run, _) = self.phase.clone() {
                    let end = self.stamp(at);
                    let status = self.end_run(&run, None, end);
                    self.finish(at, &run, end, status);
                }
            }
            Event::CancelDone => {
                if let Phase::Cancelling(run, _) = self.phase.clone() {
                    let end = self.stamp(at);
                    let status = if self.cfg.task == SimTask::Migrator {
                        // The plugin catches the cancellation and ends like any run.
                        self.end_run(&run, Some(end), end)
                    } else {
                        ResultStatus::Cancelled
                    };
                    self.finish(at, &run, end, status);
                }
            }
            Event::Restart => self.restart(at),
            Event::Crash => self.crash(at),
        }
    }

    /// What the task writes at its end, and the status Jellyfin records: `Failed` writes
    /// nothing (the Migrator threw before its `try`); the Migrator otherwise writes its end.
    fn end_run(&mut self, run: &Run, stopped: Option<SimTime>, end: SimTime) -> ResultStatus {
        if run.outcome == RunOutcome::Failed {
            return ResultStatus::Failed;
        }
        if self.cfg.task == SimTask::Migrator {
            let log_error = (run.outcome == RunOutcome::CompletedWithLogError)
                .then(|| self.cfg.error_message.clone());
            self.plugin.end_run(
                &RunEnd {
                    mode_text: run.mode_text.clone(),
                    start: run.start_time,
                    length: run.length,
                    stopped,
                    end,
                    log_error,
                    zip_fails: self.cfg.zip_fails,
                },
                &self.cfg,
            );
        }
        ResultStatus::Completed
    }

    fn stamp(&mut self, at: Instant) -> SimTime {
        let utc = self.clock.utc(at);
        self.stamper.stamp(utc)
    }

    fn begin_run(&mut self, at: Instant) {
        let start_time = self.stamp(at);
        let cfg = &self.cfg;
        let len = cfg.run_length;
        let first = cfg.first_progress_after.min(len / 2);
        self.phase = Phase::Running(Run {
            start_time,
            length: len,
            natural_end: later(at, len),
            first_progress: later(at, first),
            // "100" is reported just before the end: in the run's last tenth.
            full_progress: later(at, len - len / 10).max(later(at, first)),
            outcome: cfg.outcome,
            mode_text: self.plugin.mode_text.clone(),
            restart_at: cfg.restart_after.map(|d| later(at, d)),
            crash_at: cfg.crash_after.map(|d| later(at, d)),
        });
        self.runs_started = self.runs_started.saturating_add(1);
    }

    /// Jellyfin's end order: Idle (progress gone) now, the result `result_delay` later,
    /// then a queued follow-up if there is one.
    fn finish(&mut self, at: Instant, run: &Run, end: SimTime, status: ResultStatus) {
        self.phase = Phase::Idle;
        let mut r = result(run.start_time, end, status, &self.cfg);
        if status != ResultStatus::Failed {
            r.error_message = None;
            r.long_error_message = None;
        }
        // A result still waiting to be stored is older than this one: store it first.
        if let Some((_, older)) = self.pending_result.take() {
            self.last_result = Some(older);
        }
        self.pending_result = Some((later(at, self.cfg.result_delay), r));
        if self.follow_ups > 0 {
            self.follow_ups -= 1;
            self.phase = Phase::Starting(later(at, self.cfg.follow_up_delay));
        }
    }

    fn restart(&mut self, at: Instant) {
        // A graceful shutdown persists what it has, and records a Running run as Aborted;
        // a run already Cancelling gets no result (Jellyfin writes Aborted only for Running).
        if let Some((_, r)) = self.pending_result.take() {
            self.last_result = Some(r);
        }
        if let Phase::Running(run) = self.phase.clone() {
            let end = self.stamp(at);
            self.last_result = Some(result(
                run.start_time,
                end,
                ResultStatus::Aborted,
                &self.cfg,
            ));
        }
        self.go_down(at, DownKind::Graceful);
    }

    fn crash(&mut self, at: Instant) {
        // A crash writes nothing: a result not yet stored is lost with the process.
        self.pending_result = None;
        self.go_down(at, DownKind::Crash);
    }

    fn go_down(&mut self, at: Instant, kind: DownKind) {
        self.phase = Phase::Idle;
        // The queue of triggered runs lives in memory.
        self.follow_ups = 0;
        self.down = Some((later(at, self.cfg.downtime), kind));
    }

    /// `POST /ScheduledTasks/Running/{id}`: starts only from Idle; otherwise nothing.
    pub fn request_start(&mut self, now: Instant) {
        self.advance(now);
        if matches!(self.phase, Phase::Idle) {
            self.phase = Phase::Starting(later(now, self.cfg.start_delay));
            if self.cfg.task_vanishes {
                self.vanished = true;
            }
        }
    }

    /// `DELETE /ScheduledTasks/Running/{id}`.
    pub fn request_cancel(&mut self, now: Instant) -> CancelAnswer {
        self.advance(now);
        let Phase::Running(run) = &self.phase else {
            return CancelAnswer::NotRunning;
        };
        let end = match self.cfg.cancel {
            CancelMode::Honour => CancelEnd::At(later(now, self.cfg.cancel_delay)),
            CancelMode::Ignore => CancelEnd::Natural,
            CancelMode::Stuck => CancelEnd::Never,
        };
        self.phase = Phase::Cancelling(run.clone(), end);
        CancelAnswer::Accepted
    }

    /// One of Jellyfin's own triggers fires: starts at once from Idle, queues a follow-up
    /// while a run is going.
    pub fn trigger(&mut self, now: Instant) {
        self.advance(now);
        match self.phase {
            Phase::Idle => self.phase = Phase::Starting(now),
            Phase::Starting(_) => {}
            Phase::Running(_) | Phase::Cancelling(..) => {
                self.follow_ups = self.follow_ups.saturating_add(1)
            }
        }
    }

    pub fn restart_now(&mut self, now: Instant) {
        self.advance(now);
        self.restart(now);
    }

    pub fn crash_now(&mut self, now: Instant) {
        self.advance(now);
        self.crash(now);
    }

    /// The downtime kind if the server is away now (call after `advance`).
    pub fn down(&self) -> Option<DownKind> {
        self.down.map(|d| d.1)
    }

    /// Still in its startup window (call after `advance`).
    pub fn starting(&self, now: Instant) -> bool {
        now < later(self.clock.base(), self.cfg.starting_for)
    }

    /// The Migrator task as seen now (call after `advance`).
    pub fn view(&self, now: Instant) -> TaskView {
        let (state, progress) = match &self.phase {
            Phase::Idle | Phase::Starting(_) => (TaskState::Idle, None),
            Phase::Running(run) => (TaskState::Running, progress(run, now)),
            Phase::Cancelling(run, _) => (TaskState::Cancelling, progress(run, now)),
        };
        TaskView {
            state,
            progress,
            last_result: self.last_result.clone(),
            runs_started: self.runs_started,
            down: self.down.is_some(),
        }
    }
}

/// `at + d`, or "never" (decades away) when a scenario asks for more than `Instant` holds:
/// `Instant + Duration` panics on overflow, and durations come from files.
fn later(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

fn progress(run: &Run, now: Instant) -> Option<f64> {
    if now < run.first_progress {
        None
    } else if now < run.full_progress {
        Some(0.0)
    } else {
        Some(100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimServerConfig {
        SimServerConfig {
            start_delay: Duration::from_millis(10),
            run_length: Duration::from_millis(100),
            result_delay: Duration::from_millis(20),
            ..Default::default()
        }
    }

    #[test]
    fn a_run_goes_idle_before_its_result_appears() {
        // Instants are passed in, so the test needs no clock control.
        let mut s = ServerState::new(cfg(), Clock::new());
        let t0 = Instant::now();
        let old = s.view(t0).last_result;
        s.request_start(t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        s.advance(at(5));
        assert_eq!(s.view(at(5)).state, TaskState::Idle);
        s.advance(at(11));
        assert_eq!(s.view(at(11)).state, TaskState::Running);
        assert_eq!(s.view(at(11)).progress, None);
        s.advance(at(50));
        assert_eq!(s.view(at(50)).progress, Some(0.0));
        s.advance(at(105));
        assert_eq!(s.view(at(105)).progress, Some(100.0));
        s.advance(at(115));
        let v = s.view(at(115));
        assert_eq!(
            (v.state, v.progress, &v.last_result),
            (TaskState::Idle, None, &old)
        );
        s.advance(at(135));
        let r = s.view(at(135)).last_result.unwrap();
        assert_eq!(r.status, ResultStatus::Completed);
        assert_ne!(Some(r), old);
    }

    #[test]
    fn absurd_durations_do_not_panic() {
        let huge = Duration::from_secs(u64::MAX / 2);
        let cfg = SimServerConfig {
            history_age: huge,
            start_delay: Duration::ZERO,
            run_length: huge,
            restart_after: Some(huge),
            starting_for: huge,
            ..Default::default()
        };
        let mut s = ServerState::new(cfg, Clock::new());
        let now = Instant::now();
        s.request_start(now);
        s.advance(now + Duration::from_millis(1));
        assert_eq!(s.view(now).state, TaskState::Running);
        assert_eq!(s.request_cancel(now), CancelAnswer::Accepted);
        assert!(s.starting(now));
    }
}
