//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Written by hand: a dozen families, label values limited to server names (which the
//! config restricts to `[a-z0-9_-]`) and outcome words, so a metrics crate would add more
//! than it saves. Label values are escaped anyway.

use crate::daemon::status::{DURATION_BUCKETS, StatusBoard};
use crate::record::Outcome;
use std::fmt::Write;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// The whole exposition.
pub fn render(status: &StatusBoard) -> String {
    let servers = status.servers();
    let mut out = String::new();

    family(
        &mut out,
        "jellyfin_export_build_info",
        "gauge",
        "Build information; always 1.",
    );
    let _ = writeln!(
        out,
        "jellyfin_export_build_info{{version=\"{}\"}} 1",
        escape(crate::record::SCHEDULER_VERSION)
    );

    family(
        &mut out,
        "jellyfin_export_runs_total",
        "counter",
        "Runs recorded since the daemon started, by server and outcome.",
    );
    for s in &servers {
        for o in Outcome::ALL {
            let n = s.runs_total.get(&o).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "jellyfin_export_runs_total{{server=\"{}\",outcome=\"{}\"}} {n}",
                escape(&s.name),
                o.as_str()
            );
        }
    }

    family(
        &mut out,
        "jellyfin_export_run_duration_seconds",
        "histogram",
        "Duration of recorded runs (Jellyfin's start to end when known), skips excluded.",
    );
    for s in &servers {
        let name = escape(&s.name);
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "jellyfin_export_run_duration_seconds_bucket{{server=\"{name}\",le=\"{bound}\"}} {}",
                s.duration_buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "jellyfin_export_run_duration_seconds_bucket{{server=\"{name}\",le=\"+Inf\"}} {}",
            s.duration_buckets[DURATION_BUCKETS.len()]
        );
        let _ = writeln!(
            out,
            "jellyfin_export_run_duration_seconds_sum{{server=\"{name}\"}} {}",
            s.duration_sum_seconds
        );
        let _ = writeln!(
            out,
            "jellyfin_export_run_duration_seconds_count{{server=\"{name}\"}} {}",
            s.duration_count
        );
    }

    family(
        &mut out,
        "jellyfin_export_last_run_timestamp_seconds",
        "gauge",
        "When the last run with this outcome ended (Unix time), from the history.",
    );
    for s in &servers {
        for (o, t) in &s.last_by_outcome {
            let _ = writeln!(
                out,
                "jellyfin_export_last_run_timestamp_seconds{{server=\"{}\",outcome=\"{}\"}} {}",
                escape(&s.name),
                o.as_str(),
                ts(*t)
            );
        }
    }

    family(
        &mut out,
        "jellyfin_export_last_success_timestamp_seconds",
        "gauge",
        "When the last completed (verified) export ended (Unix time); 0 if never.",
    );
    for s in &servers {
        let _ = writeln!(
            out,
            "jellyfin_export_last_success_timestamp_seconds{{server=\"{}\"}} {}",
            escape(&s.name),
            s.last_success.map_or_else(|| "0".to_owned(), ts)
        );
    }

    family(
        &mut out,
        "jellyfin_export_next_run_timestamp_seconds",
        "gauge",
        "When the next export is due, jitter included (Unix time).",
    );
    for s in &servers {
        if let Some(due) = s.next_due {
            let _ = writeln!(
                out,
                "jellyfin_export_next_run_timestamp_seconds{{server=\"{}\"}} {}",
                escape(&s.name),
                ts(due)
            );
        }
    }

    family(
        &mut out,
        "jellyfin_export_running",
        "gauge",
        "1 while a run of the server is being tracked (or waits for a slot).",
    );
    for s in servers.iter().filter(|s| s.configured && s.enabled) {
        let running = s.running.is_some();
        let _ = writeln!(
            out,
            "jellyfin_export_running{{server=\"{}\"}} {}",
            escape(&s.name),
            u8::from(running)
        );
    }

    family(
        &mut out,
        "jellyfin_export_server_up",
        "gauge",
        "1 if the last request to the server got a sensible answer, 0 if not; absent before the first contact.",
    );
    for s in &servers {
        if let Some(up) = s.up {
            let _ = writeln!(
                out,
                "jellyfin_export_server_up{{server=\"{}\"}} {}",
                escape(&s.name),
                u8::from(up)
            );
        }
    }

    let (ok, at) = status.reload();
    family(
        &mut out,
        "jellyfin_export_config_reload_success",
        "gauge",
        "1 if the last config load or reload succeeded, 0 if the last reload was refused.",
    );
    let _ = writeln!(
        out,
        "jellyfin_export_config_reload_success {}",
        u8::from(ok)
    );
    family(
        &mut out,
        "jellyfin_export_config_reload_success_timestamp_seconds",
        "gauge",
        "When the config in force was loaded (Unix time).",
    );
    let _ = writeln!(
        out,
        "jellyfin_export_config_reload_success_timestamp_seconds {}",
        at.map_or_else(|| "0".to_owned(), ts)
    );
    out
}
