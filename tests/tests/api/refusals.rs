//! Start-ups the daemon must refuse: a second daemon, unsafe socket
//! directories, a file that is not a database, bad flags.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use portd_e2e::{output_within, portd_command};

use super::*;

#[test]
fn a_second_daemon_on_the_same_socket_exits_saying_already_running() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());

    let meta = fs::symlink_metadata(d.socket()).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600, "socket mode {:o}", meta.mode());
    let dir = fs::symlink_metadata(d.dir()).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700, "directory mode {:o}", dir.mode());

    let other_db = d.dir().join("other.db");
    let second = output_within(
        &mut portd_command(d.socket(), &other_db, block.range()),
        EXIT_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second daemon must not run: {stderr}"
    );
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(
        stderr.contains(&d.pid().to_string()),
        "names the running pid: {stderr}"
    );

    d.assert_healthy("a second daemon's attempt");
    assert!(d.socket().exists(), "the first daemon keeps its socket");
}

/// Runs a daemon on `socket` expecting it to refuse; returns its stderr.
pub(super) fn refused_start(socket: &Path, db: &Path, block: &PortBlock) -> String {
    let out = output_within(&mut portd_command(socket, db, block.range()), EXIT_DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "portd must refuse to start: {stderr}"
    );
    stderr
}

#[test]
fn a_socket_directory_that_is_a_symlink_is_refused() {
    let block = PortBlock::reserve();
    let tmp = tempfile::Builder::new()
        .prefix("portd-e2e.")
        .tempdir_in("/tmp")
        .unwrap();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    symlink(&real, &link).unwrap();

    let stderr = refused_start(
        &link.join("portd.sock"),
        &tmp.path().join("portd.db"),
        &block,
    );
    assert!(stderr.contains(&link.display().to_string()), "{stderr}");
    assert!(
        !real.join("portd.sock").exists(),
        "no socket behind the symlink"
    );
}

#[test]
fn a_socket_directory_open_to_others_is_refused() {
    let block = PortBlock::reserve();
    let tmp = tempfile::Builder::new()
        .prefix("portd-e2e.")
        .tempdir_in("/tmp")
        .unwrap();
    let open = tmp.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();

    let stderr = refused_start(
        &open.join("portd.sock"),
        &tmp.path().join("portd.db"),
        &block,
    );
    assert!(stderr.contains(&open.display().to_string()), "{stderr}");
    assert!(
        !open.join("portd.sock").exists(),
        "no socket in an open directory"
    );
}

#[test]
fn a_database_that_is_not_sqlite_is_refused_and_left_untouched() {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    fs::create_dir_all(d.db().parent().unwrap()).unwrap();
    let text: Vec<u8> = b"this is a text file, not a database\n"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    fs::write(d.db(), &text).unwrap();

    let out = output_within(&mut d.command(), EXIT_DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "portd must refuse the file: {stderr}"
    );
    assert!(
        stderr.contains(&d.db().display().to_string()),
        "names the path: {stderr}"
    );
    assert_eq!(
        fs::read(d.db()).unwrap(),
        text,
        "the file is byte-for-byte unchanged"
    );
}

#[test]
fn bad_flags_and_unusable_socket_paths_are_refused() {
    let block = PortBlock::reserve();
    let tmp = tempfile::Builder::new()
        .prefix("portd-e2e.")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let db = tmp.path().join("portd.db");

    let long = tmp.path().join(format!("{}.sock", "s".repeat(110)));
    let stderr = refused_start(&long, &db, &block);
    assert!(stderr.contains(&long.display().to_string()), "{stderr}");

    let mut reversed = std::process::Command::new(portd_e2e::portd_bin());
    reversed
        .arg("--socket")
        .arg(tmp.path().join("portd.sock"))
        .arg("--db")
        .arg(&db)
        .args(["--range", "9000-8000"]);
    let out = output_within(&mut reversed, EXIT_DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("9000-8000"), "{stderr}");
}
