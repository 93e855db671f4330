//! Due instants a test can wait for: cron expressions that fire at a chosen second.

use chrono::{DateTime, Timelike, Utc};

/// A six-field cron expression that fires once a day, at `t`'s second (UTC).
pub fn daily_at(t: DateTime<Utc>) -> String {
    format!("{} {} {} * * *", t.second(), t.minute(), t.hour())
}

/// The `schedule = "…"` line for [`daily_at`] `t`.
pub fn schedule_at(t: DateTime<Utc>) -> String {
    format!("schedule = \"{}\"", daily_at(t))
}

/// [`daily_at`] `ms` milliseconds from now.
pub fn daily_in(ms: i64) -> String {
    daily_at(Utc::now() + chrono::Duration::milliseconds(ms))
}
