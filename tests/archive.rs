//! The archive against the simulated Jellyfin: every verified export kept as the
//! simulator's ZIP to the byte (stored and deflated), the bad ZIPs refused without
//! touching older files, retention after a good archive only, age encryption read back by
//! the `age` tool, and the `archive` subcommands on the real binary.

use jellyfin_export_scheduler::archive::encrypt::{Recipient, Recipients};
use jellyfin_export_scheduler::archive::retention::Retention;
use jellyfin_export_scheduler::archive::store;
use jellyfin_export_scheduler::config::ServerConfig;
use jellyfin_export_scheduler::record::{Outcome, RunRecord};
use jellyfin_export_scheduler::sim::{History, SimServerConfig, Simulator};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::bin::{command, describe, run, text};

const PREFIX: &str = "exported on the server, but not archived: ";

async fn sim_with(f: impl FnOnce(&mut SimServerConfig)) -> Simulator {
    common::sim::simulator(vec![common::sim::sim_server("t", f)]).await
}

fn server_config(url: &str) -> ServerConfig {
    let text = common::config::text(
        Path::new("/unused"),
        "",
        "",
        &[("t", url.to_owned(), "schedule = \"@daily\"")],
    );
    common::config::parse(&text).servers.remove(0)
}

/// One run through the runner on state directory `state`: its record.
async fn run_on(state: &Path, server: &ServerConfig) -> RunRecord {
    let request = common::runs::manual_request();
    common::runs::run_on(state, server, &request, Duration::from_secs(60)).await
}

async fn run_against(
    state: &Path,
    sim: &Simulator,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunRecord {
    let mut server = server_config(&sim.url("t"));
    tweak(&mut server);
    run_on(state, &server).await
}

fn folder(state: &Path) -> PathBuf {
    state.join("archive").join("t")
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn stored_and_deflated_zips_are_archived_as_the_plugin_stored_them() {
    for deflate in [false, true] {
        let sim = sim_with(|c| {
            c.zip_base64_len = 400_000;
            c.zip_deflate = deflate;
        })
        .await;
        let state = tempfile::tempdir().unwrap();
        let r = run_against(state.path(), &sim, |_| {}).await;
        assert_eq!(r.outcome, Outcome::Completed, "deflate {deflate}: {r:?}");
        let zip = sim.server("t").last_export_zip().unwrap();
        let path = PathBuf::from(r.archive_path.clone().expect("archived"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("t-") && name.ends_with(&format!("-{}.zip", r.run_id)),
            "{name}"
        );
        assert_eq!(path.parent().unwrap(), folder(state.path()));
        assert_eq!(
            fs::read(&path).unwrap(),
            zip,
            "the simulator's ZIP, byte for byte"
        );
        assert_eq!(r.archive_bytes, Some(zip.len() as u64));
        assert_eq!(r.archive_sha256.as_deref(), Some(sha256_hex(&zip).as_str()));
        assert_eq!(r.export_sha256, r.archive_sha256);
        assert_eq!(r.archive_encrypted, Some(false));
        assert_eq!(r.export_users, Some(3), "alice, bob and kids");
        assert_eq!(r.export_entries, Some(7));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&folder(state.path())), 0o700);
        assert_eq!(mode(&state.path().join("archive")), 0o700);
        assert_eq!(
            names(&folder(state.path())),
            [name],
            "no temporary file left"
        );
    }
}

/// The three ZIPs the plugin can leave that are not this run's, and a folder that cannot
/// be written: each fails the run, says why, and leaves the earlier archive alone.
#[tokio::test]
async fn a_zip_that_is_not_this_runs_fails_the_run_and_touches_nothing_older() {
    let state = tempfile::tempdir().unwrap();
    let good = sim_with(|_| {}).await;
    let first = run_against(state.path(), &good, |s| {
        s.archive.retention = Retention {
            keep_last: Some(1),
            ..Retention::default()
        }
    })
    .await;
    assert_eq!(first.outcome, Outcome::Completed, "{first:?}");
    let before = names(&folder(state.path()));
    let kept = fs::read(first.archive_path.as_ref().unwrap()).unwrap();

    type Case = (&'static str, fn(&mut SimServerConfig), &'static str);
    let cases: [Case; 3] = [
        ("stale", |c| c.zip_fails = true, "is an earlier run's"),
        ("broken", |c| c.zip_broken = true, "is not a readable ZIP"),
        (
            "never built",
            |c| {
                c.history = History::Never;
                c.zip_fails = true;
            },
            "holds no LastExportZipBase64",
        ),
    ];
    for (what, tweak, want) in cases {
        let sim = sim_with(tweak).await;
        let r = run_against(state.path(), &sim, |s| {
            // Retention that would delete the earlier file, had it run.
            s.archive.retention = Retention {
                keep_last: Some(1),
                ..Retention::default()
            }
        })
        .await;
        assert_eq!(r.outcome, Outcome::Failed, "{what}: {r:?}");
        let reason = r.reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with(PREFIX) && reason.contains(want),
            "{what}: {reason}"
        );
        assert_eq!(r.archive_path, None, "{what}");
        assert_eq!(
            names(&folder(state.path())),
            before,
            "{what}: nothing added or removed"
        );
    }
    assert_eq!(
        fs::read(first.archive_path.as_ref().unwrap()).unwrap(),
        kept
    );

    // A file where the server's folder should be (as root, modes do not stop us).
    let blocked = tempfile::tempdir().unwrap();
    fs::create_dir(blocked.path().join("archive")).unwrap();
    fs::write(folder(blocked.path()), b"in the way").unwrap();
    let r = run_against(blocked.path(), &good, |_| {}).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let reason = r.reason.unwrap_or_default();
    assert!(
        reason.starts_with(PREFIX) && reason.contains("in the way"),
        "{reason}"
    );
    assert_eq!(fs::read(folder(blocked.path())).unwrap(), b"in the way");
}

