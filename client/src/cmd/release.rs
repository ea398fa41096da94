//! `portctl release`: end a lease (`DELETE /v1/leases/{port}`).

use std::path::PathBuf;

use clap::Args;
use portd_api::Lease;

use super::{json_errors, lease_by_name, port_arg, print_body};
use crate::client::{Client, decode};
use crate::error::ClientError;
use crate::project;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  portctl release 8000\n  portctl release --name api")]
pub struct ReleaseArgs {
    /// The leased port
    #[arg(value_parser = port_arg, allow_negative_numbers = true, required_unless_present = "name", conflicts_with = "name")]
    pub port: Option<u16>,
    /// Release the lease of this name in the project instead
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The project of --name [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR", requires = "name")]
    pub project: Option<PathBuf>,
    /// Print the ended lease as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: ReleaseArgs) -> Result<(), ClientError> {
    let path = match (args.port, &args.name) {
        (Some(port), _) => format!("/v1/leases/{port}"),
        (None, Some(name)) => {
            let project = project::current(args.project.as_deref()).map_err(|e| {
                ClientError::Usage(format!("cannot work out the project directory: {e}"))
            })?;
            let lease = lease_by_name(client, &project.display().to_string(), name)?;
            format!("/v1/leases/{}?id={}", lease.port, lease.id)
        }
        (None, None) => return Err(ClientError::Usage("give a port or --name".into())),
    };
    let response = json_errors(args.json, client.send("DELETE", &path, None::<&()>))?;
    let lease: Lease = decode(&response)?;
    if args.json {
        print_body(&response);
    }
    eprintln!("released port {}", lease.port);
    Ok(())
}
