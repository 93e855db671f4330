//! Scenario files for `simulate --scenario FILE` and the demo: a list of `[[servers]]`
//! tables, each a [`SimServerConfig`] with durations as humantime strings.
//!
//! ```toml
//! [[servers]]
//! name = "alpha"
//! api_key = "alpha-key-000000000000000000000000"
//! run_length = "10s"
//! outcome = "failed"
//!
//! [[servers.faults]]
//! endpoint = "task"
//! requests = "1..2"
//! fault = "drop"
//! ```
//!
//! Unknown keys are errors. Parsing problems carry the line, column and key from the TOML
//! parser; problems across servers (duplicate names, two roots) are listed together.

use super::config::SimServerConfig;
use super::error::SimError;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// A parsed, validated scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub servers: Vec<SimServerConfig>,
}

impl Scenario {
    /// Parse and validate scenario text; the error is a message for people.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        let problems = problems(&scenario.servers);
        if problems.is_empty() {
            Ok(scenario)
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadScenario {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text).map_err(|message| SimError::Scenario {
            path: path.to_path_buf(),
            message,
        })
    }

    /// What `simulate` serves without a scenario: one server `demo` at `/` and `/s/demo`
    /// whose export takes 10 s.
    pub fn demo() -> Scenario {
        Scenario {
            servers: vec![SimServerConfig {
                root: true,
                start_delay: Duration::from_millis(300),
                run_length: Duration::from_secs(10),
                first_progress_after: Duration::from_millis(500),
                ..SimServerConfig::default()
            }],
        }
    }
}

/// Everything wrong with a set of servers, as sentences.
pub fn problems(servers: &[SimServerConfig]) -> Vec<String> {
    let mut out: Vec<String> = servers.iter().flat_map(SimServerConfig::problems).collect();
    let mut seen = HashSet::new();
    for s in servers {
        if !seen.insert(s.name.as_str()) {
            out.push(format!("server name {:?} is used twice", s.name));
        }
    }
    let roots: Vec<&str> = servers
        .iter()
        .filter(|s| s.root)
        .map(|s| s.name.as_str())
        .collect();
    if roots.len() > 1 {
        out.push(format!(
            "only one server may have root = true, found {}",
            roots.join(", ")
        ));
    }
    if servers.is_empty() {
        out.push("a scenario needs at least one [[servers]] table".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::{CancelMode, Mode, PluginStatus, RunOutcome, SimTask};
    use crate::sim::fault::Fault;
    use crate::sim::route::Endpoint;

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simulate-scenario.toml");
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.servers.len(), 13);
        let by = |n: &str| s.servers.iter().find(|c| c.name == n).unwrap();
        assert!(by("living-room").root);
        assert_eq!(by("basement").outcome, RunOutcome::Failed);
        assert_eq!(by("garage").mode, Mode::Import);
        assert_eq!(by("office").cancel, CancelMode::Ignore);
        assert_eq!(by("office").task, SimTask::ScanMediaLibrary);
        assert_eq!(by("porch").mode_text.as_deref(), Some(" export "));
        assert!(by("porch").zip_fails && by("cellar").plugin_id_collision);
        assert_eq!(by("attic").utc_offset.local_minus_utc(), -5 * 3600);
        assert_eq!(
            by("office").faults[0].fault,
            Fault::Latency(Duration::from_millis(300))
        );
        assert_eq!(by("kitchen").restart_after, Some(Duration::from_secs(3)));
        assert_eq!(by("shed").faults[0].endpoint, Some(Endpoint::Task));
        assert_eq!(by("loft").plugin, PluginStatus::Malfunctioned);
        // The archive's cases: a 500 MiB stored ZIP, a deflated one, one cut short.
        assert_eq!(by("big").zip_base64_len / 4 * 3, 524_288_001);
        assert!(by("den").zip_deflate && by("hall").zip_broken);
    }

    #[test]
    fn the_demo_is_valid() {
        assert!(problems(&Scenario::demo().servers).is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| Scenario::parse(text).unwrap_err();
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\nrun_lenght = \"1s\"\n");
        assert!(e.contains("run_lenght"), "{e}");
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\nstart_delay = \"soon\"\n");
        assert!(e.contains("start_delay") && e.contains("soon"), "{e}");
        let e = err(
            "[[servers]]\nname = \"a\"\napi_key = \"k\"\n[[servers.faults]]\nendpoint = \"tsk\"\nfault = \"drop\"\n",
        );
        assert!(e.contains("tsk"), "{e}");
        let e = err(
            "[[servers]]\nname = \"a\"\napi_key = \"k\"\n[[servers]]\nname = \"a\"\napi_key = \"k\"\n",
        );
        assert!(e.contains("used twice"), "{e}");
        let e = err("[[servers]]\nname = \"a b\"\napi_key = \"k\"\n");
        assert!(e.contains("name"), "{e}");
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\ncancel = \"ignore\"\n");
        assert!(e.contains("not something the Migrator does"), "{e}");
        let e = err(
            "[[servers]]\nname = \"a\"\napi_key = \"k\"\ntask = \"RefreshLibrary\"\nzip_fails = true\n",
        );
        assert!(
            e.contains("zip_fails = true needs the Migrator's task"),
            "{e}"
        );
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\nutc_offset = \"+25:00\"\n");
        assert!(e.contains("utc_offset"), "{e}");
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\noutcome = \"no_export\"\n");
        assert!(e.contains("no_export"), "{e}");
        let e = err("[[servers]]\nname = \"a\"\napi_key = \"k\"\nhistory = \"cancelled\"\n");
        assert!(e.contains("history = \"cancelled\""), "{e}");
    }
}
