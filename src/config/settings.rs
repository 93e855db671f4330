//! The settings a `[[servers]]` entry sets itself or inherits from `[defaults]`.
//!
//! [`SETTINGS`] names each one with the kind of value it takes. That one table drives the
//! reading of `[defaults]` and of every server's table (each table read once, every problem
//! reported at its place), the unknown-key check of both, and inheritance: a server's
//! value is its own, else the one in `[defaults]`, else the built-in default, which
//! `server` gives where it uses the value.

use super::model::{CatchUp, IfRunning};
use super::problem::{Located, Problems, Reported};
use super::reader::{Read, TableReader};
use crate::timezone;
use chrono_tz::Tz;
use std::time::Duration;

/// Every setting and the kind of value it takes, in the order an "expected one of"
/// message lists them.
const SETTINGS: [(&str, Kind); 16] = [
    ("schedule", Kind::Text),
    ("enabled", Kind::Bool),
    ("timezone", Kind::Timezone),
    ("task_key", Kind::NonBlank),
    ("poll_interval", Kind::NonZeroDuration),
    ("timeout", Kind::NonZeroDuration),
    ("request_timeout", Kind::NonZeroDuration),
    ("retries", Kind::Int(0, 100)),
    ("retry_backoff", Kind::Duration),
    ("jitter", Kind::Duration),
    ("catch_up", Kind::CatchUp),
    ("catch_up_window", Kind::NonZeroDuration),
    ("if_running", Kind::IfRunning),
    ("history_limit", Kind::Int(1, 10_000_000)),
    ("start_grace", Kind::NonZeroDuration),
    ("verify_export", Kind::Bool),
];

/// The keys of [`SETTINGS`], for the unknown-key check.
pub(super) fn setting_keys() -> [&'static str; SETTINGS.len()] {
    SETTINGS.map(|(key, _)| key)
}

const CATCH_UP: [(&str, CatchUp); 2] = [("none", CatchUp::None), ("last", CatchUp::Last)];
const IF_RUNNING: [(&str, IfRunning); 2] =
    [("skip", IfRunning::Skip), ("follow", IfRunning::Follow)];

/// What a setting's value must be.
#[derive(Clone, Copy)]
enum Kind {
    /// A string. One of another type counts as unset (and is reported).
    Text,
    /// A string that is not blank. One of another type, or a blank one, counts as unset
    /// (and is reported).
    NonBlank,
    /// An IANA zone name. A value of another type counts as unset (and is reported).
    Timezone,
    Bool,
    /// An integer from `.0` to `.1`.
    Int(u64, u64),
    /// A duration string.
    Duration,
    /// A duration string other than zero.
    NonZeroDuration,
    CatchUp,
    IfRunning,
}

/// A setting's value as one table gives it.
#[derive(Debug)]
pub(super) enum Value {
    Text(Located<String>),
    Timezone(Tz),
    Bool(bool),
    Int(u64),
    Duration(Located<Duration>),
    CatchUp(CatchUp),
    IfRunning(IfRunning),
}

impl Kind {
    fn read(self, t: &TableReader<'_>, key: &str, problems: &mut Problems) -> Read<Value> {
        Ok(match self {
            // A value of another type is reported, and then counts as unset.
            Kind::Text => t.string(key, problems).ok().flatten().map(Value::Text),
            Kind::NonBlank => match t.string(key, problems) {
                Ok(Some(s)) if s.value.trim().is_empty() => {
                    problems.report(s.problem("must not be empty".into()));
                    None
                }
                read => read.ok().flatten().map(Value::Text),
            },
            Kind::Timezone => match t.string(key, problems) {
                Ok(Some(s)) => match timezone::parse_timezone(&s.value) {
                    Ok(tz) => Some(Value::Timezone(tz)),
                    Err(e) => return Err(problems.report(s.problem(e))),
                },
                _ => None,
            },
            Kind::Bool => t.bool(key, problems)?.map(Value::Bool),
            Kind::Int(min, max) => t.bounded_int(key, min, max, problems)?.map(Value::Int),
            Kind::Duration => t.located_duration(key, problems)?.map(Value::Duration),
            Kind::NonZeroDuration => t.nonzero_duration(key, problems)?.map(Value::Duration),
            Kind::CatchUp => t.choice(key, &CATCH_UP, problems)?.map(Value::CatchUp),
            Kind::IfRunning => t.choice(key, &IF_RUNNING, problems)?.map(Value::IfRunning),
        })
    }
}

