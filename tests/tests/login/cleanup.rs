//! The cleanup a login runs: at daemon start (the unit starts portd at
//! login), and on demand with `portctl cleanup` (machines without systemd).
//! Either way, leases whose owner is gone end first, then the orphans of
//! this boot's ended leases are reaped.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;
use portd_e2e::ports::{assert_port_free, assert_port_held};
use portd_e2e::servers::{Listener, Scratch};
use serde_json::json;

use super::*;

#[test]
fn a_daemon_that_starts_reaps_the_server_of_an_owner_that_died_while_it_was_down() {
    let block = PortBlock::reserve();
    let mut d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(1);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();

    assert!(d.stop().success());
    owner.kill9();
    // Nobody watches: the server goes on holding the port.
    assert!(server.procs[0].stays_alive(Duration::from_millis(300)));
    assert_port_held("127.0.0.1", port);

    d.launch();
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the orphan still runs after the daemon started");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    let ended = d.lease_by_id(&id).expect("the lease is in history");
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_eq!(event["port"], port, "{event}");
    assert_port_free("127.0.0.1", port);
}

#[test]
fn portctl_cleanup_reaps_the_server_of_a_released_lease_and_keeps_live_ones() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let (kept_port, port) = (block.port(2), block.port(3));
    let live_owner = ChildGuard::sleep(600);
    let kept = d.lease(kept_port, &live_owner);
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    // Released with keep (nothing is reaped then); a server started after
    // with the ended lease's tag is an orphan that only a sweep finds.
    let released = d.delete(&format!("/v1/leases/{port}?keep=true"));
    assert_eq!(released.status, 200, "{}", released.body);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    assert!(server.procs[0].stays_alive(Duration::from_millis(300)));

    let out = run(cli::portctl(d.socket()).arg("cleanup"));
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
    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_port_free("127.0.0.1", port);
    let kept = d.lease_by_id(&kept).expect("the kept lease is in history");
    assert_eq!(kept["state"], "active", "{kept}");
}

/// `--json` prints the API's body: the counts and every reaped process.
#[test]
fn portctl_cleanup_json_prints_the_report() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(4);
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let released = d.delete(&format!("/v1/leases/{port}?keep=true"));
    assert_eq!(released.status, 200, "{}", released.body);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();

    let body = success(
        &run(cli::portctl(d.socket()).args(["cleanup", "--json"])),
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
    let body = success(
        &run(cli::portctl(d.socket()).args(["cleanup", "--json"])),
        "again",
    );
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["reap"]["reaped"], json!([]), "{again}");
}

/// An orphan that ignores SIGTERM on `port`, tagged with lease `id`; it
/// lives through the whole grace, so sweeps that start meanwhile see it.
fn stubborn_orphan(port: u16, id: &str, scratch: &Scratch) -> portd_e2e::servers::Server {
    Listener::new(port, scratch.path("stubborn"))
        .tagged(id)
        .ignore_sigterm()
        .spawn()
}

/// Where `pid` appears among the processes a report says were reaped.
fn times_reaped(report: &Value, pid: u32) -> usize {
    report["reaped"]
        .as_array()
        .expect("a list of reaped processes")
        .iter()
        .filter(|p| p["pid"] == pid)
        .count()
}

/// Asserts that the history holds exactly one `reaped` event for `pid`.
#[track_caller]
fn assert_reaped_once(d: &TestDaemon, pid: u32) {
    let events: Vec<Value> = d
        .events("reaped")
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .collect();
    assert_eq!(events.len(), 1, "reaped events for pid {pid}: {events:?}");
}

/// Two sweeps that judge one orphan at once: one signals it and reports it,
/// the other waits for that and reports nothing; one `reaped` event.
#[test]
fn two_sweeps_at_once_reap_an_orphan_once_and_count_it_once() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "2s"]).launch();
    let scratch = Scratch::new();
    let port = block.port(5);
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    // Released with keep (so the release itself reaps nothing), then the
    // server starts with the ended lease's tag: an orphan for the sweeps.
    let released = d.delete(&format!("/v1/leases/{port}?keep=true"));
    assert_eq!(released.status, 200, "{}", released.body);
    let mut server = stubborn_orphan(port, &id, &scratch);

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let sweeps: Vec<_> = (0..2)
        .map(|_| {
            let socket = d.socket().to_path_buf();
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                http::request(&socket, "POST", "/v1/reap", Some("{}"))
            })
        })
        .collect();
    let reports: Vec<Value> = sweeps
        .into_iter()
        .map(|sweep| {
            let answer = sweep.join().expect("a sweep thread");
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.json()
        })
        .collect();
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the orphan survived both sweeps");
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    let counted: usize = reports.iter().map(|r| times_reaped(r, server.pid())).sum();
    assert_eq!(
        counted, 1,
        "reported as reaped {counted} times: {reports:?}"
    );
    assert_reaped_once(&d, server.pid());
}

/// `portctl cleanup` right after a start: what the daemon's own cleanup
/// ended and reaped is reported as that (not as "ended 0"), and nothing is
/// done or counted twice.
#[test]
fn a_cleanup_right_after_a_start_reports_what_the_start_did_once() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "2s"]).launch();
    let scratch = Scratch::new();
    let port = block.port(6);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let mut server = stubborn_orphan(port, &id, &scratch);
    assert!(d.stop().success());
    owner.kill9();

    // The start-up cleanup ends the lease and reaps the orphan, which takes
    // the whole 2 s grace; cleanup is asked for at once.
    d.launch();
    let body = success(
        &run(cli::portctl(d.socket()).args(["cleanup", "--json"])),
        "portctl cleanup --json",
    );
    let report: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["ended"], 0, "{report}");
    assert_eq!(times_reaped(&report["reap"], server.pid()), 0, "{report}");
    let startup = &report["startup"];
    assert_eq!(startup["ended"], 1, "{report}");
    assert_eq!(times_reaped(&startup["reap"], server.pid()), 1, "{report}");
    assert!(startup["at"].is_string(), "{report}");
    assert!(
        server.guard.wait_exit(Duration::from_millis(100)).is_some(),
        "cleanup answered before the start-up reaping was over"
    );
    assert_reaped_once(&d, server.pid());
    let ended = d.lease_by_id(&id).expect("the lease is in history");
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");

    // For people: this cleanup's line, then the start's.
    let said = success(&run(cli::portctl(d.socket()).arg("cleanup")), "cleanup");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines[0], "kept 0 leases, ended 0, reaped 0 orphans, reported 0",
        "{said}"
    );
    assert!(
        lines[1].starts_with("when portd started (")
            && lines[1].ends_with("): ended 1 lease, reaped 1 orphan, reported 0"),
        "{said}"
    );
    assert!(
        lines[2].contains(&format!("pid {}", server.pid())) && lines[2].contains("SIGKILL"),
        "{said}"
    );
}
