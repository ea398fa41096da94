//! `portctl lease`: the port alone on stdout, `--shell` and `--json`
//! output, `--owner`, `--ttl`, and the exit codes DESIGN assigns.

use std::fs;

use super::*;

#[test]
fn a_granted_port_is_printed_alone_and_a_taken_one_exits_3_naming_its_owner() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(0);
    let other = ChildGuard::sleep(60);

    let granted = portctl(&d, &["lease", &port.to_string()]);
    granted.expect(0);
    assert_eq!(granted.stdout, format!("{port}\n"), "{granted}");
    assert_eq!(
        lease_on(&d, port)["owner"]["pid"],
        std::process::id(),
        "run from the test, the test process owns it"
    );

    let theirs = block.port(1);
    let pid = other.pid().to_string();
    portctl(&d, &["lease", &theirs.to_string(), "--owner", &pid]).expect(0);
    let taken = portctl(&d, &["lease", &theirs.to_string()]);
    taken.expect(3);
    assert_eq!(
        taken.stdout, "",
        "nothing but a port goes to stdout: {taken}"
    );
    assert!(
        taken.stderr.contains(&format!("pid {pid}")),
        "exit 3 names the owner: {taken}"
    );
    assert_eq!(lease_on(&d, theirs)["owner"]["pid"], other.pid());
}

#[test]
fn a_port_held_by_a_listener_exits_3_naming_it_and_next_skips_it() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(2);
    let server = ChildGuard::http_server(port);

    let held = portctl(&d, &["lease", &port.to_string()]);
    held.expect(3);
    assert_eq!(held.stdout, "", "{held}");
    assert!(
        held.stderr.contains(&format!("pid {}", server.pid())),
        "names the listener's pid: {held}"
    );
    assert!(
        held.stderr.contains("http.server"),
        "names its command: {held}"
    );
    assert_eq!(d.active_lease(port), None);

    let next = portctl(&d, &["lease", &port.to_string(), "--next"]);
    next.expect(0);
    assert_eq!(next.stdout, format!("{}\n", block.port(3)), "{next}");

    // Nothing grantable in a range of just the held port.
    let range = format!("{port}-{port}");
    let none = portctl(&d, &["lease", "--range", &range]);
    none.expect(3);
    assert!(none.stderr.contains("no free port"), "{none}");
}

/// The refusal says what to do, and doing it works: `lease P --kill` stops
/// the unleased listener and leases the port.
#[test]
fn a_port_held_without_a_lease_suggests_kill_and_the_suggestion_works() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(7);
    let p = port.to_string();
    let mut server = ChildGuard::http_server(port);

    let held = portctl(&d, &["lease", &p]);
    held.expect(3);
    for hint in [
        format!("`portctl kill {p}`"),
        format!("`portctl lease {p} --kill`"),
    ] {
        assert!(held.stderr.contains(&hint), "suggests {hint}: {held}");
    }

    let owner = ChildGuard::sleep(60);
    let killed = portctl(
        &d,
        &["lease", &p, "--kill", "--owner", &owner.pid().to_string()],
    );
    killed.expect(0);
    assert_eq!(killed.stdout, format!("{p}\n"), "{killed}");
    assert!(
        server.wait_exit(DEADLINE).is_some(),
        "the listener still runs after lease --kill"
    );
    assert_eq!(lease_on(&d, port)["owner"]["pid"], owner.pid());

    // A port leased by another live owner is not the listener's case: no
    // kill is suggested for someone's live lease.
    let taken = portctl(&d, &["lease", &p]);
    taken.expect(3);
    assert!(!taken.stderr.contains("--kill"), "{taken}");
}

#[test]
fn shell_output_evals_to_port_and_tag() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(4);

    let shell = portctl(&d, &["lease", &port.to_string(), "--shell"]);
    shell.expect(0);
    let id = id_of(&lease_on(&d, port)).to_string();
    assert_eq!(
        shell.stdout,
        format!("export PORT={port}\nexport PORTD_LEASE={id}\n"),
        "{shell}"
    );

    let evaluated = run(
        Command::new("bash")
            .arg("-c")
            .arg(r#"eval "$1"; bash -c 'echo "$PORT $PORTD_LEASE"'"#)
            .arg("eval-test")
            .arg(&shell.stdout)
            .env_remove("PORT")
            .env_remove("PORTD_LEASE"),
        "bash eval".into(),
    );
    evaluated.expect(0);
    assert_eq!(
        evaluated.stdout,
        format!("{port} {id}\n"),
        "exported to children: {evaluated}"
    );
}

