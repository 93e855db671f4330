//! The binary: parses arguments, sets up logging, calls into the library, prints an error
//! once and turns the result into an exit status. Nothing else lives here.

use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser, Subcommand, ValueHint};
use jellyfin_export_scheduler::commands::{
    CommandError, Verdict, archive, check, completions, demo, doctor, healthcheck, history,
    manpage, reload, run, simulate, trigger,
};
use jellyfin_export_scheduler::config::{Backend, Config, DEFAULT_CONFIG_PATH, LoadEnv, LogFormat};
use jellyfin_export_scheduler::logging::{self, FORMAT_ENV};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jellyfin-export-scheduler",
    version,
    about = "Runs the Jellyfin Migrator export on cron schedules across Jellyfin servers, tracks every run and keeps its history."
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "JELLYFIN_EXPORT_SCHEDULER_CONFIG", default_value = DEFAULT_CONFIG_PATH, value_hint = ValueHint::FilePath)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config without contacting any server and show the next due instants.
    Check {
        /// Validate everything but the secrets: read no API key file or variable, nor any
        /// webhook or ping URL (for a machine that does not have them, e.g. outside the
        /// systemd unit).
        #[arg(long)]
        no_secrets: bool,
        /// How many due instants to show per server.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// Show due instants after this RFC 3339 instant instead of now.
        #[arg(long, value_parser = parse_instant)]
        after: Option<DateTime<Utc>>,
        #[arg(long, value_enum, default_value = "text")]
        format: check::Format,
    },
    /// Check each enabled server (or those named) for real, read-only: address, TLS, key,
    /// plugin, task, Mode, last export, clock; and the state folder. Exit 0 nothing failed,
    /// 1 something did, 2 bad config.
    Doctor {
        /// Only these servers (default: every enabled one).
        servers: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: doctor::Format,
        /// The limit of each step (resolve, connect, one request).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run the daemon: every enabled server's export on its schedule, until SIGTERM/SIGINT.
    /// SIGHUP reloads the config.
    Run {
        /// Log lines as text or JSON, whatever `[daemon] log_format` says (for container
        /// log collectors).
        #[arg(long, env = FORMAT_ENV, value_name = "text|json", value_parser = parse_log_format)]
        log_format: Option<LogFormat>,
    },
    /// Make the running daemon reload its config and wait until it applied the file or
    /// refused it (exit 0 applied, 2 invalid or refused, 1 no answer). For ExecReload=.
    Reload {
        /// The daemon's pid (systemd: $MAINPID); default: the one recorded in the state
        /// directory.
        #[arg(long)]
        pid: Option<u32>,
        /// How long to wait for the daemon's answer.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Write this command's lines as text or JSON instead of in the daemon's log format.
        #[arg(long, env = FORMAT_ENV, value_name = "text|json", value_parser = parse_log_format)]
        log_format: Option<LogFormat>,
    },
    /// See it work without a Jellyfin: a simulated fleet, the real daemon for a minute,
    /// then the history.
    Demo {
        /// Folder for the demo's config and state (default: a new folder under $TMPDIR).
        #[arg(long, value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
        /// How long to run.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Ask the running daemon's /healthz ([daemon] listen): exit 0 healthy, 1 not.
    Healthcheck {
        /// How long to wait in all (connect, ask, read); below the Dockerfile
        /// HEALTHCHECK's 5 s, so that a slow answer is reported here, with its reason.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run one export on SERVER now, follow it to its end and record it.
    Trigger {
        /// The server's name in the config.
        server: String,
        /// Return once Jellyfin accepted the start; the daemon or the next trigger records
        /// the outcome.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show recorded runs, newest first.
    #[command(args_conflicts_with_subcommands = true)]
    History {
        #[command(subcommand)]
        command: Option<HistoryCommand>,
        /// Only this server's runs.
        server: Option<String>,
        /// How many records to show (0: all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: history::Format,
    },
    /// The archived exports: list them, check them against the history, prune them.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Serve a simulated Jellyfin (one or many servers) to try a config against.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8096")]
        listen: std::net::SocketAddr,
        /// A scenario file describing the servers (see config/simulate-scenario.toml);
        /// without it, one server "demo" at / and /s/demo.
        #[arg(long, value_hint = ValueHint::FilePath)]
        scenario: Option<PathBuf>,
    },
    /// Print a completion script for bash, zsh or fish (see docs/commands.md for where it
    /// goes).
    Completions {
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a folder.
    Manpage {
        /// Write jellyfin-export-scheduler.1 and one page per command here instead.
        #[arg(long, value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Copy a files state directory's history into the PostgreSQL backend's database
    /// (`backend = "postgres"`); importing twice adds nothing.
    Import {
        /// The state directory whose history/*.jsonl to import.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Each archived export, oldest first per server.
    List {
        /// Only this server's archive.
        server: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: archive::Format,
    },
    /// Re-hash every archived file against the history (and open the ZIP inside); exit 1
    /// naming each file that does not match.
    Verify {
        /// Only this server's archive.
        server: Option<String>,
        /// An age identity file (or unprotected SSH private key) to decrypt .zip.age files
        /// with, so their ZIP is opened and checked too.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Apply each server's retention now.
    Prune {
        /// Only this server's archive.
        server: Option<String>,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `--log-format`, or the variable that sets it for container log collectors.
fn parse_log_format(v: &str) -> Result<LogFormat, String> {
    match v {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "write \"text\" or \"json\" (in --log-format or {FORMAT_ENV})"
        )),
    }
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{e}; write it like 2026-11-27T03:30:00Z or 2026-11-27T03:30:00+01:00")
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(verdict) => ExitCode::from(verdict.exit_status()),
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_status())
        }
    }
}

/// Each command with what it needs: its config (warnings shown first), logging, a runtime.
fn dispatch(cli: Cli) -> Result<Verdict, CommandError> {
    let path = &cli.config;
    match cli.command {
        Command::Check {
            no_secrets,
            next,
            after,
            format,
        } => {
            let config = warned(check::load(path, &LoadEnv::process(), no_secrets)?);
            let after = after.unwrap_or_else(Utc::now);
            check::check(&config, after, next, format, std::io::stdout().lock())
        }
        Command::Doctor {
            servers,
            format,
            timeout,
        } => run_doctor(path, servers, format, timeout),
        Command::Run { log_format } => {
            let config = warned(Config::load(path)?);
            let format = log_format.unwrap_or(config.daemon.log_format);
            logging::init(format, &config.daemon.log_level);
            block_on(run::run(path, config, format))
        }
        Command::Reload {
            pid,
            timeout,
            log_format,
        } => {
            let options = reload::Options {
                pid,
                timeout,
                log_format,
            };
            reload::reload(path, &options, std::io::stdout(), std::io::stderr())
        }
        Command::Demo { dir, duration } => {
            logging::init(LogFormat::Text, "info");
            block_on(demo::demo(dir, duration))
        }
        Command::Healthcheck { timeout } => {
            // It asks our own endpoint's open /healthz, no Jellyfin: no secrets needed.
            let config = warned(Config::load_without_secrets(path)?);
            block_on(healthcheck::healthcheck(
                &config,
                timeout,
                std::io::stdout(),
            ))
        }
        Command::Trigger { server, no_wait } => {
            let config = warned(Config::load(path)?);
            // Progress is the output here; logs (stderr) only say what goes wrong unless asked.
            logging::init(LogFormat::Text, "warn");
            let stdout = std::io::stdout();
            let live = stdout.is_terminal();
            block_on(trigger::trigger(&config, &server, no_wait, stdout, live))
        }
        Command::History {
            command,
            server,
            limit,
            format,
        } => run_history(path, command, server, limit, format),
        Command::Archive(command) => run_archive(path, command),
        Command::Simulate { listen, scenario } => block_on(simulate::simulate(
            listen,
            scenario.as_deref(),
            std::io::stdout(),
        )),
        Command::Completions { shell } => {
            completions::completions(Cli::command(), shell, std::io::stdout())
        }
        Command::Manpage { dir } => {
            manpage::manpage(Cli::command(), dir.as_deref(), std::io::stdout())
        }
    }
}

/// `history` (and `history import`).
fn run_history(
    path: &Path,
    command: Option<HistoryCommand>,
    server: Option<String>,
    limit: usize,
    format: history::Format,
) -> Result<Verdict, CommandError> {
    let (out, err) = (std::io::stdout().lock(), std::io::stderr().lock());
    if let Some(HistoryCommand::Import { from }) = command {
        let config = warned(Config::load(path)?);
        return block_on(history::import(&config, &from, out, err));
    }
    // Files: local state only, and the secrets may well be unreadable here (outside the
    // service). PostgreSQL: the database URL is a secret, so they are read.
    let config = Config::load_without_secrets(path)?;
    let config = warned(match config.daemon.backend {
        Backend::Files => config,
        Backend::Postgres(_) => Config::load(path)?,
    });
    block_on(history::history(
        &config,
        server.as_deref(),
        limit,
        format,
        out,
        err,
    ))
}

/// `doctor`: the report is the output; logs (stderr) only say what goes wrong.
fn run_doctor(
    path: &Path,
    servers: Vec<String>,
    format: doctor::Format,
    timeout: std::time::Duration,
) -> Result<Verdict, CommandError> {
    let config = warned(Config::load(path)?);
    logging::init(LogFormat::Text, "warn");
    let stdout = std::io::stdout();
    let options = doctor::Options {
        servers,
        format,
        timeout,
        colour: stdout.is_terminal() && !logging::no_color(),
    };
    block_on(doctor::doctor(&config, &options, stdout))
}

/// `archive list|verify|prune`. Files: local files only, so the secrets may well be
/// unreadable. PostgreSQL: the records are in the database, whose URL is a secret.
fn run_archive(path: &Path, command: ArchiveCommand) -> Result<Verdict, CommandError> {
    let config = Config::load_without_secrets(path)?;
    let config = warned(match config.daemon.backend {
        Backend::Files => config,
        Backend::Postgres(_) => Config::load(path)?,
    });
    let (out, err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match command {
        ArchiveCommand::List { server, format } => {
            archive::list(&config, server.as_deref(), format, out, err)
        }
        ArchiveCommand::Verify { server, identity } => {
            archive::verify(&config, server.as_deref(), identity.as_deref(), out, err)
        }
        ArchiveCommand::Prune { server, dry_run } => {
            archive::prune(&config, server.as_deref(), dry_run, out, err)
        }
    }
}

/// A loaded config, its warnings on stderr first.
fn warned(config: Config) -> Config {
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    config
}

/// `work` on a multi-threaded runtime.
fn block_on<T>(work: impl Future<Output = Result<T, CommandError>>) -> Result<T, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?
        .block_on(work)
}

/// The one place errors are printed: the daemon's start failures in its log (set up by
/// then), the rest on stderr. A closed output pipe is not worth a word.
fn report(e: &CommandError) {
    match e {
        CommandError::Output(_) => {}
        CommandError::Daemon(e) => tracing::error!(target: run::LOG_TARGET, "{e}"),
        e => eprintln!("{e}"),
    }
}
