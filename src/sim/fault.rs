//! Deterministic fault injection: which request of which endpoint misbehaves, and how.
//!
//! A rule names an endpoint (or any), a range of request numbers counted per server and
//! endpoint from 1, and a fault. Nothing is random: a test that wants a random mix picks it
//! with its own seeded generator and writes the rules down.

use super::duration::parse_duration;
use super::route::Endpoint;
use serde::Deserialize;
use std::time::Duration;

/// One fault rule. In a scenario file:
///
/// ```toml
/// [[servers.faults]]
/// endpoint = "task"      # any | ping | public_info | task_list | task | start_task | stop_task | plugins | plugin_config | other
/// requests = "1..3"      # all | N | N..M (inclusive) | N..
/// fault = "drop"         # see `Fault`; `latency = "300ms"` with "latency", `retry_after = 5` with "unavailable"
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct FaultRule {
    /// `None`: every endpoint, counting all requests to the server.
    pub endpoint: Option<Endpoint>,
    pub requests: Requests,
    pub fault: Fault,
}

impl FaultRule {
    pub fn new(endpoint: Option<Endpoint>, requests: Requests, fault: Fault) -> Self {
        FaultRule {
            endpoint,
            requests,
            fault,
        }
    }

    /// Does this rule hit the request that is the `nth_on_endpoint`-th to `endpoint` and
    /// the `nth_overall`-th to the server (both from 1)?
    pub(crate) fn hits(&self, endpoint: Endpoint, nth_on_endpoint: u64, nth_overall: u64) -> bool {
        match self.endpoint {
            None => self.requests.contains(nth_overall),
            Some(e) => e == endpoint && self.requests.contains(nth_on_endpoint),
        }
    }
}

/// Which requests of an endpoint a rule hits, numbered from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requests {
    All,
    /// `from..=to`; `to: None` means every request from `from` on.
    Range {
        from: u64,
        to: Option<u64>,
    },
}

impl Requests {
    /// The first `n` requests.
    pub fn first(n: u64) -> Self {
        Requests::Range {
            from: 1,
            to: Some(n),
        }
    }
    /// Only the `n`-th request.
    pub fn nth(n: u64) -> Self {
        Requests::Range {
            from: n,
            to: Some(n),
        }
    }
    /// Requests `from..=to`.
    pub fn range(from: u64, to: u64) -> Self {
        Requests::Range { from, to: Some(to) }
    }

    pub fn contains(&self, n: u64) -> bool {
        match *self {
            Requests::All => true,
            Requests::Range { from, to } => n >= from && to.is_none_or(|t| n <= t),
        }
    }
}

impl std::str::FromStr for Requests {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("invalid requests {s:?}: write \"all\", \"N\", \"N..M\" or \"N..\"");
        let num = |t: &str| t.trim().parse::<u64>().ok().filter(|n| *n > 0);
        if s.eq_ignore_ascii_case("all") {
            return Ok(Requests::All);
        }
        match s.split_once("..") {
            None => num(s).map(Requests::nth).ok_or_else(bad),
            Some((a, b)) => {
                let from = num(a).ok_or_else(bad)?;
                let b = b.trim_start_matches('=');
                if b.trim().is_empty() {
                    return Ok(Requests::Range { from, to: None });
                }
                let to = num(b).filter(|t| *t >= from).ok_or_else(bad)?;
                Ok(Requests::range(from, to))
            }
        }
    }
}

/// How a request misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally, this much later (adds up with other rules).
    Latency(Duration),
    /// Close the connection without answering; the request is not processed.
    Drop,
    /// Process the request (a start does start), then close without answering.
    DropAfterProcessing,
    /// Process it, send the headers and half the body, then reset the connection.
    ResetMidBody,
    /// Process it, then answer 200 with a JSON content type and a body that is not JSON.
    Garbage,
    /// Process it, then send only the first half of the JSON (Content-Length matching).
    TruncatedJson,
    /// Process it; in the JSON, every `State` reads `Pausing` and every `Status` `Exploded`.
    UnknownEnums,
    /// 500 `Error processing request.`; not processed.
    ServerError,
    /// 503 HTML, with `Retry-After` when given; not processed.
    Unavailable { retry_after: Option<u32> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, alias = "route")]
    endpoint: Option<String>,
    #[serde(default)]
    requests: Option<String>,
    fault: String,
    #[serde(default)]
    latency: Option<String>,
    #[serde(default)]
    retry_after: Option<u32>,
}

