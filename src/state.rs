//! The state directory: its layout on disk and its lock files.
//!
//! ```text
//! <state_dir>/            0700
//!   daemon.lock           one daemon per state directory (InstanceLock); holds its pid
//!   history/              one `<server>.jsonl` per server (written by `history`)
//!   locks/<server>.lock   one run per server at a time, daemon or `trigger` (ServerLock)
//!   inflight/             one `<server>.json` per run not recorded yet (`runner::marker`)
//!   reload-status.json    what the daemon made of its config (`crate::reload::status`)
//! ```
//!
//! This module creates the directories and takes the locks. It does not read or write
//! history records (`history` does) and does not decide what to do when a lock is held
//! (the daemon and the CLI do).
//!
//! Both locks are `flock(2)` locks taken with [`File::try_lock`]: the kernel releases them
//! when the holder's process dies, so a lock file left behind after a crash never blocks
//! anyone and is never cleaned up by hand. For the same reason lock files are never deleted:
//! a process that opened the file just before it was unlinked would lock the old inode while
//! a newcomer locks a new one, and both would believe they hold the lock.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory we create: run records may name paths on the servers and the
/// lock files name our pid; nobody else needs to read them.
const DIR_MODE: u32 = 0o700;
/// Mode of every file we create, for the same reason.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Longest server name we build a path from. The file name `<server>.jsonl.tmp` must stay
/// well under the usual 255-byte limit.
pub const MAX_SERVER_NAME_LEN: usize = 200;

/// A server name that can't be used in a file name: not `[a-z0-9][a-z0-9_-]*`, or too long.
///
/// Config validates names before they get here; this is the last line of defence so that
/// nothing like `../x` ever becomes a path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid server name {name:?}: a server name is a lowercase letter or digit followed by \
     lowercase letters, digits, `_` or `-` (at most {MAX_SERVER_NAME_LEN} characters); \
     rename the server in the config"
)]
pub struct InvalidServerName {
    pub name: String,
}

/// Checks that `name` matches `[a-z0-9][a-z0-9_-]*` and is at most
/// [`MAX_SERVER_NAME_LEN`] bytes, so it is safe as a file name.
pub fn check_server_name(name: &str) -> Result<(), InvalidServerName> {
    let mut bytes = name.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'));
    let rest_ok = bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if first_ok && rest_ok && name.len() <= MAX_SERVER_NAME_LEN {
        Ok(())
    } else {
        Err(InvalidServerName {
            name: name.to_owned(),
        })
    }
}

/// What to do about an I/O error on the state directory, by kind. Shared by the state,
/// lock and history errors so the same cause gets the same advice everywhere.
pub(crate) fn io_hint(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind::*;
    match kind {
        PermissionDenied => {
            "make the state directory writable by the user running jellyfin-export-scheduler \
             (or set state_dir to a directory it owns)"
        }
        ReadOnlyFilesystem => {
            "the filesystem is read-only; set state_dir to a writable place (under systemd, \
             use StateDirectory= or list it in ReadWritePaths=)"
        }
        StorageFull => "free some disk space",
        QuotaExceeded => "free some space or raise the disk quota",
        NotADirectory => {
            "a file is in the way of a directory on this path; move it or choose another state_dir"
        }
        IsADirectory => "a directory is in the way of a file on this path; move it away",
        NotFound => "a parent directory is missing; create it or choose another state_dir",
        _ => "check the disk and the state directory",
    }
}

/// Why the state directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {}: {source}; {}", path.display(), io_hint(source.kind()))]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot use state directory {}: {source}; {}", path.display(), io_hint(source.kind()))]
    Inspect { path: PathBuf, source: io::Error },
    #[error(
        "cannot use state directory {}: it exists but is not a directory; move it away or \
         choose another state_dir",
        path.display()
    )]
    NotADirectory { path: PathBuf },
}

impl StateError {
    /// The OS error's kind, if there was one.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StateError::Create { source, .. } | StateError::Inspect { source, .. } => {
                Some(source.kind())
            }
            StateError::NotADirectory { .. } => None,
        }
    }
}

