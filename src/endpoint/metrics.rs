//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Written by hand: a dozen families, label values limited to server names (which the
//! config restricts to `[a-z0-9_-]`) and outcome words, so a metrics crate would add more
//! than it saves. Label values are escaped anyway.
//!
//! [`FAMILIES`] is the whole exposition: each family's name, type and help, and how its
//! samples are read, from the daemon as a whole or from each server's view. `render` only
//! walks it, so adding a metric is adding a row (and a line in `docs/monitoring.md`).

use crate::daemon::status::{DURATION_BUCKETS, Leader, ServerView, StatusBoard};
use crate::record::Outcome;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// One metric family.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    samples: Samples,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Where a family's samples come from.
enum Samples {
    /// The daemon as a whole.
    Daemon(fn(&Daemon) -> Vec<Sample>),
    /// Each server the board knows, in name order; each sample gets its `server` label
    /// first.
    Server(fn(&ServerView) -> Vec<Sample>),
}

/// What the daemon-wide families read.
struct Daemon {
    /// The last config load or reload succeeded.
    reload_ok: bool,
    /// When the config in force was loaded.
    loaded_at: Option<DateTime<Utc>>,
    /// PostgreSQL: where this instance stands (`None` with files: no samples).
    leader: Option<Leader>,
}

/// One line of a family: a suffix of its name (`_bucket`, `_sum`, or none), its labels
/// (after `server`), its value as written.
struct Sample {
    suffix: &'static str,
    labels: Vec<(&'static str, String)>,
    value: String,
}

impl Sample {
    fn new(value: impl ToString) -> Sample {
        Sample {
            suffix: "",
            labels: Vec::new(),
            value: value.to_string(),
        }
    }

    fn label(mut self, name: &'static str, value: impl Into<String>) -> Sample {
        self.labels.push((name, value.into()));
        self
    }

