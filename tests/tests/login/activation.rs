//! Socket activation by systemd's own tool: `systemd-socket-activate -l
//! SOCKET ... portd` binds SOCKET, waits for the first connection, then
//! execs portd (same pid) with the socket as fd 3 and LISTEN_FDS=1. It
//! passes on only PATH, HOME, USER, TERM and what `-E` names.

use std::os::unix::fs::MetadataExt;

use super::*;

/// The sockfs inode of the listening Unix socket bound to `path`, from
/// /proc/net/unix.
fn listening_inode(path: &Path) -> Option<u64> {
    let table = fs::read_to_string("/proc/net/unix").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
        let listening = fields.get(3) == Some(&"00010000");
        (listening && fields.get(7) == Some(&path.to_str()?))
            .then(|| fields[6].parse().ok())
            .flatten()
    })
}

/// The sockfs inode behind `pid`'s file descriptor `fd`.
fn fd_socket_inode(pid: u32, fd: u32) -> Option<u64> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[test]
fn portd_serves_the_socket_systemd_socket_activate_passes_it() {
    let Some(activate) = require_system_tool("systemd-socket-activate", "systemd") else {
        return;
    };
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    let socket = d.socket().to_path_buf();
    let db = d.db().to_path_buf();
    let env = d.activation_env();
    d.launch_with(|portd| {
        let mut cmd = Command::new(&activate);
        cmd.arg("-l")
            .arg(&socket)
            .args(&env)
            .arg(portd.get_program())
            .args(["--range", &block.range().to_string(), "-v"]);
        scrub(&mut cmd);
        cmd
    });
    // launch_with saw health answered by the pid it spawned: the tool
    // exec'd portd in place, as systemd does.
    let pid = d.pid();
    assert_eq!(
        portd_e2e::procs::cmdline(pid)
            .unwrap_or_default()
            .first()
            .map(String::as_str),
        portd_e2e::portd_bin().to_str()
    );

    // The socket portd serves is fd 3, the one the tool bound on SOCKET;
    // portd neither took the lock nor bound a socket of its own.
    let served = listening_inode(&socket).expect("a listening socket on SOCKET");
    assert_eq!(
        fd_socket_inode(pid, 3),
        Some(served),
        "fd 3 is not SOCKET's socket"
    );
    let lock = socket.with_file_name("portd.lock");
    assert!(
        !lock.exists(),
        "portd created {} under activation",
        lock.display()
    );
    let socket_file = fs::symlink_metadata(&socket).unwrap().ino();

    // It serves for real, with the database -E named.
    let status = success(
        &run(cli::portctl(d.socket()).args(["status", "--json"])),
        "status",
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["pid"], pid, "{status}");
    assert_eq!(status["db"], db.to_str().unwrap(), "{status}");
    assert_eq!(status["range"], block.range().to_string(), "{status}");
    let owner = portd_e2e::ChildGuard::sleep(60);
    let port = block.port(5).to_string();
    let leased =
        run(cli::portctl(d.socket()).args(["lease", &port, "--owner", &owner.pid().to_string()]));
    assert_eq!(success(&leased, "lease"), format!("{port}\n"));
    assert!(db.exists(), "no database at {}", db.display());

    // A socket portd did not create is not portd's to remove.
    assert!(d.stop().success(), "portd exits cleanly on SIGTERM");
    let after = fs::symlink_metadata(&socket).expect("the socket file is still there");
    assert_eq!(after.ino(), socket_file, "the socket file was replaced");
}
