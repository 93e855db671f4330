//! `[[servers]]` entries, with `[defaults]` and the built-in defaults applied.

use super::env::{Load, LoadEnv};
use super::model::{CatchUp, IfRunning, KeySource, Secrets, ServerConfig};
use super::reader::{Located, Problem, Problems, Read, Reported, TableReader};
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

/// The per-server settings as read from one table: `Ok(None)` where the table is silent,
/// `Err` where it said something invalid (reported). A string setting (`schedule`,
/// `timezone`, `task_key`) whose value is not a string, or a blank `task_key`, counts as
/// unset (and is reported).
#[derive(Clone)]
pub(super) struct Settings {
    schedule: Option<Located<String>>,
    enabled: Read<bool>,
    timezone: Read<Located<Tz>>,
    task_key: Option<Located<String>>,
    poll_interval: Read<Located<Duration>>,
    timeout: Read<Located<Duration>>,
    request_timeout: Read<Located<Duration>>,
    retries: Read<u64>,
    retry_backoff: Read<Located<Duration>>,
    jitter: Read<Located<Duration>>,
    catch_up: Read<CatchUp>,
    catch_up_window: Read<Located<Duration>>,
    if_running: Read<IfRunning>,
    history_limit: Read<u64>,
    start_grace: Read<Located<Duration>>,
    verify_export: Read<bool>,
}

