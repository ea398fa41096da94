//! Another uid. The `api` suite covers a second daemon, a symlinked or
//! group/world-open directory, a database that is not SQLite, and the
//! socket's and directory's modes; this adds a directory with the right mode
//! but the wrong owner, and a client of one uid asking a daemon of its own
//! uid to act on another uid's processes and leases.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portd_e2e::cli::portctl;
use portd_e2e::servers::{Listener, Scratch};
use portd_e2e::skip::{require_root, require_system_tool, skip};
use portd_e2e::{
    ChildGuard, PortBlock, TestDaemon, output_within, portctl_bin, portd_bin, portd_command,
    wrapped_running,
};

use super::DEADLINE;

/// `nobody`: a uid that is not the test's.
const OTHER_UID: u32 = 65534;

#[test]
fn a_socket_directory_owned_by_another_uid_is_refused_by_daemon_and_client() {
    let me = nix::unistd::geteuid().as_raw();
    if me == OTHER_UID {
        return skip(&format!("the test runs as uid {OTHER_UID} itself"));
    }
    if !require_root(&format!("to chown a directory to uid {OTHER_UID}")) {
        return;
    }
    let block = PortBlock::reserve();
    let tmp = tempfile::Builder::new()
        .prefix("portd-e2e.")
        .tempdir_in("/tmp")
        .unwrap();
    let theirs = tmp.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let socket = theirs.join("portd.sock");

    let out = output_within(
        &mut portd_command(&socket, &tmp.path().join("portd.db"), block.range()),
        DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "portd must refuse: {stderr}");
    assert!(
        stderr.contains(&theirs.display().to_string()) && stderr.contains("owned by uid 65534"),
        "names the directory and its owner: {stderr}"
    );
    assert!(
        fs::read_dir(&theirs).unwrap().next().is_none(),
        "nothing was created in the other user's directory"
    );

    // The client will not talk through it either (a daemon planted there
    // could be anyone's).
    let out = output_within(portctl(&socket).arg("status"), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "portctl must refuse: {stderr}");
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
}

/// `setpriv` as `OTHER_UID`, running `program` (copied where that uid may
/// execute it) with `cmd`'s arguments and environment.
fn as_other_uid(cmd: &Command, program: &Path) -> Command {
    let args = [
        format!("--reuid={OTHER_UID}"),
        format!("--regid={OTHER_UID}"),
        "--clear-groups".to_string(),
        "--".to_string(),
    ];
    wrapped_running("setpriv", &args.map(OsString::from), program, cmd)
}

/// A copy of `binary` in `dir` that every uid may run (the build directory
/// may sit under a home only its owner can enter).
fn runnable_by_all(binary: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join(binary.file_name().expect("a file name"));
    fs::copy(binary, &copy).expect("copy the binary");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Against a daemon of its own uid, a client may not lease ports for a
/// process of another uid, release another uid's lease, or kill another
/// uid's server: 403, exit 5, nothing changed.
#[test]
fn a_client_may_not_lease_for_release_or_kill_what_another_uid_owns() {
    if !require_root(&format!("to run a daemon and clients as uid {OTHER_UID}")) {
        return;
    }
    if require_system_tool("setpriv", "util-linux").is_none() {
        return;
    }
    let block = PortBlock::reserve();
    let scratch = Scratch::new().open_to_all();
    let portd = runnable_by_all(&portd_bin(), &scratch.path(""));
    let portctl_copy = runnable_by_all(&portctl_bin(), &scratch.path(""));
    let mut d = TestDaemon::new(block.range());
    chown(d.dir(), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    d.launch_with(|cmd| as_other_uid(&cmd, &portd));

    let client = |args: &[&str]| {
        let mut cmd = portctl(d.socket());
        cmd.args(args).current_dir("/");
        output_within(&mut as_other_uid(&cmd, &portctl_copy), DEADLINE)
    };
    let refused = |out: &std::process::Output, what: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{what}: {stderr}");
        stderr.into_owned()
    };

    // Leasing for root's process.
    let root_owner = ChildGuard::sleep(600);
    let (mine, leased, served) = (block.port(1), block.port(2), block.port(3));
    let out = client(&[
        "lease",
        &mine.to_string(),
        "--owner",
        &root_owner.pid().to_string(),
    ]);
    let said = refused(&out, "lease --owner");
    assert!(
        said.contains("uid 0") && said.contains(&format!("uid {OTHER_UID}")),
        "{said}"
    );
    assert!(d.active_lease(mine).is_none(), "leased anyway");

    // Releasing root's lease (root may lease through any daemon it reaches).
    let id = d.lease(leased, &root_owner);
    let said = refused(&client(&["release", &leased.to_string()]), "release");
    assert!(
        said.contains(&format!("uid {OTHER_UID} may not release")),
        "{said}"
    );
    assert_eq!(
        d.active_lease(leased).map(|l| l["id"].clone()),
        Some(id.into())
    );

    // Killing root's server.
    let mut server = Listener::new(served, scratch.path("server")).spawn();
    let said = refused(&client(&["kill", &served.to_string()]), "kill");
    // A daemon of another uid may not even read root's fds to find it.
    assert!(
        said.contains("belongs to uid 0") || said.contains("cannot be seen from here"),
        "{said}"
    );
    assert!(server.procs[0].stays_alive(Duration::from_millis(300)));
    assert!(server.guard.is_running());
}
