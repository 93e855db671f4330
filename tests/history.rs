//! The history file as other programs and future versions see it: append/read through the
//! public API, the pinned v1 fixture, crash leftovers, retention, permissions, errors and
//! the `history` command's rendering.

use chrono::{DateTime, TimeZone, Utc};
use jellyfin_export_scheduler::commands::history::{format_json_lines, format_table};
use jellyfin_export_scheduler::history::{History, HistoryError, StoredRecord};
use jellyfin_export_scheduler::record::{Outcome, RunRecord, Trigger};
use jellyfin_export_scheduler::state::StateDir;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const FIXTURE_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/history/v1.jsonl"
);

struct Setup {
    _tmp: tempfile::TempDir,
    state: StateDir,
    history: History,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::open(tmp.path().join("state")).unwrap();
    let history = History::new(&state);
    Setup {
        _tmp: tmp,
        state,
        history,
    }
}

impl Setup {
    fn file(&self, server: &str) -> PathBuf {
        self.history.file_path(server).unwrap()
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A plausible record; `n` makes run ids and times distinct and increasing.
fn record(server: &str, n: u32) -> RunRecord {
    let t =
        Utc.with_ymd_and_hms(2026, 11, 27, 2, 30, 0).unwrap() + chrono::Duration::hours(n.into());
    RunRecord {
        run_id: format!("{:020x}", n),
        server: server.to_owned(),
        task_key: "MigratorExport".to_owned(),
        trigger: Trigger::Schedule,
        scheduled_for: Some(t),
        triggered_at: t,
        started_at: Some(t + chrono::Duration::seconds(1)),
        finished_at: Some(t + chrono::Duration::seconds(13)),
        duration_ms: Some(12_345),
        outcome: Outcome::Completed,
        jellyfin_status: Some("Completed".to_owned()),
        reason: None,
        export_path: Some(format!("/config/export-{n}.zip")),
        attempts: 1,
        scheduler_version: "0.1.0".to_owned(),
        archive_path: None,
        archive_bytes: None,
        archive_sha256: None,
        archive_encrypted: None,
        export_bytes: None,
        export_sha256: None,
        export_entries: None,
        export_users: None,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn run_ids(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| r.record.run_id.clone()).collect()
}

fn append_raw(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn append_raw_creating(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn append_then_read_round_trips_with_private_modes() {
    let s = setup();
    let records: Vec<_> = (0..3).map(|n| record("living-room", n)).collect();
    for r in &records {
        s.history.append(r, 100).unwrap();
    }
    let read = s.history.read("living-room").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.clone().into_records(), records);
    for (stored, r) in read.records.iter().zip(&records) {
        assert_eq!(stored.raw, serde_json::to_string(r).unwrap());
    }
    // Compact JSON Lines, one record per line, newline-terminated.
    let text = fs::read_to_string(s.file("living-room")).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with("}\n"));

    assert_eq!(mode(&s.file("living-room")), 0o600);
    assert_eq!(mode(&s.state.history_dir()), 0o700);
    assert_eq!(mode(s.state.root()), 0o700);

    assert_eq!(
        s.history.last("living-room").unwrap(),
        records.last().cloned()
    );
    assert_eq!(s.history.last("kitchen").unwrap(), None);
}

#[test]
fn a_missing_file_is_an_empty_history() {
    let s = setup();
    let read = s.history.read("nobody").unwrap();
    assert!(read.records.is_empty() && read.warnings.is_empty());
    assert_eq!(s.history.servers().unwrap(), Vec::<String>::new());
}

#[test]
fn servers_lists_history_files_sorted_and_ignores_other_files() {
    let s = setup();
    for server in ["zulu", "alpha", "mike-2"] {
        s.history.append(&record(server, 0), 10).unwrap();
    }
    let dir = s.state.history_dir();
    fs::write(dir.join("alpha.jsonl.tmp"), "").unwrap();
    fs::write(dir.join("Notes.jsonl"), "").unwrap();
    fs::write(dir.join("readme.txt"), "").unwrap();
    assert_eq!(s.history.servers().unwrap(), ["alpha", "mike-2", "zulu"]);
}

#[test]
fn torn_last_line_is_skipped_then_cut_off_by_the_next_append() {
    let s = setup();
    let path = s.file("a");
    s.history.append(&record("a", 0), 100).unwrap();
    s.history.append(&record("a", 1), 100).unwrap();
    // A crash in the middle of a write leaves a prefix of a line. The same `History` then
    // appends again: its cached length no longer matches, so it must look at the file.
    append_raw(
        &path,
        br#"{"run_id":"0000000000000000000f","server":"a","tas"#,
    );

    let read = s.history.read("a").unwrap();
    assert_eq!(run_ids(&read.records).len(), 2);
    assert_eq!(
        read.warnings,
        [format!(
            "history file {}: last line is incomplete (crash during a write?); it was skipped \
             and will be removed on the next write",
            path.display()
        )]
    );

    let new = record("a", 2);
    s.history.append(&new, 100).unwrap();
    let read = s.history.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(
        read.into_records(),
        [record("a", 0), record("a", 1), new.clone()]
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("0000000000000000000f"),
        "the torn line is gone: {text}"
    );

    // A fresh `History` (a restarted daemon) repairs the same way.
    append_raw(&path, b"{\"run_id\":");
    let restarted = History::new(&s.state);
    restarted.append(&record("a", 3), 100).unwrap();
    let read = restarted.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.records.len(), 4);
}

#[test]
fn a_complete_last_record_without_newline_is_kept() {
    let s = setup();
    let path = s.file("a");
    let line = serde_json::to_string(&record("a", 0)).unwrap();
    fs::write(&path, &line).unwrap();
    let read = s.history.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.into_records(), [record("a", 0)]);

    s.history.append(&record("a", 1), 100).unwrap();
    assert_eq!(
        s.history.read("a").unwrap().into_records(),
        [record("a", 0), record("a", 1)]
    );
}

#[test]
fn a_corrupt_middle_line_is_skipped_with_its_line_number() {
    let s = setup();
    let path = s.file("a");
    s.history.append(&record("a", 0), 100).unwrap();
    append_raw(&path, b"this is not json\n");
    append_raw(&path, b"{\"run_id\":\"x\",\"outcome\":\"exploded\"}\n");
    s.history.append(&record("a", 1), 100).unwrap();

    let read = s.history.read("a").unwrap();
    assert_eq!(
        read.clone().into_records(),
        [record("a", 0), record("a", 1)]
    );
    assert_eq!(read.warnings.len(), 2, "{:?}", read.warnings);
    let prefix = format!(
        "history file {}: line 2 is not a valid run record (",
        path.display()
    );
    assert!(read.warnings[0].starts_with(&prefix), "{:?}", read.warnings);
    assert!(
        read.warnings[0].ends_with("); it was skipped"),
        "{:?}",
        read.warnings
    );
    assert!(
        read.warnings[1].contains(": line 3 is not a valid run record ("),
        "{:?}",
        read.warnings
    );
}

#[test]
fn the_tail_is_the_newest_records_of_a_full_read() {
    let s = setup();
    // About 400 KiB: the tail read crosses its first blocks.
    for n in 0..1000 {
        s.history.append(&record("a", n), 10_000).unwrap();
    }
    let full = s.history.read("a").unwrap();
    for n in [0, 1, 2, 20, 100, 163, 999, 1000, 5000] {
        let tail = s.history.tail("a", n).unwrap();
        assert!(tail.warnings.is_empty(), "{n}: {:?}", tail.warnings);
        let from = full.records.len().saturating_sub(n);
        assert_eq!(tail.records, full.records[from..], "the newest {n}");
    }
    assert_eq!(s.history.tail("nobody", 5).unwrap(), Default::default());
    assert!(matches!(
        s.history.tail("../etc", 5),
        Err(HistoryError::InvalidServer(_))
    ));
}

#[test]
fn the_tail_judges_a_torn_last_line_like_a_full_read() {
    let s = setup();
    let path = s.file("a");
    for n in 0..3 {
        s.history.append(&record("a", n), 100).unwrap();
    }
    append_raw(
        &path,
        br#"{"run_id":"0000000000000000000f","server":"a","tas"#,
    );
    let full = s.history.read("a").unwrap();
    let tail = s.history.tail("a", 2).unwrap();
    assert_eq!(tail.warnings, full.warnings);
    assert_eq!(tail.records, full.records[1..]);

    // A complete record without its newline is kept, as by a full read.
    let s = setup();
    let path = s.file("a");
    s.history.append(&record("a", 0), 100).unwrap();
    append_raw(
        &path,
        serde_json::to_string(&record("a", 1)).unwrap().as_bytes(),
    );
    let tail = s.history.tail("a", 1).unwrap();
    assert!(tail.warnings.is_empty(), "{:?}", tail.warnings);
    assert_eq!(tail.clone().into_records(), [record("a", 1)]);
}

#[test]
fn the_tail_skips_corrupt_lines_naming_their_place_from_the_end() {
    let s = setup();
    let path = s.file("a");
    // A megabyte of lines that would each be a warning if they were read.
    let junk = "not a record\n".repeat(80_000);
    append_raw_creating(&path, junk.as_bytes());
    for n in 0..5 {
        s.history.append(&record("a", n), 1_000_000).unwrap();
    }
    append_raw(&path, b"this is not json\n");
    s.history.append(&record("a", 5), 1_000_000).unwrap();

    let tail = s.history.tail("a", 3).unwrap();
    assert_eq!(
        tail.clone().into_records(),
        [record("a", 3), record("a", 4), record("a", 5)]
    );
    assert_eq!(tail.warnings.len(), 1, "{:?}", tail.warnings);
    assert!(
        tail.warnings[0].starts_with(&format!(
            "history file {}: line 2 from the end is not a valid run record (",
            path.display()
        )),
        "{:?}",
        tail.warnings
    );

    // Asking for more than there is reads everything, and reports everything.
    let tail = s.history.tail("a", 100).unwrap();
    assert_eq!(tail.records.len(), 6);
    assert_eq!(tail.warnings.len(), 80_001);
}

#[test]
fn unknown_fields_from_newer_versions_are_ignored() {
    let s = setup();
    let mut value = serde_json::to_value(record("a", 0)).unwrap();
    value["added_in_v2"] = serde_json::json!({"x": 1});
    let line = serde_json::to_string(&value).unwrap();
    fs::write(s.file("a"), format!("{line}\n")).unwrap();
    let read = s.history.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.records[0].record, record("a", 0));
    // `--format json` shows the line as stored, new field included.
    assert_eq!(format_json_lines(&read.records), format!("{line}\n"));
}

