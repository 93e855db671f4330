//! Schedule maths: a cron expression plus an IANA timezone → the instants a run is due.
//!
//! This module owns parsing and validating cron expressions (with errors that name the
//! wrong field), the DST rules, catch-up look-back, the per-server jitter and the human
//! notes that `check` prints about DST. It is pure: every function takes the clock and the
//! zone as arguments, and nothing here sleeps, reads the wall clock, the system's zone or
//! the network. Sleeping until an instant is the daemon's job; timezone names and the
//! system's zone are [`crate::timezone`]'s.
//!
//! # The rules
//!
//! - **Fields.** 5 fields (`minute hour day-of-month month day-of-week`, due on second 0)
//!   or 6 (a leading `second` field). No 7th (year) field. Aliases: `@yearly`,
//!   `@annually`, `@monthly`, `@weekly` (Sunday 00:00), `@daily`, `@midnight` (same as
//!   `@daily`; croner does not know it) and `@hourly`.
//! - **Syntax** is croner 4's: ranges `1-5`, lists `1,3`, steps `*/15` and `10-50/20`
//!   (a bare `5/15` is refused, as in vixie cron), names `MON`–`SUN` and `JAN`–`DEC`
//!   (case-insensitive, only in their own field), `L` (last day of the month, or `5L` the
//!   last Friday), `W` (`15W` the weekday nearest the 15th, `LW` the last weekday), `#`
//!   (`5#2` the second Friday), `?` as `*` in the two day fields, `7` as Sunday.
//! - **Day fields.** When both day-of-month and day-of-week are restricted, a day matches if
//!   EITHER matches (classic cron): `0 0 13 * FRI` runs on every 13th and every Friday.
//!   A `+` before the day-of-week field (`0 0 13 * +FRI`) asks for both, as croner allows.
//! - **DST, fixed hours.** When the hour field names hours (a number, list or range, e.g.
//!   `30 2 * * *`): a time that a spring-forward change skips fires once, at the first
//!   instant after the gap; a time that a fall-back change repeats fires once, at its first
//!   occurrence. Several skipped times collapse into that one run.
//! - **DST, clock-following.** When the hour field is `*`, a step (`*/2`, `1-23/2`) or
//!   covers all 24 hours: every real instant whose local time matches fires, a skipped local
//!   time does not fire, and no instant fires twice (a repeated local time fires once per
//!   real instant, i.e. twice on the wall clock).
//! - **Strictly later.** [`Schedule::next_after`] is strictly later than its argument, even
//!   when that has sub-second parts; due instants are always whole seconds.
//!
//! croner classifies a pattern as "fixed time" only when second, minute and hour are single
//! values, so it would treat `0 2,14 * * *` or `*/15 2 * * *` as clock-following and run
//! `02:00` twice on fall-back day. The rules above decide by the hour field alone, so fixed
//! hours are computed here: croner finds matching wall-clock times (on a timezone-free
//! clock) and this module maps each to its instant. Clock-following schedules use croner's
//! own timezone search, which already implements that rule.

use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::{GapInfo, OffsetName, Tz};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::sync::Arc;

/// A cron expression bound to a timezone: answers "when is the next run?".
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as the user wrote it (trimmed), for messages and `check`.
    expr: String,
    tz: Tz,
    /// Always 6 numeric fields by the time croner sees it (names and aliases expanded).
    /// Shared: croner's parsed pattern is about 10 KiB, and a server's schedule is cloned
    /// with its settings (the loop, the status board, each run), 1000 servers at once.
    cron: Arc<Cron>,
    /// Hour field `*`, stepped or all 24 hours: croner's clock-following DST rule applies.
    /// Otherwise the fixed-hour rule, computed in this module.
    follows_clock: bool,
    /// Whether any due time has a non-zero second, so notes print `HH:MM:SS`.
    shows_seconds: bool,
}