/// Old archive files of ours on 1..=n days before now, and a file of someone else's.
fn seed_old_files(dir: &Path, n: i64) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    let now = chrono::Utc::now();
    let mut made = Vec::new();
    for d in 1..=n {
        let name = store::file_name(
            "t",
            now - chrono::Duration::days(d),
            &format!("{d:020x}"),
            false,
        );
        fs::write(dir.join(&name), b"old").unwrap();
        made.push(name);
    }
    fs::write(dir.join("t-notes.txt"), b"mine").unwrap();
    made
}

#[tokio::test]
async fn retention_prunes_after_a_good_archive_and_never_after_a_failed_one() {
    let keep_two = |s: &mut ServerConfig| {
        s.archive.retention = Retention {
            keep_last: Some(2),
            ..Retention::default()
        }
    };
    let state = tempfile::tempdir().unwrap();
    let old = seed_old_files(&folder(state.path()), 4);
    let stale = sim_with(|c| c.zip_fails = true).await;
    let r = run_against(state.path(), &stale, keep_two).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let mut want = old.clone();
    want.push("t-notes.txt".into());
    want.sort();
    assert_eq!(
        names(&folder(state.path())),
        want,
        "nothing pruned after a failure"
    );

    let good = sim_with(|_| {}).await;
    let r = run_against(state.path(), &good, keep_two).await;
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let new = Path::new(r.archive_path.as_ref().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // old[0] is the newest of the old ones (a day ago).
    let mut want = vec![new, old[0].clone(), "t-notes.txt".into()];
    want.sort();
    assert_eq!(names(&folder(state.path())), want);
}

/// The `age` tool, or a failure that says which package to install.
fn age_tool() -> &'static str {
    let found = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the age command-line tool is not installed: this test decrypts an archive with it; install the Debian package age (apt-get install age; .ci/run does)"
    );
    "age"
}

