//! What is sent: a notification's body and headers in each `format`, the one-line
//! summary, and the dead-man's-switch ping URLs with their run id.
//!
//! Pure functions of a record and a target; no I/O, so every format is tested here.

use crate::config::{NotifyFormat, NotifyOn};
use crate::record::{Outcome, RunRecord, summary};
use url::Url;

/// One notification for one target: why it is sent, and the run it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub on: NotifyOn,
    /// `living-room: failed after 12.3s: <reason> [run 01a2...]`.
    pub summary: String,
    pub record: RunRecord,
}

impl Notice {
    /// `recovered_after`: the failed runs before this `completed` one, when it is a recovery.
    pub fn new(on: NotifyOn, record: RunRecord, recovered_after: Option<u32>) -> Notice {
        let mut summary = summary(&record);
        if let Some(n) = recovered_after {
            let s = if n == 1 { "" } else { "s" };
            summary.push_str(&format!(" (recovered after {n} failed run{s})"));
        }
        Notice {
            on,
            summary,
            record,
        }
    }
}

/// Whether an outcome starts or extends a failure streak (the runs a `recovered` ends).
/// `skipped` and `cancelled` say nothing about the export's health either way.
pub fn is_failure(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed
            | Outcome::TimedOut
            | Outcome::Lost
            | Outcome::TriggerFailed
            | Outcome::Aborted
            | Outcome::Interrupted
    )
}

/// A rendered HTTP POST body with its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The request for `notice` in `format`.
pub fn render(format: NotifyFormat, notice: &Notice) -> Rendered {
    match format {
        NotifyFormat::Json => Rendered {
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::json!({
                "event": "run_finished",
                "on": notice.on.as_str(),
                "summary": notice.summary,
                "record": notice.record,
            })
            .to_string()
            .into_bytes(),
        },
        NotifyFormat::Slack => Rendered {
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::json!({ "text": notice.summary })
                .to_string()
                .into_bytes(),
        },
        NotifyFormat::Ntfy => {
            let (priority, tag) = match notice.on {
                NotifyOn::Recovered | NotifyOn::Outcome(Outcome::Completed) => {
                    ("default", "white_check_mark")
                }
                NotifyOn::Outcome(o) if is_failure(o) => ("high", "warning"),
                NotifyOn::Outcome(_) => ("default", "information_source"),
            };
            Rendered {
                content_type: "text/plain; charset=utf-8",
                headers: vec![
                    // Server names and outcome names are ASCII, as header values must be.
                    (
                        "Title",
                        format!("{}: {}", notice.record.server, notice.on.as_str()),
                    ),
                    ("Priority", priority.to_owned()),
                    ("Tags", format!("{tag},jellyfin-export")),
                ],
                body: notice.summary.clone().into_bytes(),
            }
        }
    }
}

/// Which dead-man's-switch signal a ping is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    Start,
    Success,
    Fail,
}

impl PingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PingKind::Start => "start",
            PingKind::Success => "success",
            PingKind::Fail => "fail",
        }
    }
}

/// `<ping_url>/start?rid=…`, `<ping_url>?rid=…` or `<ping_url>/fail?rid=…`. The suffix
/// goes onto the path, before a query the URL may already have (`?create=1` of slug URLs).
pub fn ping_url(base: &str, kind: PingKind, run_id: &str) -> Option<Url> {
    let mut url = Url::parse(base).ok()?;
    if kind != PingKind::Success {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty();
        segments.push(kind.as_str());
    }
    url.query_pairs_mut().append_pair("rid", &ping_rid(run_id));
    Some(url)
}

