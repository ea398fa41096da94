//! `portctl release`: end a lease (`DELETE /v1/leases/{port}`).

use clap::Args;
use portd_api::Lease;

use super::args::LeaseRef;
use super::{json_errors, print_body};
use crate::client::{Client, decode};
use crate::error::ClientError;

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
    let mut path = match args.lease.port {
        Some(port) => format!("/v1/leases/{port}"),
        None => {
            let lease = args.lease.lookup(client)?;
            format!("/v1/leases/{}?id={}", lease.port, lease.id)
        }
    };
    if args.keep {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("keep=true");
    }
    let response = json_errors(args.json, client.send("DELETE", &path, None::<&()>))?;
    let lease: Lease = decode(&response)?;
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
