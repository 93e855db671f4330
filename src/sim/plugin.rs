//! The Migrator plugin's saved configuration, as `GET /Plugins/{id}/Configuration` shows it,
//! and what a run of its task writes there.
//!
//! The plugin catches its own errors and ends `Completed`; only this configuration tells
//! whether an export happened (`LastExportUtc`, `LastExportLog` with `ERROR:` lines). The
//! big `LastExportZipBase64` is generated when asked for, never stored, so a fleet of a
//! thousand servers does not hold a thousand copies.

use super::config::{Mode, RunOutcome, SimServerConfig};
use super::model::{ResultStatus, SimTime};
use serde::Serialize;

pub const MIGRATOR_PLUGIN_ID: &str = "eb5d78948eef4b36aa6f5d124e828ce1";
pub const EXPORT_ROOT: &str = "/var/lib/jellyfin/plugins/Migrator/exports";

/// The part of the configuration that runs change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PluginConfig {
    pub mode: Mode,
    pub last_export_utc: Option<SimTime>,
    pub last_export_path: Option<String>,
    pub last_export_log: Option<String>,
    /// Seed of the last export's archive; `None` before the first export.
    zip_seed: Option<u64>,
}

impl PluginConfig {
    pub fn new(mode: Mode) -> Self {
        PluginConfig {
            mode,
            last_export_utc: None,
            last_export_path: None,
            last_export_log: None,
            zip_seed: None,
        }
    }

    /// A successful export that started at `start` and finished at `end`.
    pub fn record_export(&mut self, start: SimTime, end: SimTime, server: &str) {
        let folder = format!("{EXPORT_ROOT}/{}", start.utc().format("%Y%m%d_%H%M%S"));
        self.last_export_log = Some(format!(
            "{}INFO: Exported 3 users to users_basic.json\n\
             INFO: Exported 2 libraries to libraries.json\n\
             INFO: Exported watch history for 3 users\n\
             INFO: Exported 5 devices to devices.json\n\
             INFO: Export complete: {folder}\n",
            log_start(Mode::Export, server)
        ));
        self.last_export_path = Some(folder);
        self.last_export_utc = Some(end);
        self.zip_seed = Some(end.utc().timestamp_nanos_opt().unwrap_or(0) as u64);
    }

    /// What the plugin writes when a run of `mode` ends with `outcome`; returns the task's
    /// status (the plugin ends `Completed` unless the outcome is `Failed`).
    pub fn finish_run(
        &mut self,
        mode: Mode,
        outcome: RunOutcome,
        start: SimTime,
        end: SimTime,
        cfg: &SimServerConfig,
    ) -> ResultStatus {
        let head = log_start(mode, &cfg.name);
        if outcome == RunOutcome::Failed {
            self.last_export_log = Some(format!("{head}ERROR: {}\n", cfg.error_message));
            return ResultStatus::Failed;
        }
        match (mode, outcome) {
            (Mode::Export, RunOutcome::Completed) => self.record_export(start, end, &cfg.name),
            (Mode::Export, RunOutcome::CompletedWithLogError) => {
                self.last_export_log = Some(format!(
                    "{head}INFO: Exported 3 users to users_basic.json\nERROR: {}\n",
                    cfg.error_message
                ))
            }
            (Mode::Export, _) => {
                self.last_export_log = Some(format!(
                    "{head}INFO: No users selected, nothing to export\n"
                ))
            }
            (Mode::Import, _) => {
                self.last_export_log = Some(format!(
                    "{head}INFO: Imported 3 users from {EXPORT_ROOT}/import\n"
                ))
            }
            (Mode::Verify, _) => {
                self.last_export_log =
                    Some(format!("{head}INFO: Verified 3 users, no differences\n"))
            }
        }
        ResultStatus::Completed
    }

    /// The plugin saw the cancellation and stopped.
    pub fn cancelled(&mut self, _start: &SimTime) {
        let mode = self.mode;
        self.last_export_log = Some(format!(
            "INFO: Migration task started (mode: {})\nINFO: Cancelled\n",
            mode.as_jellyfin()
        ));
    }

    /// The JSON document of `GET /Plugins/{id}/Configuration`.
    pub fn to_json(&self, zip_len: usize) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Doc<'a> {
            mode: &'static str,
            export_directory: &'static str,
            include_password_hashes: bool,
            include_libraries: bool,
            include_watch_history: bool,
            include_devices: bool,
            selected_user_ids: [&'static str; 3],
            #[serde(skip_serializing_if = "Option::is_none")]
            last_export_utc: Option<SimTime>,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_export_path: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_export_log: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_export_zip_base64: Option<String>,
        }
        let doc = Doc {
            mode: self.mode.as_jellyfin(),
            export_directory: EXPORT_ROOT,
            include_password_hashes: true,
            include_libraries: true,
            include_watch_history: true,
            include_devices: false,
            selected_user_ids: [
                "4b8a9c1d2e3f40516273849a0b1c2d3e",
                "5c9bad2e3f40415263748596a1b2c3d4",
                "6dacbe3f4051426374859607b2c3d4e5",
            ],
            last_export_utc: self.last_export_utc,
            last_export_path: self.last_export_path.as_deref(),
            last_export_log: self.last_export_log.as_deref(),
            last_export_zip_base64: self.zip_seed.map(|seed| fake_zip_base64(zip_len, seed)),
        };
        serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
    }
}

fn log_start(mode: Mode, server: &str) -> String {
    format!(
        "INFO: Migration task started on {server} (mode: {})\n",
        mode.as_jellyfin()
    )
}

/// `len` characters (rounded down to a multiple of 4) of base64 of a zip-looking byte
/// stream: `PK\x03\x04` then splitmix64 output, all fixed by `seed`.
pub fn fake_zip_base64(len: usize, seed: u64) -> String {
    let raw_len = len / 4 * 3;
    let mut raw = Vec::with_capacity(raw_len);
    raw.extend_from_slice(b"PK\x03\x04");
    let mut state = seed;
    while raw.len() < raw_len {
        raw.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    raw.truncate(raw_len);
    base64(&raw)
}

/// splitmix64: a tiny, good-enough generator for filler bytes (no rand crate needed).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn base64(raw: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(raw.len().div_ceil(3) * 4);
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn fake_zip_has_the_asked_length_and_is_stable() {
        let z = fake_zip_base64(65_536, 7);
        assert_eq!(z.len(), 65_536);
        assert!(z.starts_with("UEsDB"), "starts like a zip: {}", &z[..8]);
        assert_eq!(z, fake_zip_base64(65_536, 7));
        assert_eq!(fake_zip_base64(10, 7).len(), 8);
    }
}