impl TryFrom<RawRule> for FaultRule {
    type Error = String;
    fn try_from(raw: RawRule) -> Result<Self, String> {
        let endpoint = match raw.endpoint.as_deref().map(str::trim) {
            None | Some("any") => None,
            Some(s) => Some(Endpoint::from_name(s).ok_or_else(|| {
                format!(
                    "unknown endpoint {s:?}: expected any, {}",
                    Endpoint::NAMES.join(", ")
                )
            })?),
        };
        let requests = match raw.requests {
            None => Requests::All,
            Some(s) => s.parse()?,
        };
        let fault = match raw.fault.trim() {
            "latency" => Fault::Latency(parse_duration(
                raw.latency
                    .as_deref()
                    .ok_or("fault \"latency\" needs latency = \"<duration>\"")?,
            )?),
            "drop" => Fault::Drop,
            "drop_after_processing" => Fault::DropAfterProcessing,
            "reset_mid_body" => Fault::ResetMidBody,
            "garbage" => Fault::Garbage,
            "truncated_json" => Fault::TruncatedJson,
            "unknown_enums" => Fault::UnknownEnums,
            "server_error" => Fault::ServerError,
            "unavailable" => Fault::Unavailable {
                retry_after: raw.retry_after,
            },
            other => {
                return Err(format!(
                    "unknown fault {other:?}: expected latency, drop, drop_after_processing, \
                     reset_mid_body, garbage, truncated_json, unknown_enums, server_error, unavailable"
                ));
            }
        };
        if raw.latency.is_some() && !matches!(fault, Fault::Latency(_)) {
            return Err("latency is only used with fault = \"latency\"".into());
        }
        if raw.retry_after.is_some() && !matches!(fault, Fault::Unavailable { .. }) {
            return Err("retry_after is only used with fault = \"unavailable\"".into());
        }
        Ok(FaultRule {
            endpoint,
            requests,
            fault,
        })
    }
}

/// What the rules say about one request: total extra latency and the first other fault.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub latency: Duration,
    pub fault: Option<Fault>,
}

pub(crate) fn judge(
    rules: &[FaultRule],
    endpoint: Endpoint,
    nth: u64,
    nth_overall: u64,
) -> Verdict {
    let mut v = Verdict::default();
    for r in rules.iter().filter(|r| r.hits(endpoint, nth, nth_overall)) {
        match r.fault {
            Fault::Latency(d) => v.latency = v.latency.saturating_add(d),
            f if v.fault.is_none() => v.fault = Some(f),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_syntax() {
        assert_eq!("all".parse::<Requests>(), Ok(Requests::All));
        assert_eq!("3".parse::<Requests>(), Ok(Requests::nth(3)));
        assert_eq!("2..4".parse::<Requests>(), Ok(Requests::range(2, 4)));
        assert_eq!("2..=4".parse::<Requests>(), Ok(Requests::range(2, 4)));
        let open = "5..".parse::<Requests>().unwrap();
        assert!(open.contains(5) && open.contains(500) && !open.contains(4));
        for bad in ["0", "4..2", "x", "1..y", ""] {
            assert!(bad.parse::<Requests>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn latency_adds_and_first_other_fault_wins() {
        let rules = [
            FaultRule::new(
                None,
                Requests::All,
                Fault::Latency(Duration::from_millis(5)),
            ),
            FaultRule::new(Some(Endpoint::Task), Requests::first(1), Fault::Drop),
            FaultRule::new(Some(Endpoint::Task), Requests::All, Fault::Garbage),
            FaultRule::new(
                Some(Endpoint::Task),
                Requests::All,
                Fault::Latency(Duration::from_millis(5)),
            ),
        ];
        let v = judge(&rules, Endpoint::Task, 1, 1);
        assert_eq!(v.latency, Duration::from_millis(10));
        assert_eq!(v.fault, Some(Fault::Drop));
        assert_eq!(
            judge(&rules, Endpoint::Task, 2, 7).fault,
            Some(Fault::Garbage)
        );
        assert_eq!(judge(&rules, Endpoint::Ping, 1, 3).fault, None);
    }
}
