//! The performance benchmark of issues #7 and #17: `cargo bench --bench fleet` prints the
//! machine, the date and ONE markdown table. It takes about 17 minutes once built, of
//! which the 10 000-server fleet row (its runs are spread over 10 minutes) takes 12;
//! `cargo bench --bench fleet -- precision fleet idle idle10k` runs only the parts named
//! (`precision`, `fleet`, `fleet10k`, `idle`, `idle10k`), about 4 minutes without
//! `fleet10k`. `JES_BENCH_KEEP=1` keeps each part's scratch folder (config, daemon log,
//! state) under `$TMPDIR` to look at. `JES_BENCH_DAEMON=<path>` runs another build of the
//! daemon (an older one, to compare); `JES_BENCH_DAEMON_UNDER="perf record -g -o FILE"`
//! (or `env LD_PRELOAD=…/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=FILE`) runs the
//! daemon under a profiler, with its due instant and deadlines five times further off,
//! and stops it with SIGTERM so the profiler writes its data. (valgrind cannot run it:
//! rustix's vDSO lookup faults under valgrind.) `JES_BENCH_TIMELINE=<file>` has the
//! fleet rows' simulator write every request it received to that file, a line each
//! (`<arrival, ns since the epoch> <server> <endpoint>`): which requests share the
//! second the fleet is due with the starts.
//!
//! Every scenario runs in a child process of its own, so that its CPU seconds (`utime` +
//! `stime` from `/proc/PID/stat`, all threads) and its peak RSS (`VmHWM` from
//! `/proc/PID/status`) are its own and not the sum of everything before it. This binary
//! re-executes itself (`fleet child …`) for the pieces it runs itself, and starts the
//! real `jellyfin-export-scheduler run` (the binary cargo builds with the bench,
//! `CARGO_BIN_EXE_…`) for the daemon. Children that hold many sockets are started through
//! `sh -c 'ulimit -n <hard limit>; exec …'`, since 1000 servers need over 1000 descriptors
//! on each side; the limit in force is printed.
//!
//! # 1. Fire precision (`child precision ours|tcs N`)
//!
//! N jobs, each due every second (`* * * * * *`, UTC), and a callback that notes the wall
//! clock when it runs. The measured window holds the 10 due instants `T0 … T0+9 s` (`T0` a
//! whole second at least 2 s after every job is armed); fires are collected until
//! `T0 + 11.5 s` so that a late fire of `T0+9 s` still counts.
//!
//! - **ours**: one tokio task per job running the daemon's own loop: the public
//!   `daemon::next_fire` (croner's `Schedule::next_after` + jitter, 0 here) and
//!   `daemon::sleep_until_due` (tokio sleeps capped at 30 s, wall clock read after each),
//!   exactly as `server_loop` calls them, with the callback where the loop calls
//!   `dispatch`. The delay is from the due instant `next_fire` returned to the callback.
//! - **tcs**: tokio-cron-scheduler 0.15 (`JobScheduler`, `Job::new_async`), a
//!   dev-dependency used only here. Its callback is not told which instant it is for, so a
//!   fire is attributed to the whole second at or before it (the library never fires early,
//!   and its delays stay well under a second).
//!
//! Fires seen / due counts the distinct (job, due instant) pairs of the window that fired.
//! p50 / p99 / max are over every fire of the window (nearest rank). CPU seconds are those
//! of the child from `T0 − 0.5 s` to `T0 + 9.5 s` (the 10 s holding the 10 rounds of
//! fires, not the set-up); peak RSS is the child's whole life. Both engines run on the
//! multi-threaded tokio runtime the daemon uses (one worker per core).
//!
//! # 2. Fleet end to end
//!
//! Two rows: 1000 servers all due the same second (`fleet`), and 10 000 servers due the
//! same second but spread over 10 minutes by `jitter = "600s"` (`fleet10k`). What differs
//! for the second is said at the end of this section.
//!
//! - The simulator (`child sim N`) serves N servers under `/s/<name>` in a child of
//!   its own, so its work is not counted as the daemon's. Each export runs 2 s
//!   (`run_length`), `start_delay` is 0 (Jellyfin shows the run as started at once, so
//!   nothing of the simulator's own delay enters the daemon's tracking); everything else is
//!   the simulator's default (a 200 ms `result_delay`, a 64 KiB `LastExportZipBase64` in
//!   the plugin configuration, which the verification streams to the archive). The
//!   simulator keeps the arrival time of every start request (`SimHandle::start_requests`,
//!   its wall clock on arrival, before auth); when its standard input closes it prints
//!   them and exits.
//! - The daemon is the real binary, `run --config` on a generated config: N servers, all
//!   due at the same whole second `D` (`S M H * * *`, UTC, `D` = 12 s after launch),
//!   `max_concurrent_runs = N`, `poll_interval = "1s"`, everything else default (text
//!   logs at `info` to a file, `listen = ""` to keep port 9810 free, the archive on in
//!   `<state_dir>/archive`). Its state directory is fresh, under `$TMPDIR`, so this is a
//!   first start (no catch-up).
//! - Start latency: for each server, the arrival of its start request minus its fire
//!   instant (`D` plus its jitter, computed with the daemon's own `daemon::next_fire`).
//! - All recorded: when the last of the 1000 history files got its record (the newest
//!   file `mtime`), minus `D`; the bench polls the file sizes every 200 ms only to know when
//!   to stop. "After the last export end" subtracts the latest `finished_at` (Jellyfin's
//!   end time, from the simulator's clock).
//! - Right outcome: records with `outcome = completed`, `trigger = schedule` and
//!   `scheduled_for = D`, exactly one record and one start request per server.
//! - CPU seconds: the daemon's, from "schedules armed" to the last record (the start-up
//!   before it, config parse and arming 1000 loops, is given apart in the notes).
//!   Peak RSS: the daemon's `VmHWM` at the end. Threads: the most `/proc/PID/status`
//!   showed, looked at every 50 ms.
//! - The 10 000-server row: `D` is 40 s after launch; the notes give the wall time from
//!   launch to "schedules armed" (config load and arming) and the CPU per run; the goal
//!   is every run recorded once in at most 128 MiB.
//!
//! # 3. Idle
//!
//! The real daemon with 1000 (`idle`) or 10 000 (`idle10k`) servers due daily at a time
//! hours away (their URLs point
//! at a closed port and are never contacted): CPU seconds over 60 s from "schedules
//! armed", which include the loops' 30 s wake-ups by design, and the daemon's RSS (peak
//! and current) at the end.