/// The run id as Healthchecks wants `rid`: a UUID in canonical lowercase form. Our ids are
/// 20 hex digits (12 of milliseconds, 8 random), laid out like a version-8 UUID:
/// `tttttttt-tttt-8rrr-8rrr-rr0000000000`, so the same run always maps to the same `rid`
/// and the run id can be read back out of it. An id of another shape (none is made today)
/// is hashed into the same layout.
pub fn ping_rid(run_id: &str) -> String {
    let hex: String = if run_id.len() == 20 && run_id.chars().all(|c| c.is_ascii_hexdigit()) {
        run_id.to_ascii_lowercase()
    } else {
        // FNV-1a: stable across processes, unlike std's RandomState.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in run_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:016x}{:04x}", h, (h >> 48) as u16 ^ run_id.len() as u16)
    };
    format!(
        "{}-{}-8{}-8{}-{}0000000000",
        &hex[0..8],
        &hex[8..12],
        &hex[12..15],
        &hex[15..18],
        &hex[18..20]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{SCHEDULER_VERSION, Trigger};

    fn record(outcome: Outcome) -> RunRecord {
        RunRecord {
            run_id: "01a2192f25d2667cc06f".into(),
            server: "living-room".into(),
            task_key: "JellyfinMigratorExport".into(),
            trigger: Trigger::Schedule,
            scheduled_for: None,
            triggered_at: chrono::DateTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            duration_ms: Some(12_300),
            outcome,
            jellyfin_status: None,
            reason: Some("the export log reports an error: ERROR: disk full".into()),
            export_path: None,
            attempts: 1,
            scheduler_version: SCHEDULER_VERSION.into(),
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

    #[test]
    fn summary_is_one_line_with_the_run_id() {
        let n = Notice::new(
            NotifyOn::Outcome(Outcome::Failed),
            record(Outcome::Failed),
            None,
        );
        assert_eq!(
            n.summary,
            "living-room: failed after 12.3s: the export log reports an error: ERROR: disk full [run 01a2192f25d2667cc06f]"
        );
        let mut ok = record(Outcome::Completed);
        ok.reason = None;
        let n = Notice::new(NotifyOn::Recovered, ok, Some(2));
        assert!(
            n.summary.ends_with("(recovered after 2 failed runs)"),
            "{}",
            n.summary
        );
    }

    #[test]
    fn an_archived_export_travels_with_its_path_and_size() {
        let mut ok = record(Outcome::Completed);
        ok.reason = None;
        ok.archive_path = Some("/var/lib/x/archive/living-room/f.zip".into());
        ok.archive_bytes = Some(25_165_824);
        ok.export_users = Some(3);
        let n = Notice::new(NotifyOn::Outcome(Outcome::Completed), ok, None);
        assert!(
            n.summary
                .contains("(archived to /var/lib/x/archive/living-room/f.zip, 24.0 MiB, 3 users)"),
            "{}",
            n.summary
        );
        let body: serde_json::Value =
            serde_json::from_slice(&render(NotifyFormat::Json, &n).body).unwrap();
        assert_eq!(
            body["record"]["archive_path"],
            "/var/lib/x/archive/living-room/f.zip"
        );
        assert_eq!(body["record"]["archive_bytes"], 25_165_824);
        let slack: serde_json::Value =
            serde_json::from_slice(&render(NotifyFormat::Slack, &n).body).unwrap();
        assert!(slack["text"].as_str().unwrap().contains("24.0 MiB"));
    }

    #[test]
    fn rid_is_a_canonical_uuid_holding_the_run_id() {
        let rid = ping_rid("01a2192f25d2667cc06f");
        assert_eq!(rid, "01a2192f-25d2-8667-8cc0-6f0000000000");
        let other = ping_rid("not-a-run-id");
        for r in [&rid, &other] {
            let groups: Vec<&str> = r.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{r}");
            assert!(
                r.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_lowercase())
            );
        }
        assert_eq!(other, ping_rid("not-a-run-id"));
    }

    #[test]
    fn ping_urls_append_the_signal_before_the_query() {
        let rid = ping_rid("01a2192f25d2667cc06f");
        let base = "https://hc-ping.com/key/living-room?create=1";
        assert_eq!(
            ping_url(base, PingKind::Start, "01a2192f25d2667cc06f")
                .unwrap()
                .as_str(),
            format!("https://hc-ping.com/key/living-room/start?create=1&rid={rid}")
        );
        assert_eq!(
            ping_url(
                "https://hc-ping.com/uuid/",
                PingKind::Fail,
                "01a2192f25d2667cc06f"
            )
            .unwrap()
            .as_str(),
            format!("https://hc-ping.com/uuid/fail?rid={rid}")
        );
        assert_eq!(
            ping_url(
                "https://hc-ping.com/uuid",
                PingKind::Success,
                "01a2192f25d2667cc06f"
            )
            .unwrap()
            .as_str(),
            format!("https://hc-ping.com/uuid?rid={rid}")
        );
    }

    #[test]
    fn ntfy_priority_follows_the_kind_of_news() {
        let r = render(
            NotifyFormat::Ntfy,
            &Notice::new(
                NotifyOn::Outcome(Outcome::TimedOut),
                record(Outcome::TimedOut),
                None,
            ),
        );
        assert!(r.headers.contains(&("Priority", "high".into())));
        assert!(
            r.headers
                .contains(&("Title", "living-room: timed_out".into()))
        );
        let r = render(
            NotifyFormat::Ntfy,
            &Notice::new(NotifyOn::Recovered, record(Outcome::Completed), Some(1)),
        );
        assert!(r.headers.contains(&("Priority", "default".into())));
    }
}
