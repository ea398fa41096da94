//! Arguments several verbs share, parsed and resolved once.

use std::path::{Path, PathBuf};

use clap::Args;
use portd_api::routes::GetLease;
use portd_api::{Lease, LeaseRequest, PortRange};

use super::{lease_by_name, port_arg};
use crate::client::Client;
use crate::error::ClientError;
use crate::project;

/// How `lease` and `run` choose a port, beside the port itself
/// (DESIGN "Which port a request gets").
#[derive(Debug, Args)]
pub struct PortChoice {
    /// A name that keeps its port (its home) in this project
    #[arg(
        long,
        value_name = "NAME",
        long_help = "A name that keeps its port (its home) in this project. The home is the \
port the name first got, or PORT when PORT is given with --name. While something else holds \
the home, the lease takes the first free port of the name's range for this time only and \
stderr says what holds the home; the home stays. --move gives the name a new home."
    )]
    pub name: Option<String>,
    /// If PORT is taken, take the first free port above it; never a port this owner holds
    #[arg(
        long,
        long_help = "If PORT is taken, take the first free port above it, up to the end of \
the range that contains PORT. Every --next gets a port its owner does not hold yet, so two \
calls in one script get two ports; only `lease PORT` (exactly PORT) and the same --name answer \
with the lease the owner already has. Without PORT, --next changes nothing: a bare lease already \
takes the first free port of the range, and --name its home or, while the home is busy, the \
first free port of its range. A name that another process holds is still refused (exit 3), \
--next or not."
    )]
    pub next: bool,
    /// Make the port this lease gets NAME's new home
    #[arg(
        long = "move",
        requires = "name",
        long_help = "Make the port this lease gets NAME's new home. Without PORT the old home \
is neither tried nor taken, so NAME lands on the first free port of its range; with PORT it \
lands on PORT (with --next, the first free port from PORT up). `lease PORT --name NAME` moves \
the home to PORT without --move."
    )]
    pub move_home: bool,
    /// Search this range instead of the daemon's
    #[arg(long, value_name = "A-B")]
    pub range: Option<PortRange>,
    /// The project a name belongs to [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
}

impl PortChoice {
    /// The request for `port` chosen this way; owner, TTL and kill unset.
    pub fn request(&self, port: Option<u16>) -> Result<LeaseRequest, ClientError> {
        Ok(LeaseRequest {
            port,
            next: self.next,
            range: self.range,
            name: self.name.clone(),
            move_home: self.move_home,
            project: Some(project_dir(self.project.as_deref())?),
            ..LeaseRequest::default()
        })
    }
}

/// An existing lease, named by its port or by its name in a project
/// (`release`, `env`).
#[derive(Debug, Args)]
pub struct LeaseRef {
    /// The leased port
    #[arg(value_parser = port_arg, allow_negative_numbers = true, required_unless_present = "name", conflicts_with = "name")]
    pub port: Option<u16>,
    /// Name the lease by its name in the project instead
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The project of --name [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR", requires = "name")]
    pub project: Option<PathBuf>,
}

impl LeaseRef {
    /// The active lease this names (exit 4 if there is none).
    pub fn lookup(&self, client: &Client) -> Result<Lease, ClientError> {
        match (self.port, &self.name) {
            (Some(port), _) => Ok(client.fetch(&GetLease { port })?.0),
            (None, Some(name)) => {
                lease_by_name(client, &project_dir(self.project.as_deref())?, name)
            }
            (None, None) => Err(ClientError::Usage("give a port or --name".into())),
        }
    }
}

/// The project of `--project`, else of the current directory, as text.
pub fn project_dir(flag: Option<&Path>) -> Result<String, ClientError> {
    project::current(flag)
        .map(|dir| dir.display().to_string())
        .map_err(|e| ClientError::Usage(format!("cannot work out the project directory: {e}")))
}