use chrono::{DateTime, SubsecRound, TimeDelta, Timelike, Utc};
use jellyfin_export_scheduler::daemon::{next_fire, sleep_until_due};
use jellyfin_export_scheduler::schedule::Schedule;
use jellyfin_export_scheduler::sim::{SimServerConfig, Simulator};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_jellyfin-export-scheduler");
/// Job counts of part 1.
const PRECISION_JOBS: [usize; 3] = [1, 100, 1000];
/// Due instants in part 1's window.
const WINDOW_DUES: i64 = 10;
/// Part 2: how long each simulated export runs.
const EXPORT_LENGTH: Duration = Duration::from_secs(2);
/// Part 2 gives up this long after the last fire.
const FLEET_DEADLINE: TimeDelta = TimeDelta::seconds(90);
/// The servers of part 3's rows.
const IDLE_SERVERS: [usize; 2] = [1000, 10_000];
/// Part 3: how long the idle daemon is watched.
const IDLE_FOR: Duration = Duration::from_secs(60);
const API_KEY: &str = "0123456789abcdef0123456789abcdef";

type BenchResult<T> = Result<T, String>;

/// One end-to-end scenario of part 2.
#[derive(Clone, Copy)]
struct FleetCase {
    /// The name that selects it on the command line.
    part: &'static str,
    servers: usize,
    /// `jitter`: each server fires at the due instant plus its own offset below this.
    spread: Duration,
    /// The due instant is this long after the daemon is launched; it must be armed by
    /// then, which the bench checks.
    lead: TimeDelta,
}

/// 1000 servers due the same second.
const FLEET_1000: FleetCase = FleetCase {
    part: "fleet",
    servers: 1000,
    spread: Duration::ZERO,
    lead: TimeDelta::seconds(12),
};
/// 10 000 servers due the same second, spread over 10 minutes by `jitter`: the row takes
/// over 10 minutes.
const FLEET_10K: FleetCase = FleetCase {
    part: "fleet10k",
    servers: 10_000,
    spread: Duration::from_secs(600),
    lead: TimeDelta::seconds(40),
};

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and maybe a filter) to a harness-less bench.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("child") => child(&args[1..]),
        // `cargo bench --bench fleet -- fleet idle` runs only those parts.
        _ => orchestrate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent: runs the scenarios one after the other and prints the table.

