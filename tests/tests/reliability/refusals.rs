//! Socket directories that another user could tamper with. The `api`
//! suite covers a second daemon, a symlinked or group/world-open directory,
//! a database that is not SQLite, and the socket's and directory's modes;
//! this adds a directory with the right mode but the wrong owner.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};

use portd_e2e::cli::portctl;
use portd_e2e::skip::{require_root, skip};
use portd_e2e::{PortBlock, output_within, portd_command};

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
