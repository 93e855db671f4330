//! Which archive files to keep, restic's way (`restic forget --keep-*`): going from the
//! newest file to the oldest, `keep_last` keeps the first n; `keep_daily`,
//! `keep_weekly` and `keep_monthly` keep the newest file of each of the last n days,
//! ISO weeks and months that have files (in the server's timezone, the one its schedule
//! is read in); `keep_within` keeps every file taken within that long of the newest one
//! (not of now: a server that stopped exporting does not lose its last archives to the
//! clock). A file kept by any rule stays, and the newest file always stays.
//!
//! Pure: the caller lists the files and deletes what this says.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::time::Duration;

/// A retention policy. `None` is a rule not set; with none set at all, the caller uses
/// [`Retention::DEFAULT`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_within: Option<Duration>,
}

impl Retention {
    /// When no rule is set anywhere: a week of dailies, a month of weeklies, a year of
    /// monthlies (about 21 files for a nightly export).
    pub const DEFAULT: Retention = Retention {
        keep_last: None,
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        keep_within: None,
    };

    pub fn is_unset(&self) -> bool {
        *self == Retention::default()
    }
}

impl fmt::Display for Retention {
    /// `keep_last = 3, keep_daily = 7`: the rules set, as the config writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (key, n) in [
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ] {
            if let Some(n) = n {
                parts.push(format!("{key} = {n}"));
            }
        }
        if let Some(d) = self.keep_within {
            parts.push(format!(
                "keep_within = \"{}\"",
                humantime::format_duration(d)
            ));
        }
        if parts.is_empty() {
            f.write_str("no rule: only the newest file")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Why a file is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The newest file (always kept).
    Newest,
    /// One of the `keep_last` newest.
    Last,
    /// The newest of its day (`YYYY-MM-DD`).
    Daily(String),
    /// The newest of its ISO week (`YYYY-Www`).
    Weekly(String),
    /// The newest of its month (`YYYY-MM`).
    Monthly(String),
    /// Taken within `keep_within` of the newest.
    Within,
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Newest => f.write_str("newest"),
            Keep::Last => f.write_str("last"),
            Keep::Daily(d) => write!(f, "daily {d}"),
            Keep::Weekly(w) => write!(f, "weekly {w}"),
            Keep::Monthly(m) => write!(f, "monthly {m}"),
            Keep::Within => f.write_str("within"),
        }
    }
}

/// For each time in `taken` (any order), the reasons to keep that file: empty means
/// delete it.
pub fn decide(taken: &[DateTime<Utc>], policy: &Retention, tz: Tz) -> Vec<Vec<Keep>> {
    let mut order: Vec<usize> = (0..taken.len()).collect();
    // Newest first; equal times keep their given order.
    order.sort_by(|&a, &b| taken[b].cmp(&taken[a]));
    let mut reasons = vec![Vec::new(); taken.len()];
    let Some(&newest) = order.first() else {
        return reasons;
    };
    let mut last = policy.keep_last.unwrap_or(0);
    let mut buckets = [
        Bucket::new(
            policy.keep_daily,
            |t| t.format("%Y-%m-%d").to_string(),
            Keep::Daily,
        ),
        Bucket::new(
            policy.keep_weekly,
            |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            },
            Keep::Weekly,
        ),
        Bucket::new(
            policy.keep_monthly,
            |t| t.format("%Y-%m").to_string(),
            Keep::Monthly,
        ),
    ];
    let within_from = policy
        .keep_within
        .map(|d| taken[newest] - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    for (rank, &i) in order.iter().enumerate() {
        let keep = &mut reasons[i];
        if rank == 0 {
            keep.push(Keep::Newest);
        }
        if last > 0 {
            last -= 1;
            keep.push(Keep::Last);
        }
        let local = taken[i].with_timezone(&tz);
        for bucket in &mut buckets {
            if let Some(reason) = bucket.take(&local) {
                keep.push(reason);
            }
        }
        if within_from.is_some_and(|from| taken[i] >= from) {
            keep.push(Keep::Within);
        }
    }
    reasons
}

/// One calendar rule: how many periods are left to keep, the period's name of a time, and
/// the last period kept.
struct Bucket {
    left: u32,
    period: fn(&DateTime<Tz>) -> String,
    reason: fn(String) -> Keep,
    last: Option<String>,
}

impl Bucket {
    fn new(
        count: Option<u32>,
        period: fn(&DateTime<Tz>) -> String,
        reason: fn(String) -> Keep,
    ) -> Self {
        Bucket {
            left: count.unwrap_or(0),
            period,
            reason,
            last: None,
        }
    }

