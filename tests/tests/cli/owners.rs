//! Whose lease it is (issue 2): `portctl lease` in a start script leaves a
//! lease owned by the script itself, not by `portctl` or the subshells of
//! `$(...)` and pipelines, and the lease lives exactly as long as the script.

use nix::sys::signal::Signal;
use portd_e2e::start_time;

use super::*;

/// How a script ends once the test has checked its lease.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// Released from its gate, it reaches `exit 0`.
    Finishes,
    /// SIGKILL while it waits.
    Killed,
}

/// The three ways DESIGN names to take a port into a variable; `None` for
/// forms that get the first free port of the range.
fn forms(block: &PortBlock) -> [(&'static str, Option<u16>, String); 6] {
    let next = |p: u16| format!("PORT=$(portctl lease {p} --next)");
    let json = "PORT=$(portctl lease --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"port\"])')".to_string();
    let or_exit = |p: u16| format!("PORT=$(portctl lease {p} || exit 1)");
    // Exact and --next ports lie above the two that the --json scans take.
    [
        ("next", Some(block.port(14)), next(block.port(14))),
        ("next", Some(block.port(16)), next(block.port(16))),
        ("json", None, json.clone()),
        ("json", None, json),
        ("or-exit", Some(block.port(10)), or_exit(block.port(10))),
        ("or-exit", Some(block.port(12)), or_exit(block.port(12))),
    ]
}

/// Takes a port with `form`, reports it, and waits at the gate.
fn leasing_script(form: &str) -> String {
    format!(
        r#"{form}
[ -n "$PORT" ] || exit 7
report "$PORT"
read go < "$GATE"
exit 0
"#
    )
}

fn scripts_own_their_leases_while_they_live(shell: Shell) {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();

    let mut scripts = Vec::new();
    for (index, (form, port, line)) in forms(&block).into_iter().enumerate() {
        // Every form once finishing normally, once killed.
        let end = if index % 2 == 0 {
            End::Finishes
        } else {
            End::Killed
        };
        let name = format!("{}-{form}-{index}", shell.program());
        let gate = Gate::new(scratch.path(&format!("{name}.gate")));
        let script = Script::spawn(
            shell,
            &d,
            &scratch,
            &name,
            Some(&gate),
            &leasing_script(&line),
        );
        scripts.push((script, gate, port, end));
    }

    let mut leases = Vec::new();
    for (script, _, expected_port, _) in &mut scripts {
        let (reported_pid, port) = script.report();
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("{}: port {port:?}", script.name));
        assert_eq!(
            reported_pid,
            script.pid(),
            "{}: $$ is the spawned shell",
            script.name
        );
        if let Some(expected) = expected_port {
            assert_eq!(port, *expected, "{}", script.name);
        }
        assert!(block.range().contains(port), "{}: {port}", script.name);
        leases.push(port);
    }

    // Every `portctl` and every subshell has exited by now: the scripts
    // wait at their gates, and their leases must be theirs.
    for ((script, _, _, _), port) in scripts.iter().zip(&leases) {
        let lease = lease_on(&d, *port);
        assert_eq!(
            lease["owner"]["pid"],
            script.pid(),
            "{}: {lease}",
            script.name
        );
        let started = lease["owner"]["start_time"].as_f64().expect("a start time");
        assert!(
            (started - start_time(script.pid())).abs() < 0.005,
            "{}: the owner's start time is another process's: {lease}",
            script.name
        );
        script.assert_quiet();
    }

    for ((script, gate, _, end), port) in scripts.iter_mut().zip(&leases) {
        let lease = lease_on(&d, *port);
        assert_eq!(
            lease["owner"]["pid"],
            script.pid(),
            "{}: still its lease",
            script.name
        );
        match end {
            End::Finishes => {
                gate.release(1);
                let status = script.guard.wait_exit(DEADLINE);
                let status = status.unwrap_or_else(|| panic!("{} did not finish", script.name));
                assert!(
                    status.success(),
                    "{}: {status}; {:?}",
                    script.name,
                    script.stderr()
                );
            }
            End::Killed => {
                script.guard.signal(Signal::SIGKILL);
                script.guard.wait_exit(DEADLINE).expect("killed");
            }
        }
        let ended = wait_for_end(&d, &lease);
        assert_eq!(
            ended["end_reason"], "owner_died",
            "{}: {ended}",
            script.name
        );
    }
}

#[test]
fn bash_scripts_own_their_leases_until_they_exit() {
    scripts_own_their_leases_while_they_live(Shell::Bash);
}

#[test]
fn dash_scripts_own_their_leases_until_they_exit() {
    scripts_own_their_leases_while_they_live(Shell::Dash);
}

