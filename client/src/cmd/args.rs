//! Arguments several verbs share, parsed and resolved once.

use std::path::{Path, PathBuf};

use clap::Args;
use portd_api::{Lease, LeaseRequest, PortRange};

use super::{lease_by_name, port_arg};
use crate::client::Client;
use crate::error::ClientError;
use crate::project;

/// How `lease` and `run` choose a port, beside the port itself
/// (DESIGN "Which port a request gets").
#[derive(Debug, Args)]
pub struct PortChoice {
    /// A name that remembers its port in this project
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// If the port is taken, take the first free port above it
    #[arg(long)]
    pub next: bool,
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
            (Some(port), _) => Ok(client.get(&format!("/v1/leases/{port}"))?.0),
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