fn orchestrate(parts: &[String]) -> BenchResult<()> {
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let started = Instant::now();
    println!("{}", machine_info());
    let mut rows = Vec::new();
    for n in PRECISION_JOBS.into_iter().filter(|_| wanted("precision")) {
        eprintln!("fleet bench: part 1, N = {n}");
        let ours = run_precision_child("ours", n)?;
        let tcs = run_precision_child("tcs", n)?;
        rows.push(precision_row("our schedule loop", n, &ours, None));
        let ratio = tcs.p99 / ours.p99.max(0.001);
        rows.push(precision_row(
            "tokio-cron-scheduler 0.15",
            n,
            &tcs,
            Some(ratio),
        ));
    }
    for case in [FLEET_1000, FLEET_10K] {
        if wanted(case.part) {
            eprintln!(
                "fleet bench: part 2, {} servers spread over {} s",
                case.servers,
                case.spread.as_secs()
            );
            rows.push(fleet(case)?.row());
        }
    }
    for n in IDLE_SERVERS {
        let part = if n == 1000 { "idle" } else { "idle10k" };
        if wanted(part) {
            eprintln!(
                "fleet bench: part 3, {n} servers idle for {} s",
                IDLE_FOR.as_secs()
            );
            rows.push(idle(n)?.row());
        }
    }
    println!("{}", table(&rows));
    println!(
        "\n(bench took {:.0} s; ticks per second {})",
        started.elapsed().as_secs_f64(),
        clock_ticks()
    );
    Ok(())
}

fn machine_info() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read_trim("/proc/sys/kernel/osrelease");
    let load = read_trim("/proc/loadavg");
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "date: {}\nmachine: {cores} cores (nproc), {cpu}, Linux {kernel}\nload average at start: {load}\n{rustc}, release profile\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// One line of the table: the cells in [`HEADER`]'s order.
struct Row(Vec<String>);

const HEADER: [&str; 12] = [
    "part",
    "subject",
    "N",
    "correct",
    "p50 ms",
    "p99 ms",
    "max ms",
    "CPU s",
    "peak RSS MiB",
    "goal",
    "met",
    "notes",
];

fn table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.0.join(" | "));
    }
    out
}

fn yes_no(ok: bool) -> String {
    if ok { "yes" } else { "**no**" }.into()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

// --- part 1 ----------------------------------------------------------------------------

struct Precision {
    seen: u64,
    due: u64,
    p50: f64,
    p99: f64,
    max: f64,
    cpu: f64,
    hwm_kib: u64,
}

fn run_precision_child(engine: &str, n: usize) -> BenchResult<Precision> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let out = Command::new(exe)
        .args(["child", "precision", engine, &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the precision child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "precision child {engine} {n} failed ({}): {text}",
            out.status
        ));
    }
    let r = parse_result(&text)?;
    let f = |k: &str| -> BenchResult<f64> {
        r.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("precision child {engine} {n}: no {k} in {text:?}"))
    };
    Ok(Precision {
        seen: f("seen")? as u64,
        due: f("due")? as u64,
        p50: f("p50")?,
        p99: f("p99")?,
        max: f("max")?,
        cpu: f("cpu")?,
        hwm_kib: f("hwm_kib")? as u64,
    })
}

fn precision_row(subject: &str, n: usize, p: &Precision, ratio: Option<f64>) -> Row {
    let ours_at_1000 = ratio.is_none() && n == 1000;
    let (goal, met) = if ours_at_1000 {
        (
            "no missed fire, p99 ≤ 5 ms".to_owned(),
            yes_no(p.seen == p.due && p.p99 <= 5.0),
        )
    } else {
        (String::new(), String::new())
    };
    // Its ticker sleeps 500 ms between looks, in a phase set by when it started.
    let notes = ratio.map_or_else(String::new, |r| {
        format!("p99 {r:.0}× ours; polls every 500 ms, so its delay is its tick's phase (0–500 ms, random per run) plus the work")
    });
    Row(vec![
        "1 fire precision".into(),
        subject.into(),
        n.to_string(),
        format!("{} / {} fires", p.seen, p.due),
        format!("{:.1}", p.p50),
        format!("{:.1}", p.p99),
        format!("{:.1}", p.max),
        format!("{:.2}", p.cpu),
        mib(p.hwm_kib),
        goal,
        met,
        notes,
    ])
}

// --- part 2 ----------------------------------------------------------------------------

struct Fleet {
    case: FleetCase,
    starts_ok: usize,
    outcomes_ok: usize,
    /// Servers with exactly one record.
    recorded_once: usize,
    records: usize,
    p50: f64,
    p99: f64,
    max: f64,
    all_recorded: f64,
    last_export_end: f64,
    /// Launch to "schedules armed", wall clock seconds (config load and arming).
    armed_after: f64,
    cpu_startup: f64,
    cpu_runs: f64,
    hwm_kib: u64,
    peak_threads: u64,
    /// The simulator's CPU seconds over its whole life (it shares the cores).
    sim_cpu: String,
    nofile: String,
}

