//! `portctl env`: print an existing lease for eval, a .env file, or JSON.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use portd_api::Lease;

use super::{lease_by_name, port_arg, shell_exports};
use crate::client::Client;
use crate::error::ClientError;
use crate::project;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// export PORT=8000 PORTD_LEASE=<id>
    Shell,
    /// PORT=8000 (never the tag: a file would tag unrelated processes)
    Dotenv,
    /// The lease as JSON
    Json,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  eval \"$(portctl env --name api)\"\n  portctl env 8000 --format dotenv >> .env"
)]
pub struct EnvArgs {
    /// The leased port
    #[arg(value_parser = port_arg, allow_negative_numbers = true, required_unless_present = "name", conflicts_with = "name")]
    pub port: Option<u16>,
    /// Look the lease up by name in the project instead
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The project of --name [default: the git worktree root, else the directory]
    #[arg(long, value_name = "DIR", requires = "name")]
    pub project: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "shell")]
    pub format: Format,
}

pub fn run(client: &Client, args: EnvArgs) -> Result<(), ClientError> {
    let lease: Lease = match (args.port, &args.name) {
        (Some(port), _) => client.get(&format!("/v1/leases/{port}"))?.0,
        (None, Some(name)) => {
            let project = project::current(args.project.as_deref()).map_err(|e| {
                ClientError::Usage(format!("cannot work out the project directory: {e}"))
            })?;
            lease_by_name(client, &project.display().to_string(), name)?
        }
        (None, None) => return Err(ClientError::Usage("give a port or --name".into())),
    };
    match args.format {
        Format::Shell => println!("{}", shell_exports(&lease)),
        Format::Dotenv => println!("PORT={}", lease.port),
        Format::Json => println!(
            "{}",
            serde_json::to_string(&lease).expect("leases serialize")
        ),
    }
    Ok(())
}
