//! The reaper end to end (issue 3, item 7): real owners that die, real
//! tagged and untagged servers on real ports, and what a user sees after:
//! which processes are gone, which still run, whether the port binds again,
//! the `reaped` events in GET /v1/events, and what `portctl reap`, `kill`,
//! `lease --kill` and `who` print and exit with.
//!
//! Every test reserves its own block of ports and starts its own daemon with
//! a short reap grace. Processes a test starts indirectly (forked workers,
//! the children of scripts) are recorded and killed when the test ends,
//! whatever the daemon did to them.
//!
//! - `orphans`: what the daemon reaps on its own (owner death, a grant).
//! - `spared`: what it must leave running, and `reap --dry-run`.
//! - `kill`: explicit kills (`portctl kill`, `lease --kill`).
//! - `hangups`: a kill or reap finishes and is recorded when its client
//!   hangs up or the daemon stops during the grace.
//! - `who`: holders as `who` and GET /v1/ports/{port} report them.

mod hangups;
mod kill;
mod orphans;
mod spared;
mod who;

use std::net::TcpListener;
use std::time::Duration;

use portd_e2e::ports::{assert_port_free, assert_port_held};
use portd_e2e::servers::Scratch;
use portd_e2e::{ChildGuard, Done, PortBlock, TestDaemon, cli, finish, wait_until};
use serde_json::{Value, json};

/// The reap grace every test daemon runs with.
const GRACE: Duration = Duration::from_millis(500);
/// How long the daemon may take to notice a death and reap (or to answer).
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a process that must survive is watched after the daemon had
/// every chance to signal it: twice the grace, so a SIGTERM *and* the
/// SIGKILL after it would have landed.
const SETTLE: Duration = Duration::from_millis(1000);
/// The longest a `portctl` call may take.
const PORTCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What every test starts with: a block of ports, a daemon on it with a
/// [`GRACE`] reap grace, and a scratch directory for pid files.
fn setup() -> (PortBlock, TestDaemon, Scratch) {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "500ms"]).launch();
    (block, d, Scratch::new())
}

/// Runs `portctl ARGS` against `d` (no autostart, untagged).
fn portctl(d: &TestDaemon, args: &[&str]) -> Done {
    Done {
        what: format!("portctl {}", args.join(" ")),
        ..finish(cli::portctl(d.socket()).args(args), PORTCTL_TIMEOUT)
    }
}

/// Runs `portctl ARGS`, asserts its exit code, and returns stdout as JSON.
#[track_caller]
fn portctl_json(d: &TestDaemon, args: &[&str], code: i32) -> Value {
    portctl(d, args).expect(code).json()
}

/// `portctl reap --json` (or `--dry-run`): asserts exit 0 and returns the
/// report.
#[track_caller]
fn reap(d: &TestDaemon, dry_run: bool) -> Value {
    let args: &[&str] = if dry_run {
        &["reap", "--dry-run", "--json"]
    } else {
        &["reap", "--json"]
    };
    let report = portctl_json(d, args, 0);
    assert_eq!(report["dry_run"], dry_run, "{report}");
    report
}

/// Asserts that the daemon wrote no `kind` event.
#[track_caller]
fn assert_no_events(d: &TestDaemon, kind: &str) {
    assert!(d.events(kind).is_empty(), "{}", d.get("/v1/events").body);
}

/// The entries of a report list (`reaped`, `reported`, `signalled`, ...)
/// about `pid`.
fn about(list: &Value, pid: u32) -> Vec<Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter(|p| p["pid"] == pid)
        .cloned()
        .collect()
}

/// The one entry of `list` about `pid`.
#[track_caller]
fn one_about(list: &Value, pid: u32) -> Value {
    let found = about(list, pid);
    assert_eq!(found.len(), 1, "expected one entry for pid {pid} in {list}");
    found.into_iter().next().unwrap()
}

/// The entry about `pid` in the `reported` list of a reap report; asserts
/// that it is there once and that `reaped` does not list `pid`.
#[track_caller]
fn reported_not_reaped(report: &Value, pid: u32) -> Value {
    assert!(about(&report["reaped"], pid).is_empty(), "{report}");
    one_about(&report["reported"], pid)
}

/// Pids in a list of holders or signalled processes, sorted.
fn pids_in(list: &Value) -> Vec<u32> {
    let mut pids: Vec<u32> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|p| p["pid"].as_u64().expect("a pid") as u32)
        .collect();
    pids.sort_unstable();
    pids
}

/// True when this host can listen on ::1.
fn has_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}
