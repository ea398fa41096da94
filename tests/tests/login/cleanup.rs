//! The cleanup a login runs: at daemon start (the unit starts portd at
//! login), and on demand with `portctl cleanup` (machines without systemd).
//! Either way, leases whose owner is gone end first, then the orphans of
//! this boot's ended leases are reaped.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;
use portd_e2e::ChildGuard;
use portd_e2e::servers::{Listener, Scratch};
use serde_json::json;

use super::*;

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

/// Asserts that 127.0.0.1:`port` is taken.
#[track_caller]
fn assert_port_held(port: u16) {
    let err =
        std::net::TcpListener::bind(("127.0.0.1", port)).expect_err("the port should be held");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

#[test]
fn a_daemon_that_starts_reaps_the_server_of_an_owner_that_died_while_it_was_down() {
    let block = PortBlock::reserve();
    let mut d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(1);
    let mut owner = ChildGuard::sleep(600);
    let id = lease(&d, port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();

    assert!(d.stop().success());
    owner.kill9();
    // Nobody watches: the server goes on holding the port.
    assert!(server.procs[0].stays_alive(Duration::from_millis(300)));
    assert_port_held(port);

    d.launch();
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the orphan still runs after the daemon started");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    let ended = lease_by_id(&d, &id);
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    let event = wait_event(&d, "reaped", server.pid());
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_eq!(event["port"], port, "{event}");
    assert_port_free(port);
}

#[test]
fn portctl_cleanup_reaps_the_server_of_a_released_lease_and_keeps_live_ones() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let (kept_port, port) = (block.port(2), block.port(3));
    let live_owner = ChildGuard::sleep(600);
    let kept = lease(&d, kept_port, &live_owner);
    let owner = ChildGuard::sleep(600);
    let id = lease(&d, port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    // A release ends the lease and reaps nothing: the server stays.
    let released = d.delete(&format!("/v1/leases/{port}"));
    assert_eq!(released.status, 200, "{}", released.body);
    assert!(server.procs[0].stays_alive(Duration::from_millis(300)));

    let out = run(portctl_at(&d).arg("cleanup"));
    let said = success(&out, "portctl cleanup");
    let mut lines = said.lines();
    assert_eq!(
        lines.next(),
        Some("kept 1 lease, ended 0, reaped 1 orphan, reported 0"),
        "{said}"
    );
    let detail = lines.next().unwrap_or_default();
    assert!(
        detail.contains(&format!("port {port}"))
            && detail.contains(&format!("pid {}", server.pid()))
            && detail.contains("reaped (SIGTERM)"),
        "{said}"
    );
    // cleanup waited for the reaping: the server is gone when it returns.
    assert!(server.guard.wait_exit(Duration::from_millis(100)).is_some());
    let event = wait_event(&d, "reaped", server.pid());
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_port_free(port);
    assert_eq!(lease_by_id(&d, &kept)["state"], "active");
}

/// `--json` prints the API's body: the counts and every reaped process.
#[test]
fn portctl_cleanup_json_prints_the_report() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(4);
    let owner = ChildGuard::sleep(600);
    let id = lease(&d, port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    let released = d.delete(&format!("/v1/leases/{port}"));
    assert_eq!(released.status, 200, "{}", released.body);

    let body = success(
        &run(portctl_at(&d).args(["cleanup", "--json"])),
        "portctl cleanup --json",
    );
    let report: Value = serde_json::from_str(&body).expect("cleanup --json prints JSON");
    assert_eq!(report["kept"], 0, "{report}");
    assert_eq!(report["ended"], 0, "{report}");
    assert_eq!(report["reap"]["dry_run"], false, "{report}");
    assert_eq!(report["reap"]["reported"], json!([]), "{report}");
    let reaped = report["reap"]["reaped"].as_array().expect("a list");
    assert_eq!(reaped.len(), 1, "{report}");
    assert_eq!(reaped[0]["pid"], server.pid(), "{report}");
    assert_eq!(reaped[0]["lease_id"], id.as_str(), "{report}");
    assert_eq!(reaped[0]["exited"], true, "{report}");
    assert!(server.guard.wait_exit(Duration::from_millis(100)).is_some());

    // Nothing left to do: a second cleanup reaps nothing.
    let body = success(&run(portctl_at(&d).args(["cleanup", "--json"])), "again");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["reap"]["reaped"], json!([]), "{again}");
}
