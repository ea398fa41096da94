//! `portctl kill`: end whatever listens on a port (`POST /v1/ports/{port}/kill`).

use std::time::Duration;

use clap::Args;
use portd_api::{KillReport, KillRequest, parse_duration};

use super::{command_text, port_arg, print_report};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Signals the processes listening on PORT (never clients connected to it) that
run as you (root: anyone's); docker-proxy and systemd sockets only with
--force. Exit 4 when nothing listens, 5 when every listener is protected.")]
pub struct KillArgs {
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: u16,
    /// First signal (TERM, INT, HUP, KILL, or a number)
    #[arg(long, value_name = "SIG", default_value = "TERM")]
    pub signal: String,
    /// Time between the first signal and SIGKILL [default: the daemon's grace]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Also signal docker-proxy and systemd socket holders
    #[arg(long)]
    pub force: bool,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: KillArgs) -> Result<(), ClientError> {
    let request = KillRequest {
        signal: Some(args.signal.clone()),
        grace: args.grace.map(|g| g.as_secs_f64()),
        force: args.force,
    };
    let path = format!("/v1/ports/{}/kill", args.port);
    print_report(
        args.json,
        client.send("POST", &path, Some(&request)),
        describe,
    )
}

pub fn describe(report: &KillReport) -> String {
    let mut out = String::new();
    for p in &report.signalled {
        let signal = p.signal.as_deref().unwrap_or("no signal");
        let result = if p.exited { "ended" } else { "still running" };
        out.push_str(&format!(
            "pid {:<7} {signal}, {result}: {}\n",
            p.pid,
            command_text(&p.cmdline)
        ));
    }
    for p in &report.skipped {
        let pid = p.pid.map_or("?".to_string(), |p| p.to_string());
        out.push_str(&format!(
            "pid {pid:<7} left alone: {} ({})\n",
            p.reason,
            command_text(&p.cmdline)
        ));
    }
    out.push_str(&format!(
        "port {} is {}\n",
        report.port,
        if report.free { "free" } else { "still held" }
    ));
    out
}
