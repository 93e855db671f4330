//! The network under a server's checks: does its address resolve and take a connection,
//! is its TLS certificate good and for how long, and how far is its clock from ours.

use super::{Check, cert};
use crate::jellyfin::{CA_FILE_ENV, JellyfinError, Probe};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use url::Url;

/// A certificate that expires sooner than this is a warning: time to renew, before runs
/// start failing.
pub const CERT_WARN_DAYS: i64 = 14;
/// A clock further off than this is a warning.
pub const CLOCK_WARN_SECS: i64 = 60;

/// Resolve the URL's host and connect to its port, one address after the other.
pub async fn address(url: &Url, timeout: Duration) -> Check {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        // The config refuses such URLs; kept total.
        return Check::fail(
            "address",
            format!("{url} has no host or port"),
            "fix url in the config",
        );
    };
    let target = format!("{host}:{port}");
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host(&target),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Check::fail(
                    "address",
                    format!("{host} does not resolve: {e}"),
                    "check the host name in url (in a container, the name as the container sees it: see docs/docker.md)",
                )
                .with(json!({"host": host, "port": port, "addresses": []}));
        }
        Err(_) => {
            return Check::fail(
                "address",
                format!(
                    "resolving {host} took longer than {}",
                    humantime::format_duration(timeout)
                ),
                "check this machine's DNS (resolv.conf), or use the server's IP address in url",
            )
            .with(json!({"host": host, "port": port, "addresses": []}));
        }
    };
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let mut last_error = String::from("no address");
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                let ms = started.elapsed().as_millis() as u64;
                return Check::ok("address", format!("{target} connects ({addr}, {ms} ms)")).with(
                    json!({"host": host, "port": port, "addresses": shown, "connected_to": addr.to_string(), "connect_ms": ms}),
                );
            }
            Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            Err(_) => {
                last_error = format!(
                    "{addr}: no answer within {}",
                    humantime::format_duration(timeout)
                )
            }
        }
    }
    Check::fail(
        "address",
        format!("{target} resolves but takes no connection ({last_error})"),
        format!("check that Jellyfin is running and listens on port {port}, and that no firewall is in the way"),
    )
    .with(json!({"host": host, "port": port, "addresses": shown, "connected_to": null}))
}

/// The TLS verdict, from the public-info probe (made with the daemon's trust: the built-in
/// roots and [`CA_FILE_ENV`]).
pub fn tls(url: &Url, probe: Result<&Probe, &JellyfinError>, now: DateTime<Utc>) -> Check {
    if url.scheme() != "https" {
        return Check::skip(
            "tls",
            "plain http: no TLS, the API key crosses the network unencrypted (fine on a trusted LAN or loopback)",
        );
    }
    match probe {
        Ok(probe) => match probe.peer_certificate.as_deref().and_then(cert::not_after) {
            Some(not_after) => {
                let days = (not_after - now).num_days();
                let data = json!({"not_after": not_after, "days_left": days});
                let when = not_after.format("%Y-%m-%d");
                if days < CERT_WARN_DAYS {
                    Check::warn(
                        "tls",
                        format!("certificate valid, but it expires in {days} days ({when})"),
                        "renew the server's certificate: once it expires, every run fails to connect",
                    )
                    .with(data)
                } else {
                    Check::ok(
                        "tls",
                        format!("certificate valid, expires in {days} days ({when})"),
                    )
                    .with(data)
                }
            }
            None => Check::ok("tls", "certificate valid (its expiry could not be read)")
                .with(json!({"not_after": null, "days_left": null})),
        },
        Err(JellyfinError::Unreachable { cause, .. }) => Check::fail(
            "tls",
            format!("the TLS handshake failed: {cause}"),
            format!(
                "if the certificate is self-signed or from a private CA, name that CA's PEM file in {CA_FILE_ENV} (for the daemon too: its unit or container environment); if it expired or names another host, fix it on the server"
            ),
        ),
        Err(JellyfinError::Timeout { .. }) => {
            Check::skip("tls", "not checked: the server did not answer in time")
        }
        // An HTTP answer came back: the handshake was good.
        Err(_) => Check::ok(
            "tls",
            "certificate valid (its expiry was not read: the answer was an error)",
        ),
    }
}

/// The server's clock against ours, from its `Date` header.
pub fn clock(probe: &Probe) -> Check {
    let Some(date) = probe.date else {
        return Check::skip("clock", "the server sent no Date header");
    };
    // Compared with the middle of the request; the header has whole seconds.
    let ours = probe.sent + (probe.received - probe.sent) / 2;
    let skew = (date - ours).num_milliseconds() as f64 / 1000.0;
    let secs = skew.round() as i64;
    let data = json!({"skew_seconds": secs, "server_date": date});
    let how = match secs {
        0 => "matches ours".to_owned(),
        s if s > 0 => format!("is {s} s ahead of ours"),
        s => format!("is {} s behind ours", -s),
    };
    if secs.abs() > CLOCK_WARN_SECS {
        Check::warn(
            "clock",
            format!("the server's clock {how}"),
            "sync the clocks (NTP: systemd-timesyncd or chrony) on the server and here: runs are scheduled by this machine's clock and recorded with the server's",
        )
        .with(data)
    } else {
        Check::ok(
            "clock",
            format!("the server's clock {how} (within {CLOCK_WARN_SECS} s)"),
        )
        .with(data)
    }
}
