//! The units `portctl install` writes: judged by `systemd-analyze --user
//! verify`, written byte for byte as `--print` shows them, rewritten by
//! nothing on a second install, removed by uninstall; and the `systemctl`
//! calls install and uninstall make when a user manager answers.

use std::os::unix::fs::{PermissionsExt, symlink};

use portd_e2e::{portd_bin, portd_command};

use super::*;

const SOCKET: &str = "portd.socket";
const SERVICE: &str = "portd.service";

/// `install --print` in `home`; asserts it wrote nothing and returns the
/// files it shows.
fn printed_units(home: &Home) -> Vec<(PathBuf, String)> {
    let listing = success(&home.portctl(&["install", "--print"]), "install --print");
    assert!(
        !home.config().join("systemd").exists(),
        "install --print wrote something"
    );
    let files = parse_listing(&listing);
    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(
        paths,
        [home.unit_dir().join(SOCKET), home.unit_dir().join(SERVICE)],
        "{listing}"
    );
    files
}

/// `systemd-analyze --user verify --man=no UNITS...`, with its own temp
/// runtime, config and home so that no unit of the developer's is loaded.
fn verify(analyze: &Path, units: &[PathBuf]) -> Output {
    let sandbox = Home::new();
    let mut cmd = Command::new(analyze);
    cmd.args(["--user", "verify", "--man=no"]).args(units);
    sandbox.apply(&mut cmd, "/usr/bin:/bin");
    run(&mut cmd)
}

