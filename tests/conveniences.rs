//! The small things through the real binary: shell completions and manual pages generated
//! from the clap definitions, the demo's status page, and log lines people can read (text)
//! next to lines that keep everything (JSON).

use jellyfin_export_scheduler::sim::{SimServerConfig, Simulator};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::KEY;
use common::bin::{Daemon, bin, command, text};
use common::wait::wait_until_blocking;

/// Generous for a loaded 2-core machine; reached only when something is broken.
const LIMIT: Duration = Duration::from_secs(30);

/// Whether `program` can be run here (`--version` answers).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = bin(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["doctor", "completions", "manpage", "config", "format"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        let path = dir.path().join(format!("completion.{shell}"));
        std::fs::write(&path, &script).unwrap();
        // bash is on every machine this runs on; zsh and fish are checked where present.
        if shell == "bash" || have(checker) {
            let check = Command::new(checker).arg("-n").arg(&path).output().unwrap();
            assert!(
                check.status.success(),
                "{checker} -n refuses the {shell} script: {}",
                text(&check.stderr)
            );
        } else {
            eprintln!("{checker} is not installed: its script is generated but not syntax-checked");
        }
    }
    // bash loads it and completes the commands.
    let path = dir.path().join("completion.bash");
    // The completion function is whatever the script registered for the command.
    let probe = format!(
        "source {}; f=$(complete -p jellyfin-export-scheduler | sed 's/.*-F \\([^ ]*\\).*/\\1/'); COMP_WORDS=(jellyfin-export-scheduler do); COMP_CWORD=1; COMP_LINE='jellyfin-export-scheduler do'; COMP_POINT=${{#COMP_LINE}}; \"$f\" jellyfin-export-scheduler do jellyfin-export-scheduler; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(
        text(&out.stdout).lines().any(|l| l == "doctor"),
        "bash completes \"do\" to doctor: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = bin(&["completions", "powershell"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_manual_page_is_roff_that_man_renders() {
    let out = bin(&["manpage"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains("\n.TH jellyfin-export-scheduler 1 "),
        "{page}"
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(
        page.contains("jellyfin\\-export\\-scheduler\\-doctor(1)"),
        "{page}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = bin(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for page in [
        "jellyfin-export-scheduler.1",
        "jellyfin-export-scheduler-doctor.1",
        "jellyfin-export-scheduler-completions.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} was not written");
    }
    let doctor =
        std::fs::read_to_string(dir.path().join("jellyfin-export-scheduler-doctor.1")).unwrap();
    assert!(doctor.contains("\\-\\-timeout"), "{doctor}");

    if have("man") {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.path().join("jellyfin-export-scheduler-doctor.1"))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l fails: {}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(
            shown.contains("--timeout") || shown.contains("‐‐timeout"),
            "{shown}"
        );
        assert!(
            !text(&out.stderr).contains("warning"),
            "{}",
            text(&out.stderr)
        );
    } else {
        eprintln!("man is not installed: the pages are checked as roff text only");
    }
    let missing = Path::new("/nonexistent/folder");
    let out = bin(&["manpage", "--dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot write the manual pages into /nonexistent/folder"));
}

/// `GET path` on `addr`: status line and body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn the_demo_serves_the_status_page_and_prints_its_url_at_the_start_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command([
        "demo",
        "--duration",
        "4s",
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let url = loop {
        let line = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no status page URL within {LIMIT:?}: {seen:?}"));
        if let Some(url) = line.strip_prefix("Status page: ") {
            break url.to_owned();
        }
        seen.push(line);
    };
    let addr = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("not a loopback URL: {url}"));
    let (status, page) = get(&addr, "/");
    assert!(status.contains(" 200 "), "{status}");
    for server in ["living-room", "basement", "attic", "garage"] {
        assert!(page.contains(server), "the page lacks {server}");
    }
    let (status, api) = get(&addr, "/api/v1/servers");
    assert!(status.contains(" 200 "), "{status}");
    assert!(api.contains("\"living-room\""), "{api}");

    let mut rest = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        rest.push(line);
    }
    let code = child.wait().unwrap();
    assert!(code.success(), "{rest:?}");
    let rest = rest.join("\n");
    assert!(
        rest.contains(&format!(
            "The status page was served at {url} while the demo ran."
        )),
        "{rest}"
    );
    let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(config.contains(&format!("listen = \"{addr}\"")), "{config}");
}

/// The daemon against a simulated server that exports every second, in `format`, until a
/// run has finished; its log.
fn daemon_log(sim: &Simulator, format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\nlisten = \"\"\nlog_format = \"{format}\"\n\n[[servers]]\nname = \"living-room\"\nurl = \"{}\"\napi_key_env = \"KEY\"\nschedule = \"* * * * * *\"\ntimezone = \"UTC\"\npoll_interval = \"100ms\"\n",
            dir.path().join("state").display(),
            sim.url("living-room")
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(
        command(["run", "--config", config.to_str().unwrap()]).env("KEY", KEY),
        &dir.path().join("daemon.log"),
    );
    wait_until_blocking(LIMIT, "a run finished", || {
        daemon.log().contains("run finished")
    });
    daemon.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_module_paths_and_json_logs_keep_everything() {
    let mut server = SimServerConfig::new("living-room", KEY);
    server.run_length = Duration::from_millis(200);
    server.start_delay = Duration::from_millis(10);
    server.result_delay = Duration::from_millis(10);
    server.zip_base64_len = 1024;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), vec![server])
        .await
        .unwrap();

    let text = tokio::task::block_in_place(|| daemon_log(&sim, "text"));
    assert!(
        !text.contains("jellyfin_export_scheduler::"),
        "a module path in a text line:\n{text}"
    );
    assert!(
        !text.contains("server{"),
        "a span's name in a text line:\n{text}"
    );
    let finished = text.lines().find(|l| l.contains("run finished")).unwrap();
    assert!(
        finished.contains(" INFO server=living-room run_id="),
        "{finished}"
    );

    let json = tokio::task::block_in_place(|| daemon_log(&sim, "json"));
    let finished: serde_json::Value = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["message"] == "run finished")
        .unwrap();
    assert_eq!(finished["server"], "living-room");
    assert!(finished["run_id"].is_string(), "{finished}");
    assert!(finished["outcome"].is_string(), "{finished}");
    assert!(
        finished["target"]
            .as_str()
            .unwrap()
            .starts_with("jellyfin_export_scheduler::"),
        "{finished}"
    );
}
