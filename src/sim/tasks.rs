//! The scheduled tasks one simulated server lists, as Jellyfin's `TaskInfo` documents: the
//! Migrator's and, with `duplicate_task_key`, a second task with its key (both only while
//! the plugin is Active), and three of Jellyfin's own. The driven task shows the state
//! machine's live state and result (and is gone once `task_vanishes` struck); the others
//! show a fixed past result.

use super::config::{PluginStatus, SimTask};
use super::model::{ServerState, TaskState};
use super::task_result::TaskResult;
use super::time::SimTime;
use serde::{Serialize, Serializer};
use tokio::time::Instant;

pub const MIGRATOR_TASK_ID: &str = "d6eb93f1d1591e7d5e6c70f1d25e6fdd";
pub const MIGRATOR_TASK_KEY: &str = "JellyfinMigratorExport";
pub const MIGRATOR_TASK_NAME: &str = "Migration: Export Data";
/// Id of the second task that claims the Migrator's key (`duplicate_task_key`).
pub const DUPLICATE_TASK_ID: &str = "0e3d5f2b8c1a4d7e9f6b3a2c1d0e9f8a";

/// `TaskInfo`, field order as Jellyfin writes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaskInfo<'a> {
    name: &'a str,
    state: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_number"
    )]
    current_progress_percentage: Option<f64>,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_execution_result: Option<ResultDoc<'a>>,
    #[serde(serialize_with = "trigger_list")]
    triggers: Option<IntervalTrigger>,
    description: &'a str,
    category: &'a str,
    is_hidden: bool,
    key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResultDoc<'a> {
    start_time_utc: SimTime,
    end_time_utc: SimTime,
    status: &'static str,
    name: &'a str,
    key: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_error_message: Option<String>,
}

/// Jellyfin's `TaskTriggerInfo` for an interval trigger, its fields in Jellyfin's order
/// (the null ones left out).
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IntervalTrigger {
    #[serde(rename = "Type")]
    kind: &'static str,
    /// In .NET ticks of 100 ns.
    interval_ticks: u64,
}

/// `Triggers`: an array, empty or with the one interval trigger.
fn trigger_list<S: Serializer>(t: &Option<IntervalTrigger>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(t)
}

/// .NET writes a double that holds a whole number without a fraction: `0`, `100`.
fn whole_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => s.serialize_i64(*x as i64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

struct Builtin {
    task: SimTask,
    name: &'static str,
    description: &'static str,
    category: &'static str,
    interval_hours: u64,
}

/// Jellyfin's own tasks the simulated server lists (their real keys and ids).
const BUILTINS: [Builtin; 3] = [
    Builtin {
        task: SimTask::CleanCacheDirectory,
        name: "Clean Cache Directory",
        description: "Deletes cache files no longer needed by the system.",
        category: "Maintenance",
        interval_hours: 24,
    },
    Builtin {
        task: SimTask::ScanMediaLibrary,
        name: "Scan Media Library",
        description: "Scans your media library for new files and refreshes metadata.",
        category: "Library",
        interval_hours: 12,
    },
    Builtin {
        task: SimTask::CleanLogDirectory,
        name: "Clean Log Directory",
        description: "Deletes log files that are more than 3 days old.",
        category: "Maintenance",
        interval_hours: 24,
    },
];

fn result_doc<'a>(r: &TaskResult, name: &'a str, key: &'a str, id: &'a str) -> ResultDoc<'a> {
    ResultDoc {
        start_time_utc: r.start,
        end_time_utc: r.end,
        status: r.status.as_jellyfin(),
        name,
        key,
        id,
        error_message: r.error_message.clone(),
        long_error_message: r.long_error_message.clone(),
    }
}

/// `State`, `CurrentProgressPercentage` and `LastExecutionResult` of a listed task.
type Status<'a> = (&'static str, Option<f64>, Option<ResultDoc<'a>>);

/// State, progress and last result of a listed task: live for the driven task, fixed
/// for the others.
fn task_status<'a>(
    st: &ServerState,
    now: Instant,
    task: SimTask,
    fixed: Option<&TaskResult>,
    name: &'a str,
) -> Status<'a> {
    let doc = |r: &TaskResult| result_doc(r, name, task.key(), task.id());
    if st.cfg.task != task {
        return ("Idle", None, fixed.map(doc));
    }
    let view = st.view(now);
    let progress = if view.state == TaskState::Idle {
        None
    } else {
        view.progress
    };
    (
        view.state.as_jellyfin(),
        progress,
        view.last_result.as_ref().map(doc),
    )
}

