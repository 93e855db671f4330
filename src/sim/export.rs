//! What one run of the Migrator's task writes, following the plugin's
//! `ExportService.RunAsync`: the log (`HH:mm:ss message` lines in the server's local time,
//! `Migrator {Mode} started` first) and the files of the run's folder, by operation, by the
//! `Include*` flags, and by how far the run got before a cancel stopped it.
//!
//! Everything is deterministic: the times come from the plan, the files' contents from the
//! server's [`Content`] (fixed by its name). The watch history of the last user is filled
//! with more items until the run's ZIP weighs what the scenario asks (`zip_base64_len`),
//! which costs nothing here: the filler is one repeated block in a [`Bulk`].

use super::bulk::Bulk;
use super::config::Mode;
use super::content::{Content, USERS};
use super::zip::{self, ZipEntry};
use chrono::{DateTime, FixedOffset, Utc};
use std::fmt::Write as _;
use std::time::Duration;

/// The Jellyfin data folder the simulated server reports.
pub const DATA_PATH: &str = "/var/lib/jellyfin";
/// Where every run makes its folder, `{DataPath}/plugins/Migrator/exports`.
pub const EXPORT_ROOT: &str = "/var/lib/jellyfin/plugins/Migrator/exports";
/// What the plugin logs when its operation was cancelled (`OperationCanceledException`'s
/// message, twice: once in the text and once appended as the exception's).
pub const CANCELED: &str = "The operation was canceled.";

/// The `Include*` flags of the plugin configuration that shape an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub user_password_hashes: bool,
    pub libraries: bool,
    pub watch_history: bool,
    pub devices: bool,
}

/// Everything a run's writing depends on.
#[derive(Clone, Debug)]
pub struct RunPlan<'a> {
    /// `Mode` as saved when the run started.
    pub mode_text: &'a str,
    pub flags: Flags,
    pub server: &'a str,
    /// Jellyfin's start of the run.
    pub start: DateTime<Utc>,
    /// How long the whole operation takes when nobody stops it.
    pub length: Duration,
    /// A cancel stopped the operation then.
    pub stopped: Option<DateTime<Utc>>,
    /// An error that does not stop the export (`completed_with_log_error`).
    pub log_error: Option<&'a str>,
    /// `LastExportPath` before this run (what a Verify checks).
    pub previous_export: Option<&'a str>,
    /// A ZIP is in `LastImportZipBase64` (what an Import reads).
    pub import_upload: bool,
    /// The server's local time.
    pub offset: FixedOffset,
    /// What the run's ZIP should weigh, in bytes.
    pub zip_bytes: u64,
}

/// What a run left behind.
#[derive(Clone, Debug)]
pub struct RunWritten {
    /// `{DataPath}/plugins/Migrator/exports/{yyyyMMdd_HHmmss}` (UTC at the start).
    pub folder: String,
    /// The whole log, as saved to `export.log` and `LastExportLog`.
    pub log: String,
    /// The folder's files, `export.log` first.
    pub files: Vec<ZipEntry>,
    /// An Import analysed the uploaded ZIP: its log so far (`LastImportLog`).
    pub import_log: Option<String>,
}

/// The operation a saved `Mode` runs, and the word the plugin logs for it: the trimmed text
/// when it names an operation (in any case), else `Export`.
pub fn operation(mode_text: &str) -> (Mode, String) {
    let trimmed = mode_text.trim();
    for mode in [Mode::Export, Mode::Verify, Mode::Import] {
        if trimmed.eq_ignore_ascii_case(mode.as_jellyfin()) {
            return (mode, trimmed.to_owned());
        }
    }
    (Mode::Export, "Export".to_owned())
}

/// The log being written, with the times of the plan.
struct Log<'a> {
    plan: &'a RunPlan<'a>,
    text: String,
}

