//! Config loading: the shipped example parses, every invalid fixture fails with the
//! message it names, and values and defaults come out as documented.

use jellyfin_export_scheduler::config::{
    Backend, CatchUp, Config, ConfigError, DEFAULT_LEASE_TTL, DEFAULT_STATE_DIR, IfRunning,
    KeySource, LoadEnv, LogFormat, NotifyFormat, NotifyOn, Secrets, sha256_hex,
};
use jellyfin_export_scheduler::record::Outcome;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Loads with a fixed environment: only the variables given, system zone UTC.
fn load(path: &Path, vars: &[(&str, &str)]) -> Result<Config, String> {
    common::config::load(path, vars, Secrets::Resolve)
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    load(&path, vars)
}

/// `config/example.toml` with its left-off settings (`#key = …` lines, `#[[notify]]`)
/// switched on, so that every key it documents is parsed too.
fn example_with_everything_on() -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn example_config_parses_with_every_key() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("living-room"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let vars = [
        ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
        ("CABIN_JELLYFIN_KEY", "fedcba9876543210fedcba9876543210"),
    ];
    let config =
        load(&example, &vars).unwrap_or_else(|e| panic!("config/example.toml must parse:\n{e}"));
    assert_eq!(config.servers.len(), 2);
    let lr = &config.servers[0];
    assert_eq!(lr.name, "living-room");
    assert_eq!(lr.url.as_str(), "http://jellyfin.lan:8096/");
    assert_eq!(lr.api_key.expose(), "0123456789abcdef0123456789abcdef");
    assert_eq!(
        lr.api_key_source,
        KeySource::File(creds.path().join("living-room"))
    );
    assert_eq!(lr.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(lr.schedule.expr(), "0 30 3 * * *");
    let cabin = &config.servers[1];
    assert_eq!(cabin.url.as_str(), "https://media.example.org/jellyfin/");
    assert_eq!(cabin.timezone, chrono_tz::America::New_York);
    assert_eq!(cabin.timeout, Duration::from_secs(7200));
    assert_eq!(
        cabin.api_key_source,
        KeySource::Env("CABIN_JELLYFIN_KEY".into())
    );
    assert_eq!(
        config.daemon.state_dir,
        PathBuf::from("/var/lib/jellyfin-export-scheduler")
    );
    // Nothing leaves the machine until switched on: no ping, no notification.
    assert_eq!(lr.ping_url, None);
    assert_eq!(cabin.ping_url, None);
    assert!(config.notify.is_empty());
    // The one placeholder left on is the example server's host, and it is warned about.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0]
            .contains(": servers[1].url: \"https://media.example.org/jellyfin/\" still holds"),
        "{:?}",
        config.warnings
    );

    // With its left-off settings switched on, every documented key parses.
    std::fs::write(
        creds.path().join("endpoint-token"),
        "6f1c0e2d9b8a7f3e4d5c6b7a8f9e0d1c\n",
    )
    .unwrap();
    std::fs::write(
        creds.path().join("database-url"),
        "postgresql://scheduler:s3cret@db.lan:5432/scheduler\n",
    )
    .unwrap();
    let config = parse(&example_with_everything_on(), &vars)
        .unwrap_or_else(|e| panic!("config/example.toml, everything on, must parse:\n{e}"));
    let jellyfin_export_scheduler::config::Backend::Postgres(pg) = &config.daemon.backend else {
        panic!("backend = \"postgres\" on: {:?}", config.daemon.backend);
    };
    assert_eq!(
        pg.url.expose(),
        "postgresql://scheduler:s3cret@db.lan:5432/scheduler"
    );
    assert_eq!(pg.lease_ttl, Duration::from_secs(15));
    assert_eq!(pg.instance_name.as_deref(), Some("scheduler-a"));
    assert_eq!(
        config.daemon.api_token.as_ref().map(|t| t.expose()),
        Some("6f1c0e2d9b8a7f3e4d5c6b7a8f9e0d1c")
    );
    assert!(config.servers[0].ping_url.is_some());
    assert_eq!(config.servers[1].ping_url, None);
    assert_eq!(config.notify.len(), 1);
    assert_eq!(config.notify[0].format, NotifyFormat::Ntfy);
    assert_eq!(config.notify[0].on, NotifyOn::DEFAULT.to_vec());
    assert_eq!(config.notify[0].shown, "https://ntfy.sh (path hidden)");
    assert_eq!(
        config.notify[0].servers,
        Some(vec!["living-room".to_owned(), "cabin".to_owned()])
    );
    // ... and its placeholders (ping check, ntfy topic) are warned about, unquoted.
    let warnings = config.warnings.join("\n");
    assert!(
        warnings.contains(": servers[0].ping_url: the ping URL looks like a placeholder"),
        "{warnings}"
    );
    assert!(
        warnings.contains(": notify[0].url: the webhook URL looks like a placeholder"),
        "{warnings}"
    );
    assert!(!warnings.contains("YOUR-"), "{warnings}");
}

