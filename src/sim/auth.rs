//! Who is calling: the token of a request, looked for where Jellyfin looks (the
//! `Authorization` header and `?ApiKey=`; with legacy auth also the Emby headers and
//! `?api_key=`), and whether it is the administrator's key, a user's, or nobody's.

use super::config::SimServerConfig;
use crate::sim::http1::Request;

/// Who a request comes from, by its token.
pub(crate) enum Caller {
    Admin,
    User,
    Anonymous,
}

/// The caller of `req` by the keys in `cfg`; a token found nowhere, or a key nobody has, is
/// anonymous.
pub(crate) fn caller(req: &Request, cfg: &SimServerConfig) -> Caller {
    match token(req, cfg.accepts_legacy_auth()) {
        Some(t) if t == cfg.api_key => Caller::Admin,
        Some(t) if cfg.user_key.as_deref() == Some(t) => Caller::User,
        _ => Caller::Anonymous,
    }
}

/// The token, looked for where Jellyfin looks; legacy places only with `legacy`.
fn token(req: &Request, legacy: bool) -> Option<&str> {
    let from_header = |name: &str, allow_emby: bool| {
        req.header(name)
            .and_then(|v| token_in_authorization(v, allow_emby))
    };
    let found = from_header("Authorization", legacy)
        .or_else(|| {
            legacy
                .then(|| from_header("X-Emby-Authorization", true))
                .flatten()
        })
        .or_else(|| legacy.then(|| req.header("X-Emby-Token")).flatten())
        .or_else(|| legacy.then(|| req.header("X-MediaBrowser-Token")).flatten())
        .or_else(|| legacy.then(|| req.query_param("api_key")).flatten())
        // `?ApiKey=` is accepted by every version (and a bad idea: URLs end up in logs).
        .or_else(|| req.query_param("ApiKey"));
    found.filter(|t| !t.is_empty())
}

/// `MediaBrowser Token="…", Client="…"`: scheme case-insensitive, `Token` case-sensitive,
/// quotes optional.
fn token_in_authorization(value: &str, allow_emby: bool) -> Option<&str> {
    let (scheme, params) = value.trim().split_once(char::is_whitespace)?;
    let scheme_ok = scheme.eq_ignore_ascii_case("MediaBrowser")
        || (allow_emby && scheme.eq_ignore_ascii_case("Emby"));
    if !scheme_ok {
        return None;
    }
    params.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "Token").then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_forms() {
        for (h, want) in [
            (r#"MediaBrowser Token="k""#, Some("k")),
            (
                r#"mediabrowser Client="x", Version="1", Token=k"#,
                Some("k"),
            ),
            (r#"MediaBrowser token="k""#, None),
            (r#"Emby Token="k""#, None),
            ("Bearer k", None),
            ("MediaBrowser", None),
        ] {
            assert_eq!(token_in_authorization(h, false), want, "{h}");
        }
        assert_eq!(token_in_authorization(r#"Emby Token="k""#, true), Some("k"));
    }
}
