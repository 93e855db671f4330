//! `[[servers]]` entries, with `[defaults]` and the built-in defaults applied.

use super::env::{Load, LoadEnv};
use super::model::{CatchUp, IfRunning, KeySource, Secrets, ServerConfig};
use super::reader::{Located, Problem, TableReader};
use super::secret_source::{API_KEY_KEYS, SecretRead, parse_secret_url, read_secret_source};
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::timezone;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// The Migrator plugin's export task.
pub const MIGRATOR_TASK_KEY: &str = "JellyfinMigratorExport";

/// Keys a server may set itself or inherit from `[defaults]`.
pub(super) const SETTING_KEYS: &[&str] = &[
    "schedule",
    "enabled",
    "timezone",
    "task_key",
    "poll_interval",
    "timeout",
    "request_timeout",
    "retries",
    "retry_backoff",
    "jitter",
    "catch_up",
    "catch_up_window",
    "if_running",
    "history_limit",
    "start_grace",
    "verify_export",
];

/// Keys only a server may set: they identify one server (`ping_url` identifies one check
/// on the monitor, so sharing it would mix servers' pings).
pub(super) const IDENTITY_KEYS: &[&str] = &[
    "name",
    "url",
    "api_key",
    "api_key_file",
    "api_key_env",
    "ping_url",
];

/// The per-server settings as read from one table; `None` where the table is silent,
/// `Some(Err(()))` where it said something invalid (already reported).
#[derive(Clone, Default)]
pub(super) struct Settings {
    schedule: Option<Located<String>>,
    enabled: Option<Result<bool, ()>>,
    timezone: Option<Result<Located<Tz>, ()>>,
    task_key: Option<Located<String>>,
    poll_interval: Option<Result<Located<Duration>, ()>>,
    timeout: Option<Result<Located<Duration>, ()>>,
    request_timeout: Option<Result<Located<Duration>, ()>>,
    retries: Option<Result<u64, ()>>,
    retry_backoff: Option<Result<Located<Duration>, ()>>,
    jitter: Option<Result<Located<Duration>, ()>>,
    catch_up: Option<Result<CatchUp, ()>>,
    catch_up_window: Option<Result<Located<Duration>, ()>>,
    if_running: Option<Result<IfRunning, ()>>,
    history_limit: Option<Result<u64, ()>>,
    start_grace: Option<Result<Located<Duration>, ()>>,
    verify_export: Option<Result<bool, ()>>,
}

pub(super) fn read_settings(t: &TableReader<'_>, problems: &mut Vec<Problem>) -> Settings {
    let nonzero = |d: Option<Result<Located<Duration>, ()>>, problems: &mut Vec<Problem>| {
        d.map(|r| {
            r.and_then(|d| {
                if d.value.is_zero() {
                    problems.push(d.problem("must be greater than zero".into()));
                    Err(())
                } else {
                    Ok(d)
                }
            })
        })
    };
    let timezone = t.string("timezone", problems).map(|s| {
        timezone::parse_timezone(&s.value)
            .map(|tz| s.with(tz))
            .map_err(|e| {
                problems.push(s.problem(e));
            })
    });
    let task_key = t.string("task_key", problems).and_then(|s| {
        if s.value.trim().is_empty() {
            problems.push(s.problem("must not be empty".into()));
            None
        } else {
            Some(s)
        }
    });
    Settings {
        schedule: t.string("schedule", problems),
        enabled: t.bool("enabled", problems),
        timezone,
        task_key,
        poll_interval: nonzero(t.located_duration("poll_interval", problems), problems),
        timeout: nonzero(t.located_duration("timeout", problems), problems),
        request_timeout: nonzero(t.located_duration("request_timeout", problems), problems),
        retries: t.bounded_int("retries", 0, 100, problems),
        retry_backoff: t.located_duration("retry_backoff", problems),
        jitter: t.located_duration("jitter", problems),
        catch_up: t.choice(
            "catch_up",
            &[("none", CatchUp::None), ("last", CatchUp::Last)],
            problems,
        ),
        catch_up_window: nonzero(t.located_duration("catch_up_window", problems), problems),
        if_running: t.choice(
            "if_running",
            &[("skip", IfRunning::Skip), ("follow", IfRunning::Follow)],
            problems,
        ),
        history_limit: t.bounded_int("history_limit", 1, 10_000_000, problems),
        start_grace: nonzero(t.located_duration("start_grace", problems), problems),
        verify_export: t.bool("verify_export", problems),
    }
}

/// The server's own value, else the `[defaults]` one, else `fallback`; `Err` when the
/// chosen table said something invalid (already reported).
fn plain<T: Clone>(
    own: &Option<Result<T, ()>>,
    default: &Option<Result<T, ()>>,
    fallback: T,
) -> Result<T, ()> {
    pick(own, default).unwrap_or(Ok(fallback))
}

