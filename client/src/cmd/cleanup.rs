//! `portctl cleanup`: the daemon's start-up cleanup on demand
//! (`POST /v1/cleanup`): end the leases of dead owners and of other boots,
//! then reap the orphans of this boot's ended leases. For logins on machines
//! without systemd, where no unit starts the daemon at boot.

use clap::Args;
use portd_api::CleanupReport;

use super::{print_report, reap};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Unlike `portctl reap`, cleanup first ends the leases whose owner is gone or
that come from another boot, so their orphans are reaped too. It waits for
the reaping (up to the daemon's grace). In ~/.profile on machines without
systemd:

  command -v portctl >/dev/null && (portctl cleanup >/dev/null 2>&1 &)")]
pub struct CleanupArgs {
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: CleanupArgs) -> Result<(), ClientError> {
    print_report(
        args.json,
        client.send("POST", "/v1/cleanup", None::<&()>),
        describe,
    )
}

/// One summary line, then what `reap` would say about each process.
pub fn describe(report: &CleanupReport) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = format!(
        "kept {}, ended {}, reaped {}, reported {}\n",
        plural(report.kept as usize, "lease", "leases"),
        report.ended,
        plural(report.reap.reaped.len(), "orphan", "orphans"),
        report.reap.reported.len(),
    );
    if !report.reap.reaped.is_empty() || !report.reap.reported.is_empty() {
        out.push_str(&reap::describe(&report.reap));
    }
    out
}

#[cfg(test)]
mod tests {
    use portd_api::{ReapReport, Signalled};

    use super::*;

    #[test]
    fn the_summary_counts_everything_and_lists_the_reaped() {
        let quiet = CleanupReport {
            kept: 1,
            ended: 0,
            reap: ReapReport {
                dry_run: false,
                reaped: vec![],
                reported: vec![],
            },
        };
        assert_eq!(
            describe(&quiet),
            "kept 1 lease, ended 0, reaped 0 orphans, reported 0\n"
        );
        let busy = CleanupReport {
            kept: 2,
            ended: 1,
            reap: ReapReport {
                reaped: vec![Signalled {
                    pid: 42,
                    uid: 1000,
                    cmdline: vec!["python3".into(), "server.py".into()],
                    port: 8001,
                    lease_id: Some("L".into()),
                    signal: Some("SIGTERM".into()),
                    exited: true,
                }],
                ..quiet.reap.clone()
            },
        };
        let text = describe(&busy);
        assert!(
            text.starts_with("kept 2 leases, ended 1, reaped 1 orphan, reported 0\n"),
            "{text}"
        );
        assert!(
            text.contains("port 8001") && text.contains("reaped (SIGTERM): python3 server.py"),
            "{text}"
        );
    }
}
