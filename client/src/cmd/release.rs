//! `portctl release`: end a lease (`DELETE /v1/leases/{port}`).

use clap::Args;
use portd_api::Lease;

use super::args::LeaseRef;
use super::{json_errors, print_body};
use crate::client::{Client, decode};
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  portctl release 8000\n  portctl release --name api")]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub lease: LeaseRef,
    /// Print the ended lease as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: ReleaseArgs) -> Result<(), ClientError> {
    let path = match args.lease.port {
        Some(port) => format!("/v1/leases/{port}"),
        None => {
            let lease = args.lease.lookup(client)?;
            format!("/v1/leases/{}?id={}", lease.port, lease.id)
        }
    };
    let response = json_errors(args.json, client.send("DELETE", &path, None::<&()>))?;
    let lease: Lease = decode(&response)?;
    if args.json {
        print_body(&response);
    }
    eprintln!("released port {}", lease.port);
    Ok(())
}