/// Verify's verdict: exit 0 and not a word of output (warnings such as
/// "Unknown key" exit 0 too).
fn verdict(out: &Output) -> Result<(), String> {
    let said = format!("{}{}", stdout(out), stderr(out));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

#[test]
fn the_printed_units_pass_systemd_analyze_verify_without_a_warning() {
    let Some(analyze) = require_system_tool("systemd-analyze", "systemd") else {
        return;
    };
    let home = Home::new();
    let scratch = Home::new();
    let write = |name: &str, text: &str| {
        let path = scratch.path(name);
        fs::write(&path, text).expect("write a unit");
        path
    };

    // The check must be able to pass: a minimal valid unit. If even that
    // fails, systemd-analyze cannot run here at all.
    let plain = write("plain.service", "[Service]\nExecStart=/bin/true\n");
    if let Err(why) = verdict(&verify(&analyze, &[plain])) {
        skip(&format!(
            "systemd-analyze --user verify rejects even a minimal valid unit here, so it cannot judge ours: {why}"
        ));
        return;
    }
    // ... and able to fail: a warning, a missing binary, a missing dependency.
    let dir = scratch.path("bad");
    fs::create_dir(&dir).unwrap();
    for (name, text) in [
        (
            "warns.service",
            "[Service]\nExecStart=/bin/true\nColour=red\n",
        ),
        (
            "missing.service",
            "[Service]\nExecStart=/nonexistent/portd\n",
        ),
        (
            "alone.service",
            "[Unit]\nRequires=absent.socket\n[Service]\nExecStart=/bin/true\n",
        ),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        let out = verify(&analyze, &[path]);
        assert!(
            verdict(&out).is_err(),
            "systemd-analyze accepted {name}:\n{text}"
        );
    }

    let printed = printed_units(&home);
    let service = &printed[1].1;
    // The harness sets PORTD_PROXY_PORT=0, which the unit carries.
    let exec = format!("\nExecStart={} --proxy-port 0\n", portd_bin().display());
    assert!(
        service.contains(&exec),
        "ExecStart names the built portd:\n{service}"
    );
    assert_verified(&analyze, &printed);
}

/// Writes `units` into a scratch directory and asserts that
/// `systemd-analyze --user verify` accepts them without a word.
#[track_caller]
fn assert_verified(analyze: &Path, units: &[(PathBuf, String)]) {
    let scratch = Home::new();
    let paths: Vec<PathBuf> = units
        .iter()
        .map(|(path, text)| {
            let copy = scratch.path(path.file_name().unwrap().to_str().unwrap());
            fs::write(&copy, text).unwrap();
            copy
        })
        .collect();
    if let Err(why) = verdict(&verify(analyze, &paths)) {
        panic!("systemd-analyze --user verify {paths:?}: {why}");
    }
}

/// `--socket`/`PORTD_SOCKET` and `PORTD_DB` reach the units (systemd
/// judges them too); a value the units cannot carry is refused with the
/// reason, and nothing is written.
#[test]
fn install_carries_a_chosen_socket_and_database_or_refuses_with_the_reason() {
    let home = Home::new();
    let socket = home.path("sockets").join("portd.sock");
    let db = home.path("my state").join("portd.db");
    let print = |cmd: &mut Command| {
        let listing = success(&run(home.apply(cmd, home.bin())), "install --print");
        parse_listing(&listing)
    };
    let by_env = print(
        portctl()
            .args(["install", "--print"])
            .env("PORTD_SOCKET", &socket)
            .env("PORTD_DB", &db),
    );
    let [(_, socket_unit), (_, service_unit)] = &by_env[..] else {
        panic!("two units: {by_env:?}");
    };
    assert!(
        socket_unit.contains(&format!("\nListenStream={}\n", socket.display())),
        "{socket_unit}"
    );
    assert!(!socket_unit.contains("%t/portd"), "{socket_unit}");
    let exec = format!(
        "\nExecStart={} --db \"{}\" --proxy-port 0\n",
        portd_bin().display(),
        db.display()
    );
    assert!(service_unit.contains(&exec), "{service_unit}");
    // The flag wins over the variable, as for every other verb.
    let flag = home.path("flag.sock");
    let by_flag = print(
        portctl()
            .args(["--socket", flag.to_str().unwrap(), "install", "--print"])
            .env("PORTD_SOCKET", &socket),
    );
    assert!(
        by_flag[0]
            .1
            .contains(&format!("\nListenStream={}\n", flag.display())),
        "{by_flag:?}"
    );

    for (var, value, reason) in [
        ("PORTD_SOCKET", "run/portd.sock", "relative"),
        ("PORTD_SOCKET", "/tmp/a b/portd.sock", "whitespace"),
        ("PORTD_DB", "state/portd.db", "relative"),
    ] {
        let mut cmd = portctl();
        cmd.arg("install").env(var, value);
        let out = run(home.apply(&mut cmd, home.bin()));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(value) && stderr(&out).contains(reason),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(
            !home.unit_dir().exists(),
            "{var}={value}: install wrote units it refused"
        );
    }

    // Last, as systemd judges them (where systemd-analyze can judge at all,
    // as the test above checks).
    let Some(analyze) = require_system_tool("systemd-analyze", "systemd") else {
        return;
    };
    let dir = home.path("verify");
    fs::create_dir(&dir).unwrap();
    let plain = dir.join("plain.service");
    fs::write(&plain, "[Service]\nExecStart=/bin/true\n").unwrap();
    if let Err(why) = verdict(&verify(&analyze, &[plain])) {
        return skip(&format!(
            "systemd-analyze --user verify rejects even a minimal valid unit here: {why}"
        ));
    }
    let paths: Vec<PathBuf> = by_env
        .iter()
        .map(|(path, text)| {
            let copy = dir.join(path.file_name().unwrap());
            fs::write(&copy, text).unwrap();
            copy
        })
        .collect();
    if let Err(why) = verdict(&verify(&analyze, &paths)) {
        panic!("systemd-analyze --user verify {paths:?}: {why}");
    }
}

#[test]
fn install_writes_exactly_what_print_shows_and_a_second_install_changes_nothing() {
    let home = Home::new();
    let printed = printed_units(&home);

    // No systemctl on PATH: install writes and says what to run.
    let out = home.portctl(&["install"]);
    let said = success(&out, "install");
    let expected_tail = "No systemd user manager answers; once one does, run:\n  \
                         systemctl --user daemon-reload\n  \
                         systemctl --user enable --now portd.socket portd.service\n";
    assert!(said.ends_with(expected_tail), "{said}");
    for (path, text) in &printed {
        assert!(
            said.contains(&format!("wrote: {}\n", path.display())),
            "{said}"
        );
        let written = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            String::from_utf8_lossy(&written),
            *text,
            "{} differs from what --print showed",
            path.display()
        );
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }

    // Again, now with the system's systemctl on PATH but no user manager
    // behind it (a fresh XDG_RUNTIME_DIR and no session bus).
    let mut cmd = portctl();
    home.apply(cmd.arg("install"), "/usr/bin:/bin");
    let said = success(&run(&mut cmd), "second install");
    assert!(said.ends_with(expected_tail), "{said}");
    for (path, text) in &printed {
        assert!(
            said.contains(&format!("unchanged: {}\n", path.display())),
            "{said}"
        );
        assert_eq!(fs::read_to_string(path).unwrap(), *text);
    }
    let mut names: Vec<String> = fs::read_dir(home.unit_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [SERVICE, SOCKET],
        "nothing else in the unit directory"
    );
}

