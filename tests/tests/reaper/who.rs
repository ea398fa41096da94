//! Who holds a port, as `portctl who PORT --json` and GET /v1/ports/{port}
//! report it: listeners only, the lease a tagged holder belongs to, and
//! suspects (untagged listeners left in a dead owner's session).

use std::process::{Command, Stdio};

use portd_e2e::cli::Gate;
use portd_e2e::servers::{Client, Listener, Strays, in_new_session, wait_pid_file};

use super::*;

#[test]
fn who_lists_listeners_only_with_the_lease_of_tagged_holders() {
    let (block, d, scratch) = setup();
    let port = block.port(0);
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    let client = Client::connect("127.0.0.1", port, &scratch, "client");

    let who = portctl_json(&d, &["who", &port.to_string(), "--json"], 0);
    assert_eq!(who["port"], port, "{who}");
    assert_eq!(who["lease"]["id"], id.as_str(), "{who}");
    assert_eq!(who["free"], false, "{who}");
    assert_eq!(
        pids_in(&who["holders"]),
        [server.pid()],
        "the connected client (pid {}) is no holder: {who}",
        client.proc.pid
    );
    let holder = &who["holders"][0];
    assert_eq!(holder["lease_id"], id.as_str(), "{who}");
    assert_eq!(holder["suspect"], false, "{who}");
    assert_eq!(holder["kind"], "process", "{who}");
    assert_eq!(holder["ppid"], std::process::id(), "{who}");
    assert!(
        holder["cmdline"][0]
            .as_str()
            .unwrap_or_default()
            .contains("python3"),
        "{who}"
    );

    // `--json` prints exactly the API's body.
    let api = d.get(&format!("/v1/ports/{port}"));
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.json(), who);
}

#[test]
fn an_untagged_listener_left_in_a_dead_owners_session_is_a_suspect() {
    let (block, d, scratch) = setup();
    let port = block.port(1);
    // The owner: a shell in its own session that, once it has its lease,
    // starts a server with a plain `&` (untagged) and is then SIGKILLed.
    let listener = Listener::new(port, scratch.path("server"));
    let mut gate = Gate::new(scratch.path("go"));
    let mut shell_cmd = Command::new("bash");
    shell_cmd
        .arg("-c")
        .arg(format!(
            "read go < {}\n{} &\nwait\n",
            gate.path().display(),
            listener.shell_line()
        ))
        .env_remove(portd_api::LEASE_ENV)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut shell = ChildGuard::spawn(in_new_session(&mut shell_cmd));
    let id = d.lease(port, &shell);
    gate.release(1);
    let mut strays = Strays::default();
    let pid = wait_pid_file(&scratch.path("server"), || shell.is_running())[0];
    let server = strays.adopt_pid(pid);
    assert_eq!(
        server.group_and_session().1,
        shell.pid(),
        "the server is in the shell's session"
    );

    shell.kill9();
    d.wait_lease_ended(&id, DEADLINE);
    assert!(server.stays_alive(SETTLE), "a suspect was signalled");

    let who = portctl_json(&d, &["who", &port.to_string(), "--json"], 0);
    assert!(who["lease"].is_null(), "{who}");
    assert_eq!(pids_in(&who["holders"]), [server.pid], "{who}");
    let holder = &who["holders"][0];
    assert_eq!(holder["suspect"], true, "{who}");
    assert!(holder["lease_id"].is_null(), "{who}");
    let out = portctl(&d, &["who", &port.to_string()]);
    assert!(out.stdout.contains("suspect"), "people see it too: {out}");

    let dry = reap(&d, true);
    let reported = reported_not_reaped(&dry, server.pid);
    assert_eq!(reported["suspect"], true, "{dry}");
    assert!(server.is_alive());
    assert_no_events(&d, "reaped");
    assert_port_held("127.0.0.1", port);
}
