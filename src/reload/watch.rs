//! Watching the config file (`[daemon] watch_config`), so that an edit takes effect without
//! a signal. The watcher only says *when* to look: it never reads a config for the daemon.
//! What it reports goes through [`Reloader::reload_if_changed`](super::Reloader), which
//! compares the file's digest with the one the last reload read and, when it differs, does
//! exactly what SIGHUP does.
//!
//! - **`auto`** watches the config's *folder*, not the file: editors that save by writing
//!   a new file and renaming it over the old one (vim, `sed -i`), and Kubernetes, which
//!   updates a ConfigMap by swapping its `..data` symlink, leave the old file's inode
//!   behind, so a watch on the file itself would go quiet after the first such save. The
//!   folder's watch asks the kernel only for names coming, going and moving and for
//!   attributes, never for data written or reads (a log kept beside the config is written
//!   at every line); a second watch, of the file the config resolves to, renewed after
//!   each event, sees its data written. The digest comparison afterwards throws
//!   away the events that did not change the file (a swap file, another file, a
//!   `touch`). Where the kernel's watches cannot be had (the inotify limit reached), it
//!   polls instead.
//! - **`poll`** looks at the file every `watch_poll_interval`: its metadata (mtime, size,
//!   inode) and a digest of its content, for network file systems, where a change made on
//!   another machine raises no event on this one.
//! - A change is reported only after the file stayed quiet for `watch_debounce`: a burst
//!   of writes (an editor's save, a copy in several writes) becomes one reload, and a file
//!   being written is not read half-way. A writer that pauses longer than that in the
//!   middle of a file could still show a prefix; that prefix is validated like any config
//!   (an invalid one is refused and the config in force kept), and the final content is
//!   applied when it lands. Writing a temporary file and renaming it is never seen half.
//! - A watcher, once started, looks once by itself (after the debounce): an edit made
//!   between the daemon's last read of the file and the start of the watch is not lost.

use crate::config::{MAX_CONFIG_BYTES, WatchConfig, WatchMode, sha256_hex};
use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// A running watch of one config file. Dropping it stops the watch.
pub struct ConfigWatcher {
    /// A message means "something may have changed"; at most one waits (they are alike).
    events: mpsc::Receiver<()>,
    debounce: Duration,
    /// What produces the events; kept so that dropping the watcher stops it.
    _source: Source,
    /// The settings it was started with (a reload may change them).
    settings: WatchConfig,
}

/// Both are held only to be dropped with the watcher.
enum Source {
    /// A task that reads the kernel's change events of the folder.
    Events { _task: AbortOnDrop },
    /// A task that looks at the file now and then.
    Poll { _task: AbortOnDrop },
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ConfigWatcher {
    /// Watch `path` as `settings` say; `None` for `off`. Must be called within a tokio
    /// runtime.
    pub fn start(path: &Path, settings: WatchConfig) -> Option<ConfigWatcher> {
        let (tx, events) = mpsc::channel(1);
        // A first look, after the debounce like any: a change made between the last read
        // of the file (the start's, or the reload that turned watching on) and this watch
        // raised no event.
        let _ = tx.try_send(());
        let source = match settings.mode {
            WatchMode::Off => return None,
            WatchMode::Poll => Source::Poll {
                _task: poll(path, settings.poll_interval, tx),
            },
            WatchMode::Auto => match watch_folder(path, tx.clone()) {
                Ok((task, folder)) => {
                    info!(folder = %folder.display(), "watching the config's folder for changes");
                    Source::Events { _task: task }
                }
                Err(e) => {
                    warn!(
                        error = %e,
                        interval_ms = settings.poll_interval.as_millis() as u64,
                        "cannot watch the config's folder for changes; looking at the file every watch_poll_interval instead (raise fs.inotify.max_user_watches or max_user_instances if they ran out)"
                    );
                    Source::Poll {
                        _task: poll(path, settings.poll_interval, tx),
                    }
                }
            },
        };
        if let Source::Poll { .. } = source {
            info!(
                interval_ms = settings.poll_interval.as_millis() as u64,
                "looking at the config file for changes every watch_poll_interval"
            );
        }
        Some(ConfigWatcher {
            events,
            debounce: settings.debounce,
            _source: source,
            settings,
        })
    }

    /// The settings this watcher runs with.
    pub fn settings(&self) -> WatchConfig {
        self.settings
    }

    /// Resolves once something changed and then nothing more for the debounce interval.
    /// Pending forever when the source is gone (it never is while the watcher lives).
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::select! {
                more = self.events.recv() => {
                    if more.is_none() {
                        return std::future::pending().await;
                    }
                }
                () = tokio::time::sleep(self.debounce) => return,
            }
        }
    }
}

