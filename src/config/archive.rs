//! `[archive]`, and the `archive` table of `[defaults]` and of each `[[servers]]` entry:
//! where verified exports are kept, how many, encrypted to whom.
//!
//! The three tables take the same keys ([`ARCHIVE_KEYS`]). A server's value of each key
//! is its own table's, else `[defaults.archive]`'s, else `[archive]`'s, else the built-in
//! default. The recipients are one setting: a table that sets `encrypt_to` or
//! `encrypt_to_file` (or both, which adds them up) decides them for the servers it
//! covers, and `encrypt_to = []` turns encryption off below one that set it. Recipients
//! are public keys, parsed here, so a typo fails the load and not the first run.

use super::env::{Load, expand_path};
use super::problem::{Problems, Reported};
use super::reader::{Read, TableReader};
use crate::archive::ArchiveSettings;
use crate::archive::encrypt::{Recipient, Recipients, parse_recipients_file};
use crate::archive::retention::Retention;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

/// The keys of an archive table, in the order an "expected one of" message lists them.
pub(super) const ARCHIVE_KEYS: &[&str] = &[
    "enabled",
    "dir",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_within",
    "encrypt_to",
    "encrypt_to_file",
];

/// The `keep_*` counts, in [`Retention`]'s order.
const COUNTS: [&str; 4] = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"];
/// More than anyone keeps; a bound so a typo (an extra zero or ten) is caught.
const MAX_COUNT: u64 = 100_000;
/// A recipients file is a few lines.
const MAX_RECIPIENTS_FILE: u64 = 1024 * 1024;

/// What one table says about each key: absent, set, or reported.
pub(super) struct Layer {
    /// The table itself is of the wrong type (reported).
    table: Result<(), Reported>,
    enabled: Read<bool>,
    dir: Read<PathBuf>,
    counts: [Read<u32>; 4],
    keep_within: Read<Duration>,
    recipients: Read<Recipients>,
}

impl Layer {
    fn empty(table: Result<(), Reported>) -> Layer {
        Layer {
            table,
            enabled: Ok(None),
            dir: Ok(None),
            counts: [Ok(None); 4],
            keep_within: Ok(None),
            recipients: Ok(None),
        }
    }

    /// The `archive` table under `parent` (the document's root, `[defaults]` or a
    /// server's table), or an empty layer when there is none.
    pub(super) fn of(parent: &TableReader<'_>, load: &Load<'_>, problems: &mut Problems) -> Layer {
        match parent.table("archive", problems) {
            Ok(Some(t)) => Layer::read(&t, load, problems),
            Ok(None) => Layer::empty(Ok(())),
            Err(reported) => Layer::empty(Err(reported)),
        }
    }

    fn read(t: &TableReader<'_>, load: &Load<'_>, problems: &mut Problems) -> Layer {
        t.check_keys(ARCHIVE_KEYS, &[], problems);
        let dir = match t.string("dir", problems) {
            Ok(Some(s)) if s.value.trim().is_empty() => Err(problems.report(
                s.problem("must not be empty; leave dir out for <state_dir>/archive".into()),
            )),
            Ok(Some(s)) => problems
                .check(expand_path(&s, load.path.parent(), load.env))
                .map(Some),
            other => other.map(|_| None),
        };
        Layer {
            table: Ok(()),
            enabled: t.bool("enabled", problems),
            dir,
            counts: COUNTS.map(|key| {
                // At most MAX_COUNT, so it fits.
                t.bounded_int(key, 0, MAX_COUNT, problems)
                    .map(|n| n.map(|n| n as u32))
            }),
            keep_within: t
                .nonzero_duration("keep_within", problems)
                .map(|d| d.map(|d| d.value)),
            recipients: read_recipients(t, load, problems),
        }
    }
}

/// `encrypt_to` and `encrypt_to_file` of one table, added up; `None` when neither is set.
fn read_recipients(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Read<Recipients> {
    let listed = t.string_array("encrypt_to", problems).and_then(|list| {
        let Some(list) = list else { return Ok(None) };
        let mut out = Vec::new();
        let mut failed = None;
        for item in &list.value {
            match Recipient::parse(&item.value) {
                Ok(r) => out.push(r),
                Err(e) => failed = Some(problems.report(item.problem(e))),
            }
        }
        failed.map_or(Ok(Some(out)), Err)
    });
    let from_file = t.string("encrypt_to_file", problems).and_then(|s| {
        let Some(s) = s else { return Ok(None) };
        let path = problems.check(expand_path(&s, load.path.parent(), load.env))?;
        let text = read_small(&path).map_err(|e| {
            problems.report(s.problem(format!(
                "cannot read the recipients file {}: {e}",
                path.display()
            )))
        })?;
        match parse_recipients_file(&text) {
            Ok(list) if list.is_empty() => Err(problems.report(s.problem(format!(
                "the recipients file {} holds no recipient (one age1… or ssh- key per line)",
                path.display()
            )))),
            Ok(list) => Ok(Some(list)),
            Err((line, e)) => {
                Err(problems.report(s.problem(format!("{}:{line}: {e}", path.display()))))
            }
        }
    });
    match (listed?, from_file?) {
        (None, None) => Ok(None),
        (a, b) => Ok(Some(Recipients::new(
            a.into_iter().chain(b).flatten().collect(),
        ))),
    }
}

fn read_small(path: &std::path::Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_RECIPIENTS_FILE)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// A server's archive settings from its layer, `[defaults.archive]` and `[archive]`,
/// most specific first.
pub(super) fn resolve(layers: [&Layer; 3]) -> Result<ArchiveSettings, Reported> {
    for layer in layers {
        layer.table?;
    }
    let built_in = ArchiveSettings::default();
    let counts: Vec<Option<u32>> = (0..COUNTS.len())
        .map(|i| first(layers.map(|l| &l.counts[i])))
        .collect::<Result<_, _>>()?;
    Ok(ArchiveSettings {
        enabled: first(layers.map(|l| &l.enabled))?.unwrap_or(built_in.enabled),
        dir: first(layers.map(|l| &l.dir))?,
        retention: Retention {
            keep_last: counts[0],
            keep_daily: counts[1],
            keep_weekly: counts[2],
            keep_monthly: counts[3],
            keep_within: first(layers.map(|l| &l.keep_within))?,
        },
        recipients: first(layers.map(|l| &l.recipients))?.unwrap_or_default(),
    })
}

/// The first layer's value that is set; an invalid one (reported) is not replaced by a
/// lower layer's.
fn first<T: Clone>(reads: [&Read<T>; 3]) -> Result<Option<T>, Reported> {
    for read in reads {
        match read {
            Ok(None) => continue,
            Ok(Some(v)) => return Ok(Some(v.clone())),
            Err(reported) => return Err(*reported),
        }
    }
    Ok(None)
}