/// The state directory, opened: all its subdirectories exist.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens `path` as the state directory, creating it and its subdirectories (mode 0700)
    /// when missing. Directories that already exist are left as they are: their owner may
    /// have chosen other modes on purpose.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let root = path.as_ref().to_path_buf();
        ensure_dir(&root, true)?;
        let dir = StateDir { root };
        for sub in [dir.history_dir(), dir.locks_dir(), dir.inflight_dir()] {
            ensure_dir(&sub, false)?;
        }
        Ok(dir)
    }

    /// `path` as the state directory without creating anything: for readers (`history`,
    /// often run as root on the service's directory, where a directory made by root would
    /// be one the service's user cannot write).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let root = path.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => Ok(StateDir { root }),
            Ok(_) => Err(StateError::NotADirectory { path: root }),
            Err(source) => Err(StateError::Inspect { path: root, source }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<state_dir>/history`: one JSON Lines file per server.
    pub fn history_dir(&self) -> PathBuf {
        self.root.join("history")
    }

    /// `<state_dir>/locks`: one lock file per server.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// `<state_dir>/inflight`: the markers of runs in progress (see `runner::marker`).
    pub fn inflight_dir(&self) -> PathBuf {
        self.root.join("inflight")
    }

    /// `<state_dir>/daemon.lock`: the instance lock.
    pub fn daemon_lock_path(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// `<state_dir>/locks/<server>.lock`.
    pub fn server_lock_path(&self, server: &str) -> Result<PathBuf, InvalidServerName> {
        check_server_name(server)?;
        Ok(self.locks_dir().join(format!("{server}.lock")))
    }
}

/// Makes sure `path` is a directory, creating it with mode 0700 when missing. With
/// `parents`, missing parents are created too (also 0700: they are new, nobody chose a mode).
fn ensure_dir(path: &Path, parents: bool) -> Result<(), StateError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(StateError::NotADirectory {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StateError::Inspect {
                path: path.to_owned(),
                source,
            });
        }
    }
    let created = DirBuilder::new()
        .recursive(parents)
        .mode(DIR_MODE)
        .create(path);
    match created {
        Ok(()) => {}
        // Another process (a `trigger` next to the daemon) created it first: fine if it is
        // a directory, which the next metadata call checks.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StateError::Create {
                path: path.to_owned(),
                source,
            });
        }
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StateError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(source) => Err(StateError::Inspect {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds `daemon.lock`. `path` is the state directory; `holder` is the
    /// pid it wrote (empty if it has not written it yet).
    #[error(
        "another jellyfin-export-scheduler ({}) is already running on state directory {}; \
         stop it or use another state_dir",
        describe_pid(holder),
        path.display()
    )]
    Held { path: PathBuf, holder: String },
    /// Someone holds the server's lock. `holder` is what it wrote: `pid N (description)`.
    #[error(
        "server {server} is busy: {} holds {}",
        describe_holder(holder),
        path.display()
    )]
    Busy {
        server: String,
        path: PathBuf,
        holder: String,
    },
    #[error(transparent)]
    InvalidServer(#[from] InvalidServerName),
    #[error("cannot {action} lock file {}: {source}; {}", path.display(), io_hint(source.kind()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl LockError {
    /// The OS error's kind, if the failure was an I/O error rather than a held lock.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        match self {
            LockError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

fn describe_pid(holder: &str) -> String {
    if holder.is_empty() {
        // The holder locks first and writes its pid right after; we looked in between.
        "pid not written yet".to_owned()
    } else {
        format!("pid {holder}")
    }
}

fn describe_holder(holder: &str) -> &str {
    if holder.is_empty() {
        "a process that has not written its description yet"
    } else {
        holder
    }
}

/// The exclusive lock on `<state_dir>/daemon.lock`: at most one daemon per state directory.
/// Released when dropped or when the process dies.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the instance lock without waiting, then writes our pid into the file (so the
    /// next one to try can name us, and `kill $(cat daemon.lock)` works).
    pub fn acquire(state: &StateDir) -> Result<InstanceLock, LockError> {
        let path = state.daemon_lock_path();
        let file = open_lock_file(&path)?;
        match try_lock(&file, &path)? {
            true => {}
            false => {
                return Err(LockError::Held {
                    path: state.root().to_owned(),
                    holder: read_holder(&file),
                });
            }
        }
        write_holder(&file, &path, &format!("{}\n", std::process::id()))?;
        // fsync so the pid survives in the file for post-mortems; this happens once per start.
        file.sync_all().map_err(|source| LockError::Io {
            action: "sync",
            path: path.clone(),
            source,
        })?;
        Ok(InstanceLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Empty the file before unlocking so nobody reads our pid after we are gone;
        // best effort: closing the file releases the lock whatever happens here.
        let _ = self.file.set_len(0);
    }
}

/// The exclusive lock on `<state_dir>/locks/<server>.lock`: one run per server at a time,
/// whether the daemon or a manual `trigger` starts it. Released when dropped or when the
/// process dies.
///
/// Two acquisitions within one process conflict too: each opens the file anew, and flock
/// locks belong to the open file, not to the process.
#[derive(Debug)]
pub struct ServerLock {
    file: File,
    path: PathBuf,
    server: String,
}

impl ServerLock {
    /// Takes the server's lock without waiting and writes `pid <pid> (<holder>)` into the
    /// file; `holder` says what we are doing, e.g. `daemon run 0193… since 2026-11-27T02:30:00Z`.
    pub fn acquire(state: &StateDir, server: &str, holder: &str) -> Result<ServerLock, LockError> {
        let path = state.server_lock_path(server)?;
        let file = open_lock_file(&path)?;
        if !try_lock(&file, &path)? {
            return Err(LockError::Busy {
                server: server.to_owned(),
                path,
                holder: read_holder(&file),
            });
        }
        let line = format!("pid {} ({})\n", std::process::id(), holder.trim());
        // No fsync: the description is only read while we hold the lock, from the page
        // cache every process shares; after a crash the lock is gone and so is its meaning.
        write_holder(&file, &path, &line)?;
        Ok(ServerLock {
            file,
            path,
            server: server.to_owned(),
        })
    }

    /// Creates the server's lock file if it is missing, without locking it: the daemon
    /// does this for every server when it arms them, so that at a due instant taking the
    /// lock is a lookup, not a file creation (1000 creations in one directory in the same
    /// second took 40% of the daemon's CPU in the fleet benchmark's start phase).
    pub fn prepare(state: &StateDir, server: &str) -> Result<(), LockError> {
        open_lock_file(&state.server_lock_path(server)?).map(drop)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn server(&self) -> &str {
        &self.server
    }
}

impl Drop for ServerLock {
    fn drop(&mut self) {
        // As for the instance lock: best effort, closing releases the lock anyway.
        let _ = self.file.set_len(0);
    }
}

impl fmt::Display for ServerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock on server {} ({})",
            self.server,
            self.path.display()
        )
    }
}

/// Opens (creating, 0600) a lock file for reading and writing. Never truncates: the file
/// may belong to a live holder whose description we want to read.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|source| LockError::Io {
            action: "open",
            path: path.to_owned(),
            source,
        })
}

/// `Ok(true)` when we got the lock, `Ok(false)` when someone else holds it.
fn try_lock(file: &File, path: &Path) -> Result<bool, LockError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(source)) => Err(LockError::Io {
            action: "lock",
            path: path.to_owned(),
            source,
        }),
    }
}

/// What the holder wrote, trimmed and capped; empty when unreadable. A lock conflict is
/// reported either way, so a read error here only loses the description.
fn read_holder(file: &File) -> String {
    let mut buf = Vec::new();
    let _ = file.take(1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    // One line only, and no control characters in an error message.
    let first = text.lines().next().unwrap_or("").trim();
    first.chars().filter(|c| !c.is_control()).collect()
}

fn write_holder(file: &File, path: &Path, text: &str) -> Result<(), LockError> {
    let io = |source| LockError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    // The file is empty unless a holder died with it locked (a release empties it):
    // truncating an empty file still updates its times through the journal, which a
    // thousand runs due at once would pay for nothing.
    if file.metadata().map_err(io)?.len() > 0 {
        file.set_len(0).map_err(io)?;
    }
    file.write_all_at(text.as_bytes(), 0).map_err(io)
}

/// Write `bytes` to `path` as a file only its owner can read (0600), creating or
/// replacing it, and fsync it: what every file of the state directory needs.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    /// How long a child process may take to start and report; generous for a loaded
    /// 2-core machine, and only ever reached when something is broken.
    const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
    const HELPER_ENV: &str = "JES_TEST_HOLD_LOCK";

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_creates_the_layout_with_mode_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/state");
        let dir = StateDir::open(&root).unwrap();
        for d in [
            root.clone(),
            dir.history_dir(),
            dir.locks_dir(),
            dir.inflight_dir(),
        ] {
            assert!(d.is_dir(), "{} should exist", d.display());
            assert_eq!(mode(&d), 0o700, "mode of {}", d.display());
        }
        // Opening again is fine, and leaves a mode the user chose alone.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        StateDir::open(&root).unwrap();
        assert_eq!(mode(&root), 0o750);
    }

    #[test]
    fn open_names_the_path_when_a_file_is_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("state");
        fs::write(&file, "").unwrap();
        let err = StateDir::open(&file).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::NotADirectory { .. }), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");

        // Below a file: the OS error (ENOTDIR) and a hint are in the message.
        let below = file.join("sub");
        let err = StateDir::open(&below).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            err.io_error_kind(),
            Some(io::ErrorKind::NotADirectory),
            "{msg}"
        );
        assert!(msg.contains(&below.display().to_string()), "{msg}");
        assert!(msg.contains("os error 20"), "{msg}");
        assert!(msg.contains("a file is in the way"), "{msg}");
    }

    #[test]
    fn server_names_are_checked() {
        for good in ["a", "living-room", "srv_01", "0"] {
            assert!(check_server_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_SERVER_NAME_LEN + 1);
        for bad in [
            "", "-a", "_a", "A", "a/b", "..", "../x", "a.b", "a b", "é", &long,
        ] {
            assert!(check_server_name(bad).is_err(), "{bad:?}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let err = ServerLock::acquire(&dir, "../etc", "x").unwrap_err();
        assert!(matches!(err, LockError::InvalidServer(_)), "{err}");
    }

    #[test]
    fn instance_lock_conflicts_in_process_and_is_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let lock = InstanceLock::acquire(&dir).unwrap();
        assert_eq!(mode(lock.path()), 0o600);
        let written = fs::read_to_string(lock.path()).unwrap();
        assert_eq!(written, format!("{}\n", std::process::id()));

        let err = InstanceLock::acquire(&dir).unwrap_err();
        let expected = format!(
            "another jellyfin-export-scheduler (pid {}) is already running on state directory {}; \
             stop it or use another state_dir",
            std::process::id(),
            tmp.path().display()
        );
        assert_eq!(err.to_string(), expected);

        drop(lock);
        let again = InstanceLock::acquire(&dir).unwrap();
        drop(again);
    }

    #[test]
    fn server_lock_conflicts_in_process_and_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let holder = "daemon run 0193abc, since 2026-11-27T02:30:00Z";
        let lock = ServerLock::acquire(&dir, "living-room", holder).unwrap();
        assert_eq!(lock.server(), "living-room");
        assert_eq!(mode(lock.path()), 0o600);

        let err = ServerLock::acquire(&dir, "living-room", "manual trigger").unwrap_err();
        let expected = format!(
            "server living-room is busy: pid {} (daemon run 0193abc, since 2026-11-27T02:30:00Z) \
             holds {}",
            std::process::id(),
            dir.locks_dir().join("living-room.lock").display()
        );
        assert_eq!(err.to_string(), expected);

        // Another server is independent.
        let other = ServerLock::acquire(&dir, "kitchen", "manual trigger").unwrap();
        drop(other);

        drop(lock);
        let again = ServerLock::acquire(&dir, "living-room", "manual trigger").unwrap();
        drop(again);
    }

    #[test]
    fn busy_message_copes_with_an_empty_lock_file() {
        let err = LockError::Busy {
            server: "a".into(),
            path: "/x/locks/a.lock".into(),
            holder: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "server a is busy: a process that has not written its description yet holds \
             /x/locks/a.lock"
        );
        let err = LockError::Held {
            path: "/x".into(),
            holder: String::new(),
        };
        assert!(err.to_string().contains("(pid not written yet)"), "{err}");
    }

    /// Not a test of its own: the cross-process tests below run this test binary again with
    /// `HELPER_ENV` set, and then this function takes the lock named there, prints
    /// `LOCKED <pid>` and holds the lock until its stdin closes (or it is killed).
    #[test]
    fn child_process_lock_holder() {
        let Ok(spec) = std::env::var(HELPER_ENV) else {
            return;
        };
        let (kind, root) = spec.split_once(':').expect("HELPER_ENV is kind:path");
        let dir = StateDir::open(root).unwrap();
        let _instance;
        let _server;
        match kind {
            "instance" => _instance = InstanceLock::acquire(&dir).unwrap(),
            server => _server = ServerLock::acquire(&dir, server, "child test holder").unwrap(),
        }
        let mut out = io::stdout().lock();
        writeln!(out, "LOCKED {}", std::process::id()).unwrap();
        out.flush().unwrap();
        drop(out);
        // Hold until the parent closes our stdin.
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
    }

    /// A child process holding a lock; killed and reaped on drop so a failing test leaves
    /// no process behind.
    struct Holder {
        child: Option<Child>,
        pid: u32,
    }

    impl Holder {
        /// Starts the child and waits (bounded) until it says it holds the lock.
        fn start(kind: &str, root: &Path) -> Holder {
            let exe = std::env::current_exe().unwrap();
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "state::tests::child_process_lock_holder",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_ENV, format!("{kind}:{}", root.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest prints `test <name> ... ` first, on the same line.
                    if let Some((_, pid)) = line.split_once("LOCKED ") {
                        let _ = tx.send(pid.trim().to_owned());
                    }
                }
            });
            let pid = child.id();
            let holder = Holder {
                child: Some(child),
                pid,
            };
            match rx.recv_timeout(CHILD_TIMEOUT) {
                Ok(reported) => assert_eq!(reported, pid.to_string()),
                Err(_) => panic!(
                    "the child {} (pid {pid}) did not report holding the {kind} lock within \
                     {CHILD_TIMEOUT:?}; its stderr is above",
                    exe.display(),
                ),
            }
            holder
        }

        /// Lets the child drop its lock and exit normally; waits (bounded) for the exit.
        fn finish(mut self) {
            if let Some(child) = self.child.as_mut() {
                drop(child.stdin.take());
            }
            self.wait();
        }

        /// Kills the child (SIGKILL: no destructors run) and waits for it.
        fn kill(mut self) {
            if let Some(child) = self.child.as_mut() {
                child.kill().unwrap();
            }
            self.wait();
        }

        /// Reaps the child, failing with a sentence if it does not exit in time.
        fn wait(&mut self) {
            let Some(mut child) = self.child.take() else {
                return;
            };
            let (tx, rx) = mpsc::channel();
            // Child::wait has no timeout, so wait on a thread and bound the receive.
            std::thread::spawn(move || {
                let _ = tx.send(child.wait());
            });
            match rx.recv_timeout(CHILD_TIMEOUT) {
                Ok(status) => {
                    status.unwrap();
                }
                Err(_) => {
                    let _ = Command::new("kill")
                        .arg("-9")
                        .arg(self.pid.to_string())
                        .status();
                    panic!(
                        "the child {} did not exit within {CHILD_TIMEOUT:?}",
                        self.pid
                    );
                }
            }
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    #[test]
    fn instance_lock_across_processes_names_the_pid_and_is_released_on_exit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let child = Holder::start("instance", tmp.path());
        let err = InstanceLock::acquire(&dir).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "another jellyfin-export-scheduler (pid {}) ",
                child.pid
            )),
            "{err}"
        );
        child.finish();
        InstanceLock::acquire(&dir).expect("lock free after the holder exited");
    }

    #[test]
    fn server_lock_across_processes_is_released_when_the_holder_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let child = Holder::start("living-room", tmp.path());
        let err = ServerLock::acquire(&dir, "living-room", "manual trigger").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "server living-room is busy: pid {} (child test holder) holds ",
                child.pid
            )),
            "{msg}"
        );
        // SIGKILL: no destructor runs, the lock file keeps the child's description, and the
        // kernel still releases the lock.
        child.kill();
        let lock = ServerLock::acquire(&dir, "living-room", "manual trigger")
            .expect("lock free after the holder was killed");
        let text = fs::read_to_string(lock.path()).unwrap();
        assert_eq!(
            text,
            format!("pid {} (manual trigger)\n", std::process::id())
        );
    }
}
