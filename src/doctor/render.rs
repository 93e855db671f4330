//! The report for people (one line per check, ✓ ! ✗ –, and for each ! and ✗ what to do)
//! or for machines (JSON, [`super::SCHEMA`]).

use super::{Check, Report, Status};
use std::fmt::Write;

/// The mark of a status, and its colour on a terminal.
fn mark(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Ok => ("✓", "\x1b[32m"),
        Status::Warn => ("!", "\x1b[33m"),
        Status::Fail => ("✗", "\x1b[31m"),
        Status::Skip => ("–", "\x1b[2m"),
    }
}

/// Text lines; `colour` only on a terminal without `NO_COLOR`.
pub fn text(report: &Report, colour: bool) -> String {
    let mut out = String::new();
    for server in &report.servers {
        let _ = writeln!(out, "{}  {}", server.name, server.url);
        checks(&mut out, &server.checks, colour);
        out.push('\n');
    }
    let _ = writeln!(out, "this machine");
    checks(&mut out, &report.local, colour);
    let c = report.counts;
    let _ = writeln!(
        out,
        "\n{} server{} checked: {} ok, {} warning{}, {} failed, {} skipped.",
        report.servers.len(),
        if report.servers.len() == 1 { "" } else { "s" },
        c.ok,
        c.warn,
        if c.warn == 1 { "" } else { "s" },
        c.fail,
        c.skip
    );
    out
}

fn checks(out: &mut String, checks: &[Check], colour: bool) {
    for check in checks {
        let (mark, on) = mark(check.status);
        let (on, off) = if colour { (on, "\x1b[0m") } else { ("", "") };
        let _ = writeln!(out, "  {on}{mark}{off} {:<14} {}", check.id, check.summary);
        if let Some(action) = &check.action {
            let _ = writeln!(out, "    {:<14} → {action}", "");
        }
    }
}

/// The JSON document, one line.
pub fn json(report: &Report) -> String {
    // Serialising plain data (strings, numbers, maps) cannot fail.
    serde_json::to_string(report).unwrap_or_default()
}
