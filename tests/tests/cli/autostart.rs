//! Autostart: with nothing on the socket, `portctl` starts `portd` itself,
//! detached from the caller (its own session, stdin /dev/null, output to
//! `portd.log` beside the database, no lease tag), and many clients
//! starting it at once end with one daemon. The log goes only into a
//! directory of the caller's that nobody else may write, and never through
//! a symlink or into another user's file.
//!
//! These daemons are not the test's children: [`FreshSocket`] finds them by
//! their socket path and stops them. They serve the default range
//! (8000-8999), so leases here always name a range inside the test's block.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use portd_api::procstat::read_stat;
use portd_e2e::cli::FreshSocket;

use super::*;

/// `portctl ARGS` with autostart on `home`; checks stderr for warnings.
#[track_caller]
fn autostarting(home: &FreshSocket, args: &[&str]) -> Done {
    run(
        home.portctl().args(args).current_dir("/tmp"),
        format!("portctl {} (autostart)", args.join(" ")),
    )
}

/// The one daemon serving `home`, by `status --json`.
#[track_caller]
fn daemon_pid(home: &FreshSocket) -> u32 {
    let status = autostarting(home, &["status", "--json"]);
    status.expect(0);
    status.json()["pid"].as_u64().expect("a pid") as u32
}

#[test]
fn ls_with_no_daemon_starts_one_detached_with_its_log_beside_the_db() {
    let home = FreshSocket::new();
    let socket_dir = home.socket().parent().unwrap();
    assert!(!socket_dir.exists(), "portd creates the socket's directory");

    let ls = autostarting(&home, &["ls"]);
    ls.expect(0);
    assert_eq!(ls.stdout, "", "no leases yet: {ls}");

    let daemons = home.daemons();
    assert_eq!(daemons.len(), 1, "{daemons:?}; log:\n{}", home.log());
    let pid = daemon_pid(&home);
    assert_eq!(daemons[0].pid, pid);

    let status = autostarting(&home, &["status", "--json"]).json();
    assert_eq!(
        status["socket"],
        home.socket().to_str().unwrap(),
        "{status}"
    );
    assert_eq!(status["db"], home.db().to_str().unwrap(), "{status}");
    assert_eq!(
        status["range"], "8000-8999",
        "autostart passes no range: {status}"
    );

    let mode = fs::metadata(socket_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", socket_dir.display());
    assert!(
        home.log_path().is_file(),
        "no {}",
        home.log_path().display()
    );
    assert!(home.log().contains("serving"), "log:\n{}", home.log());

    let stat = read_stat(pid).expect("the daemon runs");
    assert_eq!(
        stat.session, pid,
        "the daemon leads its own session (setsid)"
    );
    let fd = |n: u32| fs::read_link(format!("/proc/{pid}/fd/{n}")).ok();
    assert_eq!(fd(0).as_deref(), Some(std::path::Path::new("/dev/null")));
    assert_eq!(fd(1).as_deref(), Some(home.log_path().as_path()));
    assert_eq!(fd(2).as_deref(), Some(home.log_path().as_path()));
}

/// `PORT=$(portctl lease ...)` that has to start the daemon first: the
/// substitution ends when `portctl` does (the daemon holds none of its
/// pipes), and the daemon does not inherit the caller's lease tag.
#[test]
fn a_command_substitution_that_autostarts_returns_promptly_and_passes_no_tag() {
    let block = PortBlock::reserve();
    let home = FreshSocket::new();
    let range = block.sub_range(0, 5).to_string();
    let script = format!(
        r#"PORT=$(portctl lease --range {range} --next) || exit 9
echo "$PORT""#
    );
    let mut bash = Command::new("bash");
    home.environment(&mut bash)
        .arg("-c")
        .arg(&script)
        .env("PATH", script_path())
        .env("PORTD_LEASE", "01900000-0000-7000-8000-00000000cafe")
        .current_dir("/tmp");
    let started = Instant::now();
    // output_within panics if stdout stays open after bash exits.
    let out = output_within(&mut bash, Duration::from_secs(10));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stdout} {stderr}", out.status);
    assert_eq!(stderr, "", "no warning, no error");
    let port: u16 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{stdout:?}"));
    assert_eq!(port, block.port(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let pid = daemon_pid(&home);
    let environ = fs::read(format!("/proc/{pid}/environ")).expect("the daemon's environ");
    let names: Vec<&[u8]> = environ
        .split(|b| *b == 0)
        .filter_map(|var| var.split(|b| *b == b'=').next())
        .collect();
    assert!(
        !names.contains(&&b"PORTD_LEASE"[..]),
        "the daemon inherited the caller's tag"
    );
    assert!(names.contains(&&b"PORTD_DB"[..]), "a readable environ");
    assert!(home.log_path().is_file());

    // The lease belonged to the bash that has exited.
    let ended = wait_until(DEADLINE, || {
        autostarting(&home, &["ls", "--json"]).json()["leases"] == serde_json::json!([])
    });
    assert!(ended, "{}", autostarting(&home, &["ls", "--all"]));
}

#[test]
fn forty_clients_autostarting_at_once_leave_one_daemon() {
    const CLIENTS: usize = 40;
    let home = Arc::new(FreshSocket::new());
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (home, barrier) = (Arc::clone(&home), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut cmd = home.portctl();
                cmd.arg("status").current_dir("/tmp");
                barrier.wait();
                output_within(&mut cmd, PORTCTL_TIMEOUT)
            })
        })
        .collect();
    let outputs: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread"))
        .collect();

    let mut pids = Vec::new();
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "portctl status {}: {stdout} {stderr}; log:\n{}",
            out.status,
            home.log()
        );
        assert_eq!(stderr, "", "no warning");
        let pid = stdout
            .split_once("(pid ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no pid in {stdout:?}"));
        pids.push(pid);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 1, "every client talked to one daemon: {pids:?}");

    // The daemons that lost the race exit on their own.
    let one = wait_until(DEADLINE, || home.daemons().len() == 1);
    assert!(one, "{:?}; log:\n{}", home.daemons(), home.log());
    assert_eq!(home.daemons()[0].pid, pids[0]);
    let log = home.log();
    let starts = log.matches("serving").count();
    assert_eq!(starts, 1, "one daemon served:\n{log}");
    for line in log.lines().filter(|l| l.starts_with("portd:")) {
        assert!(
            line.contains("already running"),
            "a loser failed otherwise: {line}\n{log}"
        );
    }
}

