//! The Migrator plugin's saved configuration, as `GET /Plugins/{id}/Configuration` shows it,
//! and the end every run of its task writes there (the plugin's `ExportService.RunAsync`):
//! the log to `export.log`, then `LastExportLog`, `LastExportPath` and `LastExportUtc`, then a
//! ZIP of the run's folder as `LastExportZipBase64` — in every mode, for a cancelled run too.
//! A ZIP that fails to build leaves the previous one (its error is logged after the log was
//! copied, so `LastExportLog` doesn't show it). `Failed` writes nothing.
//!
//! The ZIPs (the last export's, and an upload from the Import tab kept in
//! `LastImportZipBase64`) are [`Base64Value`]s: their bytes as a [`Bulk`] (a few hundred
//! bytes whatever their size) and, up to a megabyte of text, the base64 text itself, made
//! once when the ZIP is stored, as the plugin keeps it. The document is a
//! [`ConfigDocument`], served as a stream, so a fleet of servers with 500 MB exports costs
//! the simulator nothing until someone reads one.

use super::bulk::{Base64Value, Bulk};
use super::config::{Mode, SimServerConfig};
use super::document::ConfigDocument;
use super::export::{self, Flags, RunPlan};
use super::time::SimTime;
use super::zip;
use chrono::Offset as _;
use std::sync::Arc;
use std::time::Duration;

pub const MIGRATOR_PLUGIN_ID: &str = "eb5d78948eef4b36aa6f5d124e828ce1";
/// Where an Import extracts the uploaded ZIP.
const IMPORT_ROOT: &str = "/var/lib/jellyfin/plugins/Migrator/imports";

/// What an Import run recorded about the uploaded ZIP.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImportRecord {
    analysis_json: String,
    extract_path: String,
    utc: SimTime,
    log: String,
}

/// The part of the configuration that runs and the plugin's page change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PluginConfig {
    /// `Mode` exactly as saved.
    pub mode_text: String,
    flags: Flags,
    pub last_export_utc: Option<SimTime>,
    pub last_export_path: Option<String>,
    pub last_export_log: Option<String>,
    pub last_export_zip: Option<Arc<Base64Value>>,
    /// A ZIP uploaded on the Import tab; nothing ever clears it.
    pub last_import_zip: Option<Arc<Base64Value>>,
    last_import: Option<ImportRecord>,
}

/// How a run of the Migrator's task ends, for [`PluginConfig::end_run`].
#[derive(Clone, Debug)]
pub(crate) struct RunEnd {
    /// Mode as saved when the run began.
    pub mode_text: String,
    pub start: SimTime,
    pub length: Duration,
    /// A cancel stopped it then.
    pub stopped: Option<SimTime>,
    /// When it wrote its end (`LastExportUtc`).
    pub end: SimTime,
    /// An `ERROR:` line that does not stop the export (its exception's message).
    pub log_error: Option<String>,
    /// Building the ZIP fails: the previous one stays.
    pub zip_fails: bool,
}

impl PluginConfig {
    pub fn new(cfg: &SimServerConfig) -> Self {
        let mut plugin = PluginConfig {
            mode_text: cfg.mode_text(),
            flags: Flags {
                user_password_hashes: cfg.include_user_password_hashes,
                libraries: cfg.include_libraries,
                watch_history: cfg.include_watch_history,
                devices: cfg.include_devices,
            },
            last_export_utc: None,
            last_export_path: None,
            last_export_log: None,
            last_export_zip: None,
            last_import_zip: None,
            last_import: None,
        };
        if cfg.import_zip_base64_len > 0 {
            plugin.last_import_zip = Some(Arc::new(Base64Value::new(uploaded_zip(
                cfg.import_zip_base64_len,
            ))));
        }
        plugin
    }

    /// The operation the next run performs.
    pub fn mode(&self) -> Mode {
        export::operation(&self.mode_text).0
    }

    /// The Import tab: the ZIP is kept as base64 and `Mode` becomes `Import`.
    pub fn upload_import_zip(&mut self, base64_len: usize) {
        self.last_import_zip = Some(Arc::new(Base64Value::new(uploaded_zip(base64_len))));
        self.mode_text = "Import".into();
    }

    /// The end of a run that did not fail before its `try` (those write nothing).
    pub fn end_run(&mut self, run: &RunEnd, cfg: &SimServerConfig) {
        let plan = RunPlan {
            mode_text: &run.mode_text,
            flags: self.flags,
            server: &cfg.name,
            start: run.start.utc(),
            length: run.length,
            stopped: run.stopped.map(|s| s.utc()),
            log_error: run.log_error.as_deref(),
            previous_export: self.last_export_path.as_deref(),
            import_upload: self.last_import_zip.is_some(),
            offset: cfg.utc_offset,
            zip_bytes: zip::bytes_for_base64_len(cfg.zip_base64_len),
        };
        let written = export::run(&plan);
        if let Some(log) = &written.import_log {
            self.last_import = Some(ImportRecord {
                analysis_json: r#"{"Users":[{"Username":"alice"},{"Username":"bob"},{"Username":"kids"}],"Libraries":[{"Name":"Movies"},{"Name":"Shows"}]}"#.into(),
                extract_path: format!("{IMPORT_ROOT}/{}", run.start.utc().format("%Y%m%d_%H%M%S")),
                utc: run.end,
                log: log.clone(),
            });
        }
        self.last_export_log = Some(written.log);
        self.last_export_path = Some(written.folder);
        self.last_export_utc = Some(run.end);
        if run.zip_fails {
            // "Failed to create export ZIP" goes to the log in memory only: the
            // configuration already has its copy, and the previous ZIP stays.
            return;
        }
        let modified = run.end.utc().with_timezone(&cfg.utc_offset).naive_local();
        let built = if cfg.zip_deflate {
            zip::zip_deflated(&written.files, modified)
        } else {
            zip::zip(&written.files, modified)
        };
        if let Some(mut zip) = built {
            if cfg.zip_broken {
                zip.truncate(zip.len() / 2);
            }
            self.last_export_zip = Some(Arc::new(Base64Value::new(zip)));
        }
    }

