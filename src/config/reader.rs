//! Reading typed values out of a spanned TOML table while collecting every problem.
//!
//! serde stops at the first error; a user fixing a config wants all of them at once, each
//! with its line, column and key path. So the config is walked by hand over toml's
//! `DeTable`, which keeps a byte span for every key and value. Each accessor here gives a
//! [`Read`]: the value, `None` when the key is absent, or `Err(`[`Reported`]`)` after
//! recording the [`Problem`] in [`Problems`]; the walk goes on either way.

use super::problem::{LineIndex, Loc, Located, Problem, Problems, Reported};
use std::time::Duration;
use toml::de::{DeTable, DeValue};

/// What a read of one key gives: `Ok(None)` when the table does not have the key,
/// `Ok(Some(value))`, or `Err` when the value is unusable (and reported).
pub type Read<T> = Result<Option<T>, Reported>;

/// The longest string value read from a config. Real values (paths, URLs, filters) are far
/// shorter; a bound keeps a megabytes-long value from reaching validators and messages that
/// quote it or do work per character.
pub const MAX_STRING_BYTES: usize = 4096;

/// `s` cut to at most `max` characters, with `…` when cut: for quoting hostile input.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// One TOML table (or an absent one) with its key path.
pub struct TableReader<'a> {
    idx: &'a LineIndex<'a>,
    path: String,
    table: Option<&'a DeTable<'a>>,
    offset: usize,
}

/// A TOML value with its byte span.
type TomlValue<'a> = toml::Spanned<DeValue<'a>>;

impl<'a> TableReader<'a> {
    pub fn root(idx: &'a LineIndex<'a>, table: &'a DeTable<'a>) -> Self {
        TableReader {
            idx,
            path: String::new(),
            table: Some(table),
            offset: 0,
        }
    }

    /// A table the file does not have: every read finds nothing.
    pub fn empty(idx: &'a LineIndex<'a>, path: &str) -> Self {
        TableReader {
            idx,
            path: path.to_owned(),
            table: None,
            offset: idx.len(),
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&'a str, usize, &'a TomlValue<'a>)> + 'a {
        self.table
            .into_iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.get_ref().as_ref(), k.span().start, v))
    }

    pub fn get(&self, key: &str) -> Option<&'a TomlValue<'a>> {
        self.entries()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| v)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn loc_at(&self, offset: usize, path: String) -> Loc {
        self.idx.loc(offset, path)
    }

    /// Where a key's value is, or the table itself when the key is absent.
    pub fn key_location(&self, key: &str) -> Loc {
        let offset = self.get(key).map_or(self.offset, |v| v.span().start);
        self.loc_at(offset, self.child_path(key))
    }

    pub fn header_problem(&self, key: &str, message: String) -> Problem {
        self.loc_at(self.offset, self.child_path(key))
            .problem(message)
    }

    pub fn missing(&self, key: &str) -> Problem {
        self.header_problem(key, "missing; this key is required".into())
    }

    fn value_problem(&self, key: &str, v: &TomlValue<'_>, message: String) -> Problem {
        self.loc_at(v.span().start, self.child_path(key))
            .problem(message)
    }

    /// Report keys that are not in `known`. `forbidden` names groups of keys that exist
    /// elsewhere but not here, with the reason, so the message can say why.
    pub fn check_keys(
        &self,
        known: &[&str],
        forbidden: &[(&[&str], &str)],
        problems: &mut Problems,
    ) {
        for (key, offset, _) in self.entries() {
            if known.contains(&key) {
                continue;
            }
            let path = self.child_path(&shorten(key, 64));
            let message = if let Some((_, why)) = forbidden.iter().find(|(g, _)| g.contains(&key)) {
                format!("not allowed here: {key} {why}")
            } else {
                match closest(key, known) {
                    Some(s) => format!("unknown key; did you mean {s:?}?"),
                    None => format!("unknown key; expected one of: {}", known.join(", ")),
                }
            };
            problems.report(self.loc_at(offset, path).problem(message));
        }
    }

