//! Decoding what a Jellyfin server sends: `TaskInfo` (alone and as the list from
//! `GET /ScheduledTasks`), `TaskResult`, and the Migrator plugin's configuration as the
//! client reads it: streamed through the `*ZipBase64` stripper in chunks, watched for the
//! members a read needs (and cut once they are all there), decoded, checked for the
//! Migrator's shape, its `Mode` and export log read and a run judged on it. Plus the
//! lenient date parser. A hostile or broken server must get an error, never a panic.
#![no_main]

use jellyfin_export_scheduler::jellyfin::model::{
    ExportLog, MigratorConfig, TaskInfo, TaskResult, parse_date,
};
use jellyfin_export_scheduler::jellyfin::members::MemberWatch;
use jellyfin_export_scheduler::jellyfin::strip::ZipStripper;
use jellyfin_export_scheduler::migrator;
use libfuzzer_sys::fuzz_target;

/// Strip `data` fed in chunks of `chunk` bytes.
fn strip(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut stripper = ZipStripper::new();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        stripper.feed(c, &mut out);
    }
    out
}

/// Where a [`MemberWatch`] for `wanted` cuts `data` fed in chunks of `chunk` bytes.
fn cut_at(data: &[u8], chunk: usize, wanted: &'static [&'static str]) -> Option<usize> {
    let mut watch = MemberWatch::new(wanted);
    data.chunks(chunk.max(1)).find_map(|c| watch.feed(c))
}

/// The member watch is a network filter too: the same cut however the bytes arrive, and
/// a cut valid object holds the same wanted members as the whole one.
fn check_cut(data: &[u8], chunk: usize, wanted: &'static [&'static str]) {
    let cut = cut_at(data, chunk, wanted);
    assert_eq!(cut, cut_at(data, data.len().max(1), wanted), "chunking moved the cut");
    let (Some(n), Ok(serde_json::Value::Object(whole))) =
        (cut, serde_json::from_slice::<serde_json::Value>(data))
    else {
        return;
    };
    let mut short = data[..n].to_vec();
    short.push(b'}');
    let short: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&short).expect("a cut of a valid object is not valid JSON");
    for name in wanted {
        // A repeated member is the one case where the two may differ (the whole decodes
        // to its last value, the cut to its first); Jellyfin never repeats one.
        let repeated = data
            .windows(name.len() + 2)
            .filter(|w| w[0] == b'"' && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == b'"')
            .count()
            > 1;
        if !repeated {
            assert_eq!(short.get(*name), whole.get(*name), "member {name} differs");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<TaskInfo>(data);
    let _ = serde_json::from_slice::<Vec<TaskInfo>>(data);
    let result = serde_json::from_slice::<TaskResult>(data).ok();
    if let Some(result) = &result {
        assert!(result.same_run(result));
    }

    // The stripper is a network filter: however the bytes arrive, the same bytes come out,
    // and valid JSON stays valid JSON.
    let chunk = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
    let kept = strip(data, chunk);
    assert_eq!(kept, strip(data, data.len().max(1)), "chunking changed the output");
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        serde_json::from_slice::<serde_json::Value>(&kept).expect("stripping broke valid JSON");
    }
    check_cut(data, chunk, MigratorConfig::PREFLIGHT);
    check_cut(&kept, chunk, MigratorConfig::VERIFY);
    if let Some(n) = cut_at(&kept, chunk, MigratorConfig::PREFLIGHT) {
        let mut short = kept[..n].to_vec();
        short.push(b'}');
        if let Ok(config) = serde_json::from_slice::<MigratorConfig>(&short) {
            let _ = migrator::refusal(&config, "JellyfinMigratorExport", None);
        }
    }
    if let Ok(config) = serde_json::from_slice::<MigratorConfig>(&kept) {
        let _ = config.missing_fields();
        let _ = config.operation();
        let _ = migrator::refusal(&config, "JellyfinMigratorExport", None);
        if let Some(result) = &result
            && let Some(start) = result.start_time_utc
        {
            let _ = migrator::judge(&config, result, start);
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_date(text);
        let log = ExportLog::read(text);
        assert!(log.errors.len() <= text.lines().count());
    }
});
