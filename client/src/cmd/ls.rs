//! `portctl ls`: the leases, as a table or JSON.

use clap::Args;
use portd_api::query::LeasesQuery;
use portd_api::routes::ListLeases;
use portd_api::{Lease, LeaseState};

use super::{json_errors, print_body};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Also list ended leases (newest first)
    #[arg(long)]
    pub all: bool,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: LsArgs) -> Result<(), ClientError> {
    let request = ListLeases(LeasesQuery { all: args.all });
    let (list, response) = json_errors(args.json, client.fetch(&request))?;
    if args.json {
        print_body(&response);
        return Ok(());
    }
    if list.leases.is_empty() {
        eprintln!("no {}leases", if args.all { "" } else { "active " });
        return Ok(());
    }
    print!("{}", table(&list.leases, args.all));
    Ok(())
}

/// An aligned table: PORT NAME PROJECT PID STATE GRANTED [END].
pub fn table(leases: &[Lease], with_end: bool) -> String {
    let mut rows = vec![
        ["PORT", "NAME", "PROJECT", "PID", "STATE", "GRANTED", "END"]
            .map(String::from)
            .to_vec(),
    ];
    for lease in leases {
        let state = match (lease.state, lease.end_reason) {
            (LeaseState::Active, _) => "active".to_string(),
            (LeaseState::Ended, Some(reason)) => reason.as_str().to_string(),
            (LeaseState::Ended, None) => "ended".to_string(),
        };
        rows.push(vec![
            lease.port.to_string(),
            lease.name.clone().unwrap_or_else(|| "-".into()),
            lease.project.clone().unwrap_or_else(|| "-".into()),
            lease.owner.pid.to_string(),
            state,
            lease.granted_at.clone(),
            lease.ended_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let columns = if with_end { 7 } else { 6 };
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = (0..columns)
            .map(|c| format!("{:<w$}", row[c], w = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
