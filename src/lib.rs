//! jellyfin-export-scheduler: runs the Jellyfin Migrator plugin's export task on cron
//! schedules across many Jellyfin servers, tracks every run to its end and keeps a history.
//!
//! # Layout
//!
//! Layers point down only: `main.rs` wires the [`commands`], which use the daemon and the
//! library modules below them; no library module uses a command.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | TOML file → validated [`config::Config`], every problem with file:line:col |
//! | [`schedule`] | cron expression + IANA timezone → next due instants; DST rules; pure |
//! | [`timezone`] | IANA zone names with suggestions, and the system's zone (`$TZ`, `/etc`) |
//! | [`secret`] | the masking type for API keys and other secrets |
//! | [`digest`] | SHA-256 in lowercase hex, as `sha256sum` prints it |
//! | [`record`] | the run record (outcomes, triggers, the history line's fields), the request that starts a run, and how a record reads for people (its one-line summary, durations) |
//! | [`history`] | per-server run records on disk (JSON Lines): storage only |
//! | [`records`] | the recorded runs as the readers see them, from either backend |
//! | [`postgres`] | the PostgreSQL backend's parts (issue #18, not wired in yet): schema, lease, fenced claims |
//! | [`state`] | the state directory's layout and its lock files |
//! | [`jellyfin`] | typed HTTP client for the Jellyfin calls a run needs |
//! | [`migrator`] | what the Migrator's configuration says about a run: the Mode check, the verdict |
//! | [`runner`] | a run's whole life in one place ([`runner::Runner::run`]): finish a left-over run, start, marker, track, record, tell the caller |
//! | [`runner::track`] | one run as Jellyfin sees it: preflight, start, track, verify, outcome |
//! | [`archive`] | the on-disk archive of verified exports: the ZIP staged from the verify read, proven, age-encrypted, named, listed and pruned (restic-style) |
//! | [`runner::marker`] | in-flight run markers, so restarts lose no run |
//! | [`sd_notify`] | the service manager's notifications (`sd_notify`): ready, reloading, status, watchdog |
//! | [`notifications`] | run notifications: `[[notify]]` webhooks and each server's dead-man's-switch `ping_url` |
//! | [`sim`] | a simulated Jellyfin fleet for tests, the demo and `simulate` |
//! | [`daemon`] | the long-running service: per-server loops, run tasks (slot, lock, the runner), catch-up, reload, drain |
//! | [`daemon::status`] | the status board: one view of each server, for health, metrics, the status API and page |
//! | [`reload`] | a reload from the config file in the daemon (on SIGHUP, or when the config watcher saw it change), and the reload status file `reload` reads |
//! | [`doctor`] | read-only checks of each server and of this machine, for the `doctor` command |
//! | [`signals`] | SIGHUP/SIGTERM/SIGINT as events |
//! | [`endpoint`] | the read-only HTTP endpoint (on hyper): health, metrics (one table of metric families), status API and page, its limits and token |
//! | [`logging`] | text or flat JSON log lines |
//! | [`commands`] | the subcommands, callable without a process: each returns what it found or a typed [`commands::CommandError`], which `main.rs` prints once and maps to the exit status |

pub mod archive;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod doctor;
pub mod endpoint;
pub mod history;
pub mod jellyfin;
pub mod logging;
pub mod migrator;
pub mod notifications;
pub mod postgres;
pub mod record;
pub mod records;
pub mod reload;
pub mod runner;
pub mod schedule;
pub mod sd_notify;
pub mod secret;
pub mod signals;
pub mod sim;
pub mod state;
pub mod timezone;
