//! Getting requests to their receivers: a bounded queue per receiver, one task draining
//! each queue in order, every request with a timeout and retried with backoff.
//!
//! Nothing here waits on the daemon and the daemon never waits on anything here: a push
//! onto a full queue drops the oldest entry (the newest news matters most), and a receiver
//! that hangs holds up only its own queue. Logs name a receiver by its
//! [`redacted`](crate::secret::redacted) form only.

use crate::secret::Secret;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A FIFO with a capacity that drops its oldest entry rather than block the producer.
/// One consumer.
pub struct Queue<T> {
    inner: Mutex<QueueState<T>>,
    ready: Notify,
    capacity: usize,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Dropped since the consumer last asked (see [`Queue::take_dropped`]).
    dropped: u64,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the oldest entry was dropped to make room; `first` when this is the
    /// first drop since the consumer last reported drops (log once, not per drop).
    DroppedOldest {
        first: bool,
    },
    /// The queue is closed; nothing was queued.
    Closed,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Queue<T> {
        Queue {
            inner: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
                dropped: 0,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        // A panic while holding this lock leaves a consistent deque; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, item: T) -> Pushed {
        let pushed = {
            let mut s = self.state();
            if s.closed {
                return Pushed::Closed;
            }
            let pushed = if s.items.len() >= self.capacity {
                s.items.pop_front();
                s.dropped += 1;
                Pushed::DroppedOldest {
                    first: s.dropped == 1,
                }
            } else {
                Pushed::Queued
            };
            s.items.push_back(item);
            pushed
        };
        // notify_one stores a permit when the consumer is not waiting yet.
        self.ready.notify_one();
        pushed
    }

    /// The next entry; `None` once the queue is closed and empty, or `cancel` fires.
    pub async fn pop(&self, cancel: &CancellationToken) -> Option<T> {
        loop {
            {
                let mut s = self.state();
                if let Some(item) = s.items.pop_front() {
                    return Some(item);
                }
                if s.closed {
                    return None;
                }
            }
            tokio::select! {
                _ = self.ready.notified() => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// No more pushes; the consumer gets what is queued, then `None`.
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_one();
    }

    /// How many entries were dropped since the last call, resetting the count.
    pub fn take_dropped(&self) -> u64 {
        std::mem::take(&mut self.state().dropped)
    }

    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How deliveries retry.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The wait before the first retry; doubled for each next one.
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// One HTTP request to make.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a Secret,
    /// The receiver as logs may show it.
    pub shown: &'a str,
    pub content_type: Option<&'static str>,
    pub headers: &'a [(&'static str, String)],
    pub body: Vec<u8>,
    pub timeout: Duration,
    pub retries: u32,
}

/// Why a delivery was given up, in words that contain no URL.
#[derive(Debug)]
pub struct Failed {
    pub attempts: u32,
    pub error: String,
}

/// Send `req`, retrying transient failures (connection errors, timeouts, 408, 429, 5xx)
/// up to `req.retries` times. A 3xx (redirects are not followed: the secret URL would
/// be sent on to wherever it points) or another 4xx is final: asking again won't help.
pub async fn send(
    client: &reqwest::Client,
    req: &Request<'_>,
    backoff: Backoff,
    cancel: &CancellationToken,
) -> Result<u32, Failed> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut builder = client
            .request(req.method.clone(), req.url.expose())
            .timeout(req.timeout);
        if let Some(ct) = req.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
        }
        for (name, value) in req.headers {
            builder = builder.header(*name, value.as_str());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body.clone());
        }
        let result = tokio::select! {
            r = builder.send() => r,
            _ = cancel.cancelled() => {
                return Err(Failed { attempts: attempt, error: "stopped before an answer came".into() });
            }
        };
        let (error, retry) = match result {
            Ok(resp) if resp.status().is_success() => return Ok(attempt),
            Ok(resp) => {
                let status = resp.status();
                let transient = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                let what = if status.is_redirection() {
                    format!(
                        "answered {status}; redirects are not followed (the URL is a secret): give the final address"
                    )
                } else {
                    format!("answered {status}")
                };
                (what, transient)
            }
            Err(e) => (error_chain(&e.without_url()), true),
        };
        if !retry || attempt > req.retries {
            return Err(Failed {
                attempts: attempt,
                error,
            });
        }
        let wait = backoff.delay(attempt);
        debug!(receiver = %req.shown, attempt, error = %error, retry_in_ms = wait.as_millis() as u64, "delivery failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Err(Failed { attempts: attempt, error }),
        }
    }
}

/// An error and its causes on one line. The caller strips the URL from reqwest's error
/// first; the causes (hyper, io) name at most the host and port.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// Log a queue's drops once per episode: at the first drop, and with the count when the
/// receiver takes deliveries again.
pub fn report_drops_recovered<T>(queue: &Queue<T>, shown: &str) {
    let dropped = queue.take_dropped();
    if dropped > 0 {
        warn!(receiver = %shown, dropped, "the receiver takes deliveries again; {dropped} queued notifications were dropped while its queue was full");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(100), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_and_says_so_once() {
        let q = Queue::new(2);
        assert_eq!(q.push(1), Pushed::Queued);
        assert_eq!(q.push(2), Pushed::Queued);
        assert_eq!(q.push(3), Pushed::DroppedOldest { first: true });
        assert_eq!(q.push(4), Pushed::DroppedOldest { first: false });
        let never = CancellationToken::new();
        assert_eq!(q.pop(&never).await, Some(3));
        assert_eq!(q.take_dropped(), 2);
        q.close();
        assert_eq!(q.push(5), Pushed::Closed);
        assert_eq!(q.pop(&never).await, Some(4));
        assert_eq!(q.pop(&never).await, None);
    }
}
