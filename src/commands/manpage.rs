//! `manpage`: manual pages in roff, generated from the clap definitions (every command,
//! option and default as `--help` shows them). `main` passes the definitions in.
//!
//! Without a folder, the main page goes to stdout (its SUBCOMMANDS section lists each
//! command); with one, it is written there as `jellyfin-export-scheduler.1` along with a
//! page per command (`jellyfin-export-scheduler-doctor.1`, ...), as `git` ships them.

use super::{CommandError, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The pages could not be written to the folder.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the manual pages into {}: {source}; check that the folder exists and is writable", dir.display())]
pub struct ManpageError {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

/// The main page (section 1) to `out`, or every page into `dir`.
pub fn manpage(
    cmd: clap::Command,
    dir: Option<&Path>,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    if let Some(dir) = dir {
        clap_mangen::generate_to(cmd, dir).map_err(|source| ManpageError {
            dir: dir.to_owned(),
            source,
        })?;
        return Ok(Verdict::Fine);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .map_err(CommandError::Output)?;
    out.write_all(&page)
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(Verdict::Fine)
}