#[test]
fn retention_keeps_exactly_the_newest_limit() {
    let s = setup();
    for n in 0..12 {
        s.history.append(&record("a", n), 5).unwrap();
        let kept = s.history.read("a").unwrap().records.len();
        assert_eq!(kept, (n as usize + 1).min(5), "after appending record {n}");
    }
    let ids = run_ids(&s.history.read("a").unwrap().records);
    let want: Vec<_> = (7..12).map(|n| record("a", n).run_id).collect();
    assert_eq!(ids, want);
    assert_eq!(
        mode(&s.file("a")),
        0o600,
        "the rewritten file is private too"
    );
    let leftovers: Vec<_> = fs::read_dir(s.state.history_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["a.jsonl"], "no temp file is left behind");
}

#[test]
fn retention_keeps_exactly_the_newest_limit_records() {
    let s = setup();
    for n in 0..20 {
        s.history.append(&record("a", n), 20).unwrap();
    }
    assert_eq!(s.history.read("a").unwrap().records.len(), 20);
    for n in 20..23 {
        s.history.append(&record("a", n), 20).unwrap();
        assert_eq!(s.history.read("a").unwrap().records.len(), 20);
    }
    let ids = run_ids(&s.history.read("a").unwrap().records);
    let want: Vec<_> = (3..23).map(|n| record("a", n).run_id).collect();
    assert_eq!(ids, want);
}