/// [`ConfigWatcher::changed`] of an optional watcher: pending forever without one.
pub async fn changed(watcher: &mut Option<ConfigWatcher>) {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// The folder the config file is in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// What the folder's watch asks the kernel for: names that appear, go or move (an
/// editor's save by rename, a ConfigMap's `..data` swap), attributes, and the folder
/// itself moved or removed. Not data written (`IN_MODIFY`), ends of writes, opens or
/// reads: a log kept beside the config is written at every line, and each write would
/// wake the daemon (in the fleet benchmark, two thousand lines in the second its runs
/// start, each a wake-up on the CPU the starts need). The config's own data is the
/// second watch's ([`FILE_EVENTS`]).
const FOLDER_EVENTS: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// What the watch of the config file itself (the file its path resolves to, through any
/// symlinks) asks for: its data written, also by a writer that keeps it open, the end of
/// a write, its attributes, and the file itself moved or removed.
const FILE_EVENTS: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// Watch the config's folder (non-recursively) and the config file itself, and send on
/// `tx` for each event: the masks ask only for what may change the config, so every
/// event counts (and the digest comparison throws away those that changed nothing). The
/// events are read by a task on the runtime's I/O driver: no thread of its own.
fn watch_folder(path: &Path, tx: mpsc::Sender<()>) -> std::io::Result<(AbortOnDrop, PathBuf)> {
    let folder = folder_of(path);
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    watches.add(&folder, FOLDER_EVENTS)?;
    let mut config = WatchedConfig::new(path.to_owned(), watches);
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                warn!(error = %e, "cannot read the config folder's change events; edits are no longer seen (send SIGHUP to reload)");
                let _ = tx.try_send(());
                return;
            }
            // An event (a queue overflow too) may have replaced the file or re-pointed a
            // symlink.
            config.watch_again();
            // Full means a look is already due: this event adds nothing.
            let _ = tx.try_send(());
        }
    });
    Ok((AbortOnDrop(task), folder))
}

/// The config file's own watch.
struct WatchedConfig {
    path: PathBuf,
    watches: Watches,
    /// The watch of the file the path resolves to now; none while it cannot be had (the
    /// file is missing: its return is a creation in the folder).
    file: Option<WatchDescriptor>,
}

impl WatchedConfig {
    fn new(path: PathBuf, watches: Watches) -> Self {
        let mut config = WatchedConfig {
            file: None,
            path,
            watches,
        };
        config.watch_again();
        config
    }

    /// Watch the file the path resolves to now, dropping the watch of the one before if it
    /// was another (an editor's save leaves the old file behind, perhaps as a backup).
    fn watch_again(&mut self) {
        let now = self.watches.add(&self.path, FILE_EVENTS).ok();
        if let Some(before) = self.file.take()
            && Some(&before) != now.as_ref()
        {
            // Gone with its file already, or not: either way it is no longer the config.
            let _ = self.watches.remove(before);
        }
        self.file = now;
    }
}

/// What one look at the file found: its metadata and the digest of its content, or why it
/// could not be read (a missing file is a state like any other: its return is a change).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Look {
    File {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
        device: u64,
        digest: String,
    },
    Unreadable(std::io::ErrorKind),
}

/// Look at `path`, following symlinks (a ConfigMap's `..data` swap changes the target).
fn look(path: &Path) -> Look {
    use std::os::unix::fs::MetadataExt;
    let read = || -> std::io::Result<Look> {
        let meta = std::fs::metadata(path)?;
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)?;
        Ok(Look::File {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
            digest: sha256_hex(&bytes),
        })
    };
    read().unwrap_or_else(|e| Look::Unreadable(e.kind()))
}