/// The server's own value if it set one, else the `[defaults]` one.
fn pick<T: Clone>(own: &Option<T>, default: &Option<T>) -> Option<T> {
    own.clone().or_else(|| default.clone())
}

pub(super) type ScheduleCache = HashMap<(String, Tz), Result<Schedule, String>>;

pub(super) fn read_server(
    t: &TableReader<'_>,
    defaults: &Settings,
    load: &Load<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Vec<Problem>,
) -> Option<ServerConfig> {
    let own = read_settings(t, problems);
    let name = read_server_name(t, problems);
    let url = match t.string("url", problems) {
        Some(u) => parse_server_url(&u, problems),
        None => {
            if t.get("url").is_none() {
                problems.push(t.missing("url"));
            }
            None
        }
    };
    let api_key = read_api_key(t, load, problems);
    let ping_url = read_ping_url(t, load.secrets, problems);
    let (timezone, schedule) = read_schedule(t, &own, defaults, load.env, schedules, problems);
    let timings = read_timings(t, &own, defaults, problems);
    let task_key = pick(&own.task_key, &defaults.task_key)
        .map(|k| k.value)
        .unwrap_or_else(|| MIGRATOR_TASK_KEY.to_owned());

    let timings = timings?;
    let (api_key, api_key_source) = api_key?;
    Some(ServerConfig {
        name: name?,
        url: url?,
        api_key,
        api_key_source,
        schedule: schedule?,
        timezone: timezone?,
        enabled: plain(&own.enabled, &defaults.enabled, true).ok()?,
        task_key,
        poll_interval: timings.poll_interval,
        timeout: timings.timeout,
        request_timeout: timings.request_timeout,
        retries: u32::try_from(plain(&own.retries, &defaults.retries, 3).ok()?).ok()?,
        retry_backoff: timings.retry_backoff,
        jitter: timings.jitter,
        catch_up: plain(&own.catch_up, &defaults.catch_up, CatchUp::Last).ok()?,
        catch_up_window: timings.catch_up_window,
        if_running: plain(&own.if_running, &defaults.if_running, IfRunning::Skip).ok()?,
        history_limit: usize::try_from(
            plain(&own.history_limit, &defaults.history_limit, 1000).ok()?,
        )
        .ok()?,
        start_grace: timings.start_grace,
        verify_export: plain(&own.verify_export, &defaults.verify_export, true).ok()?,
        ping_url: ping_url.ok()?,
    })
}

fn read_server_name(t: &TableReader<'_>, problems: &mut Vec<Problem>) -> Option<String> {
    let name = t.string("name", problems).and_then(|n| {
        if valid_server_name(&n.value) {
            Some(n.value)
        } else {
            problems.push(n.problem(format!(
                "{:?} is not a valid server name: use lowercase letters, digits, '-' and '_', starting with a letter or digit (it is used in file names and metric labels)",
                n.value
            )));
            None
        }
    });
    if t.get("name").is_none() {
        problems.push(t.missing("name"));
    }
    name
}

/// `ping_url`: an http(s) URL, a secret; with [`Secrets::Skip`] only its type is checked.
fn read_ping_url(
    t: &TableReader<'_>,
    secrets: Secrets,
    problems: &mut Vec<Problem>,
) -> Result<Option<Secret>, ()> {
    match t.string("ping_url", problems) {
        None => Ok(None),
        Some(_) if secrets == Secrets::Skip => Ok(Some(Secret::unresolved())),
        Some(u) => parse_secret_url(&u.value, &u, "the ping URL", problems)
            .map(|_| Some(Secret::new(u.value.trim())))
            .ok_or(()),
    }
}

/// The timezone and the compiled schedule.
fn read_schedule(
    t: &TableReader<'_>,
    own: &Settings,
    defaults: &Settings,
    env: &LoadEnv<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Vec<Problem>,
) -> (Option<Tz>, Option<Schedule>) {
    let timezone = match pick(&own.timezone, &defaults.timezone) {
        Some(Ok(tz)) => Some(tz.value),
        Some(Err(())) => None,
        None => Some((env.system_timezone)()),
    };
    let schedule_src = pick(&own.schedule, &defaults.schedule);
    if schedule_src.is_none() {
        problems.push(t.missing("schedule"));
    }
    // Parse the expression even when the zone is invalid (with UTC), so that both
    // problems are reported in one go.
    let schedule = schedule_src.and_then(|expr| {
        let tz = timezone.unwrap_or(chrono_tz::UTC);
        let compiled = schedules
            .entry((expr.value.clone(), tz))
            .or_insert_with(|| Schedule::parse(&expr.value, tz).map_err(|e| e.to_string()));
        match compiled {
            Ok(s) => timezone.map(|_| s.clone()),
            Err(e) => {
                problems
                    .push(expr.problem(format!("invalid cron expression {:?}: {e}", expr.value)));
                None
            }
        }
    });
    (timezone, schedule)
}

