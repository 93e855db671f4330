//! Absurd config input through the real binary (issue #7): huge values, huge files, deep
//! nesting, a key file that never ends, a million problems. Each must end in exit 2 with
//! clear, short messages, quickly and in bounded memory — never a panic, a stack overflow
//! or a hang. A config of 10 000 servers must still check fine.
//!
//! Peak memory is the child's peak RSS: `/usr/bin/time -f %M` when the machine has it
//! (exact), else the last `VmHWM` read from `/proc/<pid>/status` while the child runs (a
//! lower bound, good enough to catch a blow-up).

use jellyfin_export_scheduler::config::{MAX_CONFIG_BYTES, MAX_SHOWN_PROBLEMS, MAX_STRING_BYTES};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::bin::{BIN, clean};

/// Far above what these inputs need (≤ 50 MB measured), far below a blow-up.
const MAX_RSS_KB: u64 = 200 * 1024;
/// CPU time (user + system) of the child, debug build: each case takes well under a
/// second, 10 000 servers a few. CPU time, not wall time: a busy machine (other tests,
/// benchmarks) stretches the wall clock several times over without the program doing
/// more work, and a blow-up is more work.
const MAX_CPU: Duration = Duration::from_secs(20);

const SERVER: &str = "[[servers]]\nname = \"x\"\nurl = \"http://127.0.0.1:8096\"\napi_key = \"0123456789abcdef0123456789abcdef\"\nschedule = \"@daily\"\ntimezone = \"UTC\"\n";

struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_rss_kb: Option<u64>,
    /// The child's user + system CPU time.
    cpu: Duration,
    /// Wall time, shown only.
    took: Duration,
}

impl Checked {
    fn describe(&self) -> String {
        let cut = |s: &str| s.chars().take(2000).collect::<String>();
        format!(
            "exit {:?}, peak RSS {:?} kB, CPU {:?} (wall {:?})\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.peak_rss_kb,
            self.cpu,
            self.took,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }

    /// Exit 2, every stderr line short, the first one containing `wanted`, and time and
    /// memory within bounds.
    fn assert_refused(&self, wanted: &str) {
        assert_eq!(self.code, Some(2), "{}", self.describe());
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(wanted),
            "wanted {wanted:?}: {}",
            self.describe()
        );
        assert!(
            self.stderr.lines().all(|l| l.len() < 400),
            "a line of stderr is long: {}",
            self.describe()
        );
        self.assert_bounded();
    }

    fn assert_bounded(&self) {
        assert!(self.cpu < MAX_CPU, "too slow: {}", self.describe());
        if let Some(kb) = self.peak_rss_kb {
            assert!(kb < MAX_RSS_KB, "too much memory: {}", self.describe());
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The user + system CPU time of process `pid` so far, from `/proc/<pid>/stat`.
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces): the
    // state is the first, utime the 12th, stime the 13th (fields 14 and 15 of proc(5)).
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // In clock ticks of USER_HZ, which Linux fixes at 100 on the architectures this runs on.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// `check --config FILE [extra]`, measuring the child's CPU time and peak RSS.
fn check(config: &Path, extra: &[&str]) -> Checked {
    eprintln!("check {}", config.display());
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = config.with_extension("rss");
    let mut cmd = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.arg("-f")
            .arg("%M %U %S")
            .arg("-o")
            .arg(&rss_file)
            .arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = clean(&mut cmd).spawn().expect("the binary starts");
    // Without GNU time, sample the child's high-water mark and CPU time while it runs
    // (a zombie still shows its final CPU time, until the child is reaped).
    let pid = child.id();
    let sampler = (!gnu_time.exists()).then(|| {
        std::thread::spawn(move || {
            let (mut peak, mut cpu) = (None, None);
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                cpu = cpu_of(pid).or(cpu);
                if let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    peak = Some(kb); // a zombie has no memory lines any more
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (peak, cpu)
        })
    });
    let out = child.wait_with_output().expect("the binary runs");
    let took = started.elapsed();
    let (peak_rss_kb, cpu) = match sampler {
        Some(s) => s.join().unwrap(),
        None => {
            // GNU time's last line: "<max RSS kB> <user s> <system s>".
            let text = std::fs::read_to_string(&rss_file).unwrap_or_default();
            let fields: Vec<&str> = text.lines().last().unwrap_or("").split(' ').collect();
            let secs = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            let cpu = secs(1)
                .zip(secs(2))
                .map(|(u, s)| Duration::from_secs_f64(u + s));
            (fields.first().and_then(|f| f.parse().ok()), cpu)
        }
    };
    let cpu = cpu.unwrap_or_else(|| {
        panic!(
            "the child's CPU time could not be read (GNU time wrote {:?})",
            std::fs::read_to_string(&rss_file).ok()
        )
    });
    eprintln!(
        "  exit {:?}, CPU {cpu:?} (wall {took:?}), peak RSS {peak_rss_kb:?} kB",
        out.status.code()
    );
    // GNU time writes "Command exited with non-zero status 2" to its -o file, not here.
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_rss_kb,
        cpu,
        took,
    }
}

#[test]
fn a_10_mb_string_value_is_refused_by_the_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\ntask_key = \"{}\"\n{SERVER}",
        "a".repeat(10 * 1024 * 1024)
    );
    let path = write(dir.path(), "c.toml", &text);
    check(&path, &[]).assert_refused(&format!(
        "more than the {MAX_CONFIG_BYTES} bytes a config may have"
    ));
}

