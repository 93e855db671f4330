//! Time as the simulated servers show it. A [`Clock`] maps the simulator's monotonic
//! instants to UTC, fixed at sim start. A [`SimTime`] is a UTC time as Jellyfin writes it,
//! truncated once, when created, to 1 to 7 fractional digits; a [`Stamper`] hands them out
//! with 7, 1, 3 and 5 digits in turn, so different answers carry different lengths while a
//! stored result always reads the same (re-rendering one instant with another length would
//! make one result look like two, which Jellyfin never does).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};
use std::fmt;
use tokio::time::Instant;

/// Maps the simulator's monotonic instants to UTC, fixed at sim start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
    base_utc: DateTime<Utc>,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            base_utc: Utc::now(),
        }
    }
    pub fn base(&self) -> Instant {
        self.base
    }
    pub fn utc(&self, at: Instant) -> DateTime<Utc> {
        let since = at.saturating_duration_since(self.base);
        self.base_utc + chrono::Duration::from_std(since).unwrap_or(chrono::Duration::zero())
    }
    pub fn base_utc(&self) -> DateTime<Utc> {
        self.base_utc
    }
}

/// A UTC time as Jellyfin writes it: `…T06:49:12.1234567Z`, 1 to 7 fractional digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime {
    at: DateTime<Utc>,
    digits: u8,
}

impl SimTime {
    /// `at` truncated to `digits` (1..=7) fractional digits.
    pub fn new(at: DateTime<Utc>, digits: u8) -> Self {
        let digits = digits.clamp(1, 7);
        let unit = 10u32.pow(9 - u32::from(digits));
        let nanos = at.nanosecond() % 1_000_000_000;
        let at = at.with_nanosecond(nanos - nanos % unit).unwrap_or(at);
        SimTime { at, digits }
    }
    pub fn utc(&self) -> DateTime<Utc> {
        self.at
    }
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(32);
        // Writing into a String cannot fail.
        let _ = self.write(&mut text);
        text
    }

    /// The text, written field by field: chrono's `format` parses its pattern on every
    /// call, and the task list writes eight of these per answer.
    fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let at = &self.at;
        if (0..=9999).contains(&at.year()) {
            write!(
                out,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )?;
        } else {
            write!(out, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
        }
        let digits = u32::from(self.digits);
        let fraction = (at.nanosecond() % 1_000_000_000) / 10u32.pow(9 - digits);
        write!(out, ".{fraction:0width$}Z", width = digits as usize)
    }
}

impl Serialize for SimTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: the task list serialises eight of these per answer.
        let mut text = StackText::default();
        match self.write(&mut text) {
            Ok(()) => s.serialize_str(text.as_str()),
            Err(_) => s.serialize_str(&self.render()),
        }
    }
}

/// Text of up to 40 bytes kept on the stack (the longest time is 30).
struct StackText {
    bytes: [u8; 40],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `str`s are ever copied in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Hands out [`SimTime`]s with fraction lengths in rotation.
#[derive(Debug, Default)]
pub(crate) struct Stamper {
    next: usize,
}

impl Stamper {
    const DIGITS: [u8; 4] = [7, 1, 3, 5];
    pub fn stamp(&mut self, at: DateTime<Utc>) -> SimTime {
        let d = Self::DIGITS[self.next % Self::DIGITS.len()];
        self.next = self.next.wrapping_add(1);
        SimTime::new(at, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sim_time_truncates_and_renders_its_digits() {
        let at = Utc.with_ymd_and_hms(2025, 10, 7, 6, 49, 12).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(SimTime::new(at, 7).render(), "2025-10-07T06:49:12.1234567Z");
        assert_eq!(SimTime::new(at, 1).render(), "2025-10-07T06:49:12.1Z");
        assert_eq!(SimTime::new(at, 5).render(), "2025-10-07T06:49:12.12345Z");
        let t = SimTime::new(at, 3);
        assert_eq!(t.render(), t.render());
        assert_eq!(t.utc().nanosecond(), 123_000_000);
    }

    #[test]
    fn rendering_field_by_field_matches_chrono_s_pattern() {
        let base = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap();
        for step in [0i64, 1, 86_399, 86_400 * 60 + 7, 86_400 * 366 * 30 + 3_601] {
            let at =
                base + chrono::Duration::seconds(step) + chrono::Duration::nanoseconds(40_000_000);
            let want = format!("{}.04Z", at.format("%Y-%m-%dT%H:%M:%S"));
            assert_eq!(SimTime::new(at, 2).render(), want);
        }
        let far = Utc.with_ymd_and_hms(10_000, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(SimTime::new(far, 1).render(), "+10000-01-02T03:04:05.0Z");
    }
}