    /// The reason to keep a file of time `t` (met newest first), if it opens a new period
    /// and periods are left.
    fn take(&mut self, t: &DateTime<Tz>) -> Option<Keep> {
        if self.left == 0 {
            return None;
        }
        let period = (self.period)(t);
        if self.last.as_ref() == Some(&period) {
            return None;
        }
        self.left -= 1;
        self.last = Some(period.clone());
        Some((self.reason)(period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Nightly exports at 02:30 UTC from 2026-09-01 to 2026-11-30, plus a manual one on
    /// 2026-11-30 at 14:00.
    fn fleet() -> Vec<DateTime<Utc>> {
        let mut t: Vec<DateTime<Utc>> = (0..91)
            .map(|d| at("2026-09-01T02:30:00Z") + chrono::Duration::days(d))
            .collect();
        t.push(at("2026-11-30T14:00:00Z"));
        t
    }

    fn kept(taken: &[DateTime<Utc>], policy: Retention, tz: Tz) -> Vec<String> {
        let reasons = decide(taken, &policy, tz);
        let mut out: Vec<(DateTime<Utc>, String)> = taken
            .iter()
            .zip(&reasons)
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, r)| {
                let why: Vec<String> = r.iter().map(ToString::to_string).collect();
                (*t, format!("{} {}", t.format("%m-%dT%H"), why.join(",")))
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn each_rule_and_their_combinations_from_a_table() {
        let utc = chrono_tz::UTC;
        let none = Retention::default();
        let cases: Vec<(Retention, Vec<&str>)> = vec![
            (none, vec!["11-30T14 newest"]),
            (
                Retention {
                    keep_last: Some(3),
                    ..none
                },
                vec!["11-29T02 last", "11-30T02 last", "11-30T14 newest,last"],
            ),
            (
                Retention {
                    keep_daily: Some(2),
                    ..none
                },
                vec![
                    "11-29T02 daily 2026-11-29",
                    "11-30T14 newest,daily 2026-11-30",
                ],
            ),
            (
                // ISO weeks: 2026-11-30 is a Monday (W49); the newest of W48 is Sunday the 29th.
                Retention {
                    keep_weekly: Some(3),
                    ..none
                },
                vec![
                    "11-22T02 weekly 2026-W47",
                    "11-29T02 weekly 2026-W48",
                    "11-30T14 newest,weekly 2026-W49",
                ],
            ),
            (
                Retention {
                    keep_monthly: Some(5),
                    ..none
                },
                vec![
                    "09-30T02 monthly 2026-09",
                    "10-31T02 monthly 2026-10",
                    "11-30T14 newest,monthly 2026-11",
                ],
            ),
            (
                Retention {
                    keep_within: Some(Duration::from_secs(36 * 3600)),
                    ..none
                },
                vec![
                    "11-29T02 within",
                    "11-30T02 within",
                    "11-30T14 newest,within",
                ],
            ),
            (
                Retention {
                    keep_last: Some(1),
                    keep_daily: Some(2),
                    keep_monthly: Some(2),
                    ..none
                },
                vec![
                    "10-31T02 monthly 2026-10",
                    "11-29T02 daily 2026-11-29",
                    "11-30T14 newest,last,daily 2026-11-30,monthly 2026-11",
                ],
            ),
        ];
        for (policy, want) in cases {
            assert_eq!(kept(&fleet(), policy, utc), want, "{policy}");
        }
    }

    #[test]
    fn days_are_the_servers_days() {
        // 23:30 UTC on the 29th is already the 30th in Berlin: one day, one file kept.
        let t = vec![at("2026-11-29T23:30:00Z"), at("2026-11-30T06:00:00Z")];
        let policy = Retention {
            keep_daily: Some(5),
            ..Retention::default()
        };
        assert_eq!(
            kept(&t, policy, chrono_tz::Europe::Berlin),
            ["11-30T06 newest,daily 2026-11-30"]
        );
        assert_eq!(kept(&t, policy, chrono_tz::UTC).len(), 2);
    }

    #[test]
    fn the_default_keeps_about_three_weeks_of_a_nightly_export_and_nothing_is_empty() {
        let kept = kept(&fleet(), Retention::DEFAULT, chrono_tz::UTC);
        // 7 days; weeks 47 and 46 (48 and 49 have a daily already); October and September.
        assert_eq!(kept.len(), 7 + 2 + 2, "{kept:#?}");
        assert!(decide(&[], &Retention::DEFAULT, chrono_tz::UTC).is_empty());
        assert_eq!(
            Retention::DEFAULT.to_string(),
            "keep_daily = 7, keep_weekly = 4, keep_monthly = 12"
        );
    }
}
