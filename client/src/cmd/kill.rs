//! `portctl kill`: end whatever listens on a port (`POST /v1/ports/{port}/kill`).

use std::time::Duration;

use clap::Args;
use portd_api::routes::{GetPort, GetStatus, KillPort};
use portd_api::{Holder, HolderKind, KillReport, KillRequest, parse_duration};

use super::{command_text, port_arg, print_report};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Signals the processes listening on PORT (never clients connected to it) that
run as you (root: anyone's); systemd sockets only with --force. A port a
container publishes is never signalled, --force or not: the answer names
the container and the docker command that stops it. Before the wait, stderr
says who gets the first signal and how long until SIGKILL. Exit 4 when
nothing listens, 5 when every listener is protected.")]
pub struct KillArgs {
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: u16,
    /// First signal (TERM, INT, HUP, KILL, or a number)
    #[arg(long, value_name = "SIG", default_value = "TERM")]
    pub signal: String,
    /// Time between the first signal and SIGKILL [default: the daemon's grace]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub grace: Option<Duration>,
    /// Also signal systemd socket holders (never a container's port)
    #[arg(long)]
    pub force: bool,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: KillArgs) -> Result<(), ClientError> {
    let request = request(&args);
    if let Some(line) = announcement(client, &args) {
        eprintln!("portctl: {line}");
    }
    let kill = KillPort {
        port: args.port,
        request,
    };
    print_report(args.json, client.fetch(&kill), describe)
}

/// The API request for the flags.
pub fn request(args: &KillArgs) -> KillRequest {
    KillRequest {
        signal: Some(args.signal.clone()),
        grace: args.grace.map(|g| g.as_secs_f64()),
        force: args.force,
    }
}

/// What the kill is about to do and wait for, said before it starts: the
/// daemon answers only once the grace is over, which may be many seconds
/// of silence. `None` when nothing listens that this caller may signal
/// (the answer then says why).
fn announcement(client: &Client, args: &KillArgs) -> Option<String> {
    let (report, _) = client.fetch(&GetPort { port: args.port }).ok()?;
    let uid = nix::unistd::geteuid().as_raw();
    let targets: Vec<String> = report
        .holders
        .iter()
        .filter(|h| h.pid.is_some() && (uid == 0 || h.uid == uid))
        .filter(|h| h.container.is_none())
        .filter(|h| h.kind == HolderKind::Process || (args.force && h.kind == HolderKind::Systemd))
        .map(Holder::describe)
        .collect();
    if targets.is_empty() {
        return None;
    }
    let grace = match args.grace {
        Some(grace) => grace.as_secs_f64(),
        None => client.fetch(&GetStatus).ok()?.0.grace_secs,
    };
    Some(announce(&signal_name(&args.signal), &targets, grace))
}

/// `SIGTERM to pid 1234 (python3 -m http.server 8000); waiting up to 5 s
/// for it to exit, then SIGKILL`.
pub fn announce(signal: &str, targets: &[String], grace: f64) -> String {
    let who = targets.join(", ");
    let them = if targets.len() == 1 { "it" } else { "them" };
    if signal == "SIGKILL" {
        format!("SIGKILL to {who}")
    } else if grace <= 0.0 {
        format!("{signal} to {who}, then SIGKILL at once (grace 0)")
    } else {
        format!("{signal} to {who}; waiting up to {grace} s for {them} to exit, then SIGKILL")
    }
}

/// `TERM`, `sigterm` -> `SIGTERM`; `9` -> `SIGKILL`; other numbers as
/// `signal N`.
fn signal_name(text: &str) -> String {
    match text.parse::<i32>() {
        Ok(9) => "SIGKILL".to_string(),
        Ok(15) => "SIGTERM".to_string(),
        Ok(n) => format!("signal {n}"),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_names_the_signal_the_targets_and_the_wait() {
        let one = ["pid 7 (python3 -m http.server)".to_string()];
        assert_eq!(
            announce(&signal_name("TERM"), &one, 5.0),
            "SIGTERM to pid 7 (python3 -m http.server); waiting up to 5 s for it to exit, then SIGKILL"
        );
        let two = ["pid 7 (a)".to_string(), "pid 8 (b)".to_string()];
        assert!(
            announce(&signal_name("int"), &two, 0.5)
                .starts_with("SIGINT to pid 7 (a), pid 8 (b); waiting up to 0.5 s for them")
        );
        assert_eq!(
            announce(&signal_name("9"), &one, 5.0),
            "SIGKILL to pid 7 (python3 -m http.server)"
        );
        assert!(
            announce(&signal_name("SIGHUP"), &one, 0.0).ends_with("then SIGKILL at once (grace 0)")
        );
        assert_eq!(signal_name("15"), "SIGTERM");
        assert_eq!(signal_name("10"), "signal 10");
    }
}
