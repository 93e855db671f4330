//! Values a copied example may still hold: `change-me`, an `example.com` host,
//! `YOUR-API-KEY`, `<uuid>`. Such a config is valid, so it loads, but it would post to
//! someone else's topic, ping a check that is not yours or knock on a server that does not
//! exist. Every command that loads the config (so `check` first) prints one warning per
//! value, naming its key and `file:line:col`; the exit status stays what it was.
//!
//! A secret (API key, webhook URL, ping URL) is never quoted in a warning, not even the
//! part that looks like a placeholder: the warning names where it came from and stops.

use super::model::{Config, KeySource};
use super::problem::{LineIndex, Problems};
use super::reader::TableReader;
use super::secret_source::{API_KEY_KEYS, WEBHOOK_URL_KEYS};
use std::path::Path;
use toml::de::DeTable;
use url::Url;

/// Words that only an unedited example holds, compared without case.
const PLACEHOLDER_WORDS: &[&str] = &[
    "change-me",
    "change_me",
    "changeme",
    "replace-me",
    "replace_me",
    "replaceme",
    "xxxxxxxx",
    "xxxx-xxxx",
];

/// Domains reserved for documentation (RFC 2606, RFC 6761): never a real server.
const EXAMPLE_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const RESERVED_TLDS: &[&str] = &["example", "invalid"];

/// Why `value` looks like a placeholder, in words that quote none of it; `None` when it
/// looks real. `is_url` also checks the host against the reserved example domains.
pub fn looks_like_placeholder(value: &str, is_url: bool) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return Some("a word like change-me or xxxxxxxx");
    }
    if has_your_word(&lower) {
        return Some("a word like YOUR-API-KEY");
    }
    let angle =
        |open: &str, close: &str| lower.find(open).is_some_and(|i| lower[i..].contains(close));
    if angle("<", ">") || angle("%3c", "%3e") {
        return Some("a <placeholder> in angle brackets");
    }
    if is_url
        && let Ok(url) = Url::parse(value)
        && let Some(host) = url.host_str()
        && is_example_host(&host.to_ascii_lowercase())
    {
        return Some("a host reserved for examples (example.com, .example, .invalid)");
    }
    None
}

/// `your-…` or `your_…` starting a word (`YOUR-API-KEY`, `your_token`), not inside one.
fn has_your_word(lower: &str) -> bool {
    lower.match_indices("your").any(|(i, _)| {
        let starts_word = lower[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        starts_word && matches!(lower.as_bytes().get(i + 4), Some(b'-' | b'_'))
    })
}

fn is_example_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    EXAMPLE_DOMAINS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        || RESERVED_TLDS
            .iter()
            .any(|t| host == *t || host.ends_with(&format!(".{t}")))
}

/// One value found to be a placeholder: which table entry, which key, what to say.
struct Finding {
    /// `"servers"` or `"notify"`, and the entry's index in that array.
    array: &'static str,
    index: usize,
    key: &'static str,
    message: String,
}

/// The warnings for `config`, loaded from `text` at `path`: one line per placeholder,
/// `FILE:LINE:COL: key.path: …`. The file is only parsed again (for the locations) when
/// something was found, so a large fleet's config costs one pass over its values.
pub fn warnings(text: &str, path: &Path, config: &Config) -> Vec<String> {
    let findings = find(config);
    if findings.is_empty() {
        return Vec::new();
    }
    let idx = LineIndex::new(text);
    // The text just loaded, so it parses; were it not to, the warnings go without a place.
    let doc = DeTable::parse(text).ok();
    let root = doc.as_ref().map(|d| TableReader::root(&idx, d.get_ref()));
    // The file was read once already: what it says of itself was reported then.
    let mut ignored = Problems::default();
    let mut tables = |array| {
        root.as_ref()
            .and_then(|r| r.array_of_tables(array, &mut ignored).ok().flatten())
            .unwrap_or_default()
    };
    let (servers, notify) = (tables("servers"), tables("notify"));
    findings
        .into_iter()
        .map(|f| {
            let table = match f.array {
                "servers" => servers.get(f.index),
                _ => notify.get(f.index),
            };
            match table {
                Some(t) => {
                    // A webhook URL comes from exactly one of url, url_file, url_env.
                    let key = if f.array == "notify" {
                        WEBHOOK_URL_KEYS
                            .keys()
                            .into_iter()
                            .find(|k| t.get(k).is_some())
                            .unwrap_or(f.key)
                    } else {
                        f.key
                    };
                    t.key_location(key).problem(f.message).render(path)
                }
                None => format!(
                    "{}: {}[{}].{}: {}",
                    path.display(),
                    f.array,
                    f.index,
                    f.key,
                    f.message
                ),
            }
        })
        .collect()
}

