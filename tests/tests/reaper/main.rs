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
//! - `who`: holders as `who` and GET /v1/ports/{port} report them.

mod kill;
mod orphans;
mod spared;
mod who;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use portd_e2e::{ChildGuard, PortBlock, TestDaemon, output_within, portctl_bin, wait_until};
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

/// A daemon on `block` with a [`GRACE`] reap grace.
fn daemon(block: &PortBlock) -> TestDaemon {
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "500ms"]).launch();
    d
}

/// Runs `portctl ARGS` against `d` (no autostart, untagged).
fn portctl(d: &TestDaemon, args: &[&str]) -> Output {
    output_within(
        Command::new(portctl_bin())
            .args(args)
            .env("PORTD_SOCKET", d.socket())
            .env("PORTD_NO_AUTOSTART", "1")
            .env_remove(portd_api::LEASE_ENV),
        PORTCTL_TIMEOUT,
    )
}

/// Runs `portctl ARGS`, asserts its exit code, and returns stdout as JSON.
#[track_caller]
fn portctl_json(d: &TestDaemon, args: &[&str], code: i32) -> Value {
    let out = portctl(d, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "portctl {args:?}: stdout {stdout}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("portctl {args:?}: stdout is not JSON ({e}): {stdout}"))
}

/// Leases exactly `port` for `owner`; returns the lease id.
#[track_caller]
fn lease(d: &TestDaemon, port: u16, owner: &ChildGuard) -> String {
    let answer = d.post("/v1/leases", &json!({"port": port, "owner": owner.owner()}));
    assert_eq!(answer.status, 201, "lease {port}: {}", answer.body);
    answer.json()["id"]
        .as_str()
        .expect("a lease id")
        .to_string()
}

/// The active lease on `port`, if any.
fn active_lease(d: &TestDaemon, port: u16) -> Option<Value> {
    let answer = d.get(&format!("/v1/leases/{port}"));
    match answer.status {
        200 => Some(answer.json()),
        404 => None,
        other => panic!("GET /v1/leases/{port}: {other} {}", answer.body),
    }
}

/// Waits until lease `id` on `port` has ended.
#[track_caller]
fn wait_lease_ended(d: &TestDaemon, port: u16, id: &str) {
    let ended = wait_until(DEADLINE, || {
        active_lease(d, port).is_none_or(|l| l["id"] != id)
    });
    assert!(
        ended,
        "lease {id} on {port} still active after {DEADLINE:?}"
    );
}

/// Every event of `kind`, oldest first.
fn events(d: &TestDaemon, kind: &str) -> Vec<Value> {
    let answer = d.get("/v1/events");
    assert_eq!(answer.status, 200, "GET /v1/events: {}", answer.body);
    answer.json()["events"]
        .as_array()
        .expect("a list of events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// Waits for the `kind` event about `pid` and returns it.
#[track_caller]
fn wait_event(d: &TestDaemon, kind: &str, pid: u32) -> Value {
    portd_e2e::wait_for(DEADLINE, || {
        events(d, kind).into_iter().find(|e| e["pid"] == pid)
    })
    .unwrap_or_else(|| {
        panic!(
            "no {kind} event for pid {pid} within {DEADLINE:?}: {}",
            d.get("/v1/events").body
        )
    })
}

/// Asserts that the test itself can bind `host:port` (within [`DEADLINE`]:
/// a socket closes as its process exits, but the exit is observed first).
#[track_caller]
fn assert_port_free(host: &str, port: u16) {
    let bound = wait_until(DEADLINE, || TcpListener::bind((host, port)).is_ok());
    assert!(bound, "{host}:{port} still cannot be bound");
}

/// Asserts that `host:port` is still taken.
#[track_caller]
fn assert_port_held(host: &str, port: u16) {
    let err = TcpListener::bind((host, port)).expect_err("the port should still be held");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
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
