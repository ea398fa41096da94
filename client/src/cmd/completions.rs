//! `portctl completions SHELL`: a completion script generated from the same
//! clap definitions that parse the command line, so it never falls behind.

use clap::Args;
use clap_complete::Shell;

use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Install one where your shell looks for it:

  portctl completions bash > ~/.local/share/bash-completion/completions/portctl
  portctl completions zsh > ~/.zfunc/_portctl    # a directory on $fpath
  portctl completions fish > ~/.config/fish/completions/portctl.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script for `portctl`'s command line `cli` to stdout.
pub fn run(mut cli: clap::Command, args: CompletionsArgs) -> Result<(), ClientError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "portctl", &mut script);
    super::write_stdout(&script)
}
