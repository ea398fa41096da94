//! `portctl reap`: end the orphans of ended leases now (`POST /v1/reap`).

use clap::Args;
use portd_api::routes::Reap;
use portd_api::{ReapReport, ReapRequest};

use super::{command_text, print_report};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
An orphan carries an ended lease's PORTD_LEASE tag, started after the lease
was granted, and listens on its port (or shares a process group with such a
listener). Orphans get SIGTERM, then SIGKILL after the daemon's grace.
Everything else is only reported, with the reason.")]
pub struct ReapArgs {
    /// Say what would be signalled; signal nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: ReapArgs) -> Result<(), ClientError> {
    let request = ReapRequest {
        dry_run: args.dry_run,
    };
    print_report(args.json, client.fetch(&Reap(request)), describe)
}

pub fn describe(report: &ReapReport) -> String {
    let mut out = String::new();
    for p in &report.reaped {
        let how = match (&p.signal, p.exited) {
            (None, _) => "would be reaped".to_string(),
            (Some(signal), true) => format!("reaped ({signal})"),
            (Some(signal), false) => format!("signalled ({signal}) but still running"),
        };
        out.push_str(&format!(
            "port {:<5} pid {:<7} {how}: {}\n",
            p.port,
            p.pid,
            command_text(&p.cmdline)
        ));
    }
    for p in &report.reported {
        let pid = p.pid.map_or("?".to_string(), |p| p.to_string());
        out.push_str(&format!(
            "port {:<5} pid {pid:<7} left alone: {} ({})\n",
            p.port,
            p.reason,
            command_text(&p.cmdline)
        ));
    }
    if out.is_empty() {
        out.push_str("no orphans\n");
    }
    out
}