#[test]
fn json_output_is_the_api_body() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(5);

    let out = portctl(&d, &["lease", &port.to_string(), "--json"]);
    out.expect(0);
    assert_eq!(out.stdout.lines().count(), 1, "one JSON document: {out}");
    let printed = out.json();
    assert_eq!(printed, lease_on(&d, port), "{out}");
    assert_eq!(printed["state"], "active");
    assert_eq!(printed["port"], port);

    // A refusal with --json prints the API's error body.
    let other = ChildGuard::sleep(60);
    let pid = other.pid().to_string();
    let taken = portctl(&d, &["lease", &port.to_string(), "--json", "--owner", &pid]);
    taken.expect(3);
    assert_eq!(taken.json()["error"]["code"], "port_taken", "{taken}");
}

#[test]
fn owner_names_the_process_the_lease_lives_with() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(6);
    let mut owner = ChildGuard::sleep(60);

    let out = portctl(
        &d,
        &[
            "lease",
            &port.to_string(),
            "--owner",
            &owner.pid().to_string(),
        ],
    );
    out.expect(0);
    let lease = lease_on(&d, port);
    assert_eq!(lease["owner"]["pid"], owner.pid(), "{lease}");

    owner.kill9();
    let ended = wait_for_end(&d, &lease);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
}

#[test]
fn an_owner_that_does_not_exist_is_bad_usage() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(8);
    // Pids are below pid_max: this one names no process.
    let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max");
    let pid = pid_max.trim();

    let out = portctl(&d, &["lease", &port.to_string(), "--owner", pid]);
    out.expect(2);
    assert!(out.stderr.contains(pid), "names the pid: {out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(d.active_lease(port), None);
}

#[test]
fn a_ttl_expires_the_lease_while_its_owner_lives() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(9);
    let mut owner = ChildGuard::sleep(60);

    let out = portctl(
        &d,
        &[
            "lease",
            &port.to_string(),
            "--ttl",
            "1",
            "--owner",
            &owner.pid().to_string(),
        ],
    );
    out.expect(0);
    let lease = lease_on(&d, port);
    assert!(lease["expires_at"].is_string(), "{lease}");

    let ended = wait_for_end(&d, &lease);
    assert_eq!(ended["end_reason"], "expired", "{ended}");
    assert!(owner.is_running(), "only the lease ended");
}

#[test]
fn bad_values_are_usage_errors() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    for args in [
        &["lease", "70000"][..],
        &["lease", "--ttl", "soon"],
        &["lease", "--range", "9-3"],
        &["lease", "--ttl", "0"],
    ] {
        let out = portctl(&d, args);
        out.expect(2);
        assert_eq!(out.stdout, "", "{out}");
    }
    let list = d.get("/v1/leases").json();
    assert_eq!(list["leases"], serde_json::json!([]), "{list}");
}

/// Item 3 of issue 10: in one script, each `--next` and each bare `lease`
/// gets a port the script does not hold yet; `lease P` (exactly P) asked
/// again answers the lease the script has.
fn each_next_in_one_script_gets_a_new_port(shell: Shell) {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let mut gate = Gate::new(scratch.path("gate"));
    let p = block.port(10);
    let body = format!(
        r#"API=$(portctl lease {p} --next) || exit 7
WEB=$(portctl lease {p} --next) || exit 8
ONE=$(portctl lease) || exit 9
TWO=$(portctl lease --next) || exit 10
AGAIN=$(portctl lease {p}) || exit 11
report "$API $WEB $ONE $TWO $AGAIN"
read go < "$GATE"
"#
    );
    let mut script = Script::spawn(shell, &d, &scratch, "next", Some(&gate), &body);
    let (pid, reported) = script.report();
    let ports: Vec<u16> = reported
        .split(' ')
        .map(|p| p.parse().expect("a port"))
        .collect();
    assert_eq!(
        ports,
        [p, p + 1, block.port(0), block.port(1), p],
        "two --next from P, two scans from the range's start, then P again"
    );
    for port in &ports[..4] {
        assert_eq!(lease_on(&d, *port)["owner"]["pid"], pid, "port {port}");
    }
    let history = d.get("/v1/leases?all=true").json();
    assert_eq!(
        history["leases"].as_array().map(Vec::len),
        Some(4),
        "four leases, the exact ask answered by the first: {history}"
    );
    script.assert_quiet();
    gate.release(1);
    script.guard.wait_exit(DEADLINE).expect("the script ends");
}

#[test]
fn each_next_in_one_bash_script_gets_a_new_port() {
    each_next_in_one_script_gets_a_new_port(Shell::Bash);
}

#[test]
fn each_next_in_one_dash_script_gets_a_new_port() {
    each_next_in_one_script_gets_a_new_port(Shell::Dash);
}
