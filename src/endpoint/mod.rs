//! The daemon's read-only HTTP endpoint (`[daemon] listen`): health and readiness for
//! service managers and container runtimes, Prometheus metrics, a JSON status API and a
//! status page for people.
//!
//! Read-only by construction: only `GET` (and `HEAD`) is answered, no route takes an
//! action, and nothing served is read from the config's secrets. Connections are few
//! (a probe, a scraper, a person): each gets a task, a bounded read and an idle timeout.

mod api;
mod metrics;
mod page;

use crate::daemon::status::StatusBoard;
use crate::history::History;
use crate::http1::{Conn, HTML, JSON, ReadError, Request, Response, TEXT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long a connection may take to send a request before it is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// What the endpoint serves from.
#[derive(Clone)]
pub struct Sources {
    /// The daemon's view of every server.
    pub status: Arc<StatusBoard>,
    /// How long a scheduling loop may go without waking before health fails.
    pub heartbeat_limit: Duration,
    pub history: Arc<History>,
}

/// The endpoint's address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} ([daemon] listen): {source}; choose another address, or listen = \"\" to turn the endpoint off"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Bind `addr`; the error names the address and what to do.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serve until `stop` is cancelled.
pub async fn serve(listener: TcpListener, sources: Sources, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "HTTP endpoint listening: / (status page), /metrics, /api/v1/servers, /healthz, /readyz");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "HTTP endpoint: accept failed");
                    continue;
                }
            },
        };
        let sources = sources.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = connection(stream, &sources) => {}
                _ = stop.cancelled() => {}
            }
            debug!(peer = %peer, "HTTP connection closed");
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, sources: &Sources) {
    let mut conn = Conn::new(stream, "jellyfin-export-scheduler");
    loop {
        let request = match tokio::time::timeout(READ_TIMEOUT, conn.read_request()).await {
            Err(_) | Ok(Ok(None)) | Ok(Err(ReadError::Broken)) => return,
            Ok(Err(ReadError::Malformed(what))) => {
                let _ = conn
                    .write(
                        &Response::new(400, Some(TEXT), format!("bad request: {what}\n")),
                        true,
                    )
                    .await;
                return;
            }
            Ok(Ok(Some(r))) => r,
        };
        let head = request.method == "HEAD";
        let mut response = route(&request, sources).await;
        if head {
            response.body.clear();
        }
        if conn.write(&response, !request.keep_alive).await.is_err() || !request.keep_alive {
            return;
        }
    }
}

/// Prometheus' content type for the text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn route(request: &Request, sources: &Sources) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::new(405, Some(TEXT), "read-only: only GET is served\n")
            .with_header("Allow", "GET, HEAD");
    }
    let path = request.path.as_str();
    match path {
        "/healthz" => healthz(sources),
        "/readyz" => readyz(sources),
        "/metrics" => Response::new(200, Some(PROMETHEUS_TEXT), metrics::render(&sources.status)),
        "/api/v1/servers" => Response::new(200, Some(JSON), api::servers(&sources.status)),
        "/" => Response::new(200, Some(HTML), page::render(&sources.status))
            .with_header("Cache-Control", "no-store"),
        _ => match path
            .strip_prefix("/api/v1/servers/")
            .and_then(|rest| rest.strip_suffix("/history"))
        {
            Some(name) => history(request, sources, name).await,
            None => Response::new(404, Some(TEXT), "not found\n"),
        },
    }
}

/// Records per history request unless `?limit=` says otherwise, and at most.
const HISTORY_DEFAULT_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 100_000;

async fn history(request: &Request, sources: &Sources, name: &str) -> Response {
    let limit = match request.query_param("limit") {
        None => HISTORY_DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n.min(HISTORY_MAX_LIMIT),
            _ => {
                return Response::new(
                    400,
                    Some(TEXT),
                    format!("limit must be a positive integer, not {v:?}\n"),
                );
            }
        },
    };
    let (history, status, name) = (
        sources.history.clone(),
        sources.status.clone(),
        name.to_owned(),
    );
    // Reading a history file is blocking I/O.
    let answer =
        tokio::task::spawn_blocking(move || api::history(&history, &status, &name, limit)).await;
    match answer {
        Ok(Some(Ok(body))) => Response::new(200, Some(JSON), body),
        Ok(Some(Err(e))) => Response::new(500, Some(TEXT), format!("{e}\n")),
        Ok(None) => Response::new(404, Some(TEXT), "no such server\n"),
        Err(e) => Response::new(500, Some(TEXT), format!("{e}\n")),
    }
}

/// 200 while every scheduling loop keeps waking; 503 naming the ones that stopped.
fn healthz(sources: &Sources) -> Response {
    let stale = sources.status.stale_loops(sources.heartbeat_limit);
    if stale.is_empty() {
        Response::new(200, Some(TEXT), "ok\n")
    } else {
        Response::new(
            503,
            Some(TEXT),
            format!("scheduling loop stopped waking for: {}\n", stale.join(", ")),
        )
    }
}

/// 200 once the config is loaded and the schedules are armed.
fn readyz(sources: &Sources) -> Response {
    if sources.status.armed() {
        Response::new(200, Some(TEXT), "ready\n")
    } else {
        Response::new(503, Some(TEXT), "starting: schedules not armed yet\n")
    }
}