/// A daemon killed outright leaves its socket file behind; the next clients
/// (20 at once) start one new daemon on that path, and it still knows the
/// leases of live owners.
#[test]
fn clients_restart_a_killed_daemon_over_its_stale_socket() {
    let block = PortBlock::reserve();
    let home = FreshSocket::new();
    let owner = ChildGuard::sleep(60);
    let range = block.sub_range(10, 3).to_string();
    let granted = autostarting(
        &home,
        &[
            "lease",
            "--range",
            &range,
            "--owner",
            &owner.pid().to_string(),
        ],
    );
    granted.expect(0);
    assert_eq!(granted.stdout, format!("{}\n", block.port(10)), "{granted}");

    let first = daemon_pid(&home);
    let killed = home.daemons();
    assert_eq!(killed.iter().map(|d| d.pid).collect::<Vec<_>>(), [first]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the daemon");
    assert!(killed[0].wait_gone(DEADLINE), "the daemon survived SIGKILL");
    // A killed process shows as a zombie while its other threads still
    // exit, and its listening socket closes only with the last of them:
    // wait until nothing listens, or a client could connect to the dying
    // daemon and be reset.
    let closed = wait_until(DEADLINE, || {
        std::os::unix::net::UnixStream::connect(home.socket()).is_err()
    });
    assert!(closed, "the killed daemon's socket still accepts");
    assert!(home.socket().exists(), "SIGKILL leaves the socket file");

    let threads: Vec<_> = (0..20)
        .map(|_| {
            let mut cmd = home.portctl();
            cmd.args(["who", &block.port(10).to_string(), "--json"])
                .current_dir("/tmp");
            thread::spawn(move || output_within(&mut cmd, PORTCTL_TIMEOUT))
        })
        .collect();
    for thread in threads {
        let out = thread.join().expect("a client thread");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout} {}; log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            home.log()
        );
        let report: Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(report["lease"]["owner"]["pid"], owner.pid(), "{report}");
    }
    let one = wait_until(DEADLINE, || home.daemons().len() == 1);
    assert!(one, "{:?}; log:\n{}", home.daemons(), home.log());
    assert_ne!(home.daemons()[0].pid, first);
}

