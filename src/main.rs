//! The binary: parses arguments, sets up logging, calls into the library and turns the
//! result into an exit status. Nothing else lives here.

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use jellyfin_export_scheduler::commands::{
    check, demo, exit, healthcheck, history, reload, run, trigger,
};
use jellyfin_export_scheduler::config::LogFormat;
use jellyfin_export_scheduler::config::{Config, DEFAULT_CONFIG_PATH};
use jellyfin_export_scheduler::logging::FORMAT_ENV;
use std::io::IsTerminal;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jellyfin-export-scheduler",
    version,
    about = "Runs the Jellyfin Migrator export on cron schedules across Jellyfin servers, tracks every run and keeps its history."
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "JELLYFIN_EXPORT_SCHEDULER_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
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
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to run.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Ask the running daemon's /healthz ([daemon] listen): exit 0 healthy, 1 not.
    Healthcheck,
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
    History {
        /// Only this server's runs.
        server: Option<String>,
        /// How many records to show (0: all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: history::Format,
    },
    /// Serve a simulated Jellyfin (one or many servers) to try a config against.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8096")]
        listen: std::net::SocketAddr,
        /// A scenario file describing the servers (see config/simulate-scenario.toml);
        /// without it, one server "demo" at / and /s/demo.
        #[arg(long)]
        scenario: Option<PathBuf>,
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
    ExitCode::from(match cli.command {
        Command::Check {
            no_secrets,
            next,
            after,
            format,
        } => cmd_check(&cli.config, no_secrets, next, after, format),
        Command::Reload {
            pid,
            timeout,
            log_format,
        } => reload::reload(
            &cli.config,
            &reload::Options {
                pid,
                timeout,
                log_format,
            },
            std::io::stdout().lock(),
            std::io::stderr().lock(),
        ),
        Command::Simulate { listen, scenario } => cmd_simulate(listen, scenario.as_deref()),
        Command::Run { log_format } => cmd_run(&cli.config, log_format),
        Command::Healthcheck => cmd_healthcheck(&cli.config),
        Command::Demo { dir, duration } => cmd_demo(dir, duration),
        Command::Trigger { server, no_wait } => cmd_trigger(&cli.config, &server, no_wait),
        Command::History {
            server,
            limit,
            format,
        } => cmd_history(&cli.config, server.as_deref(), limit, format),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::FAILED
        })
}

fn cmd_simulate(listen: std::net::SocketAddr, scenario: Option<&std::path::Path>) -> u8 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(jellyfin_export_scheduler::sim::run_standalone(
        listen, scenario,
    )) {
        Ok(()) => exit::OK,
        Err(e @ jellyfin_export_scheduler::sim::SimError::Listen { .. }) => {
            eprintln!("error: {e}");
            exit::FAILED
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

fn cmd_run(path: &std::path::Path, log_format: Option<LogFormat>) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let format = log_format.unwrap_or(config.daemon.log_format);
    jellyfin_export_scheduler::logging::init(format, &config.daemon.log_level);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(run::run(path, config, format))
}

fn cmd_healthcheck(path: &std::path::Path) -> u8 {
    // It asks our own endpoint, no Jellyfin: no secrets needed.
    let config = match load_config_without_secrets(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match runtime() {
        Ok(rt) => rt.block_on(healthcheck::healthcheck(&config)),
        Err(code) => code,
    }
}

fn cmd_demo(dir: Option<PathBuf>, duration: std::time::Duration) -> u8 {
    jellyfin_export_scheduler::logging::init(LogFormat::Text, "info");
    match runtime() {
        Ok(rt) => rt.block_on(demo::demo(dir, duration)),
        Err(code) => code,
    }
}

fn cmd_trigger(path: &std::path::Path, server: &str, no_wait: bool) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Progress is the output here; logs (stderr) only say what goes wrong unless asked.
    jellyfin_export_scheduler::logging::init(LogFormat::Text, "warn");
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let live = stdout.is_terminal();
    rt.block_on(trigger::trigger(&config, server, no_wait, stdout, live))
}

fn cmd_history(
    path: &std::path::Path,
    server: Option<&str>,
    limit: usize,
    format: history::Format,
) -> u8 {
    // Local state only: the secrets may well be unreadable here (outside the service).
    match load_config_without_secrets(path) {
        Ok(config) => history::history(&config, server, limit, format, std::io::stdout().lock()),
        Err(code) => code,
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, u8> {
    report_load(Config::load(path))
}

fn load_config_without_secrets(path: &std::path::Path) -> Result<Config, u8> {
    report_load(Config::load_without_secrets(path))
}

fn report_load(
    loaded: Result<Config, jellyfin_export_scheduler::config::ConfigError>,
) -> Result<Config, u8> {
    match loaded {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(exit::USAGE)
        }
    }
}

fn cmd_check(
    path: &std::path::Path,
    no_secrets: bool,
    next: usize,
    after: Option<DateTime<Utc>>,
    format: check::Format,
) -> u8 {
    let env = jellyfin_export_scheduler::config::LoadEnv::process();
    let config = match check::load(path, &env, no_secrets) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            c
        }
        Err(text) => {
            eprintln!("{text}");
            return exit::USAGE;
        }
    };
    let out = check::report(&config, after.unwrap_or_else(Utc::now), next, format);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => exit::OK,
        // A closed pipe (`check | head`) is not worth a panic.
        Err(_) => exit::FAILED,
    }
}
