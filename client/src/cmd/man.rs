//! `portctl man`: man pages generated from the same clap definitions that
//! parse the command line: `portctl.1` and one `portctl-VERB.1` per verb.

use std::path::PathBuf;

use clap::Args;
use clap_mangen::Man;

use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Without --dir, prints portctl(1) for `portctl man | man -l -`. With it:

  portctl man --dir ~/.local/share/man/man1")]
pub struct ManArgs {
    /// Write portctl.1 and portctl-VERB.1 for every verb into DIR (created
    /// if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Renders the pages for `portctl`'s command line `cli`.
pub fn run(cli: clap::Command, args: ManArgs) -> Result<(), ClientError> {
    let cli = cli.name("portctl").disable_help_subcommand(true);
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        page_of(cli)
            .render(&mut page)
            .map_err(|e| ClientError::Other(format!("cannot render the man page: {e}")))?;
        return super::write_stdout(&page);
    };
    let io_error = |e: std::io::Error| ClientError::Other(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io_error)?;
    let mut cli = cli;
    cli.build();
    let pages = std::iter::once(cli.clone()).chain(
        cli.get_subcommands()
            .filter(|verb| !verb.is_hide_set())
            .cloned(),
    );
    for page in pages {
        let path = page_of(page).generate_to(&dir).map_err(io_error)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The page of `cli` (the whole program or one verb), its footer naming
/// portctl and its version.
fn page_of(cli: clap::Command) -> Man {
    Man::new(cli).source(format!("portctl {}", portd_api::VERSION))
}
