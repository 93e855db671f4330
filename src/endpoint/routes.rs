//! What each path answers: health, readiness, metrics, the status API and page.

use super::{Sources, api, metrics, page};
use hyper::header::HeaderName;

/// An answer before it becomes HTTP: status, type, body, and the headers only some
/// answers have. The headers every answer has are added in `super::http`.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(HeaderName, String)>,
}

pub(super) const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// Prometheus' content type for the text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, TEXT, body)
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// A path the endpoint serves.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Page,
    Healthz,
    Readyz,
    Metrics,
    Servers,
    History(&'a str),
    NotFound,
}

impl<'a> Route<'a> {
    pub fn of(path: &'a str) -> Route<'a> {
        match path {
            "/" => Route::Page,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/api/v1/servers" => Route::Servers,
            _ => match path
                .strip_prefix("/api/v1/servers/")
                .and_then(|rest| rest.strip_suffix("/history"))
            {
                Some(name) => Route::History(name),
                None => Route::NotFound,
            },
        }
    }

    /// Whether a token, when one is set, guards it: everything but the probes, which
    /// service managers and orchestrators ask without credentials.
    pub fn guarded(&self) -> bool {
        !matches!(self, Route::Healthz | Route::Readyz)
    }

    /// The answer; `query` is the part after `?`, empty when none.
    pub async fn answer(&self, query: &str, sources: &Sources) -> Reply {
        match self {
            Route::Page => Reply::new(200, HTML, page::render(&sources.status)),
            Route::Healthz => healthz(sources),
            Route::Readyz => readyz(sources),
            Route::Metrics => Reply::new(200, PROMETHEUS_TEXT, metrics::render(&sources.status)),
            Route::Servers => Reply::new(200, JSON, api::servers(&sources.status)),
            Route::History(name) => history(query, sources, name).await,
            Route::NotFound => Reply::text(404, "not found\n"),
        }
    }
}

/// Records per history request unless `?limit=` says otherwise, and at most.
const HISTORY_DEFAULT_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 100_000;

/// The first query parameter of that name, compared case-insensitively (as before: the
/// endpoint shared the simulator's ASP.NET-like parser).
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

async fn history(query: &str, sources: &Sources, name: &str) -> Reply {
    let limit = match query_param(query, "limit") {
        None => HISTORY_DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n.min(HISTORY_MAX_LIMIT),
            _ => {
                return Reply::text(
                    400,
                    format!("limit must be a positive integer, not {v:?}\n"),
                );
            }
        },
    };
    match api::history(&sources.history, &sources.status, name, limit).await {
        Some(Ok(body)) => Reply::new(200, JSON, body),
        Some(Err(e)) => Reply::text(500, format!("{e}\n")),
        None => Reply::text(404, "no such server\n"),
    }
}

/// 200 while every scheduling loop keeps waking; 503 naming the ones that stopped.
fn healthz(sources: &Sources) -> Reply {
    let stale = sources.status.stale_loops(sources.heartbeat_limit);
    if stale.is_empty() {
        Reply::text(200, "ok\n")
    } else {
        Reply::text(
            503,
            format!("scheduling loop stopped waking for: {}\n", stale.join(", ")),
        )
    }
}

/// 200 once the config is loaded and the schedules are armed.
fn readyz(sources: &Sources) -> Reply {
    if sources.status.armed() {
        Reply::text(200, "ready\n")
    } else {
        Reply::text(503, "starting: schedules not armed yet\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_which_the_token_guards() {
        for (path, route, guarded) in [
            ("/", Route::Page, true),
            ("/healthz", Route::Healthz, false),
            ("/readyz", Route::Readyz, false),
            ("/metrics", Route::Metrics, true),
            ("/api/v1/servers", Route::Servers, true),
            ("/api/v1/servers/a b/history", Route::History("a b"), true),
            ("/api/v1/servers//history", Route::History(""), true),
            ("/healthz/", Route::NotFound, true),
            ("/api/v1/servers/x", Route::NotFound, true),
        ] {
            let r = Route::of(path);
            assert_eq!(r, route, "{path}");
            assert_eq!(r.guarded(), guarded, "{path}");
        }
        assert_eq!(query_param("a=1&limit=5", "limit"), Some("5"));
        assert_eq!(query_param("LIMIT=7", "limit"), Some("7"));
        assert_eq!(query_param("limit", "limit"), Some(""));
        assert_eq!(query_param("", "limit"), None);
    }
}