    fn suffix(mut self, suffix: &'static str) -> Sample {
        self.suffix = suffix;
        self
    }
}

/// Every family, in the order exposed.
const FAMILIES: &[Family] = &[
    Family {
        name: "jellyfin_export_build_info",
        kind: Kind::Gauge,
        help: "Build information; always 1.",
        samples: Samples::Daemon(|_| {
            vec![Sample::new(1).label("version", crate::record::SCHEDULER_VERSION)]
        }),
    },
    Family {
        name: "jellyfin_export_runs_total",
        kind: Kind::Counter,
        help: "Runs recorded since the daemon started, by server and outcome.",
        samples: Samples::Server(|s| {
            Outcome::ALL
                .iter()
                .map(|o| {
                    Sample::new(s.runs_total.get(o).copied().unwrap_or(0))
                        .label("outcome", o.as_str())
                })
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_run_duration_seconds",
        kind: Kind::Histogram,
        help: "Duration of recorded runs (Jellyfin's start to end when known), skips excluded.",
        samples: Samples::Server(duration_histogram),
    },
    Family {
        name: "jellyfin_export_last_run_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last run with this outcome ended (Unix time), from the history.",
        samples: Samples::Server(|s| {
            s.last_by_outcome
                .iter()
                .map(|(o, t)| Sample::new(seconds(*t)).label("outcome", o.as_str()))
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last completed (verified) export ended (Unix time); 0 if never.",
        samples: Samples::Server(|s| vec![Sample::new(seconds_or_zero(s.last_success))]),
    },
    Family {
        name: "jellyfin_export_next_run_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the next export is due, jitter included (Unix time).",
        samples: Samples::Server(|s| {
            s.next_due
                .map(|t| Sample::new(seconds(t)))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_running",
        kind: Kind::Gauge,
        help: "1 while a run of the server is being tracked (or waits for a slot).",
        samples: Samples::Server(|s| {
            (s.configured && s.enabled)
                .then(|| Sample::new(u8::from(s.running.is_some())))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_server_up",
        kind: Kind::Gauge,
        help: "1 if the last request to the server got a sensible answer, 0 if not; absent before the first contact.",
        samples: Samples::Server(|s| {
            s.up.map(|up| Sample::new(u8::from(up)))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_archive_bytes",
        kind: Kind::Gauge,
        help: "Bytes in the server's archive folder (its archived exports); absent when the server does not archive.",
        samples: Samples::Server(|s| {
            s.archive
                .as_ref()
                .map(|a| Sample::new(a.bytes))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_archive_files",
        kind: Kind::Gauge,
        help: "Archived exports in the server's archive folder; absent when the server does not archive.",
        samples: Samples::Server(|s| {
            s.archive
                .as_ref()
                .map(|a| Sample::new(a.files))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_archive_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the server's newest archived export was written (Unix time); 0 if none; absent when the server does not archive.",
        samples: Samples::Server(|s| {
            s.archive
                .as_ref()
                .map(|a| Sample::new(seconds_or_zero(a.newest_written)))
                .into_iter()
                .collect()
        }),
    },
    Family {
        name: "jellyfin_export_config_reload_success",
        kind: Kind::Gauge,
        help: "1 if the last config load or reload succeeded, 0 if the last reload was refused.",
        samples: Samples::Daemon(|d| vec![Sample::new(u8::from(d.reload_ok))]),
    },
    Family {
        name: "jellyfin_export_config_reload_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the config in force was loaded (Unix time).",
        samples: Samples::Daemon(|d| vec![Sample::new(seconds_or_zero(d.loaded_at))]),
    },
    Family {
        name: "jellyfin_export_leader",
        kind: Kind::Gauge,
        help: "PostgreSQL backend: 1 while this instance leads (holds a trusted lease), else 0.",
        samples: Samples::Daemon(|d| match &d.leader {
            Some(Leader::Leading { .. }) => vec![Sample::new(1)],
            Some(Leader::Following { .. }) => vec![Sample::new(0)],
            None => Vec::new(),
        }),
    },
    Family {
        name: "jellyfin_export_lease_epoch",
        kind: Kind::Gauge,
        help: "PostgreSQL backend: the lease epoch of the instance that leads, as this instance knows it (0: none).",
        samples: Samples::Daemon(|d| match &d.leader {
            Some(Leader::Leading { epoch })
            | Some(Leader::Following {
                leader: Some((_, epoch)),
            }) => vec![Sample::new(*epoch)],
            Some(Leader::Following { leader: None }) => vec![Sample::new(0)],
            None => Vec::new(),
        }),
    },
];

/// A histogram's cumulative buckets (`le`), then `+Inf`, the sum and the count.
fn duration_histogram(s: &ServerView) -> Vec<Sample> {
    let mut samples: Vec<Sample> = DURATION_BUCKETS
        .iter()
        .zip(&s.duration_buckets)
        .map(|(bound, n)| {
            Sample::new(n)
                .suffix("_bucket")
                .label("le", bound.to_string())
        })
        .collect();
    samples.push(
        Sample::new(s.duration_buckets[DURATION_BUCKETS.len()])
            .suffix("_bucket")
            .label("le", "+Inf"),
    );
    samples.push(Sample::new(s.duration_sum_seconds).suffix("_sum"));
    samples.push(Sample::new(s.duration_count).suffix("_count"));
    samples
}

/// The whole exposition.
pub fn render(status: &StatusBoard) -> String {
    let servers = status.servers();
    let (reload_ok, loaded_at) = status.reload();
    let daemon = Daemon {
        reload_ok,
        loaded_at,
        leader: status.leader(),
    };
    let mut out = String::new();
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        match family.samples {
            Samples::Daemon(read) => {
                for sample in read(&daemon) {
                    write_sample(&mut out, family.name, None, &sample);
                }
            }
            Samples::Server(read) => {
                for server in &servers {
                    for sample in read(server) {
                        write_sample(&mut out, family.name, Some(&server.name), &sample);
                    }
                }
            }
        }
    }
    out
}

/// `name_suffix{server="…",label="…"} value`.
fn write_sample(out: &mut String, name: &str, server: Option<&str>, sample: &Sample) {
    let labels: Vec<String> = server
        .map(|s| ("server", s))
        .into_iter()
        .chain(sample.labels.iter().map(|(k, v)| (*k, v.as_str())))
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", labels.join(","))
    };
    let _ = writeln!(out, "{name}{}{labels} {}", sample.suffix, sample.value);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unix time with milliseconds.
fn seconds(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

fn seconds_or_zero(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "0".to_owned(), seconds)
}