/// The autostarted daemon keeps none of the caller's file descriptors but
/// the three it is given. Callers hand their children more: bats gives
/// every test fd 3 (its TAP output) and waits for it to close, make passes
/// its jobserver pipe; a daemon that keeps them keeps those callers
/// waiting for as long as it runs.
#[test]
fn an_autostarted_daemon_keeps_none_of_the_callers_file_descriptors() {
    let home = FreshSocket::new();
    let scratch = Scratch::new();
    let mark = scratch.path("callers-file");
    let mut bash = Command::new("bash");
    home.environment(&mut bash)
        .arg("-c")
        .arg(r#"exec 3>"$MARK" 9>>"$MARK"; portctl ls"#)
        .env("PATH", script_path())
        .env("MARK", &mark)
        .current_dir("/tmp");
    run(&mut bash, "bash: portctl ls with fds 3 and 9 open".into()).expect(0);

    let pid = daemon_pid(&home);
    let inherited: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fds")
        .filter_map(|fd| {
            let fd = fd.ok()?;
            let target = fs::read_link(fd.path()).ok()?;
            (target == mark).then(|| fd.file_name().to_string_lossy().into_owned())
        })
        .collect();
    assert!(
        inherited.is_empty(),
        "portd (pid {pid}) holds the caller's {} on fd {inherited:?}",
        mark.display()
    );
}

/// What that looks like to a caller: `portctl` run with the caller's output
/// pipe on fd 3 (as bats runs commands). The pipe must reach EOF when the
/// caller exits; `output_within` fails if it stays open.
#[test]
fn a_caller_reading_fd_3_to_its_end_is_not_held_up_by_the_daemon() {
    let home = FreshSocket::new();
    let mut bash = Command::new("bash");
    home.environment(&mut bash)
        .arg("-c")
        .arg("portctl ls 3>&1 >/dev/null 2>&1; echo done")
        .env("PATH", script_path())
        .current_dir("/tmp");
    let out = output_within(&mut bash, PORTCTL_TIMEOUT);
    assert!(out.status.success(), "{}", out.status);
    assert_eq!(out.stdout, b"done\n");
}

#[test]
fn with_autostart_off_nothing_is_started_and_portctl_exits_69() {
    let home = FreshSocket::new();
    let out = run(
        home.portctl()
            .args(["ls"])
            .env("PORTD_NO_AUTOSTART", "1")
            .current_dir("/tmp"),
        "portctl ls (autostart off)".into(),
    );
    out.expect(69);
    assert!(
        out.stderr.contains(home.socket().to_str().unwrap()),
        "{out}"
    );
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    assert!(!home.socket().parent().unwrap().exists());
    assert!(!home.log_path().exists());
}

/// `prepare` puts something at the log's path in a private state
/// directory; autostart must refuse it: exit 69 naming each of `named`,
/// nothing started, the state directory as it was.
#[track_caller]
fn autostart_refuses(prepare: impl FnOnce(&Path), named: &[&str]) {
    let home = FreshSocket::new();
    let state = home.db().parent().unwrap();
    fs::create_dir(state).unwrap();
    fs::set_permissions(state, fs::Permissions::from_mode(0o700)).unwrap();
    prepare(&home.log_path());
    let before = snapshot(state);

    let out = autostarting(&home, &["ls"]);
    out.expect(69);
    for word in named {
        assert!(out.stderr.contains(word), "should name {word:?}: {out}");
    }
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    assert_eq!(snapshot(state), before, "the state directory changed");
}

/// Every entry of `dir` with its type, mode, owner and contents.
fn snapshot(dir: &Path) -> Vec<(String, u32, u32, Vec<u8>)> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let contents = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, meta.mode(), meta.uid(), contents)
        })
        .collect();
    entries.sort();
    entries
}