#[test]
fn minimal_config_parses_sends_nothing_elsewhere_and_flags_its_placeholder() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("living-room"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/minimal.toml");
    let vars = [("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())];
    let config =
        load(&minimal, &vars).unwrap_or_else(|e| panic!("config/minimal.toml must parse:\n{e}"));
    assert_eq!(config.servers.len(), 1);
    let s = &config.servers[0];
    assert_eq!(s.name, "living-room");
    assert_eq!(
        s.api_key_source,
        KeySource::File(creds.path().join("living-room"))
    );
    assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(s.ping_url, None);
    assert!(config.notify.is_empty());
    assert_eq!(
        config.daemon.listen,
        Some("127.0.0.1:9810".parse().unwrap())
    );
    // Copied unedited, it says what to edit.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].contains(": servers[0].url: \"http://jellyfin.example.com:8096/\" still holds a host reserved for examples"),
        "{:?}",
        config.warnings
    );
    // Its Docker lines, switched on, give the listen address the compose file publishes.
    let text = std::fs::read_to_string(&minimal)
        .unwrap()
        .replace("#[daemon]", "[daemon]")
        .replace("#listen", "listen");
    let config = parse(&text, &vars).unwrap();
    assert_eq!(config.daemon.listen, Some("0.0.0.0:9810".parse().unwrap()));
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = fixtures().join("invalid");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no '# expect:' line",
            path.display()
        );
        checked += 1;
        let err = match load(&path, &[("SOME_KEY", "abc")]) {
            Ok(_) => {
                failures.push(format!("{} should be refused but loaded", path.display()));
                continue;
            }
            Err(e) => e,
        };
        for expect in expects {
            if !err.contains(expect) {
                failures.push(format!(
                    "{}: expected the error to contain\n  {expect}\nbut it was:\n{err}",
                    path.display()
                ));
            }
        }
        // One line per problem, each FILE:LINE:COL: prefixed.
        for line in err.lines() {
            assert!(
                line.starts_with(&format!("{}:", path.display())),
                "{}: line without file:line:col prefix: {line}",
                path.display()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        checked >= 30,
        "only {checked} fixtures found in {}",
        dir.display()
    );
}

#[test]
fn every_problem_is_reported_on_its_own_line() {
    let path = fixtures().join("invalid/every_problem_reported.toml");
    let err = load(&path, &[]).unwrap_err();
    assert!(
        err.lines().count() >= 5,
        "expected at least 5 problems:\n{err}"
    );
}

#[test]
fn defaults_apply_and_servers_override_them() {
    let config = parse(
        r#"
[daemon]
state_dir = "/tmp/x"
log_format = "json"
max_concurrent_runs = 3
shutdown_grace = "1m"

[defaults]
timezone = "Australia/Lord_Howe"
poll_interval = "2s"
retries = 5
catch_up = "none"
if_running = "follow"
schedule = "@daily"
verify_export = false

[[servers]]
name = "one"
url = "http://127.0.0.1:1"
api_key = "abc"

[[servers]]
name = "two"
url = "http://127.0.0.1:2/jf"
api_key_env = "TWO_KEY"
poll_interval = "10s"
schedule = "*/5 * * * *"
timezone = "UTC"
enabled = false
"#,
        &[("TWO_KEY", "  two-key\n")],
    )
    .unwrap();
    assert_eq!(config.daemon.log_format, LogFormat::Json);
    assert_eq!(config.daemon.max_concurrent_runs, 3);
    assert_eq!(config.daemon.shutdown_grace, Duration::from_secs(60));
    let one = &config.servers[0];
    assert_eq!(one.timezone, chrono_tz::Australia::Lord_Howe);
    assert_eq!(one.poll_interval, Duration::from_secs(2));
    assert_eq!(one.retries, 5);
    assert_eq!(one.catch_up, CatchUp::None);
    assert_eq!(one.if_running, IfRunning::Follow);
    assert_eq!(one.schedule.expr(), "@daily");
    assert!(!one.verify_export);
    assert!(one.enabled);
    // Built-in defaults.
    assert_eq!(one.timeout, Duration::from_secs(6 * 3600));
    assert_eq!(one.request_timeout, Duration::from_secs(30));
    assert_eq!(one.retry_backoff, Duration::from_secs(30));
    assert_eq!(one.jitter, Duration::ZERO);
    assert_eq!(one.catch_up_window, Duration::from_secs(24 * 3600));
    assert_eq!(one.history_limit, 1000);
    assert_eq!(one.start_grace, Duration::from_secs(60));
    assert_eq!(one.task_key, "JellyfinMigratorExport");
    let two = &config.servers[1];
    assert_eq!(two.poll_interval, Duration::from_secs(10));
    assert_eq!(two.timezone, chrono_tz::UTC);
    assert_eq!(two.api_key.expose(), "two-key");
    assert_eq!(two.url.as_str(), "http://127.0.0.1:2/jf/");
    assert!(!two.enabled);
}

#[test]
fn state_directory_from_systemd_when_config_is_silent() {
    let text =
        "[[servers]]\nname = \"a\"\nurl = \"http://h\"\napi_key = \"k\"\nschedule = \"@hourly\"\n";
    let c = parse(text, &[("STATE_DIRECTORY", "/var/lib/jes:/other")]).unwrap();
    assert_eq!(c.daemon.state_dir, PathBuf::from("/var/lib/jes"));
    let c = parse(text, &[]).unwrap();
    assert_eq!(
        c.daemon.state_dir,
        PathBuf::from("/var/lib/jellyfin-export-scheduler")
    );
    let c = parse(
        &format!("[daemon]\nstate_dir = \"/srv/state\"\n{text}"),
        &[("STATE_DIRECTORY", "/x")],
    )
    .unwrap();
    assert_eq!(c.daemon.state_dir, PathBuf::from("/srv/state"));
}

#[test]
fn system_timezone_is_used_when_none_is_configured() {
    let text =
        "[[servers]]\nname = \"a\"\nurl = \"http://h\"\napi_key = \"k\"\nschedule = \"@hourly\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let env = LoadEnv {
        var: &|_| None,
        system_timezone: &|| chrono_tz::Asia::Tokyo,
    };
    let c = Config::load_with(&path, &env).unwrap();
    assert_eq!(c.servers[0].timezone, chrono_tz::Asia::Tokyo);
}

