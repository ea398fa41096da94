//! What the daemon reaps on its own: the orphans of a lease whose owner was
//! SIGKILLed, and the orphan that holds a port a new grant asks for.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::signal::Signal;
use portd_e2e::servers::{Listener, ProcId, Strays, in_new_session, wait_pid_file};

use super::*;

#[test]
fn the_orphan_of_a_killed_owner_is_reaped_and_its_port_binds_again() {
    let (block, d, scratch) = setup();
    let port = block.port(2);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    assert_port_held("127.0.0.1", port);

    owner.kill9();
    d.wait_lease_ended(&id, DEADLINE);
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the orphan still runs after its owner died");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");

    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_eq!(event["port"], port, "{event}");
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("SIGTERM"), "{event}");
    assert!(
        detail.contains("python3"),
        "the detail names the command: {event}"
    );
    assert_port_free("127.0.0.1", port);
}

#[test]
fn a_reloader_and_its_worker_sharing_the_socket_both_go() {
    let (block, d, scratch) = setup();
    let host = if has_ipv6_loopback() {
        "::1"
    } else {
        "127.0.0.1"
    };
    let port = block.port(4);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let server = Listener::new(port, scratch.path("server"))
        .host(host)
        .tagged(&id)
        .fork()
        .spawn();
    let [reloader, worker] = server.procs[..] else {
        panic!("expected a reloader and a worker: {:?}", server.procs);
    };

    // Both hold the listening socket, both carry the lease.
    let who = portctl_json(&d, &["who", &port.to_string(), "--json"], 0);
    let mut expected = vec![reloader.pid, worker.pid];
    expected.sort_unstable();
    assert_eq!(pids_in(&who["holders"]), expected, "{who}");
    for holder in who["holders"].as_array().unwrap() {
        assert_eq!(holder["lease_id"], id.as_str(), "{who}");
    }

    owner.kill9();
    for proc in [reloader, worker] {
        assert!(proc.wait_gone(DEADLINE), "pid {} survived", proc.pid);
        let event = d.wait_event("reaped", proc.pid, DEADLINE);
        assert_eq!(event["lease_id"], id.as_str(), "{event}");
    }
    assert_port_free(host, port);
}

#[test]
fn the_whole_process_group_of_a_tagged_listener_goes() {
    let (block, d, scratch) = setup();
    let port = block.port(6);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);

    // npm -> node (listens) + esbuild (does not): a tagged bash leads its own
    // group, with a listening child and a non-listening one.
    let listener = Listener::new(port, scratch.path("listener"));
    let sleeper_file = scratch.path("sleeper");
    let script = format!(
        "{} &\nsleep 600 &\necho $! > {file}.tmp && mv {file}.tmp {file}\nwait\n",
        listener.shell_line(),
        file = sleeper_file.display()
    );
    let mut leader_cmd = Command::new("bash");
    leader_cmd
        .arg("-c")
        .arg(script)
        .env(portd_api::LEASE_ENV, &id)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut leader = ChildGuard::spawn(in_new_session(&mut leader_cmd));
    let mut strays = Strays::default();
    let listener_pid = wait_pid_file(&scratch.path("listener"), || leader.is_running())[0];
    let server = strays.adopt_pid(listener_pid);
    let sleeper_pid = wait_pid_file(&sleeper_file, || leader.is_running())[0];
    let sleeper = strays.adopt_pid(sleeper_pid);
    let bash = ProcId::of(leader.pid()).expect("the leader runs");
    for proc in [bash, server, sleeper] {
        assert_eq!(
            proc.group_and_session().0,
            bash.pid,
            "pid {} is in the leader's group",
            proc.pid
        );
    }

    owner.kill9();
    for proc in [server, sleeper, bash] {
        assert!(proc.wait_gone(DEADLINE), "pid {} survived", proc.pid);
        let event = d.wait_event("reaped", proc.pid, DEADLINE);
        assert_eq!(event["lease_id"], id.as_str(), "{event}");
    }
    assert_port_free("127.0.0.1", port);
}

#[test]
fn an_orphan_that_ignores_sigterm_is_sigkilled_after_the_grace() {
    let (block, d, scratch) = setup();
    let port = block.port(8);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .ignore_sigterm()
        .spawn();

    let killed_at = Instant::now();
    owner.kill9();
    let status = server
        .guard
        .wait_exit(DEADLINE)
        .expect("the orphan still runs");
    let took = killed_at.elapsed();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    assert!(
        took >= GRACE,
        "SIGKILL came {took:?} after the owner died, before the grace"
    );

    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("SIGKILL"),
        "the event names SIGKILL: {event}"
    );
    assert_port_free("127.0.0.1", port);
}

#[test]
fn a_grant_of_a_port_held_by_an_orphan_of_an_ended_lease_reaps_it_and_succeeds() {
    let (block, d, scratch) = setup();
    let port = block.port(10);
    let first_owner = ChildGuard::sleep(600);
    let old = d.lease(port, &first_owner);
    // Released with keep, so nothing is reaped then; a server started after
    // with the ended lease's tag (a script that started it again) is an
    // orphan that nothing has reaped yet.
    let released = d.delete(&format!("/v1/leases/{port}?keep=true"));
    assert_eq!(released.status, 200, "{}", released.body);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&old)
        .spawn();

    let next_owner = ChildGuard::sleep(600);
    let out = portctl(
        &d,
        &[
            "lease",
            &port.to_string(),
            "--owner",
            &next_owner.pid().to_string(),
        ],
    );
    out.expect(0);
    assert_eq!(out.stdout, format!("{port}\n"), "{out}");

    assert!(
        server.procs[0].wait_gone(DEADLINE),
        "the orphan survived the grant"
    );
    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    assert_eq!(event["lease_id"], old.as_str(), "{event}");
    let lease = d.active_lease(port).expect("the new lease is active");
    assert_eq!(lease["owner"]["pid"], next_owner.pid(), "{lease}");
    assert_ne!(lease["id"], old.as_str());
    assert!(server.guard.wait_exit(DEADLINE).is_some());
    assert_port_free("127.0.0.1", port);
}

#[test]
fn an_orphan_whose_owner_died_while_the_daemon_was_down_is_reaped_at_start_up() {
    let (block, mut d, scratch) = setup();
    let port = block.port(12);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();

    d.kill9();
    owner.kill9();
    assert!(
        server.procs[0].stays_alive(SETTLE),
        "nothing reaps while portd is down"
    );
    d.launch();
    assert!(
        server.guard.wait_exit(DEADLINE).is_some(),
        "the start-up sweep left the orphan"
    );
    let event = d.wait_event("reaped", server.pid(), DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    let ended = d.lease_by_id(&id).expect("the lease is in history");
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    assert_port_free("127.0.0.1", port);
}
