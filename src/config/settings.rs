//! The settings a `[[servers]]` entry sets itself or inherits from `[defaults]`.
//!
//! [`SETTINGS`] names each one with the kind of value it takes. That one table drives the
//! reading of `[defaults]` and of every server's table (each table read once, every problem
//! reported at its place), the unknown-key check of both, and inheritance: a server's
//! value is its own, else the one in `[defaults]`, else the built-in default, which
//! `server` gives where it uses the value.

use super::model::{CatchUp, IfRunning};
use super::reader::{Located, Problems, Read, Reported, TableReader};
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
        Ok(Some(match self {
            Kind::Text => match t.string(key, problems) {
                Ok(Some(s)) => Value::Text(s),
                _ => return Ok(None),
            },
            Kind::NonBlank => match t.string(key, problems) {
                Ok(Some(s)) if s.value.trim().is_empty() => {
                    problems.report(s.problem("must not be empty".into()));
                    return Ok(None);
                }
                Ok(Some(s)) => Value::Text(s),
                _ => return Ok(None),
            },
            Kind::Timezone => match t.string(key, problems) {
                Ok(Some(s)) => match timezone::parse_timezone(&s.value) {
                    Ok(tz) => Value::Timezone(tz),
                    Err(e) => return Err(problems.report(s.problem(e))),
                },
                _ => return Ok(None),
            },
            Kind::Bool => match t.bool(key, problems)? {
                Some(b) => Value::Bool(b),
                None => return Ok(None),
            },
            Kind::Int(min, max) => match t.bounded_int(key, min, max, problems)? {
                Some(n) => Value::Int(n),
                None => return Ok(None),
            },
            Kind::Duration => match t.located_duration(key, problems)? {
                Some(d) => Value::Duration(d),
                None => return Ok(None),
            },
            Kind::NonZeroDuration => match t.nonzero_duration(key, problems)? {
                Some(d) => Value::Duration(d),
                None => return Ok(None),
            },
            Kind::CatchUp => match t.choice(key, &CATCH_UP, problems)? {
                Some(c) => Value::CatchUp(c),
                None => return Ok(None),
            },
            Kind::IfRunning => match t.choice(key, &IF_RUNNING, problems)? {
                Some(i) => Value::IfRunning(i),
                None => return Ok(None),
            },
        }))
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