impl Log<'_> {
    fn at(&self, fraction: f64) -> DateTime<Utc> {
        self.plan.start
            + chrono::Duration::from_std(self.plan.length.mul_f64(fraction)).unwrap_or_default()
    }

    /// True when the step due at `fraction` of the run finished before a cancel.
    fn reached(&self, fraction: f64) -> bool {
        self.plan.stopped.is_none_or(|s| self.at(fraction) <= s)
    }

    fn line_at(&mut self, at: DateTime<Utc>, message: &str) {
        let local = at.with_timezone(&self.plan.offset);
        let _ = writeln!(self.text, "{} {message}", local.format("%H:%M:%S"));
    }

    fn line(&mut self, fraction: f64, message: &str) {
        self.line_at(self.at(fraction), message);
    }

    /// `ERROR: message: exception message`, as `ExportLogger.LogError` writes with an exception.
    fn error(&mut self, fraction: f64, message: &str, exception: &str) {
        self.line(fraction, &format!("ERROR: {message}: {exception}"));
    }
}

/// Run the plugin's `RunAsync` on paper.
pub fn run(plan: &RunPlan) -> RunWritten {
    let folder = format!("{EXPORT_ROOT}/{}", plan.start.format("%Y%m%d_%H%M%S"));
    let (mode, word) = operation(plan.mode_text);
    let mut log = Log {
        plan,
        text: String::new(),
    };
    for line in [
        format!("Migrator {word} started"),
        "Plugin build: v1.0.0.0 built 2025-10-05 18:22:41Z".to_owned(),
        format!("Data path: {DATA_PATH}"),
        format!("Export directory: {folder}"),
        "Selected user IDs filter: [] (ALL USERS)".to_owned(),
        "Selected library IDs filter: [] (ALL LIBRARIES)".to_owned(),
    ] {
        log.line(0.0, &line);
    }
    let mut files = Vec::new();
    let mut import_log = None;
    let finished = match mode {
        Mode::Export => export(&mut log, &folder, &mut files),
        Mode::Verify => verify(&mut log),
        Mode::Import => import(&mut log, &mut import_log),
    };
    if !finished {
        log.line_at(
            plan.stopped.unwrap_or(plan.start),
            &format!("ERROR: {word} failed: {CANCELED}: {CANCELED}"),
        );
    }
    let mut text = log.text;
    fill_watch_history(plan, &mut files, &mut text);
    let mut content = Bulk::new();
    content.bytes(text.clone());
    files.insert(
        0,
        ZipEntry {
            name: "export.log".into(),
            content,
        },
    );
    RunWritten {
        folder,
        log: text,
        files,
        import_log,
    }
}

/// The export steps, each done at its share of the run; false when a cancel stopped it.
fn export(log: &mut Log, folder: &str, files: &mut Vec<ZipEntry>) -> bool {
    let plan = log.plan;
    let data = Content::new(plan.server);
    if plan.flags.libraries {
        if !log.reached(0.2) {
            return false;
        }
        log.line(0.2, "Starting library definitions export");
        log.line(
            0.2,
            &format!("Exported 2 libraries with settings -> {folder}/libraries.json"),
        );
        log.line(
            0.2,
            "Library definitions export completed. 2 libraries exported.",
        );
        files.push(entry("libraries.json", data.libraries()));
    }
    if !log.reached(0.4) {
        return false;
    }
    log.line(0.4, "Starting user export via Jellyfin services");
    log.line(
        0.4,
        if plan.flags.user_password_hashes {
            "Password hash export enabled"
        } else {
            "Password hash export disabled"
        },
    );
    log.line(0.4, &format!("Exported {} users", USERS.len()));
    log.line(
        0.4,
        &format!("User export completed. {} users exported.", USERS.len()),
    );
    files.push(entry(
        "users_basic.json",
        data.users(plan.flags.user_password_hashes),
    ));
    if plan.flags.watch_history {
        if !log.reached(0.6) {
            return false;
        }
        watch_history(log, folder, &data, files);
    } else {
        log.line(
            0.6,
            "IncludeWatchHistory=false; skipping watch-history export",
        );
    }
    if plan.flags.devices {
        if !log.reached(0.8) {
            return false;
        }
        log.line(0.8, "Starting device export via IDeviceManager");
        log.line(
            0.8,
            &format!("Exported 5 device(s) (tokensIncluded=True) -> {folder}/devices.json"),
        );
        log.line(0.8, "Device export completed. 5 device(s) written.");
        files.push(entry("devices.json", data.devices()));
    } else {
        log.line(0.8, "IncludeDevices=false; skipping devices export");
    }
    true
}