/// Why a cron expression was refused. The message names the field and what is wrong with it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "the schedule is empty; expected a cron expression such as \"30 2 * * *\" or an alias such as @daily"
    )]
    Empty,
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds), found {found}"
    )]
    FieldCount { found: usize },
    #[error("unknown alias \"{alias}\"; valid aliases are {}", alias_list())]
    UnknownAlias { alias: String },
    #[error("{field} field ({} of {count}) \"{text}\": {reason}", ordinal(*position))]
    Field {
        field: Field,
        /// 1-based position among the fields the user wrote.
        position: usize,
        /// How many fields the user wrote (5 or 6).
        count: usize,
        /// The field as written.
        text: String,
        reason: String,
    },
    #[error("\"{expr}\" never matches any date (e.g. the 30th of February)")]
    NeverMatches { expr: String },
    /// croner refused the whole expression although each field parsed on its own.
    #[error("invalid cron expression \"{expr}\": {reason}")]
    Invalid { expr: String, reason: String },
}

/// One field of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            // 7 is Sunday too.
            Field::DayOfWeek => (0, 7),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

const ALIASES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// A walk over wall-clock matches gives up after this many steps. Reached only by
/// pathological inputs (every second of a fixed hour, searched from inside a repeated
/// hour needs 3600); a bound keeps a bad schedule from hanging the daemon.
const MAX_WALK_STEPS: u32 = 200_000;

fn alias_list() -> String {
    ALIASES
        .iter()
        .map(|(a, _)| *a)
        .collect::<Vec<_>>()
        .join(", ")
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn croner_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        // Classic cron: a day matches when EITHER day field does (tested).
        .dom_and_dow(false)
        .build()
}

