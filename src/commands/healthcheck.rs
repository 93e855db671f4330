//! `healthcheck`: ask the running daemon's `/healthz` (for Docker's `HEALTHCHECK`, which
//! has no shell or curl in a distroless image). Exit 0 when healthy, 1 otherwise.

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
    #[error("cannot reach {url}: {source} (is the daemon running?)")]
    Unreachable { url: String, source: reqwest::Error },
}

/// The command: `healthy: …` on `out`, or why not.
pub async fn healthcheck(config: &Config, mut out: impl Write) -> Result<Verdict, CommandError> {
    let Some(listen) = config.daemon.listen else {
        return Err(HealthError::NoEndpoint {
            config: config.path.clone(),
        }
        .into());
    };
    let url = format!("http://{}/healthz", probe_addr(listen));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(HealthError::Client)?;
    let answer = match client.get(&url).send().await {
        Ok(answer) => answer,
        Err(source) => return Err(HealthError::Unreachable { url, source }.into()),
    };
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default().trim().to_owned();
        return Err(HealthError::Answered { url, status, body }.into());
    }
    let _ = writeln!(out, "healthy: {url} answered {status}");
    Ok(Verdict::Fine)
}
