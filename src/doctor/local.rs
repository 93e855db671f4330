//! This machine's checks: the state folder (and each archive folder) can be written, and
//! the state folder has room.
//!
//! Asked of the kernel (`access(2)`, `statvfs(2)`): nothing is created, so a folder that
//! does not exist yet (the daemon makes it at its first start; systemd's
//! `StateDirectory=` only when the service starts) is judged by the folder it would be made
//! in. The answers are this user's: run `doctor` as the daemon's user for the daemon's.
//! Checks of other places the daemon writes (a database backend) belong here beside these.

use super::Check;
use super::server::human_bytes;
use rustix::fs::Access;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A folder the daemon writes: the check's id, and the setting that names the folder.
struct Place {
    id: &'static str,
    setting: &'static str,
}

const STATE: Place = Place {
    id: "state_dir",
    setting: "[daemon] state_dir",
};
const ARCHIVE: Place = Place {
    id: "archive_dir",
    setting: "[archive] dir (or [archive] enabled = false)",
};

/// The state folder's checks, then one per archive folder in `archives` (those of the
/// servers checked that archive); `largest_zip` is the largest last-export ZIP a server
/// reported (what an export takes, to weigh the free space against).
pub fn examine(state_dir: &Path, archives: &[PathBuf], largest_zip: Option<u64>) -> Vec<Check> {
    let state_dir = &absolute(state_dir);
    let (state, existing) = folder_check(&STATE, state_dir);
    let mut checks = vec![state];
    checks.push(match existing {
        Some(folder) => free_space(state_dir, &folder, largest_zip),
        None => Check::skip(
            "free_space",
            "not checked: no folder on the state directory's path exists",
        ),
    });
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in archives.iter().map(|d| absolute(d)) {
        if !seen.contains(&dir) {
            checks.push(folder_check(&ARCHIVE, &dir).0);
            seen.push(dir);
        }
    }
    checks
}

/// A relative folder is relative to the current one by now (the config's folder was
/// joined on load when it had one): its ancestors must end at `/`.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

/// Writable, or creatable; also the nearest folder on its path that exists.
fn folder_check(place: &Place, dir: &Path) -> (Check, Option<PathBuf>) {
    let shown = dir.display();
    let data =
        |exists: bool, writable: bool| json!({"path": dir, "exists": exists, "writable": writable});
    if dir.is_dir() {
        return match rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK) {
            Ok(()) => (
                Check::ok(place.id, format!("{shown}: writable by this user"))
                    .with(data(true, true)),
                Some(dir.to_owned()),
            ),
            Err(e) => (
                Check::fail(
                    place.id,
                    format!("{shown}: not writable by this user ({e})"),
                    format!(
                        "give the daemon's user the folder (chown), or set {} to a folder it owns",
                        place.setting
                    ),
                )
                .with(data(true, false)),
                Some(dir.to_owned()),
            ),
        };
    }
    if dir.exists() {
        return (
            Check::fail(
                place.id,
                format!("{shown} exists but is not a folder"),
                format!("move the file away, or set {} to a folder", place.setting),
            )
            .with(data(true, false)),
            None,
        );
    }
    let Some(parent) = dir.ancestors().skip(1).find(|p| p.is_dir()) else {
        return (
            Check::fail(
                place.id,
                format!("{shown}: no folder on its path exists"),
                format!("set {} to a folder", place.setting),
            )
            .with(data(false, false)),
            None,
        );
    };
    match rustix::fs::access(parent, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => (
            Check::ok(
                place.id,
                format!("{shown} does not exist yet; the daemon creates it at its first start ({} is writable by this user)", parent.display()),
            )
            .with(data(false, true)),
            Some(parent.to_owned()),
        ),
        Err(e) => (
            Check::warn(
                place.id,
                format!("{shown} does not exist yet, and {} is not writable by this user ({e})", parent.display()),
                if place.id == STATE.id {
                    "under systemd, StateDirectory= creates it when the service starts; otherwise create it for the daemon's user".to_owned()
                } else {
                    format!("create it for the daemon's user, or set {} to a folder it owns", place.setting)
                },
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
