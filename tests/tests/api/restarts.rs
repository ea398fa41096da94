//! Leases across daemon restarts: SIGTERM, kill -9, start-up reconcile,
//! and socket activation.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;

use portd_e2e::{output_within, via_bash};

use super::*;

/// A lease outlives its daemon; after the restart a pidfd watches the owner
/// again, so the owner's death still ends the lease.
fn lease_survives_restart(kill9: bool) {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let port = block.port(8);
    let granted = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );

    if kill9 {
        d.kill9();
    } else {
        let status = d.stop();
        assert!(status.success(), "portd exits cleanly on SIGTERM: {status}");
        assert!(!d.socket().exists(), "a clean exit removes the socket");
    }
    d.restart();

    let kept = active_lease(&d, port).expect("the lease survives the restart");
    assert_eq!(kept, granted);

    let watching = wait_until(DEADLINE, || {
        let status = expect(&get(&d, "/v1/status"), 200);
        status["reconciled"] == true && status["counts"]["owners_watched"] == 1
    });
    assert!(
        watching,
        "the restarted daemon does not watch the owner: {}",
        get(&d, "/v1/status").body
    );
    owner.kill9();
    let ended = wait_for_end(&d, port, &granted["id"]);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
}

#[test]
fn a_lease_survives_a_restart_by_sigterm() {
    lease_survives_restart(false);
}

#[test]
fn a_lease_survives_a_restart_by_kill9() {
    lease_survives_restart(true);
}

#[test]
fn start_up_reconcile_ends_leases_whose_owner_died_meanwhile() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let port = block.port(9);
    let granted = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );

    let status = d.stop();
    assert!(status.success(), "{status}");
    owner.kill9();
    d.restart();

    let ended = wait_for_end(&d, port, &granted["id"]);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    assert!(has_event(&d, "owner_died", &granted["id"]));
}

/// Identity is (pid, start time, boot): a lease whose owner pid still runs
/// but started at another time, or whose lease comes from another boot, has
/// a dead owner. Both are simulated by editing the stopped daemon's database.
#[test]
fn start_up_ends_leases_from_another_boot_and_of_reused_pids() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let (first, second) = (ChildGuard::sleep(60), ChildGuard::sleep(60));
    let (p1, p2) = (block.port(17), block.port(18));
    let rebooted = expect(&lease(&d, json!({"port": p1, "owner": first.owner()})), 201);
    let reused = expect(
        &lease(&d, json!({"port": p2, "owner": second.owner()})),
        201,
    );
    assert!(d.stop().success());

    let edit = output_within(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sqlite3, sys\n\
                 db = sqlite3.connect(sys.argv[1])\n\
                 n = db.execute(\"UPDATE leases SET boot_id = 'another-boot' WHERE id = ?\", (sys.argv[2],)).rowcount\n\
                 n += db.execute('UPDATE leases SET owner_start_ticks = owner_start_ticks + 1 WHERE id = ?', (sys.argv[3],)).rowcount\n\
                 db.commit()\n\
                 assert n == 2, n\n",
            )
            .arg(d.db())
            .arg(rebooted["id"].as_str().unwrap())
            .arg(reused["id"].as_str().unwrap()),
        Duration::from_secs(20),
    );
    assert!(
        edit.status.success(),
        "editing the database: {}",
        String::from_utf8_lossy(&edit.stderr)
    );
    d.restart();

    for (port, granted) in [(p1, &rebooted), (p2, &reused)] {
        let ended = wait_for_end(&d, port, &granted["id"]);
        assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    }
    let from_another_boot = events(&d).into_iter().any(|e| {
        e["kind"] == "owner_died"
            && e["lease_id"] == rebooted["id"]
            && e["detail"]
                .as_str()
                .is_some_and(|t| t.contains("another boot"))
    });
    assert!(from_another_boot, "{:?}", events(&d));
}

#[test]
fn a_socket_passed_by_systemd_is_served() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    let listener = UnixListener::bind(d.socket()).unwrap();
    let fd = listener.as_raw_fd();
    d.launch_with(|cmd| {
        let mut wrapped = via_bash(&cmd, "export LISTEN_PID=$$ LISTEN_FDS=1");
        // SAFETY: dup2 and fcntl are async-signal-safe.
        unsafe {
            wrapped.pre_exec(move || {
                use nix::libc;
                let ok = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, 3) == 3
                };
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        wrapped
    });
    // Had it ignored fd 3, it would have found a live socket on its path
    // and exited "already running": health from its pid means it serves ours.
    let owner = ChildGuard::sleep(60);
    expect(
        &lease(&d, json!({"port": block.port(19), "owner": owner.owner()})),
        201,
    );
    assert!(d.stop().success());
}

/// An fd 3 that LISTEN_PID and LISTEN_FDS call ours but that is no Unix
/// stream socket stops the start with what to fix; portd binds nothing of
/// its own in its place.
#[test]
fn a_passed_fd_that_is_not_a_unix_socket_stops_the_start() {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    let mut cmd = via_bash(
        &d.command(),
        "exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1",
    );
    let out = output_within(&mut cmd, EXIT_DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fd 3"), "names the fd: {stderr}");
    assert!(
        stderr.contains("ListenStream="),
        "says what to fix: {stderr}"
    );
    assert!(!d.socket().exists(), "no socket of its own instead");
}

/// LISTEN_FDS without LISTEN_PID (or with another pid) was meant for some
/// other process: portd leaves fd 3 alone and binds its own socket.
#[test]
fn listen_variables_meant_for_another_process_are_ignored() {
    for prelude in [
        "exec 3</dev/null; export LISTEN_FDS=1; unset LISTEN_PID",
        "exec 3</dev/null; export LISTEN_FDS=1 LISTEN_PID=1",
    ] {
        let block = PortBlock::reserve();
        let mut d = TestDaemon::new(block.range());
        d.launch_with(|cmd| via_bash(&cmd, prelude));
        let owner = ChildGuard::sleep(60);
        expect(
            &lease(&d, json!({"port": block.port(2), "owner": owner.owner()})),
            201,
        );
        assert!(d.stop().success(), "{prelude}");
        assert!(
            !d.socket().exists(),
            "its own socket goes at exit: {prelude}"
        );
    }
}

/// SIGHUP (a closed terminal, or `kill -HUP` out of habit) neither stops
/// the daemon nor passes unnoticed: it is logged and ignored.
#[test]
fn a_hangup_is_logged_and_the_daemon_keeps_serving() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(3);
    let granted = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP to portd");
    let logged = wait_until(DEADLINE, || d.log().contains("SIGHUP"));
    assert!(logged, "no word of the SIGHUP in the log:\n{}", d.log());
    d.assert_healthy("SIGHUP");
    assert_eq!(active_lease(&d, port), Some(granted));
    expect(
        &lease(&d, json!({"port": block.port(4), "owner": owner.owner()})),
        201,
    );
}
