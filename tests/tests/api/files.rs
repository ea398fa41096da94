//! The files the daemon keeps: the database's directory gets the socket
//! directory's ownership checks, every file it creates is 0600, it follows
//! no symlink to a lock, opens no file another uid owns, refuses a
//! database it cannot write, and replaces nothing at the socket path but a
//! stale socket.
//!
//! Tests that need another uid chown files to `nobody` or run the daemon as
//! `nobody` under setpriv; they need root.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, chown, symlink};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use portd_e2e::cli::scrub;
use portd_e2e::skip::{require_root, require_system_tool};
use portd_e2e::{output_within, portd_bin, via_bash, wrapped_in};

use super::refusals::refused_start;
use super::*;

/// `nobody`: a uid that is not the test's.
const OTHER_UID: u32 = 65534;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o777
}

fn state_dir(d: &TestDaemon) -> &Path {
    d.db().parent().expect("the database lives in a directory")
}

/// The state directory, made by the test with `mode` before the daemon
/// starts.
fn make_state_dir(d: &TestDaemon, mode: u32) -> &Path {
    let dir = state_dir(d);
    fs::create_dir(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn a_database_directory_writable_by_others_is_refused_naming_the_fix() {
    for open in [0o777, 0o770, 0o1777] {
        let block = PortBlock::reserve();
        let d = TestDaemon::new(block.range());
        let dir = make_state_dir(&d, open);

        let stderr = refused_start(d.socket(), d.db(), &block);
        assert!(
            stderr.contains(&dir.display().to_string()),
            "{open:o}: names the directory: {stderr}"
        );
        assert!(
            stderr.contains(&format!("chmod 700 {}", dir.display())),
            "{open:o}: says how to fix it: {stderr}"
        );
        assert!(
            fs::read_dir(dir).unwrap().next().is_none(),
            "{open:o}: nothing was created in the open directory"
        );
    }
}

#[test]
fn a_database_directory_that_is_a_symlink_is_refused() {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    let real = d.dir().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&real, state_dir(&d)).unwrap();

    let stderr = refused_start(d.socket(), d.db(), &block);
    assert!(
        stderr.contains(&state_dir(&d).display().to_string()) && stderr.contains("symlink"),
        "{stderr}"
    );
    assert!(
        fs::read_dir(&real).unwrap().next().is_none(),
        "nothing was created behind the symlink"
    );
}

/// A lock file that is a symlink would have the daemon truncate whatever it
/// points at and write its pid there.
#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_left_untouched() {
    let locks: [fn(&TestDaemon) -> std::path::PathBuf; 2] = [
        |d| d.db().with_file_name("portd.db.lock"),
        |d| d.socket().with_file_name("portd.lock"),
    ];
    for lock in locks {
        let block = PortBlock::reserve();
        let d = TestDaemon::new(block.range());
        make_state_dir(&d, 0o700);
        let victim = d.dir().join("victim.txt");
        fs::write(&victim, "precious\n").unwrap();
        let lock = lock(&d);
        symlink(&victim, &lock).unwrap();

        let stderr = refused_start(d.socket(), d.db(), &block);
        assert!(
            stderr.contains(&lock.display().to_string()) && stderr.contains("symlink"),
            "names the lock and why: {stderr}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(fs::symlink_metadata(&lock).unwrap().is_symlink());
    }
}

/// SQLite creates a database 0644 under the usual umask; the daemon's files
/// must not be readable by other users (lease ids, projects, command lines).
#[test]
fn every_file_the_daemon_creates_is_0600_whatever_the_umask() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    d.launch_with(|cmd| via_bash(&cmd, "umask 022"));
    let owner = ChildGuard::sleep(60);
    // A write, so that the WAL and its index exist.
    d.lease(block.port(0), &owner);

    assert_eq!(mode(state_dir(&d)), 0o700, "{}", state_dir(&d).display());
    let db = d.db().display().to_string();
    let files = [
        d.db().to_path_buf(),
        format!("{db}-wal").into(),
        format!("{db}-shm").into(),
        format!("{db}.lock").into(),
        d.socket().with_file_name("portd.lock"),
        d.socket().to_path_buf(),
    ];
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[test]
fn a_database_left_readable_by_others_is_made_private_at_start() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let id = d.lease(block.port(1), &owner);
    d.stop();
    fs::set_permissions(d.db(), fs::Permissions::from_mode(0o644)).unwrap();

    d.launch();
    assert_eq!(mode(d.db()), 0o600);
    assert!(d.lease_by_id(&id).is_some(), "the same database, kept");
}

#[test]
fn a_database_or_lock_that_another_uid_owns_is_refused() {
    if !require_root(&format!("to chown files to uid {OTHER_UID}")) {
        return;
    }
    for name in ["portd.db", "portd.db.lock", "portd.db-wal"] {
        let block = PortBlock::reserve();
        let d = TestDaemon::new(block.range());
        make_state_dir(&d, 0o700);
        let theirs = d.db().with_file_name(name);
        fs::write(&theirs, "").unwrap();
        chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();

        let stderr = refused_start(d.socket(), d.db(), &block);
        assert!(
            stderr.contains(&theirs.display().to_string())
                && stderr.contains(&format!("owned by uid {OTHER_UID}")),
            "{name}: names the file and its owner: {stderr}"
        );
        assert_eq!(fs::read(&theirs).unwrap(), b"", "{name} is left as it was");
    }
}