fn watch_history(log: &mut Log, folder: &str, data: &Content, files: &mut Vec<ZipEntry>) {
    log.line(
        0.6,
        &format!("Starting watch-history export to: {folder}/watch_history"),
    );
    if let Some(message) = log.plan.log_error {
        // Caught inside the exporter: logged, no file written, the export goes on.
        log.error(
            0.6,
            &format!("Failed to export watch history: {message}"),
            message,
        );
        log.line(0.6, "Watch-history export completed: 0 file(s) written");
        log.line(0.6, "Watch-history export completed. 0 file(s) written.");
        return;
    }
    for (i, user) in USERS.iter().enumerate() {
        let items = data.watch_items(i);
        log.line(
            0.6,
            &format!(
                "Wrote watch history for user '{user}' ({} items) -> {folder}/watch_history/{user}.json",
                items.len()
            ),
        );
        let mut content = Bulk::new();
        content.bytes(format!("[{}]", items.join(",")));
        files.push(ZipEntry {
            name: format!("watch_history/{user}.json"),
            content,
        });
    }
    let n = USERS.len();
    log.line(
        0.6,
        &format!("Watch-history export completed: {n} file(s) written"),
    );
    log.line(
        0.6,
        &format!("Watch-history export completed. {n} file(s) written."),
    );
}

/// Verify mode checks the last export's folder; it writes only its log.
fn verify(log: &mut Log) -> bool {
    if !log.reached(0.5) {
        return false;
    }
    log.line(0.5, "Starting verify mode");
    let Some(root) = log.plan.previous_export else {
        log.line(
            0.5,
            "ERROR: Verify: target directory not found. Set Export Directory to an existing export folder.",
        );
        return true;
    };
    log.line(0.5, &format!("Verifying export at: {root}"));
    for line in [
        "Found users_basic.json",
        "Found 2 libraries",
        "Found devices.json",
        "Verification complete: no problems found",
    ] {
        log.line(0.5, line);
    }
    true
}

/// Import mode analyses the uploaded ZIP; it has its own catch, so a cancel inside it is
/// logged there and the run goes on to its normal end.
fn import(log: &mut Log, import_log: &mut Option<String>) -> bool {
    log.line(0.0, "Import mode selected.");
    if !log.plan.import_upload {
        log.line(
            0.0,
            "ERROR: No import ZIP uploaded. Please upload an export ZIP from the Import tab.",
        );
        return true;
    }
    if !log.reached(0.5) {
        let stopped = log.plan.stopped.unwrap_or(log.plan.start);
        log.line_at(
            stopped,
            &format!("ERROR: Import processing failed: {CANCELED}: {CANCELED}"),
        );
        *import_log = Some(log.text.clone());
        return true;
    }
    log.line(
        0.5,
        "Import analysis finished. Results saved to configuration.",
    );
    log.line(
        0.5,
        "Library import not configured. Analysis only completed.",
    );
    *import_log = Some(log.text.clone());
    true
}

fn entry(name: &str, text: String) -> ZipEntry {
    let mut content = Bulk::new();
    content.bytes(text);
    ZipEntry {
        name: name.into(),
        content,
    }
}

/// One more watch-history item, repeated to fill the last user's file.
const FILLER_ITEM: &str = r#",{"ids":{"id":"9f2c41d8e07a4b3c8d1e5f60718293a4","type":"Episode","name":"Filler","providerIds":{"Tvdb":"8231467"},"path":"/media/shows/Filler/Season 1/Filler - S01E01.mkv","productionYear":2024,"seriesName":"Filler","seasonNumber":1,"episodeNumber":1},"played":true,"playCount":1,"isFavorite":false,"playbackPositionTicks":0,"lastPlayedUtc":"2025-09-30T20:14:05.1234567Z"}"#;

