//! What a load reads besides the file's text: environment variables, the system's zone,
//! and the paths a config writes with `${VAR}` in them.

use super::model::Secrets;
use super::problem::{Located, Problem};
use crate::timezone;
use chrono_tz::Tz;
use std::path::{Path, PathBuf};

/// What loading may read besides the file: environment variables (for `api_key_env`,
/// `$TZ`, `$STATE_DIRECTORY`, `${CREDENTIALS_DIRECTORY}` in paths) and the system's
/// timezone. Tests pass their own; [`Config::load`](super::Config::load) uses the
/// process's.
pub struct LoadEnv<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub system_timezone: &'a dyn Fn() -> Tz,
}

impl LoadEnv<'static> {
    pub fn process() -> LoadEnv<'static> {
        LoadEnv {
            var: &|name| std::env::var(name).ok(),
            system_timezone: &timezone::system_timezone,
        }
    }
}

/// What a load reads besides the text: where the file is (messages, relative paths), the
/// environment, and whether to read secrets.
pub(super) struct Load<'a> {
    pub path: &'a Path,
    pub env: &'a LoadEnv<'a>,
    pub secrets: Secrets,
}

/// Expand `${VAR}` / `$VAR` (for systemd's `${CREDENTIALS_DIRECTORY}`) and make a relative
/// path relative to `base` (the config file's folder).
pub(super) fn expand_path(
    s: &Located<String>,
    base: Option<&Path>,
    env: &LoadEnv<'_>,
) -> Result<PathBuf, Problem> {
    let mut out = String::new();
    let mut rest = s.value.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => (&body[..end], end + 2),
                None => {
                    return Err(s.problem(format!("unclosed \"${{\" in path {:?}", s.value)));
                }
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match (env.var)(name) {
            Some(v) => out.push_str(&v),
            None => {
                let hint = if name == "CREDENTIALS_DIRECTORY" {
                    " (systemd sets it when the unit has LoadCredential=; outside systemd, write the path itself)"
                } else {
                    ""
                };
                return Err(s.problem(format!(
                    "path {:?} uses ${name}, which is not set{hint}",
                    s.value
                )));
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    let path = PathBuf::from(out);
    Ok(match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    })
}