    /// The body of `GET /Plugins/{id}/Configuration`: the fields in the plugin's
    /// declaration order, absent when null, the ZIPs as streamed base64.
    pub fn document(&self) -> ConfigDocument {
        let f = &self.flags;
        let none: &[&str] = &[];
        let mut doc = ConfigDocument::default();
        doc.field("ExportDirectory", "")
            .field("VerifyDirectory", "")
            .field("ImportDirectory", "")
            .field("Mode", &self.mode_text)
            .field("IncludeUsers", true)
            .field("IncludeUserPasswordHashes", f.user_password_hashes)
            .field("IncludeLibraries", f.libraries)
            .field("IncludePermissions", true)
            .field("IncludeWatchHistory", f.watch_history)
            .field("IncludeDevices", f.devices)
            .field("SelectedUserIds", none)
            .field("SelectedUsernames", none)
            .field("SelectedLibraryIds", none)
            .field("SelectedLibraryPaths", none)
            .optional("LastExportLog", self.last_export_log.as_ref())
            .optional("LastExportPath", self.last_export_path.as_ref())
            .optional("LastExportUtc", self.last_export_utc)
            .zip("LastExportZipBase64", self.last_export_zip.as_ref())
            .zip("LastImportZipBase64", self.last_import_zip.as_ref());
        let import = self.last_import.as_ref();
        doc.optional("LastImportAnalysisJson", import.map(|i| &i.analysis_json))
            .optional("LastImportExtractPath", import.map(|i| &i.extract_path))
            .optional("LastImportUtc", import.map(|i| i.utc))
            .field("ImportIncludeLibraries", false)
            .optional("LastImportLog", import.map(|i| &i.log))
            .field("ImportIncludeUsers", true);
        doc.close();
        doc
    }
}

/// The configuration of another plugin built from the same template, which carries the
/// Migrator's id unchanged (the template's `PluginConfiguration`).
pub fn template_document() -> ConfigDocument {
    let mut doc = ConfigDocument::default();
    doc.field("TrueFalseSetting", true)
        .field("AnInteger", 2)
        .field("AString", "string")
        .field("Options", "AnotherOption");
    doc.close();
    doc
}

/// An export ZIP from another server, as someone would upload it on the Import tab.
fn uploaded_zip(base64_len: usize) -> Bulk {
    let start = "2025-09-01T20:00:00Z".parse().unwrap_or_default();
    let plan = RunPlan {
        mode_text: "Export",
        flags: Flags {
            user_password_hashes: true,
            libraries: true,
            watch_history: true,
            devices: true,
        },
        server: "old-server",
        start,
        length: Duration::from_secs(12),
        stopped: None,
        log_error: None,
        previous_export: None,
        import_upload: false,
        offset: chrono::Utc.fix(),
        zip_bytes: zip::bytes_for_base64_len(base64_len),
    };
    let written = export::run(&plan);
    zip::zip(&written.files, start.naive_utc()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::http1::BodySource;
    use serde_json::Value;

    #[test]
    fn the_document_is_the_plugins_fields_in_order_with_streamed_zips() {
        let cfg = SimServerConfig {
            zip_base64_len: 40_000,
            import_zip_base64_len: 20_000,
            ..SimServerConfig::default()
        };
        let mut plugin = PluginConfig::new(&cfg);
        let start = SimTime::new("2025-10-07T06:49:12Z".parse().unwrap(), 3);
        plugin.end_run(
            &RunEnd {
                mode_text: "Export".into(),
                start,
                length: Duration::from_secs(10),
                stopped: None,
                end: SimTime::new("2025-10-07T06:49:22Z".parse().unwrap(), 1),
                log_error: None,
                zip_fails: false,
            },
            &cfg,
        );
        let doc = plugin.document();
        let bytes = doc.to_vec();
        assert_eq!(bytes.len() as u64, doc.size());
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(text.starts_with("{\"ExportDirectory\":\"\",\"VerifyDirectory\""));
        assert!(at("Mode") < at("IncludeUsers") && at("LastExportUtc") < at("LastExportZipBase64"));
        assert!(at("LastExportZipBase64") < at("LastImportZipBase64"));
        assert_eq!(v["LastExportZipBase64"].as_str().unwrap().len(), 40_000);
        assert_eq!(v["LastImportZipBase64"].as_str().unwrap().len(), 20_000);
        assert_eq!(v["IncludeDevices"], true);
        assert_eq!(v["IncludeUserPasswordHashes"], false);
        assert!(v.get("LastImportUtc").is_none(), "absent until an import");
    }
}
