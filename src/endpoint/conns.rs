//! The endpoint's open connections: which are waiting for a request and since when, which
//! are answering, the cap, and who is closed when it is reached or a deadline passes
//! (see [`super::limits`]).

use super::limits::Limits;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Every open connection of one endpoint.
pub(super) struct Connections {
    limits: Limits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// Connections closed to make room (or refused) since the last warning about it.
    shed_since_warning: u64,
    last_warning: Option<Instant>,
}

struct Entry {
    /// Requests being answered (HTTP/1 answers one at a time; a count is simply robust).
    answering: u32,
    /// Since when it has been waiting, or answering.
    since: Instant,
    close: CancellationToken,
}

/// Shedding is logged at most this often, with a count.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What [`Connections::admit`] decided.
pub(super) enum Admission {
    Admitted(Slot),
    /// At the cap and every connection is answering: nothing may be shed.
    Full,
}

impl Connections {
    pub(super) fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent (each change is one
        // map operation), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take in a new connection; at the cap, close the oldest waiting one to make room.
    pub(super) fn admit(self: &Arc<Self>, now: Instant) -> Admission {
        let mut table = self.table();
        if table.open.len() >= self.limits.max_connections {
            let shed = table.shed_oldest_waiting();
            if !shed {
                // Refused: counted with the shed.
                table.shed_since_warning += 1;
            }
            table.note_shed(now, self.limits.max_connections);
            if !shed {
                return Admission::Full;
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let close = CancellationToken::new();
        table.open.insert(
            id,
            Entry {
                answering: 0,
                since: now,
                close: close.clone(),
            },
        );
        Admission::Admitted(Slot {
            tracker: Tracker {
                id,
                conns: self.clone(),
            },
            close,
        })
    }

    /// `accept` failed for want of file descriptors: close the oldest waiting connection,
    /// or, when none is waiting, say so (at most every [`WARN_EVERY`]).
    pub(super) fn out_of_descriptors(&self, now: Instant, error: &std::io::Error) {
        let mut table = self.table();
        if table.shed_oldest_waiting() {
            table.note_shed(now, self.limits.max_connections);
        } else if table.may_warn(now) {
            warn!(error = %error, open = table.open.len(), "HTTP endpoint: cannot accept, out of file descriptors");
        }
    }

    /// Close every connection past its deadline: waiting longer than the header timeout,
    /// or answering longer than the answer timeout.
    pub(super) fn sweep(&self, now: Instant) {
        let table = self.table();
        for entry in table.open.values() {
            let limit = if entry.answering == 0 {
                self.limits.header_timeout
            } else {
                self.limits.answer_timeout
            };
            if now.saturating_duration_since(entry.since) >= limit {
                entry.close.cancel();
            }
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table().open.len()
    }
}

impl Table {
    /// Close and forget the waiting connection that has waited longest.
    fn shed_oldest_waiting(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, e)| e.answering == 0)
            .min_by_key(|(id, e)| (e.since, **id))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(entry) => {
                entry.close.cancel();
                self.shed_since_warning += 1;
                true
            }
            None => false,
        }
    }

    /// Whether a warning may be logged now (the last was [`WARN_EVERY`] ago); if so, it
    /// counts as logged.
    fn may_warn(&mut self, now: Instant) -> bool {
        if self
            .last_warning
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            return false;
        }
        self.last_warning = Some(now);
        true
    }

    /// Warn about shedding, at most every [`WARN_EVERY`], with the count since the last.
    fn note_shed(&mut self, now: Instant, cap: usize) {
        if self.may_warn(now) {
            warn!(
                max_connections = cap,
                closed_or_refused = self.shed_since_warning,
                "HTTP endpoint: connection cap reached; closing the connections that waited longest without sending a request"
            );
            self.shed_since_warning = 0;
        }
    }
}

/// One admitted connection: it leaves the table when this is dropped.
pub(super) struct Slot {
    tracker: Tracker,
    /// Cancelled when the connection must close (shed, or past a deadline).
    pub close: CancellationToken,
}

