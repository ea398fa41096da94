//! `portctl lease`: ask for a port (`POST /v1/leases`).

use std::time::Duration;

use clap::Args;
use portd_api::procstat::{boot_time, read_stat, ticks_to_unix};
use portd_api::routes::CreateLease;
use portd_api::{LeaseRequest, OwnerRef, parse_duration};

use super::args::PortChoice;
use super::{eval_errors, json_errors, passed_over, port_arg, print_body, shell_exports};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  portctl lease 8000                      exactly 8000, or exit 3
  PORT=$(portctl lease 8000 --next)       8000 or the first free port above it
  portctl lease --name api                api's home port in this project (while it is
                                          busy, another port this time, and stderr says why)
  portctl lease --name api --move         give api a new home: the first free port of its range
  eval \"$(portctl lease --name api --shell)\"   export PORT and the PORTD_LEASE tag

The lease lives as long as the shell or script that ran portctl (or the
process named with --owner). The port alone goes to stdout. When the lease
is refused, --shell prints `(exit N)` instead of the exports, so the eval
fails with portctl's exit code: a `set -e` script stops there, an
interactive shell does not exit.")]
pub struct LeaseArgs {
    /// The port to lease: exactly this one unless --next
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: Option<u16>,
    #[command(flatten)]
    pub choice: PortChoice,
    /// The process the lease lives and dies with [default: the calling shell or script]
    #[arg(long, value_name = "PID")]
    pub owner: Option<u32>,
    /// End the lease after this long even if its owner lives (60, 5m, 2h)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Free PORT first from listeners without a live lease (your own processes)
    #[arg(long, requires = "port", conflicts_with = "next")]
    pub kill: bool,
    /// Print the lease as JSON
    #[arg(long, conflicts_with = "shell")]
    pub json: bool,
    /// Print `export PORT=...` and `export PORTD_LEASE=...` for eval
    #[arg(long)]
    pub shell: bool,
}

pub fn run(client: &Client, args: LeaseArgs) -> Result<(), ClientError> {
    let granted = request(&args).and_then(|request| client.fetch(&CreateLease(request)));
    let (lease, response) = eval_errors(args.shell, json_errors(args.json, granted))?;
    passed_over::note(&lease);
    if args.json {
        print_body(&response);
    } else if args.shell {
        println!("{}", shell_exports(&lease));
    } else {
        println!("{}", lease.port);
    }
    Ok(())
}

/// Builds the API request from the flags.
pub fn request(args: &LeaseArgs) -> Result<LeaseRequest, ClientError> {
    let ttl = match args.ttl {
        Some(ttl) if ttl.is_zero() => {
            return Err(ClientError::Usage("--ttl must be more than 0".into()));
        }
        Some(ttl) => Some(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)),
        None => None,
    };
    Ok(LeaseRequest {
        owner: args.owner.map(owner_ref).transpose()?,
        ttl,
        kill: args.kill,
        ..args.choice.request(args.port)?
    })
}

/// `{pid, start_time}` for `--owner PID`, read from /proc.
pub fn owner_ref(pid: u32) -> Result<OwnerRef, ClientError> {
    let stat =
        read_stat(pid).map_err(|_| ClientError::Usage(format!("no process with pid {pid}")))?;
    let boot =
        boot_time().map_err(|e| ClientError::Other(format!("cannot read /proc/stat: {e}")))?;
    Ok(OwnerRef {
        pid,
        start_time: ticks_to_unix(boot, stat.start_ticks),
    })
}