/// What one table (`[defaults]` or a server's) says about each setting, in [`SETTINGS`]
/// order.
pub(super) struct Settings(Vec<Read<Value>>);

impl Settings {
    /// Every setting of `t`, each problem reported.
    pub(super) fn read(t: &TableReader<'_>, problems: &mut Problems) -> Settings {
        Settings(
            SETTINGS
                .iter()
                .map(|(key, kind)| kind.read(t, key, problems))
                .collect(),
        )
    }

    /// These settings (a server's) with `defaults` under them.
    pub(super) fn over(self, defaults: &Settings) -> Inherited<'_> {
        Inherited {
            own: self,
            defaults,
        }
    }
}

/// A server's settings: its own table's, else `[defaults]`'.
pub(super) struct Inherited<'a> {
    own: Settings,
    defaults: &'a Settings,
}

impl Inherited<'_> {
    /// The server's value of `key`, else the one in `[defaults]`; `Ok(None)` when neither
    /// sets it, `Err` when the one that does is invalid (and reported).
    ///
    /// `key` must be in [`SETTINGS`], and `T` what its kind reads: a slip there is a bug,
    /// caught by the first test that sets the key.
    pub(super) fn get<T: FromValue>(&self, key: &str) -> Read<T> {
        let i = SETTINGS
            .iter()
            .position(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key:?} is not in SETTINGS"));
        let read = match &self.own.0[i] {
            Ok(None) => &self.defaults.0[i],
            set => set,
        };
        match read {
            Ok(Some(value)) => Ok(Some(T::from_value(value).unwrap_or_else(|| {
                panic!("{key:?} is read as another kind than SETTINGS gives it ({value:?})")
            }))),
            Ok(None) => Ok(None),
            Err(reported) => Err(*reported),
        }
    }

    /// [`get`](Self::get), with `fallback` (the built-in default) when neither table sets
    /// `key`.
    pub(super) fn or<T: FromValue>(&self, key: &str, fallback: T) -> Result<T, Reported> {
        Ok(self.get(key)?.unwrap_or(fallback))
    }
}

/// A Rust type that a kind of [`Value`] reads as.
pub(super) trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

/// `FromValue` for the type each variant of [`Value`] holds.
macro_rules! from_value {
    ($($variant:ident => $t:ty),* $(,)?) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

from_value!(
    Text => Located<String>,
    Timezone => Tz,
    Bool => bool,
    Int => u64,
    Duration => Located<Duration>,
    CatchUp => CatchUp,
    IfRunning => IfRunning,
);

/// A text setting read for its value alone.
impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        Located::<String>::from_value(value).map(|s| s.value)
    }
}

