//! What the integration tests share, so that each test file says only what it tests: the
//! simulated servers they run against ([`sim`]), bounded waits ([`wait`]), due instants
//! ([`time`]), configs and config files ([`config`]), the daemon in-process ([`daemon`]),
//! the real binary ([`bin`]) and what `/proc` says of it ([`proc`]), one run through the
//! runner ([`runs`]) and what runs leave on disk ([`records`]).
//!
//! Every test file compiles all of it and uses a part, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod bin;
pub mod config;
pub mod daemon;
pub mod pg;
pub mod proc;
pub mod proxy;
pub mod records;
pub mod runs;
pub mod sim;
pub mod time;
pub mod wait;

/// The API key of the simulated servers and of the configs that reach them.
pub const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// `body` as JSON; a body that is not JSON fails the test, showing it.
pub fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// A loopback port that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
