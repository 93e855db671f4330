// TEMPORARY STUB (not committed): replaced by the schedule branch.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    cron: croner::Cron,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);
impl Schedule {
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError(e.to_string()))?;
        Ok(Schedule {
            expr: expr.into(),
            tz,
            cron,
        })
    }
    pub fn expr(&self) -> &str {
        &self.expr
    }
    pub fn timezone(&self) -> Tz {
        self.tz
    }
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut v = vec![];
        let mut t = after;
        for _ in 0..n {
            match self.next_after(t) {
                Some(x) => {
                    v.push(x);
                    t = x;
                }
                None => break,
            }
        }
        v
    }
    pub fn latest_at_or_before(
        &self,
        at: DateTime<Utc>,
        within: std::time::Duration,
    ) -> Option<DateTime<Utc>> {
        let _ = (at, within);
        None
    }
    pub fn dst_notes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        let _ = (from, to);
        vec![]
    }
}
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse()
        .map_err(|_| format!("unknown timezone {name:?}"))
}
pub fn system_timezone() -> Tz {
    Tz::UTC
}
pub fn jitter_offset(_server_name: &str, _jitter: std::time::Duration) -> std::time::Duration {
    std::time::Duration::ZERO
}
