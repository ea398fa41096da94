//! The `portctl` binary's own contract, without a daemon: argument errors,
//! help, and what happens when nothing answers.

use std::process::{Command, Output};

fn portctl(args: &[&str], socket_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portctl"))
        .args(args)
        .env("PORTD_SOCKET", socket_dir.join("portd.sock"))
        .env("PORTD_NO_AUTOSTART", "1")
        .output()
        .expect("run portctl")
}

#[test]
fn bad_ports_exit_2_with_a_reason_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "65536", "-5", "abc", "8000x"] {
        for verb in [
            &["lease", bad][..],
            &["who", bad],
            &["release", bad],
            &["kill", bad],
        ] {
            let out = portctl(verb, dir.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb:?}: {stderr}");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(
                first.contains(&format!("'{bad}'")) && first.contains("invalid port"),
                "{verb:?}: {stderr}"
            );
        }
    }
}

#[test]
fn bad_ranges_and_durations_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["lease", "--range", "9000-8000"][..],
        &["lease", "--ttl", "soon"],
        &["lease", "--kill"],
    ] {
        let out = portctl(args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn help_lists_exactly_the_built_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let out = portctl(&["--help"], dir.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let section = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap();
    let verbs: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        verbs,
        [
            "lease",
            "release",
            "ls",
            "who",
            "reap",
            "kill",
            "run",
            "wait",
            "env",
            "names",
            "url",
            "status",
            "cleanup",
            "install",
            "uninstall",
            "completions",
            "man",
            "mcp",
            "help"
        ]
    );
}

#[test]
fn nothing_answering_without_autostart_exits_69() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = portctl(&["ls"], dir.path());
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not running"), "{stderr}");
}

#[test]
fn a_socket_directory_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = portctl(&["ls"], dir.path());
    assert_eq!(out.status.code(), Some(78), "a configuration error, not 69");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0700"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 700 {}", dir.path().display())),
        "{stderr}"
    );
}

#[test]
fn run_without_a_command_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = portctl(&["run", "--port", "8000", "--"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wait_times_out_with_exit_1_on_a_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = portctl(
        &["wait", &port.to_string(), "--timeout", "200ms"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("within"));
}

#[test]
fn wait_returns_once_something_listens() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = portctl(&["wait", &port, "--timeout", "10s"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