#[test]
fn a_3_mb_string_value_under_the_size_limit_is_refused_as_too_long() {
    let dir = tempfile::tempdir().unwrap();
    // Each of these once cost something per character of the value: a quoted multi-megabyte error
    // line (name, url, schedule), minutes of edit distance (timezone), a megabytes-long list parsed
    // by croner (schedule).
    for key in ["timezone", "schedule", "name", "url", "log_level"] {
        let value = if key == "schedule" {
            format!("0 {}1 * * *", "1,".repeat(1536 * 1024))
        } else {
            "a".repeat(3 * 1024 * 1024)
        };
        let table = if key == "log_level" {
            "daemon"
        } else {
            "defaults"
        };
        // A server's own name/url: written in [[servers]] itself, replacing the normal one.
        let text = if matches!(key, "name" | "url") {
            SERVER.replace(&format!("\n{key} = "), &format!("\n{key} = \"{value}\"\n#"))
        } else {
            let server = SERVER.replace(&format!("\n{key} = "), &format!("\n#{key} = "));
            format!("[{table}]\n{key} = \"{value}\"\n{server}")
        };
        assert!(text.len() as u64 <= MAX_CONFIG_BYTES);
        let path = write(dir.path(), &format!("{key}.toml"), &text);
        let checked = check(&path, &[]);
        checked.assert_refused(&format!("a value may have at most {MAX_STRING_BYTES}"));
        assert!(checked.stderr.contains(key), "{}", checked.describe());
    }
}

#[test]
fn a_100_mb_file_is_refused_by_its_size_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.toml");
    // Sparse: no disk space used; reading it would still cost 100 MB.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let checked = check(&path, &[]);
    checked.assert_refused("the config file is 104857600 bytes, more than the");
    if let Some(kb) = checked.peak_rss_kb {
        assert!(
            kb < 50 * 1024,
            "read before refusing? {}",
            checked.describe()
        );
    }
}

#[test]
fn deep_nesting_is_refused_without_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 100_000;
    let x = vec!["x"; N].join(".");
    let cases = [
        (
            "arrays",
            format!("a = {}{}\n", "[".repeat(N), "]".repeat(N)),
        ),
        ("unclosed-arrays", format!("a = {}\n", "[".repeat(N))),
        (
            "inline-tables",
            format!("a = {}1{}\n", "{b = ".repeat(N), "}".repeat(N)),
        ),
        (
            "mixed",
            format!("a = {}{}\n", "[{b = ".repeat(N / 2), "}]".repeat(N / 2)),
        ),
        ("dotted-key", format!("{x} = 1\n")),
        ("table-header", format!("[{x}]\n")),
        ("array-of-tables-header", format!("[[{x}]]\n")),
        ("dotted-key-in-inline-table", format!("a = {{ {x} = 1 }}\n")),
    ];
    for (name, text) in cases {
        let path = write(dir.path(), &format!("{name}.toml"), &text);
        let checked = check(&path, &[]);
        checked.assert_refused("invalid TOML");
        assert!(
            checked.stderr.contains("recurs"),
            "{name}: {}",
            checked.describe()
        );
    }
}