pub(super) fn read_settings(t: &TableReader<'_>, problems: &mut Problems) -> Settings {
    let nonzero = |d: Read<Located<Duration>>, problems: &mut Problems| match d? {
        Some(d) if d.value.is_zero() => {
            Err(problems.report(d.problem("must be greater than zero".into())))
        }
        d => Ok(d),
    };
    let timezone = match t.string("timezone", problems) {
        Ok(Some(s)) => match timezone::parse_timezone(&s.value) {
            Ok(tz) => Ok(Some(s.with(tz))),
            Err(e) => Err(problems.report(s.problem(e))),
        },
        _ => Ok(None),
    };
    let task_key = match t.string("task_key", problems) {
        Ok(Some(s)) if s.value.trim().is_empty() => {
            problems.report(s.problem("must not be empty".into()));
            None
        }
        read => read.ok().flatten(),
    };
    Settings {
        schedule: t.string("schedule", problems).ok().flatten(),
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
/// chosen table said something invalid (reported).
fn plain<T: Clone>(own: &Read<T>, default: &Read<T>, fallback: T) -> Result<T, Reported> {
    Ok(pick(own, default)?.unwrap_or(fallback))
}

/// The server's own value if it set one, else the `[defaults]` one.
fn pick<T: Clone>(own: &Read<T>, default: &Read<T>) -> Read<T> {
    match own {
        Ok(None) => default.clone(),
        set => set.clone(),
    }
}

pub(super) type ScheduleCache = HashMap<(String, Tz), Result<Schedule, String>>;

pub(super) fn read_server(
    t: &TableReader<'_>,
    defaults: &Settings,
    load: &Load<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Problems,
) -> Result<ServerConfig, Reported> {
    let own = read_settings(t, problems);
    let name = read_server_name(t, problems);
    let url = match t.string("url", problems) {
        Ok(Some(u)) => problems.check(parse_server_url(&u)),
        Ok(None) => Err(problems.report(t.missing("url"))),
        Err(reported) => Err(reported),
    };
    let api_key = read_api_key(t, load, problems);
    let ping_url = read_ping_url(t, load.secrets, problems);
    let (timezone, schedule) = read_schedule(t, &own, defaults, load.env, schedules, problems);
    let timings = read_timings(t, &own, defaults, problems);
    let task_key = own
        .task_key
        .or_else(|| defaults.task_key.clone())
        .map(|k| k.value)
        .unwrap_or_else(|| MIGRATOR_TASK_KEY.to_owned());

    let timings = timings?;
    let (api_key, api_key_source) = api_key?;
    Ok(ServerConfig {
        name: name?,
        url: url?,
        api_key,
        api_key_source,
        schedule: schedule?,
        timezone: timezone?,
        enabled: plain(&own.enabled, &defaults.enabled, true)?,
        task_key,
        poll_interval: timings.poll_interval,
        timeout: timings.timeout,
        request_timeout: timings.request_timeout,
        // At most 100, so it fits.
        retries: plain(&own.retries, &defaults.retries, 3)? as u32,
        retry_backoff: timings.retry_backoff,
        jitter: timings.jitter,
        catch_up: plain(&own.catch_up, &defaults.catch_up, CatchUp::Last)?,
        catch_up_window: timings.catch_up_window,
        if_running: plain(&own.if_running, &defaults.if_running, IfRunning::Skip)?,
        // At most 10 000 000, so it fits.
        history_limit: plain(&own.history_limit, &defaults.history_limit, 1000)? as usize,
        start_grace: timings.start_grace,
        verify_export: plain(&own.verify_export, &defaults.verify_export, true)?,
        ping_url: ping_url?,
    })
}

fn read_server_name(t: &TableReader<'_>, problems: &mut Problems) -> Result<String, Reported> {
    match t.string("name", problems)? {
        Some(n) if valid_server_name(&n.value) => Ok(n.value),
        Some(n) => Err(problems.report(n.problem(format!(
            "{:?} is not a valid server name: use lowercase letters, digits, '-' and '_', starting with a letter or digit (it is used in file names and metric labels)",
            n.value
        )))),
        None => Err(problems.report(t.missing("name"))),
    }
}

/// `ping_url`: an http(s) URL, a secret; with [`Secrets::Skip`] only its type is checked.
/// One of the wrong type counts as unset (and is reported).
fn read_ping_url(
    t: &TableReader<'_>,
    secrets: Secrets,
    problems: &mut Problems,
) -> Result<Option<Secret>, Reported> {
    match t.string("ping_url", problems) {
        Ok(None) | Err(_) => Ok(None),
        Ok(Some(_)) if secrets == Secrets::Skip => Ok(Some(Secret::unresolved())),
        Ok(Some(u)) => {
            problems.check(parse_secret_url(&u.value, &u, "the ping URL"))?;
            Ok(Some(Secret::new(u.value.trim())))
        }
    }
}

/// The timezone and the compiled schedule.
fn read_schedule(
    t: &TableReader<'_>,
    own: &Settings,
    defaults: &Settings,
    env: &LoadEnv<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Problems,
) -> (Result<Tz, Reported>, Result<Schedule, Reported>) {
    let timezone = match pick(&own.timezone, &defaults.timezone) {
        Ok(Some(tz)) => Ok(tz.value),
        Err(reported) => Err(reported),
        Ok(None) => Ok((env.system_timezone)()),
    };
    let Some(expr) = own.schedule.clone().or_else(|| defaults.schedule.clone()) else {
        return (timezone, Err(problems.report(t.missing("schedule"))));
    };
    // Parse the expression even when the zone is invalid (with UTC), so that both
    // problems are reported in one go.
    let tz = timezone.unwrap_or(chrono_tz::UTC);
    let compiled = schedules
        .entry((expr.value.clone(), tz))
        .or_insert_with(|| Schedule::parse(&expr.value, tz).map_err(|e| e.to_string()));
    let schedule =
        match compiled {
            Ok(s) => timezone.map(|_| s.clone()),
            Err(e) => Err(problems
                .report(expr.problem(format!("invalid cron expression {:?}: {e}", expr.value)))),
        };
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
    problems: &mut Problems,
) -> Result<Timings, Reported> {
    type Setting = Read<Located<Duration>>;
    let dur = |own: &Setting, def: &Setting, fallback: Duration| match pick(own, def)? {
        Some(d) => Ok((d.value, Some(d))),
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
            Some(loc) => problems.report(loc.problem(msg)),
            None => problems.report(t.key_location("poll_interval").problem(msg)),
        };
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
    Ok(Timings {
        poll_interval: poll_interval?.0,
        timeout: timeout?.0,
        request_timeout: request_timeout?.0,
        retry_backoff: retry_backoff?.0,
        jitter: jitter?.0,
        catch_up_window: catch_up_window?.0,
        start_grace: start_grace?.0,
    })
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters: safe in file names and metric labels.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

fn parse_server_url(u: &Located<String>) -> Result<Url, Problem> {
    if !u.value.contains("://") {
        return Err(u.problem(format!(
            "{:?} must start with http:// or https://, e.g. \"http://{}\"",
            u.value,
            u.value.trim()
        )));
    }
    let mut url = Url::parse(u.value.trim()).map_err(|e| {
        u.problem(format!(
            "{:?} is not a URL ({e}); write it like \"http://jellyfin.lan:8096\" or \"https://host/jellyfin\"",
            u.value
        ))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(u.problem(format!(
            "{:?} uses scheme {:?}; only http and https are supported",
            u.value,
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(u.problem(format!("{:?} has no host", u.value)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(u.problem(
            "must not carry a user name or password; the API key is given with api_key_file, api_key_env or api_key".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(u.problem(format!(
            "{:?} must not have a query or fragment (a key in a URL leaks into logs); give only the server's base URL",
            u.value
        )));
    }
    // A trailing slash makes Url::join keep the base path (`/jellyfin/` + `System/Ping`).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn read_api_key(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<(Secret, KeySource), Reported> {
    let (raw, source, loc) = match read_secret_source(t, &API_KEY_KEYS, load, problems)? {
        SecretRead::Value(raw, source, loc) => (raw, source, loc),
        SecretRead::NotRead(source) => return Ok((Secret::unresolved(), source)),
    };
    // Key files usually end with a newline; a key never contains white space.
    let key = raw.trim();
    if key.is_empty() {
        return Err(problems.report(loc.problem(format!("the API key from {source} is empty"))));
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(problems.report(loc.problem(format!(
            "the API key from {source} contains spaces, quotes or control characters; a Jellyfin API key is 32 hex digits"
        ))));
    }
    Ok((Secret::new(key), source))
}
