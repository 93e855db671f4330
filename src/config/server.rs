//! `[[servers]]` entries, with `[defaults]` and the built-in defaults applied.

use super::archive::{self, Layer};
use super::env::{Load, LoadEnv};
use super::model::{CatchUp, IfRunning, KeySource, Secrets, ServerConfig};
use super::problem::{Located, Problem, Problems, Reported};
use super::reader::TableReader;
use super::secret_source::{API_KEY_KEYS, SecretRead, parse_secret_url, read_secret_source};
use super::settings::{Inherited, Settings, setting_keys};
use crate::schedule::{Schedule, ScheduleError};
use crate::secret::Secret;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// The Migrator plugin's export task.
pub const MIGRATOR_TASK_KEY: &str = "JellyfinMigratorExport";

/// Keys only a server may set: they identify one server (`ping_url` identifies one check
/// on the monitor, so sharing it would mix servers' pings).
const IDENTITY_KEYS: &[&str] = &[
    "name",
    "url",
    API_KEY_KEYS.inline,
    API_KEY_KEYS.file,
    API_KEY_KEYS.env,
    "ping_url",
];

/// Each expression compiled once per zone, with the error when it does not compile.
type ScheduleCache = HashMap<(String, Tz), Result<Schedule, ScheduleError>>;

/// `[defaults]`: settings only. A key that identifies one server is refused, saying why.
pub(super) fn read_defaults(t: &TableReader<'_>, problems: &mut Problems) -> Settings {
    t.check_keys(
        &[&setting_keys()[..], &["archive"]].concat(),
        &[(
            IDENTITY_KEYS,
            "identifies one server and cannot be a default; set it in each [[servers]] entry",
        )],
        problems,
    );
    Settings::read(t, problems)
}

