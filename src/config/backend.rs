//! `[daemon] backend` and the keys only the PostgreSQL backend reads: where runs are
//! claimed and recorded (docs/high-availability.md).
//!
//! The database URL is a secret like an API key (it usually holds a password): it comes
//! from exactly one of `database_url_file`, `database_url_env` or `database_url`, and no
//! message ever quotes it. The PostgreSQL keys given with `backend = "files"` are refused
//! rather than ignored: a user who wrote them meant something this backend would not do.

use super::env::Load;
use super::model::{Backend, KeySource, PostgresBackend};
use super::problem::{Located, Problem, Problems, Reported};
use super::reader::TableReader;
use super::secret_source::{DATABASE_URL_KEYS, SecretRead, read_secret_source};
use crate::secret::Secret;
use std::time::Duration;
use url::Url;

/// The `[daemon]` keys this module reads.
pub(super) const BACKEND_KEYS: &[&str] = &[
    "backend",
    "database_url",
    "database_url_file",
    "database_url_env",
    "lease_ttl",
    "instance_name",
];

/// How long a lease holds without renewal when the config does not say. The leader renews
/// every third of it, so it rides out two lost renewals (a database restart, a network
/// blip of ~10 s) before stepping down; a follower takes over at most one lease plus one
/// acquire interval after the leader's last renewal: 15 s + 5 s, well inside the 60 s
/// promised, with room left for the adoption and the next schedule tick.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Shorter leases renew so often that a busy database or a GC pause elsewhere would cost
/// the leadership; the tests use 2 s.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Above this, takeover (lease + a third of it) can pass the promised 60 s.
const MAX_PROMISED_LEASE_TTL: Duration = Duration::from_secs(45);
/// Longer than this is surely a mistake: the fleet would go an hour without a leader.
const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// `instance_name` appears on the status page, in metrics labels and in the lease row.
const MAX_INSTANCE_NAME: usize = 128;

/// `backend` and, for `"postgres"`, its keys. The warnings are things that work but
/// break a promise (a lease too long for takeover within 60 s).
pub(super) fn read_backend(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Result<Backend, Reported> {
    #[derive(Clone, Copy)]
    enum Kind {
        Files,
        Postgres,
    }
    let kind = t.choice(
        "backend",
        &[("files", Kind::Files), ("postgres", Kind::Postgres)],
        problems,
    )?;
    match kind.unwrap_or(Kind::Files) {
        Kind::Files => {
            refuse_postgres_keys(t, problems)?;
            Ok(Backend::Files)
        }
        Kind::Postgres => read_postgres(t, load, problems, warnings).map(Backend::Postgres),
    }
}

/// With `backend = "files"`, each PostgreSQL key given is reported where it is.
fn refuse_postgres_keys(t: &TableReader<'_>, problems: &mut Problems) -> Result<(), Reported> {
    let mut reported = None;
    for key in BACKEND_KEYS.iter().filter(|k| **k != "backend") {
        if t.get(key).is_some() {
            reported = Some(problems.report(t.key_location(key).problem(format!(
                "{key} is only read with backend = \"postgres\"; set backend = \"postgres\" or remove {key}"
            ))));
        }
    }
    reported.map_or(Ok(()), Err)
}

fn read_postgres(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Result<PostgresBackend, Reported> {
    let url = read_database_url(t, load, problems);
    let lease_ttl = t
        .located_duration("lease_ttl", problems)
        .and_then(|d| match d {
            None => Ok(DEFAULT_LEASE_TTL),
            Some(d) => check_lease_ttl(&d, load, warnings).map_err(|p| problems.report(p)),
        });
    let instance_name = t.string("instance_name", problems).and_then(|n| match n {
        None => Ok(None),
        Some(n) => check_instance_name(&n)
            .map(Some)
            .map_err(|p| problems.report(p)),
    });
    let (url, url_source) = url?;
    Ok(PostgresBackend {
        url,
        url_source,
        lease_ttl: lease_ttl?,
        instance_name: instance_name?,
    })
}

fn check_lease_ttl(
    d: &Located<Duration>,
    load: &Load<'_>,
    warnings: &mut Vec<String>,
) -> Result<Duration, Problem> {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if d.value < MIN_LEASE_TTL || d.value > MAX_LEASE_TTL {
        return Err(d.problem(format!(
            "must be between {} and {}; the default, {}, suits most fleets",
            show(MIN_LEASE_TTL),
            show(MAX_LEASE_TTL),
            show(DEFAULT_LEASE_TTL)
        )));
    }
    if d.value > MAX_PROMISED_LEASE_TTL {
        warnings.push(format!(
            "{}: [daemon] lease_ttl = \"{}\" is above {}: another instance takes over up to {} after the leader dies, later than the 60 s promised",
            load.path.display(),
            show(d.value),
            show(MAX_PROMISED_LEASE_TTL),
            show(d.value + d.value / 3)
        ));
    }
    Ok(d.value)
}

fn check_instance_name(n: &Located<String>) -> Result<String, Problem> {
    let name = n.value.trim();
    if name.is_empty() {
        return Err(n.problem(
            "must not be empty; leave instance_name out for the default, host:pid".into(),
        ));
    }
    if name.chars().count() > MAX_INSTANCE_NAME || name.chars().any(char::is_control) {
        return Err(n.problem(format!(
            "must be at most {MAX_INSTANCE_NAME} characters without control characters, like \"backup-a\""
        )));
    }
    Ok(name.to_owned())
}

/// The URL from its one source, checked (never quoted: it holds the password).
fn read_database_url(
    t: &TableReader<'_>,
    load: &Load<'_>,
    problems: &mut Problems,
) -> Result<(Secret, KeySource), Reported> {
    match read_secret_source(t, &DATABASE_URL_KEYS, load, problems)? {
        SecretRead::NotRead(source) => Ok((Secret::unresolved(), source)),
        SecretRead::Value(raw, source, loc) => match check_database_url(raw.trim()) {
            Ok(()) => Ok((Secret::new(raw.trim()), source)),
            Err(what) => Err(problems.report(loc.problem(format!(
                "the database URL from {} {what} (the value is not shown: it is a secret)",
                DATABASE_URL_KEYS.key_of(&source)
            )))),
        },
    }
}

/// What is wrong with a connection URL, as the end of a sentence, or nothing. Only the
/// URL form is accepted (`postgresql://user:password@host:port/db?sslmode=disable`), not
/// libpq's `key=value` form. TLS is not supported: a URL that demands it is refused here
/// rather than quietly connecting in the clear.
pub fn check_database_url(value: &str) -> Result<(), String> {
    let url = Url::parse(value).map_err(|e| {
        format!("is not a URL ({e}); write it like \"postgresql://user:password@host:5432/db\"")
    })?;
    if url.scheme() != "postgresql" && url.scheme() != "postgres" {
        return Err(format!(
            "uses scheme {:?}; write it like \"postgresql://user:password@host:5432/db\"",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host; name the server, like postgresql://user@db.example:5432/db (Unix sockets are not supported)".into());
    }
    for (key, value) in url.query_pairs() {
        if key != "sslmode" {
            continue;
        }
        match value.as_ref() {
            "disable" | "allow" | "prefer" => {}
            tls @ ("require" | "verify-ca" | "verify-full") => return Err(format!(
                "asks for sslmode={tls}, but this version connects to PostgreSQL without TLS; use sslmode=disable on a loopback or private network (or a TLS tunnel such as stunnel)"
            )),
            _ => return Err("has an sslmode that is not one of disable, allow, prefer, require, verify-ca, verify-full".into()),
        }
    }
    Ok(())
}
