//! `doctor` through the real binary against a simulated fleet with one server per thing
//! that can be wrong: every check comes out as it should, in text and JSON, with what to
//! do under each warning and failure; the simulator received only GET requests (nothing
//! started or cancelled); exit 0 / 1 / 2; no key in any output. TLS through a local TLS
//! proxy with certificates made here: refused without its CA, valid with it (named by
//! JELLYFIN_EXPORT_SCHEDULER_CA_FILE), with the days until it expires. Colour on a
//! terminal only, and not with `NO_COLOR`.

use jellyfin_export_scheduler::sim::{Mode, PluginStatus, RunOutcome, SimServerConfig, Simulator};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::KEY;
use common::bin::{BIN, Ran, clean, command, describe, run_async, text};

const CA_FILE_ENV: &str = "JELLYFIN_EXPORT_SCHEDULER_CA_FILE";

fn sim_server(name: &str, f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    let mut c = SimServerConfig::new(name, KEY);
    c.zip_base64_len = 8 * 1024;
    // Without device tokens an export holds nothing sensitive: `contents` is ok.
    c.include_devices = false;
    f(&mut c);
    c
}

/// The fleet: one server per kind of trouble.
fn fleet() -> Vec<SimServerConfig> {
    vec![
        sim_server("good", |_| {}),
        sim_server("importing", |c| c.mode = Mode::Import),
        sim_server("inactive", |c| c.plugin = PluginStatus::Malfunctioned),
        sim_server("refusing", |c| {
            c.api_key = "another-key-000000000000000000000".into()
        }),
        // The config's key is a user's, not an administrator's: the server knows it
        // (403, not 401).
        sim_server("user", |c| {
            c.api_key = "the-admins-key-00000000000000000000".into();
            c.user_key = Some(KEY.into());
        }),
        sim_server("fresh", |c| {
            c.history = jellyfin_export_scheduler::sim::History::Never
        }),
        sim_server("skewed", |c| c.clock_skew_secs = 300),
        // Its last export (run before doctor, by the simulator itself) logged an ERROR.
        sim_server("log_error", |c| {
            c.outcome = RunOutcome::CompletedWithLogError;
            c.start_delay = Duration::ZERO;
            c.run_length = Duration::from_millis(50);
            c.result_delay = Duration::ZERO;
        }),
        sim_server("twelve", |c| c.version = "12.0.1".into()),
        sim_server("twice", |c| c.duplicate_task_key = true),
        sim_server("hashes", |c| {
            c.include_user_password_hashes = true;
            c.include_devices = true;
        }),
        sim_server("collision", |c| c.plugin_id_collision = true),
        sim_server("starting", |c| {
            c.starting_for = std::time::Duration::from_secs(3600)
        }),
    ]
}

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A config for `servers` (name, url, extra lines), its key inline in a private file.
fn config(servers: &[(&str, String, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut text = format!("[daemon]\nstate_dir = \"{}\"\n", state.display());
    for (name, url, extra) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi_key = \"{KEY}\"\nschedule = \"0 30 3 * * *\"\ntimezone = \"Europe/Berlin\"\n{extra}\n"
        ));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Env { dir, config }
}

