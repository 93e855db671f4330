//! What archiving a big export costs in memory (issue #15): `cargo bench --bench
//! archive_rss` prints ONE markdown table; `cargo bench --bench archive_rss -- 100` sizes
//! the ZIP in MiB (default 500).
//!
//! A simulated Jellyfin (in this process) stores a ZIP of that size (stored entries, as the
//! simulator writes them; its base64 in `LastExportZipBase64` is 4/3 of that). The real
//! binary (`CARGO_BIN_EXE_…`) then runs `trigger big` against it three times, each on a fresh
//! state directory: with `[archive] enabled = false` (the verify read still reads the
//! whole configuration, skipping the ZIP's characters), with the archive on (the same
//! read decodes the ZIP, checks it and writes it to disk), and on with age encryption to
//! one X25519 recipient. Its peak RSS is `VmHWM` from
//! `/proc/PID/status`, polled every 10 ms until it exits (a high-water mark, so a poll
//! misses nothing but the last 10 ms). The table says how much the archive adds.

use jellyfin_export_scheduler::sim::{SimServerConfig, Simulator};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jellyfin-export-scheduler");
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn main() -> ExitCode {
    let mib: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("the argument is the ZIP's size in MiB"))
        .unwrap_or(500);
    match bench(mib) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("archive_rss: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How the run keeps its export.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    On,
    /// On, age-encrypted to one X25519 recipient.
    Encrypted,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
            Mode::Encrypted => "on, age-encrypted",
        }
    }

    fn table(self) -> String {
        match self {
            Mode::Off => "enabled = false".into(),
            Mode::On => "enabled = true".into(),
            Mode::Encrypted => format!(
                "enabled = true\nencrypt_to = [\"{}\"]",
                age::x25519::Identity::generate().to_public()
            ),
        }
    }
}

struct Row {
    mode: Mode,
    seconds: f64,
    peak_kib: u64,
    file_bytes: Option<u64>,
}

fn bench(mib: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let zip_bytes = mib * 1024 * 1024;
    let mut cfg = SimServerConfig::new("big", KEY);
    cfg.start_delay = Duration::from_millis(50);
    cfg.run_length = Duration::from_millis(300);
    cfg.result_delay = Duration::from_millis(50);
    cfg.zip_base64_len = usize::try_from(zip_bytes.div_ceil(3) * 4).map_err(|e| e.to_string())?;
    let sim = runtime
        .block_on(Simulator::start("127.0.0.1:0".parse().unwrap(), vec![cfg]))
        .map_err(|e| format!("the simulator does not start: {e}"))?;
    let url = sim.url("big");
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for (i, mode) in [Mode::Off, Mode::On, Mode::Encrypted]
        .into_iter()
        .enumerate()
    {
        let dir = scratch.path().join(i.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let config = write_config(&dir, &url, mode)?;
        // The simulator serves from this process's runtime while the child runs.
        let row = runtime.block_on(async {
            tokio::task::spawn_blocking(move || measure(&config, &dir, mode))
                .await
                .map_err(|e| e.to_string())?
        })?;
        rows.push(row);
    }
    print_table(mib, &rows);
    Ok(())
}

fn write_config(dir: &Path, url: &str, mode: Mode) -> Result<PathBuf, String> {
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[archive]\n{}\n\n[[servers]]\nname = \"big\"\nurl = \"{url}\"\napi_key = \"{KEY}\"\nschedule = \"@daily\"\ntimezone = \"UTC\"\npoll_interval = \"100ms\"\nrequest_timeout = \"600s\"\nretries = 0\n",
        dir.join("state").display(),
        mode.table()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
}

fn measure(config: &Path, dir: &Path, mode: Mode) -> Result<Row, String> {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("trigger")
        .arg("big")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {BIN}: {e}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            return Err("trigger did not end within 15 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        return Err(format!(
            "trigger (archive {}) ended with {status}: {err}",
            mode.label()
        ));
    }
    let folder = dir.join("state").join("archive").join("big");
    let file_bytes = std::fs::read_dir(&folder).ok().and_then(|d| {
        d.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
    });
    if mode != Mode::Off && file_bytes.is_none() {
        return Err(format!("no archive file in {}", folder.display()));
    }
    Ok(Row {
        mode,
        seconds,
        peak_kib,
        file_bytes,
    })
}

fn print_table(mib: u64, rows: &[Row]) {
    println!(
        "`trigger` against a simulated server whose export ZIP is {mib} MiB ({}):\n",
        machine()
    );
    println!("| archive | wall time | peak RSS (VmHWM) | archive file |");
    println!("|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.1} MiB | {} |",
            r.mode.label(),
            r.seconds,
            r.peak_kib as f64 / 1024.0,
            r.file_bytes.map_or_else(
                || "-".to_owned(),
                |b| format!("{:.1} MiB", b as f64 / 1048576.0)
            )
        );
    }
    if let [off, rest @ ..] = rows {
        for r in rest {
            println!(
                "\nArchiving ({}) adds {:.1} MiB to the peak RSS for a {mib} MiB export.",
                r.mode.label(),
                (r.peak_kib as f64 - off.peak_kib as f64) / 1024.0
            );
        }
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, {}", chrono::Utc::now().format("%Y-%m-%d"))
}
