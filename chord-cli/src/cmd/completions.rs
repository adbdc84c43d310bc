//! `chord completions SHELL`: shell completions.

use crate::common::Result;

/// Options of `chord completions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub const EXAMPLES: &str = "Examples:
  chord completions bash > ~/.local/share/bash-completion/completions/chord
  chord completions zsh > ~/.zfunc/_chord";

/// Write the completions of `command` (the whole `chord` command line) to stdout.
pub fn run(a: &Args, mut command: clap::Command) -> Result<()> {
    clap_complete::generate(a.shell, &mut command, "chord", &mut std::io::stdout());
    Ok(())
}