impl Schedule {
    /// Parse a cron expression for a timezone.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = if trimmed.starts_with('@') {
            ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(trimmed))
                .map(|(_, fields)| *fields)
                .ok_or_else(|| ScheduleError::UnknownAlias {
                    alias: trimmed.to_string(),
                })?
        } else {
            trimmed
        };

        let written: Vec<&str> = expanded.split_whitespace().collect();
        let fields: &[Field] = match written.len() {
            5 => &Field::ALL[1..],
            6 => &Field::ALL,
            found => return Err(ScheduleError::FieldCount { found }),
        };

        let mut normalised = Vec::with_capacity(6);
        if written.len() == 5 {
            normalised.push("0".to_string());
        }
        for (index, (&field, &text)) in fields.iter().zip(&written).enumerate() {
            let field_error = |reason: String| ScheduleError::Field {
                field,
                position: index + 1,
                count: written.len(),
                text: text.to_string(),
                reason,
            };
            let value = normalise_field(field, text).map_err(field_error)?;
            // Our checks catch the common mistakes with a precise reason; croner is the
            // final judge of the syntax. Parsing the field alone (the others `*`) tells
            // which field croner objects to.
            check_field_with_croner(field, &value).map_err(field_error)?;
            normalised.push(value);
        }

        let joined = normalised.join(" ");
        let cron = croner_parser()
            .parse(&joined)
            .map_err(|e| ScheduleError::Invalid {
                expr: trimmed.to_string(),
                reason: e.to_string(),
            })?;

        // The Gregorian calendar repeats every 400 years, so an expression that matches no
        // second from 2000 on (croner searches up to year 5000) never matches.
        let probe = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
        if probe.is_some_and(|p| cron.find_next_occurrence(&p, true).is_err()) {
            return Err(ScheduleError::NeverMatches {
                expr: trimmed.to_string(),
            });
        }

        let hours = cron.pattern.hours.values();
        let follows_clock =
            cron.pattern.hours.from_wildcard || cron.pattern.hours.step != 1 || hours.len() == 24;
        let shows_seconds = cron.pattern.seconds.values() != [0];
        Ok(Schedule {
            expr: trimmed.to_string(),
            tz,
            cron: Arc::new(cron),
            follows_clock,
            shows_seconds,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Whether the clock-following DST rule applies (hour field `*`, a step, or all 24
    /// hours); otherwise the fixed-hour rule does. See the module doc.
    pub fn follows_clock(&self) -> bool {
        self.follows_clock
    }

    /// The first due instant strictly after `after`. None only if the expression can never
    /// match again (croner stops searching at the year 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.follows_clock {
            self.clock_next(after)
        } else {
            self.fixed_next(after)
        }
    }

    /// The next `n` due instants strictly after `after`, increasing.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// The most recent due instant at or before `at` (for catch-up after downtime), or None
    /// if there is none in `[at - within, at]`.
    pub fn latest_at_or_before(
        &self,
        at: DateTime<Utc>,
        within: Duration,
    ) -> Option<DateTime<Utc>> {
        let latest = if self.follows_clock {
            self.clock_latest(at)?
        } else {
            self.fixed_latest(at)?
        };
        // A window wider than chrono can represent has no lower bound.
        let earliest = TimeDelta::from_std(within)
            .ok()
            .and_then(|w| at.checked_sub_signed(w));
        match earliest {
            Some(earliest) if latest < earliest => None,
            _ => Some(latest),
        }
    }

    /// Human notes about this timezone's DST changes in `(from, to]` that change what this
    /// schedule fires, oldest first. Meant for a year or so ahead: the changes are found by
    /// sampling the offset hourly.
    pub fn dst_notes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        transitions(self.tz, from, to)
            .into_iter()
            .filter_map(|t| self.note_for(&t))
            .collect()
    }

    // --- clock-following: croner's own timezone search ---

    fn clock_next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after.with_timezone(&self.tz);
        // croner drops sub-seconds and steps one wall-clock second, so its answer is
        // already later; the loop is a guard, not a retry policy.
        for _ in 0..4 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            if next.with_timezone(&Utc) > after {
                return Some(next.with_timezone(&Utc));
            }
            from = next;
        }
        None
    }

    fn clock_latest(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = at.with_timezone(&self.tz);
        let mut inclusive = true;
        for _ in 0..4 {
            let prev = self.cron.find_previous_occurrence(&from, inclusive).ok()?;
            if prev.with_timezone(&Utc) <= at {
                return Some(prev.with_timezone(&Utc));
            }
            from = prev;
            inclusive = false;
        }
        None
    }

    // --- fixed hours: croner finds wall-clock matches, we map them to instants ---
    //
    // `fixed_instant` maps a matching wall-clock time to when it runs: itself, the first of
    // two occurrences, or the end of the gap that swallowed it. That mapping never goes
    // backwards as the wall-clock time increases, so walking matches in wall-clock order
    // meets their instants in order too, and the first one past `after` is the answer.

    /// When a matching wall-clock time runs under the fixed-hour rule.
    fn fixed_instant(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => GapInfo::new(&wall, &self.tz)
                .and_then(|gap| gap.end)
                .map(|end| end.with_timezone(&Utc)),
        }
    }

    fn fixed_next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // No match on an earlier wall-clock time can run after `after`: earlier times map
        // to earlier (or equal) instants, including from inside a repeated hour.
        let mut cursor = after
            .with_timezone(&self.tz)
            .naive_local()
            .with_nanosecond(0)?;
        let mut inclusive = true;
        for _ in 0..MAX_WALK_STEPS {
            let wall = self.cron.find_next_occurrence(&cursor, inclusive).ok()?;
            if let Some(at) = self.fixed_instant(wall)
                && at > after
            {
                return Some(at);
            }
            cursor = wall;
            inclusive = false;
        }
        None
    }

    fn fixed_latest(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Inside a repeated hour the wall clock reads earlier than it did a moment ago, so
        // matches up to that much later on the wall clock may already have run. Start the
        // backward walk that far ahead.
        let ahead = max_offset_drop(self.tz, at);
        let mut cursor = at
            .with_timezone(&self.tz)
            .naive_local()
            .with_nanosecond(0)?
            .checked_add_signed(ahead)?;
        let mut inclusive = true;
        for _ in 0..MAX_WALK_STEPS {
            let wall = self
                .cron
                .find_previous_occurrence(&cursor, inclusive)
                .ok()?;
            if let Some(instant) = self.fixed_instant(wall)
                && instant <= at
            {
                return Some(instant);
            }
            cursor = wall;
            inclusive = false;
        }
        None
    }

    // --- DST notes ---

    /// Matching wall-clock times in `[start, end)`, in order.
    fn matches_between(&self, start: NaiveDateTime, end: NaiveDateTime) -> Vec<NaiveDateTime> {
        let mut out = Vec::new();
        let mut cursor = start;
        let mut inclusive = true;
        while let Ok(wall) = self.cron.find_next_occurrence(&cursor, inclusive) {
            if wall >= end || out.len() as u32 >= MAX_WALK_STEPS {
                break;
            }
            out.push(wall);
            cursor = wall;
            inclusive = false;
        }
        out
    }

    fn note_for(&self, t: &Transition) -> Option<String> {
        let zone = self.tz.name();
        let before = TimeDelta::seconds(i64::from(t.before));
        let after = TimeDelta::seconds(i64::from(t.after));
        let naive = t.at.naive_utc();
        if t.after > t.before {
            // Spring forward: wall-clock times [start, end) do not exist.
            let start = naive.checked_add_signed(before)?;
            let end = naive.checked_add_signed(after)?;
            let skipped = self.matches_between(start, end);
            if skipped.is_empty() {
                return None;
            }
            let date = start.format("%Y-%m-%d");
            let range = self.wall_range(start, end);
            if self.follows_clock {
                return Some(format!(
                    "{date}: local {range} does not exist in {zone}; those slots are skipped ({})",
                    self.list_times(&skipped)
                ));
            }
            let verb = if skipped.len() == 1 { "does" } else { "do" };
            let abbr = abbreviation(self.tz, t.at);
            let merged = if self.cron.is_time_matching(&end).unwrap_or(false) {
                format!(", together with the regular {} run", self.time(end))
            } else {
                String::new()
            };
            // A gap that swallows a whole day (Samoa, 2011-12-30) needs the dates spelt out.
            let (jump_from, jump_to, runs_at) = if start.date() == end.date() {
                (hh_mm(start), hh_mm(end), self.time(end))
            } else {
                let long = |w: NaiveDateTime| w.format("%Y-%m-%d %H:%M").to_string();
                (
                    long(start),
                    long(end),
                    format!("{} {}", end.format("%Y-%m-%d"), self.time(end)),
                )
            };
            Some(format!(
                "{date}: {} {verb} not exist in {zone} (clocks go from {jump_from} to {jump_to}); fires once at {runs_at} {abbr} instead{merged}",
                self.list_times(&skipped),
            ))
        } else {
            // Fall back: wall-clock times [start, end) happen twice.
            let start = naive.checked_add_signed(after)?;
            let end = naive.checked_add_signed(before)?;
            let repeated = self.matches_between(start, end);
            if repeated.is_empty() {
                return None;
            }
            let date = start.format("%Y-%m-%d");
            let just_before =
                t.at.checked_sub_signed(TimeDelta::seconds(1))
                    .unwrap_or(t.at);
            let first = abbreviation(self.tz, just_before);
            let second = abbreviation(self.tz, t.at);
            if self.follows_clock {
                let range = self.wall_range(start, end);
                return Some(format!(
                    "{date}: local {range} happens twice in {zone}; each real instant fires once ({} run in {first} and again in {second})",
                    self.list_times(&repeated)
                ));
            }
            Some(if let [only] = repeated.as_slice() {
                format!(
                    "{date}: {} happens twice in {zone}; fires once, at the first ({} {first})",
                    self.time(*only),
                    self.time(*only)
                )
            } else {
                format!(
                    "{date}: {} happen twice in {zone}; each fires once, at the first ({first})",
                    self.list_times(&repeated)
                )
            })
        }
    }

    fn time(&self, wall: NaiveDateTime) -> String {
        if self.shows_seconds {
            wall.format("%H:%M:%S").to_string()
        } else {
            wall.format("%H:%M").to_string()
        }
    }

    /// `02:00–02:59` for the wall-clock times in `[start, end)`.
    fn wall_range(&self, start: NaiveDateTime, end: NaiveDateTime) -> String {
        let step = if self.shows_seconds || start.second() != 0 || end.second() != 0 {
            TimeDelta::seconds(1)
        } else {
            TimeDelta::minutes(1)
        };
        let last = end.checked_sub_signed(step).unwrap_or(end);
        if step == TimeDelta::seconds(1) {
            format!("{}–{}", start.format("%H:%M:%S"), last.format("%H:%M:%S"))
        } else {
            format!("{}–{}", hh_mm(start), hh_mm(last))
        }
    }

    /// "02:30", "02:00 and 02:30", or the first few and a count when there are many.
    fn list_times(&self, walls: &[NaiveDateTime]) -> String {
        const SHOWN: usize = 4;
        let times: Vec<String> = walls.iter().map(|w| self.time(*w)).collect();
        match times.as_slice() {
            [] => String::new(),
            [only] => only.clone(),
            [init @ .., last] if times.len() <= SHOWN => {
                format!("{} and {last}", init.join(", "))
            }
            _ => format!(
                "{}, … ({} times)",
                times[..SHOWN - 1].join(", "),
                times.len()
            ),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

fn hh_mm(wall: NaiveDateTime) -> String {
    wall.format("%H:%M").to_string()
}

/// The zone's abbreviation at `at` ("CEST"), or its offset ("+10:30") when the zone has none.
fn abbreviation(tz: Tz, at: DateTime<Utc>) -> String {
    let offset = tz.offset_from_utc_datetime(&at.naive_utc());
    match offset.abbreviation() {
        Some(name) => name.to_string(),
        None => offset.fix().to_string(),
    }
}

fn utc_offset_seconds(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// How far the zone's offset at `at` is below its highest offset in the two days before:
/// the size of a fall-back change `at` may sit just after. Sampled every 15 minutes, finer
/// than any real change (Lord Howe's 30 minutes is the smallest in use).
fn max_offset_drop(tz: Tz, at: DateTime<Utc>) -> TimeDelta {
    let now = utc_offset_seconds(tz, at);
    let highest = (0..=192)
        .filter_map(|k| at.checked_sub_signed(TimeDelta::minutes(15 * k)))
        .map(|t| utc_offset_seconds(tz, t))
        .max()
        .unwrap_or(now);
    TimeDelta::seconds(i64::from((highest - now).max(0)))
}

/// A change of a zone's UTC offset: from `at` on, the offset is `after` (seconds).
#[derive(Debug)]
struct Transition {
    at: DateTime<Utc>,
    before: i32,
    after: i32,
}

/// The offset changes in `(from, to]`. chrono-tz does not list them, so sample hourly and
/// bisect to the second; real changes are months apart, never two within an hour.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Transition> {
    let mut out = Vec::new();
    let Some(mut t) = from.with_nanosecond(0) else {
        return out;
    };
    let mut offset = utc_offset_seconds(tz, t);
    while t < to {
        let next = t
            .checked_add_signed(TimeDelta::hours(1))
            .map_or(to, |n| n.min(to));
        let next_offset = utc_offset_seconds(tz, next);
        if next_offset != offset {
            // Invariant: offset at `lo` is the old one, at `hi` the new one.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
                if utc_offset_seconds(tz, mid) == offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if hi > from {
                out.push(Transition {
                    at: hi,
                    before: offset,
                    after: next_offset,
                });
            }
        }
        t = next;
        offset = next_offset;
    }
    out
}

// --- field validation ---

/// Upper-cases a field, replaces month and weekday names by numbers, and checks what croner
/// reports vaguely ("Number out of bounds.") with a reason that quotes the value.
fn normalise_field(field: Field, text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let (prefix, body) = match upper.strip_prefix('+') {
        Some(rest) if field == Field::DayOfWeek => ("+", rest),
        _ => ("", upper.as_str()),
    };
    if body.is_empty() {
        return Err("nothing after the +".to_string());
    }
    let mut items = Vec::new();
    for item in body.split(',') {
        if item.is_empty() {
            return Err("empty item in a list (two commas, or a comma at an end)".to_string());
        }
        let item = replace_names(field, item)?;
        if let Some(c) = item.chars().find(|c| !allowed_char(field, *c)) {
            return Err(if c == '?' {
                "? is only allowed in the day-of-month and day-of-week fields".to_string()
            } else {
                format!("character '{c}' is not allowed here")
            });
        }
        check_item(field, &item)?;
        items.push(item);
    }
    Ok(format!("{prefix}{}", items.join(",")))
}

/// The characters croner accepts in a field once names are replaced by numbers.
fn allowed_char(field: Field, c: char) -> bool {
    c.is_ascii_digit()
        || matches!(c, ',' | '-' | '/' | '*')
        || match field {
            Field::DayOfMonth => matches!(c, 'L' | 'W' | '?'),
            Field::DayOfWeek => matches!(c, 'L' | '#' | '?'),
            _ => false,
        }
}

/// Replaces `MON`/`JAN`-style names in one list item, refusing names in the wrong field.
fn replace_names(field: Field, item: &str) -> Result<String, String> {
    let mut out = String::with_capacity(item.len());
    let mut rest = item;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (word, after) = tail.split_at(len);
        let weekday = WEEKDAYS.iter().position(|w| *w == word);
        let month = MONTHS.iter().position(|m| *m == word);
        match (field, weekday, month) {
            // After a '-' SUN ends a range, so it is 7 (`FRI-SUN` is 5-7, not 5-0).
            (Field::DayOfWeek, Some(0), _) if out.ends_with('-') => out.push('7'),
            (Field::DayOfWeek, Some(n), _) => out.push_str(&n.to_string()),
            (Field::Month, _, Some(n)) => out.push_str(&(n + 1).to_string()),
            (Field::DayOfMonth, _, _) if matches!(word, "L" | "W" | "LW") => out.push_str(word),
            (Field::DayOfWeek, _, _) if word == "L" => out.push_str(word),
            (_, Some(_), _) => {
                return Err(format!(
                    "{word} is a day-of-week name; it belongs in the day-of-week field (the last one)"
                ));
            }
            (_, _, Some(_)) => {
                return Err(format!(
                    "{word} is a month name; it belongs in the month field (the 4th of 5)"
                ));
            }
            (Field::DayOfWeek, None, None) => {
                return Err(format!(
                    "unknown name \"{word}\"; use SUN, MON, TUE, WED, THU, FRI, SAT, or L as in 5L"
                ));
            }
            (Field::Month, None, None) => {
                return Err(format!(
                    "unknown name \"{word}\"; use JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC"
                ));
            }
            (Field::DayOfMonth, None, None) => {
                return Err(format!(
                    "\"{word}\" is not allowed here; this field takes numbers, L (last day) and W (nearest weekday, as in 15W)"
                ));
            }
            _ => {
                return Err(format!(
                    "\"{word}\" is not allowed here; this field takes numbers, ranges (1-5), lists (1,5) and steps (*/15)"
                ));
            }
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks the numbers in one (name-free) list item: ranges, steps and `#n`.
fn check_item(field: Field, item: &str) -> Result<(), String> {
    let (min, max) = field.range();
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(0) => return Err("a step must be at least 1".to_string()),
            Ok(_) => {}
            Err(_) => return Err(format!("step \"{step}\" is not a number")),
        }
    }
    let mut base = base;
    if field == Field::DayOfWeek {
        if let Some((day, nth)) = base.split_once('#') {
            match nth.parse::<u32>() {
                Ok(1..=5) => {}
                _ => {
                    return Err(format!("#{nth}: the nth weekday of a month must be 1 to 5"));
                }
            }
            base = day;
        }
        if base == "L" {
            // croner accepts it and then never matches it.
            return Err("L alone means nothing in the day-of-week field; write 5L for the last Friday, or put L in the day-of-month field for the last day".to_string());
        }
        base = base.strip_suffix('L').unwrap_or(base);
    }
    if field == Field::DayOfMonth && base.len() > 1 && base != "LW" {
        base = base.strip_suffix('W').unwrap_or(base);
    }
    if matches!(base, "*" | "?" | "L" | "LW") {
        return Ok(());
    }
    let bounds: Vec<&str> = base.split('-').collect();
    let mut numbers = Vec::with_capacity(2);
    for bound in &bounds {
        // Anything that is not a plain number is croner's to judge.
        let Ok(n) = bound.parse::<u32>() else {
            return Ok(());
        };
        if n < min || n > max {
            return Err(format!("{n} is out of range {min}-{max}"));
        }
        numbers.push(n);
    }
    if let [a, b] = numbers.as_slice()
        && a > b
    {
        return Err(format!(
            "range {a}-{b} runs backwards; cron ranges do not wrap, write {a}-{max},{min}-{b}"
        ));
    }
    Ok(())
}

/// Parses `value` in its own position with every other field `*`, so croner's complaint
/// (if any) is about this field alone.
fn check_field_with_croner(field: Field, value: &str) -> Result<(), String> {
    let fields: Vec<&str> = Field::ALL
        .iter()
        .map(|f| if *f == field { value } else { "*" })
        .collect();
    croner_parser()
        .parse(&fields.join(" "))
        .map(|_| ())
        .map_err(|e| match e {
            croner::errors::CronError::ComponentError(msg)
            | croner::errors::CronError::InvalidPattern(msg)
            | croner::errors::CronError::IllegalCharacters(msg) => lowercase_first(&msg),
            other => other.to_string(),
        })
}

fn lowercase_first(msg: &str) -> String {
    let trimmed = msg.trim_end_matches('.');
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

// --- jitter ---

/// A stable per-server delay in `[0, jitter)`: FNV-1a 64 of the server name, modulo the
/// jitter in whole milliseconds. Zero (or sub-millisecond) jitter gives zero. The hash is
/// part of the behaviour: changing it moves every server's run time.
pub fn jitter_offset(server_name: &str, jitter: Duration) -> Duration {
    let millis = jitter.as_millis();
    if millis == 0 {
        return Duration::ZERO;
    }
    let offset = u128::from(fnv1a_64(server_name.as_bytes())) % millis;
    // offset < 2^64 because the hash is a u64.
    Duration::from_millis(u64::try_from(offset).unwrap_or(0))
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test date")
    }

    /// Where croner itself applies the fixed-time rule (second, minute and hour single
    /// values), our wall-clock mapping must agree with it on every day of a DST year.
    #[test]
    fn fixed_hours_agree_with_croner_fixed_time() {
        let zones = [
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
        ];
        let exprs = [
            "0 30 2 * * *",
            "0 45 1 * * *",
            "0 0 2 * * *",
            "15 59 1 * * *",
        ];
        for tz in zones {
            for expr in exprs {
                let schedule = Schedule::parse(expr, tz).expect("valid");
                assert!(!schedule.follows_clock());
                let mut ours = utc("2026-01-01T00:00:00Z");
                let mut theirs = ours.with_timezone(&tz);
                for _ in 0..366 {
                    ours = schedule.next_after(ours).expect("ours");
                    theirs = schedule
                        .cron
                        .find_next_occurrence(&theirs, false)
                        .expect("croner");
                    assert_eq!(ours, theirs.with_timezone(&Utc), "{expr} in {tz}");
                }
            }
        }
    }

    #[test]
    fn transitions_found_to_the_second() {
        let found = transitions(
            chrono_tz::Europe::Berlin,
            utc("2026-01-01T00:00:00Z"),
            utc("2027-01-01T00:00:00Z"),
        );
        let at: Vec<_> = found.iter().map(|t| t.at).collect();
        assert_eq!(
            at,
            [utc("2026-03-29T01:00:00Z"), utc("2026-10-25T01:00:00Z")]
        );
        assert_eq!((found[0].before, found[0].after), (3600, 7200));
    }
}
