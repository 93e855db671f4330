//! Where a secret comes from (API keys, webhook URLs): exactly one of an inline value, a
//! file or an environment variable, read only when a load asks for secrets.

use super::env::{Load, expand_path};
use super::model::{KeySource, Secrets};
use super::reader::{Located, Problem, TableReader};
use std::path::{Path, PathBuf};
use url::Url;

/// An http(s) URL with a host, for a value that is a secret: messages describe it as
/// `what` and never quote it (a webhook's path is its password).
pub(super) fn parse_secret_url<T>(
    value: &str,
    loc: &Located<T>,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<Url> {
    let url = match Url::parse(value.trim()) {
        Ok(url) => url,
        Err(e) => {
            problems.push(loc.problem(format!(
                "{what} is not a URL ({e}); write it like \"https://host/path\" (the value is not shown: it is a secret)"
            )));
            return None;
        }
    };
    if url.scheme() != "http" && url.scheme() != "https" {
        problems.push(loc.problem(format!(
            "{what} uses scheme {:?}; only http and https are supported",
            url.scheme()
        )));
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(loc.problem(format!("{what} has no host")));
        return None;
    }
    Some(url)
}

/// The three keys a secret may come from, and how messages name it.
pub(super) struct SecretKeys {
    inline: &'static str,
    file: &'static str,
    env: &'static str,
    /// "API key", "webhook URL".
    noun: &'static str,
    /// Appended to the "none given" message.
    missing_hint: &'static str,
    /// "set it to ..." when the variable is unset.
    env_hint: &'static str,
}

pub(super) const API_KEY_KEYS: SecretKeys = SecretKeys {
    inline: "api_key",
    file: "api_key_file",
    env: "api_key_env",
    noun: "API key",
    missing_hint: " (create a key in Jellyfin: Dashboard → API Keys)",
    env_hint: "the server's API key",
};

pub(super) const WEBHOOK_URL_KEYS: SecretKeys = SecretKeys {
    inline: "url",
    file: "url_file",
    env: "url_env",
    noun: "webhook URL",
    missing_hint: " (the receiver's incoming-webhook or topic URL)",
    env_hint: "the webhook URL",
};

/// What [`read_secret_source`] found.
pub(super) enum SecretRead {
    /// The raw text (not yet trimmed), where it came from, and where to point a problem.
    Value(String, KeySource, Located<String>),
    /// A valid source that was not read ([`Secrets::Skip`]). A file path is as written,
    /// `${VAR}` not expanded.
    NotRead(KeySource),
}

/// Exactly one of a secret's three sources: the inline value, a file (`${VAR}` expanded,
/// relative to the config file) or an environment variable. With [`Secrets::Skip`] the
/// source is checked but not read.
pub(super) fn read_secret_source(
    t: &TableReader<'_>,
    keys: &SecretKeys,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<SecretRead> {
    let inline = t.string(keys.inline, problems);
    let file = t.string(keys.file, problems);
    let var = t.string(keys.env, problems);
    let any_given = inline.is_some() || file.is_some() || var.is_some();
    let present_keys: Vec<&str> = [keys.inline, keys.file, keys.env]
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    let one_of = format!("{}, {}, {}", keys.file, keys.env, keys.inline);
    if present_keys.len() > 1 {
        let loc = t.key_location(present_keys[1]);
        problems.push(loc.problem(format!(
            "more than one {} source ({}); give exactly one of {one_of}",
            keys.noun,
            present_keys.join(", ")
        )));
        return None;
    }
    if present_keys.is_empty() {
        problems.push(t.header_problem(
            keys.file,
            format!(
                "no {}: give exactly one of {one_of}{}",
                keys.noun, keys.missing_hint
            ),
        ));
        return None;
    }
    if !any_given {
        return None; // present but of the wrong type: already reported
    }
    if load.secrets == Secrets::Skip {
        return Some(SecretRead::NotRead(match (inline, file, var) {
            (Some(_), _, _) => KeySource::Inline,
            (_, Some(f), _) => KeySource::File(PathBuf::from(f.value)),
            (_, _, v) => KeySource::Env(v?.value),
        }));
    }
    if let Some(v) = inline {
        return Some(SecretRead::Value(v.value.clone(), KeySource::Inline, v));
    }
    if let Some(f) = file {
        return read_secret_file(f, keys, load, problems);
    }
    let v = var?;
    match (load.env.var)(&v.value) {
        Some(s) => Some(SecretRead::Value(s, KeySource::Env(v.value.clone()), v)),
        None => {
            problems.push(
                v.problem(format!(
                    "environment variable {} is not set; set it to {}",
                    v.value, keys.env_hint
                ))
                .secret_unavailable(),
            );
            None
        }
    }
}

/// A secret's `*_file`: `${VAR}` expanded, then read (bounded). A variable that is not set
/// or a file that cannot be read is a secret this environment cannot see.
fn read_secret_file(
    f: Located<String>,
    keys: &SecretKeys,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<SecretRead> {
    let before = problems.len();
    let Some(path) = expand_path(&f, load.path.parent(), load.env, problems) else {
        for p in &mut problems[before..] {
            p.unavailable_secret = true;
        }
        return None;
    };
    match read_key_file(&path) {
        Ok(Some(s)) => Some(SecretRead::Value(s, KeySource::File(path), f)),
        Ok(None) => {
            problems.push(f.problem(format!(
                "{} file {} is larger than {MAX_KEY_FILE_BYTES} bytes; is this the right file?",
                keys.noun,
                path.display()
            )));
            None
        }
        Err(e) => {
            problems.push(
                f.problem(format!(
                    "cannot read {} file {}: {e}; check that it exists and that this user may read it",
                    keys.noun,
                    path.display()
                ))
                .secret_unavailable(),
            );
            None
        }
    }
}

/// The largest API key file read. A key is 32 hex digits; the bound keeps a mistaken
/// `api_key_file = "/dev/zero"` (or a huge file) from reading until memory runs out.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The file's text, or `None` when it is longer than [`MAX_KEY_FILE_BYTES`].
fn read_key_file(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    // A FIFO would block the load forever and a device may never end: only files.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    Ok((text.len() as u64 <= MAX_KEY_FILE_BYTES).then_some(text))
}
