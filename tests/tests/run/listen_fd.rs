//! `portctl run --listen-fd`: portctl binds the leased port and passes the
//! listening socket as fd 3 with systemd's LISTEN_* variables, and keeps no
//! copy of it.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;

use portd_e2e::via_bash;

use super::*;

/// The socket inodes among `pid`'s open fds (`socket:[INODE]` links).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let dir = format!("/proc/{pid}/fd");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_string();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn the_command_gets_the_listening_socket_as_fd_3() {
    command_gets_the_socket_as_fd_3(false);
}

#[test]
fn the_socket_takes_the_place_of_an_fd_3_that_portctl_inherited() {
    command_gets_the_socket_as_fd_3(true);
}

fn command_gets_the_socket_as_fd_3(fd_3_open: bool) {
    let (block, d, scratch, dir) = setup();
    let port = block.port(7);
    let mut gate = Gate::new(scratch.path("gate"));
    let probe = Probe::new(&scratch, "web").listen_fd().gate(&gate);
    let mut cmd = run_probe(
        &d,
        &dir,
        &["--name", "web", "--port", &port.to_string(), "--listen-fd"],
        &probe,
        &[],
    );
    if fd_3_open {
        // As under bats, or after a shell's `exec 3<`.
        let dir = cmd.get_current_dir().map(Path::to_path_buf);
        cmd = via_bash(&cmd, "exec 3</dev/null");
        cmd.current_dir(dir.expect("run_probe sets the directory"));
    }
    let mut run = Running::start(cmd, &probe, &scratch, "web");
    if fd_3_open {
        let fd_3 = fs::read_link(format!("/proc/{}/fd/3", run.pid()));
        assert_eq!(
            fd_3.ok().as_deref(),
            Some(Path::new("/dev/null")),
            "sanity: portctl's own fd 3 is the one it inherited"
        );
    }
    let facts = &run.facts;

    assert_eq!(run.port(), port);
    assert_eq!(facts["fd3"]["port"], port, "fd 3 is bound to the port");
    assert_eq!(facts["fd3"]["listening"], 1, "fd 3 listens");
    assert_eq!(env_of(facts, "LISTEN_FDS"), "1");
    assert_eq!(
        env_of(facts, "LISTEN_PID"),
        run.child.pid.to_string(),
        "LISTEN_PID is the command's own pid"
    );
    assert_eq!(env_of(facts, "LISTEN_FDNAMES"), "web");
    assert_eq!(
        facts["ppid"],
        run.pid(),
        "the shim became the command: portctl's child"
    );

    // The socket accepts a connection the test makes, and the command is
    // the one that answers it.
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the port");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the command's greeting");
    assert_eq!(line, "hello from fd 3\n");

    // portctl closed its own copy: no fd of it is that socket.
    let inode = facts["fd3"]["inode"].as_u64().expect("an inode");
    assert!(
        socket_inodes(run.child.pid).contains(&inode),
        "sanity: the command's fd 3 is socket:[{inode}]"
    );
    assert!(
        !socket_inodes(run.pid()).contains(&inode),
        "portctl still holds the listening socket socket:[{inode}]"
    );

    gate.release(1);
    assert_eq!(run.wait_exit().code(), Some(0));
    assert_released(&d, &run.lease_id());
    assert_port_free("127.0.0.1", port);
}