#[test]
fn a_scripts_lease_survives_a_daemon_restart_and_still_ends_with_the_script() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let port = block.port(5);
    let gate = Gate::new(scratch.path("gate"));
    let body = format!(
        r#"PORT=$(portctl lease {port} --next) || exit 7
report "$PORT"
read go < "$GATE"
"#
    );
    let mut script = Script::spawn(Shell::Bash, &d, &scratch, "restart", Some(&gate), &body);
    let (pid, reported) = script.report();
    assert_eq!((pid, reported), (script.pid(), port.to_string()));
    let lease = lease_on(&d, port);

    d.kill9();
    d.restart();

    let who = portctl(&d, &["who", &port.to_string()]);
    who.expect(0);
    assert!(
        who.stdout
            .contains(&format!("leased to pid {}", script.pid())),
        "the lease outlived the daemon: {who}"
    );
    assert!(who.stdout.contains(id_of(&lease)), "{who}");

    script.guard.kill9();
    let ended = wait_for_end(&d, &lease);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    script.assert_quiet();
}

/// 40 live scripts ask for one port at once: one gets it, 39 hear exit 3
/// naming the winner.
#[test]
fn forty_scripts_racing_for_one_port_leave_one_winner() {
    const SCRIPTS: usize = 40;
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let port = block.port(7);
    let mut start = Gate::new(scratch.path("start"));
    let mut gate = Gate::new(scratch.path("end"));
    // Each script says it is ready, waits for the start, leases, reports
    // its exit code, and stays alive (as itself) until the test ends.
    let body = format!(
        r#": > "$OUT.ready"
read go < {start}
PORT=$(portctl lease {port})
report "$?"
read go < "$GATE"
"#,
        start = start.path().display()
    );
    let mut scripts: Vec<Script> = (0..SCRIPTS)
        .map(|i| {
            Script::spawn(
                Shell::Bash,
                &d,
                &scratch,
                &format!("racer{i}"),
                Some(&gate),
                &body,
            )
        })
        .collect();
    let all_ready = wait_until(DEADLINE, || {
        (0..SCRIPTS).all(|i| scratch.path(&format!("racer{i}.out.ready")).exists())
    });
    assert!(all_ready, "not every script started within {DEADLINE:?}");
    start.release(SCRIPTS);

    let mut winners = Vec::new();
    for script in &mut scripts {
        let (pid, code) = script.report();
        assert_eq!(pid, script.pid());
        match code.as_str() {
            "0" => winners.push(script.pid()),
            "3" => {}
            other => panic!("{} exited {other}: {:?}", script.name, script.stderr()),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0];
    assert_eq!(lease_on(&d, port)["owner"]["pid"], winner);
    for script in scripts.iter().filter(|s| s.pid() != winner) {
        let stderr = script.stderr();
        assert!(
            stderr.contains(&format!("pid {winner}")),
            "{}: exit 3 must name the owner (pid {winner}): {stderr:?}",
            script.name
        );
        assert!(!stderr.to_lowercase().contains("warning"), "{stderr:?}");
    }
    gate.release(SCRIPTS);
    for script in &mut scripts {
        script.guard.wait_exit(DEADLINE).expect("the script ends");
    }
}

/// The usual end of a start script: `exec` the server. The server is then
/// the script's process (same pid, same start time), so the lease stays
/// until the server exits. Asking twice for the same port is idempotent.
#[test]
fn a_script_that_execs_its_server_keeps_its_lease_until_the_server_exits() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let port = block.port(2);
    let mut gate = Gate::new(scratch.path("gate"));
    let body = format!(
        r#"A=$(portctl lease {port}) || exit 7
B=$(portctl lease {port}) || exit 8
report "$A $B"
read go < "$GATE"
exec sleep 60
"#
    );
    let mut script = Script::spawn(Shell::Dash, &d, &scratch, "exec", Some(&gate), &body);
    let (pid, reported) = script.report();
    assert_eq!(
        reported,
        format!("{port} {port}"),
        "asking again gives the same port"
    );
    let lease = lease_on(&d, port);
    assert_eq!(lease["owner"]["pid"], pid, "{lease}");
    let history = d.get("/v1/leases?all=true").json();
    assert_eq!(
        history["leases"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    gate.release(1);
    let execed = wait_until(DEADLINE, || {
        portd_e2e::procs::cmdline(pid)
            .is_some_and(|argv| argv.first().is_some_and(|a| a == "sleep"))
    });
    assert!(execed, "the script did not exec sleep");
    // An exec is no death: the lease stays (watched for a moment, long
    // against the daemon's reaction time to a real death).
    let ended_early = wait_until(Duration::from_millis(300), || {
        d.active_lease(port).is_none_or(|l| l["id"] != lease["id"])
    });
    assert!(
        !ended_early,
        "the lease ended at the exec: {:?}",
        d.lease_by_id(id_of(&lease))
    );

    script.guard.kill9();
    let ended = wait_for_end(&d, &lease);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    script.assert_quiet();
}
