//! The real binary: `reload` against a real `run` daemon (validation first, the daemon's
//! answer through the reload status file, every failure with its exit code), and the
//! commands that read local state without the secrets (`history`, `check --no-secrets`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::bin::{Daemon, Ran, command, describe, run, signal, text};

const KEY: &str = "5d41402abc4b2a76b9719d911017c592";
/// Generous for a loaded 2-core machine; reached only when something is broken.
const LIMIT: Duration = Duration::from_secs(20);

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    key_file: PathBuf,
}

impl Env {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
    /// The config with `servers` (name, extra lines) and `log_format`; the key comes from
    /// a file, as under systemd.
    fn write(&self, log_format: &str, servers: &[(&str, &str)]) {
        let mut text = format!(
            // These tests are about SIGHUP and `reload`: no watcher reloads an edit first.
            "[daemon]\nstate_dir = \"{}\"\nlisten = \"\"\nlog_format = \"{log_format}\"\nwatch_config = \"off\"\n",
            self.state().display()
        );
        for (name, extra) in servers {
            text.push_str(&format!(
                "\n[[servers]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:9\"\napi_key_file = \"{}\"\nschedule = \"0 0 3 * * *\"\ntimezone = \"UTC\"\n{extra}\n",
                self.key_file.display()
            ));
        }
        std::fs::write(&self.config, text).unwrap();
    }
}

fn env(log_format: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let env = Env {
        config: dir.path().join("config.toml"),
        key_file,
        dir,
    };
    env.write(log_format, &[("a", "")]);
    env
}

fn start(env: &Env) -> Daemon {
    let daemon = Daemon::run(&env.config, &env.log());
    wait_until("the daemon armed its schedules", || {
        env.log_text().contains("schedules armed")
    });
    daemon
}

fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    common::wait::wait_until_blocking(LIMIT, what, cond)
}

fn bin(args: &[&str], vars: &[(&str, &str)]) -> Ran {
    run(command(args).envs(vars.iter().copied()))
}

fn reload(env: &Env, extra: &[&str]) -> Ran {
    let mut args = vec!["reload", "--config", env.config.to_str().unwrap()];
    args.extend_from_slice(extra);
    bin(&args, &[])
}

fn status(env: &Env) -> serde_json::Value {
    let t = std::fs::read_to_string(env.state().join("reload-status.json")).unwrap();
    serde_json::from_str(&t).unwrap()
}

fn sha256_of(path: &Path) -> String {
    jellyfin_export_scheduler::config::sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn reload_applies_a_valid_file_and_says_what_changed() {
    let env = env("text");
    let daemon = start(&env);
    let pid = daemon.0.id();
    let started = status(&env);
    assert_eq!(started["generation"], 0);
    assert_eq!(started["pid"], pid);
    assert_eq!(started["result"], "applied");
    assert_eq!(started["sha256"], sha256_of(&env.config));

    env.write("text", &[("a", ""), ("b", "")]);
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!(
            "applied by the daemon (pid {pid}, reload 1): reloaded: 1 added, 0 removed, 0 changed"
        )),
        "{said}"
    );
    let s = status(&env);
    assert_eq!(
        (s["generation"].as_u64(), s["result"].as_str()),
        (Some(1), Some("applied"))
    );
    assert_eq!(s["sha256"], sha256_of(&env.config));
    assert_eq!(s["in_force_sha256"], sha256_of(&env.config));

    // With the pid systemd would pass, the same; nothing changed this time.
    let out = reload(&env, &["--pid", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("reloaded: 0 added, 0 removed, 0 changed"));
    assert!(!text(&out.stdout).contains(KEY) && !text(&out.stderr).contains(KEY));
}

#[test]
fn an_invalid_file_is_refused_before_the_daemon_is_touched() {
    let env = env("text");
    let _daemon = start(&env);
    let good = sha256_of(&env.config);
    std::fs::write(
        &env.config,
        "[daemon]\nlog_format = \"xml\"\n[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"k\"\nschedule = \"0 61 3 * * *\"\n",
    )
    .unwrap();
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = text(&out.stderr);
    // Every problem, one line each, then what happened.
    assert!(
        err.contains("daemon.log_format: \"xml\" is not one of"),
        "{err}"
    );
    assert!(
        err.contains("servers[0].schedule: invalid cron expression"),
        "{err}"
    );
    assert!(
        err.contains("not reloaded: nothing was sent to the daemon"),
        "{err}"
    );
    // The daemon never heard of it: no reload attempt, the old config in force.
    let s = status(&env);
    assert_eq!(s["generation"], 0);
    assert_eq!(s["in_force_sha256"], good);
    assert!(!env.log_text().contains("reloading"), "{}", env.log_text());
}

#[test]
fn a_secret_the_daemon_cannot_read_is_refused_by_the_daemon_and_reported() {
    let env = env("text");
    let daemon = start(&env);
    let good = sha256_of(&env.config);
    // Valid without secrets (what reload checks itself); the daemon cannot read the key.
    std::fs::remove_file(&env.key_file).unwrap();
    env.write("text", &[("a", ""), ("b", "")]);
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("servers[0].api_key_file: cannot read API key file"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "refused by the daemon (pid {}), which keeps running on its previous config",
            daemon.0.id()
        )),
        "{err}"
    );
    let s = status(&env);
    assert_eq!(
        (s["generation"].as_u64(), s["result"].as_str()),
        (Some(1), Some("refused"))
    );
    assert_eq!(s["sha256"], sha256_of(&env.config));
    assert_eq!(s["in_force_sha256"], good);
    assert!(
        env.log_text()
            .contains("reload failed; still running on the previous config")
    );
}

