//! [`TaskResult`]: a task's `LastExecutionResult`, its status, and the error message and
//! stack trace a failed run carries.

use super::config::{SimServerConfig, SimTask};
use super::time::SimTime;

/// Jellyfin's `TaskCompletionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultStatus {
    Completed,
    Failed,
    Cancelled,
    Aborted,
}

impl ResultStatus {
    pub fn as_jellyfin(self) -> &'static str {
        match self {
            ResultStatus::Completed => "Completed",
            ResultStatus::Failed => "Failed",
            ResultStatus::Cancelled => "Cancelled",
            ResultStatus::Aborted => "Aborted",
        }
    }
}

/// A `LastExecutionResult`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskResult {
    pub start: SimTime,
    pub end: SimTime,
    pub status: ResultStatus,
    pub error_message: Option<String>,
    pub long_error_message: Option<String>,
}

/// The result of a run that ended `status`; a failed one carries the config's
/// `error_message` and a stack trace.
pub(crate) fn result(
    start: SimTime,
    end: SimTime,
    status: ResultStatus,
    cfg: &SimServerConfig,
) -> TaskResult {
    let failed = status == ResultStatus::Failed;
    TaskResult {
        start,
        end,
        status,
        error_message: failed.then(|| cfg.error_message.clone()),
        long_error_message: failed.then(|| fake_stack_trace(cfg.task, &cfg.error_message)),
    }
}

/// A stack trace for `LongErrorMessage`: the exception and its message, then frames of the
/// task that threw it.
fn fake_stack_trace(task: SimTask, message: &str) -> String {
    let frames = match task {
        SimTask::Migrator => {
            "at System.IO.FileSystem.CreateDirectory(String fullPath)\n   \
             at Jellyfin.Plugin.Template.Export.ExportService.RunAsync(PluginConfiguration config, IProgress`1 progress, CancellationToken cancellationToken)\n   \
             at Jellyfin.Plugin.Template.Export.ExportMigrationTask.ExecuteAsync(IProgress`1 progress, CancellationToken cancellationToken)"
        }
        _ => {
            "at System.IO.RandomAccess.WriteAtOffset(SafeFileHandle handle, ReadOnlySpan`1 buffer, Int64 fileOffset)\n   \
             at Emby.Server.Implementations.Library.LibraryManager.ValidateMediaLibraryInternal(IProgress`1 progress, CancellationToken cancellationToken)"
        }
    };
    format!(
        "System.IO.IOException: {message}\n   {frames}\n   \
         at Emby.Server.Implementations.ScheduledTasks.ScheduledTaskWorker.ExecuteInternal(TaskOptions options)"
    )
}
