//! How much the endpoint takes from a client, and how many clients it holds: the bounds
//! that keep a flood of idle or slow connections from starving `/healthz`.
//!
//! A connection is *waiting* from its accept, and again from the end of each answer, until
//! a complete request head arrives; it is *answering* from then until its answer is
//! handed to the kernel. Waiting too long ([`Limits::header_timeout`]) or answering too
//! long ([`Limits::answer_timeout`], a client that does not read) closes it. At the cap
//! ([`Limits::max_connections`]), a new connection closes the oldest waiting one: a probe
//! sends its request at once, so it is never the one shed.

use std::io;
use std::time::Duration;

/// Largest request head (request line and headers), in bytes; larger gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header fields in a request; more gets 431.
pub const MAX_HEADERS: usize = 64;
/// Longest request target (path and query), in bytes; longer gets 414.
pub const MAX_TARGET_BYTES: usize = 2048;
/// The connection cap never goes above this, whatever the file-descriptor limit.
pub const MAX_CONNECTIONS: usize = 2048;
/// ...nor below this, even under a tiny file-descriptor limit.
const MIN_CONNECTIONS: usize = 16;
/// A connection has this long to send a complete request head, from its accept or from
/// the end of its previous answer (a keep-alive connection that says nothing is closed).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// An answer has this long from the request head to its last byte handed to the kernel:
/// a client that does not read its answer is closed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The bounds one endpoint runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; the next one sheds the oldest that is waiting.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub answer_timeout: Duration,
}

impl Limits {
    /// The defaults, with a cap that fits the process's file-descriptor limit as it is now
    /// (call [`raise_nofile_limit`] first).
    pub fn for_process() -> Limits {
        Limits {
            max_connections: cap_for_nofile(nofile_limit()),
            header_timeout: HEADER_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
        }
    }
}

/// Half the descriptors the process may open (the other half is the daemon's: history
/// files, connections to Jellyfin, notifications), between [`MIN_CONNECTIONS`] and
/// [`MAX_CONNECTIONS`]. `None` is no limit.
pub fn cap_for_nofile(soft: Option<u64>) -> usize {
    let half = soft.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
    half.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// The soft `RLIMIT_NOFILE` (`None`: unlimited).
pub fn nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// What [`raise_nofile_limit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NofileRaise {
    /// The soft limit already was the hard one (`LimitNOFILE=` in the unit sets both).
    AlreadyAtHard(Option<u64>),
    Raised {
        from: Option<u64>,
        to: Option<u64>,
    },
}

/// Raise the soft `RLIMIT_NOFILE` to the hard one. The common soft limit of 1024 is less
/// than a connection cap plus the daemon's own files; the hard limit (524288 under
/// systemd, 1048576 in most containers) is what the administrator allows.
pub fn raise_nofile_limit() -> io::Result<NofileRaise> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return Ok(NofileRaise::AlreadyAtHard(now.current));
    }
    let raised = rustix::process::Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    setrlimit(Resource::Nofile, raised)?;
    Ok(NofileRaise::Raised {
        from: now.current,
        to: now.maximum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_half_the_descriptors_within_bounds() {
        for (soft, cap) in [
            (Some(1024), 512),
            (Some(4096), 2048),
            (Some(524_288), MAX_CONNECTIONS),
            (None, MAX_CONNECTIONS),
            (Some(20), MIN_CONNECTIONS),
            (Some(0), MIN_CONNECTIONS),
        ] {
            assert_eq!(cap_for_nofile(soft), cap, "soft limit {soft:?}");
        }
    }
}