async fn doctor(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Ran {
    let mut cmd = command([
        "doctor",
        "--config",
        env.config.to_str().unwrap(),
        "--timeout",
        "5s",
    ]);
    cmd.args(args)
        .env_remove(CA_FILE_ENV)
        .env_remove("NO_COLOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_async(cmd).await
}

/// server → check id → (status, the whole check).
fn by_server(report: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let checks = s["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
                .collect();
            (s["name"].as_str().unwrap().to_owned(), checks)
        })
        .collect()
}

const IDS: [&str; 12] = [
    "address",
    "tls",
    "server",
    "clock",
    "key",
    "plugin",
    "task",
    "configuration",
    "mode",
    "contents",
    "last_export",
    "schedule",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_against_a_fleet_with_one_server_per_trouble() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), fleet())
        .await
        .unwrap();
    // The simulator runs log_error's export itself (no HTTP request) and doctor comes after.
    let log_error = sim.server("log_error");
    log_error.start_run_now();
    common::wait::wait_until(
        Duration::from_secs(30),
        "log_error's export ended with an ERROR line in its log",
        || {
            log_error
                .last_export_log()
                .is_some_and(|l| l.contains("ERROR: "))
        },
    )
    .await;
    let names = sim.names();
    let mut servers: Vec<(&str, String, &str)> =
        names.iter().map(|n| (n.as_str(), sim.url(n), "")).collect();
    servers.push(("nowhere", "http://127.0.0.1:1".into(), ""));
    servers.push(("disabled", sim.url("good"), "enabled = false"));
    let env = config(&servers);

    let out = doctor(&env, &["--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema"], 1);
    assert_eq!(report["ok"], false);
    let all = by_server(&report);
    assert!(
        !all.contains_key("disabled"),
        "only enabled servers unless named"
    );
    for (name, checks) in &all {
        assert_eq!(
            checks
                .keys()
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>(),
            IDS.into_iter().collect(),
            "{name}: every check, once"
        );
        for c in checks.values() {
            let bad = c["status"] == "warn" || c["status"] == "fail";
            assert_eq!(
                bad,
                c["action"].is_string(),
                "{name}: what to do, for ! and ✗ only: {c}"
            );
        }
    }
    let status = |server: &str, id: &str| all[server][id]["status"].as_str().unwrap().to_owned();
    let summary = |server: &str, id: &str| all[server][id]["summary"].as_str().unwrap().to_owned();

    for id in IDS {
        let want = if id == "tls" { "skip" } else { "ok" };
        assert_eq!(status("good", id), want, "good.{id}: {}", all["good"][id]);
    }
    let good = &all["good"];
    assert_eq!(good["server"]["data"]["version"], "10.11.5");
    assert_eq!(good["plugin"]["data"]["status"], "Active");
    assert_eq!(good["mode"]["data"]["operation"], "Export");
    assert_eq!(good["contents"]["data"]["devices"], false);
    assert_eq!(good["last_export"]["data"]["zip_bytes"], 6 * 1024);
    assert_eq!(
        good["configuration"]["data"]["zip_fields"]["LastExportZipBase64"],
        8 * 1024
    );
    assert!(
        good["clock"]["data"]["skew_seconds"]
            .as_i64()
            .unwrap()
            .abs()
            <= 1
    );
    assert!(
        summary("good", "schedule").contains("Europe/Berlin"),
        "{}",
        summary("good", "schedule")
    );
    assert!(
        good["schedule"]["data"]["next_utc"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    assert_eq!(status("importing", "mode"), "fail");
    assert!(
        all["importing"]["mode"]["action"]
            .as_str()
            .unwrap()
            .contains("set the mode back to Export")
    );
    assert_eq!(status("inactive", "plugin"), "fail");
    assert!(summary("inactive", "plugin").contains("Malfunctioned"));
    assert_eq!(
        status("inactive", "task"),
        "fail",
        "an inactive plugin's task is not listed"
    );
    assert_eq!(status("refusing", "key"), "fail");
    assert!(summary("refusing", "key").contains("refused"));
    for id in [
        "plugin",
        "task",
        "configuration",
        "mode",
        "contents",
        "last_export",
    ] {
        assert_eq!(status("refusing", id), "skip", "refusing.{id}");
    }
    assert_eq!(status("user", "key"), "fail");
    assert!(
        summary("user", "key").contains("not an administrator's"),
        "{}",
        summary("user", "key")
    );
    assert!(
        all["user"]["key"]["action"]
            .as_str()
            .unwrap()
            .contains("always an administrator's"),
        "{}",
        all["user"]["key"]
    );
    assert_eq!(
        status("user", "server"),
        "ok",
        "the public info needs no key"
    );
    assert_eq!(status("fresh", "last_export"), "warn");
    assert!(summary("fresh", "last_export").contains("no export yet"));
    assert_eq!(status("skewed", "clock"), "warn");
    let skew = all["skewed"]["clock"]["data"]["skew_seconds"]
        .as_i64()
        .unwrap();
    assert!((299..=301).contains(&skew), "skew {skew}");
    assert!(summary("skewed", "clock").contains("ahead"));
    assert_eq!(status("log_error", "last_export"), "warn");
    assert!(
        summary("log_error", "last_export").contains("Export with 1 ERROR line(s), the first: "),
        "{}",
        summary("log_error", "last_export")
    );
    assert_eq!(all["log_error"]["last_export"]["data"]["errors"], 1);
    assert!(
        all["log_error"]["last_export"]["action"]
            .as_str()
            .unwrap()
            .contains("the export is incomplete")
    );
    assert_eq!(status("twelve", "server"), "ok");
    assert!(
        summary("twelve", "server").contains("refuses legacy auth"),
        "{}",
        summary("twelve", "server")
    );
    assert_eq!(status("twice", "task"), "fail");
    assert!(summary("twice", "task").contains("2 tasks have key JellyfinMigratorExport"));
    assert_eq!(status("hashes", "contents"), "warn");
    assert!(
        summary("hashes", "contents")
            .contains("sensitive: users' password hashes and devices with their access tokens"),
        "{}",
        summary("hashes", "contents")
    );
    assert_eq!(status("collision", "configuration"), "fail");
    assert_eq!(status("collision", "plugin"), "warn");
    assert_eq!(status("starting", "server"), "fail");
    assert!(
        summary("starting", "server").contains("503"),
        "{}",
        summary("starting", "server")
    );
    assert_eq!(status("nowhere", "address"), "fail");
    assert!(summary("nowhere", "address").contains("Connection refused"));
    for id in &IDS[1..11] {
        assert_eq!(status("nowhere", id), "skip", "nowhere.{id}");
    }
    assert_eq!(
        status("nowhere", "schedule"),
        "ok",
        "the schedule needs no server"
    );
    let local: Vec<&str> = report["local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // The archive's default folder, <state_dir>/archive, once for all servers.
    assert_eq!(local, ["state_dir", "free_space", "archive_dir"]);
    assert_eq!(report["local"][2]["status"], "ok", "{}", report["local"][2]);
    assert_eq!(
        report["local"][2]["data"]["path"].as_str(),
        env.dir.path().join("state/archive").to_str()
    );
    assert_eq!(report["local"][0]["status"], "ok");
    let largest = all
        .values()
        .filter_map(|c| c["last_export"]["data"]["zip_bytes"].as_u64())
        .max();
    assert_eq!(
        report["local"][1]["data"]["largest_zip_bytes"].as_u64(),
        largest
    );

    // Read-only: every server that was reached got GETs, and only GETs.
    for name in &names {
        let requests = sim.server(name).requests();
        assert!(!requests.is_empty(), "{name} was asked nothing");
        let other: Vec<String> = requests
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(other.is_empty(), "{name} received {other:?}");
    }

    // The same as text: one line per check, what to do under each ! and ✗, no colour
    // off a terminal, no key anywhere.
    let out = doctor(&env, &[], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains('\x1b'),
        "no colour when not on a terminal:\n{shown}"
    );
    let lines: Vec<&str> = shown.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("  ! ") || line.starts_with("  ✗ ") {
            assert!(
                lines[i + 1].trim_start().starts_with("→ "),
                "no action under {line:?}"
            );
        }
    }
    assert!(shown.contains("  ✓ address "), "{shown}");
    assert!(shown.contains("  ✗ mode "), "{shown}");
    assert!(shown.contains("  ! clock "), "{shown}");
    assert!(shown.contains("  – tls "), "{shown}");
    assert!(shown.contains("this machine\n  ✓ state_dir "), "{shown}");
    assert!(shown.contains("\n  ✓ archive_dir "), "{shown}");
    let c = &report["counts"];
    assert!(
        shown.trim_end().ends_with(&format!(
            "14 servers checked: {} ok, {} warnings, {} failed, {} skipped.",
            c["ok"], c["warn"], c["fail"], c["skip"]
        )),
        "{shown}"
    );
    for o in [&out.stdout, &out.stderr] {
        assert!(!text(o).contains(KEY), "the key is shown:\n{}", text(o));
    }
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_zero_with_warnings_two_for_a_bad_config_or_an_unknown_server() {
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            sim_server("good", |_| {}),
            sim_server("skewed", |c| c.clock_skew_secs = -90),
        ],
    )
    .await
    .unwrap();
    let env = config(&[
        ("good", sim.url("good"), ""),
        ("skewed", sim.url("skewed"), ""),
    ]);
    let out = doctor(&env, &["good"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out.stdout).starts_with("good  "),
        "only the server named"
    );
    // A warning is not a failure.
    let out = doctor(&env, &["skewed", "--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["counts"]["warn"], 1, "{report}");
    let clock = &report["servers"][0]["checks"][3];
    assert_eq!(clock["id"], "clock");
    // The Date header has whole seconds: 89.6 s behind rounds to 90, 90.6 s to 91.
    let skew = clock["data"]["skew_seconds"].as_i64().unwrap();
    assert!((-91..=-89).contains(&skew), "{clock}");
    assert!(
        clock["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("{} s behind ours", -skew)),
        "{clock}"
    );

    // An archive folder that is a file: a failure naming the setting to change.
    let not_a_folder = env.dir.path().join("archive-file");
    std::fs::write(&not_a_folder, "").unwrap();
    let text_before = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{text_before}\n[archive]\ndir = \"{}\"\n",
            not_a_folder.display()
        ),
    )
    .unwrap();
    let out = doctor(&env, &["good", "--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let archive = &report["local"][2];
    assert_eq!(archive["id"], "archive_dir", "{report}");
    assert_eq!(archive["status"], "fail", "{archive}");
    assert!(
        archive["action"]
            .as_str()
            .unwrap()
            .contains("[archive] dir"),
        "{archive}"
    );
    std::fs::write(&env.config, text_before).unwrap();

    let out = doctor(&env, &["attic"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("no server named \"attic\""),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("servers: good, skewed"),
        "{}",
        describe(&out)
    );

    std::fs::write(&env.config, "[[servers]]\nname = \"x\"\n").unwrap();
    let out = doctor(&env, &[], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("servers[0]"),
        "{}",
        describe(&out)
    );
    assert!(out.stdout.is_empty(), "no report for a bad config");
}

/// Runs the program it is given with stdout and stderr on a new pseudo-terminal, copies
/// what it wrote to our stdout, and exits with its status (python3 is on every machine the
/// tests run on; Rust's standard library has no pseudo-terminals).
const ON_A_TERMINAL: &str = r#"
import os, subprocess, sys
main, side = os.openpty()
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=side, stderr=side)
os.close(side)
out = b""
while True:
    try:
        chunk = os.read(main, 65536)
    except OSError:  # EIO: the child closed its side
        break
    if not chunk:
        break
    out += chunk
sys.stdout.buffer.write(out)
sys.exit(child.wait())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_on_a_terminal_unless_no_color_is_set() {
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            sim_server("good", |_| {}),
            sim_server("importing", |c| c.mode = Mode::Import),
        ],
    )
    .await
    .unwrap();
    let env = config(&[
        ("good", sim.url("good"), ""),
        ("importing", sim.url("importing"), ""),
    ]);
    let on_a_terminal = |no_color: Option<&str>| {
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-c", ON_A_TERMINAL, BIN, "doctor", "--config"])
            .arg(&env.config)
            .args(["--timeout", "5s"])
            .env_remove(CA_FILE_ENV)
            .env_remove("NO_COLOR");
        clean(&mut cmd);
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        run_async(cmd)
    };

    let out = on_a_terminal(None).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let shown = text(&out.stdout);
    for mark in ["\x1b[32m✓\x1b[0m address", "\x1b[31m✗\x1b[0m mode"] {
        assert!(shown.contains(mark), "no {mark:?} on a terminal:\n{shown}");
    }
    // NO_COLOR set to anything but empty turns colour off; empty means unset.
    let out = on_a_terminal(Some("1")).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let shown = text(&out.stdout);
    assert!(!shown.contains('\x1b'), "colour with NO_COLOR=1:\n{shown}");
    assert!(shown.contains("✗ mode"), "{shown}");
    let out = on_a_terminal(Some("")).await;
    assert!(
        text(&out.stdout).contains("\x1b[32m✓"),
        "{}",
        describe(&out)
    );
}

/// A TLS proxy on a free loopback port in front of `upstream`, with `cert` (and its key).
async fn tls_proxy(upstream: SocketAddr, cert: Vec<u8>, key: Vec<u8>) -> SocketAddr {
    use tokio_rustls::rustls;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A handshake the client refuses ends here; that is what one test wants.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

/// A CA (its PEM) and a certificate for 127.0.0.1 that it signed, valid until `not_after`
/// (its DER and key).
fn certificates(not_after: chrono::NaiveDate) -> (String, Vec<u8>, Vec<u8>) {
    use chrono::Datelike;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "doctor test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.not_after = rcgen::date_time_ymd(
        not_after.year(),
        not_after.month() as u8,
        not_after.day() as u8,
    );
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.der().to_vec(), key.serialize_der())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_refused_without_its_ca_and_valid_with_it_with_days_until_expiry() {
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![sim_server("good", |_| {})],
    )
    .await
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let soon = today + chrono::Days::new(10);
    let later = today + chrono::Days::new(400);
    let (ca_soon, cert, key) = certificates(soon);
    let proxy_soon = tls_proxy(sim.addr(), cert, key).await;
    let (ca_later, cert, key) = certificates(later);
    let proxy_later = tls_proxy(sim.addr(), cert, key).await;
    let env = config(&[
        ("soon", format!("https://{proxy_soon}/s/good"), ""),
        ("later", format!("https://{proxy_later}/s/good"), ""),
    ]);
    let ca_file: PathBuf = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, format!("{ca_soon}{ca_later}")).unwrap();

    // Without the CA: the handshake fails, and the action names the variable.
    let out = doctor(&env, &["--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = by_server(&serde_json::from_slice(&out.stdout).unwrap());
    let tls = &all["soon"]["tls"];
    assert_eq!(tls["status"], "fail", "{tls}");
    assert!(
        tls["summary"].as_str().unwrap().contains("UnknownIssuer"),
        "{tls}"
    );
    assert!(
        tls["action"].as_str().unwrap().contains(CA_FILE_ENV),
        "{tls}"
    );
    assert_eq!(all["soon"]["key"]["status"], "skip");

    // With it: valid, and how long is left (a warning under 14 days).
    let out = doctor(
        &env,
        &["--format", "json"],
        &[(CA_FILE_ENV, ca_file.to_str().unwrap())],
    )
    .await;
    let all = by_server(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let days = |d: chrono::NaiveDate| {
        (d.and_hms_opt(0, 0, 0).unwrap().and_utc() - chrono::Utc::now()).num_days()
    };
    let tls = &all["soon"]["tls"];
    assert_eq!(tls["status"], "warn", "{tls}");
    assert_eq!(tls["data"]["not_after"], format!("{soon}T00:00:00Z"));
    assert_eq!(tls["data"]["days_left"], days(soon), "{tls}");
    assert!(
        tls["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("expires in {} days", days(soon)))
    );
    let tls = &all["later"]["tls"];
    assert_eq!(tls["status"], "ok", "{tls}");
    assert_eq!(tls["data"]["days_left"], days(later), "{tls}");
    for id in [
        "server",
        "key",
        "plugin",
        "task",
        "configuration",
        "mode",
        "last_export",
    ] {
        assert_eq!(
            all["later"][id]["status"], "ok",
            "later.{id} over TLS: {}",
            all["later"][id]
        );
    }

    // A CA file that is not one is an error naming the variable, not a silent default.
    let bogus = env.dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let out = doctor(&env, &["soon"], &[(CA_FILE_ENV, bogus.to_str().unwrap())]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains(&format!("{CA_FILE_ENV}={}", bogus.display())),
        "{}",
        describe(&out)
    );
}
