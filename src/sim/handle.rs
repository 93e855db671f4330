//! [`SimHandle`]: live control and inspection of one simulated server, for tests and the
//! demo. Calls that read or change the task bring the server's state up to now first, as a
//! request would.

use super::cell::ServerCell;
use super::config::{Mode, SimServerConfig};
use super::journal::RecordedRequest;
use super::model::{ServerState, TaskView};
use super::time::SimTime;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

/// Live control and inspection of one simulated server. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    cell: Arc<ServerCell>,
}

impl SimHandle {
    pub(crate) fn new(cell: Arc<ServerCell>) -> Self {
        SimHandle { cell }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut ServerState, Instant) -> T) -> T {
        let mut inner = self.cell.lock();
        let now = Instant::now();
        inner.state.advance(now);
        f(&mut inner.state, now)
    }

    pub(crate) fn with_config<T>(&self, f: impl FnOnce(&SimServerConfig) -> T) -> T {
        f(&self.cell.lock().state.cfg)
    }

    /// A copy of the current behaviour.
    pub fn config(&self) -> SimServerConfig {
        self.with_config(Clone::clone)
    }

    /// Change behaviour. A run already going keeps the length, outcome and mode it began
    /// with; cancel mode, delays and faults apply from the next request. The name cannot
    /// change (it is the URL).
    pub fn update(&self, f: impl FnOnce(&mut SimServerConfig)) {
        self.with_state(|st, _| {
            let name = st.cfg.name.clone();
            f(&mut st.cfg);
            st.cfg.name = name;
        });
    }

    /// Replace the behaviour (the name stays).
    pub fn set_behaviour(&self, cfg: SimServerConfig) {
        self.update(|c| *c = cfg);
    }

    /// Jellyfin's own trigger fires: a run starts now if the task is Idle; if one is
    /// going, a follow-up run is queued to start after it.
    pub fn start_run_now(&self) {
        self.with_state(|st, now| st.trigger(now));
    }

    /// Save another `Mode` in the plugin configuration (as the plugin page does).
    pub fn set_mode(&self, mode: Mode) {
        self.set_mode_text(mode.as_jellyfin());
    }

    /// Save `Mode` with exactly this text (as a hand-edited configuration could have it).
    pub fn set_mode_text(&self, text: &str) {
        self.with_state(|st, _| st.plugin.mode_text = text.to_owned());
    }

    /// Upload a ZIP on the plugin's Import tab: `LastImportZipBase64` gets `base64_len`
    /// characters and `Mode` becomes `Import`, as the plugin's page does.
    pub fn upload_import_zip(&self, base64_len: usize) {
        self.with_state(|st, _| st.plugin.upload_import_zip(base64_len));
    }

    /// Graceful restart now: a running run ends `Aborted`, then `downtime` of 503s.
    pub fn restart_gracefully(&self) {
        self.with_state(|st, now| st.restart_now(now));
    }

    /// Crash now: nothing written, `downtime` of dropped connections, then Idle.
    pub fn crash(&self) {
        self.with_state(|st, now| st.crash_now(now));
    }

    /// The Migrator task as a client would see it now.
    pub fn task_state(&self) -> TaskView {
        self.with_state(|st, now| st.view(now))
    }

    /// The operation the plugin's saved `Mode` runs.
    pub fn mode(&self) -> Mode {
        self.with_state(|st, _| st.plugin.mode())
    }

    /// The plugin's `LastExportUtc`, if any run ended.
    pub fn last_export_utc(&self) -> Option<SimTime> {
        self.with_state(|st, _| st.plugin.last_export_utc)
    }

    /// The plugin's `LastExportLog`, if any run ended.
    pub fn last_export_log(&self) -> Option<String> {
        self.with_state(|st, _| st.plugin.last_export_log.clone())
    }

    /// The ZIP in `LastExportZipBase64`, made whole (keep it small in tests that call this).
    pub fn last_export_zip(&self) -> Option<Vec<u8>> {
        let zip = self.with_state(|st, _| st.plugin.last_export_zip.clone());
        zip.map(|z| z.bytes().to_vec())
    }

    /// When each `POST /ScheduledTasks/Running/{id}` arrived (before any fault or auth).
    pub fn start_requests(&self) -> Vec<SystemTime> {
        self.cell.lock().journal.starts.clone()
    }

    /// Requests received, oldest first (the last 10 000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.cell.lock().journal.requests.iter().cloned().collect()
    }

    /// Forget recorded requests and start times (fault counters keep counting).
    pub fn clear_requests(&self) {
        let mut inner = self.cell.lock();
        inner.journal.requests.clear();
        inner.journal.starts.clear();
    }
}
