//! `healthcheck`: ask the running daemon's `/healthz` (for Docker's `HEALTHCHECK`, which
//! has no shell or curl in a distroless image). Exit 0 when healthy, 1 otherwise.

use super::exit;
use crate::config::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The address to ask: a wildcard listen address is reached over loopback.
fn probe_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

pub async fn healthcheck(config: &Config) -> u8 {
    let Some(listen) = config.daemon.listen else {
        eprintln!(
            "unhealthy: [daemon] listen is off in {}, so there is no /healthz to ask",
            config.path.display()
        );
        return exit::FAILED;
    };
    let url = format!("http://{}/healthz", probe_addr(listen));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: cannot build an HTTP client: {e}");
            return exit::FAILED;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("healthy: {url} answered {}", r.status());
            exit::OK
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!("unhealthy: {url} answered {status}: {}", body.trim());
            exit::FAILED
        }
        Err(e) => {
            eprintln!("unhealthy: cannot reach {url}: {e} (is the daemon running?)");
            exit::FAILED
        }
    }
}