/// Grow the last watch-history file until the ZIP weighs `plan.zip_bytes`: whole filler
/// items, then spaces before the closing `]`. The item count in the log grows with it,
/// which changes the log's length, so the count is settled first.
fn fill_watch_history(plan: &RunPlan, files: &mut [ZipEntry], log: &mut String) {
    let Some(last_user) = USERS.last() else {
        return;
    };
    let name = format!("watch_history/{last_user}.json");
    let Some(index) = files.iter().position(|f| f.name == name) else {
        return;
    };
    let natural_items = Content::new(plan.server).watch_items(USERS.len() - 1).len();
    let count_note = |n: usize| format!("'{last_user}' ({n} items)");
    let others: u64 = zip::overhead(files.iter().map(|f| f.name.as_str()).chain(["export.log"]))
        + files.iter().map(|f| f.content.len()).sum::<u64>();
    let block = FILLER_ITEM.len() as u64;
    // Room left for filler when the log names `extra` more items.
    let room = |extra: u64| {
        let log_len = log.len() as u64 + count_note(natural_items + extra as usize).len() as u64
            - count_note(natural_items).len() as u64;
        plan.zip_bytes.saturating_sub(others + log_len)
    };
    let mut extra = room(0) / block;
    while extra > 0 && extra * block > room(extra) {
        extra -= 1;
    }
    if extra == 0 && room(0) == 0 {
        return;
    }
    let spaces = room(extra) - extra * block;
    *log = log.replacen(
        &count_note(natural_items),
        &count_note(natural_items + extra as usize),
        1,
    );
    let text = files[index].content.to_vec();
    let mut content = Bulk::new();
    content
        .bytes(text[..text.len() - 1].to_vec())
        .repeat(FILLER_ITEM.as_bytes().to_vec(), extra)
        .repeat(b" ".to_vec(), spaces)
        .bytes(b"]".to_vec());
    files[index].content = content;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode_text: &str) -> RunPlan<'_> {
        RunPlan {
            mode_text,
            flags: Flags {
                user_password_hashes: false,
                libraries: true,
                watch_history: true,
                devices: true,
            },
            server: "t",
            start: "2025-10-07T06:49:12Z".parse().unwrap(),
            length: Duration::from_secs(10),
            stopped: None,
            log_error: None,
            previous_export: None,
            import_upload: false,
            offset: FixedOffset::east_opt(3600).unwrap(),
            zip_bytes: 100_000,
        }
    }

    #[test]
    fn the_mode_is_read_like_the_plugin_reads_it() {
        assert_eq!(operation(" export "), (Mode::Export, "export".into()));
        assert_eq!(operation("IMPORT"), (Mode::Import, "IMPORT".into()));
        assert_eq!(operation("Verify\t"), (Mode::Verify, "Verify".into()));
        assert_eq!(operation(""), (Mode::Export, "Export".into()));
        assert_eq!(operation("Backup"), (Mode::Export, "Export".into()));
    }

    #[test]
    fn an_export_logs_in_local_time_and_fills_its_zip_to_the_byte() {
        let written = run(&plan(" export "));
        assert!(
            written
                .log
                .starts_with("07:49:12 Migrator export started\n"),
            "{}",
            written.log
        );
        assert!(
            written
                .log
                .contains("07:49:18 Wrote watch history for user 'kids' (")
        );
        assert_eq!(written.folder, format!("{EXPORT_ROOT}/20251007_064912"));
        let names: Vec<&str> = written.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "export.log",
                "libraries.json",
                "users_basic.json",
                "watch_history/alice.json",
                "watch_history/bob.json",
                "watch_history/kids.json",
                "devices.json"
            ]
        );
        let at = chrono::NaiveDateTime::default();
        assert_eq!(zip::zip(&written.files, at).unwrap().len(), 100_000);
        let kids = String::from_utf8(written.files[5].content.to_vec()).unwrap();
        let items: Vec<serde_json::Value> = serde_json::from_str(&kids).unwrap();
        assert!(
            written
                .log
                .contains(&format!("'kids' ({} items)", items.len())),
            "the log counts the filler too"
        );
    }

    #[test]
    fn a_cancel_stops_the_steps_and_logs_the_canceled_line_last() {
        let mut p = plan("Export");
        p.stopped = Some(p.start + chrono::Duration::seconds(5));
        let written = run(&p);
        let last = written.log.lines().last().unwrap();
        assert_eq!(
            last,
            "07:49:17 ERROR: Export failed: The operation was canceled.: The operation was canceled."
        );
        assert!(!written.files.iter().any(|f| f.name == "devices.json"));
        assert!(written.files.iter().any(|f| f.name == "users_basic.json"));
    }
}
