//! Bounded waits: poll a condition, fail with a sentence naming what never happened.
//! Nothing sleeps to synchronise.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Until `cond` holds, at most `limit`; then the test fails naming `what`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for a condition that must await.
pub async fn wait_until_async<F: Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] outside an async runtime.
pub fn wait_until_blocking(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(POLL);
    }
}
