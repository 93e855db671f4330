//! A simulated Jellyfin fleet for the test suite, the demo and `simulate`.
//!
//! One [`Simulator`] listens on one port and serves many simulated servers, each under
//! `/s/<name>` (and one of them optionally at `/` too). Each behaves as a Jellyfin server
//! with the Migrator plugin does: the task routes and their status codes, asynchronous
//! starts, the Idle-before-result end order, cooperative cancels, restarts and crashes, the
//! Migrator plugin's configuration, and auth by the `Authorization` header. On top,
//! deterministic faults (see [`fault`]) make it misbehave on purpose.
//!
//! # Layout
//!
//! From the top down, in layers: a module uses only modules listed below it.
//!
//! | layer | module | owns |
//! |---|---|---|
//! | listener | this one | [`Simulator`]: the port, its connections, which server a path is for |
//! | | `handle` | [`SimHandle`]: live control and inspection of one server |
//! | routes | `api` | the answers of one server: gates, auth check, routes, the faults that bend answers |
//! | | `cell` | one server's state and request journal under one lock |
//! | | `tasks` | the task list and each task as Jellyfin's `TaskInfo` documents |
//! | | `auth` | who is calling: the token where Jellyfin looks for it, and whose key it is |
//! | | `journal` | the requests a server received ([`RecordedRequest`]) and their counts per endpoint |
//! | task state | `model` | the driven task's state machine, restarts and crashes, computed lazily from instants |
//! | | `task_result` | [`TaskResult`]: a `LastExecutionResult`, a failed one's message and stack trace |
//! | the plugin | `plugin` | the Migrator plugin's configuration and the end every run writes there |
//! | | `export` | what one Migrator run writes: its log and its folder's files |
//! | | `content` | a server's users, libraries, watch history and devices, fixed by its name |
//! | | `document` | the configuration's JSON, its ZIPs as base64 made while it is sent |
//! | data | [`scenario`] | scenario TOML files ([`Scenario`]) and the checks across servers |
//! | | [`config`] | [`SimServerConfig`]: one server's behaviour |
//! | | [`fault`] | fault rules: which request misbehaves and how |
//! | pure pieces | [`zip`] | a real ZIP archive of a run's folder, planned without being held |
//! | | [`bulk`] | big byte strings as pieces, their CRC-32 and streamed base64 |
//! | | `time` | the sim's clock and [`SimTime`], a time as Jellyfin writes it |
//! | | `route` | [`Endpoint`]: which Jellyfin call a method and path are |
//! | | `seed` | deterministic ids from names: FNV-1a and splitmix64 |
//! | | `duration` | durations as scenario files write them |
//! | | `error` | [`SimError`]: why `simulate` could not start |
//!
//! Cost: one task for the listener and one per open connection; servers themselves have
//! no task and no timer, their state advances when someone looks.

mod api;
mod auth;
pub mod bulk;
mod cell;
pub mod config;
mod content;
mod document;
mod duration;
mod error;
mod export;
pub mod fault;
mod handle;
pub mod http1;
mod journal;
mod model;
mod plugin;
mod route;
pub mod scenario;
mod seed;
mod task_result;
mod tasks;
mod time;
pub mod zip;

pub use config::{CancelMode, History, Mode, PluginStatus, RunOutcome, SimServerConfig, SimTask};
pub use error::SimError;
pub use export::{CANCELED, EXPORT_ROOT};
pub use fault::{Fault, FaultRule, Requests};
pub use handle::SimHandle;
pub use journal::RecordedRequest;
pub use model::{TaskState, TaskView};
pub use plugin::MIGRATOR_PLUGIN_ID;
pub use route::Endpoint;
pub use scenario::Scenario;
pub use task_result::{ResultStatus, TaskResult};
pub use tasks::{DUPLICATE_TASK_ID, MIGRATOR_TASK_ID, MIGRATOR_TASK_KEY, MIGRATOR_TASK_NAME};
pub use time::SimTime;

use crate::sim::http1::{Conn, ReadError, Response, TEXT};
use api::Reply;
use cell::ServerCell;
use model::ServerState;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use time::Clock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running simulator. Dropping it stops the listener and its connections too;
/// [`Simulator::shutdown`] also waits for them.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