#[tokio::test]
async fn an_encrypted_archive_decrypts_with_the_age_tool_to_the_simulators_zip() {
    let age = age_tool();
    let me = age::x25519::Identity::generate();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        fs::write(&key_file, format!("{}\n", me.to_string().expose_secret())).unwrap();
    }
    for deflate in [false, true] {
        let sim = sim_with(|c| {
            c.zip_base64_len = 300_000;
            c.zip_deflate = deflate;
        })
        .await;
        let state = tempfile::tempdir().unwrap();
        let recipient = Recipient::parse(&me.to_public().to_string()).unwrap();
        let r = run_against(state.path(), &sim, |s| {
            s.archive.recipients = Recipients::new(vec![recipient]);
        })
        .await;
        assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
        let path = PathBuf::from(r.archive_path.clone().unwrap());
        assert!(path.to_str().unwrap().ends_with(".zip.age"), "{path:?}");
        assert_eq!(r.archive_encrypted, Some(true));
        let sealed = fs::read(&path).unwrap();
        assert_eq!(
            r.archive_sha256.as_deref(),
            Some(sha256_hex(&sealed).as_str())
        );
        let zip = sim.server("t").last_export_zip().unwrap();
        assert_ne!(&sealed[..4], b"PK\x03\x04", "not a plain ZIP");
        assert_eq!(r.export_sha256.as_deref(), Some(sha256_hex(&zip).as_str()));
        let out = Command::new(age)
            .arg("-d")
            .arg("-i")
            .arg(&key_file)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == zip,
            "deflate {deflate}: age -d gives the simulator's ZIP, byte for byte"
        );
    }
}

/// A daemon's config file for the binary: server `t` at `url`, `archive` lines in
/// `[archive]`.
fn config_file(url: String, archive: &str) -> common::config::ConfigFile {
    common::config::ConfigFile::new(|state| {
        let mut t = common::config::text(state, "", "", &[("t", url, "schedule = \"@daily\"")]);
        t.push_str(&format!("\n[archive]\n{archive}\n"));
        t
    })
}

fn bin_in(cfg: &common::config::ConfigFile, args: &[&str]) -> common::bin::Ran {
    let mut cmd = command(args);
    cmd.arg("--config").arg(&cfg.path);
    run(&mut cmd)
}

