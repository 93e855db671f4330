//! [`SimError`]: why the standalone simulator (`simulate`) could not start, naming the
//! scenario file or the address.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the standalone simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read scenario {}: {source}", path.display())]
    ReadScenario { path: PathBuf, source: io::Error },
    #[error("invalid scenario {}: {message}", path.display())]
    Scenario { path: PathBuf, message: String },
    #[error("cannot serve on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}