#[test]
fn uninstall_removes_the_units_and_the_enable_links_and_may_run_twice() {
    let home = Home::new();
    success(&home.portctl(&["install"]), "install");
    // What `systemctl --user enable` would have made.
    let dir = home.unit_dir();
    for (wants, unit) in [
        ("sockets.target.wants", SOCKET),
        ("default.target.wants", SERVICE),
    ] {
        fs::create_dir(dir.join(wants)).unwrap();
        symlink(dir.join(unit), dir.join(wants).join(unit)).unwrap();
    }
    let unrelated = dir.join("default.target.wants").join("other.service");
    fs::write(&unrelated, "[Service]\nExecStart=/bin/true\n").unwrap();

    let said = success(&home.portctl(&["uninstall"]), "uninstall");
    for unit in [SOCKET, SERVICE] {
        assert!(
            said.contains(&format!("removed: {}\n", dir.join(unit).display())),
            "{said}"
        );
        assert!(!dir.join(unit).exists(), "{unit} is still there");
    }
    assert!(
        fs::symlink_metadata(dir.join("sockets.target.wants").join(SOCKET)).is_err(),
        "the socket's enable link is still there"
    );
    assert!(
        fs::symlink_metadata(dir.join("default.target.wants").join(SERVICE)).is_err(),
        "the service's enable link is still there"
    );
    assert!(
        unrelated.exists(),
        "uninstall removed a unit that is not portd's"
    );

    let again = success(&home.portctl(&["uninstall"]), "second uninstall");
    assert_eq!(
        again,
        format!("portd's units are not installed in {}\n", dir.display())
    );
}

/// A `systemctl` that answers like a running user manager and writes each
/// call to `systemctl.log`; on `enable` it also notes whether the process
/// in `$WATCH_PID` still runs.
fn fake_systemctl(home: &Home) -> PathBuf {
    let log = home.path("systemctl.log");
    home.script(
        "systemctl",
        &format!(
            r#"#!/bin/bash
log={log}
[ "$1" = --user ] || {{ echo "not --user: $*" >> "$log"; exit 9; }}
shift
case "$1" in
    show-environment) exit 0 ;;
    show) echo 0; echo "$*" >> "$log"; exit 0 ;;
    enable)
        state=gone
        if [ -n "${{WATCH_PID:-}}" ] && [ -r /proc/$WATCH_PID/stat ]; then
            read -r _ _ s _ < /proc/$WATCH_PID/stat
            [ "$s" = Z ] || state=running
        fi
        echo "$* (watched: $state)" >> "$log" ;;
    *) echo "$*" >> "$log" ;;
esac
"#,
            log = log.display()
        ),
    );
    log
}