/// A log that is a symlink would have the daemon append its output to
/// whatever it points at.
#[test]
fn autostart_does_not_follow_a_symlinked_log() {
    let outside = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    fs::write(outside.path(), "precious\n").unwrap();
    let target = outside.path().to_path_buf();
    autostart_refuses(
        |log| symlink(&target, log).unwrap(),
        &["portd.log", "symlink"],
    );
    assert_eq!(fs::read_to_string(outside.path()).unwrap(), "precious\n");
}

#[test]
fn autostart_refuses_a_log_directory_writable_by_others() {
    let home = FreshSocket::new();
    let state = home.db().parent().unwrap();
    fs::create_dir(state).unwrap();
    fs::set_permissions(state, fs::Permissions::from_mode(0o777)).unwrap();

    let out = autostarting(&home, &["ls"]);
    out.expect(69);
    let fix = format!("chmod 700 {}", state.display());
    assert!(out.stderr.contains(&fix), "should say {fix:?}: {out}");
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    assert!(!home.log_path().exists(), "no log in an open directory");
}

#[test]
fn autostart_refuses_a_log_that_another_uid_owns() {
    if !portd_e2e::skip::require_root("to chown a log to uid 65534") {
        return;
    }
    autostart_refuses(
        |log| {
            fs::write(log, "theirs\n").unwrap();
            std::os::unix::fs::chown(log, Some(65534), Some(65534)).unwrap();
        },
        &["portd.log", "owned by uid 65534"],
    );
}

/// A socket directory that others may enter is the user's to fix, not a
/// daemon that is down: its own exit code, the fix in the message, and no
/// daemon started behind it. The fix then works.
#[test]
fn a_socket_directory_open_to_others_is_a_configuration_error_that_says_chmod_700() {
    let home = FreshSocket::new();
    let dir = home.socket().parent().expect("the socket's directory");
    fs::create_dir(dir).expect("create the socket's directory");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");

    let refused = autostarting(&home, &["ls"]);
    refused.expect(78);
    assert!(
        refused
            .stderr
            .contains(&format!("chmod 700 {}", dir.display())),
        "{refused}"
    );
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    assert!(!home.log_path().exists(), "autostart ran: {}", home.log());

    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod 700");
    autostarting(&home, &["ls"]).expect(0);
}

/// A daemon that cannot start says why in its log; the client prints that
/// line, not only "did not answer".
#[test]
fn a_failed_autostart_prints_the_daemons_own_reason() {
    let block = PortBlock::reserve();
    let home = FreshSocket::new();
    // Another daemon, on another socket, already serves home's database.
    let elsewhere = tempfile::Builder::new()
        .prefix("portd-cli.")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    fs::set_permissions(elsewhere.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let other_socket = elsewhere.path().join("portd.sock");
    let holder = ChildGuard::spawn(
        portd_e2e::portd_command(&other_socket, home.db(), block.range())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let up = wait_until(DEADLINE, || {
        portd_e2e::http::try_request(&other_socket, "GET", "/v1/health", None)
            .is_ok_and(|r| r.status == 200)
    });
    assert!(up, "the first daemon does not answer");

    let failed = autostarting(&home, &["ls"]);
    failed.expect(69);
    let reason = format!(
        "database {} is in use by another portd (pid {})",
        home.db().display(),
        holder.pid()
    );
    assert!(failed.stderr.contains(&reason), "{failed}");
    assert!(
        failed.stderr.contains("PORTD_SOCKET"),
        "what to do: {failed}"
    );
    assert!(
        failed.stderr.contains(home.log_path().to_str().unwrap()),
        "{failed}"
    );
    let gone = wait_until(DEADLINE, || home.daemons().is_empty());
    assert!(gone, "the failed daemon still runs: {:?}", home.daemons());
}