#[test]
fn key_file_under_credentials_directory_is_expanded_and_trimmed() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("srv"), "secret-key-value\n\n").unwrap();
    let text = "[[servers]]\nname = \"a\"\nurl = \"http://h\"\napi_key_file = \"${CREDENTIALS_DIRECTORY}/srv\"\nschedule = \"@hourly\"\n";
    let c = parse(
        text,
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(c.servers[0].api_key.expose(), "secret-key-value");
}

#[test]
fn keys_never_appear_in_debug_output_or_errors() {
    let key = "d41d8cd98f00b204e9800998ecf8427e";
    let text = format!(
        "[[servers]]\nname = \"a\"\nurl = \"http://h\"\napi_key = \"{key}\"\nschedule = \"@hourly\"\n"
    );
    let c = parse(&text, &[]).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains(key), "key leaked in Debug: {debug}");
    // An error elsewhere in the same file must not quote the key either.
    let err = parse(&format!("{text}retries = -1\n"), &[]).unwrap_err();
    assert!(!err.contains(key), "key leaked in error: {err}");
}

#[test]
fn inline_key_in_world_readable_file_is_a_warning_not_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[servers]]\nname = \"a\"\nurl = \"http://h\"\napi_key = \"k\"\nschedule = \"@hourly\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = load(&path, &[]).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("chmod 600"), "{}", c.warnings[0]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load(&path, &[]).unwrap().warnings.is_empty());
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(jellyfin_export_scheduler::config::MAX_CONFIG_BYTES + 1)
        .unwrap();
    let err = load(&path, &[]).unwrap_err();
    assert!(err.contains("more than the"), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Path::new("/nonexistent/jes/config.toml"), &[]).unwrap_err();
    assert!(
        err.starts_with("/nonexistent/jes/config.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn ten_thousand_servers_load() {
    let mut text =
        String::from("[defaults]\nschedule = \"0 30 3 * * *\"\ntimezone = \"Europe/Berlin\"\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[servers]]\nname = \"s{i}\"\nurl = \"http://127.0.0.1:8096/s/s{i}\"\napi_key = \"key{i}\"\n"
        ));
    }
    let c = parse(&text, &[]).unwrap();
    assert_eq!(c.servers.len(), 10_000);
}

