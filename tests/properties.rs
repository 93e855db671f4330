//! Properties of the schedule maths over random cron expressions, timezones and instants
//! (issue #7), checked with proptest:
//!
//! - `next_after(t)` is strictly later than `t` and a whole second;
//! - `upcoming(t, 20)` is strictly increasing, never two due instants in one real second;
//! - `latest_at_or_before` agrees with `upcoming` (each due instant is its own latest, the
//!   instant just before it has the previous one, and from `t` the next is `upcoming`'s first);
//! - a daily fixed-time schedule (`S M H * * *`) fires on consecutive local calendar days
//!   for a whole year in DST zones: no day skipped, none twice.
//!
//! The expression generator builds mostly-valid expressions from the syntax that
//! `Schedule::parse` documents (5 and 6 fields, numbers, ranges, steps, lists, names, `L`,
//! `W`, `#`, `?`, `+`, aliases) and keeps only those it accepts. Zones are drawn from
//! `chrono_tz::TZ_VARIANTS`, half of the time from a list of DST and exotic zones. Instants
//! run from 1970 to 2100 with sub-second parts. `PROPTEST_CASES` overrides the case counts
//! set below (chosen so the file runs in a few seconds in a debug build on 2 cores).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use jellyfin_export_scheduler::schedule::Schedule;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Zones with DST or otherwise unusual offsets, weighted up against the other ~600.
const INTERESTING_ZONES: &[Tz] = &[
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe, // 30-minute DST
    chrono_tz::Europe::London,
    chrono_tz::Europe::Dublin, // "negative" DST in the tz database
    chrono_tz::America::Santiago,
    chrono_tz::America::Havana, // changes at midnight
    chrono_tz::America::St_Johns,
    chrono_tz::Pacific::Chatham,   // +12:45 / +13:45
    chrono_tz::Antarctica::Troll,  // 2-hour DST
    chrono_tz::Africa::Casablanca, // DST suspended for Ramadan
    chrono_tz::Asia::Tehran,
    chrono_tz::Asia::Kathmandu,     // +5:45
    chrono_tz::Australia::Adelaide, // +9:30 / +10:30
    chrono_tz::America::Sao_Paulo,
    chrono_tz::Pacific::Apia, // skipped 2011-12-30 entirely
];

/// Zones whose DST changes are ordinary (no skipped calendar day), for the daily property.
const DST_ZONES: &[Tz] = &[
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Europe::London,
    chrono_tz::Europe::Dublin,
    chrono_tz::America::Santiago,
    chrono_tz::America::Havana,
    chrono_tz::America::St_Johns,
    chrono_tz::Pacific::Chatham,
    chrono_tz::Antarctica::Troll,
    chrono_tz::Africa::Casablanca,
    chrono_tz::Asia::Tehran,
    chrono_tz::Australia::Adelaide,
    chrono_tz::America::Sao_Paulo,
];

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const ALIASES: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// 1970-01-01 to 2100-01-01, in seconds.
const EPOCH_2100: i64 = 4_102_444_800;

fn any_zone() -> impl Strategy<Value = Tz> {
    prop_oneof![
        1 => prop::sample::select(INTERESTING_ZONES),
        1 => prop::sample::select(chrono_tz::TZ_VARIANTS.as_slice()),
    ]
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let nanos = prop_oneof![1 => Just(0u32), 3 => 0u32..1_000_000_000];
    (0i64..EPOCH_2100, nanos)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).expect("in chrono's range"))
}

/// One plain list item over `min..=max`: a number, a range or a step.
fn numeric_item(min: u32, max: u32) -> BoxedStrategy<String> {
    let number = (min..=max).prop_map(|n| n.to_string());
    let range = (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b)));
    let step = (1..=max.max(1)).prop_map(|s| format!("*/{s}"));
    let range_step = (min..=max, min..=max, 1..=max.max(1))
        .prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b)));
    prop_oneof![4 => number, 2 => range, 2 => step, 1 => range_step].boxed()
}

/// A field: `*`, or a list of one to three items from `item`.
fn field(item: BoxedStrategy<String>, star_weight: u32) -> BoxedStrategy<String> {
    prop_oneof![
        star_weight => Just("*".to_string()),
        6 => prop::collection::vec(item, 1..=3).prop_map(|v| v.join(",")),
    ]
    .boxed()
}

fn second_field() -> BoxedStrategy<String> {
    prop_oneof![4 => Just("0".to_string()), 3 => field(numeric_item(0, 59), 1)].boxed()
}

fn day_of_month_field() -> BoxedStrategy<String> {
    let special = prop_oneof![
        Just("L".to_string()),
        Just("LW".to_string()),
        (1u32..=31).prop_map(|d| format!("{d}W")),
    ];
    prop_oneof![
        6 => Just("*".to_string()),
        1 => Just("?".to_string()),
        2 => special,
        3 => field(numeric_item(1, 31), 0),
    ]
    .boxed()
}

fn month_field() -> BoxedStrategy<String> {
    let name = prop::sample::select(MONTHS.as_slice()).prop_map(str::to_string);
    let name_range = (0usize..12, 0usize..12)
        .prop_map(|(a, b)| format!("{}-{}", MONTHS[a.min(b)], MONTHS[a.max(b)]));
    let item = prop_oneof![3 => numeric_item(1, 12), 1 => name, 1 => name_range].boxed();
    field(item, 6)
}