/// `cmd` run as `nobody`.
fn as_other_uid(setpriv: &Path, cmd: &Command) -> Command {
    let ids = [
        format!("--reuid={OTHER_UID}").into(),
        format!("--regid={OTHER_UID}").into(),
        "--clear-groups".into(),
    ];
    wrapped_in(setpriv, &ids, cmd)
}

/// SQLite opens a file it may not write read-only without a word; a daemon
/// on it would answer every write with 500.
#[test]
fn a_read_only_database_is_refused_at_start() {
    if !require_root(&format!("to run portd as uid {OTHER_UID}")) {
        return;
    }
    let Some(setpriv) = require_system_tool("setpriv", "util-linux") else {
        return;
    };
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    chown(d.dir(), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    d.launch_with(|cmd| as_other_uid(&setpriv, &cmd));
    let owner = ChildGuard::sleep(60);
    d.lease(block.port(2), &owner);
    d.stop();
    assert_eq!(fs::metadata(d.db()).unwrap().uid(), OTHER_UID);
    fs::set_permissions(d.db(), fs::Permissions::from_mode(0o400)).unwrap();

    let out = output_within(&mut as_other_uid(&setpriv, &d.command()), EXIT_DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "portd must refuse: {stderr}");
    assert!(
        stderr.contains(&d.db().display().to_string()) && stderr.contains("read-only"),
        "names the database and why: {stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 600 {}", d.db().display())),
        "says how to fix it: {stderr}"
    );
}

/// `portd --socket PATH` (or `PORTD_SOCKET`) replaces only a socket that
/// nobody answers on; anything else at the path stays as it was.
#[test]
fn a_socket_path_that_is_not_a_stale_socket_is_refused_and_kept() {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    let file = d.dir().join("notes.txt");
    fs::write(&file, "my notes\n").unwrap();
    let dir = d.dir().join("a-dir");
    fs::create_dir(&dir).unwrap();
    let link = d.dir().join("link");
    symlink(&file, &link).unwrap();
    // A socket whose owner still answers is a daemon: "already running".
    let live = d.dir().join("live.sock");
    let _listener = UnixListener::bind(&live).unwrap();

    for (path, what) in [
        (&file, "a regular file"),
        (&dir, "a directory"),
        (&link, "a symlink"),
    ] {
        let stderr = refused_start(path, d.db(), &block);
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(what),
            "{what}: names the path and what it is: {stderr}"
        );
    }
    let stderr = refused_start(&live, d.db(), &block);
    assert!(stderr.contains("already running"), "{stderr}");

    // The same through the environment variable.
    let mut by_env = Command::new(portd_bin());
    scrub(&mut by_env)
        .env("PORTD_SOCKET", &file)
        .arg("--db")
        .arg(d.db())
        .args(["--range", &block.range().to_string()]);
    let out = output_within(&mut by_env, EXIT_DEADLINE);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(fs::read_to_string(&file).unwrap(), "my notes\n");
    assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
    assert_eq!(fs::read_link(&link).unwrap(), file);
    assert!(fs::symlink_metadata(&live).unwrap().file_type().is_socket());
}

/// A database whose file system fills up: the commit fails with
/// SQLITE_FULL, and the caller is told that the disk is full, where, and
/// what to do, instead of "internal error". The file system is a 512 KiB
/// tmpfs mounted in the daemon's own mount namespace, so nothing outside
/// sees it and it goes with the daemon.
#[test]
fn a_full_disk_is_answered_with_the_database_and_what_to_do() {
    if !require_root("to mount a small tmpfs for the database") {
        return;
    }
    let Some(unshare) = require_system_tool("unshare", "util-linux") else {
        return;
    };
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    let state = state_dir(&d).to_path_buf();
    d.launch_with(|mut cmd| {
        cmd.env("PORTD_TEST_STATE", &state);
        let mount = "mkdir -m 700 \"$PORTD_TEST_STATE\" \
            && mount -t tmpfs -o size=512k,mode=0700 portd-full \"$PORTD_TEST_STATE\" \
            && exec \"$0\" \"$@\"";
        let args = [
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            mount,
        ];
        let args: Vec<_> = args.iter().map(Into::into).collect();
        wrapped_in(&unshare, &args, &cmd)
    });
    let owner = ChildGuard::sleep(60);
    let port = block.port(3);
    // Every grant and release is a commit that adds pages to the WAL.
    let mut full = None;
    for _ in 0..1000 {
        let answer = lease(&d, json!({"port": port, "owner": owner.owner()}));
        let answer = match answer.status {
            201 => call(&d, "DELETE", &format!("/v1/leases/{port}"), None),
            _ => answer,
        };
        match answer.status {
            200 => {}
            // Decisions pause while the lease table reloads after a failed
            // commit.
            503 => assert_eq!(
                answer.json()["error"]["code"],
                "unavailable",
                "{}",
                answer.body
            ),
            _ => {
                full = Some(answer);
                break;
            }
        }
    }
    let full = full.expect("1,000 grants and releases fit in 512 KiB");
    let error = expect_error(&full, 500, "internal");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("disk is full")
            && message.contains(&d.db().display().to_string())
            && message.contains("free some space"),
        "says what happened, where, and what to do: {message}"
    );
    assert!(d.log().contains("disk is full"), "and logs it");
    d.assert_healthy("a full disk");
}
