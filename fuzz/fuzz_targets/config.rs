//! `Config::parse` on arbitrary UTF-8: it must return `Ok` or `Err`, never panic, overflow
//! the stack or hang. The environment is empty and the system timezone UTC, so only the
//! text decides; the config's folder does not exist, so a relative `api_key_file` reads
//! nothing (an absolute one is read, bounded to 64 KiB).
#![no_main]

use jellyfin_export_scheduler::config::{Config, LoadEnv};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = LoadEnv {
        var: &|_| None,
        system_timezone: &|| chrono_tz::Tz::UTC,
    };
    match Config::parse(text, Path::new("/nonexistent/fuzz/config.toml"), &env) {
        Ok(config) => assert!(!config.servers.is_empty(), "a valid config has a server"),
        Err(e) => {
            let lines = e.lines();
            assert!(!lines.is_empty(), "an error says what is wrong");
        }
    }
});
