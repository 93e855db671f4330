//! `[daemon] watch_config` through the real binary, in `auto` and in `poll` mode: each way
//! people and tools change a config file makes exactly one reload, seen in the reload
//! status file (its generation counts every attempt, SIGHUP's and the watcher's alike) and
//! in `/metrics`:
//!
//! in-place write · a half-written file completed within the debounce (one reload, of the
//! whole file) · rename over the file (vim, `sed -i`) · a Kubernetes ConfigMap's `..data`
//! symlink swap · an invalid edit (refused, old config kept) then its fix · a burst of ten
//! writes (one reload) · deletion (refused) and re-creation (applied).
//!
//! "Exactly one" is checked without waiting for nothing to happen: each step waits until
//! the status file names the step's content, then asserts that its generation is the
//! previous one plus one. A step that reloaded twice (a half file, a burst seen as two)
//! shows as a generation too many.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::bin::Daemon;
use common::wait::wait_until_blocking;

/// Generous for a loaded 2-core machine; reached only when something is broken.
const LIMIT: Duration = Duration::from_secs(30);

struct Env {
    dir: tempfile::TempDir,
    /// The file the daemon is told to read; its folder is what is watched.
    config: PathBuf,
    mode: &'static str,
    port: u16,
}

impl Env {
    fn new(mode: &'static str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("key"), format!("{KEY}\n")).unwrap();
        let port = common::free_port();
        let config = dir.path().join("etc/config.toml");
        Env {
            dir,
            config,
            mode,
            port,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A valid config with `servers` servers; `tag` makes each version's bytes its own.
    fn text(&self, servers: usize, tag: &str) -> String {
        let mut t = format!(
            "# {tag}\n[daemon]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\nwatch_config = \"{}\"\nwatch_debounce = \"1s\"\nwatch_poll_interval = \"100ms\"\n",
            self.state().display(),
            self.port,
            self.mode
        );
        for i in 0..servers {
            t.push_str(&format!(
                "\n[[servers]]\nname = \"s{i}\"\nurl = \"http://127.0.0.1:9\"\napi_key_file = \"{}\"\nschedule = \"0 0 3 * * *\"\ntimezone = \"UTC\"\n",
                self.dir.path().join("key").display()
            ));
        }
        t
    }

    fn start(&self) -> Daemon {
        let daemon = Daemon::run(&self.config, &self.dir.path().join("daemon.log"));
        wait_until_blocking(LIMIT, "the daemon armed its schedules", || {
            daemon.log().contains("schedules armed")
        });
        daemon
    }

    fn status(&self) -> Option<serde_json::Value> {
        let t = std::fs::read_to_string(self.state().join("reload-status.json")).ok()?;
        serde_json::from_str(&t).ok()
    }

    /// Wait until the reload status names `text` (or, for `None`, an unreadable file),
    /// then check that it took exactly one attempt after `*generation`, with `result`.
    fn expect_reload(
        &self,
        step: &str,
        generation: &mut u64,
        text: Option<&str>,
        result: &str,
    ) -> serde_json::Value {
        let want = text.map(|t| jellyfin_export_scheduler::config::sha256_hex(t.as_bytes()));
        let start = Instant::now();
        loop {
            if let Some(s) = self.status()
                && s["generation"].as_u64() > Some(*generation)
                && s["sha256"].as_str().map(str::to_owned) == want
            {
                assert_eq!(
                    s["generation"].as_u64(),
                    Some(*generation + 1),
                    "{step}: the file's content was reached in more than one reload: {s}\nlog:\n{}",
                    self.log()
                );
                assert_eq!(s["result"], result, "{step}: {s}");
                assert_eq!(s["cause"], "watch", "{step}: {s}");
                *generation += 1;
                return s;
            }
            assert!(
                start.elapsed() < LIMIT,
                "{step}: no reload of that content within {LIMIT:?} (mode {}); status: {:?}\nlog:\n{}",
                self.mode,
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics`'s reload success gauge.
    fn reload_success(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        body.lines()
            .find(|l| l.starts_with("jellyfin_export_config_reload_success "))
            .unwrap_or_else(|| panic!("no reload success gauge in /metrics:\n{body}"))
            .to_owned()
    }
}

/// Write `text` to a new file beside `path` and rename it over `path`, as vim and
/// `sed -i` save.
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn every_way_of_changing_the_file_reloads_once(mode: &'static str) {
    let env = Env::new(mode);
    let etc = env.config.parent().unwrap().to_owned();
    let v0 = env.text(1, "v0");
    std::fs::write(&env.config, &v0).unwrap();
    let _daemon = env.start();
    let mut generation = 0;
    assert_eq!(env.status().unwrap()["cause"], "start");

    // In place: truncate and write, as `>` and many editors do.
    let v1 = env.text(2, "in place");
    std::fs::write(&env.config, &v1).unwrap();
    let s = env.expect_reload("in-place write", &mut generation, Some(&v1), "applied");
    assert_eq!(s["summary"], "reloaded: 1 added, 0 removed, 0 changed");

    // Half a file, then the rest within the debounce: one reload, of the whole file.
    let v2 = env.text(3, "written in two halves");
    let (first, second) = v2.split_at(v2.len() - 40);
    let mut f = std::fs::File::create(&env.config).unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.sync_all().unwrap();
    // A slow writer: the half file stays on disk for a while (the poll sees it), but
    // less than the debounce. This pause is the scenario, not a wait for the daemon.
    std::thread::sleep(Duration::from_millis(300));
    f.write_all(second.as_bytes()).unwrap();
    drop(f);
    env.expect_reload("a half-written file", &mut generation, Some(&v2), "applied");

    // Rename over (vim, sed -i): a new inode under the old name.
    let v3 = env.text(2, "renamed over");
    rename_over(&env.config, &v3);
    let s = env.expect_reload("rename over", &mut generation, Some(&v3), "applied");
    assert_eq!(s["summary"], "reloaded: 0 added, 1 removed, 0 changed");

    // A ConfigMap: config.toml -> ..data/config.toml, ..data -> ..<timestamp>. Moving to
    // that layout is a rename over the file; an update swaps ..data.
    let v4 = env.text(1, "configmap 1");
    std::fs::create_dir(etc.join("..2026_01_01")).unwrap();
    std::fs::write(etc.join("..2026_01_01/config.toml"), &v4).unwrap();
    std::os::unix::fs::symlink("..2026_01_01", etc.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.toml", etc.join("config.toml.link")).unwrap();
    std::fs::rename(etc.join("config.toml.link"), &env.config).unwrap();
    env.expect_reload(
        "moving to a ConfigMap's layout",
        &mut generation,
        Some(&v4),
        "applied",
    );
    let v5 = env.text(2, "configmap 2");
    std::fs::create_dir(etc.join("..2026_01_02")).unwrap();
    std::fs::write(etc.join("..2026_01_02/config.toml"), &v5).unwrap();
    std::os::unix::fs::symlink("..2026_01_02", etc.join("..data_tmp")).unwrap();
    std::fs::rename(etc.join("..data_tmp"), etc.join("..data")).unwrap();
    std::fs::remove_dir_all(etc.join("..2026_01_01")).unwrap();
    env.expect_reload(
        "a ConfigMap's ..data swap",
        &mut generation,
        Some(&v5),
        "applied",
    );

    // An invalid edit is refused (every problem logged, the config in force kept, the
    // reload gauge at 0), and its fix applies.
    let bad = v5.replace("schedule = \"0 0 3 * * *\"", "schedule = \"0 61 3 * * *\"");
    rename_over(&env.config, &bad);
    let s = env.expect_reload("an invalid edit", &mut generation, Some(&bad), "refused");
    let v5_sha = jellyfin_export_scheduler::config::sha256_hex(v5.as_bytes());
    assert_eq!(s["in_force_sha256"], v5_sha.as_str(), "{s}");
    assert!(
        s["problems"]
            .to_string()
            .contains("invalid cron expression"),
        "{s}"
    );
    assert_eq!(
        env.reload_success(),
        "jellyfin_export_config_reload_success 0"
    );
    let v6 = env.text(1, "fixed");
    rename_over(&env.config, &v6);
    env.expect_reload("the fix", &mut generation, Some(&v6), "applied");
    assert_eq!(
        env.reload_success(),
        "jellyfin_export_config_reload_success 1"
    );

    // A burst of ten writes: one reload, of the last. The next change is the following
    // generation, so no reload of the burst came late either.
    let mut last = String::new();
    for i in 0..10 {
        last = env.text(1 + i % 3, &format!("burst {i}"));
        std::fs::write(&env.config, &last).unwrap();
    }
    env.expect_reload(
        "a burst of ten writes",
        &mut generation,
        Some(&last),
        "applied",
    );
    let v7 = env.text(1, "after the burst");
    std::fs::write(&env.config, &v7).unwrap();
    env.expect_reload(
        "the change after the burst",
        &mut generation,
        Some(&v7),
        "applied",
    );

    // Deleted: refused (the file cannot be read), the config in force kept. Created
    // again: applied.
    std::fs::remove_file(&env.config).unwrap();
    let s = env.expect_reload("deletion", &mut generation, None, "refused");
    assert_eq!(
        s["in_force_sha256"],
        jellyfin_export_scheduler::config::sha256_hex(v7.as_bytes()).as_str()
    );
    let v8 = env.text(2, "created again");
    std::fs::write(&env.config, &v8).unwrap();
    env.expect_reload("re-creation", &mut generation, Some(&v8), "applied");

    let log = env.log();
    assert_eq!(
        log.matches("config file changed: reloading").count() as u64,
        generation,
        "every reload was the watcher's:\n{log}"
    );
    assert!(
        log.contains("reload failed; still running on the previous config"),
        "{log}"
    );
    assert!(!log.contains(KEY));
}

#[test]
fn auto_sees_every_way_of_changing_the_file() {
    every_way_of_changing_the_file_reloads_once("auto");
}

#[test]
fn poll_sees_every_way_of_changing_the_file() {
    every_way_of_changing_the_file_reloads_once("poll");
}

#[test]
fn off_leaves_reloads_to_sighup_and_a_reload_can_turn_watching_on() {
    let env = Env::new("off");
    std::fs::write(&env.config, env.text(1, "off")).unwrap();
    let daemon = env.start();
    // Nothing reloads the edit by itself: SIGHUP does (generation 1, cause signal).
    let on = env
        .text(2, "off, edited")
        .replace("watch_config = \"off\"", "watch_config = \"auto\"");
    std::fs::write(&env.config, &on).unwrap();
    daemon.signal("HUP");
    wait_until_blocking(LIMIT, "the SIGHUP reload is recorded", || {
        env.status().is_some_and(|s| s["generation"] == 1)
    });
    let s = env.status().unwrap();
    assert_eq!(
        (s["cause"].as_str(), s["result"].as_str()),
        (Some("signal"), Some("applied"))
    );
    // That reload turned watching on: the next edit reloads by itself.
    let mut generation = 1;
    let next = env
        .text(1, "watched now")
        .replace("watch_config = \"off\"", "watch_config = \"auto\"");
    std::fs::write(&env.config, &next).unwrap();
    env.expect_reload(
        "an edit once watching is on",
        &mut generation,
        Some(&next),
        "applied",
    );
}
