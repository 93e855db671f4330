//! `healthcheck`: ask the running daemon's `/healthz` (for Docker's `HEALTHCHECK`, which
//! has no shell or curl in a distroless image). Exit 0 when healthy, 1 otherwise, always
//! within its own timeout and saying why: refused, no answer in time, or the answer's
//! status and reason. `/healthz` needs no token, so neither does this.

use super::{CommandError, Verdict};
use crate::config::Config;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The address to ask: a wildcard listen address is reached over loopback.
fn probe_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// Why the daemon is not known to be healthy (each message follows `unhealthy: `).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(
        "[daemon] listen is off in {}, so there is no /healthz to ask",
        config.display()
    )]
    NoEndpoint { config: PathBuf },
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    /// `/healthz` answered, and not 2xx: its body says why.
    #[error("{url} answered {status}: {body}")]
    Answered {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error(
        "cannot reach {url}: connection refused: nothing listens there (is the daemon running, with this [daemon] listen?)"
    )]
    Refused { url: String },
    #[error(
        "no answer from {url} within {}: the daemon is stuck, or the port is not the daemon's",
        humantime::format_duration(*timeout)
    )]
    TimedOut { url: String, timeout: Duration },
    #[error("cannot reach {url}: {cause} (is the daemon running?)")]
    Unreachable { url: String, cause: String },
}

/// The longest body of a failed answer that is shown.
const MAX_REASON_BYTES: usize = 512;

/// The command: `healthy: …` on `out`, or why not, within `timeout`.
pub async fn healthcheck(
    config: &Config,
    timeout: Duration,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    let Some(listen) = config.daemon.listen else {
        return Err(HealthError::NoEndpoint {
            config: config.path.clone(),
        }
        .into());
    };
    let url = format!("http://{}/healthz", probe_addr(listen));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(HealthError::Client)?;
    let answer = match client.get(&url).send().await {
        Ok(answer) => answer,
        Err(e) => return Err(why_unreachable(url, timeout, &e).into()),
    };
    let status = answer.status();
    if !status.is_success() {
        let body = match answer.text().await {
            Ok(body) => shorten(body.trim()),
            Err(e) if e.is_timeout() => return Err(HealthError::TimedOut { url, timeout }.into()),
            Err(_) => String::new(),
        };
        return Err(HealthError::Answered { url, status, body }.into());
    }
    let _ = writeln!(out, "healthy: {url} answered {status}");
    Ok(Verdict::Fine)
}

/// A request that got no answer, in the terms of what to look at.
fn why_unreachable(url: String, timeout: Duration, e: &reqwest::Error) -> HealthError {
    if e.is_timeout() {
        return HealthError::TimedOut { url, timeout };
    }
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return HealthError::Refused { url };
        }
        causes.push(s.to_string());
        source = s.source();
    }
    // reqwest's own line ("error sending request for url") says less than its causes.
    let cause = causes.pop().unwrap_or_else(|| e.to_string());
    HealthError::Unreachable { url, cause }
}

fn shorten(body: &str) -> String {
    if body.len() <= MAX_REASON_BYTES {
        return body.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}