#[test]
fn reload_fails_clearly_without_a_daemon_or_with_the_wrong_pid() {
    let env = env("text");
    // Nothing ever ran on this state directory.
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("reload-status.json: not found"),
        "{}",
        describe(&out)
    );

    let mut daemon = start(&env);
    let pid = daemon.0.id();
    let out = reload(&env, &["--pid", &(pid + 1).to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "pid {} is not the daemon that reports in",
            pid + 1
        )),
        "{}",
        describe(&out)
    );

    signal(pid, "TERM");
    let _ = daemon.0.wait();
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "no daemon is running on state directory {}",
            env.state().display()
        )),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_daemon_that_does_not_answer_times_out_with_a_sentence_and_answers_later() {
    let env = env("text");
    let daemon = start(&env);
    let pid = daemon.0.id();
    signal(pid, "STOP");
    let started = Instant::now();
    let out = reload(&env, &["--timeout", "1s"]);
    let waited = started.elapsed();
    signal(pid, "CONT");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "the daemon (pid {pid}) did not report on the reload within 1s"
        )),
        "{}",
        describe(&out)
    );
    assert!(
        waited >= Duration::from_secs(1),
        "returned after {waited:?}"
    );
    // The signal was delivered: once running again, the daemon does the reload.
    wait_until("the daemon reloaded after SIGCONT", || {
        status(&env)["generation"] == 1
    });
    let out = reload(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn with_json_logs_every_reload_line_is_json() {
    let env = env("json");
    let _daemon = start(&env);
    let ok = reload(&env, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    let state = env.state();
    std::fs::write(
        &env.config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\nlog_format = 3\n",
            state.display()
        ),
    )
    .unwrap();
    let bad = reload(&env, &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    let lines: Vec<String> = [&ok, &bad]
        .iter()
        .flat_map(|o| {
            text(&o.stdout)
                .lines()
                .chain(text(&o.stderr).lines())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
    }
}

/// A config whose key is a systemd credential, and a state directory with one run.
fn service_config() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("history")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/v1.jsonl");
    std::fs::copy(fixture, state.join("history/living-room.jsonl")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[[servers]]\nname = \"living-room\"\nurl = \"http://127.0.0.1:9\"\napi_key_file = \"${{CREDENTIALS_DIRECTORY}}/living-room\"\nschedule = \"0 30 3 * * *\"\nping_url = \"https://hc.example/ping/0f1e2d3c\"\n\n[[notify]]\nurl_env = \"HOOK_URL\"\n",
            state.display()
        ),
    )
    .unwrap();
    (dir, config, state)
}

#[test]
fn history_reads_local_state_without_the_secrets_and_creates_nothing() {
    let (_dir, config, state) = service_config();
    let out = bin(&["history", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("completed"),
        "{}",
        describe(&out)
    );
    // (The fixture's torn last line is warned about; nothing is said about secrets.)
    assert!(
        !text(&out.stderr).contains("CREDENTIALS_DIRECTORY"),
        "{}",
        describe(&out)
    );
    // Only a reader: no locks/ or inflight/ made (as root they would be root's).
    for sub in ["locks", "inflight"] {
        assert!(!state.join(sub).exists(), "{sub} was created");
    }
}

#[test]
fn check_names_the_secrets_it_cannot_read_and_no_secrets_checks_the_rest() {
    let (_dir, config, _state) = service_config();
    let path = config.to_str().unwrap();
    let out = bin(&["check", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("servers[0].api_key_file: path \"${CREDENTIALS_DIRECTORY}/living-room\" uses $CREDENTIALS_DIRECTORY, which is not set"),
        "{err}"
    );
    assert!(
        err.contains("notify[0].url_env: environment variable HOOK_URL is not set"),
        "{err}"
    );
    assert!(
        err.contains("2 secrets cannot be read here (servers[0].api_key_file, notify[0].url_env)"),
        "{err}"
    );
    assert!(
        err.contains("everything else in the file is valid"),
        "{err}"
    );

    let out = bin(&["check", "--no-secrets", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let said = text(&out.stdout);
    assert!(said.contains("OK, 1 server"), "{said}");
    assert!(said.contains("secrets: not read (--no-secrets)"), "{said}");
    assert!(!said.contains("0f1e2d3c"), "the ping URL is shown: {said}");

    // A problem that is not about secrets still fails --no-secrets.
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_now.replace("0 30 3 * * *", "0 61 3 * * *")).unwrap();
    let out = bin(&["check", "--no-secrets", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("invalid cron expression"),
        "{}",
        describe(&out)
    );
    let out = bin(&["check", "--config", path], &[]);
    assert!(
        text(&out.stderr).contains("`check --no-secrets` checks everything else without them"),
        "{}",
        describe(&out)
    );

    // With the credential where the service would have it, check reads it and passes.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("living-room"), format!("{KEY}\n")).unwrap();
    std::fs::write(&config, text_now).unwrap();
    let out = bin(
        &["check", "--config", path],
        &[
            ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
            ("HOOK_URL", "https://hooks.example/T0/B0/XXSECRETXX"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!text(&out.stdout).contains("XXSECRETXX") && !text(&out.stdout).contains(KEY));
}