#[test]
fn try_config_parses_and_keeps_state_next_to_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/try.toml");
    let c = load(&path, &[]).unwrap_or_else(|e| panic!("config/try.toml must parse:\n{e}"));
    assert_eq!(
        c.daemon.state_dir,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/state")
    );
    assert_eq!(
        c.servers[0].api_key.expose(),
        "demo-api-key-0000000000000000000"
    );
}

const NOTIFY_SERVERS: &str = r#"
[[servers]]
name = "living-room"
url = "http://127.0.0.1:8096"
api_key = "k0123456789"
schedule = "@daily"
ping_url = "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

[[servers]]
name = "cabin"
url = "http://127.0.0.1:8097"
api_key = "k0123456789"
schedule = "@daily"
"#;

#[test]
fn notify_targets_read_every_url_source_and_apply_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/slack"),
        "https://hooks.slack.com/services/T0/B0/FILESECRET\n",
    )
    .unwrap();
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("ntfy"), "  https://ntfy.sh/credtopic  \n").unwrap();
    let text = format!(
        r#"{NOTIFY_SERVERS}
[[notify]]
url = "https://example.org/hook/INLINESECRET"

[[notify]]
url_file = "secrets/slack"
format = "slack"
on = ["failed", "recovered", "failed", "skipped"]
servers = ["cabin"]
timeout = "3s"
retries = 0

[[notify]]
url_env = "NTFY_URL"
format = "ntfy"

[[notify]]
url_file = "${{CREDENTIALS_DIRECTORY}}/ntfy"
"#
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let c = load(
        &path,
        &[
            (
                "NTFY_URL",
                "https://ntfy.example.org/envtopic?auth=ENVSECRET",
            ),
            ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(c.notify.len(), 4);
    let [inline, file, env, cred] = &c.notify[..] else {
        unreachable!()
    };
    assert_eq!(inline.url.expose(), "https://example.org/hook/INLINESECRET");
    assert_eq!(inline.shown, "https://example.org (path hidden)");
    assert_eq!(inline.on, NotifyOn::DEFAULT.to_vec());
    assert_eq!(
        inline.on.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        ["failed", "timed_out", "lost", "trigger_failed", "recovered"]
    );
    assert_eq!(inline.servers, None);
    assert!(inline.covers("living-room") && inline.covers("cabin"));
    assert_eq!(inline.format, NotifyFormat::Json);
    assert_eq!(inline.timeout, Duration::from_secs(10));
    assert_eq!(inline.retries, 3);
    // A file is trimmed and read relative to the config file's folder.
    assert_eq!(
        file.url.expose(),
        "https://hooks.slack.com/services/T0/B0/FILESECRET"
    );
    assert_eq!(file.format, NotifyFormat::Slack);
    // Duplicates collapse, order is kept.
    assert_eq!(
        file.on,
        [
            NotifyOn::Outcome(Outcome::Failed),
            NotifyOn::Recovered,
            NotifyOn::Outcome(Outcome::Skipped)
        ]
    );
    assert_eq!(file.servers, Some(vec!["cabin".to_owned()]));
    assert!(!file.covers("living-room"));
    assert_eq!(file.timeout, Duration::from_secs(3));
    assert_eq!(file.retries, 0);
    assert_eq!(env.format, NotifyFormat::Ntfy);
    assert_eq!(
        env.url.expose(),
        "https://ntfy.example.org/envtopic?auth=ENVSECRET"
    );
    assert_eq!(cred.url.expose(), "https://ntfy.sh/credtopic");
    assert_eq!(
        c.servers[0].ping_url.as_ref().map(|s| s.expose()),
        Some("https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    );
    assert_eq!(c.servers[1].ping_url, None);
    // Secret URLs print as masks.
    let debug = format!("{c:?}");
    for secret in [
        "INLINESECRET",
        "FILESECRET",
        "ENVSECRET",
        "credtopic",
        "0f1e2d3c",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in Debug: {debug}");
    }
}

#[test]
fn every_outcome_and_recovered_may_be_listed_in_on() {
    let names: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("\"{o}\""))
        .chain(["\"recovered\"".to_owned()])
        .collect();
    let text = format!(
        "{NOTIFY_SERVERS}\n[[notify]]\nurl = \"http://127.0.0.1:1/h\"\non = [{}]\n",
        names.join(", ")
    );
    let c = parse(&text, &[]).unwrap();
    assert_eq!(c.notify[0].on.len(), 10);
    // No [[notify]] at all is fine too.
    assert!(parse(NOTIFY_SERVERS, &[]).unwrap().notify.is_empty());
}

#[test]
fn secret_urls_are_not_quoted_in_errors() {
    let text =
        format!("{NOTIFY_SERVERS}\n[[notify]]\nurl = \"https//hooks.example.org/URLSECRET\"\n");
    let err = parse(&text, &[]).unwrap_err();
    assert!(
        err.contains("notify[0].url: the webhook URL from url is not a URL"),
        "{err}"
    );
    assert!(!err.contains("URLSECRET"), "{err}");
    let text = NOTIFY_SERVERS.replace(
        "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "hc-ping.com/PINGSECRET",
    );
    let err = parse(&text, &[]).unwrap_err();
    assert!(
        err.contains("servers[0].ping_url: the ping URL is not a URL"),
        "{err}"
    );
    assert!(!err.contains("PINGSECRET"), "{err}");
}

#[test]
fn a_changed_ping_url_is_a_changed_server() {
    let a = parse(NOTIFY_SERVERS, &[]).unwrap();
    let b = parse(&NOTIFY_SERVERS.replace("0f1e2d3c", "99999999"), &[]).unwrap();
    assert!(a.servers[0].same_settings(&a.servers[0].clone()));
    assert!(!a.servers[0].same_settings(&b.servers[0]));
    assert!(a.servers[1].same_settings(&b.servers[1]));
}

/// Writes `text` as a 0600 config (no inline-key warning) next to `files`.
fn load_private(text: &str, files: &[(&str, &str)], vars: &[(&str, &str)]) -> (Config, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = load(&path, vars).unwrap_or_else(|e| panic!("must load:\n{e}"));
    (config, path.display().to_string())
}

#[test]
fn placeholders_are_warned_about_with_their_place_and_no_secret() {
    let text = r#"[[servers]]
name = "a"
url = "http://jellyfin.example.com:8096"
api_key = "change-me-SECRETTAIL1"
schedule = "@daily"
ping_url = "https://hc-ping.com/<uuid>/SECRETTAIL2"

[[servers]]
name = "b"
url = "http://192.168.1.20:8096"
api_key_file = "key"
schedule = "@daily"

[[servers]]
name = "c"
url = "http://192.168.1.21:8096"
api_key_env = "C_KEY"
schedule = "@daily"

[[servers]]
name = "clean"
url = "http://jellyfin.lan:8096"
api_key = "0123456789abcdef0123456789abcdef"
schedule = "@daily"
ping_url = "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

[[notify]]
url_file = "hook"

[[notify]]
url = "https://ntfy.sh/a-real-topic-SECRETTAIL6"
"#;
    let (config, path) = load_private(
        text,
        &[
            ("key", "YOUR-API-KEY-SECRETTAIL3\n"),
            (
                "hook",
                "https://ntfy.sh/jellyfin-exports-change-me-SECRETTAIL5\n",
            ),
        ],
        &[("C_KEY", "xxxxxxxxSECRETTAIL4")],
    );
    let want = [
        format!(
            "{path}:3:7: servers[0].url: \"http://jellyfin.example.com:8096/\" still holds a host reserved for examples"
        ),
        format!(
            "{path}:4:11: servers[0].api_key: the API key written here looks like a placeholder"
        ),
        format!("{path}:6:12: servers[0].ping_url: the ping URL looks like a placeholder"),
        format!("{path}:11:16: servers[1].api_key_file: the API key read from "),
        format!(
            "{path}:17:15: servers[2].api_key_env: the API key in $C_KEY looks like a placeholder"
        ),
        format!("{path}:28:12: notify[0].url_file: the webhook URL looks like a placeholder"),
    ];
    assert_eq!(config.warnings.len(), want.len(), "{:#?}", config.warnings);
    for (got, want) in config.warnings.iter().zip(&want) {
        assert!(got.starts_with(want.as_str()), "got  {got}\nwant {want}…");
    }
    for w in &config.warnings {
        assert!(!w.contains('\n'), "one line each: {w}");
        for secret in [
            "SECRETTAIL",
            "change-me",
            "YOUR-API",
            "xxxxxxxx",
            "<uuid>",
            "jellyfin-exports",
        ] {
            assert!(!w.contains(secret), "{secret} leaked: {w}");
        }
    }
}

/// A config whose every secret comes from outside the file or is a capability URL.
const SECRETS_OUTSIDE: &str = r#"
[[servers]]
name = "living-room"
url = "http://jellyfin.lan:8096"
api_key_file = "${CREDENTIALS_DIRECTORY}/living-room"
schedule = "0 30 3 * * *"
ping_url = "https://hc-ping.example/0f1e2d3c"

[[servers]]
name = "cabin"
url = "http://cabin.lan:8096"
api_key_env = "CABIN_KEY"
schedule = "0 30 3 * * *"

[[notify]]
url_file = "/nonexistent/hook-url"

[[notify]]
url_env = "HOOK_URL"
"#;

fn load_skipping(text: &str) -> Result<Config, jellyfin_export_scheduler::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let env = LoadEnv {
        var: &|_| None,
        system_timezone: &|| chrono_tz::UTC,
    };
    Config::load_opts(&path, &env, Secrets::Skip)
}

#[test]
fn without_secrets_nothing_outside_the_file_is_read() {
    let c = load_skipping(SECRETS_OUTSIDE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.secrets, Secrets::Skip);
    let (lr, cabin) = (&c.servers[0], &c.servers[1]);
    assert!(!lr.api_key.is_resolved() && !cabin.api_key.is_resolved());
    assert_eq!(
        lr.api_key_source,
        KeySource::File(PathBuf::from("${CREDENTIALS_DIRECTORY}/living-room"))
    );
    assert_eq!(cabin.api_key_source, KeySource::Env("CABIN_KEY".into()));
    assert!(lr.ping_url.as_ref().is_some_and(|p| !p.is_resolved()));
    assert!(cabin.ping_url.is_none());
    assert!(c.notify.iter().all(|n| !n.url.is_resolved()));
    assert_eq!(
        c.notify[0].shown,
        "the webhook URL from file /nonexistent/hook-url (not read)"
    );
    assert_eq!(
        c.notify[1].shown,
        "the webhook URL from environment variable HOOK_URL (not read)"
    );
    // Everything that is not a secret is read as usual.
    assert_eq!(lr.schedule.expr(), "0 30 3 * * *");
    assert_eq!(c.daemon.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
}

#[test]
fn with_secrets_each_one_this_environment_lacks_is_marked_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // One problem that is not about a secret, to tell the two apart.
    std::fs::write(&path, SECRETS_OUTSIDE.replacen("0 30 3", "0 61 3", 1)).unwrap();
    let env = LoadEnv {
        var: &|_| None,
        system_timezone: &|| chrono_tz::UTC,
    };
    let Err(ConfigError::Invalid { problems, .. }) = Config::load_with(&path, &env) else {
        panic!("the config must not load without its secrets");
    };
    let flagged: Vec<(&str, bool)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.unavailable_secret))
        .collect();
    assert_eq!(
        flagged,
        [
            ("servers[0].api_key_file", true),
            ("servers[0].schedule", false),
            ("servers[1].api_key_env", true),
            ("notify[0].url_file", true),
            ("notify[1].url_env", true),
        ]
    );
}