#[test]
fn nesting_within_the_parser_limit_is_reported_as_a_type_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[daemon]\nlog_level = {}\"info\"{}\n{SERVER}",
        "[".repeat(50),
        "]".repeat(50)
    );
    let path = write(dir.path(), "c.toml", &text);
    check(&path, &[]).assert_refused("daemon.log_level: expected a string, found an array");
}

#[test]
fn an_endless_api_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = SERVER.replace("api_key = ", "api_key_file = \"/dev/zero\"\n#");
    let path = write(dir.path(), "c.toml", &text);
    check(&path, &[])
        .assert_refused("cannot read API key file /dev/zero: it is not a regular file");
    // A regular file that is too large is refused by its size.
    std::fs::write(dir.path().join("big.key"), "k".repeat(100_000)).unwrap();
    let text = SERVER.replace("api_key = ", "api_key_file = \"big.key\"\n#");
    let path = write(dir.path(), "c2.toml", &text);
    check(&path, &[]).assert_refused("API key file");
    check(&path, &[]).assert_refused("is larger than 65536 bytes");
}

#[test]
fn a_named_pipe_as_key_file_is_refused_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("key.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let text = SERVER.replace("api_key = ", "api_key_file = \"key.fifo\"\n#");
    let path = write(dir.path(), "c.toml", &text);
    check(&path, &[]).assert_refused("it is not a regular file");
}

#[test]
fn a_megabytes_long_unknown_key_is_quick_and_quoted_short() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[daemon]\n{} = 1\n{SERVER}", "k".repeat(3 * 1024 * 1024));
    let path = write(dir.path(), "c.toml", &text);
    check(&path, &[]).assert_refused("daemon.kkkk");
}

#[test]
fn a_million_problems_print_the_first_hundred_and_a_count() {
    let dir = tempfile::tempdir().unwrap();
    // 200 000 empty server tables: 4 problems each (no name, url, key, schedule).
    let text = "[[servers]]\n".repeat(200_000);
    let path = write(dir.path(), "c.toml", &text);
    let checked = check(&path, &[]);
    assert_eq!(checked.code, Some(2), "{}", checked.describe());
    let lines: Vec<&str> = checked.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        MAX_SHOWN_PROBLEMS + 1,
        "{}",
        checked.describe()
    );
    let last = lines.last().unwrap();
    assert!(
        last.ends_with(&format!(
            "more problems not shown (the first {MAX_SHOWN_PROBLEMS} are above)"
        )),
        "{}",
        checked.describe()
    );
    // Memory here is the TOML document itself (~1 kB per server table); time is debug
    // build walking 200 000 tables.
    assert!(
        checked.cpu < Duration::from_secs(60),
        "{}",
        checked.describe()
    );
    if let Some(kb) = checked.peak_rss_kb {
        assert!(kb < 600 * 1024, "{}", checked.describe());
    }
}

#[test]
fn ten_thousand_servers_check_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "[daemon]\nstate_dir = \"state\"\n[defaults]\nschedule = \"0 30 3 * * *\"\ntimezone = \"Europe/Berlin\"\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[servers]]\nname = \"s{i}\"\nurl = \"http://127.0.0.1:8096/s/s{i}\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n"
        ));
    }
    let path = write(dir.path(), "c.toml", &text);
    let checked = check(
        &path,
        &["--format", "json", "--after", "2026-03-28T12:00:00Z"],
    );
    assert_eq!(checked.code, Some(0), "{}", checked.describe());
    let json: serde_json::Value = serde_json::from_str(&checked.stdout).unwrap();
    let servers = json["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 10_000);
    // 03:30 on the spring-forward day is already CEST (+2).
    assert_eq!(servers[9_999]["next"][0], "2026-03-29T01:30:00Z");
    checked.assert_bounded();
}