#[tokio::test]
async fn archive_list_verify_and_prune_on_the_binary() {
    let sim = sim_with(|c| c.zip_deflate = true).await;
    let cfg = config_file(sim.url("t"), "keep_last = 1");
    for _ in 0..2 {
        let t = common::bin::run_async({
            let mut c = command(["trigger", "t"]);
            c.arg("--config").arg(&cfg.path);
            c
        })
        .await;
        assert_eq!(t.status.code(), Some(0), "{}", describe(&t));
    }
    let files = names(&folder(&cfg.state));
    assert_eq!(
        files.len(),
        1,
        "keep_last = 1 after the second run: {files:?}"
    );

    let list = bin_in(&cfg, &["archive", "list", "--format", "json"]);
    assert_eq!(list.status.code(), Some(0), "{}", describe(&list));
    let line = common::json_body(list.stdout.trim_ascii());
    assert_eq!(line["server"], "t");
    assert_eq!(line["export_users"], 3);
    assert_eq!(line["encrypted"], false);
    let text_list = bin_in(&cfg, &["archive", "list"]);
    assert!(
        text(&text_list.stdout).contains(&files[0]),
        "{}",
        describe(&text_list)
    );

    let ok = bin_in(&cfg, &["archive", "verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(text(&ok.stdout).starts_with("ok "), "{}", describe(&ok));

    // One byte changed: exit 1, naming the file.
    let path = folder(&cfg.state).join(&files[0]);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let bad = bin_in(&cfg, &["archive", "verify", "t"]);
    assert_eq!(bad.status.code(), Some(1), "{}", describe(&bad));
    let out = text(&bad.stdout);
    assert!(
        out.starts_with("MISMATCH") && out.contains(&files[0]),
        "{}",
        describe(&bad)
    );

    // A dry run says what would go and deletes nothing; the newest always stays.
    let older = store::file_name(
        "t",
        chrono::Utc::now() - chrono::Duration::days(3),
        "00000000000000000001",
        false,
    );
    fs::write(folder(&cfg.state).join(&older), b"old").unwrap();
    let dry = bin_in(&cfg, &["archive", "prune", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    let out = text(&dry.stdout);
    assert!(out.contains(&format!("{older}: would delete")), "{out}");
    assert!(
        out.contains(&format!("{}: keep (newest", files[0])),
        "{out}"
    );
    assert_eq!(names(&folder(&cfg.state)).len(), 2);
    let real = bin_in(&cfg, &["archive", "prune"]);
    assert_eq!(real.status.code(), Some(0), "{}", describe(&real));
    assert_eq!(names(&folder(&cfg.state)), files);
}

#[tokio::test]
async fn verify_with_an_identity_opens_encrypted_archives_and_never_prints_the_key() {
    let me = age::x25519::Identity::generate();
    let sim = sim_with(|_| {}).await;
    let cfg = config_file(
        sim.url("t"),
        &format!("encrypt_to = [\"{}\"]", me.to_public()),
    );
    let mut c = command(["trigger", "t"]);
    c.arg("--config").arg(&cfg.path);
    let t = common::bin::run_async(c).await;
    assert_eq!(t.status.code(), Some(0), "{}", describe(&t));
    let secret = {
        use age::secrecy::ExposeSecret;
        me.to_string().expose_secret().to_owned()
    };
    let key = cfg.dir.path().join("key.txt");
    fs::write(&key, format!("{secret}\n")).unwrap();
    let ok = bin_in(
        &cfg,
        &["archive", "verify", "--identity", key.to_str().unwrap()],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));

    // Someone else's key cannot open it: a mismatch naming the file.
    let other = age::x25519::Identity::generate();
    let other_secret = {
        use age::secrecy::ExposeSecret;
        other.to_string().expose_secret().to_owned()
    };
    fs::write(&key, format!("{other_secret}\n")).unwrap();
    let bad = bin_in(
        &cfg,
        &["archive", "verify", "--identity", key.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", describe(&bad));
    assert!(
        text(&bad.stdout).contains(".zip.age: none of the identities"),
        "{}",
        describe(&bad)
    );

    // A broken identity file: named, its content never shown.
    let broken = format!("{}X\n", &other_secret[..other_secret.len() - 3]);
    fs::write(&key, &broken).unwrap();
    let ran = bin_in(
        &cfg,
        &["archive", "verify", "--identity", key.to_str().unwrap()],
    );
    assert_eq!(ran.status.code(), Some(2), "{}", describe(&ran));
    let all = format!("{}{}", text(&ran.stdout), text(&ran.stderr));
    assert!(all.contains(key.to_str().unwrap()), "{all}");
    for s in [&secret, &other_secret, broken.trim()] {
        assert!(!all.contains(&s[16..]), "a secret key was printed: {all}");
    }
}

/// The test-only SSH keys in tests/fixtures/archive (made for this test with ssh-keygen,
/// guarding nothing): `(public key line, private key path)`.
fn ssh_key(kind: &str) -> (String, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive");
    let public = fs::read_to_string(dir.join(format!("{kind}.pub"))).unwrap();
    (public.trim().to_owned(), dir.join(kind))
}

#[tokio::test]
async fn ssh_recipients_encrypt_for_the_age_tool_and_for_verify() {
    let age = age_tool();
    let sim = sim_with(|c| c.zip_deflate = true).await;
    for kind in ["ed25519", "rsa"] {
        let (public, private) = ssh_key(kind);
        let state = tempfile::tempdir().unwrap();
        let recipient = Recipient::parse(&public).unwrap();
        let r = run_against(state.path(), &sim, |s| {
            s.archive.recipients = Recipients::new(vec![recipient]);
        })
        .await;
        assert_eq!(r.outcome, Outcome::Completed, "{kind}: {r:?}");
        let path = PathBuf::from(r.archive_path.clone().unwrap());
        let out = Command::new(age)
            .arg("-d")
            .arg("-i")
            .arg(&private)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}: age -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == sim.server("t").last_export_zip().unwrap(),
            "{kind}: age -d gives the simulator's ZIP, byte for byte"
        );
    }

    // archive verify --identity with the SSH private key opens the ZIP inside.
    let (public, private) = ssh_key("ed25519");
    let cfg = config_file(sim.url("t"), &format!("encrypt_to = [\"{public}\"]"));
    let mut c = command(["trigger", "t"]);
    c.arg("--config").arg(&cfg.path);
    let t = common::bin::run_async(c).await;
    assert_eq!(t.status.code(), Some(0), "{}", describe(&t));
    let ok = bin_in(
        &cfg,
        &["archive", "verify", "--identity", private.to_str().unwrap()],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(text(&ok.stdout).starts_with("ok "), "{}", describe(&ok));
}
