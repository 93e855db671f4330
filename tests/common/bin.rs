//! The real binary as a child process: found through `CARGO_BIN_EXE_…`, run with a clean
//! environment, and described (command line, working directory, the variables it was
//! given, exit status and output) when an expectation fails.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_jellyfin-export-scheduler");

/// Variables of whoever runs the tests that would change what the binary does.
const CLEARED: [&str; 8] = [
    "RUST_LOG",
    "JELLYFIN_EXPORT_SCHEDULER_CONFIG",
    "JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// The binary with `args` and none of the [`CLEARED`] variables; the test adds its own.
pub fn command<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    clean(&mut cmd);
    cmd
}

/// [`command`] run through util-linux's `prlimit` with `RLIMIT_NOFILE` set to `soft`:`hard`.
pub fn command_with_nofile<S: AsRef<OsStr>>(
    soft: u64,
    hard: u64,
    args: impl IntoIterator<Item = S>,
) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(BIN)
        .args(args);
    clean(&mut cmd);
    cmd
}

/// `cmd` without the [`CLEARED`] variables (for a program that runs the binary).
pub fn clean(cmd: &mut Command) -> &mut Command {
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd
}

/// A finished run of the binary: how it was run, and its [`Output`] (which it derefs to).
pub struct Ran {
    /// The command line, where it ran and the variables it was given.
    pub how: String,
    pub output: Output,
}

impl Deref for Ran {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.output
    }
}

/// How `cmd` runs: its command line, working directory and the variables it sets.
fn how(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    let cwd = cmd
        .get_current_dir()
        .map(Path::to_owned)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let vars: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    format!(
        "$ {line}\n  in {}\n  with {}",
        cwd.display(),
        if vars.is_empty() {
            "no variables set".to_owned()
        } else {
            vars.join(" ")
        }
    )
}

/// Runs `cmd` to its end.
pub fn run(cmd: &mut Command) -> Ran {
    let how = how(cmd);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("the binary does not run ({e}):\n{how}"));
    Ran { how, output }
}

/// [`run`], off the async runtime.
pub async fn run_async(mut cmd: Command) -> Ran {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

/// A run of the binary going on in the background, its output captured.
pub struct Running {
    how: String,
    pub child: Child,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr captured.
    pub fn start(cmd: &mut Command) -> Running {
        let how = how(cmd);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("the binary does not start ({e}):\n{how}"));
        Running { how, child }
    }

    /// Waits for its end, off the async runtime.
    pub async fn finish(self) -> Ran {
        let Running { how, child } = self;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot wait for the binary ({e}):\n{how}"));
        Ran { how, output }
    }
}

/// The binary with `args`, to its end.
pub fn bin(args: &[&str]) -> Ran {
    run(&mut command(args))
}

/// [`bin`], off the async runtime.
pub async fn bin_async(args: &[&str]) -> Ran {
    run_async(command(args)).await
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A run, for a failed expectation: how it ran, its exit status and its whole output.
pub fn describe(ran: &Ran) -> String {
    format!(
        "{}\nexit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        ran.how,
        ran.status.code(),
        text(&ran.stdout),
        text(&ran.stderr)
    )
}

/// `kill -SIG PID`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A long-running child (the daemon), `.0`, whose stderr goes to a log file; killed on
/// drop, so that a failing test leaves nothing behind.
pub struct Daemon(pub Child, Started);

/// How a [`Daemon`] was started, for failure messages, and where it logs.
pub struct Started {
    how: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd`, its stdout discarded and its stderr written to `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Daemon {
        let how = how(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("the binary does not start ({e}):\n{how}"));
        Daemon(
            child,
            Started {
                how,
                log: log.to_owned(),
            },
        )
    }

    /// `run --config CONFIG`, logging to `log`.
    pub fn run(config: &Path, log: &Path) -> Daemon {
        Daemon::spawn(command(["run", "--config"]).arg(config), log)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        signal(self.id(), sig);
    }

    /// Its exit code once it exits, at most `limit` from now; else it is killed and the
    /// test fails with how it ran and its log.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > limit {
                let _ = self.0.kill();
                panic!(
                    "the daemon did not exit within {limit:?}:\n{}\n--- its log\n{}",
                    self.1.how,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