fn find(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for (index, s) in config.servers.iter().enumerate() {
        let mut push = |key, message| {
            out.push(Finding {
                array: "servers",
                index,
                key,
                message,
            })
        };
        if let Some(why) = looks_like_placeholder(s.url.as_str(), true) {
            push(
                "url",
                format!(
                    "\"{}\" still holds {why}; put your Jellyfin server's address there",
                    s.url
                ),
            );
        }
        if looks_like_placeholder(s.api_key.expose(), false).is_some() {
            let from = match &s.api_key_source {
                KeySource::File(p) => format!("read from {}", p.display()),
                KeySource::Env(v) => format!("in ${v}"),
                KeySource::Inline => "written here".to_owned(),
            };
            push(
                API_KEY_KEYS.key_of(&s.api_key_source),
                format!(
                    "the API key {from} looks like a placeholder, not a real key (it is a secret, so it is not shown); \
                     create one in Jellyfin under Dashboard → API Keys and put it there"
                ),
            );
        }
        if let Some(ping) = &s.ping_url
            && looks_like_placeholder(ping.expose(), true).is_some()
        {
            push(
                "ping_url",
                "the ping URL looks like a placeholder (it is a secret, so it is not shown); \
                 put your check's own URL there, or remove ping_url"
                    .to_owned(),
            );
        }
    }
    for (index, n) in config.notify.iter().enumerate() {
        if looks_like_placeholder(n.url.expose(), true).is_some() {
            out.push(Finding {
                array: "notify",
                index,
                // Which of url, url_file and url_env holds it is settled with the locations.
                key: WEBHOOK_URL_KEYS.inline,
                message: "the webhook URL looks like a placeholder (it is a secret, so it is not shown); \
                          put your own receiver's URL there, or remove this [[notify]] table"
                    .to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::looks_like_placeholder;

    #[test]
    fn placeholders_are_told_from_real_values() {
        let placeholders = [
            ("https://ntfy.sh/jellyfin-exports-change-me", true),
            ("https://ntfy.sh/CHANGEME", true),
            ("replace_me", false),
            ("YOUR-API-KEY", false),
            ("your_api_key", false),
            ("https://hc-ping.com/your-check-uuid", true),
            ("https://hc-ping.com/<uuid>", true),
            ("https://hc-ping.com/%3Cuuid%3E", true),
            (
                "https://hc-ping.com/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                true,
            ),
            ("http://jellyfin.example.com:8096/", true),
            ("https://example.org/jellyfin/", true),
            ("https://EXAMPLE.NET./", true),
            ("http://media.example:8096/", true),
            ("http://nas.invalid/", true),
        ];
        for (value, is_url) in placeholders {
            assert!(
                looks_like_placeholder(value, is_url).is_some(),
                "{value:?} should look like a placeholder"
            );
        }
        let real = [
            ("http://jellyfin.lan:8096/", true),
            ("http://192.168.1.20:8096/", true),
            ("https://myexample.com/jellyfin/", true),
            ("https://example.com.evil.test/", true),
            (
                "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                true,
            ),
            ("https://ntfy.sh/backups-of-yours", true),
            ("https://ntfy.sh/detour-to-x", true),
            ("0123456789abcdef0123456789abcdef", false),
            // A key is not a URL: a host rule does not apply to it.
            ("example.com", false),
        ];
        for (value, is_url) in real {
            assert_eq!(
                looks_like_placeholder(value, is_url),
                None,
                "{value:?} should look real"
            );
        }
    }
}