impl Fleet {
    fn row(&self) -> Row {
        let n = self.case.servers;
        let after_end = self.all_recorded - self.last_export_end;
        let right = self.outcomes_ok == n && self.recorded_once == n && self.starts_ok == n;
        let same_second = self.case.spread.is_zero();
        let (subject, goal, ok) = if same_second {
            (
                "daemon (`run`) → simulator, all due the same second: due → start request",
                "p99 ≤ 250 ms; all recorded ≤ 5 s after the last export end; RSS ≤ 64 MiB",
                self.p99 <= 250.0 && after_end <= 5.0 && self.hwm_kib <= 64 * 1024 && right,
            )
        } else {
            (
                "daemon (`run`) → simulator, due spread over 10 min by `jitter`: fire instant → start request",
                "every run recorded once; RSS ≤ 128 MiB",
                self.hwm_kib <= 128 * 1024 && right,
            )
        };
        Row(vec![
            "2 fleet end to end".into(),
            subject.into(),
            n.to_string(),
            format!(
                "{} / {n} records completed; {} / {n} recorded once; {} / {n} one start",
                self.outcomes_ok, self.recorded_once, self.starts_ok
            ),
            format!("{:.0}", self.p50),
            format!("{:.0}", self.p99),
            format!("{:.0}", self.max),
            format!("{:.2}", self.cpu_runs),
            mib(self.hwm_kib),
            goal.into(),
            yes_no(ok),
            format!(
                "{} records; all recorded at due + {:.2} s, last export ended at due + {:.2} s → {after_end:.2} s after; CPU per run {:.2} ms; config load and arming {:.2} s (CPU {:.2} s); daemon threads at most {}; simulator CPU {} s; open files limit {}",
                self.records,
                self.all_recorded,
                self.last_export_end,
                self.cpu_runs * 1000.0 / n as f64,
                self.armed_after,
                self.cpu_startup,
                self.peak_threads,
                self.sim_cpu,
                self.nofile
            ),
        ])
    }
}