#[test]
fn with_a_user_manager_install_stops_a_stray_daemon_then_enables_and_uninstall_disables() {
    let block = PortBlock::reserve();
    let home = Home::new();
    let log = fake_systemctl(&home);
    let system_path = format!("{}:/usr/bin:/bin", home.bin().display());

    // A daemon that portctl autostarted on the socket systemd is to bind.
    let socket = home.manager_socket();
    let mut stray = start_stray(
        &mut portd_command(&socket, &home.path("state/portd.db"), block.range()),
        &socket,
    );

    let mut cmd = portctl();
    home.apply(cmd.arg("install"), &system_path)
        .env("WATCH_PID", stray.pid().to_string());
    let said = success(&run(&mut cmd), "install");
    assert!(
        said.contains(&format!("stopping portd (pid {})", stray.pid())),
        "{said}"
    );
    let status = stray
        .wait_exit(DEADLINE)
        .expect("the stray daemon still runs");
    assert!(
        status.success(),
        "the stray daemon exits cleanly on SIGTERM: {status}"
    );
    assert!(said.ends_with("portd starts at login.\n"), "{said}");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "daemon-reload\n\
         show --property=MainPID --value portd.service\n\
         enable --now portd.socket portd.service (watched: gone)\n"
    );

    // Nothing changed, nothing runs on the socket: reload and enable again.
    fs::remove_file(&log).unwrap();
    let said = success(&home.portctl(&["install"]), "second install");
    assert!(!said.contains("stopping"), "{said}");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "daemon-reload\nenable --now portd.socket portd.service (watched: gone)\n"
    );

    // An older unit (another portd path): rewritten, and the running
    // service restarted onto the new binary.
    let service = home.unit_dir().join(SERVICE);
    let text = fs::read_to_string(&service).unwrap();
    fs::write(&service, text.replace("ExecStart=/", "ExecStart=/old/")).unwrap();
    fs::remove_file(&log).unwrap();
    let said = success(&home.portctl(&["install"]), "install over an older unit");
    assert!(
        said.contains(&format!("updated: {}\n", service.display())),
        "{said}"
    );
    assert_eq!(fs::read_to_string(&service).unwrap(), text);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "daemon-reload\n\
         enable --now portd.socket portd.service (watched: gone)\n\
         try-restart portd.service\n"
    );

    // --no-enable: reload only.
    fs::remove_file(&log).unwrap();
    let said = success(
        &home.portctl(&["install", "--no-enable"]),
        "install --no-enable",
    );
    assert!(
        said.contains("systemctl --user enable --now portd.socket portd.service"),
        "{said}"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), "daemon-reload\n");

    fs::remove_file(&log).unwrap();
    success(&home.portctl(&["uninstall"]), "uninstall");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "disable --now portd.socket portd.service\ndaemon-reload\n"
    );
    assert!(!service.exists() && !home.unit_dir().join(SOCKET).exists());
}

/// The proxy's sockets in portd.socket: on the port `PORTD_PROXY_PORT`
/// names (carried into `ExecStart`), accepted by `systemd-analyze`; and
/// left out, with the reason on stderr, when another program holds it.
#[test]
fn the_units_carry_the_proxys_port_and_leave_it_out_when_another_program_holds_it() {
    let Some(analyze) = require_system_tool("systemd-analyze", "systemd") else {
        return;
    };
    let home = Home::new();
    let block = PortBlock::reserve();
    let port = block.port(0).to_string();
    let print = || {
        let mut cmd = portctl();
        cmd.args(["install", "--print"])
            .env("PORTD_PROXY_PORT", &port);
        run(home.apply(&mut cmd, home.bin()))
    };
    let units = parse_listing(&success(&print(), "install --print"));
    let [(_, socket), (_, service)] = &units[..] else {
        panic!("two units: {units:?}");
    };
    for line in [
        format!("\nListenStream=127.0.0.1:{port}\n"),
        format!("\nListenStream=[::1]:{port}\n"),
    ] {
        assert!(socket.contains(&line), "no {line:?} in:\n{socket}");
    }
    assert!(
        service.contains(&format!(" --proxy-port {port}\n")),
        "{service}"
    );
    assert_verified(&analyze, &units);

    let held = std::net::TcpListener::bind(("127.0.0.1", block.port(0))).unwrap();
    let out = print();
    let units = parse_listing(&success(&out, "install --print, port held"));
    assert!(
        !units[0].1.contains("ListenStream=127.0.0.1"),
        "{}",
        units[0].1
    );
    assert!(
        stderr(&out).contains(&format!(
            "127.0.0.1:{port}, the proxy's port, is held by another program"
        )),
        "{}",
        stderr(&out)
    );
    drop(held);
}
