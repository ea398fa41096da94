//! `portctl who`: who leases and who listens on a port (`GET /v1/ports/{port}`).

use clap::Args;
use portd_api::routes::GetPort;
use portd_api::{Holder, PortReport};

use super::{command_text, json_errors, port_arg, print_body};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "Exit 4 when nothing leases or listens on the port.")]
pub struct WhoArgs {
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: u16,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: WhoArgs) -> Result<(), ClientError> {
    let (report, response) = json_errors(args.json, client.fetch(&GetPort { port: args.port }))?;
    if args.json {
        print_body(&response);
    } else {
        print!("{}", describe(&report));
    }
    match nothing_there(&report) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The not-found error (exit 4) when nothing leases or listens on the port.
pub fn nothing_there(report: &PortReport) -> Option<ClientError> {
    (report.lease.is_none() && report.holders.is_empty()).then(|| {
        ClientError::NotFound(format!("nothing leases or listens on port {}", report.port))
    })
}

/// The report for people.
pub fn describe(report: &PortReport) -> String {
    let mut out = String::new();
    match &report.lease {
        Some(lease) => {
            let name = lease
                .name
                .as_deref()
                .map(|n| format!(" as '{n}'"))
                .unwrap_or_default();
            out.push_str(&format!(
                "port {}: leased{name} to pid {} since {} (lease {})\n",
                report.port, lease.owner.pid, lease.granted_at, lease.id
            ));
        }
        None if report.holders.is_empty() => out.push_str(&format!("port {}: free\n", report.port)),
        None => out.push_str(&format!("port {}: no lease\n", report.port)),
    }
    for holder in &report.holders {
        out.push_str(&format!("  {}\n", holder_line(holder)));
        if let Some(container) = &holder.container {
            out.push_str(&format!(
                "    {}; stop it with `{}`\n",
                container.describe(),
                container.stop_command()
            ));
        }
    }
    out
}

fn holder_line(holder: &Holder) -> String {
    let pid = holder.pid.map_or("?".to_string(), |p| p.to_string());
    let user = holder
        .user
        .clone()
        .unwrap_or_else(|| holder.uid.to_string());
    let mut line = format!("pid {pid:<7} {user:<10} {}", command_text(&holder.cmdline));
    if let Some(id) = &holder.lease_id {
        line.push_str(&format!("  [lease {id}]"));
    }
    match holder.kind {
        portd_api::HolderKind::Process => {}
        portd_api::HolderKind::DockerProxy => line.push_str("  [docker-proxy]"),
        portd_api::HolderKind::Systemd => line.push_str("  [systemd socket]"),
    }
    if holder.suspect {
        line.push_str("  [suspect: untagged, in a dead owner's session]");
    }
    line
}
