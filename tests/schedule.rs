//! The schedule rules, proved on fixed dates. Expected instants were worked out from the
//! calendar and each zone's 2026 DST changes (weekdays checked with `date -d`), not copied
//! from the code's output:
//!
//! | zone | spring forward | fall back |
//! |---|---|---|
//! | Europe/Berlin (CET +1, CEST +2) | 2026-03-29 01:00Z, 02:00 → 03:00 | 2026-10-25 01:00Z, 03:00 → 02:00 |
//! | America/New_York (EST −5, EDT −4) | 2026-03-08 07:00Z, 02:00 → 03:00 | 2026-11-01 06:00Z, 02:00 → 01:00 |
//! | Australia/Lord_Howe (+10:30, +11) | 2026-10-04 (03 15:30Z), 02:00 → 02:30 | 2026-04-05 (04 15:00Z), 02:00 → 01:30 |

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use chrono_tz::{America, Australia, Europe};
use jellyfin_export_scheduler::schedule::*;
use jellyfin_export_scheduler::timezone::{parse_timezone, system_timezone_from};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test date {s:?}: {e}"))
}

fn utcs(list: &[&str]) -> Vec<DateTime<Utc>> {
    list.iter().map(|s| utc(s)).collect()
}

fn sched(expr: &str, tz: Tz) -> Schedule {
    Schedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

fn upcoming(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<DateTime<Utc>> {
    sched(expr, tz).upcoming(utc(after), n)
}

/// The local wall-clock readings of instants, to show which slots fired.
fn local(instants: &[DateTime<Utc>], tz: Tz) -> Vec<String> {
    instants
        .iter()
        .map(|t| t.with_timezone(&tz).format("%H:%M %Z").to_string())
        .collect()
}

fn parse_error(expr: &str) -> String {
    match Schedule::parse(expr, Tz::UTC) {
        Ok(s) => panic!("{expr:?} should be refused, parsed as {s:?}"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------- DST: fixed hours

#[test]
fn berlin_fixed_time_skipped_by_spring_forward_fires_once_after_the_gap() {
    assert_eq!(
        upcoming("0 30 2 * * *", Europe::Berlin, "2026-03-27T12:00:00Z", 3),
        utcs(&[
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST, the first instant after
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ])
    );
}

#[test]
fn berlin_fixed_time_repeated_by_fall_back_fires_once_at_the_first() {
    let s = sched("0 30 2 * * *", Europe::Berlin);
    assert_eq!(
        s.upcoming(utc("2026-10-23T12:00:00Z"), 3),
        utcs(&[
            "2026-10-24T00:30:00Z", // 02:30 CEST
            "2026-10-25T00:30:00Z", // the first 02:30 (CEST); not again at 01:30Z (CET)
            "2026-10-26T01:30:00Z", // 02:30 CET
        ])
    );
    // Asked from between the two 02:30s, the second one is still not due.
    assert_eq!(
        s.next_after(utc("2026-10-25T01:10:00Z")),
        Some(utc("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn new_york_fixed_times_across_both_changes() {
    // 02:30 is skipped on 2026-03-08 (02:00 EST → 03:00 EDT).
    assert_eq!(
        upcoming("30 2 * * *", America::New_York, "2026-03-07T00:00:00Z", 3),
        utcs(&[
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT
            "2026-03-09T06:30:00Z", // 02:30 EDT
        ])
    );
    // 01:30 happens twice on 2026-11-01 (02:00 EDT → 01:00 EST).
    assert_eq!(
        upcoming("30 1 * * *", America::New_York, "2026-10-31T00:00:00Z", 3),
        utcs(&[
            "2026-10-31T05:30:00Z", // 01:30 EDT
            "2026-11-01T05:30:00Z", // first 01:30 (EDT); not 06:30Z
            "2026-11-02T06:30:00Z", // 01:30 EST
        ])
    );
}

#[test]
fn lord_howe_half_hour_changes_with_fixed_times() {
    // 2026-04-05: 02:00 LHDT → 01:30 LHST, so 01:30–01:59 happens twice.
    assert_eq!(
        upcoming(
            "45 1 * * *",
            Australia::Lord_Howe,
            "2026-04-03T00:00:00Z",
            3
        ),
        utcs(&[
            "2026-04-03T14:45:00Z", // 04-04 01:45 +11
            "2026-04-04T14:45:00Z", // 04-05 first 01:45 (+11); not 15:15Z
            "2026-04-05T15:15:00Z", // 04-06 01:45 +10:30
        ])
    );
    // 2026-10-04: 02:00 LHST → 02:30 LHDT, so 02:15 does not exist.
    assert_eq!(
        upcoming(
            "15 2 * * *",
            Australia::Lord_Howe,
            "2026-10-02T00:00:00Z",
            3
        ),
        utcs(&[
            "2026-10-02T15:45:00Z", // 10-03 02:15 +10:30
            "2026-10-03T15:30:00Z", // 10-04 02:30 +11, the first instant after the gap
            "2026-10-04T15:15:00Z", // 10-05 02:15 +11
        ])
    );
}

/// croner applies its fixed-time rule only when second, minute and hour are all single
/// values; the issue's rule looks at the hour field alone. A list of hours is still fixed.
#[test]
fn a_list_of_fixed_hours_follows_the_fixed_rule() {
    let s = sched("0 30 2,14 * * *", Europe::Berlin);
    assert!(!s.follows_clock());
    assert_eq!(
        s.upcoming(utc("2026-03-28T12:00:00Z"), 3),
        utcs(&[
            "2026-03-28T13:30:00Z", // 14:30 CET
            "2026-03-29T01:00:00Z", // 02:30 skipped → 03:00 CEST
            "2026-03-29T12:30:00Z", // 14:30 CEST
        ])
    );
    assert_eq!(
        s.upcoming(utc("2026-10-24T23:00:00Z"), 2),
        utcs(&["2026-10-25T00:30:00Z", "2026-10-25T13:30:00Z"])
    );
}

#[test]
fn several_skipped_times_collapse_into_one_run_after_the_gap() {
    assert_eq!(
        upcoming("0 0,30 2 * * *", Europe::Berlin, "2026-03-28T23:30:00Z", 3),
        utcs(&[
            "2026-03-29T01:00:00Z", // 02:00 and 02:30 both → 03:00 CEST, once
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:30:00Z",
        ])
    );
    // ... and with a regular run at 03:00: still one run at 03:00.
    assert_eq!(
        upcoming("0 2,3 * * *", Europe::Berlin, "2026-03-28T22:00:00Z", 3),
        utcs(&[
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T01:00:00Z",
        ])
    );
    // Fall back: both times once, in the first (CEST) pass only.
    assert_eq!(
        upcoming("0 0,30 2 * * *", Europe::Berlin, "2026-10-24T23:00:00Z", 3),
        utcs(&[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:00:00Z",
        ])
    );
}

#[test]
fn fixed_hour_with_stepped_minutes_runs_each_slot_once() {
    let s = sched("*/15 2 * * *", Europe::Berlin);
    // Spring: all four 02:xx slots are skipped and collapse into one run at 03:00 CEST.
    assert_eq!(
        s.upcoming(utc("2026-03-28T23:00:00Z"), 2),
        utcs(&["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"])
    );
    // Fall: each slot once, in the first (CEST) pass; next 02:00 CET is the next day.
    assert_eq!(
        s.upcoming(utc("2026-10-24T23:00:00Z"), 5),
        utcs(&[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:15:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z",
            "2026-10-26T01:00:00Z",
        ])
    );
}

// ---------------------------------------------------------------- DST: following the clock

#[test]
fn berlin_every_15_minutes_skips_the_missing_hour() {
    let s = sched("0 */15 * * * *", Europe::Berlin);
    assert!(s.follows_clock());
    let due = s.upcoming(utc("2026-03-29T00:40:00Z"), 5);
    assert_eq!(
        due,
        utcs(&[
            "2026-03-29T00:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T01:45:00Z",
        ])
    );
    assert_eq!(
        local(&due, Europe::Berlin),
        [
            "01:45 CET",
            "03:00 CEST",
            "03:15 CEST",
            "03:30 CEST",
            "03:45 CEST"
        ]
    );
}

#[test]
fn berlin_every_15_minutes_fires_each_real_instant_of_the_repeated_hour() {
    let due = upcoming("0 */15 * * * *", Europe::Berlin, "2026-10-25T00:40:00Z", 6);
    assert_eq!(
        due,
        utcs(&[
            "2026-10-25T00:45:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:15:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T01:45:00Z",
            "2026-10-25T02:00:00Z",
        ])
    );
    assert_eq!(
        local(&due, Europe::Berlin),
        [
            "02:45 CEST",
            "02:00 CET",
            "02:15 CET",
            "02:30 CET",
            "02:45 CET",
            "03:00 CET"
        ]
    );
}

#[test]
fn berlin_step_hours_skip_and_repeat_with_the_clock() {
    let s = sched("0 0 */2 * * *", Europe::Berlin);
    assert!(s.follows_clock());
    assert_eq!(
        s.upcoming(utc("2026-03-28T22:00:00Z"), 3),
        utcs(&[
            "2026-03-28T23:00:00Z", // 00:00 CET
            "2026-03-29T02:00:00Z", // 04:00 CEST (02:00 does not exist)
            "2026-03-29T04:00:00Z", // 06:00 CEST
        ])
    );
    assert_eq!(
        s.upcoming(utc("2026-10-24T21:00:00Z"), 4),
        utcs(&[
            "2026-10-24T22:00:00Z", // 00:00 CEST
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T01:00:00Z", // 02:00 CET
            "2026-10-25T03:00:00Z", // 04:00 CET
        ])
    );
}

#[test]
fn new_york_every_30_minutes_across_both_changes() {
    let spring = upcoming("*/30 * * * *", America::New_York, "2026-03-08T06:00:00Z", 3);
    assert_eq!(
        spring,
        utcs(&[
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z"
        ])
    );
    assert_eq!(
        local(&spring, America::New_York),
        ["01:30 EST", "03:00 EDT", "03:30 EDT"]
    );
    let fall = upcoming("*/30 * * * *", America::New_York, "2026-11-01T05:00:00Z", 4);
    assert_eq!(
        fall,
        utcs(&[
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ])
    );
    assert_eq!(
        local(&fall, America::New_York),
        ["01:30 EDT", "01:00 EST", "01:30 EST", "02:00 EST"]
    );
}

#[test]
fn lord_howe_hourly_follows_the_half_hour_shifts() {
    // Fall back at 15:00Z: 02:00 +11 never shows; the next :00 is 02:00 +10:30 at 15:30Z.
    assert_eq!(
        upcoming("0 * * * *", Australia::Lord_Howe, "2026-04-04T13:30:00Z", 3),
        utcs(&[
            "2026-04-04T14:00:00Z", // 01:00 +11
            "2026-04-04T15:30:00Z", // 02:00 +10:30
            "2026-04-04T16:30:00Z", // 03:00 +10:30
        ])
    );
    // Spring forward at 15:30Z: 02:00 +10:30 is skipped straight to 02:30 +11.
    assert_eq!(
        upcoming("0 * * * *", Australia::Lord_Howe, "2026-10-03T14:00:00Z", 3),
        utcs(&[
            "2026-10-03T14:30:00Z", // 01:00 +10:30
            "2026-10-03T16:00:00Z", // 03:00 +11
            "2026-10-03T17:00:00Z", // 04:00 +11
        ])
    );
}

#[test]
fn lord_howe_every_20_minutes_repeats_only_the_repeated_slot() {
    // 01:30–01:59 happens twice; of the :00/:20/:40 slots only 01:40 lies in it.
    assert_eq!(
        upcoming(
            "*/20 * * * *",
            Australia::Lord_Howe,
            "2026-04-04T14:30:00Z",
            4
        ),
        utcs(&[
            "2026-04-04T14:40:00Z", // 01:40 +11
            "2026-04-04T15:10:00Z", // 01:40 +10:30
            "2026-04-04T15:30:00Z", // 02:00 +10:30
            "2026-04-04T15:50:00Z", // 02:20 +10:30
        ])
    );
}

#[test]
fn which_hour_fields_follow_the_clock() {
    for expr in [
        "*/15 * * * *",
        "0 */2 * * *",
        "0 0-23 * * *",
        "0 1-23/2 * * *",
        "@hourly",
    ] {
        assert!(sched(expr, Tz::UTC).follows_clock(), "{expr}");
    }
    for expr in [
        "30 2 * * *",
        "0 2,14 * * *",
        "*/15 2 * * *",
        "0 9-17 * * *",
        "@daily",
    ] {
        assert!(!sched(expr, Tz::UTC).follows_clock(), "{expr}");
    }
}

// ---------------------------------------------------------------- strictly later

#[test]
fn next_after_is_strictly_later_even_with_sub_seconds() {
    let every_second = sched("* * * * * *", Tz::UTC);
    assert_eq!(
        every_second.next_after(utc("2026-01-01T00:00:00Z")),
        Some(utc("2026-01-01T00:00:01Z"))
    );
    assert_eq!(
        every_second.next_after(utc("2026-01-01T00:00:00.5Z")),
        Some(utc("2026-01-01T00:00:01Z"))
    );

    let midnight = sched("0 0 * * *", Tz::UTC);
    assert_eq!(
        midnight.next_after(utc("2026-01-01T00:00:00Z")),
        Some(utc("2026-01-02T00:00:00Z"))
    );
    assert_eq!(
        midnight.next_after(utc("2025-12-31T23:59:59.999999999Z")),
        Some(utc("2026-01-01T00:00:00Z"))
    );
    assert_eq!(
        midnight.next_after(utc("2026-01-01T00:00:00.000000001Z")),
        Some(utc("2026-01-02T00:00:00Z"))
    );

    // Both DST paths, at the instant a skipped 02:30 runs.
    let fixed = sched("30 2 * * *", Europe::Berlin);
    assert_eq!(
        fixed.next_after(utc("2026-03-29T00:59:59.5Z")),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        fixed.next_after(utc("2026-03-29T01:00:00.5Z")),
        Some(utc("2026-03-30T00:30:00Z"))
    );
    let clock = sched("*/15 * * * *", Europe::Berlin);
    assert_eq!(
        clock.next_after(utc("2026-10-25T01:00:00.25Z")),
        Some(utc("2026-10-25T01:15:00Z"))
    );
}

// ---------------------------------------------------------------- calendar

#[test]
fn day_31_skips_short_months() {
    assert_eq!(
        upcoming("0 0 31 * *", Tz::UTC, "2026-01-31T00:00:00Z", 7),
        utcs(&[
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z",
            "2026-08-31T00:00:00Z",
            "2026-10-31T00:00:00Z",
            "2026-12-31T00:00:00Z",
            "2027-01-31T00:00:00Z",
        ])
    );
}

#[test]
fn leap_day_waits_for_a_leap_year() {
    assert_eq!(
        upcoming("0 0 29 2 *", Tz::UTC, "2026-01-01T00:00:00Z", 2),
        utcs(&["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"])
    );
}

#[test]
fn l_is_the_last_day_of_the_month() {
    assert_eq!(
        upcoming("0 0 L * *", Tz::UTC, "2026-01-01T00:00:00Z", 4),
        utcs(&[
            "2026-01-31T00:00:00Z",
            "2026-02-28T00:00:00Z",
            "2026-03-31T00:00:00Z",
            "2026-04-30T00:00:00Z",
        ])
    );
    assert_eq!(
        upcoming("0 0 L 2 *", Tz::UTC, "2027-03-01T00:00:00Z", 1),
        utcs(&["2028-02-29T00:00:00Z"])
    );
    // 5L: the last Friday (2026-02-28 is a Saturday, 2026-03-29 a Sunday).
    assert_eq!(
        upcoming("0 0 * * 5L", Tz::UTC, "2026-01-01T00:00:00Z", 3),
        utcs(&[
            "2026-01-30T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-27T00:00:00Z",
        ])
    );
}

#[test]
fn w_is_the_nearest_weekday_within_the_month() {
    // 2026-02-15 and 2026-03-15 are Sundays → the Mondays after; 2026-04-15 is a Wednesday.
    assert_eq!(
        upcoming("0 0 15W * *", Tz::UTC, "2026-02-01T00:00:00Z", 3),
        utcs(&[
            "2026-02-16T00:00:00Z",
            "2026-03-16T00:00:00Z",
            "2026-04-15T00:00:00Z",
        ])
    );
    // 2026-08-01 is a Saturday; Friday would be in July, so Monday the 3rd.
    assert_eq!(
        upcoming("0 0 1W * *", Tz::UTC, "2026-07-15T00:00:00Z", 1),
        utcs(&["2026-08-03T00:00:00Z"])
    );
    // LW: the last weekday (Jan 31 and Feb 28 2026 are Saturdays, Mar 31 a Tuesday).
    assert_eq!(
        upcoming("0 0 LW * *", Tz::UTC, "2026-01-01T00:00:00Z", 3),
        utcs(&[
            "2026-01-30T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-31T00:00:00Z",
        ])
    );
}

#[test]
fn hash_is_the_nth_weekday() {
    // Second Fridays: Jan 1 2026 is a Thursday, Feb 1 and Mar 1 are Sundays.
    let expected = utcs(&[
        "2026-01-09T00:00:00Z",
        "2026-02-13T00:00:00Z",
        "2026-03-13T00:00:00Z",
    ]);
    assert_eq!(
        upcoming("0 0 * * 5#2", Tz::UTC, "2026-01-01T00:00:00Z", 3),
        expected
    );
    assert_eq!(
        upcoming("0 0 * * FRI#2", Tz::UTC, "2026-01-01T00:00:00Z", 3),
        expected
    );
}

#[test]
fn both_day_fields_match_when_either_matches() {
    // Every Friday and every 13th; 2026-04-13 is a Monday.
    assert_eq!(
        upcoming("0 0 13 * FRI", Tz::UTC, "2026-02-01T00:00:00Z", 12),
        utcs(&[
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",
            "2026-02-20T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-06T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-03-20T00:00:00Z",
            "2026-03-27T00:00:00Z",
            "2026-04-03T00:00:00Z",
            "2026-04-10T00:00:00Z",
            "2026-04-13T00:00:00Z",
            "2026-04-17T00:00:00Z",
        ])
    );
    // croner's `+` asks for both: the Friday-13ths of 2026.
    assert_eq!(
        upcoming("0 0 13 * +FRI", Tz::UTC, "2026-01-01T00:00:00Z", 3),
        utcs(&[
            "2026-02-13T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-11-13T00:00:00Z",
        ])
    );
}

#[test]
fn names_for_weekdays_and_months() {
    // From Friday 2026-01-02 10:00: the next weekday mornings.
    assert_eq!(
        upcoming("0 9 * * MON-FRI", Tz::UTC, "2026-01-02T10:00:00Z", 6),
        utcs(&[
            "2026-01-05T09:00:00Z",
            "2026-01-06T09:00:00Z",
            "2026-01-07T09:00:00Z",
            "2026-01-08T09:00:00Z",
            "2026-01-09T09:00:00Z",
            "2026-01-12T09:00:00Z",
        ])
    );
    // FRI-SUN is Friday to Sunday, not a backwards 5-0.
    assert_eq!(
        upcoming("0 0 * * fri-sun", Tz::UTC, "2026-01-01T00:00:00Z", 4),
        utcs(&[
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-09T00:00:00Z",
        ])
    );
    // 7 is Sunday too.
    assert_eq!(
        upcoming("0 0 * * 7", Tz::UTC, "2026-01-01T00:00:00Z", 1),
        utcs(&["2026-01-04T00:00:00Z"])
    );
    for expr in ["0 0 1 JAN *", "0 0 1 jan *", "0 0 1 1 *"] {
        assert_eq!(
            upcoming(expr, Tz::UTC, "2026-06-01T00:00:00Z", 1),
            utcs(&["2027-01-01T00:00:00Z"]),
            "{expr}"
        );
    }
}

#[test]
fn aliases_including_midnight() {
    let after = utc("2026-01-01T00:00:00Z"); // a Thursday
    let next = |alias: &str| sched(alias, Tz::UTC).next_after(after);
    assert_eq!(next("@midnight"), Some(utc("2026-01-02T00:00:00Z")));
    assert_eq!(next("@daily"), Some(utc("2026-01-02T00:00:00Z")));
    assert_eq!(next("@DAILY"), Some(utc("2026-01-02T00:00:00Z")));
    assert_eq!(next("@hourly"), Some(utc("2026-01-01T01:00:00Z")));
    assert_eq!(next("@weekly"), Some(utc("2026-01-04T00:00:00Z")));
    assert_eq!(next("@monthly"), Some(utc("2026-02-01T00:00:00Z")));
    assert_eq!(next("@yearly"), Some(utc("2027-01-01T00:00:00Z")));
    assert_eq!(next("@annually"), Some(utc("2027-01-01T00:00:00Z")));
    let s = sched(" @midnight ", Europe::Berlin);
    assert_eq!(s.expr(), "@midnight");
    assert_eq!(s.timezone(), Europe::Berlin);
}

#[test]
fn five_fields_run_on_second_zero_six_fields_lead_with_seconds() {
    let after = utc("2026-01-01T00:00:00Z");
    assert_eq!(
        sched("30 2 * * *", Tz::UTC).next_after(after),
        Some(utc("2026-01-01T02:30:00Z"))
    );
    assert_eq!(
        sched("0 30 2 * * *", Tz::UTC).next_after(after),
        Some(utc("2026-01-01T02:30:00Z"))
    );
    assert_eq!(
        sched("15 30 2 * * *", Tz::UTC).next_after(after),
        Some(utc("2026-01-01T02:30:15Z"))
    );
}

// ---------------------------------------------------------------- invalid expressions

#[test]
fn errors_name_the_field_and_the_problem() {
    let cases = [
        (
            "61 * * * *",
            r#"minute field (1st of 5) "61": 61 is out of range 0-59"#,
        ),
        (
            "0 61 * * * *",
            r#"minute field (2nd of 6) "61": 61 is out of range 0-59"#,
        ),
        (
            "60 0 * * * *",
            r#"second field (1st of 6) "60": 60 is out of range 0-59"#,
        ),
        (
            "0 24 * * *",
            r#"hour field (2nd of 5) "24": 24 is out of range 0-23"#,
        ),
        (
            "0 0 32 * *",
            r#"day-of-month field (3rd of 5) "32": 32 is out of range 1-31"#,
        ),
        (
            "0 0 0 * *",
            r#"day-of-month field (3rd of 5) "0": 0 is out of range 1-31"#,
        ),
        (
            "0 0 * 13 *",
            r#"month field (4th of 5) "13": 13 is out of range 1-12"#,
        ),
        (
            "0 0 * * 8",
            r#"day-of-week field (5th of 5) "8": 8 is out of range 0-7"#,
        ),
        (
            "*/0 * * * *",
            r#"minute field (1st of 5) "*/0": a step must be at least 1"#,
        ),
        (
            "0 22-2 * * *",
            r#"hour field (2nd of 5) "22-2": range 22-2 runs backwards; cron ranges do not wrap, write 22-23,0-2"#,
        ),
        (
            "0 0 * * 5#6",
            r#"day-of-week field (5th of 5) "5#6": #6: the nth weekday of a month must be 1 to 5"#,
        ),
        (
            "0 0 * MON *",
            r#"month field (4th of 5) "MON": MON is a day-of-week name; it belongs in the day-of-week field (the last one)"#,
        ),
        (
            "0 0 * * JAN",
            r#"day-of-week field (5th of 5) "JAN": JAN is a month name; it belongs in the month field (the 4th of 5)"#,
        ),
        (
            "0 0 1,,2 * *",
            r#"day-of-month field (3rd of 5) "1,,2": empty item in a list"#,
        ),
        (
            "0 ? * * *",
            r#"hour field (2nd of 5) "?": ? is only allowed in the day-of-month and day-of-week fields"#,
        ),
        (
            "0 0 1% * *",
            r#"day-of-month field (3rd of 5) "1%": character '%' is not allowed here"#,
        ),
        // croner accepts a bare L in day-of-week and then never matches it.
        (
            "0 0 * * L",
            r#"day-of-week field (5th of 5) "L": L alone means nothing"#,
        ),
    ];
    for (expr, expected) in cases {
        let got = parse_error(expr);
        assert!(
            got.starts_with(expected),
            "{expr:?}:\n got  {got}\n want {expected}"
        );
    }
}

#[test]
fn croner_syntax_errors_are_attributed_to_their_field() {
    // A bare start with a step is refused by croner (as by vixie cron): which field?
    let got = parse_error("0 5/15 * * *");
    assert!(
        got.starts_with(r#"hour field (2nd of 5) "5/15": "#),
        "{got}"
    );
    let got = parse_error("0 0 * * 1-2-3");
    assert!(
        got.starts_with(r#"day-of-week field (5th of 5) "1-2-3": "#),
        "{got}"
    );
    let got = parse_error("x 0 * * *");
    assert!(got.starts_with(r#"minute field (1st of 5) "x": "#), "{got}");
}

#[test]
fn field_count_aliases_and_empty() {
    assert_eq!(
        parse_error("0 0 0 * * * 2026"),
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds), found 7"
    );
    assert_eq!(
        parse_error("0 0 *"),
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading seconds), found 3"
    );
    assert_eq!(
        parse_error("@fortnightly"),
        r#"unknown alias "@fortnightly"; valid aliases are @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"#
    );
    assert!(matches!(
        Schedule::parse("   ", Tz::UTC),
        Err(ScheduleError::Empty)
    ));
    assert!(matches!(
        Schedule::parse("0 0 * * * *  *", Tz::UTC),
        Err(ScheduleError::FieldCount { found: 7 })
    ));
}

#[test]
fn an_expression_that_never_matches_is_refused() {
    for expr in ["0 0 30 2 *", "0 0 31 4 *"] {
        assert!(
            matches!(
                Schedule::parse(expr, Tz::UTC),
                Err(ScheduleError::NeverMatches { .. })
            ),
            "{expr}"
        );
    }
}

#[test]
fn field_errors_carry_the_field_as_data() {
    match Schedule::parse("0 0 * 13 *", Tz::UTC) {
        Err(ScheduleError::Field {
            field,
            position,
            count,
            text,
            ..
        }) => {
            assert_eq!(field, Field::Month);
            assert_eq!((position, count, text.as_str()), (4, 5, "13"));
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- timezones

#[test]
fn timezone_names_and_suggestions() {
    assert_eq!(parse_timezone("Europe/Berlin"), Ok(Europe::Berlin));
    assert_eq!(parse_timezone(" UTC "), Ok(Tz::UTC));
    assert_eq!(
        parse_timezone("Europe/Berln"),
        Err(r#"unknown timezone "Europe/Berln"; did you mean Europe/Berlin?"#.to_string())
    );
    assert_eq!(
        parse_timezone("europe/berlin"),
        Err(r#"unknown timezone "europe/berlin"; did you mean Europe/Berlin?"#.to_string())
    );
    assert_eq!(
        parse_timezone("America/NewYork"),
        Err(r#"unknown timezone "America/NewYork"; did you mean America/New_York?"#.to_string())
    );
    assert_eq!(
        parse_timezone("berlin"),
        Err(r#"unknown timezone "berlin"; did you mean Europe/Berlin?"#.to_string())
    );
    assert_eq!(
        parse_timezone("Mars/Olympus_Mons"),
        Err(r#"unknown timezone "Mars/Olympus_Mons"; expected an IANA name such as Europe/Berlin, America/New_York or UTC"#.to_string())
    );
    assert!(parse_timezone("").is_err());
}

/// Regression: suggestions computed the edit distance to every zone name in full, which is
/// quadratic in the name's length; `check` on a config with a 7 MB timezone ran for minutes.
#[test]
fn a_huge_timezone_name_is_refused_quickly() {
    let huge = "b".repeat(2_000_000);
    let started = std::time::Instant::now();
    let err = parse_timezone(&huge).unwrap_err();
    assert!(err.starts_with("unknown timezone \"bbb"), "{}", &err[..80]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn system_timezone_sources_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let none = dir.path().join("missing");
    let link = dir.path().join("localtime");
    let file = dir.path().join("timezone");

    // Nothing at all: UTC.
    assert_eq!(system_timezone_from(None, &none, &none), Tz::UTC);

    // /etc/timezone.
    std::fs::write(&file, "Europe/Paris\n").expect("write");
    assert_eq!(system_timezone_from(None, &none, &file), Europe::Paris);

    // /etc/localtime's link target wins over /etc/timezone (the target need not exist).
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Asia/Tokyo", &link).expect("symlink");
    assert_eq!(
        system_timezone_from(None, &link, &file),
        chrono_tz::Asia::Tokyo
    );
    let posix = dir.path().join("localtime-posix");
    std::os::unix::fs::symlink("../usr/share/zoneinfo/posix/Asia/Kolkata", &posix)
        .expect("symlink");
    assert_eq!(
        system_timezone_from(None, &posix, &none),
        chrono_tz::Asia::Kolkata
    );

    // $TZ wins, with or without ':' or as a zoneinfo path; a POSIX rule falls through.
    assert_eq!(
        system_timezone_from(Some(":Europe/Berlin"), &link, &file),
        Europe::Berlin
    );
    assert_eq!(
        system_timezone_from(Some("America/New_York"), &link, &file),
        America::New_York
    );
    assert_eq!(
        system_timezone_from(Some(":/usr/share/zoneinfo/Europe/Rome"), &link, &file),
        Europe::Rome
    );
    assert_eq!(
        system_timezone_from(Some("CET-1CEST,M3.5.0,M10.5.0/3"), &link, &file),
        chrono_tz::Asia::Tokyo
    );

    // A regular file at /etc/localtime (no link) falls through to /etc/timezone.
    let regular = dir.path().join("localtime-copy");
    std::fs::write(&regular, b"TZif").expect("write");
    assert_eq!(system_timezone_from(None, &regular, &file), Europe::Paris);
    let _ = system_timezone_from(None, Path::new("/nonexistent"), Path::new("/nonexistent"));
}

// ---------------------------------------------------------------- jitter

#[test]
fn jitter_is_zero_without_jitter() {
    assert_eq!(jitter_offset("living-room", Duration::ZERO), Duration::ZERO);
    assert_eq!(
        jitter_offset("living-room", Duration::from_micros(999)),
        Duration::ZERO
    );
}

#[test]
fn jitter_is_pinned_to_fnv1a_64() {
    // With a modulus above every hash the offset is the hash itself: these are the
    // published FNV-1a 64 test vectors, so the function cannot drift between versions.
    let huge = Duration::from_millis(u64::MAX);
    assert_eq!(
        jitter_offset("", huge),
        Duration::from_millis(0xcbf2_9ce4_8422_2325)
    );
    assert_eq!(
        jitter_offset("a", huge),
        Duration::from_millis(0xaf63_dc4c_8601_ec8c)
    );
    assert_eq!(
        jitter_offset("foobar", huge),
        Duration::from_millis(0x8594_4171_f739_67e8)
    );
    // 0x6036230c4731aa22 mod 3_600_000 (computed independently in Python).
    assert_eq!(
        jitter_offset("jellyfin-living-room", Duration::from_secs(3600)),
        Duration::from_millis(2_874_146)
    );
}

#[test]
fn jitter_stays_below_the_jitter_and_spreads() {
    let jitter = Duration::from_secs(600);
    let offsets: Vec<Duration> = (0..200)
        .map(|i| jitter_offset(&format!("server-{i}"), jitter))
        .collect();
    assert!(offsets.iter().all(|o| *o < jitter));
    let mut distinct = offsets.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 190,
        "offsets should spread: {}",
        distinct.len()
    );
    assert_eq!(offsets[7], jitter_offset("server-7", jitter), "stable");
}

// ---------------------------------------------------------------- catch-up

#[test]
fn latest_at_or_before_for_a_fixed_time() {
    let s = sched("30 2 * * *", Europe::Berlin);
    let day = Duration::from_secs(86_400);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    // The skipped 02:30 ran at 03:00 CEST (01:00Z).
    let at = utc("2026-03-29T05:00:00Z");
    assert_eq!(
        s.latest_at_or_before(at, day),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at, hours(4)),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(s.latest_at_or_before(at, hours(3)), None);
    // At the due instant itself, with no window at all.
    assert_eq!(
        s.latest_at_or_before(utc("2026-03-29T01:00:00Z"), Duration::ZERO),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-03-29T00:59:59.999Z"), day),
        Some(utc("2026-03-28T01:30:00Z"))
    );
    // From inside the repeated hour: the first 02:30 (CEST) is the latest; the second never runs.
    assert_eq!(
        s.latest_at_or_before(utc("2026-10-25T01:45:00Z"), day),
        Some(utc("2026-10-25T00:30:00Z"))
    );
}

#[test]
fn latest_at_or_before_for_a_clock_following_schedule() {
    let s = sched("*/15 * * * *", Europe::Berlin);
    let hour = Duration::from_secs(3600);
    assert_eq!(
        s.latest_at_or_before(utc("2026-10-25T01:20:00Z"), hour),
        Some(utc("2026-10-25T01:15:00Z")) // 02:15 CET
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-10-25T01:00:00.5Z"), hour),
        Some(utc("2026-10-25T01:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-03-29T01:05:00Z"), hour),
        Some(utc("2026-03-29T01:00:00Z")) // 03:00 CEST
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-03-29T00:59:00Z"), hour),
        Some(utc("2026-03-29T00:45:00Z")) // 01:45 CET
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-03-29T00:59:00Z"), Duration::from_secs(60)),
        None
    );
}

/// Walking forward and looking back must agree on every due instant around each change:
/// the latest at a due instant is itself, and just before it is the previous one.
#[test]
fn forward_and_backward_agree_across_dst() {
    let cases: [(&str, Tz, &str); 8] = [
        ("30 2 * * *", Europe::Berlin, "2026-03-27T00:00:00Z"),
        ("30 2 * * *", Europe::Berlin, "2026-10-23T00:00:00Z"),
        ("0 0,30 2,14 * * *", Europe::Berlin, "2026-10-24T00:00:00Z"),
        ("*/15 * * * *", Europe::Berlin, "2026-03-28T22:00:00Z"),
        ("*/15 * * * *", Europe::Berlin, "2026-10-24T22:00:00Z"),
        ("*/30 * * * *", America::New_York, "2026-11-01T03:00:00Z"),
        ("*/20 * * * *", Australia::Lord_Howe, "2026-04-04T12:00:00Z"),
        ("45 1 * * *", Australia::Lord_Howe, "2026-04-02T00:00:00Z"),
    ];
    let week = Duration::from_secs(7 * 86_400);
    for (expr, tz, start) in cases {
        let s = sched(expr, tz);
        let due = s.upcoming(utc(start), 40);
        assert!(due.windows(2).all(|w| w[0] < w[1]), "{expr}: increasing");
        for pair in due.windows(2) {
            let (prev, t) = (pair[0], pair[1]);
            assert_eq!(s.latest_at_or_before(t, week), Some(t), "{expr} at {t}");
            let just_before = t - chrono::TimeDelta::nanoseconds(1);
            assert_eq!(
                s.latest_at_or_before(just_before, week),
                Some(prev),
                "{expr} before {t}"
            );
        }
    }
}

// ---------------------------------------------------------------- DST notes

fn berlin_2026_notes(expr: &str) -> Vec<String> {
    sched(expr, Europe::Berlin).dst_notes(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
}

#[test]
fn dst_notes_for_a_fixed_time_in_berlin_2026() {
    assert_eq!(
        berlin_2026_notes("30 2 * * *"),
        [
            "2026-03-29: 02:30 does not exist in Europe/Berlin (clocks go from 02:00 to 03:00); fires once at 03:00 CEST instead",
            "2026-10-25: 02:30 happens twice in Europe/Berlin; fires once, at the first (02:30 CEST)",
        ]
    );
    assert_eq!(
        berlin_2026_notes("0 0,30 2 * * *"),
        [
            "2026-03-29: 02:00 and 02:30 do not exist in Europe/Berlin (clocks go from 02:00 to 03:00); fires once at 03:00 CEST instead",
            "2026-10-25: 02:00 and 02:30 happen twice in Europe/Berlin; each fires once, at the first (CEST)",
        ]
    );
    assert_eq!(
        berlin_2026_notes("0 2,3 * * *")[0],
        "2026-03-29: 02:00 does not exist in Europe/Berlin (clocks go from 02:00 to 03:00); fires once at 03:00 CEST instead, together with the regular 03:00 run"
    );
}

#[test]
fn dst_notes_for_a_clock_following_schedule_in_berlin_2026() {
    assert_eq!(
        berlin_2026_notes("*/15 * * * *"),
        [
            "2026-03-29: local 02:00–02:59 does not exist in Europe/Berlin; those slots are skipped (02:00, 02:15, 02:30 and 02:45)",
            "2026-10-25: local 02:00–02:59 happens twice in Europe/Berlin; each real instant fires once (02:00, 02:15, 02:30 and 02:45 run in CEST and again in CET)",
        ]
    );
    let every_minute = berlin_2026_notes("* * * * *");
    assert_eq!(every_minute.len(), 2);
    assert!(
        every_minute[0].ends_with("those slots are skipped (02:00, 02:01, 02:02, … (60 times))"),
        "{}",
        every_minute[0]
    );
}

#[test]
fn dst_notes_only_when_the_change_matters() {
    // Noon, Mondays (the changes are on Sundays), and hours 0/6/12/18 never meet 02:xx.
    for expr in ["0 12 * * *", "30 2 * * MON", "0 */6 * * *", "30 2 1 * *"] {
        assert_eq!(berlin_2026_notes(expr), Vec::<String>::new(), "{expr}");
    }
    // UTC has no changes.
    assert!(
        sched("30 2 * * *", Tz::UTC)
            .dst_notes(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
            .is_empty()
    );
    // Only changes inside the window.
    assert_eq!(
        sched("30 2 * * *", Europe::Berlin)
            .dst_notes(utc("2026-04-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
            .len(),
        1
    );
}

#[test]
fn dst_notes_for_lord_howe_half_hour_gap() {
    let notes = sched("*/15 * * * *", Australia::Lord_Howe)
        .dst_notes(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("2026-04-05: local 01:30–01:59 happens twice in Australia/Lord_Howe; each real instant fires once (01:30 and 01:45 run in "),
        "{}",
        notes[0]
    );
    assert_eq!(
        notes[1],
        "2026-10-04: local 02:00–02:29 does not exist in Australia/Lord_Howe; those slots are skipped (02:00 and 02:15)"
    );
}