#[test]
fn retention_keeps_lines_it_cannot_parse() {
    // A line this version can't read may be a newer version's record: retention counts
    // it and keeps it in its place rather than dropping it.
    let s = setup();
    let path = s.file("a");
    s.history.append(&record("a", 0), 3).unwrap();
    s.history.append(&record("a", 1), 3).unwrap();
    append_raw(&path, b"{\"from\":\"the future\"}\n");
    s.history.append(&record("a", 2), 3).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1], "{\"from\":\"the future\"}");
    let ids = run_ids(&s.history.read("a").unwrap().records);
    assert_eq!(ids, [record("a", 1).run_id, record("a", 2).run_id]);
}

#[test]
fn two_writers_on_one_file_keep_every_record() {
    // Two `History` values stand in for the daemon and a `trigger` process: each has its own
    // cache, and one's rewrite replaces the file under the other.
    let s = setup();
    let other = History::new(&s.state);
    for n in 0..30 {
        let h = if n % 3 == 0 { &other } else { &s.history };
        h.append(&record("a", n), 8).unwrap();
    }
    let read = s.history.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let ids = run_ids(&read.records);
    let want: Vec<_> = (22..30).map(|n| record("a", n).run_id).collect();
    assert_eq!(ids, want);
}

#[test]
fn concurrent_appends_from_threads_interleave_whole_lines() {
    let s = setup();
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let history = &s.history;
            scope.spawn(move || {
                for n in 0..25 {
                    history
                        .append(&record("shared", t * 100 + n), 1000)
                        .unwrap();
                    history
                        .append(&record(&format!("own-{t}"), n), 1000)
                        .unwrap();
                }
            });
        }
    });
    let read = s.history.read("shared").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.records.len(), 100);
    for t in 0..4 {
        assert_eq!(
            s.history.read(&format!("own-{t}")).unwrap().records.len(),
            25
        );
    }
}

