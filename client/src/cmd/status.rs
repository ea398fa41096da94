//! `portctl status`: the daemon's version, uptime, paths and counts.

use clap::Args;
use portd_api::ProxyStatus;
use portd_api::routes::GetStatus;

use super::{json_errors, print_body};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

/// Where the `.localhost` proxy listens, or why it does not.
fn proxy_line(proxy: &ProxyStatus) -> String {
    match (proxy.port, &proxy.error) {
        (0, _) => "off (proxy_port = 0)".to_string(),
        (port, Some(error)) => format!("not listening on port {port}: {error}"),
        (port, None) => format!(
            "http://NAME.PROJECT.localhost:{port}/ on {}",
            proxy.listening.join(", ")
        ),
    }
}

pub fn run(client: &Client, args: StatusArgs) -> Result<(), ClientError> {
    let (status, response) = json_errors(args.json, client.fetch(&GetStatus))?;
    if args.json {
        print_body(&response);
        return Ok(());
    }
    println!(
        "portd {} (pid {}), up {:.0} s since {}",
        status.version, status.pid, status.uptime_secs, status.started_at
    );
    println!("socket:        {}", status.socket);
    println!("database:      {}", status.db);
    println!("range:         {}", status.range);
    println!("reap grace:    {} s", status.grace_secs);
    println!("proxy:         {}", proxy_line(&status.proxy));
    println!("active leases: {}", status.counts.active_leases);
    println!(
        "owners:        {} watched by pidfd",
        status.counts.owners_watched
    );
    println!("names:         {}", status.counts.names);
    println!("events:        {}", status.counts.events);
    if !status.reconciled {
        println!("(start-up reconcile still running)");
    }
    Ok(())
}
