//! The daemon's read-only HTTP endpoint (`[daemon] listen`): health and readiness for
//! service managers and container runtimes, Prometheus metrics, a JSON status API and a
//! status page for people.
//!
//! Read-only by construction: only `GET` (and `HEAD`) is answered, no route takes an
//! action, and nothing served is read from the config's secrets. HTTP/1.1 (and 1.0) is
//! hyper's; this module owns what hyper does not: the connection cap and who is shed at it,
//! the deadlines, the token, and the headers every answer carries.
//!
//! | module | owns |
//! |---|---|
//! | this one | the accept loop: admit or shed, one task per connection, the sweeper |
//! | `limits` | the bounds ([`Limits`]) and the file-descriptor limit they follow |
//! | `conns` | the open connections: waiting or answering, since when, the cap |
//! | `http` | one request: method, body, target length, token, the answer's headers |
//! | `token` | `[daemon] api_token_file`'s check, in constant time |
//! | `routes` | what each path answers |
//! | `api`, `metrics`, `page` | the JSON API, Prometheus' text, the HTML page |

mod api;
mod conns;
mod http;
mod limits;
mod metrics;
mod page;
mod routes;
mod token;

pub use http::CONTENT_SECURITY_POLICY;
pub use limits::{
    ANSWER_TIMEOUT, HEADER_TIMEOUT, Limits, MAX_CONNECTIONS, MAX_HEAD_BYTES, MAX_HEADERS,
    MAX_TARGET_BYTES, NofileRaise, cap_for_nofile, nofile_limit, raise_nofile_limit,
};
pub use token::ApiToken;

use crate::daemon::status::StatusBoard;
use crate::records::Records;
use crate::secret::Secret;
use conns::{Admission, Connections, Slot};
use http::App;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// What the endpoint serves from.
#[derive(Clone)]
pub struct Sources {
    /// The daemon's view of every server.
    pub status: Arc<StatusBoard>,
    /// How long a scheduling loop may go without waking before health fails.
    pub heartbeat_limit: Duration,
    /// The recorded runs, from the backend in use.
    pub history: Records,
}

/// Who may ask, and how much the endpoint takes.
#[derive(Clone, Debug)]
pub struct Policy {
    /// When set, every route but `/healthz` and `/readyz` requires it.
    pub token: Option<ApiToken>,
    pub limits: Limits,
}

impl Policy {
    /// The token of `[daemon] api_token_file`, if any, and [`Limits::for_process`].
    pub fn for_process(token: Option<&Secret>) -> Policy {
        Policy {
            token: token.map(ApiToken::new),
            limits: Limits::for_process(),
        }
    }
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

/// How often deadlines are checked: a connection past one is closed within this.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// After `accept` fails for want of file descriptors, the pause before the next try (the
/// connection stays in the kernel's backlog; without a pause the loop would spin).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Serve until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    sources: Sources,
    policy: Policy,
    stop: CancellationToken,
) {
    let limits = policy.limits;
    if let Ok(addr) = listener.local_addr() {
        info!(
            listen = %addr,
            max_connections = limits.max_connections,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            token = policy.token.is_some(),
            "HTTP endpoint listening: / (status page), /metrics, /api/v1/servers, /healthz, /readyz"
        );
    }
    let conns = Connections::new(limits);
    tokio::spawn(sweep(conns.clone(), stop.clone()));
    let app = Arc::new(App {
        sources,
        token: policy.token,
    });
    let mut protocol = http1::Builder::new();
    protocol
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&conns, &e).await;
                    continue;
                }
            },
        };
        match conns.admit(Instant::now()) {
            Admission::Admitted(slot) => {
                let conn = connection(stream, slot, app.clone(), protocol.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
            Admission::Full => refuse(stream),
        }
    }
}

/// One connection until it ends, is shed or passes a deadline.
async fn connection(stream: TcpStream, slot: Slot, app: Arc<App>, protocol: http1::Builder) {
    let _ = stream.set_nodelay(true);
    let tracker = slot.tracker();
    let service = hyper::service::service_fn(move |request| {
        // Called once a request head is complete: from here the connection is answering.
        let answering = tracker.answering();
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.answer(request, answering).await) }
    });
    let served = protocol.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = served => if let Err(e) = r {
            debug!(error = %e, "HTTP connection ended with an error");
        },
        _ = slot.close.cancelled() => debug!("HTTP connection closed: shed, or past a deadline"),
    }
}

/// At the cap with every connection answering: say so in one write that cannot block,
/// and close.
fn refuse(stream: TcpStream) {
    const BODY: &str = "the HTTP endpoint is at its connection cap; try again\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Out of file descriptors (`EMFILE`, `ENFILE`): shed a waiting connection and pause;
/// anything else (a peer that reset before it was accepted) is the peer's problem.
async fn accept_failed(conns: &Connections, e: &std::io::Error) {
    use rustix::io::Errno;
    let errno = Errno::from_io_error(e);
    if errno == Some(Errno::MFILE) || errno == Some(Errno::NFILE) {
        conns.out_of_descriptors(Instant::now(), e);
        tokio::time::sleep(ACCEPT_PAUSE).await;
    } else {
        debug!(error = %e, "HTTP endpoint: accept failed");
    }
}

/// Close connections past their deadlines until `stop`.
async fn sweep(conns: Arc<Connections>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => conns.sweep(Instant::now()),
        }
    }
}