/// The `[[servers]]` tables over `defaults`, each name once; a server that cannot be read
/// is left out. Also every name the file gives, valid or not, so that `[[notify]]
/// servers` is checked against what the user wrote (an invalid server is reported once,
/// at the server). `archive` holds `[defaults.archive]` and `[archive]`, in that order.
pub(super) fn read_servers(
    list: &[TableReader<'_>],
    defaults: &Settings,
    archive: &[Layer; 2],
    load: &Load<'_>,
    problems: &mut Problems,
) -> (Vec<ServerConfig>, Vec<String>) {
    let known_keys = [&setting_keys()[..], IDENTITY_KEYS, &["archive"]].concat();
    let mut servers = Vec::new();
    let mut names_given = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Fleets share a few expressions; compiling each once keeps a 10 000-server config fast.
    let mut schedules = ScheduleCache::new();
    for (i, table) in list.iter().enumerate() {
        if let Some(n) = table.get("name").and_then(|v| v.get_ref().as_str()) {
            names_given.push(n.to_owned());
        }
        table.check_keys(&known_keys, &[], problems);
        let Ok(server) = read_server(table, defaults, archive, load, &mut schedules, problems)
        else {
            continue;
        };
        if let Some(first) = seen.get(&server.name) {
            problems.report(table.key_location("name").problem(format!(
                "duplicate server name {:?} (also servers[{first}]); names must be unique",
                server.name
            )));
        } else {
            seen.insert(server.name.clone(), i);
        }
        servers.push(server);
    }
    (servers, names_given)
}

/// One `[[servers]]` table over what `[defaults]` says. Each value that is neither set nor
/// inherited takes its built-in default here, where it is read.
fn read_server(
    t: &TableReader<'_>,
    defaults: &Settings,
    archive: &[Layer; 2],
    load: &Load<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Problems,
) -> Result<ServerConfig, Reported> {
    let s = Settings::read(t, problems).over(defaults);
    let name = read_server_name(t, problems);
    let url = t
        .required_string("url", problems)
        .and_then(|u| problems.check(parse_server_url(&u)));
    let api_key = read_api_key(t, load, problems);
    let ping_url = read_ping_url(t, load.secrets, problems);
    let (timezone, schedule) = read_schedule(t, &s, load.env, schedules, problems);
    let (poll_interval, timeout) = read_poll_and_timeout(t, &s, problems);
    let own_archive = Layer::of(t, load, problems);
    let archive = archive::resolve([&own_archive, &archive[0], &archive[1]]);

    // Every problem is reported by now: what follows only assembles.
    let (api_key, api_key_source) = api_key?;
    Ok(ServerConfig {
        name: name?,
        url: url?,
        api_key,
        api_key_source,
        schedule: schedule?,
        timezone: timezone?,
        enabled: s.or("enabled", true)?,
        task_key: s.or("task_key", MIGRATOR_TASK_KEY.to_owned())?,
        poll_interval: poll_interval?,
        timeout: timeout?,
        request_timeout: s.or("request_timeout", Duration::from_secs(30))?,
        // At most 100, so it fits.
        retries: s.or::<u64>("retries", 3)? as u32,
        retry_backoff: s.or("retry_backoff", Duration::from_secs(30))?,
        jitter: s.or("jitter", Duration::ZERO)?,
        catch_up: s.or("catch_up", CatchUp::Last)?,
        catch_up_window: s.or("catch_up_window", Duration::from_secs(24 * 3600))?,
        if_running: s.or("if_running", IfRunning::Skip)?,
        // At most 10 000 000, so it fits.
        history_limit: s.or::<u64>("history_limit", 1000)? as usize,
        start_grace: s.or("start_grace", Duration::from_secs(60))?,
        verify_export: s.or("verify_export", true)?,
        ping_url: ping_url?,
        archive: archive?,
    })
}

fn read_server_name(t: &TableReader<'_>, problems: &mut Problems) -> Result<String, Reported> {
    let n = t.required_string("name", problems)?;
    if valid_server_name(&n.value) {
        return Ok(n.value);
    }
    Err(problems.report(n.problem(format!(
        "{:?} is not a valid server name: use lowercase letters, digits, '-' and '_', starting with a letter or digit (it is used in file names and metric labels)",
        n.value
    ))))
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

/// The timezone (the system's when none is set) and the compiled schedule.
fn read_schedule(
    t: &TableReader<'_>,
    s: &Inherited<'_>,
    env: &LoadEnv<'_>,
    schedules: &mut ScheduleCache,
    problems: &mut Problems,
) -> (Result<Tz, Reported>, Result<Schedule, Reported>) {
    let timezone = s
        .get("timezone")
        .map(|tz| tz.unwrap_or_else(|| (env.system_timezone)()));
    let expr: Located<String> = match s.get("schedule") {
        Ok(Some(expr)) => expr,
        _ => return (timezone, Err(problems.report(t.missing("schedule")))),
    };
    // Parse the expression even when the zone is invalid (with UTC), so that both
    // problems are reported in one go.
    let tz = timezone.unwrap_or(chrono_tz::UTC);
    let compiled = schedules
        .entry((expr.value.clone(), tz))
        .or_insert_with(|| Schedule::parse(&expr.value, tz));
    let schedule =
        match compiled {
            Ok(schedule) => timezone.map(|_| schedule.clone()),
            Err(e) => Err(problems
                .report(expr.problem(format!("invalid cron expression {:?}: {e}", expr.value)))),
        };
    (timezone, schedule)
}

/// `poll_interval` and `timeout`, which must fit together: a run that may last no longer
/// than one poll interval could never be seen to finish.
fn read_poll_and_timeout(
    t: &TableReader<'_>,
    s: &Inherited<'_>,
    problems: &mut Problems,
) -> (Result<Duration, Reported>, Result<Duration, Reported>) {
    let poll_interval = s.or("poll_interval", Duration::from_secs(5));
    let timeout = s.get::<Located<Duration>>("timeout");
    let limit = timeout
        .clone()
        .map(|d| d.map_or(Duration::from_secs(6 * 3600), |d| d.value));
    if let (Ok(poll), Ok(limit)) = (poll_interval, limit)
        && limit < poll
    {
        // At the timeout when one is set, else where poll_interval is (or would be).
        let place = match timeout {
            Ok(Some(d)) => d.loc,
            _ => t.key_location("poll_interval"),
        };
        problems.report(place.problem(format!(
            "timeout ({}) is shorter than poll_interval ({}); a run could never be seen to finish",
            humantime::format_duration(limit),
            humantime::format_duration(poll)
        )));
    }
    (poll_interval, limit)
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