    pub fn table(&self, key: &str, problems: &mut Problems) -> Read<TableReader<'a>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => Ok(Some(TableReader {
                idx: self.idx,
                path: self.child_path(key),
                table: Some(t),
                offset: v.span().start,
            })),
            other => Err(problems.report(self.value_problem(
                key,
                v,
                format!("expected a table ([{key}]), found {}", type_name(other)),
            ))),
        }
    }

    /// The value at `key` and its elements, when it is an array (reported as "expected
    /// `expected`" when it is not).
    fn array(
        &self,
        key: &str,
        expected: &str,
        problems: &mut Problems,
    ) -> Read<(&'a TomlValue<'a>, &'a toml::de::DeArray<'a>)> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Array(items) => Ok(Some((v, items))),
            other => Err(problems.report(self.value_problem(
                key,
                v,
                format!("expected {expected}, found {}", type_name(other)),
            ))),
        }
    }

    /// The tables of `[[key]]`. An element that is not a table is reported and left out.
    pub fn array_of_tables(
        &self,
        key: &str,
        problems: &mut Problems,
    ) -> Read<Vec<TableReader<'a>>> {
        let expected = format!("an array of tables ([[{key}]])");
        let Some((_, items)) = self.array(key, &expected, problems)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.child_path(key));
            match item.get_ref() {
                DeValue::Table(t) => out.push(TableReader {
                    idx: self.idx,
                    path,
                    table: Some(t),
                    offset: item.span().start,
                }),
                other => {
                    problems.report(
                        self.loc_at(item.span().start, path)
                            .problem(format!("expected a table, found {}", type_name(other))),
                    );
                }
            }
        }
        Ok(Some(out))
    }

    /// The value at `key` converted by `f`, which says `None` for a value of another type
    /// (reported as "expected `expected`"). A string longer than [`MAX_STRING_BYTES`] is
    /// refused before `f` sees it.
    fn typed<T>(
        &self,
        key: &str,
        problems: &mut Problems,
        expected: &str,
        f: impl FnOnce(&DeValue<'_>) -> Option<T>,
    ) -> Read<(T, &'a TomlValue<'a>)> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Some(s) = v.get_ref().as_str()
            && s.len() > MAX_STRING_BYTES
        {
            return Err(problems.report(self.value_problem(
                key,
                v,
                format!(
                    "a string of {} bytes (\"{}\"); a value may have at most {MAX_STRING_BYTES}",
                    s.len(),
                    shorten(s, 16)
                ),
            )));
        }
        match f(v.get_ref()) {
            Some(t) => Ok(Some((t, v))),
            None => Err(problems.report(self.value_problem(
                key,
                v,
                format!("expected {expected}, found {}", type_name(v.get_ref())),
            ))),
        }
    }

    fn locate<T>(&self, key: &str, v: &TomlValue<'_>, value: T) -> Located<T> {
        Located {
            value,
            loc: self.loc_at(v.span().start, self.child_path(key)),
        }
    }

    pub fn string(&self, key: &str, problems: &mut Problems) -> Read<Located<String>> {
        let read = self.typed(key, problems, "a string", |v| v.as_str().map(str::to_owned))?;
        Ok(read.map(|(s, v)| self.locate(key, v, s)))
    }

    /// A string the table must have: absent is a problem too.
    pub fn required_string(
        &self,
        key: &str,
        problems: &mut Problems,
    ) -> Result<Located<String>, Reported> {
        match self.string(key, problems)? {
            Some(s) => Ok(s),
            None => Err(problems.report(self.missing(key))),
        }
    }

    pub fn bool(&self, key: &str, problems: &mut Problems) -> Read<bool> {
        let read = self.typed(key, problems, "true or false", |v| v.as_bool())?;
        Ok(read.map(|(b, _)| b))
    }

    /// An integer in `[min, max]`.
    pub fn bounded_int(&self, key: &str, min: u64, max: u64, problems: &mut Problems) -> Read<u64> {
        let Some((raw, v)) = self.typed(key, problems, "an integer", |v| {
            v.as_integer()
                .map(|i| i64::from_str_radix(i.as_str(), i.radix()).ok())
        })?
        else {
            return Ok(None);
        };
        match raw.and_then(|n| u64::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(problems.report(self.value_problem(
                key,
                v,
                format!("must be between {min} and {max}"),
            ))),
        }
    }

    pub fn positive_int(&self, key: &str, max: u64, problems: &mut Problems) -> Read<u64> {
        self.bounded_int(key, 1, max, problems)
    }

    pub fn located_duration(&self, key: &str, problems: &mut Problems) -> Read<Located<Duration>> {
        let Some((s, v)) = self.typed(
            key,
            problems,
            "a duration string like \"90s\" or \"1h 30m\"",
            |v| v.as_str().map(str::to_owned),
        )?
        else {
            return Ok(None);
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Ok(Some(self.locate(key, v, d))),
            Err(e) => Err(problems.report(self.value_problem(
                key,
                v,
                format!(
                    "invalid duration {s:?} ({e}); write it like \"90s\", \"5m\" or \"1h 30m\""
                ),
            ))),
        }
    }

    /// A duration that must be above zero (`"0s"` is reported).
    pub fn nonzero_duration(&self, key: &str, problems: &mut Problems) -> Read<Located<Duration>> {
        match self.located_duration(key, problems)? {
            Some(d) if d.value.is_zero() => {
                Err(problems.report(d.problem("must be greater than zero".into())))
            }
            d => Ok(d),
        }
    }

    pub fn duration(&self, key: &str, problems: &mut Problems) -> Read<Duration> {
        Ok(self.located_duration(key, problems)?.map(|d| d.value))
    }

    /// An array of strings, each with its own place (`key[i]`), so a bad element is
    /// pointed at itself. Every element of another type is reported.
    pub fn string_array(
        &self,
        key: &str,
        problems: &mut Problems,
    ) -> Read<Located<Vec<Located<String>>>> {
        let Some((v, items)) = self.array(key, "an array of strings", problems)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut failed = None;
        for (i, item) in items.iter().enumerate() {
            let loc = self.loc_at(item.span().start, format!("{}[{i}]", self.child_path(key)));
            match item.get_ref().as_str() {
                Some(s) => out.push(Located {
                    value: s.to_owned(),
                    loc,
                }),
                None => {
                    failed = Some(problems.report(loc.problem(format!(
                        "expected a string, found {}",
                        type_name(item.get_ref())
                    ))));
                }
            }
        }
        match failed {
            Some(reported) => Err(reported),
            None => Ok(Some(self.locate(key, v, out))),
        }
    }

    /// One of a fixed set of strings.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
        problems: &mut Problems,
    ) -> Read<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let expected = format!("one of {}", quoted_list(&names));
        let Some((s, v)) =
            self.typed(key, problems, &expected, |v| v.as_str().map(str::to_owned))?
        else {
            return Ok(None);
        };
        match options.iter().find(|(n, _)| *n == s) {
            Some((_, t)) => Ok(Some(*t)),
            None => {
                Err(problems.report(self.value_problem(key, v, format!("{s:?} is not {expected}"))))
            }
        }
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The known key nearest to a misspelt one, if it is near enough to be a likely typo.
pub(super) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let len = lower.chars().count();
    // The distance is at least the difference in length: skipping those keeps a
    // megabytes-long key from costing seconds of quadratic work.
    known
        .iter()
        .filter(|k| len.abs_diff(k.len()) <= 2.max(k.len() / 4))
        .map(|k| (strsim::levenshtein(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// A `DeValue`'s type in words, for "expected a string, found an integer".
pub(super) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_and_camel_case() {
        let known = ["poll_interval", "timeout", "schedule"];
        assert_eq!(closest("pollInterval", &known), Some("poll_interval"));
        assert_eq!(closest("shedule", &known), Some("schedule"));
        assert_eq!(closest("frobnicate", &known), None);
    }
}
