//! `[[notify]]` tables: webhook targets for finished runs.

use super::env::Load;
use super::model::{KeySource, NotifyFormat, NotifyOn, NotifyTarget};
use super::problem::{Problems, Reported};
use super::reader::{self, Read, TableReader};
use super::secret_source::{SecretRead, WEBHOOK_URL_KEYS, parse_secret_url, read_secret_source};
use crate::record::Outcome;
use crate::secret::{Secret, redacted};
use std::time::Duration;

const NOTIFY_KEYS: &[&str] = &[
    WEBHOOK_URL_KEYS.inline,
    WEBHOOK_URL_KEYS.file,
    WEBHOOK_URL_KEYS.env,
    "on",
    "servers",
    "format",
    "timeout",
    "retries",
];

pub(super) fn read_notify(
    t: &TableReader<'_>,
    server_names: &[String],
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<NotifyTarget, Reported> {
    t.check_keys(NOTIFY_KEYS, &[], problems);
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
    let timeout = t.nonzero_duration("timeout", problems);
    let retries = t.bounded_int("retries", 0, 100, problems);

    let (url, shown) = url?;
    Ok(NotifyTarget {
        url,
        shown,
        on: on?,
        servers: servers?,
        format: format?.unwrap_or(NotifyFormat::Json),
        timeout: timeout?.map_or(Duration::from_secs(10), |d| d.value),
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
        KeySource::Inline => WEBHOOK_URL_KEYS.inline.to_owned(),
        other => other.to_string(),
    }
}

fn read_notify_on(t: &TableReader<'_>, problems: &mut Problems) -> Result<Vec<NotifyOn>, Reported> {
    let known: Vec<(&str, NotifyOn)> = Outcome::ALL
        .into_iter()
        .map(NotifyOn::Outcome)
        .chain([NotifyOn::Recovered])
        .map(|on| (on.as_str(), on))
        .collect();
    let on = NameList {
        key: "on",
        known: &known,
        trim: true,
        if_empty: "empty: this target would never be sent anything; list outcomes (or leave on out for the default), or remove the [[notify]] table",
        unknown: |name| format!("{name:?} is not an outcome or \"recovered\""),
        listed_as: "expected one of",
    }
    .read(t, problems)?;
    Ok(on.unwrap_or_else(|| NotifyOn::DEFAULT.to_vec()))
}

fn read_notify_servers(
    t: &TableReader<'_>,
    server_names: &[String],
    problems: &mut Problems,
) -> Read<Vec<String>> {
    let known: Vec<(&str, String)> = server_names
        .iter()
        .map(|name| (name.as_str(), name.clone()))
        .collect();
    NameList {
        key: "servers",
        known: &known,
        trim: false,
        if_empty: "empty: leave servers out to be told about every server",
        unknown: |name| format!("no server named {name:?} in this file"),
        listed_as: "servers in this file",
    }
    .read(t, problems)
}

/// A list of names from a known set (`on`'s outcomes, `servers`' server names), read into
/// what each name stands for: in the list's order, each once.
struct NameList<'k, T> {
    key: &'static str,
    known: &'k [(&'k str, T)],
    /// Whether white space around a name is ignored.
    trim: bool,
    /// Why an empty list is refused.
    if_empty: &'static str,
    /// What is wrong with a name that is not known (a hint follows).
    unknown: fn(&str) -> String,
    /// How the hint introduces the known names when none is close to a wrong one.
    listed_as: &'static str,
}

impl<T: Clone> NameList<'_, T> {
    /// Every name is checked, so that each unknown one is reported.
    fn read(&self, t: &TableReader<'_>, problems: &mut Problems) -> Read<Vec<T>> {
        let Some(list) = t.string_array(self.key, problems)? else {
            return Ok(None);
        };
        if list.value.is_empty() {
            return Err(problems.report(list.problem(self.if_empty.into())));
        }
        let names: Vec<&str> = self.known.iter().map(|(name, _)| *name).collect();
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        let mut failed = None;
        for item in &list.value {
            let wanted = if self.trim {
                item.value.trim()
            } else {
                &item.value
            };
            match self.known.iter().find(|(name, _)| *name == wanted) {
                Some((name, _)) if seen.contains(name) => {}
                Some((name, value)) => {
                    seen.push(name);
                    out.push(value.clone());
                }
                None => {
                    let hint = match reader::closest(&item.value, &names) {
                        Some(near) => format!("did you mean {near:?}?"),
                        None => format!("{}: {}", self.listed_as, names.join(", ")),
                    };
                    let what = (self.unknown)(&item.value);
                    failed = Some(problems.report(item.problem(format!("{what}; {hint}"))));
                }
            }
        }
        failed.map_or(Ok(Some(out)), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::problem::LineIndex;
    use toml::de::DeTable;

    fn read<T: Clone>(text: &str, list: &NameList<'_, T>) -> (Read<Vec<T>>, Vec<String>) {
        let idx = LineIndex::new(text);
        let doc = DeTable::parse(text).expect("test TOML");
        let mut problems = Problems::default();
        let read = list.read(&TableReader::root(&idx, doc.get_ref()), &mut problems);
        let messages = problems.into_sorted().into_iter().map(|p| p.message);
        (read, messages.collect())
    }

    #[test]
    fn a_name_list_keeps_order_drops_repeats_and_reports_each_unknown_name() {
        let known = [("living-room", 1), ("cabin", 2)];
        let mut list = NameList {
            key: "servers",
            known: &known,
            trim: false,
            if_empty: "empty",
            unknown: |name| format!("no {name:?}"),
            listed_as: "known",
        };
        let text = r#"servers = ["cabin", "living-room", "cabin"]"#;
        assert_eq!(read(text, &list), (Ok(Some(vec![2, 1])), vec![]));
        assert_eq!(read("", &list), (Ok(None), vec![]));
        assert_eq!(read("servers = []", &list).1, ["empty"]);

        let text = r#"servers = [" cabin", "livingroom", "zzz"]"#;
        let (read_list, messages) = read(text, &list);
        assert!(read_list.is_err());
        assert_eq!(
            messages,
            [
                "no \" cabin\"; did you mean \"cabin\"?",
                "no \"livingroom\"; did you mean \"living-room\"?",
                "no \"zzz\"; known: living-room, cabin",
            ]
        );
        list.trim = true;
        assert_eq!(read(r#"servers = [" cabin "]"#, &list).0, Ok(Some(vec![2])));
    }
}
