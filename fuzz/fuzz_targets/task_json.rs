//! Decoding what a Jellyfin server sends: `TaskInfo` (alone and as the list from
//! `GET /ScheduledTasks`), `TaskResult` and the Migrator plugin's configuration, plus the
//! lenient date parser. A hostile or broken server must get an error, never a panic.
#![no_main]

use jellyfin_export_scheduler::jellyfin::model::{
    MigratorConfig, TaskInfo, TaskResult, parse_date,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<TaskInfo>(data);
    let _ = serde_json::from_slice::<Vec<TaskInfo>>(data);
    if let Ok(result) = serde_json::from_slice::<TaskResult>(data) {
        assert!(result.same_run(&result));
    }
    if let Ok(config) = serde_json::from_slice::<MigratorConfig>(data) {
        let _ = config.first_error_line();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_date(text);
    }
});
