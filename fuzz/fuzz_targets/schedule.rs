//! `Schedule::parse` on arbitrary text, and for what it accepts, a few due instants either
//! way and the DST notes `check` prints: no panic, no hang, and the documented promises
//! (strictly later, whole seconds, increasing; the latest at or before is not later).
//!
//! Input: byte 0 picks the timezone, bytes 1..9 the instant (seconds from 1970, folded into
//! 1970–2100), the rest is the expression.
#![no_main]

use chrono::{DateTime, TimeDelta};
use jellyfin_export_scheduler::schedule::Schedule;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((head, expr)) = data.split_at_checked(9) else {
        return;
    };
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    let zones = chrono_tz::TZ_VARIANTS;
    let tz = zones[usize::from(head[0]) * 7 % zones.len()];
    let seconds = i64::from_le_bytes(head[1..9].try_into().unwrap()).rem_euclid(4_102_444_800);
    let after = DateTime::from_timestamp(seconds, 0).unwrap();
    let Ok(schedule) = Schedule::parse(expr, tz) else {
        return;
    };
    let upcoming = schedule.upcoming(after, 4);
    let mut previous = after;
    for due in &upcoming {
        assert!(*due > previous, "{schedule}: {due} after {previous}");
        assert_eq!(due.timestamp_subsec_nanos(), 0);
        previous = *due;
    }
    if let Some(latest) = schedule.latest_at_or_before(after, Duration::from_secs(86_400 * 400)) {
        assert!(latest <= after, "{schedule}: latest {latest} after {after}");
    }
    let _ = schedule.dst_notes(after, after + TimeDelta::days(366));
});
