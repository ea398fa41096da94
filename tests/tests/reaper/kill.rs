//! Explicit kills: `portctl kill PORT` and `portctl lease PORT --kill` end
//! the port's listeners (tagged or not), never its clients, and never take a
//! port another live owner leases.

use std::process::Command;

use portd_e2e::portctl_bin;
use portd_e2e::servers::{Client, Listener, python};

use super::*;

#[test]
fn kill_ends_the_listener_and_spares_a_connected_client() {
    let (block, d, scratch) = setup();
    let port = block.port(0);
    let mut server = Listener::new(port, scratch.path("server")).spawn();
    let client = Client::connect("127.0.0.1", port, &scratch, "client");

    let report = portctl_json(&d, &["kill", &port.to_string(), "--json"], 0);
    assert_eq!(pids_in(&report["signalled"]), [server.pid()], "{report}");
    let signalled = one_about(&report["signalled"], server.pid());
    assert_eq!(signalled["signal"], "SIGTERM", "{report}");
    assert_eq!(signalled["exited"], true, "{report}");
    assert_eq!(report["skipped"], json!([]), "{report}");
    assert_eq!(report["free"], true, "{report}");

    assert!(
        server.guard.wait_exit(DEADLINE).is_some(),
        "the listener survived"
    );
    assert!(
        client.proc.stays_alive(SETTLE),
        "the connected client was signalled"
    );
    let killed = d.wait_event("killed", server.pid(), DEADLINE);
    assert!(
        d.events("killed")
            .iter()
            .all(|e| e["pid"] != client.proc.pid),
        "{killed}"
    );
    assert_port_free("127.0.0.1", port);
}

#[test]
fn kill_exits_4_when_nothing_listens() {
    let (block, d, _scratch) = setup();
    let port = block.port(1);
    let out = portctl(&d, &["kill", &port.to_string()]);
    out.expect(4);
    assert!(out.stderr.contains("nothing listens"), "{out}");
    assert_no_events(&d, "killed");
}

#[test]
fn kill_sends_the_signal_asked_for() {
    let (block, d, scratch) = setup();
    let port = block.port(2);
    let log = scratch.path("signals");
    let mut server = Listener::new(port, scratch.path("server"))
        .log_signals(&log)
        .spawn();

    let report = portctl_json(
        &d,
        &["kill", &port.to_string(), "--signal", "INT", "--json"],
        0,
    );
    let signalled = one_about(&report["signalled"], server.pid());
    assert_eq!(signalled["signal"], "SIGINT", "{report}");
    assert_eq!(signalled["exited"], true, "{report}");
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the listener survived");
    assert_eq!(
        status.code(),
        Some(0),
        "it ended through its handler: {status:?}"
    );
    assert_eq!(
        scratch.read("signals"),
        "SIGINT\n",
        "the server saw SIGINT only"
    );
    assert_port_free("127.0.0.1", port);
}

#[test]
fn lease_kill_frees_a_port_held_by_our_untagged_process_and_leases_it() {
    let (block, d, scratch) = setup();
    let port = block.port(3);
    let mut server = Listener::new(port, scratch.path("server")).spawn();
    let owner = ChildGuard::sleep(600);

    // Without --kill the port is taken.
    let owner_pid = owner.pid().to_string();
    portctl(&d, &["lease", &port.to_string(), "--owner", &owner_pid]).expect(3);
    assert!(server.guard.is_running());

    let out = portctl(
        &d,
        &["lease", &port.to_string(), "--kill", "--owner", &owner_pid],
    );
    out.expect(0);
    assert_eq!(out.stdout, format!("{port}\n"), "{out}");
    assert!(
        server.guard.wait_exit(DEADLINE).is_some(),
        "the holder survived"
    );
    d.wait_event("killed", server.pid(), DEADLINE);
    let lease = d.active_lease(port).expect("the port is leased");
    assert_eq!(lease["owner"]["pid"], owner.pid(), "{lease}");
}

#[test]
fn lease_kill_never_takes_another_live_owners_lease() {
    let (block, d, scratch) = setup();
    let port = block.port(4);
    let holder = ChildGuard::sleep(600);
    let id = d.lease(port, &holder);
    let server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    let intruder = ChildGuard::sleep(600);

    let out = portctl(
        &d,
        &[
            "lease",
            &port.to_string(),
            "--kill",
            "--owner",
            &intruder.pid().to_string(),
        ],
    );
    out.expect(3);
    assert!(out.stdout.is_empty(), "no port on stdout: {out}");
    let lease = d.active_lease(port).expect("the live owner's lease");
    assert_eq!(lease["id"], id.as_str(), "{lease}");
    assert_eq!(lease["owner"]["pid"], holder.pid(), "{lease}");
    assert!(
        server.procs[0].stays_alive(SETTLE),
        "its server was signalled"
    );
    assert_no_events(&d, "killed");
    assert_port_held("127.0.0.1", port);
}

#[test]
fn kill_never_signals_its_caller_or_the_callers_ancestors() {
    let (block, d, _scratch) = setup();
    let port = block.port(6);
    // A server that itself runs `bash -c 'portctl kill PORT'`: the listener
    // is portctl's grandparent.
    let script = r#"
import socket, subprocess, sys
port, portctl = int(sys.argv[1]), sys.argv[2]
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(16)
done = subprocess.run(["bash", "-c", '"$0" kill "$1" --json; exit $?', portctl, str(port)])
sys.exit(done.returncode)
"#;
    let out = finish(
        Command::new(python())
            .args(["-c", script, &port.to_string()])
            .arg(portctl_bin())
            .env("PORTD_SOCKET", d.socket())
            .env("PORTD_NO_AUTOSTART", "1")
            .env_remove(portd_api::LEASE_ENV),
        PORTCTL_TIMEOUT,
    );
    out.expect(5);
    let body = out.json();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let skipped = &body["error"]["skipped"];
    assert_eq!(skipped.as_array().map(Vec::len), Some(1), "{body}");
    let reason = skipped[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("protected"), "{body}");
    assert_no_events(&d, "killed");
}

/// A grace longer than the daemon's 60 s request timeout could not be
/// answered with its result, so the daemon refuses it up front (at most
/// 50 s): exit 2 and nothing signalled.
#[test]
fn a_kill_grace_longer_than_the_request_timeout_is_refused() {
    let (block, d, scratch) = setup();
    let port = block.port(5);
    let mut server = Listener::new(port, scratch.path("server"))
        .ignore_sigterm()
        .spawn();
    let out = portctl(&d, &["kill", &port.to_string(), "--grace", "61s", "--json"]);
    out.expect(2);
    assert!(server.guard.is_running(), "refused, yet signalled: {out}");
    assert_no_events(&d, "killed");
}
