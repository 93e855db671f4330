//! `simulate`: serve a simulated Jellyfin ([`crate::sim`]) to try a config against: the
//! servers a scenario file describes, or one server `demo` at `/` and `/s/demo`. It prints
//! where each server is and its key, and serves until the process is stopped.

use super::{CommandError, Verdict};
use crate::sim::{Scenario, SimError, Simulator};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The command; the servers' addresses and keys go to `out`. It returns only on an error
/// (or when the future is dropped, which stops the simulator).
pub async fn simulate(
    listen: SocketAddr,
    scenario: Option<&Path>,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    let scenario = match scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::demo(),
    };
    let sim = Simulator::start(listen, scenario.servers)
        .await
        .map_err(|source| SimError::Listen {
            addr: listen,
            source,
        })?;
    let _ = write!(out, "{}", sim.banner());
    let _ = out.flush();
    // Serve until dropped: dropping `sim` with this future stops the listener.
    std::future::pending::<()>().await;
    drop(sim);
    Ok(Verdict::Fine)
}
