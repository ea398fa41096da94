//! `portctl release`: end a lease (`DELETE /v1/leases/{port}`).

use clap::Args;
use portd_api::Lease;
use portd_api::query::ReleaseQuery;
use portd_api::routes::ReleaseLease;

use super::args::LeaseRef;
use super::{json_errors, print_body};
use crate::client::Client;
use crate::error::ClientError;
use crate::transport::Response;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  portctl release 8000
  portctl release --name api
  portctl release 8000 --keep     end the lease, leave its server running

When a lease ends, portd stops what of it still listens on the port (the
processes carrying its PORTD_LEASE tag, or in the process group `portctl
run` made for its command): SIGTERM, the grace, then SIGKILL. With --keep
they are left running, without a lease; `portctl kill PORT` still stops
them.")]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub lease: LeaseRef,
    /// Leave the lease's processes running instead of stopping them
    #[arg(long)]
    pub keep: bool,
    /// Print the ended lease as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: ReleaseArgs) -> Result<(), ClientError> {
    let (lease, response) = json_errors(args.json, end(client, &args))?;
    if args.json {
        print_body(&response);
    }
    if args.keep {
        eprintln!(
            "released port {}; its processes keep running without a lease",
            lease.port
        );
    } else {
        eprintln!("released port {}", lease.port);
    }
    Ok(())
}

/// Ends the lease `args` names; a lease looked up by name is released only
/// if it is still that one.
pub fn end(client: &Client, args: &ReleaseArgs) -> Result<(Lease, Response), ClientError> {
    let (port, id) = match args.lease.port {
        Some(port) => (port, None),
        None => {
            let lease = args.lease.lookup(client)?;
            (lease.port, Some(lease.id))
        }
    };
    let release = ReleaseLease {
        port,
        query: ReleaseQuery {
            id,
            keep: args.keep,
        },
    };
    client.fetch(&release)
}
