//! The subcommands' work, one file each, callable without a process: each takes parsed
//! arguments and writers and returns what it found ([`Verdict`]) or why it could not
//! ([`CommandError`]), so tests drive them directly and `main.rs` only wires arguments to
//! them, prints the error once and turns the result into an exit status.

mod error;

pub use error::{CommandError, Verdict};

pub mod archive;
pub mod check;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod healthcheck;
pub mod history;
pub mod manpage;
pub mod reload;
pub mod run;
pub mod simulate;
pub mod trigger;

/// Exit statuses shared by every command.
pub mod exit {
    /// The command did what it was asked and its subject is fine.
    pub const OK: u8 = 0;
    /// The command ran and its subject failed (a run that did not complete, a server that
    /// is busy, a second daemon on the same state directory).
    pub const FAILED: u8 = 1;
    /// Bad usage or a bad config; the message is on stderr.
    pub const USAGE: u8 = 2;
}