/// A task that looks at the file every `interval` and sends an event when what it sees
/// differs from the look before.
fn poll(path: &Path, interval: Duration, tx: mpsc::Sender<()>) -> AbortOnDrop {
    let path = path.to_owned();
    AbortOnDrop(tokio::spawn(async move {
        let mut last = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || look(&path)).await.ok()
        };
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let path = path.clone();
            // A network file system may block: not on a runtime thread.
            let Ok(now) = tokio::task::spawn_blocking(move || look(&path)).await else {
                continue;
            };
            if last.as_ref() != Some(&now) {
                debug!(?now, "config file looks different");
                last = Some(now);
                let _ = tx.try_send(());
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watcher of `mode` on the config at `path`, with this debounce; `poll` looks only
    /// hourly, so that what a test sees comes from events.
    fn start(path: &Path, mode: WatchMode, debounce_ms: u64) -> ConfigWatcher {
        let settings = WatchConfig {
            mode,
            debounce: Duration::from_millis(debounce_ms),
            poll_interval: Duration::from_secs(3600),
        };
        ConfigWatcher::start(path, settings).unwrap()
    }

    /// `text` appended to the file at `path` by a writer that keeps it open: the file,
    /// for the test to close once the watcher has reported.
    fn append_held_open(path: &Path, text: &[u8]) -> std::fs::File {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, text).unwrap();
        file
    }

    /// Wait for the watcher to report `what`, failing with a sentence after 10 s.
    async fn seen(watcher: &mut ConfigWatcher, what: &str) {
        if tokio::time::timeout(Duration::from_secs(10), watcher.changed())
            .await
            .is_err()
        {
            panic!("{what} was not reported within 10 s");
        }
    }

    #[test]
    fn a_look_changes_with_content_and_with_a_rename_over_but_not_with_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let first = look(&path);
        assert!(matches!(first, Look::File { .. }));
        let _ = std::fs::read(&path).unwrap();
        assert_eq!(look(&path), first);
        // Same length, new content: the digest tells them apart even within one mtime tick.
        std::fs::write(&path, "a = 2\n").unwrap();
        let second = look(&path);
        assert_ne!(second, first);
        // The same bytes as a new file renamed over: another inode.
        let tmp = dir.path().join("config.toml.new");
        std::fs::write(&tmp, "a = 2\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(look(&path), second);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(look(&path), Look::Unreadable(std::io::ErrorKind::NotFound));
    }

    #[tokio::test]
    async fn off_watches_nothing() {
        let settings = WatchConfig {
            mode: WatchMode::Off,
            debounce: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
        };
        assert!(ConfigWatcher::start(Path::new("/nonexistent/config.toml"), settings).is_none());
    }

    /// The first look comes without an event: an edit between the last read and the
    /// watch's start would otherwise wait for the next one.
    #[tokio::test]
    async fn a_new_watcher_looks_once_by_itself_in_either_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        for mode in [WatchMode::Auto, WatchMode::Poll] {
            let mut watcher = start(&path, mode, 10);
            tokio::time::timeout(Duration::from_secs(10), watcher.changed())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: no first look within 10 s"));
        }
    }

    #[test]
    fn the_folder_is_asked_for_no_data_written_and_the_file_for_its_own() {
        // Data written into a file, the end of a write, opens and reads: none asked of
        // the folder (a log beside the config raises nothing); names coming, going and
        // moving, attributes and the folder itself are.
        for never in [
            WatchMask::MODIFY,
            WatchMask::CLOSE_WRITE,
            WatchMask::CLOSE_NOWRITE,
            WatchMask::OPEN,
            WatchMask::ACCESS,
        ] {
            assert!(!FOLDER_EVENTS.intersects(never), "{never:?}");
        }
        assert!(FOLDER_EVENTS.contains(
            WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::ATTRIB
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF
        ));
        // The config file's own watch: its data, also held open, and the end of a write.
        assert!(FILE_EVENTS.contains(WatchMask::MODIFY | WatchMask::CLOSE_WRITE));
        assert!(!FILE_EVENTS.intersects(WatchMask::OPEN | WatchMask::ACCESS));
    }

    /// Data written by a writer that keeps the file open raises no end-of-write: the config
    /// file's own watch sees it, also after a save by rename replaced the file it watched.
    #[tokio::test]
    async fn data_written_by_a_writer_that_keeps_the_config_open_is_seen_after_a_rename_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let mut watcher = start(&path, WatchMode::Auto, 50);
        seen(&mut watcher, "the first look").await;
        // An editor's save: a new file renamed over the config.
        let new = dir.path().join("config.toml.new");
        std::fs::write(&new, "a = 2\n").unwrap();
        std::fs::rename(&new, &path).unwrap();
        seen(&mut watcher, "a save by rename").await;
        // The new file, written in place and held open.
        let held = append_held_open(&path, b"b = 3\n");
        seen(
            &mut watcher,
            "data written into the renamed-over config, the file still open",
        )
        .await;
        drop(held);
    }

    /// Regression: with a log file beside the config, every line written pushed the
    /// debounce back, so an edit waited for the log to go quiet for a whole debounce
    /// interval: in a busy daemon, never.
    #[tokio::test]
    async fn an_edit_applies_while_a_log_beside_the_config_keeps_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let mut watcher = start(&path, WatchMode::Auto, 300);
        tokio::time::timeout(Duration::from_secs(10), watcher.changed())
            .await
            .expect("the first look within 10 s");
        // A log line every 20 ms, far more often than the debounce.
        let log = dir.path().join("daemon.log");
        let writer = tokio::spawn(async move {
            let mut file = std::fs::File::create(&log).unwrap();
            loop {
                std::io::Write::write_all(&mut file, b"INFO run started\n").unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        std::fs::write(&path, "a = 2\n").unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), watcher.changed()).await;
        writer.abort();
        assert!(
            seen.is_ok(),
            "an in-place edit was not reported within 10 s while a log in the same folder kept growing"
        );
    }

    /// A config that is a symlink to a file beside it, written in place and held open: the
    /// file's own watch follows the symlink.
    #[tokio::test]
    async fn data_written_into_the_file_a_symlinked_config_points_to_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "a = 1\n").unwrap();
        let path = dir.path().join("config.toml");
        std::os::unix::fs::symlink("real.toml", &path).unwrap();
        let mut watcher = start(&path, WatchMode::Auto, 50);
        seen(&mut watcher, "the first look").await;
        let held = append_held_open(&real, b"b = 2\n");
        seen(
            &mut watcher,
            "data written into the symlink's target, held open",
        )
        .await;
        drop(held);
    }

    #[test]
    fn the_folder_of_a_bare_file_name_is_the_current_one() {
        assert_eq!(folder_of(Path::new("config.toml")), PathBuf::from("."));
        assert_eq!(
            folder_of(Path::new("/etc/x/config.toml")),
            PathBuf::from("/etc/x")
        );
    }
}
