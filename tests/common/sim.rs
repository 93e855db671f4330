//! Simulated Jellyfin servers with short timings, so a run takes a fraction of a second.

use jellyfin_export_scheduler::sim::{SimServerConfig, Simulator};
use std::time::Duration;

/// Server `name` (key [`super::KEY`]): accepted after 20 ms, runs 200 ms, its result 20 ms
/// after it goes Idle, a 1 KiB export; then `f` changes what the test is about.
pub fn sim_server(name: &str, f: impl FnOnce(&mut SimServerConfig)) -> SimServerConfig {
    let mut c = SimServerConfig::new(name, super::KEY);
    c.start_delay = Duration::from_millis(20);
    c.run_length = Duration::from_millis(200);
    c.result_delay = Duration::from_millis(20);
    c.zip_base64_len = 1024;
    f(&mut c);
    c
}

/// A simulator on a free loopback port serving `servers`.
pub async fn simulator(servers: Vec<SimServerConfig>) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), servers)
        .await
        .expect("the simulator starts on a free port")
}