impl Slot {
    pub(super) fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker.conns.table().open.remove(&self.tracker.id);
    }
}

/// Marks a connection's requests: cheap to clone into each request.
#[derive(Clone)]
pub(super) struct Tracker {
    id: u64,
    conns: Arc<Connections>,
}

impl Tracker {
    /// A complete request head arrived: the connection is answering until the returned
    /// guard is dropped (with the answer's body, once it is written).
    pub(super) fn answering(&self) -> Answering {
        if let Some(e) = self.conns.table().open.get_mut(&self.id) {
            if e.answering == 0 {
                e.since = Instant::now();
            }
            e.answering += 1;
        }
        Answering {
            tracker: self.clone(),
        }
    }
}

/// While it lives, its connection is answering and cannot be shed.
pub(super) struct Answering {
    tracker: Tracker,
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut table = self.tracker.conns.table();
        if let Some(e) = table.open.get_mut(&self.tracker.id) {
            e.answering = e.answering.saturating_sub(1);
            if e.answering == 0 {
                // Waiting for the next request: the header timeout starts again.
                e.since = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            max_connections: max,
            header_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(20),
        }
    }

    fn admitted(a: Admission) -> Slot {
        match a {
            Admission::Admitted(s) => s,
            Admission::Full => panic!("refused a connection with room or something to shed"),
        }
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_is_shed_never_an_answering_one() {
        let conns = Connections::new(limits(3));
        let t0 = Instant::now();
        let a = admitted(conns.admit(t0));
        let b = admitted(conns.admit(t0 + Duration::from_millis(1)));
        let c = admitted(conns.admit(t0 + Duration::from_millis(2)));
        // `a` is the oldest, but answering: `b` goes.
        let _answering = a.tracker().answering();
        let d = admitted(conns.admit(t0 + Duration::from_millis(3)));
        assert!(!a.close.is_cancelled());
        assert!(b.close.is_cancelled());
        assert!(!c.close.is_cancelled() && !d.close.is_cancelled());
        assert_eq!(conns.open(), 3);
        drop(b);
        assert_eq!(conns.open(), 3, "a shed slot was already forgotten");
        drop(c);
        assert_eq!(conns.open(), 2);
    }

    #[test]
    fn when_every_connection_is_answering_a_new_one_is_refused() {
        let conns = Connections::new(limits(2));
        let now = Instant::now();
        let a = admitted(conns.admit(now));
        let b = admitted(conns.admit(now));
        let (_x, _y) = (a.tracker().answering(), b.tracker().answering());
        assert!(matches!(conns.admit(now), Admission::Full));
        conns.out_of_descriptors(now, &std::io::Error::other("EMFILE"));
        assert!(!a.close.is_cancelled() && !b.close.is_cancelled());
    }

    #[test]
    fn the_sweep_closes_waiting_past_the_header_timeout_and_answering_past_the_answer_timeout() {
        let conns = Connections::new(limits(10));
        let t0 = Instant::now();
        let waiting = admitted(conns.admit(t0));
        let answering = admitted(conns.admit(t0));
        let guard = answering.tracker().answering();
        conns.sweep(Instant::now() + Duration::from_secs(9));
        assert!(!waiting.close.is_cancelled());
        conns.sweep(Instant::now() + Duration::from_secs(11));
        assert!(waiting.close.is_cancelled());
        assert!(!answering.close.is_cancelled(), "answering gets 20 s");
        conns.sweep(Instant::now() + Duration::from_secs(21));
        assert!(answering.close.is_cancelled());
        // An answer's end restarts the wait.
        let fresh = admitted(conns.admit(Instant::now()));
        let g = fresh.tracker().answering();
        drop(g);
        conns.sweep(Instant::now() + Duration::from_secs(9));
        assert!(!fresh.close.is_cancelled());
        drop(guard);
    }
}
