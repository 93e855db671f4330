//! `demo`: the product working on a machine with no Jellyfin, in one command.
//!
//! It serves a simulated fleet in-process (one server exports fine, one ends with an ERROR
//! line in its export log, one is slow and times out, one is in Import mode and is
//! refused), writes a real config file and state directory into a folder, runs the real
//! daemon on schedules every 15 seconds for a minute (or until Ctrl-C), then prints the
//! history. The folder stays, so `history --config <folder>/config.toml` works afterwards.

use super::exit;
use super::history::format_table;
use crate::config::Config;
use crate::daemon;
use crate::history::History;
use crate::record::RunRecord;
use crate::signals::{SignalEvent, SignalEvents};
use crate::sim::{Mode, RunOutcome, SimServerConfig, Simulator};
use crate::state::{StateDir, write_private_file};
use std::path::{Path, PathBuf};
use std::time::Duration;
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

fn config_text(sim: &Simulator, state: &Path) -> String {
    let mut t = format!(
        "# Written by `jellyfin-export-scheduler demo`: four simulated servers, exports every 15 s.\n\
         [daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n\n\
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

/// Run the demo; logging must already be set up.
pub async fn demo(dir: Option<PathBuf>, duration: Duration) -> u8 {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "jellyfin-export-scheduler-demo-{}",
            std::process::id()
        ))
    });
    let state_dir = dir.join("state");
    let config_path = dir.join("config.toml");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!(
            "error: cannot create the demo folder {}: {e}",
            dir.display()
        );
        return exit::FAILED;
    }
    let sim = match Simulator::start(([127, 0, 0, 1], 0).into(), fleet()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulated Jellyfin: {e}");
            return exit::FAILED;
        }
    };
    if let Err(e) = write_private_file(&config_path, config_text(&sim, &state_dir).as_bytes()) {
        eprintln!("error: cannot write {}: {e}", config_path.display());
        return exit::FAILED;
    }
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the demo config is invalid (a bug):\n{e}");
            return exit::FAILED;
        }
    };
    let state = match StateDir::open(&state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let mut signals = SignalEvents::register().ok();
    println!(
        "Demo: a simulated Jellyfin fleet on {} and the real daemon, exports every 15 s, for {}.\n\
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
    sim.shutdown().await;

    let history = History::new(&state);
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
        "\nThe same, any time later:\n  jellyfin-export-scheduler history --config {}",
        config_path.display()
    );
    exit::OK
}
