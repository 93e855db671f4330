//! Configs for tests: the text of one, parsed in-process as the loader parses a file, or
//! written to a file for the binary.

use jellyfin_export_scheduler::config::{Config, LoadEnv, Secrets};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The text of a config on state directory `state`: `[daemon]` with `daemon`'s lines,
/// `[defaults]` for quick runs (UTC, polls every 50 ms, 2 s to start, no retries) then
/// `defaults`'s lines, and one `[[servers]]` per `(name, url, extra lines)`, with
/// [`super::KEY`].
pub fn text(
    state: &Path,
    daemon: &str,
    defaults: &str,
    servers: &[(&str, String, &str)],
) -> String {
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n{daemon}\n[defaults]\ntimezone = \"UTC\"\npoll_interval = \"50ms\"\nstart_grace = \"2s\"\nretries = 0\n{defaults}\n",
        state.display()
    );
    for (name, url, extra) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi_key = \"{}\"\n{extra}\n",
            super::KEY
        ));
    }
    text
}

/// `text` as the loader parses a file, with no variables and UTC as the system's zone.
pub fn parse(text: &str) -> Config {
    let env = LoadEnv {
        var: &|_| None,
        system_timezone: &|| chrono_tz::UTC,
    };
    Config::parse(text, Path::new("test.toml"), &env)
        .unwrap_or_else(|e| panic!("the test config must parse:\n{e}\n{text}"))
}

/// The file at `path` as the loader reads it, with only the variables `vars` and UTC as
/// the system's zone; `secrets` says whether secret files are read. The error as printed.
pub fn load(path: &Path, vars: &[(&str, &str)], secrets: Secrets) -> Result<Config, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let var = move |name: &str| vars.get(name).cloned();
    let env = LoadEnv {
        var: &var,
        system_timezone: &|| chrono_tz::UTC,
    };
    Config::load_opts(path, &env, secrets).map_err(|e| e.to_string())
}

/// A config file in a folder of its own, its state directory beside it.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub state: PathBuf,
}

impl ConfigFile {
    /// A new folder with `config.toml` made by `text_of(state directory)`.
    pub fn new(text_of: impl FnOnce(&Path) -> String) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = dir.path().join("config.toml");
        let file = ConfigFile { dir, path, state };
        file.write(&text_of(&file.state));
        file
    }

    /// [`text`]'s config in a file.
    pub fn quick(daemon: &str, defaults: &str, servers: &[(&str, String, &str)]) -> ConfigFile {
        ConfigFile::new(|state| text(state, daemon, defaults, servers))
    }

    /// Replaces the file's text; the file is 0600, as a file with keys inline must be.
    pub fn write(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&self.path, text).unwrap();
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The file's path as an argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// [`ConfigFile::quick`] for servers that run `@daily`, with nothing else in `[daemon]`.
pub fn daily(servers: &[(&str, String, &str)]) -> ConfigFile {
    ConfigFile::quick("", "schedule = \"@daily\"", servers)
}
