//! What arrived at one simulated server: the [`Journal`] of its requests (the last 10 000,
//! for tests to inspect), when each start request came, and how many requests each
//! endpoint has had, which is what fault rules count.

use super::route::Endpoint;
use crate::sim::http1::Request;
use std::collections::VecDeque;
use std::time::SystemTime;

/// One request as it arrived, for tests to inspect.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub at: SystemTime,
    pub method: String,
    /// The full path, base path included, without the query.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub endpoint: Endpoint,
}

impl RecordedRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Requests kept per server; older ones are forgotten so a long `simulate` stays bounded.
const JOURNAL_CAP: usize = 10_000;

/// What arrived at one server, and how many per endpoint (fault rules count on it).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub requests: VecDeque<RecordedRequest>,
    pub starts: Vec<SystemTime>,
    counts: [u64; Endpoint::ALL.len()],
    total: u64,
}

impl Journal {
    /// Record a request; returns its number on its endpoint and overall (from 1).
    pub fn record(&mut self, req: &Request, endpoint: Endpoint) -> (u64, u64) {
        let at = SystemTime::now();
        if endpoint == Endpoint::StartTask {
            self.starts.push(at);
        }
        if self.requests.len() >= JOURNAL_CAP {
            self.requests.pop_front();
        }
        self.requests.push_back(RecordedRequest {
            at,
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            endpoint,
        });
        let c = &mut self.counts[endpoint.index()];
        *c += 1;
        self.total += 1;
        (*c, self.total)
    }
}
