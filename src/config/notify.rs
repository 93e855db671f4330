//! `[[notify]]` tables: webhook targets for finished runs.

use super::env::Load;
use super::model::{KeySource, NotifyFormat, NotifyOn, NotifyTarget};
use super::reader::{self, Problems, Reported, TableReader};
use super::secret_source::{SecretRead, WEBHOOK_URL_KEYS, parse_secret_url, read_secret_source};
use crate::record::Outcome;
use crate::secret::{Secret, redacted};
use std::time::Duration;

pub(super) const NOTIFY_KEYS: &[&str] = &[
    "url", "url_file", "url_env", "on", "servers", "format", "timeout", "retries",
];

pub(super) fn read_notify(
    t: &TableReader<'_>,
    server_names: &[String],
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<NotifyTarget, Reported> {
    let url = read_webhook_url(t, load, problems);
    let on = read_notify_on(t, problems);
    let servers = read_notify_servers(t, server_names, problems);
    let format = t.choice(
        "format",
        &[
            ("json", NotifyFormat::Json),
            ("ntfy", NotifyFormat::Ntfy),
            ("slack", NotifyFormat::Slack),
        ],
        problems,
    );
    let timeout = t
        .located_duration("timeout", problems)
        .and_then(|d| match d {
            None => Ok(Duration::from_secs(10)),
            Some(d) if d.value.is_zero() => {
                Err(problems.report(d.problem("must be greater than zero".into())))
            }
            Some(d) => Ok(d.value),
        });
    let retries = t.bounded_int("retries", 0, 100, problems);

    let (url, shown) = url?;
    Ok(NotifyTarget {
        url,
        shown,
        on: on?,
        servers: servers?,
        format: format?.unwrap_or(NotifyFormat::Json),
        timeout: timeout?,
        // At most 100, so it fits.
        retries: retries?.map_or(3, |n| n as u32),
    })
}

/// The webhook URL and what may be shown of it.
fn read_webhook_url(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<(Secret, String), Reported> {
    let (raw, source, loc) = match read_secret_source(t, &WEBHOOK_URL_KEYS, load, problems)? {
        SecretRead::Value(raw, source, loc) => (raw, source, loc),
        SecretRead::NotRead(source) => {
            return Ok((
                Secret::unresolved(),
                format!("the webhook URL from {} (not read)", url_origin(&source)),
            ));
        }
    };
    // A URL file usually ends with a newline; a URL never contains white space.
    let value = raw.trim();
    let from = url_origin(&source);
    if value.is_empty() {
        return Err(problems.report(loc.problem(format!("the webhook URL from {from} is empty"))));
    }
    let parsed = problems.check(parse_secret_url(
        value,
        &loc,
        &format!("the webhook URL from {from}"),
    ))?;
    Ok((Secret::new(value), redacted(&parsed)))
}

/// Where a webhook URL comes from, in words.
fn url_origin(source: &KeySource) -> String {
    match source {
        KeySource::Inline => "url".to_owned(),
        other => other.to_string(),
    }
}

fn read_notify_on(t: &TableReader<'_>, problems: &mut Problems) -> Result<Vec<NotifyOn>, Reported> {
    let Some(list) = t.string_array("on", problems)? else {
        return Ok(NotifyOn::DEFAULT.to_vec());
    };
    if list.value.is_empty() {
        return Err(problems.report(list.problem(
            "empty: this target would never be sent anything; list outcomes (or leave on out for the default), or remove the [[notify]] table".into(),
        )));
    }
    let names: Vec<&str> = Outcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain(["recovered"])
        .collect();
    let mut out: Vec<NotifyOn> = Vec::new();
    let mut failed = None;
    for item in &list.value {
        match NotifyOn::parse(item.value.trim()) {
            Some(on) => {
                if !out.contains(&on) {
                    out.push(on);
                }
            }
            None => {
                let hint = match reader::closest(&item.value, &names) {
                    Some(s) => format!("did you mean {s:?}?"),
                    None => format!("expected one of: {}", names.join(", ")),
                };
                failed = Some(problems.report(item.problem(format!(
                    "{:?} is not an outcome or \"recovered\"; {hint}",
                    item.value
                ))));
            }
        }
    }
    failed.map_or(Ok(out), Err)
}

fn read_notify_servers(
    t: &TableReader<'_>,
    server_names: &[String],
    problems: &mut Problems,
) -> Result<Option<Vec<String>>, Reported> {
    let Some(list) = t.string_array("servers", problems)? else {
        return Ok(None);
    };
    if list.value.is_empty() {
        return Err(problems.report(
            list.problem("empty: leave servers out to be told about every server".into()),
        ));
    }
    let known: Vec<&str> = server_names.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    let mut failed = None;
    for item in &list.value {
        if known.contains(&item.value.as_str()) {
            if !out.contains(&item.value) {
                out.push(item.value.clone());
            }
            continue;
        }
        let hint = match reader::closest(&item.value, &known) {
            Some(s) => format!("did you mean {s:?}?"),
            None => format!("servers in this file: {}", known.join(", ")),
        };
        failed = Some(problems.report(item.problem(format!(
            "no server named {:?} in this file; {hint}",
            item.value
        ))));
    }
    failed.map_or(Ok(Some(out)), Err)
}