#[test]
fn without_secrets_the_sources_are_still_checked() {
    let server = |keys: &str| {
        format!(
            "[[servers]]\nname = \"a\"\nurl = \"http://a.lan\"\nschedule = \"@daily\"\n{keys}\n"
        )
    };
    let cases = [
        (
            server("api_key = \"k\"\napi_key_env = \"K\""),
            "more than one API key source (api_key, api_key_env)",
        ),
        (server(""), "no API key: give exactly one of"),
        (server("api_key_file = 3"), "expected a string"),
        (
            server("api_key_env = \"K\"\nping_url = true"),
            "servers[0].ping_url: expected a string",
        ),
        (
            server("api_key_env = \"K\"") + "[[notify]]\non = [\"failed\"]\n",
            "no webhook URL: give exactly one of",
        ),
    ];
    for (text, want) in cases {
        let err = load_skipping(&text).expect_err(&text).to_string();
        assert!(err.contains(want), "{text}\nwanted {want:?} in:\n{err}");
    }
}

#[test]
fn the_digest_is_the_files_sha256() {
    // The FIPS 180-2 test vector.
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let c = load_skipping(SECRETS_OUTSIDE).unwrap();
    assert_eq!(c.digest, sha256_hex(SECRETS_OUTSIDE.as_bytes()));
}

