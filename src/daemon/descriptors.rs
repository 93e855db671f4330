//! The process's descriptor table, grown to what a fleet needs before anything is due.
//!
//! Linux keeps a process's open files in a table that it doubles when an open needs a
//! slot past its end. In a process with more than one thread, each doubling waits for an
//! RCU grace period (`expand_fdtable` calls `synchronize_rcu`: milliseconds on a busy
//! VM), and every other thread that opens a descriptor meanwhile waits for it too. A fleet
//! due the same second opens a lock file and connections for each run within a few
//! milliseconds: in the fleet benchmark a switch trace (`sched:sched_switch` with kernel
//! stacks) showed both tokio workers waiting in `expand_files` at 8, 17 and 57 ms after the
//! due instant. Growing the table once, when the loops are armed, puts that wait where
//! nothing is due. The table never shrinks, so it lasts for the process's life.

use std::os::fd::AsFd;
use tracing::debug;

/// Descriptors a run may hold at once: its server's lock file, a connection to its
/// Jellyfin, and a file being written (marker, record or archive).
pub const PER_RUN: usize = 3;
/// Descriptors the daemon holds whatever runs: the runtime, logs, the endpoint's
/// listener, the config watcher, the state directory's lock.
pub const BASE: usize = 64;

/// Grow the descriptor table so that descriptors below `wanted` need no growth (at most
/// up to the soft `RLIMIT_NOFILE`). Best effort: when it cannot, the table grows as files
/// are opened, as it would have anyway.
pub fn reserve(wanted: usize) {
    let soft = crate::endpoint::nofile_limit();
    let top = soft.map_or(wanted, |s| {
        wanted.min(usize::try_from(s).unwrap_or(usize::MAX))
    });
    // The table holds the highest descriptor asked for (`top - 1`): F_DUPFD takes the
    // lowest free descriptor at or above it, growing the table to reach it.
    let Some(min) = top.checked_sub(1).and_then(|m| i32::try_from(m).ok()) else {
        return;
    };
    match rustix::io::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), min) {
        // Closed at once: only the table's size was wanted.
        Ok(fd) => drop(fd),
        Err(e) => debug!(descriptors = top, error = %e, "descriptor table not grown ahead"),
    }
}

/// What [`reserve`] is asked for when `runs` runs may be going at once.
pub fn for_runs(runs: usize) -> usize {
    runs.saturating_mul(PER_RUN).saturating_add(BASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` in `/proc/self/status`: the slots the descriptor table has now.
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("an FDSize line")
    }

    #[test]
    fn the_table_is_grown_to_hold_what_is_reserved_and_no_descriptor_stays_open() {
        let soft = crate::endpoint::nofile_limit().map_or(usize::MAX, |s| s as usize);
        let wanted = 3000.min(soft);
        reserve(wanted);
        assert!(
            table_size() >= wanted,
            "the table has {} slots after reserving {wanted}",
            table_size()
        );
        let highest = wanted - 1;
        assert!(
            std::fs::read_link(format!("/proc/self/fd/{highest}")).is_err(),
            "descriptor {highest}, taken only to grow the table, stayed open"
        );
    }

    #[test]
    fn nothing_to_reserve_is_a_no_op() {
        let before = table_size();
        reserve(0);
        assert_eq!(table_size(), before);
    }

    #[test]
    fn the_reservation_follows_the_runs() {
        assert_eq!(for_runs(0), BASE);
        assert_eq!(for_runs(1000), 3000 + BASE);
        assert_eq!(for_runs(usize::MAX), usize::MAX);
    }
}
