//! `/`: a status page for people. Server-rendered HTML with inline CSS, no scripts and no
//! external assets (it must work on a LAN without internet); it refreshes itself.

use crate::daemon::status::{ServerView, StatusBoard};
use crate::record::{Outcome, RunRecord};
use crate::record::{format_bytes, format_duration};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Seconds between the page's own refreshes.
pub const REFRESH_SECONDS: u32 = 15;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The CSS class (and colour) of an outcome: good, bad, odd, or quiet.
fn class(o: Outcome) -> &'static str {
    match o {
        Outcome::Completed => "ok",
        Outcome::Failed
        | Outcome::TimedOut
        | Outcome::Lost
        | Outcome::TriggerFailed
        | Outcome::Interrupted => "bad",
        Outcome::Aborted | Outcome::Cancelled => "odd",
        Outcome::Skipped => "quiet",
    }
}

fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    let (secs, future) = if d.num_seconds() >= 0 {
        (d.num_seconds(), true)
    } else {
        (-d.num_seconds(), false)
    };
    let text = if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86_400 {
        format!("{}h {}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{}d {}h", secs / 86_400, (secs % 86_400) / 3600)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

fn local(t: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => t
            .with_timezone(&z)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => t.format("%a %Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn strip(recent: &std::collections::VecDeque<Box<RunRecord>>) -> String {
    let mut s = String::new();
    for r in recent {
        let _ = write!(
            s,
            "<span class=\"cell {}\" title=\"{} {}{}\"></span>",
            class(r.outcome),
            esc(&r.triggered_at.format("%Y-%m-%d %H:%M").to_string()),
            r.outcome,
            r.reason
                .as_deref()
                .map(|x| format!(": {}", esc(x)))
                .unwrap_or_default()
        );
    }
    s
}

/// The newest archived export among the recent runs (size and users), and what the
/// server's archive folder holds; "—" when the server does not archive.
fn export_cell(v: &ServerView) -> String {
    let Some(folder) = &v.archive else {
        return "—".into();
    };
    let last = v
        .recent
        .iter()
        .rev()
        .find_map(|r| r.archive_bytes.map(|b| (b, r.export_users)));
    let last = match last {
        Some((bytes, users)) => format!(
            "{}{}",
            format_bytes(bytes),
            users
                .map(|n| format!(", {n} user{}", if n == 1 { "" } else { "s" }))
                .unwrap_or_default()
        ),
        None => "—".into(),
    };
    format!(
        "{last}<br><small>archive: {} file{}, {}</small>",
        folder.files,
        if folder.files == 1 { "" } else { "s" },
        format_bytes(folder.bytes)
    )
}

fn row(out: &mut String, v: &ServerView, now: DateTime<Utc>) {
    let next = match v.next_due {
        Some(t) if v.enabled => format!(
            "{}<br><small>{}</small>",
            esc(&local(t, &v.timezone)),
            relative(t, now)
        ),
        _ if !v.enabled => "<small>disabled</small>".to_owned(),
        _ => "—".to_owned(),
    };
    let running = v.running.as_ref().map(|r| {
        format!(
            "<div class=\"running\">running {}{} since {}</div>",
            esc(&r.state),
            r.percent.map(|p| format!(" {p:.0}%")).unwrap_or_default(),
            relative(r.since, now)
        )
    });
    let (outcome, reason, duration) = match v.recent.back() {
        Some(r) => (
            format!(
                "<span class=\"badge {}\">{}</span><br><small>{}</small>",
                class(r.outcome),
                r.outcome,
                relative(r.finished_at.unwrap_or(r.triggered_at), now)
            ),
            r.reason.as_deref().map(esc).unwrap_or_default(),
            r.duration_ms
                .map(format_duration)
                .unwrap_or_else(|| "—".into()),
        ),
        None => (
            "<small>no runs yet</small>".to_owned(),
            String::new(),
            "—".into(),
        ),
    };
    let _ = writeln!(
        out,
        "<tr data-server=\"{name}\"><td class=\"name\">{name}<br><small>{sched} ({tz})</small></td><td>{next}</td><td class=\"outcome\">{outcome}{running}</td><td>{duration}</td><td class=\"export\">{export}</td><td class=\"reason\">{reason}</td><td class=\"strip\">{strip}</td></tr>",
        name = esc(&v.name),
        sched = esc(&v.schedule),
        tz = esc(&v.timezone),
        running = running.unwrap_or_default(),
        strip = strip(&v.recent),
        export = export_cell(v),
    );
}

/// The whole page.
pub fn render(status: &StatusBoard) -> String {
    let now = Utc::now();
    let views: Vec<ServerView> = status
        .servers()
        .into_iter()
        .filter(|v| v.configured)
        .collect();
    let failing = views
        .iter()
        .filter(|v| v.recent.back().is_some_and(|r| class(r.outcome) == "bad"))
        .count();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1d2228;background:#f6f7f9}}
h1{{font-size:1.3em;margin:0 0 .2em}} .sub{{color:#5b6470;margin-bottom:1em}}
table{{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}}
th,td{{text-align:left;padding:.55em .7em;border-bottom:1px solid #e3e6ea;vertical-align:top}}
th{{background:#eef0f3;font-weight:600}} small{{color:#5b6470}} td.name{{font-weight:600}}
.badge{{display:inline-block;padding:.05em .5em;border-radius:.7em;color:#fff;font-weight:600}}
.ok{{background:#2e8b57}} .bad{{background:#c0392b}} .odd{{background:#d68910}} .quiet{{background:#95a0ab}}
.cell{{display:inline-block;width:10px;height:18px;margin-right:2px;border-radius:2px}}
.reason{{max-width:32em;color:#3a4048}} .running{{margin-top:.3em;color:#1f5fa8;font-weight:600}}
</style></head><body>
<h1>jellyfin-export-scheduler</h1>
<div class="sub">{n} server{s}, {failing} failing{leader} · version {version} · {now} · refreshes every {REFRESH_SECONDS}s</div>
<table><thead><tr><th>Server</th><th>Next export</th><th>Last outcome</th><th>Duration</th><th>Last export</th><th>Reason</th><th>Last {recent} runs (oldest → newest)</th></tr></thead><tbody>
"#,
        title = if failing > 0 {
            format!("({failing} failing) Jellyfin exports")
        } else {
            "Jellyfin exports".to_owned()
        },
        n = views.len(),
        s = if views.len() == 1 { "" } else { "s" },
        version = crate::record::SCHEDULER_VERSION,
        now = now.format("%Y-%m-%d %H:%M:%S UTC"),
        recent = crate::daemon::status::RECENT,
        // PostgreSQL: which instance leads (this one, or the one named).
        leader = status
            .leader()
            .map(|l| format!(" · this instance is {}", esc(&l.to_string())))
            .unwrap_or_default(),
    );
    for v in &views {
        row(&mut out, v, now);
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}
