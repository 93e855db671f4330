//! `demo`: the product working on a machine with no Jellyfin, in one command.
//!
//! It serves a simulated fleet in-process (one server exports fine, one ends with an ERROR
//! line in its export log, one is slow and times out, one is in Import mode and is
//! refused), writes a real config file and state directory into a folder, runs the real
//! daemon on schedules every 15 seconds for a minute (or until Ctrl-C), then prints the
//! history. The folder stays, so `history --config <folder>/config.toml` works afterwards.
//! The status page is served on a free loopback port while the demo runs; its URL is
//! printed at the start and with the summary.

use super::history::format_table;
use super::{CommandError, Verdict};
use crate::config::{Config, ConfigError};
use crate::daemon;
use crate::endpoint;
use crate::history::History;
use crate::record::RunRecord;
use crate::signals::{SignalEvent, SignalEvents};
use crate::sim::{Mode, RunOutcome, SimServerConfig, Simulator};
use crate::state::{StateDir, StateError, write_private_file};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

const DEMO_KEY: &str = "demo-key-0123456789abcdef01234567";

fn fleet() -> Vec<SimServerConfig> {
    let server = |name: &str, f: &dyn Fn(&mut SimServerConfig)| {
        let mut c = SimServerConfig::new(name, DEMO_KEY);
        c.start_delay = Duration::from_millis(300);
        c.run_length = Duration::from_secs(4);
        c.zip_base64_len = 16 * 1024;
        f(&mut c);
        c
    };
    vec![
        server("living-room", &|_| {}),
        server("basement", &|c| {
            c.outcome = RunOutcome::CompletedWithLogError;
            c.error_message =
                "cannot write watch_history/alice.json: No space left on device".into();
        }),
        server("attic", &|c| c.run_length = Duration::from_secs(120)),
        server("garage", &|c| c.mode = Mode::Import),
    ]
}

fn config_text(sim: &Simulator, state: &Path, listen: SocketAddr) -> String {
    let mut t = format!(
        "# Written by `jellyfin-export-scheduler demo`: four simulated servers, exports every 15 s.\n\
         [daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\nlisten = \"{listen}\"\n\n\
         [defaults]\nschedule = \"*/15 * * * * *\"\ntimezone = \"UTC\"\npoll_interval = \"1s\"\nstart_grace = \"10s\"\nretries = 1\nretry_backoff = \"1s\"\n",
        state.display()
    );
    for (name, comment, extra) in [
        ("living-room", "exports fine", ""),
        (
            "basement",
            "ends Completed, but its export log has an ERROR: line",
            "",
        ),
        (
            "attic",
            "a slow export: cancelled after its 8 s timeout",
            "timeout = \"8s\"\n",
        ),
        ("garage", "the plugin is in Import mode: refused", ""),
    ] {
        t.push_str(&format!(
            "\n# {comment}\n[[servers]]\nname = \"{name}\"\nurl = \"{}\"\napi_key = \"{DEMO_KEY}\"\n{extra}",
            sim.url(name)
        ));
    }
    t
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create the demo folder {}: {source}", dir.display())]
    Folder { dir: PathBuf, source: io::Error },
    #[error("cannot start the simulated Jellyfin: {0}")]
    Simulator(io::Error),
    #[error("{0}")]
    StatusPage(endpoint::BindError),
    #[error("cannot write {}: {source}", path.display())]
    WriteConfig { path: PathBuf, source: io::Error },
    #[error("the demo config is invalid (a bug):\n{0}")]
    Config(ConfigError),
    #[error("{0}")]
    State(StateError),
}

/// Run the demo; logging must already be set up.
pub async fn demo(dir: Option<PathBuf>, duration: Duration) -> Result<Verdict, CommandError> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "jellyfin-export-scheduler-demo-{}",
            std::process::id()
        ))
    });
    let state_dir = dir.join("state");
    let config_path = dir.join("config.toml");
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Folder {
        dir: dir.clone(),
        source,
    })?;
    let sim = Simulator::start(([127, 0, 0, 1], 0).into(), fleet())
        .await
        .map_err(DemoError::Simulator)?;
    // A free loopback port, written into the config so that `healthcheck --config` finds
    // it while the demo runs.
    let listener = endpoint::bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(DemoError::StatusPage)?;
    let listen = listener.local_addr().map_err(|source| {
        DemoError::StatusPage(endpoint::BindError {
            addr: ([127, 0, 0, 1], 0).into(),
            source,
        })
    })?;
    let page = format!("http://{listen}/");
    write_private_file(
        &config_path,
        config_text(&sim, &state_dir, listen).as_bytes(),
    )
    .map_err(|source| DemoError::WriteConfig {
        path: config_path.clone(),
        source,
    })?;
    let config = Config::load(&config_path).map_err(DemoError::Config)?;
    let state = StateDir::open(&state_dir).map_err(DemoError::State)?;
    let mut signals = SignalEvents::register().ok();
    println!(
        "Demo: a simulated Jellyfin fleet on {} and the real daemon, exports every 15 s, for {}.\n\
         Status page: {page}\n\
         Config: {}\nState:  {}\n\
         living-room exports fine; basement's export log has an ERROR line; attic is too slow \
         and times out; garage is in Import mode and is refused.\n\
         Press Ctrl-C to stop early. Logs follow on stderr.\n",
        sim.addr(),
        humantime::format_duration(duration),
        config_path.display(),
        state_dir.display()
    );
    let handle = daemon::start(config.clone(), state.clone()).await;
    let history = Arc::new(History::new(&state));
    let page_stop = CancellationToken::new();
    tokio::spawn(endpoint::serve(
        listener,
        endpoint::Sources {
            status: handle.status.clone(),
            heartbeat_limit: daemon::heartbeat_limit(),
            history: crate::records::Records::Files(history.clone()),
        },
        // On loopback, for the person running the demo: no token.
        endpoint::Policy::for_process(None),
        page_stop.clone(),
    ));
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = async {
            match signals.as_mut() {
                Some(s) => while s.next().await != Some(SignalEvent::Shutdown) {},
                None => std::future::pending::<()>().await,
            }
        } => info!("Ctrl-C: stopping the demo"),
    }
    handle.shutdown();
    handle.wait().await;
    page_stop.cancel();
    sim.shutdown().await;

    let mut records: Vec<RunRecord> = config
        .servers
        .iter()
        .flat_map(|s| {
            history
                .read(&s.name)
                .map(|r| r.into_records())
                .unwrap_or_default()
        })
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.triggered_at));
    println!("\nHistory ({} runs), newest first:\n", records.len());
    print!("{}", format_table(&records, |_| chrono_tz::UTC));
    println!(
        "\nThe status page was served at {page} while the demo ran.\n\
         The history, any time later:\n  jellyfin-export-scheduler history --config {}",
        config_path.display()
    );
    print_archive(&config, &state_dir);
    Ok(Verdict::Fine)
}

/// The archive folder the demo filled: each server's files, with their sizes.
fn print_archive(config: &Config, state_dir: &Path) {
    let root = state_dir.join("archive");
    println!("\nArchive of verified exports ({}):", root.display());
    for s in &config.servers {
        let Some(keeper) = crate::runner::keeper(s, state_dir, "") else {
            continue;
        };
        let files = crate::archive::store::list(&keeper.dir, &s.name).unwrap_or_default();
        println!(
            "  {}/ ({} file{})",
            s.name,
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        for f in files {
            let name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!("    {name}  {}", crate::record::format_bytes(f.bytes));
        }
    }
    println!(
        "Check them against the history:\n  jellyfin-export-scheduler archive verify --config {}",
        config.path.display()
    );
}