#[test]
fn invalid_server_names_never_become_paths() {
    let s = setup();
    for bad in ["../escape", "a/b", "", "UPPER", ".hidden"] {
        let err = s.history.append(&record(bad, 0), 10).unwrap_err();
        assert!(
            matches!(err, HistoryError::InvalidServer(_)),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().starts_with("invalid server name"), "{err}");
        assert!(s.history.read(bad).is_err());
    }
    let entries = fs::read_dir(s.state.root()).unwrap().count();
    assert_eq!(entries, 3, "only history/, locks/ and inflight/ exist");
    assert_eq!(fs::read_dir(s.state.history_dir()).unwrap().count(), 0);
}

#[test]
fn a_write_error_names_the_file_the_os_error_and_a_hint() {
    let s = setup();
    let path = s.file("a");
    // Works as root too, unlike a read-only mode: a directory where the file should be.
    fs::create_dir(&path).unwrap();
    let err = s.history.append(&record("a", 0), 10).unwrap_err();
    assert_eq!(err.io_error_kind(), Some(ErrorKind::IsADirectory), "{err}");
    assert_eq!(err.path(), Some(path.as_path()));
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write history file {}: Is a directory (os error 21); a directory is in the \
             way of a file on this path; move it away",
            path.display()
        )
    );
    let err = s.history.read("a").unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read history file {}: Is a directory",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_full_disk_is_reported_as_storage_full() {
    // /dev/full fails every write with ENOSPC; a symlink puts it where the history file is.
    let s = setup();
    if !Path::new("/dev/full").exists() {
        println!("skipped: /dev/full does not exist here");
        return;
    }
    let path = s.file("a");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let err = s.history.append(&record("a", 0), 10).unwrap_err();
    assert_eq!(err.io_error_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write history file {}: No space left on device (os error 28); free some \
             disk space",
            path.display()
        )
    );
}

#[test]
fn a_read_only_history_directory_is_a_clear_error() {
    let s = setup();
    let dir = s.state.history_dir();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    // Root (CAP_DAC_OVERRIDE) writes through modes; find out rather than guess from the uid.
    let probe = dir.join("probe");
    if fs::write(&probe, "").is_ok() {
        fs::remove_file(&probe).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        println!(
            "skipped the read-only-directory case: this process writes through directory \
             modes (root); the directory-in-the-way and /dev/full tests cover write errors"
        );
        return;
    }
    let err = s.history.append(&record("a", 0), 10).unwrap_err();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        err.io_error_kind(),
        Some(ErrorKind::PermissionDenied),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Permission denied (os error 13); make the state directory writable"),
        "{err}"
    );
}

