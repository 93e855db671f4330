//! This machine's checks: the state folder can be written and has room.
//!
//! Asked of the kernel (`access(2)`, `statvfs(2)`): nothing is created, so a folder that
//! does not exist yet (the daemon makes it at its first start; systemd's
//! `StateDirectory=` only when the service starts) is judged by the folder it would be made
//! in. The answers are this user's: run `doctor` as the daemon's user for the daemon's.
//! Checks of other places the daemon writes (an archive folder, a database backend) belong
//! here beside these.

use super::Check;
use super::server::human_bytes;
use rustix::fs::Access;
use serde_json::json;
use std::path::Path;

/// The state folder's checks; `largest_zip` is the largest last-export ZIP a server
/// reported (what an export takes, to weigh the free space against).
pub fn examine(state_dir: &Path, largest_zip: Option<u64>) -> Vec<Check> {
    // A relative state_dir is relative to the current folder by now (the config's folder
    // was joined on load when it had one): its ancestors must end at `/`.
    let absolute = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let state_dir = absolute.as_path();
    let (state, existing) = state_dir_check(state_dir);
    let mut checks = vec![state];
    checks.push(match existing {
        Some(folder) => free_space(state_dir, &folder, largest_zip),
        None => Check::skip(
            "free_space",
            "not checked: no folder on the state directory's path exists",
        ),
    });
    checks
}

/// Writable, or creatable; also the nearest folder on its path that exists.
fn state_dir_check(dir: &Path) -> (Check, Option<std::path::PathBuf>) {
    let shown = dir.display();
    let data =
        |exists: bool, writable: bool| json!({"path": dir, "exists": exists, "writable": writable});
    if dir.is_dir() {
        return match rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK) {
            Ok(()) => (
                Check::ok("state_dir", format!("{shown}: writable by this user")).with(data(true, true)),
                Some(dir.to_owned()),
            ),
            Err(e) => (
                Check::fail(
                    "state_dir",
                    format!("{shown}: not writable by this user ({e})"),
                    "give the daemon's user the folder (chown), or set [daemon] state_dir to a folder it owns",
                )
                .with(data(true, false)),
                Some(dir.to_owned()),
            ),
        };
    }
    if dir.exists() {
        return (
            Check::fail(
                "state_dir",
                format!("{shown} exists but is not a folder"),
                "move the file away, or set [daemon] state_dir to a folder",
            )
            .with(data(true, false)),
            None,
        );
    }
    let Some(parent) = dir.ancestors().skip(1).find(|p| p.is_dir()) else {
        return (
            Check::fail(
                "state_dir",
                format!("{shown}: no folder on its path exists"),
                "set [daemon] state_dir to a folder",
            )
            .with(data(false, false)),
            None,
        );
    };
    match rustix::fs::access(parent, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => (
            Check::ok(
                "state_dir",
                format!("{shown} does not exist yet; the daemon creates it at its first start ({} is writable by this user)", parent.display()),
            )
            .with(data(false, true)),
            Some(parent.to_owned()),
        ),
        Err(e) => (
            Check::warn(
                "state_dir",
                format!("{shown} does not exist yet, and {} is not writable by this user ({e})", parent.display()),
                "under systemd, StateDirectory= creates it when the service starts; otherwise create it for the daemon's user",
            )
            .with(data(false, false)),
            Some(parent.to_owned()),
        ),
    }
}

/// Free space where the state goes, against the largest last export.
fn free_space(state_dir: &Path, folder: &Path, largest_zip: Option<u64>) -> Check {
    let stat = match rustix::fs::statvfs(folder) {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                "free_space",
                format!("cannot ask {} for its free space ({e})", folder.display()),
                "check the folder's file system",
            );
        }
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let data = json!({"path": state_dir, "free_bytes": free, "largest_zip_bytes": largest_zip});
    match largest_zip {
        Some(zip) if free < zip => Check::warn(
            "free_space",
            format!("{} free, less than the largest last export's ZIP ({})", human_bytes(free), human_bytes(zip)),
            "free some space on that file system: the history needs little, but a copy of an export would not fit",
        ),
        Some(zip) => Check::ok(
            "free_space",
            format!("{} free (the largest last export's ZIP: {})", human_bytes(free), human_bytes(zip)),
        ),
        None => Check::ok("free_space", format!("{} free", human_bytes(free))),
    }
    .with(data)
}