fn day_of_week_field() -> BoxedStrategy<String> {
    let name = prop::sample::select(WEEKDAYS.as_slice()).prop_map(str::to_string);
    let last = (0u32..=6).prop_map(|d| format!("{d}L"));
    let nth = (0u32..=6, 1u32..=5).prop_map(|(d, n)| format!("{d}#{n}"));
    let item = prop_oneof![3 => numeric_item(0, 7), 2 => name, 1 => last, 1 => nth].boxed();
    prop_oneof![
        6 => Just("*".to_string()),
        1 => Just("?".to_string()),
        3 => field(item.clone(), 0),
        // Both day fields must match: rare, so a year-long search stays rare too.
        1 => item.prop_map(|i| format!("+{i}")),
    ]
    .boxed()
}

/// A cron expression of the documented syntax; most (not all) are accepted by `parse`.
fn cron_expr() -> impl Strategy<Value = String> {
    let fields = (
        prop::bool::ANY,
        second_field(),
        field(numeric_item(0, 59), 2),
        field(numeric_item(0, 23), 2),
        day_of_month_field(),
        month_field(),
        day_of_week_field(),
    )
        .prop_map(|(six, s, m, h, dom, mon, dow)| {
            if six {
                format!("{s} {m} {h} {dom} {mon} {dow}")
            } else {
                format!("{m} {h} {dom} {mon} {dow}")
            }
        });
    prop_oneof![
        1 => prop::sample::select(ALIASES.as_slice()).prop_map(str::to_string),
        12 => fields,
    ]
}

/// A schedule `parse` accepts: most generated expressions are, the rest are rejected.
fn schedule() -> impl Strategy<Value = Schedule> {
    (cron_expr(), any_zone()).prop_filter_map("Schedule::parse refused it", |(expr, tz)| {
        Schedule::parse(&expr, tz).ok()
    })
}

const FOREVER: Duration = Duration::from_secs(u64::MAX);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // The filter rejects few; a generator change that makes it reject most should fail.
        max_global_rejects: cases * 2,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn next_after_is_strictly_later_and_whole(s in schedule(), t in instant()) {
        // `parse` refuses expressions that never match, and croner searches to the year
        // 5000: from before 2100 there is always a next one.
        let next = s.next_after(t);
        prop_assert!(next.is_some(), "{s}: nothing after {t}");
        let next = next.unwrap();
        prop_assert!(next > t, "{s}: next_after({t}) = {next}");
        prop_assert_eq!(next.timestamp_subsec_nanos(), 0, "{}: {}", s, next);
    }

    #[test]
    fn upcoming_increases_one_due_instant_per_second(s in schedule(), t in instant()) {
        let list = s.upcoming(t, 20);
        prop_assert_eq!(list.len(), 20, "{} after {}", s, t);
        for pair in list.windows(2) {
            prop_assert!(
                pair[0].timestamp() < pair[1].timestamp(),
                "{s} after {t}: {} then {}", pair[0], pair[1]
            );
        }
        if let Some(first) = list.first() {
            prop_assert_eq!(Some(*first), s.next_after(t));
        }
    }

    #[test]
    fn latest_at_or_before_agrees_with_upcoming(s in schedule(), t in instant()) {
        let list = s.upcoming(t, 20);
        for (i, due) in list.iter().enumerate() {
            prop_assert_eq!(
                s.latest_at_or_before(*due, FOREVER), Some(*due),
                "{} after {}: a due instant is its own latest", s, t
            );
            let just_before = *due - TimeDelta::nanoseconds(1);
            if i > 0 {
                prop_assert_eq!(
                    s.latest_at_or_before(just_before, FOREVER), Some(list[i - 1]),
                    "{} after {}: just before {}", s, t, due
                );
            } else if let Some(latest) = s.latest_at_or_before(just_before, FOREVER) {
                // Nothing is due between `t` and the first upcoming instant.
                prop_assert!(latest <= t, "{s}: latest before {due} is {latest}, after {t}");
            }
        }
        if let Some(latest) = s.latest_at_or_before(t, FOREVER) {
            prop_assert!(latest <= t);
            prop_assert_eq!(s.next_after(latest), list.first().copied(), "{} from {}", s, latest);
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn daily_fixed_time_fires_on_every_local_day_once(
        second in 0u32..60,
        minute in 0u32..60,
        hour in 0u32..24,
        tz in prop::sample::select(DST_ZONES),
        t in instant(),
    ) {
        let expr = format!("{second} {minute} {hour} * * *");
        let s = Schedule::parse(&expr, tz).expect("a daily expression parses");
        prop_assert!(!s.follows_clock());
        let dates: Vec<NaiveDate> = s
            .upcoming(t, 366)
            .iter()
            .map(|d| d.with_timezone(&tz).date_naive())
            .collect();
        prop_assert_eq!(dates.len(), 366);
        for pair in dates.windows(2) {
            prop_assert_eq!(
                pair[0].succ_opt(), Some(pair[1]),
                "{} in {} from {}: fired on {} then {}", expr, tz, t, pair[0], pair[1]
            );
        }
    }
}
