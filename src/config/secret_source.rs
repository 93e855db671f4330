//! Where a secret comes from (API keys, webhook URLs): exactly one of an inline value, a
//! file or an environment variable, read only when a load asks for secrets.

use super::env::{Load, expand_path};
use super::model::{KeySource, Secrets};
use super::problem::{Located, Problem, Problems, Reported};
use super::reader::TableReader;
use std::path::{Path, PathBuf};
use url::Url;

/// An http(s) URL with a host, for a value that is a secret: messages describe it as
/// `what` and never quote it (a webhook's path is its password).
pub(super) fn parse_secret_url<T>(
    value: &str,
    loc: &Located<T>,
    what: &str,
) -> Result<Url, Problem> {
    let url = Url::parse(value.trim()).map_err(|e| {
        loc.problem(format!(
            "{what} is not a URL ({e}); write it like \"https://host/path\" (the value is not shown: it is a secret)"
        ))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(loc.problem(format!(
            "{what} uses scheme {:?}; only http and https are supported",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(loc.problem(format!("{what} has no host")));
    }
    Ok(url)
}

/// The three keys a secret may come from, and how messages name it.
pub(super) struct SecretKeys {
    pub inline: &'static str,
    pub file: &'static str,
    pub env: &'static str,
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

/// `[daemon]`'s PostgreSQL connection URL (`backend = "postgres"`): it holds a password.
pub(super) const DATABASE_URL_KEYS: SecretKeys = SecretKeys {
    inline: "database_url",
    file: "database_url_file",
    env: "database_url_env",
    noun: "database URL",
    missing_hint: " (backend = \"postgres\" needs one, like \"postgresql://user:password@host:5432/db\")",
    env_hint: "the PostgreSQL connection URL",
};

impl SecretKeys {
    /// The keys, in the order a "more than one source" message names them.
    fn sources(&self) -> [(&'static str, Source); 3] {
        [
            (self.inline, Source::Inline),
            (self.file, Source::File),
            (self.env, Source::Env),
        ]
    }

    /// The three keys, in that order.
    pub(super) fn keys(&self) -> [&'static str; 3] {
        [self.inline, self.file, self.env]
    }

    /// The key a secret that came from `source` was given with.
    pub(super) fn key_of(&self, source: &KeySource) -> &'static str {
        match source {
            KeySource::Inline => self.inline,
            KeySource::File(_) => self.file,
            KeySource::Env(_) => self.env,
        }
    }
}

/// Which of a secret's three keys gave it.
#[derive(Clone, Copy)]
enum Source {
    Inline,
    File,
    Env,
}

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
    problems: &mut Problems,
) -> Result<SecretRead, Reported> {
    // Each key is read (so one of the wrong type is reported) before they are counted.
    let mut given = Vec::new();
    for (key, source) in keys.sources() {
        if let Some(value) = t.string(key, problems).transpose() {
            given.push((key, source, value));
        }
    }
    let one_of = format!("{}, {}, {}", keys.file, keys.env, keys.inline);
    if let [_, (second, ..), ..] = given.as_slice() {
        let names: Vec<&str> = given.iter().map(|(key, ..)| *key).collect();
        return Err(problems.report(t.key_location(second).problem(format!(
            "more than one {} source ({}); give exactly one of {one_of}",
            keys.noun,
            names.join(", ")
        ))));
    }
    let Some((_, source, value)) = given.pop() else {
        return Err(problems.report(t.header_problem(
            keys.file,
            format!(
                "no {}: give exactly one of {one_of}{}",
                keys.noun, keys.missing_hint
            ),
        )));
    };
    let value = value?;
    if load.secrets == Secrets::Skip {
        return Ok(SecretRead::NotRead(match source {
            Source::Inline => KeySource::Inline,
            Source::File => KeySource::File(PathBuf::from(value.value)),
            Source::Env => KeySource::Env(value.value),
        }));
    }
    match source {
        Source::Inline => Ok(SecretRead::Value(
            value.value.clone(),
            KeySource::Inline,
            value,
        )),
        Source::File => read_secret_file(value, keys.noun, load, problems),
        Source::Env => match (load.env.var)(&value.value) {
            Some(s) => Ok(SecretRead::Value(
                s,
                KeySource::Env(value.value.clone()),
                value,
            )),
            None => Err(problems.report(
                value
                    .problem(format!(
                        "environment variable {} is not set; set it to {}",
                        value.value, keys.env_hint
                    ))
                    .secret_unavailable(),
            )),
        },
    }
}

/// A secret that only a file gives and that may be absent (`[daemon] api_token_file`):
/// `None` when `key` is not set; with [`Secrets::Skip`], the path as written, not read.
pub(super) fn read_optional_secret_file(
    t: &TableReader<'_>,
    key: &str,
    noun: &str,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<Option<SecretRead>, Reported> {
    let Some(f) = t.string(key, problems)? else {
        return Ok(None);
    };
    if load.secrets == Secrets::Skip {
        return Ok(Some(SecretRead::NotRead(KeySource::File(PathBuf::from(
            f.value,
        )))));
    }
    read_secret_file(f, noun, load, problems).map(Some)
}

/// A secret's `*_file`: `${VAR}` expanded, then read (bounded). A variable that is not set
/// or a file that cannot be read is a secret this environment cannot see. `noun` names
/// the secret in messages ("API key").
fn read_secret_file(
    f: Located<String>,
    noun: &str,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<SecretRead, Reported> {
    let expanded = expand_path(&f, load.path.parent(), load.env);
    let path = problems.check(expanded.map_err(Problem::secret_unavailable))?;
    match read_key_file(&path) {
        Ok(Some(s)) => Ok(SecretRead::Value(s, KeySource::File(path), f)),
        Ok(None) => Err(problems.report(f.problem(format!(
            "{noun} file {} is larger than {MAX_KEY_FILE_BYTES} bytes; is this the right file?",
            path.display()
        )))),
        Err(e) => Err(problems.report(
            f.problem(format!(
                "cannot read {noun} file {}: {e}; check that it exists and that this user may read it",
                path.display()
            ))
            .secret_unavailable(),
        )),
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
