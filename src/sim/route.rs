//! Which Jellyfin call a request is: the [`Endpoint`]s the simulator knows (fault rules and
//! request records name them) and the [`Route`] a method and path make, matched
//! case-insensitively like ASP.NET, trailing slashes ignored.

/// The Jellyfin calls the simulator knows, as fault rules and request records name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET` (or `POST`) `/System/Ping`
    Ping,
    /// `GET /System/Info/Public`
    PublicInfo,
    /// `GET /ScheduledTasks`
    TaskList,
    /// `GET /ScheduledTasks/{id}`
    Task,
    /// `POST /ScheduledTasks/Running/{id}`
    StartTask,
    /// `DELETE /ScheduledTasks/Running/{id}`
    StopTask,
    /// `GET /Plugins`
    Plugins,
    /// `GET /Plugins/{id}/Configuration`
    PluginConfig,
    /// Anything else (answered 404).
    Other,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Ping,
        Endpoint::PublicInfo,
        Endpoint::TaskList,
        Endpoint::Task,
        Endpoint::StartTask,
        Endpoint::StopTask,
        Endpoint::Plugins,
        Endpoint::PluginConfig,
        Endpoint::Other,
    ];
    /// Names used in scenario files.
    pub const NAMES: [&'static str; 9] = [
        "ping",
        "public_info",
        "task_list",
        "task",
        "start_task",
        "stop_task",
        "plugins",
        "plugin_config",
        "other",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    pub fn from_name(s: &str) -> Option<Endpoint> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
    }

    /// The position in [`Endpoint::ALL`] (per-endpoint counters are arrays).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Routes that need no key.
    pub(crate) fn anonymous(self) -> bool {
        matches!(self, Endpoint::Ping | Endpoint::PublicInfo)
    }
}

/// A request's place in the API: endpoint, the id in its path, whether the method fits.
#[derive(Debug)]
pub(crate) struct Route {
    pub endpoint: Endpoint,
    /// The id segment, lowercased (empty for routes without one).
    pub id: String,
    pub method_ok: bool,
}

impl Route {
    /// `path` is below the server's base path; method and path are matched without case.
    pub(crate) fn classify(method: &str, path: &str) -> Route {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let m = method.to_ascii_uppercase();
        let route = |endpoint, id: &str, ok: bool| Route {
            endpoint,
            id: id.to_string(),
            method_ok: ok,
        };
        // No HEAD: its answer must not carry a body, and no Jellyfin client sends one.
        let get = m == "GET";
        match segs
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["system", "ping"] => route(Endpoint::Ping, "", get || m == "POST"),
            ["system", "info", "public"] => route(Endpoint::PublicInfo, "", get),
            ["scheduledtasks"] => route(Endpoint::TaskList, "", get),
            ["scheduledtasks", "running", id] if m == "DELETE" => {
                route(Endpoint::StopTask, id, true)
            }
            ["scheduledtasks", "running", id] => route(Endpoint::StartTask, id, m == "POST"),
            ["scheduledtasks", id] => route(Endpoint::Task, id, get),
            ["plugins"] => route(Endpoint::Plugins, "", get),
            ["plugins", id, "configuration"] => route(Endpoint::PluginConfig, id, get),
            _ => route(Endpoint::Other, "", true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ignore_case_and_trailing_slashes() {
        let r = Route::classify("post", "/scheduledtasks/RUNNING/ABC/");
        assert_eq!(
            (r.endpoint, r.id.as_str(), r.method_ok),
            (Endpoint::StartTask, "abc", true)
        );
        assert_eq!(
            Route::classify("GET", "/System/Ping").endpoint,
            Endpoint::Ping
        );
        assert!(!Route::classify("PUT", "/ScheduledTasks").method_ok);
        assert_eq!(Route::classify("GET", "/nope").endpoint, Endpoint::Other);
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
        }
    }
}
