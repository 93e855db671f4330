//! `completions SHELL`: a completion script for bash, zsh or fish, generated from the
//! same clap definitions that parse the arguments, so it never lists an option that does
//! not exist. `main` passes the definitions in ([`clap::CommandFactory`] of its `Cli`).

use super::{CommandError, Verdict};
use std::io::Write;

/// The shells a script can be written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Write the script for `shell` to `out`.
pub fn completions(
    mut cmd: clap::Command,
    shell: Shell,
    mut out: impl Write,
) -> Result<Verdict, CommandError> {
    let name = cmd.get_name().to_owned();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Made whole first: clap_complete panics on a write error, and a closed pipe is not
    // worth a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, &name, &mut script);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)?;
    Ok(Verdict::Fine)
}
