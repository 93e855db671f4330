//! Watching the config file (`[daemon] watch_config`), so that an edit takes effect without
//! a signal. The watcher only says *when* to look: it never reads a config for the daemon.
//! What it reports goes through [`Reloader::reload_if_changed`](super::Reloader), which
//! compares the file's digest with the one the last reload read and, when it differs, does
//! exactly what SIGHUP does.
//!
//! - **`auto`** watches the config's *folder*, not the file: editors that save by writing
//!   a new file and renaming it over the old one (vim, `sed -i`), and Kubernetes, which
//!   updates a ConfigMap by swapping its `..data` symlink, leave the old file's inode
//!   behind, so a watch on the file itself would go quiet after the first such save. Any
//!   event in the folder (but reads) counts; the digest comparison afterwards throws away
//!   the ones that did not change the file (a swap file, another file, a `touch`). Where
//!   the kernel's watches cannot be had (the inotify limit reached), it polls instead.
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
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
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
    /// The kernel's change events of the folder.
    Events {
        _watcher: notify::RecommendedWatcher,
    },
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
                Ok((watcher, folder)) => {
                    info!(folder = %folder.display(), "watching the config's folder for changes");
                    Source::Events { _watcher: watcher }
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

/// The kernel's events of the config's folder, non-recursively, reads left out.
fn watch_folder(
    path: &Path,
    tx: mpsc::Sender<()>,
) -> notify::Result<(notify::RecommendedWatcher, PathBuf)> {
    let folder = folder_of(path);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Opening or reading a file changes nothing, and the reload itself reads the
            // config: counting reads would make every reload cause another look.
            Ok(e) => !matches!(
                e.kind,
                EventKind::Access(
                    AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
                )
            ),
            // An error (the event queue overflowed, say): something may have been missed.
            Err(_) => true,
        };
        if relevant {
            // Full means a look is already due: this event adds nothing.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    Ok((watcher, folder))
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
            let settings = WatchConfig {
                mode,
                debounce: Duration::from_millis(10),
                poll_interval: Duration::from_secs(3600),
            };
            let mut watcher = ConfigWatcher::start(&path, settings).unwrap();
            tokio::time::timeout(Duration::from_secs(10), watcher.changed())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: no first look within 10 s"));
        }
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
