//! A kill or a reap, once begun, finishes and is recorded whoever stops
//! waiting for it: the client that asked hangs up during the grace, or the
//! daemon is told to stop. Each listener here survives SIGTERM and notes
//! its arrival, so the test knows the grace has begun; the SIGKILL after
//! the grace ends it, and a `killed` or `reaped` event must say so.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_e2e::http;
use portd_e2e::servers::{Listener, Server};

use super::*;

/// A grace long enough to hang up in, short enough for the suite.
const GRACE_SECS: u64 = 3;

/// A daemon on its own block with a reap grace of `grace_secs`.
fn daemon(grace_secs: u64) -> (PortBlock, TestDaemon, Scratch) {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", &format!("{grace_secs}s")]).launch();
    (block, d, Scratch::new())
}

/// A listener on `port` that survives SIGTERM and notes it in `term`.
fn stubborn(port: u16, scratch: &Scratch, tag: Option<&str>) -> Server {
    let mut listener =
        Listener::new(port, scratch.path("server")).note_sigterm(scratch.path("term"));
    if let Some(tag) = tag {
        listener = listener.tagged(tag);
    }
    listener.spawn()
}

/// Sends `POST path` with `body` on a connection of its own and hangs up as
/// soon as the listener has had its SIGTERM, i.e. during the grace.
fn ask_and_hang_up(d: &TestDaemon, path: &str, body: Option<&str>, scratch: &Scratch) {
    let mut stream = UnixStream::connect(d.socket()).expect("connect");
    stream
        .write_all(&http::request_bytes("POST", path, body.map(str::as_bytes)))
        .expect("send the request");
    let began = wait_until(DEADLINE, || scratch.read("term").contains("TERM"));
    assert!(began, "POST {path}: no SIGTERM reached the listener");
    drop(stream);
}

/// The listener ends by SIGKILL after the grace, and `kind` records it.
#[track_caller]
fn assert_killed_and_recorded(d: &TestDaemon, server: &mut Server, kind: &str) {
    let pid = server.pid();
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the listener outlived the grace");
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    let event = d.wait_event(kind, pid, DEADLINE);
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("SIGKILL ended it"), "{event}");
}

#[test]
fn a_kill_is_recorded_when_its_client_hangs_up_during_the_grace() {
    let (block, d, scratch) = daemon(1);
    let port = block.port(0);
    let mut server = stubborn(port, &scratch, None);
    let body = json!({"grace": GRACE_SECS}).to_string();
    ask_and_hang_up(&d, &format!("/v1/ports/{port}/kill"), Some(&body), &scratch);
    assert_killed_and_recorded(&d, &mut server, "killed");
}

#[test]
fn a_lease_kill_is_recorded_when_its_client_hangs_up_during_the_grace() {
    let (block, d, scratch) = daemon(GRACE_SECS);
    let port = block.port(1);
    let mut server = stubborn(port, &scratch, None);
    let owner = ChildGuard::sleep(600);
    let body = json!({"port": port, "kill": true, "owner": owner.owner()}).to_string();
    ask_and_hang_up(&d, "/v1/leases", Some(&body), &scratch);
    assert_killed_and_recorded(&d, &mut server, "killed");
}

/// A released lease's tagged listener is an orphan that only a reap (or a
/// cleanup) ends.
fn released_orphan(d: &TestDaemon, port: u16, scratch: &Scratch) -> (Server, ChildGuard) {
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let server = stubborn(port, scratch, Some(&id));
    let released = d.delete(&format!("/v1/leases/{port}"));
    assert_eq!(released.status, 200, "{}", released.body);
    (server, owner)
}

#[test]
fn a_reap_is_recorded_when_its_client_hangs_up_during_the_grace() {
    let (block, d, scratch) = daemon(GRACE_SECS);
    let port = block.port(2);
    let (mut server, _owner) = released_orphan(&d, port, &scratch);
    ask_and_hang_up(&d, "/v1/reap", Some("{}"), &scratch);
    assert_killed_and_recorded(&d, &mut server, "reaped");
}

#[test]
fn a_cleanup_is_recorded_when_its_client_hangs_up_during_the_grace() {
    let (block, d, scratch) = daemon(GRACE_SECS);
    let port = block.port(3);
    let (mut server, _owner) = released_orphan(&d, port, &scratch);
    ask_and_hang_up(&d, "/v1/cleanup", None, &scratch);
    assert_killed_and_recorded(&d, &mut server, "reaped");
}

/// A grace longer than the daemon's 10 s wait for open connections at
/// shutdown: the stopping daemon must still finish the kill and write its
/// event before it closes the database.
#[test]
fn a_kill_under_way_when_the_daemon_stops_is_finished_and_recorded() {
    const LONGER_THAN_THE_DRAIN_SECS: u64 = 11;
    let (block, mut d, scratch) = daemon(1);
    let port = block.port(4);
    let mut server = stubborn(port, &scratch, None);
    let mut stream = UnixStream::connect(d.socket()).expect("connect");
    let body = json!({"grace": LONGER_THAN_THE_DRAIN_SECS}).to_string();
    stream
        .write_all(&http::request_bytes(
            "POST",
            &format!("/v1/ports/{port}/kill"),
            Some(body.as_bytes()),
        ))
        .expect("send the kill");
    assert!(
        wait_until(DEADLINE, || scratch.read("term").contains("TERM")),
        "no SIGTERM reached the listener"
    );
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGTERM).expect("SIGTERM to portd");
    let stop_deadline = Duration::from_secs(LONGER_THAN_THE_DRAIN_SECS + 20);
    assert!(
        wait_until(stop_deadline, || !d.is_running()),
        "portd still runs {stop_deadline:?} after SIGTERM"
    );
    drop(stream);
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the listener outlived the grace");
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    d.launch();
    let event = d.wait_event("killed", server.pid(), DEADLINE);
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("SIGKILL ended it"), "{event}");
}