/// Every task this server lists now, as `GET /ScheduledTasks` shows them: by name, then id.
pub(crate) fn task_list(st: &ServerState, now: Instant) -> Vec<TaskInfo<'static>> {
    let mut tasks = tasks(st, now);
    tasks.sort_by(|a, b| (a.name, a.id).cmp(&(b.name, b.id)));
    tasks
}

/// Every task this server lists now, unsorted.
fn tasks(st: &ServerState, now: Instant) -> Vec<TaskInfo<'static>> {
    let mut out = Vec::new();
    let plugin_loaded = st.cfg.plugin == PluginStatus::Active;
    let gone = |task: SimTask| st.vanished && st.cfg.task == task;
    if plugin_loaded && !gone(SimTask::Migrator) {
        let status = task_status(
            st,
            now,
            SimTask::Migrator,
            st.migrator_result.as_ref(),
            MIGRATOR_TASK_NAME,
        );
        out.push(migrator_task(MIGRATOR_TASK_ID, status));
    }
    if plugin_loaded && st.cfg.duplicate_task_key {
        out.push(migrator_task(DUPLICATE_TASK_ID, ("Idle", None, None)));
    }
    for (b, r) in BUILTINS.iter().zip(&st.builtin_results) {
        if gone(b.task) {
            continue;
        }
        let (state, progress, last) = task_status(st, now, b.task, Some(r), b.name);
        out.push(TaskInfo {
            name: b.name,
            state,
            current_progress_percentage: progress,
            id: b.task.id(),
            last_execution_result: last,
            triggers: Some(IntervalTrigger {
                kind: "IntervalTrigger",
                interval_ticks: b.interval_hours * 36_000_000_000u64,
            }),
            description: b.description,
            category: b.category,
            is_hidden: false,
            key: b.task.key(),
        });
    }
    out
}

/// The Migrator's task as the plugin declares it, with this id and status (the duplicate
/// under `duplicate_task_key` declares itself the same way).
fn migrator_task<'a>(id: &'a str, (state, progress, last): Status<'a>) -> TaskInfo<'a> {
    TaskInfo {
        name: MIGRATOR_TASK_NAME,
        state,
        current_progress_percentage: progress,
        id,
        last_execution_result: last,
        triggers: None,
        description: "Run migration operation (Export/Verify)",
        category: "Migration",
        is_hidden: false,
        key: MIGRATOR_TASK_KEY,
    }
}

/// The task with this id. Ids are compared without case but as given: Jellyfin looks the
/// id up as a string, so a dashed GUID form is a 404.
pub(crate) fn find_task(st: &ServerState, now: Instant, id: &str) -> Option<TaskInfo<'static>> {
    let id = id.to_ascii_lowercase();
    tasks(st, now).into_iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrators_task_id_and_key_agree_with_its_sim_task() {
        assert_eq!(SimTask::Migrator.id(), MIGRATOR_TASK_ID);
        assert_eq!(SimTask::Migrator.key(), MIGRATOR_TASK_KEY);
    }

    #[test]
    fn triggers_are_an_array_in_jellyfins_field_order() {
        let with = |triggers| TaskInfo {
            name: "n",
            state: "Idle",
            current_progress_percentage: None,
            id: "i",
            last_execution_result: None,
            triggers,
            description: "d",
            category: "c",
            is_hidden: false,
            key: "k",
        };
        let none = serde_json::to_string(&with(None)).unwrap();
        assert!(
            none.contains(r#""Id":"i","Triggers":[],"Description""#),
            "{none}"
        );
        let daily = with(Some(IntervalTrigger {
            kind: "IntervalTrigger",
            interval_ticks: 864_000_000_000,
        }));
        let daily = serde_json::to_string(&daily).unwrap();
        assert!(
            daily.contains(
                r#""Triggers":[{"Type":"IntervalTrigger","IntervalTicks":864000000000}]"#
            ),
            "{daily}"
        );
    }
}