struct Shared {
    servers: HashMap<String, Arc<ServerCell>>,
    root: Option<Arc<ServerCell>>,
}

impl Simulator {
    /// Listen on `listen` (`127.0.0.1:0` for a free port) and serve `servers`.
    /// Invalid configs (empty or duplicate names, two roots, ...) are `InvalidInput`.
    pub async fn start(listen: SocketAddr, servers: Vec<SimServerConfig>) -> io::Result<Simulator> {
        let problems = scenario::problems(&servers);
        if !problems.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                problems.join("; "),
            ));
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let clock = Clock::new();
        let mut map = HashMap::new();
        let mut root = None;
        for cfg in servers {
            let is_root = cfg.root;
            let name = cfg.name.clone();
            let cell = Arc::new(ServerCell::new(ServerState::new(cfg, clock)));
            if is_root {
                root = Some(cell.clone());
            }
            map.insert(name, cell);
        }
        let shared = Arc::new(Shared { servers: map, root });
        let (tx, rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(Simulator {
            addr,
            shared,
            shutdown: tx,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/s/<name>`: the base URL a client configures for that server.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/s/{name}", self.addr)
    }

    /// `http://ADDR`: the root server's base URL, if one has `root = true`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Names of all servers, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.servers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Control and inspection of one server; `None` for an unknown name.
    pub fn try_server(&self, name: &str) -> Option<SimHandle> {
        self.shared
            .servers
            .get(name)
            .map(|cell| SimHandle::new(cell.clone()))
    }

    /// Control and inspection of one server.
    ///
    /// # Panics
    /// If no server has that name (a mistake in the test, not input).
    pub fn server(&self, name: &str) -> SimHandle {
        self.try_server(name)
            .unwrap_or_else(|| panic!("the simulator has no server named {name:?}"))
    }

    /// One line per server: `<name>  http://ADDR/s/<name>  api key: <key>`, plus the root.
    pub fn banner(&self) -> String {
        let mut out = String::new();
        for name in self.names() {
            let h = self.server(&name);
            let (key, root) = h.with_config(|c| (c.api_key.clone(), c.root));
            out.push_str(&format!("{name}  {}  api key: {key}\n", self.url(&name)));
            if root {
                out.push_str(&format!("{name}  {}/  api key: {key}\n", self.root_url()));
            }
        }
        out
    }

    /// Stop listening, close every connection, and wait until that is done.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // A send or the sender being dropped both mean stop.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(shared.clone(), stream, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}

async fn serve_conn(shared: Arc<Shared>, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
    // Jellyfin is served by ASP.NET's Kestrel.
    let mut conn = Conn::new(stream, "Kestrel");
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, conn.read_request()) => r,
            _ = shutdown.changed() => return,
        };
        let req = match read {
            Ok(Ok(Some(req))) => req,
            Ok(Err(ReadError::Malformed(why))) => {
                let _ = conn.write(&Response::new(400, Some(TEXT), why), true).await;
                return;
            }
            // Idle timeout, clean close, or a broken socket.
            Err(_) | Ok(Ok(None)) | Ok(Err(ReadError::Broken)) => return,
        };
        let close = !req.keep_alive;
        let reply = match shared.route(&req.path) {
            Some((cell, rest, base)) => api::handle(cell, &req, rest, base).await,
            None => Reply::Send(Response::empty(404)),
        };
        match reply {
            Reply::Drop => return,
            Reply::Reset(resp) => {
                let _ = conn.write_half_then_reset(&resp).await;
                return;
            }
            Reply::Send(resp) => {
                if conn.write(&resp, close).await.is_err() || close {
                    return;
                }
            }
        }
    }
}

impl Shared {
    /// Which server a path is for, the path below its base, and the base.
    fn route<'a>(&'a self, path: &'a str) -> Option<(&'a ServerCell, &'a str, &'a str)> {
        if let Some(prefix) = path.get(..3)
            && prefix.eq_ignore_ascii_case("/s/")
        {
            let after = &path[3..];
            let (name, rest) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, "/"),
            };
            if let Some(cell) = self.servers.get(name) {
                let base = &path[..3 + name.len()];
                return Some((cell, rest, base));
            }
        }
        self.root.as_deref().map(|cell| (cell, path, ""))
    }
}