/// `[archive]`, `[defaults.archive]` and a server's `archive` table: layered per key,
/// recipients parsed at load, every mistake reported at its line and column.
#[test]
fn archive_tables_layer_per_key_and_refuse_mistakes_where_they_are() {
    let me = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let base = format!(
        "[daemon]\nstate_dir = \"/var/lib/x\"\n\n[archive]\nkeep_last = 3\nencrypt_to = [\"{me}\"]\n\n[defaults.archive]\nkeep_daily = 2\n\n[[servers]]\nname = \"a\"\nurl = \"http://a\"\napi_key = \"k\"\nschedule = \"@daily\"\n\n[[servers]]\nname = \"b\"\nurl = \"http://b\"\napi_key = \"k\"\nschedule = \"@daily\"\narchive = {{ dir = \"/srv/backups\", keep_last = 9, encrypt_to = [] }}\n"
    );
    let c = parse(&base, &[]).unwrap();
    let (a, b) = (&c.servers[0].archive, &c.servers[1].archive);
    assert!(a.enabled, "on by default");
    assert_eq!(
        a.root(Path::new("/var/lib/x")),
        Path::new("/var/lib/x/archive")
    );
    assert_eq!(
        (a.retention.keep_last, a.retention.keep_daily),
        (Some(3), Some(2))
    );
    assert_eq!(a.recipients.len(), 1);
    assert_eq!(b.root(Path::new("/var/lib/x")), Path::new("/srv/backups"));
    assert_eq!(
        (b.retention.keep_last, b.retention.keep_daily),
        (Some(9), Some(2))
    );
    assert!(
        b.recipients.is_empty(),
        "encrypt_to = [] turns it off below"
    );

    let cases = [
        ("[archive]\nkeep_lats = 3\n", "2:1", "keep_lats"),
        (
            "[archive]\nencrypt_to = [\"age1nope\"]\n",
            "2:15",
            "is not an age X25519 recipient",
        ),
        (
            "[archive]\nencrypt_to = [\"AGE-SECRET-KEY-1QQQQQQ\"]\n",
            "2:15",
            "a secret key: give the public key",
        ),
        ("[archive]\nkeep_within = \"0s\"\n", "2:15", "keep_within"),
        ("[archive]\ndir = \"\"\n", "2:7", "must not be empty"),
        (
            "[archive]\nencrypt_to_file = \"missing.txt\"\n",
            "2:19",
            "cannot read the recipients file",
        ),
        ("[archive]\nenabled = \"yes\"\n", "2:11", "enabled"),
        ("archive = 3\n", "1:11", "archive"),
    ];
    let server =
        "\n[[servers]]\nname = \"a\"\nurl = \"http://a\"\napi_key = \"k\"\nschedule = \"@daily\"\n";
    for (table, at, want) in cases {
        let e = parse(&format!("{table}{server}"), &[])
            .err()
            .unwrap_or_else(|| panic!("{table} loads"));
        assert!(
            e.contains(&format!("config.toml:{at}")) || e.contains(&format!(":{at}:")),
            "{table}: {e}"
        );
        assert!(e.contains(want), "{table}: {e}");
        assert!(!e.contains("QQQQQQ"), "a secret key is never repeated: {e}");
    }
}

