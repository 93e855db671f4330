//! Decoding what a Jellyfin server sends: `TaskInfo` (alone and as the list from
//! `GET /ScheduledTasks`), `TaskResult`, and the Migrator plugin's configuration as the
//! client reads it: streamed through the `*ZipBase64` stripper in chunks, decoded, checked
//! for the Migrator's shape, its `Mode` and export log read and a run judged on it. Plus
//! the lenient date parser. A hostile or broken server must get an error, never a panic.
#![no_main]

use jellyfin_export_scheduler::jellyfin::model::{
    ExportLog, MigratorConfig, TaskInfo, TaskResult, parse_date,
};
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
