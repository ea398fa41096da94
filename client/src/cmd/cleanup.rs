//! `portctl cleanup`: the daemon's start-up cleanup on demand
//! (`POST /v1/cleanup`): end the leases of dead owners and of other boots,
//! then reap the orphans of this boot's ended leases. For logins on machines
//! without systemd, where no unit starts the daemon at boot.

use clap::Args;
use portd_api::routes::Cleanup;
use portd_api::{CleanupReport, NameEntry, ReapReport, StartupCleanup};

use super::{print_report, reap};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Unlike `portctl reap`, cleanup first ends the leases whose owner is gone or
that come from another boot, so their orphans are reaped too, and it
forgets the names of projects whose directory is gone (or unused for 90
days). It waits for the reaping (up to the daemon's grace). A daemon cleans
up when it starts; cleanup also reports what that did. In ~/.profile on
machines without systemd:

  command -v portctl >/dev/null && (portctl cleanup >/dev/null 2>&1 &)")]
pub struct CleanupArgs {
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(client: &Client, args: CleanupArgs) -> Result<(), ClientError> {
    print_report(args.json, client.fetch(&Cleanup), describe)
}

/// One summary line, then what `reap` would say about each process; then,
/// if the daemon's own start-up cleanup did anything, the same for it; then
/// the names forgotten.
pub fn describe(report: &CleanupReport) -> String {
    let mut out = format!(
        "kept {}, ended {}, reaped {}, reported {}\n",
        plural(report.kept as usize, "lease", "leases"),
        report.ended,
        plural(report.reap.reaped.len(), "orphan", "orphans"),
        report.reap.reported.len(),
    );
    out.push_str(&reap_details(&report.reap));
    let mut forgotten: Vec<&NameEntry> = report.forgotten.iter().collect();
    if let Some(startup) = report.startup.as_ref().filter(|s| did_something(s)) {
        out.push_str(&format!(
            "when portd started ({}): ended {}, reaped {}, reported {}\n",
            startup.at,
            plural(startup.ended as usize, "lease", "leases"),
            plural(startup.reap.reaped.len(), "orphan", "orphans"),
            startup.reap.reported.len(),
        ));
        out.push_str(&reap_details(&startup.reap));
        forgotten.extend(&startup.forgotten);
    }
    for name in forgotten {
        out.push_str(&format!(
            "forgot name '{}' in {} (port {}, last used {})\n",
            name.name, name.project, name.port, name.last_used
        ));
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn reap_details(report: &ReapReport) -> String {
    if report.reaped.is_empty() && report.reported.is_empty() {
        String::new()
    } else {
        reap::describe(report)
    }
}

fn did_something(startup: &StartupCleanup) -> bool {
    startup.ended > 0
        || !startup.reap.reaped.is_empty()
        || !startup.reap.reported.is_empty()
        || !startup.forgotten.is_empty()
}

#[cfg(test)]
mod tests {
    use portd_api::Signalled;

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
            forgotten: vec![],
            startup: Some(StartupCleanup {
                at: "T0".into(),
                kept: 1,
                ended: 0,
                reap: ReapReport::default(),
                forgotten: vec![],
            }),
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
            ..quiet.clone()
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
        assert!(
            !text.contains("when portd started"),
            "it did nothing: {text}"
        );

        let after_a_start = CleanupReport {
            startup: Some(StartupCleanup {
                at: "T0".into(),
                kept: 0,
                ended: 3,
                reap: busy.reap.clone(),
                forgotten: vec![NameEntry {
                    project: "/gone".into(),
                    name: "api".into(),
                    port: 8000,
                    last_used: "T1".into(),
                    lease_id: None,
                    lease: None,
                }],
            }),
            ..quiet
        };
        let text = describe(&after_a_start);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kept 1 lease, ended 0, reaped 0 orphans, reported 0"
        );
        assert_eq!(
            lines[1],
            "when portd started (T0): ended 3 leases, reaped 1 orphan, reported 0"
        );
        assert!(lines[2].contains("pid 42"), "{text}");
        assert_eq!(
            lines[3],
            "forgot name 'api' in /gone (port 8000, last used T1)"
        );
    }
}