/// The records of `tests/fixtures/history/v1.jsonl`, as today's code must read them.
fn fixture_v1_records() -> Vec<RunRecord> {
    let base =
        |run_id: &str, trigger, triggered_at: &str, outcome, attempts, version: &str| RunRecord {
            run_id: run_id.to_owned(),
            server: "living-room".to_owned(),
            task_key: "MigratorExport".to_owned(),
            trigger,
            scheduled_for: None,
            triggered_at: at(triggered_at),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            outcome,
            jellyfin_status: None,
            reason: None,
            export_path: None,
            attempts,
            scheduler_version: version.to_owned(),
            archive_path: None,
            archive_bytes: None,
            archive_sha256: None,
            archive_encrypted: None,
            export_bytes: None,
            export_sha256: None,
            export_entries: None,
            export_users: None,
        };
    let s = |x: &str| Some(x.to_owned());
    vec![
        RunRecord {
            scheduled_for: Some(at("2026-11-27T02:30:00Z")),
            started_at: Some(at("2026-11-27T02:30:01Z")),
            finished_at: Some(at("2026-11-27T02:34:06Z")),
            duration_ms: Some(245_000),
            jellyfin_status: s("Completed"),
            export_path: s("/config/data/migrator/export-2026-11-27.zip"),
            ..base(
                "019ac3a1d2400a1b2c3d",
                Trigger::Schedule,
                "2026-11-27T02:30:00Z",
                Outcome::Completed,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-11-28T02:30:00Z")),
            started_at: Some(at("2026-11-28T02:30:01.250Z")),
            finished_at: Some(at("2026-11-28T02:30:13.750Z")),
            duration_ms: Some(12_500),
            jellyfin_status: s("Failed"),
            reason: s("the export task ended Failed: \"Disk full\""),
            ..base(
                "019ac8c82c000b2c3d4e",
                Trigger::Schedule,
                "2026-11-28T02:30:00.500Z",
                Outcome::Failed,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            started_at: Some(at("2026-11-28T07:55:12.9Z")),
            finished_at: Some(at("2026-11-28T07:56:00.001Z")),
            duration_ms: Some(47_101),
            jellyfin_status: s("Cancelled"),
            reason: s("the task was cancelled in Jellyfin"),
            ..base(
                "019ac9f1a6480c3d4e5f",
                Trigger::Manual,
                "2026-11-28T07:55:12.123Z",
                Outcome::Cancelled,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-11-29T02:30:00Z")),
            started_at: Some(at("2026-11-29T08:00:01.654321Z")),
            finished_at: Some(at("2026-11-29T08:01:10Z")),
            duration_ms: Some(68_346),
            jellyfin_status: s("Aborted"),
            reason: s("Jellyfin shut down during the run"),
            ..base(
                "019acdee88000d4e5f60",
                Trigger::CatchUp,
                "2026-11-29T08:00:00.123456Z",
                Outcome::Aborted,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-11-30T02:30:00Z")),
            started_at: Some(at("2026-11-30T02:30:00.987654321Z")),
            finished_at: Some(at("2026-11-30T03:30:00.987654321Z")),
            duration_ms: Some(3_600_000),
            reason: s("the run took longer than the 1h timeout; it was cancelled"),
            ..base(
                "019ad315d4000e5f6071",
                Trigger::Schedule,
                "2026-11-30T02:30:00.123456789Z",
                Outcome::TimedOut,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-12-01T02:30:00Z")),
            started_at: Some(at("2026-12-01T02:30:02Z")),
            finished_at: Some(at("2026-12-01T02:41:17Z")),
            reason: s("the task went Idle without a new result (Jellyfin restarted?)"),
            ..base(
                "019ad83c30000f607182",
                Trigger::Schedule,
                "2026-12-01T02:30:00Z",
                Outcome::Lost,
                1,
                "0.1.0",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-12-02T02:30:00Z")),
            reason: s("the export task is already running"),
            ..base(
                "019add628c0010718293",
                Trigger::Schedule,
                "2026-12-02T02:30:00Z",
                Outcome::Skipped,
                0,
                "0.1.0",
            )
        },
        RunRecord {
            reason: s("Verbindung abgelehnt — connection refused by http://jellyfin.local:8096"),
            ..base(
                "019ade50f1b011829304",
                Trigger::Manual,
                "2026-12-02T06:52:45.500Z",
                Outcome::TriggerFailed,
                3,
                "0.1.1",
            )
        },
        RunRecord {
            scheduled_for: Some(at("2026-12-03T02:30:00Z")),
            started_at: Some(at("2026-12-03T02:30:01Z")),
            reason: s("the daemon stopped during the run"),
            ..base(
                "019ae288e80012930415",
                Trigger::CatchUp,
                "2026-12-03T02:30:00Z",
                Outcome::Interrupted,
                1,
                "0.1.1",
            )
        },
    ]
}

fn setup_with_fixture() -> (Setup, PathBuf) {
    let s = setup();
    let path = s.file("living-room");
    fs::copy(FIXTURE_V1, &path).unwrap();
    (s, path)
}

#[test]
fn fixture_v1_reads_with_exact_values() {
    let (s, path) = setup_with_fixture();
    let read = s.history.read("living-room").unwrap();
    assert_eq!(
        read.warnings,
        [format!(
            "history file {}: last line is incomplete (crash during a write?); it was skipped \
             and will be removed on the next write",
            path.display()
        )]
    );
    let records = read.clone().into_records();
    let want = fixture_v1_records();
    assert_eq!(records.len(), want.len());
    for (i, (got, want)) in records.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "record {} (line {})", i, i + 1);
    }
    // The fixture covers every outcome and trigger, so a new one needs a new fixture line.
    for o in Outcome::ALL {
        assert!(
            records.iter().any(|r| r.outcome == o),
            "fixture lacks outcome {o}"
        );
    }
    for t in [Trigger::Schedule, Trigger::Manual, Trigger::CatchUp] {
        assert!(
            records.iter().any(|r| r.trigger == t),
            "fixture lacks trigger {t}"
        );
    }

    // `--format json` gives back the stored bytes, everything but the torn line.
    let fixture = fs::read_to_string(FIXTURE_V1).unwrap();
    let complete = &fixture[..=fixture.rfind('\n').unwrap()];
    assert_eq!(format_json_lines(&read.records), complete);
}

#[test]
fn fixture_v1_is_repaired_by_the_next_append() {
    let (s, path) = setup_with_fixture();
    let new = record("living-room", 100);
    s.history.append(&new, 1000).unwrap();
    let read = s.history.read("living-room").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let mut want = fixture_v1_records();
    want.push(new.clone());
    assert_eq!(read.into_records(), want);
    let fixture = fs::read_to_string(FIXTURE_V1).unwrap();
    let complete = &fixture[..=fixture.rfind('\n').unwrap()];
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!("{complete}{}\n", serde_json::to_string(&new).unwrap())
    );
}

#[test]
fn table_aligns_columns_and_shows_server_only_when_mixed() {
    let mut a = record("living-room", 0);
    a.triggered_at = at("2026-11-27T02:30:00Z");
    let mut b = record("kitchen", 0);
    b.triggered_at = at("2026-11-27T01:00:00.5Z");
    b.trigger = Trigger::Manual;
    b.outcome = Outcome::Failed;
    b.duration_ms = Some(245_000);
    b.reason = Some("export failed:\ndisk full".to_owned());
    let mut c = record("living-room", 0);
    c.triggered_at = at("2026-11-26T22:00:00Z");
    c.trigger = Trigger::CatchUp;
    c.outcome = Outcome::Skipped;
    c.duration_ms = None;
    c.reason = Some("task already running".to_owned());

    // Each server's time in its own zone, with the offset; the header says so.
    let zone_of = |server: &str| -> chrono_tz::Tz {
        match server {
            "kitchen" => chrono_tz::America::New_York,
            _ => chrono_tz::Europe::Berlin,
        }
    };
    // An archived export shows its size and users.
    a.archive_bytes = Some(25_165_824);
    a.export_users = Some(3);
    let table = format_table(&[a.clone(), b, c.clone()], zone_of);
    let want = [
        "WHEN (each server's zone)   SERVER       TRIGGER   OUTCOME    DURATION  SIZE      USERS  REASON",
        "2026-11-27 03:30:00 +01:00  living-room  schedule  completed  12.3s     24.0 MiB  3",
        "2026-11-26 20:00:00 -05:00  kitchen      manual    failed     4m 05s    -         -      export failed: disk full",
        "2026-11-26 23:00:00 +01:00  living-room  catch_up  skipped    -         -         -      task already running",
    ];
    assert_eq!(table, want.map(|l| format!("{l}\n")).concat(), "\n{table}");

    // One server: no SERVER column, and the header names the one zone. Stored records
    // work too.
    let stored = [a, c].map(|r| StoredRecord {
        raw: serde_json::to_string(&r).unwrap(),
        record: r,
    });
    let table = format_table(&stored, |_| chrono_tz::UTC);
    let want = [
        "WHEN (UTC)                  TRIGGER   OUTCOME    DURATION  SIZE      USERS  REASON",
        "2026-11-27 02:30:00 +00:00  schedule  completed  12.3s     24.0 MiB  3",
        "2026-11-26 22:00:00 +00:00  catch_up  skipped    -         -         -      task already running",
    ];
    assert_eq!(table, want.map(|l| format!("{l}\n")).concat(), "\n{table}");

    assert_eq!(format_table::<RunRecord>(&[], |_| chrono_tz::UTC), "");
}

#[test]
fn table_tells_the_repeated_hour_of_a_dst_change_apart() {
    // Berlin falls back at 03:00 CEST on 2026-10-25: 02:30 happens twice.
    let mut first = record("living-room", 0);
    first.triggered_at = at("2026-10-25T00:30:00Z");
    let mut second = record("living-room", 0);
    second.triggered_at = at("2026-10-25T01:30:00Z");
    let table = format_table(&[second, first], |_| chrono_tz::Europe::Berlin);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("WHEN (Europe/Berlin) "), "{table}");
    assert!(
        rows[1].starts_with("2026-10-25 02:30:00 +01:00  "),
        "{table}"
    );
    assert!(
        rows[2].starts_with("2026-10-25 02:30:00 +02:00  "),
        "{table}"
    );
}

#[test]
fn json_lines_reproduce_stored_bytes_in_the_given_order() {
    let s = setup();
    let path = s.file("a");
    // Hand-written spacing and key order, which re-serialising would change.
    let one = r#"{ "server": "a", "run_id": "1", "task_key": "k", "trigger": "manual", "triggered_at": "2026-11-27T02:30:00.000+00:00", "outcome": "completed", "attempts": 1, "scheduler_version": "0.1.0" }"#;
    let two = serde_json::to_string(&record("a", 2)).unwrap();
    fs::write(&path, format!("{one}\n{two}\n")).unwrap();
    let mut read = s.history.read("a").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    read.records.reverse();
    assert_eq!(format_json_lines(&read.records), format!("{two}\n{one}\n"));
}

#[test]
fn concurrent_writers_with_separate_caches_lose_nothing_across_rewrites() {
    // Two `History` values take separate flocks, like two processes. With a small limit,
    // one's rewrite replaces the file while the other waits for its lock; the waiter must
    // notice and append to the new file, or its record would vanish with the old one.
    let s = setup();
    let other = History::new(&s.state);
    let writers = [&s.history, &other];
    std::thread::scope(|scope| {
        for (t, history) in writers.iter().enumerate() {
            let history = *history;
            scope.spawn(move || {
                let t = t as u32;
                for n in 0..100u32 {
                    history.append(&record("busy", t * 1000 + n), 4).unwrap();
                    // Right after our append the file holds our record, or (if the other
                    // writer pushed it out since) none of ours at all; our older records
                    // without the new one mean the new one was lost.
                    let ours: Vec<u32> = history
                        .read("busy")
                        .unwrap()
                        .records
                        .iter()
                        .map(|r| u32::from_str_radix(&r.record.run_id, 16).unwrap())
                        .filter(|id| id / 1000 == t)
                        .collect();
                    assert!(
                        ours.is_empty() || ours.last() == Some(&(t * 1000 + n)),
                        "writer {t}'s record {n} is not in the file, its older ones are: {ours:?}"
                    );
                }
            });
        }
    });
    let read = s.history.read("busy").unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.records.len(), 4);
    // The file is a suffix of the appends, so each writer's records in it are its newest
    // ones without gaps; a record appended to a replaced file would leave a gap.
    for t in 0..2u32 {
        let ns: Vec<u32> = read
            .records
            .iter()
            .map(|r| u32::from_str_radix(&r.record.run_id, 16).unwrap())
            .filter(|id| id / 1000 == t)
            .map(|id| id % 1000)
            .collect();
        let want: Vec<u32> = (100 - ns.len() as u32..100).collect();
        assert_eq!(ns, want, "writer {t}'s records in the file");
    }
}