/// A server's durations, defaults applied.
struct Timings {
    poll_interval: Duration,
    timeout: Duration,
    request_timeout: Duration,
    retry_backoff: Duration,
    jitter: Duration,
    catch_up_window: Duration,
    start_grace: Duration,
}

fn read_timings(
    t: &TableReader<'_>,
    own: &Settings,
    defaults: &Settings,
    problems: &mut Vec<Problem>,
) -> Option<Timings> {
    type Setting = Option<Result<Located<Duration>, ()>>;
    let dur = |own: &Setting, def: &Setting, fallback: Duration| match pick(own, def) {
        Some(Ok(d)) => Ok((d.value, Some(d))),
        Some(Err(())) => Err(()),
        None => Ok((fallback, None)),
    };
    let poll_interval = dur(
        &own.poll_interval,
        &defaults.poll_interval,
        Duration::from_secs(5),
    );
    let timeout = dur(
        &own.timeout,
        &defaults.timeout,
        Duration::from_secs(6 * 3600),
    );
    if let (Ok((poll, _)), Ok((limit, loc))) = (&poll_interval, &timeout)
        && limit < poll
    {
        let msg = format!(
            "timeout ({}) is shorter than poll_interval ({}); a run could never be seen to finish",
            humantime::format_duration(*limit),
            humantime::format_duration(*poll)
        );
        match loc {
            Some(loc) => problems.push(loc.problem(msg)),
            None => problems.push(t.key_location("poll_interval").problem(msg)),
        }
    }
    let request_timeout = dur(
        &own.request_timeout,
        &defaults.request_timeout,
        Duration::from_secs(30),
    );
    let retry_backoff = dur(
        &own.retry_backoff,
        &defaults.retry_backoff,
        Duration::from_secs(30),
    );
    let jitter = dur(&own.jitter, &defaults.jitter, Duration::ZERO);
    let catch_up_window = dur(
        &own.catch_up_window,
        &defaults.catch_up_window,
        Duration::from_secs(24 * 3600),
    );
    let start_grace = dur(
        &own.start_grace,
        &defaults.start_grace,
        Duration::from_secs(60),
    );
    Some(Timings {
        poll_interval: poll_interval.ok()?.0,
        timeout: timeout.ok()?.0,
        request_timeout: request_timeout.ok()?.0,
        retry_backoff: retry_backoff.ok()?.0,
        jitter: jitter.ok()?.0,
        catch_up_window: catch_up_window.ok()?.0,
        start_grace: start_grace.ok()?.0,
    })
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters: safe in file names and metric labels.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

fn parse_server_url(u: &Located<String>, problems: &mut Vec<Problem>) -> Option<Url> {
    if !u.value.contains("://") {
        problems.push(u.problem(format!(
            "{:?} must start with http:// or https://, e.g. \"http://{}\"",
            u.value,
            u.value.trim()
        )));
        return None;
    }
    let mut url = match Url::parse(u.value.trim()) {
        Ok(url) => url,
        Err(e) => {
            problems.push(u.problem(format!(
                "{:?} is not a URL ({e}); write it like \"http://jellyfin.lan:8096\" or \"https://host/jellyfin\"",
                u.value
            )));
            return None;
        }
    };
    if url.scheme() != "http" && url.scheme() != "https" {
        problems.push(u.problem(format!(
            "{:?} uses scheme {:?}; only http and https are supported",
            u.value,
            url.scheme()
        )));
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(u.problem(format!("{:?} has no host", u.value)));
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(u.problem(
            "must not carry a user name or password; the API key is given with api_key_file, api_key_env or api_key".into(),
        ));
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push(u.problem(format!(
            "{:?} must not have a query or fragment (a key in a URL leaks into logs); give only the server's base URL",
            u.value
        )));
        return None;
    }
    // A trailing slash makes Url::join keep the base path (`/jellyfin/` + `System/Ping`).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

fn read_api_key(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(Secret, KeySource)> {
    let (raw, source, loc) = match read_secret_source(t, &API_KEY_KEYS, load, problems)? {
        SecretRead::Value(raw, source, loc) => (raw, source, loc),
        SecretRead::NotRead(source) => return Some((Secret::unresolved(), source)),
    };
    // Key files usually end with a newline; a key never contains white space.
    let key = raw.trim();
    if key.is_empty() {
        problems.push(loc.problem(format!("the API key from {source} is empty")));
        return None;
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        problems.push(loc.problem(format!(
            "the API key from {source} contains spaces, quotes or control characters; a Jellyfin API key is 32 hex digits"
        )));
        return None;
    }
    Some((Secret::new(key), source))
}