/// One server, and `[daemon]` with `daemon`'s lines.
fn with_daemon(daemon: &str) -> String {
    format!(
        "[daemon]\n{daemon}\n\n[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k0123456789\"\nschedule = \"0 30 3 * * *\"\ntimezone = \"UTC\"\n"
    )
}

#[test]
fn the_files_backend_is_the_default() {
    let c = parse(&with_daemon(""), &[]).unwrap();
    assert_eq!(c.daemon.backend, Backend::Files);
    let c = parse(&with_daemon("backend = \"files\""), &[]).unwrap();
    assert_eq!(c.daemon.backend, Backend::Files);
}

#[test]
fn the_postgres_backend_reads_its_url_like_a_key_and_never_shows_it() {
    const URL: &str = "postgresql://sched:PGSECRET-3f9a@127.0.0.1:5432/sched?sslmode=disable";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("database-url"), format!("{URL}\n")).unwrap();
    let c = parse(
        &with_daemon(
            "backend = \"postgres\"\ndatabase_url_file = \"${CREDENTIALS_DIRECTORY}/database-url\"",
        ),
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
    )
    .unwrap();
    let Backend::Postgres(pg) = &c.daemon.backend else {
        panic!("backend = \"postgres\" must give the PostgreSQL backend");
    };
    assert_eq!(pg.url.expose(), URL, "read from the file and trimmed");
    assert_eq!(
        pg.url_source,
        KeySource::File(dir.path().join("database-url"))
    );
    assert_eq!(pg.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(pg.lease_ttl, Duration::from_secs(15));
    assert_eq!(pg.instance_name, None);
    let instance = pg.instance();
    assert!(
        instance.ends_with(&format!(":{}", std::process::id())),
        "the default instance name is host:pid, not {instance:?}"
    );
    assert!(
        !format!("{c:?}").contains("PGSECRET"),
        "Debug shows the URL"
    );

    // The environment variable and the inline value, with the other keys.
    let c = parse(
        &with_daemon(
            "backend = \"postgres\"\ndatabase_url_env = \"DB_URL\"\nlease_ttl = \"4s\"\ninstance_name = \"backup-a\"",
        ),
        &[("DB_URL", URL)],
    )
    .unwrap();
    let Backend::Postgres(pg) = &c.daemon.backend else {
        panic!("backend = \"postgres\" must give the PostgreSQL backend");
    };
    assert_eq!(pg.url_source, KeySource::Env("DB_URL".into()));
    assert_eq!(pg.lease_ttl, Duration::from_secs(4));
    assert_eq!(pg.instance(), "backup-a");
    assert!(
        !c.warnings.iter().any(|w| w.contains("[daemon]")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_bad_database_url_is_described_but_never_quoted() {
    for (url, expect) in [
        ("PGSECRET-only-text", "is not a URL"),
        ("mysql://u:PGSECRET@db/x", "uses scheme \"mysql\""),
        ("postgresql:///x?password=PGSECRET", "has no host"),
        (
            "postgresql://u:PGSECRET@db/x?sslmode=verify-full",
            "asks for sslmode=verify-full, but this version connects to PostgreSQL without TLS",
        ),
        (
            "postgresql://u:PGSECRET@db/x?sslmode=PGSECRET",
            "has an sslmode that is not one of",
        ),
    ] {
        let err = parse(
            &with_daemon("backend = \"postgres\"\ndatabase_url_env = \"DB_URL\""),
            &[("DB_URL", url)],
        )
        .unwrap_err();
        assert!(
            err.contains(&format!(
                "daemon.database_url_env: the database URL from database_url_env {expect}"
            )),
            "{url}: {err}"
        );
        assert!(!err.contains("PGSECRET"), "{url}: the URL is quoted: {err}");
    }
    // The modes that connect in the clear are accepted.
    for mode in ["disable", "allow", "prefer"] {
        let url = format!("postgres://u:p@127.0.0.1:5432/x?sslmode={mode}");
        parse(
            &with_daemon("backend = \"postgres\"\ndatabase_url_env = \"DB_URL\""),
            &[("DB_URL", &url)],
        )
        .unwrap_or_else(|e| panic!("sslmode={mode} must load: {e}"));
    }
}

#[test]
fn a_lease_too_long_for_the_promised_takeover_is_a_warning() {
    let c = parse(
        &with_daemon(
            "backend = \"postgres\"\ndatabase_url = \"postgresql://u@db/x\"\nlease_ttl = \"1m\"",
        ),
        &[],
    )
    .unwrap();
    let daemon: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.contains("[daemon]"))
        .collect();
    assert_eq!(daemon.len(), 1, "{:?}", c.warnings);
    assert!(
        daemon[0].contains("[daemon] lease_ttl = \"1m\" is above 45s: another instance takes over up to 1m 20s after the leader dies, later than the 60 s promised"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn without_secrets_the_database_url_is_named_not_read() {
    let c = load_skipping(&with_daemon(
        "backend = \"postgres\"\ndatabase_url_file = \"${CREDENTIALS_DIRECTORY}/database-url\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let Backend::Postgres(pg) = &c.daemon.backend else {
        panic!("backend = \"postgres\" must give the PostgreSQL backend");
    };
    assert!(!pg.url.is_resolved());
    assert_eq!(
        pg.url_source,
        KeySource::File(PathBuf::from("${CREDENTIALS_DIRECTORY}/database-url"))
    );
}
