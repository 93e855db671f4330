//! How a command ends: what it found ([`Verdict`]) when it did its work, or why it could
//! not ([`CommandError`]). Errors are data: the commands return them, and `main` prints each
//! one once and exits with [`CommandError::exit_status`] (as ripgrep does).
//!
//! A message names what failed and, where there is one, what to do; it is printed as it
//! is, so the `error: ` or `unhealthy: ` in front is part of each variant's text.

use super::exit;
use super::{check, demo, healthcheck, manpage, reload, run};
use crate::config::ConfigError;
use crate::history::HistoryError;
use crate::jellyfin::JellyfinError;
use crate::runner::RecordError;
use crate::runner::marker::MarkerError;
use crate::sim::SimError;
use crate::state::{LockError, StateError};
use std::path::PathBuf;

/// What a command that did its work found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done, and its subject is fine: exit 0.
    Fine,
    /// Done, and its subject failed (a run that did not complete): exit 1. What happened is
    /// in the command's output already.
    Failed,
}

impl Verdict {
    pub fn exit_status(self) -> u8 {
        match self {
            Verdict::Fine => exit::OK,
            Verdict::Failed => exit::FAILED,
        }
    }
}

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The config file does not load: every problem, as the loader words them.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `check`'s view of a config that does not load: the problems and which secrets this
    /// environment cannot read.
    #[error(transparent)]
    Check(#[from] check::CheckError),
    /// `SERVER` is not in the config; `known` lists the servers it has, where that helps.
    #[error(
        "error: no server named {name:?} in {}{}",
        config.display(),
        known.as_ref().map(|k| format!("; servers: {}", k.join(", "))).unwrap_or_default()
    )]
    UnknownServer {
        name: String,
        config: PathBuf,
        known: Option<Vec<String>>,
    },
    #[error("error: cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("error: {0}")]
    State(#[from] StateError),
    /// The server's lock is held (a run elsewhere) or could not be taken.
    #[error("error: {0}")]
    Lock(#[from] LockError),
    #[error("error: {0}")]
    History(#[from] HistoryError),
    /// The recorded runs could not be read (from either backend).
    #[error("error: {0}")]
    Records(#[from] crate::records::ReadError),
    #[error("error: {0}")]
    Jellyfin(#[from] JellyfinError),
    /// `trigger --no-wait`: Jellyfin accepted the start, but without its marker nobody
    /// will record the run.
    #[error(
        "error: the run started but {source}; its outcome will not be recorded (state directory {})",
        state_dir.display()
    )]
    MarkerNotWritten {
        source: MarkerError,
        state_dir: PathBuf,
    },
    /// The run ended but its record is not in the history (its summary was shown).
    #[error("error: the run's record was not written: {0}")]
    RecordNotWritten(RecordError),
    /// A run an earlier process left in flight ended, but its record is not in the
    /// history; no new run was started, so its marker stays for the next process.
    #[error(
        "error: the run left in flight by an earlier process ended, but its record was not written: {source}; \
         no new run was started and its in-flight marker is kept, so the daemon or the next `trigger` records it: \
         fix the state directory ({}), then trigger again",
        state_dir.display()
    )]
    LeftOverNotRecorded {
        source: RecordError,
        state_dir: PathBuf,
    },
    #[error("unhealthy: {0}")]
    Unhealthy(#[from] healthcheck::HealthError),
    #[error("error: {0}")]
    Demo(#[from] demo::DemoError),
    #[error("error: {0}")]
    Manpage(#[from] manpage::ManpageError),
    #[error("error: {0}")]
    Simulate(#[from] SimError),
    /// The daemon could not start; `main` logs it, since the log is set up by then.
    #[error(transparent)]
    Daemon(#[from] run::StartError),
    /// `reload`'s failures, in the daemon's log format.
    #[error(transparent)]
    Reload(#[from] reload::ReloadFailed),
    /// The archive folder could not be read or pruned.
    #[error("error: {0}")]
    Archive(String),
    /// `archive verify --identity FILE`: the file cannot be used (its path only, never
    /// what it holds).
    #[error("error: {0}")]
    Identity(String),
    /// `backend = "postgres"`: the database could not be reached, or refused a statement
    /// (PostgreSQL's reason; never the URL).
    #[error("error: {0}")]
    Database(#[from] crate::postgres::PgError),
    /// `trigger` on PostgreSQL: the server has an open claim (a run in progress, by the
    /// leader or another `trigger`), as the lock file says with files.
    #[error(
        "error: server {server} is busy: another run of it is in progress (it has an open claim in the database); see `history {server}` once it has ended, then trigger again"
    )]
    ClaimBusy { server: String },
    /// `trigger` on PostgreSQL, interrupted (SIGINT, SIGTERM) while it waited: the run's
    /// claim went to the instance that leads.
    #[error(
        "error: interrupted; run {run_id} of {server} is handed over to the instance that leads, which records it (see `history {server}`)"
    )]
    Interrupted { server: String, run_id: String },
    /// `trigger` on PostgreSQL: the leader adopted the run's claim (this process was
    /// paused, or cut off from the database, for longer than `lease_ttl`): its writes
    /// change nothing, and it stops.
    #[error(
        "error: run {run_id} of {server} was taken over by the instance that leads: this trigger was unheard of for longer than lease_ttl (paused, or cut off from the database), so nothing more is done here and the leader records what became of the run (see `history {server}`)"
    )]
    TakenOver { server: String, run_id: String },
    /// `trigger --no-wait` on PostgreSQL: Jellyfin accepted the start, but the claim could
    /// not be handed over to the leader.
    #[error(
        "error: the run started [run {run_id}] but could not be handed over to the leader: {source}; \
         it is recorded by the next instance that takes the lease over"
    )]
    NotHandedOver {
        run_id: String,
        source: crate::postgres::PgError,
    },
    /// `history import` copies into the PostgreSQL backend's database: the config must
    /// say which.
    #[error(
        "error: {}: history import copies into the PostgreSQL backend's database, but this config has backend = \"files\"; run it with the config of the instances that use PostgreSQL",
        config.display()
    )]
    ImportNeedsPostgres { config: PathBuf },
    /// The command's output could not be written (a closed pipe: `check | head`). Not
    /// worth a message: whoever closed the pipe is not reading.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CommandError {
    /// The exit status this error maps to: 2 for bad usage or config, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            CommandError::Config(_)
            | CommandError::Check(_)
            | CommandError::UnknownServer { .. }
            | CommandError::Identity(_)
            | CommandError::ImportNeedsPostgres { .. } => exit::USAGE,
            // A scenario file that does not load is bad usage; a port taken is not.
            CommandError::Simulate(SimError::Listen { .. }) => exit::FAILED,
            CommandError::Simulate(_) => exit::USAGE,
            CommandError::Reload(e) => e.exit_status(),
            CommandError::Runtime(_)
            | CommandError::State(_)
            | CommandError::Lock(_)
            | CommandError::History(_)
            | CommandError::Records(_)
            | CommandError::Jellyfin(_)
            | CommandError::MarkerNotWritten { .. }
            | CommandError::RecordNotWritten(_)
            | CommandError::LeftOverNotRecorded { .. }
            | CommandError::Unhealthy(_)
            | CommandError::Demo(_)
            | CommandError::Manpage(_)
            | CommandError::Daemon(_)
            | CommandError::Archive(_)
            | CommandError::Database(_)
            | CommandError::ClaimBusy { .. }
            | CommandError::NotHandedOver { .. }
            | CommandError::Interrupted { .. }
            | CommandError::TakenOver { .. }
            | CommandError::Output(_) => exit::FAILED,
        }
    }
}