fn fleet(case: FleetCase) -> BenchResult<Fleet> {
    let n = case.servers;
    let dir = BenchDir::new(case.part)?;
    // The simulator, in a child of its own.
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut sim = Guard(
        many_files(&exe)
            .args(["child", "sim", &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the simulator child: {e}"))?,
    );
    let mut sim_out = BufReader::new(sim.0.stdout.take().ok_or("no simulator stdout")?);
    let mut line = String::new();
    sim_out
        .read_line(&mut line)
        .map_err(|e| format!("simulator: {e}"))?;
    let addr = line
        .strip_prefix("ADDR ")
        .map(str::trim)
        .ok_or_else(|| format!("the simulator said {line:?} instead of its address"))?
        .to_owned();

    let due = Utc::now().trunc_subsecs(0) + case.lead * slowdown();
    let schedule = format!("{} {} {} * * *", due.second(), due.minute(), due.hour());
    let config = daemon_config(&dir.0, n, &schedule, case.spread, |name| {
        format!("http://{addr}/s/{name}")
    })?;
    let launched = Instant::now();
    let daemon = Daemon::launch(&dir.0, &config)?;
    let armed = daemon.wait_armed()?;
    let armed_after = launched.elapsed().as_secs_f64();
    if armed > due - TimeDelta::seconds(1) {
        return Err(format!(
            "the daemon was armed only at {armed}, too close to the due instant {due}: raise the case's lead"
        ));
    }
    let cpu_armed = daemon.usage()?.cpu;
    let fires = fire_instants(n, &schedule, case.spread, due)?;
    let last_fire = fires.values().copied().max().unwrap_or(due);

    let history = dir.0.join("state/history");
    let deadline = last_fire + FLEET_DEADLINE * slowdown();
    let peak_threads = wait_recorded(&daemon, &history, n, deadline)?;
    let end = daemon.usage()?;
    let nofile = daemon.nofile();
    daemon.stop();

    // The simulator's start arrivals: it prints them when its stdin closes.
    drop(sim.0.stdin.take());
    let (arrivals, sim_text) = read_arrivals(sim_out)?;
    let mut latencies = Vec::new();
    let mut starts_ok = 0;
    for name in server_names(n) {
        let a = arrivals.get(&name).map_or(&[][..], Vec::as_slice);
        if a.len() == 1 {
            starts_ok += 1;
        }
        let fire = fires.get(&name).copied().unwrap_or(due);
        latencies.extend(a.iter().map(|t| ms(*t - fire)));
    }
    latencies.sort_by(f64::total_cmp);

    let sim_usage = parse_result(&sim_text)?;
    let sim_cpu = sim_usage.get("cpu").cloned().unwrap_or_default();
    let summary = read_records(&history, due)?;
    Ok(Fleet {
        case,
        starts_ok,
        outcomes_ok: summary.ok,
        recorded_once: summary.once,
        records: summary.records,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        all_recorded: summary
            .last_written
            .map_or(f64::NAN, |t| ms(t - due) / 1000.0),
        last_export_end: summary.last_end.map_or(f64::NAN, |t| ms(t - due) / 1000.0),
        armed_after,
        cpu_startup: cpu_armed,
        cpu_runs: end.cpu - cpu_armed,
        hwm_kib: end.hwm_kib,
        peak_threads,
        sim_cpu,
        nofile,
    })
}

/// Each server's fire instant (`due` plus its jitter), as the daemon's loop computes it.
fn fire_instants(
    n: usize,
    schedule: &str,
    spread: Duration,
    due: DateTime<Utc>,
) -> BenchResult<HashMap<String, DateTime<Utc>>> {
    let schedule = Schedule::parse(schedule, chrono_tz::UTC).map_err(|e| e.to_string())?;
    server_names(n)
        .map(
            |name| match next_fire(&schedule, &name, spread, due - TimeDelta::seconds(1)) {
                Some((d, fire)) if d == due => Ok((name, fire)),
                other => Err(format!("{name}: next_fire gave {other:?}, not {due}")),
            },
        )
        .collect()
}

/// Until `n` history files have a record (or `deadline`); meanwhile note the daemon's
/// peak thread count (every 50 ms). Returns that peak.
fn wait_recorded(
    daemon: &Daemon,
    history: &Path,
    n: usize,
    deadline: DateTime<Utc>,
) -> BenchResult<u64> {
    let mut peak_threads = 0;
    // Listing 10 000 files costs: look at the folder about every 200 ms per 1000.
    let every = (n / 1000).max(1) as u64 * 4;
    for tick in 0u64.. {
        peak_threads = peak_threads.max(daemon.usage()?.threads);
        if tick % every == 0 {
            let recorded = count_recorded(history);
            if recorded >= n {
                break;
            }
            if Utc::now() > deadline {
                eprintln!(
                    "fleet bench: only {recorded} of {n} records at the deadline; reporting what there is"
                );
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(peak_threads)
}

/// Per server, when its start requests arrived at the simulator.
type Arrivals = HashMap<String, Vec<DateTime<Utc>>>;

/// The simulator's `START` lines (per server, the start requests' arrivals) and its
/// `RESULT` line.
fn read_arrivals(sim_out: impl BufRead) -> BenchResult<(Arrivals, String)> {
    let mut arrivals = Arrivals::new();
    let mut sim_text = String::new();
    for line in sim_out.lines() {
        let line = line.map_err(|e| format!("simulator: {e}"))?;
        if line.starts_with("RESULT ") {
            sim_text = line;
            continue;
        }
        let mut parts = line.split_whitespace();
        if let (Some("START"), Some(name), Some(nanos)) = (parts.next(), parts.next(), parts.next())
        {
            let nanos: i64 = nanos.parse().map_err(|e| format!("{line:?}: {e}"))?;
            arrivals
                .entry(name.to_owned())
                .or_default()
                .push(DateTime::from_timestamp_nanos(nanos));
        }
    }
    Ok((arrivals, sim_text))
}

fn count_recorded(history: &Path) -> usize {
    std::fs::read_dir(history).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            .count()
    })
}

/// What the history files hold.
struct RecordSummary {
    records: usize,
    /// Records with the right outcome.
    ok: usize,
    /// Files with exactly one record.
    once: usize,
    /// The latest `finished_at`.
    last_end: Option<DateTime<Utc>>,
    /// The latest write (file `mtime`).
    last_written: Option<DateTime<Utc>>,
}

fn read_records(history: &Path, due: DateTime<Utc>) -> BenchResult<RecordSummary> {
    let mut sum = RecordSummary {
        records: 0,
        ok: 0,
        once: 0,
        last_end: None,
        last_written: None,
    };
    let entries = std::fs::read_dir(history).map_err(|e| format!("{}: {e}", history.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let written: DateTime<Utc> = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?
            .into();
        sum.last_written = sum.last_written.max(Some(written));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.lines().count() == 1 {
            sum.once += 1;
        }
        for line in text.lines() {
            sum.records += 1;
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
            let instant = |k: &str| {
                v[k].as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            if v["outcome"] == "completed"
                && v["trigger"] == "schedule"
                && instant("scheduled_for") == Some(due)
            {
                sum.ok += 1;
            }
            sum.last_end = sum.last_end.max(instant("finished_at"));
        }
    }
    Ok(sum)
}

// --- part 3 ----------------------------------------------------------------------------

struct Idle {
    servers: usize,
    cpu_startup: f64,
    cpu: f64,
    hwm_kib: u64,
    rss_kib: u64,
}

impl Idle {
    fn row(&self) -> Row {
        let per_minute = self.cpu * 60.0 / IDLE_FOR.as_secs_f64();
        // At 1000 servers the goals of issue #7; at 10 000 the CPU goal of issue #17.
        let (goal, ok) = if self.servers <= 1000 {
            (
                "≤ 0.05 CPU s per minute; RSS ≤ 32 MiB",
                per_minute <= 0.05 && self.hwm_kib <= 32 * 1024,
            )
        } else {
            ("≤ 0.2 CPU s per minute", per_minute <= 0.2)
        };
        Row(vec![
            "3 idle".into(),
            format!(
                "daemon (`run`), all daily, nothing due, {} s",
                IDLE_FOR.as_secs()
            ),
            self.servers.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!("{:.2}", self.cpu),
            mib(self.hwm_kib),
            goal.into(),
            yes_no(ok),
            format!(
                "RSS now {} MiB; start-up CPU {:.2} s (not counted)",
                mib(self.rss_kib),
                self.cpu_startup
            ),
        ])
    }
}

fn idle(n: usize) -> BenchResult<Idle> {
    let dir = BenchDir::new("idle")?;
    // Daily, at a whole minute about 12 hours from now: nothing is due while watched.
    let at = Utc::now() + TimeDelta::hours(12);
    let schedule = format!("0 {} {} * * *", at.minute(), at.hour());
    // Port 9 (discard) on loopback: never contacted, as nothing is due.
    let config = daemon_config(&dir.0, n, &schedule, Duration::ZERO, |name| {
        format!("http://127.0.0.1:9/s/{name}")
    })?;
    let daemon = Daemon::launch(&dir.0, &config)?;
    daemon.wait_armed()?;
    let start = daemon.usage()?;
    std::thread::sleep(IDLE_FOR);
    daemon.check_alive()?;
    let end = daemon.usage()?;
    Ok(Idle {
        servers: n,
        cpu_startup: start.cpu,
        cpu: end.cpu - start.cpu,
        hwm_kib: end.hwm_kib,
        rss_kib: end.rss_kib,
    })
}

// --- the daemon as a child process -----------------------------------------------------

fn server_names(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("s{i:04}"))
}

/// Write the daemon's config for `n` servers on `schedule` (UTC) with `jitter`; returns
/// its path.
fn daemon_config(
    dir: &Path,
    n: usize,
    schedule: &str,
    jitter: Duration,
    url: impl Fn(&str) -> String,
) -> BenchResult<PathBuf> {
    let mut text = format!(
        "[daemon]\nstate_dir = \"state\"\nmax_concurrent_runs = {n}\nlisten = \"\"\n\n\
         [defaults]\nschedule = \"{schedule}\"\ntimezone = \"UTC\"\npoll_interval = \"1s\"\njitter = \"{}s\"\n",
        jitter.as_secs()
    );
    for name in server_names(n) {
        let _ = write!(
            text,
            "\n[[servers]]\nname = \"{name}\"\nurl = \"{}\"\napi_key = \"{API_KEY}\"\n",
            url(&name)
        );
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    // An inline key in a file others can read is warned about; keep the log clean.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

struct Usage {
    cpu: f64,
    hwm_kib: u64,
    rss_kib: u64,
    threads: u64,
}

/// `pid` is a number or `self`.
fn usage(pid: &str) -> BenchResult<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = tick(14 - 3) + tick(15 - 3);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let number = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu: ticks as f64 / clock_ticks(),
        hwm_kib: number("VmHWM:"),
        rss_kib: number("VmRSS:"),
        threads: number("Threads:"),
    })
}

/// `USER_HZ`, the unit of `/proc/PID/stat`'s times (100 on every Linux we know).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `JES_BENCH_DAEMON_UNDER`: a command (split at white space) the daemon runs under, such
/// as `perf record -g -o /tmp/daemon.perf`.
fn daemon_under() -> Option<Vec<String>> {
    let words: Vec<String> = std::env::var("JES_BENCH_DAEMON_UNDER")
        .ok()?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// How much longer things take when the daemon runs under a profiler.
fn slowdown() -> i32 {
    if daemon_under().is_some() { 5 } else { 1 }
}

/// A command for `program` with the open-files limit raised to the hard limit.
fn many_files(program: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
        .arg("sh")
        .arg(program);
    c
}

/// A child killed when dropped (also when the bench fails half-way).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch folder under `$TMPDIR`, removed when dropped.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(what: &str) -> BenchResult<BenchDir> {
        let dir = std::env::temp_dir().join(format!(
            "jes-bench-{what}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_millis()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(BenchDir(dir))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        // JES_BENCH_KEEP=1 keeps the config, the daemon's log and its state to look at.
        if std::env::var_os("JES_BENCH_KEEP").is_some() {
            eprintln!("fleet bench: kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The real daemon binary, `run`, logging to `<dir>/daemon.log`.
struct Daemon {
    child: Guard,
    log: PathBuf,
}

impl Daemon {
    fn launch(dir: &Path, config: &Path) -> BenchResult<Daemon> {
        let log = dir.join("daemon.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        // `JES_BENCH_DAEMON`: another build of the daemon (an older one, to compare).
        let bin = std::env::var_os("JES_BENCH_DAEMON")
            .map_or_else(|| PathBuf::from(DAEMON_BIN), PathBuf::from);
        let mut command = match daemon_under() {
            Some(words) => {
                let mut c = many_files(Path::new(&words[0]));
                c.args(&words[1..]).arg(&bin);
                c
            }
            None => many_files(&bin),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Daemon {
            child: Guard(child),
            log,
        })
    }

    fn pid(&self) -> String {
        self.child.0.id().to_string()
    }

    /// SIGTERM, and wait (at most 5 minutes) for it to exit, so that a profiler it runs
    /// under writes its data; the guard kills it if it takes longer.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if matches!(self.child.0.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("fleet bench: the daemon did not stop within 5 minutes of SIGTERM; killed");
    }

    /// Until the log says "schedules armed"; returns when that was seen.
    fn wait_armed(&self) -> BenchResult<DateTime<Utc>> {
        let deadline = Instant::now() + Duration::from_secs(60) * slowdown() as u32;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("schedules armed") {
                return Ok(Utc::now());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "the daemon did not say \"schedules armed\" in time; its log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&self) -> BenchResult<()> {
        // A zombie still has /proc/PID, but no VmHWM line and state Z.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(format!("the daemon exited; its log:\n{log}"));
        }
        Ok(())
    }

    fn usage(&self) -> BenchResult<Usage> {
        self.check_alive()?;
        usage(&self.pid())
    }

    /// The soft open-files limit in force in the daemon.
    fn nofile(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
            })
            .unwrap_or_else(|| "unknown".into())
    }
}

// ---------------------------------------------------------------------------------------
// Children: each prints `RESULT key=value …` (or, for the simulator, its protocol).

fn child(args: &[String]) -> BenchResult<()> {
    // The simulator stands for servers that run elsewhere: one thread, so that it takes at
    // most one of the machine's cores from the daemon it serves.
    let mut builder = match args.first().map(String::as_str) {
        Some("sim") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let result = match args {
        [what, engine, n] if what == "precision" => {
            let n: usize = n.parse().map_err(|e| format!("N {n:?}: {e}"))?;
            rt.block_on(precision(engine, n))
        }
        [what, n] if what == "sim" => {
            let n: usize = n.parse().map_err(|e| format!("N {n:?}: {e}"))?;
            rt.block_on(simulate(n))
        }
        _ => Err(format!("unknown child arguments {args:?}")),
    };
    std::io::stdout().flush().ok();
    // Leave at once: the jobs and the scheduler are not worth a graceful stop.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fleet bench child: {e}");
            1
        }
    })
}

/// Per job, the fires seen: (due instant, when the callback ran).
type Fires = Arc<Vec<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>>;

async fn precision(engine: &str, n: usize) -> BenchResult<()> {
    let fires: Fires = Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());
    // Kept alive until the process exits.
    let _scheduler = match engine {
        "ours" => {
            start_ours(n, &fires)?;
            None
        }
        "tcs" => Some(start_tcs(n, &fires).await?),
        _ => return Err(format!("unknown engine {engine:?}")),
    };
    let t0 = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(3);
    let window_end = t0 + TimeDelta::seconds(WINDOW_DUES);
    sleep_until_due(t0 - TimeDelta::milliseconds(500), || {}).await;
    let cpu0 = usage("self")?.cpu;
    sleep_until_due(window_end - TimeDelta::milliseconds(500), || {}).await;
    let cpu1 = usage("self")?.cpu;
    sleep_until_due(window_end + TimeDelta::milliseconds(1500), || {}).await;

    let mut delays = Vec::new();
    let mut seen = 0u64;
    for job in fires.iter() {
        let job = job.lock().unwrap_or_else(|e| e.into_inner());
        let mut dues: Vec<DateTime<Utc>> = Vec::new();
        for (due, at) in job
            .iter()
            .filter(|(due, _)| *due >= t0 && *due < window_end)
        {
            delays.push(ms(*at - *due));
            if !dues.contains(due) {
                dues.push(*due);
            }
        }
        seen += dues.len() as u64;
    }
    delays.sort_by(f64::total_cmp);
    let hwm = usage("self")?.hwm_kib;
    println!(
        "RESULT seen={seen} due={} p50={:.3} p99={:.3} max={:.3} cpu={:.2} hwm_kib={hwm}",
        n as i64 * WINDOW_DUES,
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN),
        cpu1 - cpu0,
    );
    Ok(())
}

/// N tasks, each the daemon's loop (`server_loop`) with the callback where it dispatches.
fn start_ours(n: usize, fires: &Fires) -> BenchResult<()> {
    let schedule = Schedule::parse("* * * * * *", chrono_tz::UTC).map_err(|e| e.to_string())?;
    for job in 0..n {
        let (schedule, fires, name) = (schedule.clone(), fires.clone(), format!("job{job}"));
        tokio::spawn(async move {
            // As in server_loop: the next due instant is strictly after the last handled.
            let mut handled: Option<DateTime<Utc>> = None;
            loop {
                let now = Utc::now();
                let after = handled.map_or(now, |h| h.max(now));
                let Some((due, fire_at)) = next_fire(&schedule, &name, Duration::ZERO, after)
                else {
                    return;
                };
                sleep_until_due(fire_at, || {}).await;
                handled = Some(due);
                let at = Utc::now();
                fires[job]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((due, at));
            }
        });
    }
    Ok(())
}

async fn start_tcs(n: usize, fires: &Fires) -> BenchResult<tokio_cron_scheduler::JobScheduler> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let scheduler = JobScheduler::new().await.map_err(|e| e.to_string())?;
    for job in 0..n {
        let fires = fires.clone();
        let j = Job::new_async("* * * * * *", move |_id, _lock| {
            let fires = fires.clone();
            Box::pin(async move {
                let at = Utc::now();
                // The job is not told its due instant: the whole second it fires in.
                fires[job]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((at.trunc_subsecs(0), at));
            })
        })
        .map_err(|e| e.to_string())?;
        scheduler.add(j).await.map_err(|e| e.to_string())?;
    }
    scheduler.start().await.map_err(|e| e.to_string())?;
    Ok(scheduler)
}

/// Serve N servers; print `ADDR <addr>`; when stdin closes print `START <name> <unix ns>`
/// for every start request that arrived, and return.
async fn simulate(n: usize) -> BenchResult<()> {
    let servers = (0..n)
        .map(|i| {
            let mut c = SimServerConfig::new(format!("s{i:04}"), API_KEY);
            c.start_delay = Duration::ZERO;
            c.run_length = EXPORT_LENGTH;
            c
        })
        .collect();
    let sim = Simulator::start("127.0.0.1:0".parse().expect("an address"), servers)
        .await
        .map_err(|e| format!("simulator: {e}"))?;
    println!("ADDR {}", sim.addr());
    std::io::stdout().flush().ok();
    // Wait for stdin to close, on a blocking thread.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for name in sim.names() {
        for at in sim.server(&name).start_requests() {
            let ns = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let _ = writeln!(out, "START {name} {ns}");
        }
    }
    if let Some(path) = std::env::var_os("JES_BENCH_TIMELINE") {
        let mut lines = String::new();
        for name in sim.names() {
            for r in sim.server(&name).requests() {
                let ns =
                    r.at.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                let _ = writeln!(lines, "{ns} {name} {:?}", r.endpoint);
            }
        }
        std::fs::write(&path, lines).map_err(|e| {
            format!(
                "JES_BENCH_TIMELINE={}: cannot write it: {e}",
                Path::new(&path).display()
            )
        })?;
    }
    let own = usage("self")?;
    let _ = writeln!(out, "RESULT cpu={:.2} hwm_kib={}", own.cpu, own.hwm_kib);
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn ms(d: TimeDelta) -> f64 {
    d.num_microseconds()
        .map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn parse_result(text: &str) -> BenchResult<HashMap<String, String>> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no RESULT line in {text:?}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
