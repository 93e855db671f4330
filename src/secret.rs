//! Secrets (API keys, webhook URLs) in a type that never prints its value.
//!
//! `Debug` and `Display` both print a fixed mask, so a secret that ends up in a log line, an
//! error message or a `{:?}` of a config struct shows `***` instead of the key. The only way
//! to the value is [`Secret::expose`], which the HTTP client calls when it builds a header.
//!
//! A config loaded for a command that contacts no server (`history`, `check --no-secrets`)
//! names its secrets without reading them: those are [`Secret::unresolved`], which hold no
//! value at all.
//!
//! A URL that is a capability (a webhook, a Healthchecks ping URL) carries its secret in
//! the path, the query or the user info; [`redacted`] is the form of such a URL that may be
//! logged.

use std::fmt;
use url::Url;

/// A string that must not be shown: its `Debug` and `Display` print a mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Option<String>);

impl Secret {
    /// What every rendering of a secret prints instead of the value.
    pub const MASK: &'static str = "***";

    pub fn new(value: impl Into<String>) -> Self {
        Secret(Some(value.into()))
    }

    /// A secret the config names but that was deliberately not read (a config loaded with
    /// [`crate::config::Secrets::Skip`], which no command that contacts a server uses).
    pub fn unresolved() -> Self {
        Secret(None)
    }

    /// Whether the value was read.
    pub fn is_resolved(&self) -> bool {
        self.0.is_some()
    }

    /// The value itself; call this only where the value is sent to its destination. An
    /// [unresolved](Self::unresolved) secret has none and gives "" (which no server accepts).
    pub fn expose(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

/// What may be shown of a secret URL: `scheme://host[:port] (path hidden)`. User info,
/// path, query and fragment are left out whatever they hold, so the form says nothing about
/// which hook or check it is beyond its host.
pub fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port} (path hidden)", url.scheme()),
        None => format!("{}://{host} (path hidden)", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_keeps_only_scheme_host_and_port() {
        let cases = [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                "https://hooks.slack.com (path hidden)",
            ),
            (
                "http://user:pw@127.0.0.1:8080/hook?token=SECRET#frag",
                "http://127.0.0.1:8080 (path hidden)",
            ),
            (
                "https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "https://hc-ping.com (path hidden)",
            ),
            // The default port is not repeated; an IPv6 host keeps its brackets.
            ("https://ntfy.sh:443/topic", "https://ntfy.sh (path hidden)"),
            ("http://[::1]:9000/x", "http://[::1]:9000 (path hidden)"),
        ];
        for (url, want) in cases {
            let shown = redacted(&Url::parse(url).unwrap());
            assert_eq!(shown, want, "{url}");
            for secret in ["SECRET", "services", "pw", "user", "0f1e2d3c", "topic"] {
                assert!(!shown.contains(secret), "{shown} shows {secret}");
            }
        }
    }

    #[test]
    fn debug_and_display_mask_the_value() {
        let s = Secret::new("0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "0123456789abcdef0123456789abcdef");
        assert!(s.is_resolved());
        let u = Secret::unresolved();
        assert!(!u.is_resolved());
        assert_eq!(
            (format!("{u}"), format!("{u:?}"), u.expose()),
            ("***".into(), "***".into(), "")
        );
    }
}