/// A duration read for its value alone.
impl FromValue for Duration {
    fn from_value(value: &Value) -> Option<Self> {
        Located::<Duration>::from_value(value).map(|d| d.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::problem::LineIndex;
    use toml::de::DeTable;

    /// Every setting, none at its built-in default.
    const EVERY_SETTING: &str = r#"
schedule = "@daily"
enabled = false
timezone = "Europe/Berlin"
task_key = "OtherTask"
poll_interval = "2s"
timeout = "1h"
request_timeout = "3s"
retries = 4
retry_backoff = "5s"
jitter = "6s"
catch_up = "none"
catch_up_window = "7h"
if_running = "follow"
history_limit = 8
start_grace = "9s"
verify_export = false
"#;

    fn read(text: &str) -> (Settings, Problems) {
        let idx = LineIndex::new(text);
        let doc = DeTable::parse(text).expect("test TOML");
        let mut problems = Problems::default();
        let settings = Settings::read(&TableReader::root(&idx, doc.get_ref()), &mut problems);
        (settings, problems)
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    /// `get` reads each key as the type `read_server` asks for; a key missing from
    /// SETTINGS or read as another kind would panic here.
    #[test]
    fn a_server_reads_every_setting_from_defaults_unless_it_sets_it() {
        let (defaults, problems) = read(EVERY_SETTING);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(setting_keys().len(), EVERY_SETTING.trim().lines().count());
        let (own, problems) = read("timeout = \"2h\"\nretries = 0\n");
        assert!(problems.is_empty(), "{problems:?}");
        let s = own.over(&defaults);
        assert_eq!(s.get("schedule"), Ok(Some("@daily".to_owned())));
        assert_eq!(s.get("enabled"), Ok(Some(false)));
        assert_eq!(s.get("timezone"), Ok(Some(chrono_tz::Europe::Berlin)));
        assert_eq!(s.get("task_key"), Ok(Some("OtherTask".to_owned())));
        assert_eq!(s.get("poll_interval"), Ok(secs(2)));
        assert_eq!(s.get("timeout"), Ok(secs(3600 * 2)));
        assert_eq!(s.get("request_timeout"), Ok(secs(3)));
        assert_eq!(s.get("retries"), Ok(Some(0u64)));
        assert_eq!(s.get("retry_backoff"), Ok(secs(5)));
        assert_eq!(s.get("jitter"), Ok(secs(6)));
        assert_eq!(s.get("catch_up"), Ok(Some(CatchUp::None)));
        assert_eq!(s.get("catch_up_window"), Ok(secs(7 * 3600)));
        assert_eq!(s.get("if_running"), Ok(Some(IfRunning::Follow)));
        assert_eq!(s.get("history_limit"), Ok(Some(8u64)));
        assert_eq!(s.get("start_grace"), Ok(secs(9)));
        assert_eq!(s.get("verify_export"), Ok(Some(false)));
        // Each value keeps the place it came from, for the messages about it.
        let line =
            |value: Read<Located<Duration>>| value.unwrap().unwrap().problem(String::new()).line;
        assert_eq!(line(s.get("poll_interval")), 6, "the line in [defaults]");
        assert_eq!(line(s.get("timeout")), 1, "the line in the server's table");
    }

    #[test]
    fn an_invalid_value_is_not_replaced_by_the_default() {
        let (defaults, _) = read(EVERY_SETTING);
        let (own, problems) = read("retries = 500\npoll_interval = \"0s\"\n");
        assert_eq!(problems.into_sorted().len(), 2);
        let s = own.over(&defaults);
        assert!(s.get::<u64>("retries").is_err());
        assert!(s.or("poll_interval", Duration::ZERO).is_err());
        assert_eq!(s.or("jitter", Duration::ZERO), Ok(Duration::from_secs(6)));
    }

    /// As it always was: a text setting of another type, or a blank `task_key`, is
    /// reported and then counts as unset, so the server falls back to `[defaults]`.
    #[test]
    fn a_text_setting_of_another_type_is_reported_and_counts_as_unset() {
        let (defaults, _) = read(EVERY_SETTING);
        let (own, problems) = read("schedule = 5\ntimezone = 6\ntask_key = \" \"\n");
        assert_eq!(problems.into_sorted().len(), 3);
        let s = own.over(&defaults);
        assert_eq!(s.get("schedule"), Ok(Some("@daily".to_owned())));
        assert_eq!(s.get("timezone"), Ok(Some(chrono_tz::Europe::Berlin)));
        assert_eq!(s.get("task_key"), Ok(Some("OtherTask".to_owned())));
    }
}
