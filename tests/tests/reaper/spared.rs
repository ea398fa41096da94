//! What the reaper must leave running, however its owner ends, and what
//! `portctl reap` (and `--dry-run`) says about it.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use portd_e2e::cli::Gate;
use portd_e2e::servers::{Listener, ProcId, boot_ticks_now, wait_pid_file};

use super::*;

/// After `portctl reap`: `proc` still runs and holds `port`, and nothing was
/// reaped.
#[track_caller]
fn assert_spared(d: &TestDaemon, proc: ProcId, port: u16) {
    assert!(
        proc.stays_alive(SETTLE),
        "`portctl reap` signalled pid {}",
        proc.pid
    );
    assert_no_events(d, "reaped");
    assert_port_held("127.0.0.1", port);
}

#[test]
fn a_tagged_process_that_does_not_listen_and_is_outside_the_group_survives() {
    let (block, d, scratch) = setup();
    let port = block.port(1);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    // The server leads its own group; the editor started from the shell that
    // eval'd the tag leads another.
    let listener = Listener::new(port, scratch.path("server")).tagged(&id);
    let mut server_cmd = listener.command();
    server_cmd.process_group(0);
    let server = listener.spawn_with(server_cmd);
    let editor_guard = ChildGuard::spawn(
        Command::new("sleep")
            .arg("600")
            .env(portd_api::LEASE_ENV, &id)
            .process_group(0),
    );
    let editor = ProcId::of(editor_guard.pid()).expect("the editor runs");

    owner.kill9();
    assert!(server.procs[0].wait_gone(DEADLINE), "the listener survived");
    d.wait_event("reaped", server.pid(), DEADLINE);
    assert!(
        editor.stays_alive(SETTLE),
        "the tagged non-listener was signalled"
    );
    assert!(
        d.events("reaped").iter().all(|e| e["pid"] != editor.pid),
        "{}",
        d.get("/v1/events").body
    );

    let dry = reap(&d, true);
    let reported = reported_not_reaped(&dry, editor.pid);
    assert_eq!(reported["lease_id"], id.as_str(), "{dry}");
    assert_eq!(reported["suspect"], false, "{dry}");
    let reason = reported["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("neither listens"), "{dry}");

    let real = reap(&d, false);
    assert!(about(&real["reaped"], editor.pid).is_empty(), "{real}");
    assert!(editor.is_alive());
}

#[test]
fn an_untagged_holder_is_never_reaped_automatically() {
    let (block, d, scratch) = setup();
    let port = block.port(3);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    // Started by hand, without the tag (the owner and it share the test's
    // session, so it is a suspect: reported, never signalled).
    let server = Listener::new(port, scratch.path("server")).spawn();
    let proc = server.procs[0];

    owner.kill9();
    d.wait_lease_ended(&id, DEADLINE);
    assert!(proc.stays_alive(SETTLE), "an untagged holder was signalled");

    let report = reap(&d, false);
    let reported = reported_not_reaped(&report, proc.pid);
    assert_eq!(reported["suspect"], true, "{report}");
    assert!(reported["lease_id"].is_null(), "{report}");
    assert_spared(&d, proc, port);
}

#[test]
fn a_tagged_orphan_of_another_uid_is_reported_not_reaped() {
    if !portd_e2e::skip::require_root("to run a server as uid 65534") {
        return;
    }
    let (block, d, scratch) = setup();
    let scratch = scratch.open_to_all();
    let port = block.port(5);
    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    let listener = Listener::new(port, scratch.path("server")).tagged(&id);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(listener.argv())
        .env(portd_api::LEASE_ENV, &id)
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = listener.spawn_with(cmd);
    let proc = server.procs[0];
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65534", "65534", "65534", "65534"]
    );

    owner.kill9();
    d.wait_lease_ended(&id, DEADLINE);
    assert!(
        proc.stays_alive(SETTLE),
        "root's lease reaped uid 65534's server"
    );

    let report = reap(&d, false);
    let reported = reported_not_reaped(&report, proc.pid);
    assert_eq!(reported["uid"], 65534, "{report}");
    assert_eq!(reported["lease_id"], id.as_str(), "{report}");
    let reason = reported["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("65534"),
        "the reason names the uid: {report}"
    );
    assert_spared(&d, proc, port);
}

#[test]
fn a_process_tagged_before_the_lease_was_granted_survives() {
    let (block, d, scratch) = setup();
    let port = block.port(7);
    let mut gate = Gate::new(scratch.path("lease-id"));
    let listener = Listener::new(port, scratch.path("server"));
    // Starts now, learns the lease id later, and only then becomes a tagged
    // server: its start time is that of this bash, before the grant.
    let script = format!(
        "read -r ID < {gate}\nexec env PORTD_LEASE=\"$ID\" {line}\n",
        gate = gate.path().display(),
        line = listener.shell_line()
    );
    let mut early = ChildGuard::bash(&script);
    let started = ProcId::of(early.pid()).expect("bash runs");
    // Start times count in clock ticks: grant a whole tick later, so "before"
    // is not decided by rounding.
    assert!(wait_until(DEADLINE, || boot_ticks_now() > started.start_ticks + 1));

    let mut owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    gate.pass(&id);
    let pids = wait_pid_file(&scratch.path("server"), || early.is_running());
    assert_eq!(
        pids,
        [early.pid()],
        "the server runs in the bash that started early"
    );
    assert!(started.is_alive(), "same process, same start time");

    owner.kill9();
    d.wait_lease_ended(&id, DEADLINE);
    assert!(
        started.stays_alive(SETTLE),
        "a process older than the lease was reaped"
    );

    let report = reap(&d, false);
    let reported = reported_not_reaped(&report, started.pid);
    assert_eq!(reported["lease_id"], id.as_str(), "{report}");
    let reason = reported["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("before the lease was granted"), "{report}");
    assert_spared(&d, started, port);
}

#[test]
fn a_dry_run_names_the_orphan_and_changes_nothing() {
    let (block, d, scratch) = setup();
    let port = block.port(9);
    let owner = ChildGuard::sleep(600);
    let id = d.lease(port, &owner);
    // Released with keep, then started with the ended lease's tag: an
    // orphan that nothing reaps until someone asks.
    let released = d.delete(&format!("/v1/leases/{port}?keep=true"));
    assert_eq!(released.status, 200, "{}", released.body);
    let mut server = Listener::new(port, scratch.path("server"))
        .tagged(&id)
        .spawn();
    let proc = server.procs[0];
    let events_before = d.get("/v1/events").json()["events"].clone();

    let dry = reap(&d, true);
    let named = one_about(&dry["reaped"], proc.pid);
    assert_eq!(named["lease_id"], id.as_str(), "{dry}");
    assert_eq!(named["port"], port, "{dry}");
    assert!(
        named["signal"].is_null(),
        "a dry run signals nothing: {dry}"
    );
    assert_eq!(named["exited"], false, "{dry}");
    assert!(proc.stays_alive(SETTLE), "a dry run signalled the orphan");
    assert_eq!(
        d.get("/v1/events").json()["events"],
        events_before,
        "a dry run wrote events"
    );
    assert_port_held("127.0.0.1", port);

    // The orphan it named is a real one: a real run ends it.
    let real = reap(&d, false);
    let reaped = one_about(&real["reaped"], proc.pid);
    assert_eq!(reaped["signal"], "SIGTERM", "{real}");
    assert_eq!(reaped["exited"], true, "{real}");
    assert!(server.guard.wait_exit(DEADLINE).is_some());
    d.wait_event("reaped", proc.pid, DEADLINE);
    assert_port_free("127.0.0.1", port);
}
