//! `eval "$(portctl lease ... --shell)"` and `eval "$(portctl env ...)"` in
//! bash and dash: one `export` per line when it works; when it does not,
//! the eval fails with portctl's exit code, so a `set -e` script stops at
//! that line with portctl's message on stderr, and an interactive shell
//! lives on.

use std::time::Duration;

use portd_e2e::pty::Terminal;
use portd_e2e::servers::shell_quote;

use super::*;

/// Runs `line` under `set -e` in `shell`; the script reports (and waits at
/// the gate) only if it gets past the line. Returns the script.
fn set_e_script(shell: Shell, d: &TestDaemon, scratch: &Scratch, name: &str, line: &str) -> Script {
    let body = format!("set -e\n{line}\nreport \"PORT=$PORT\"\n");
    Script::spawn(shell, d, scratch, name, None, &body)
}

/// Waits for `script` to end; asserts that it stopped with `code` before
/// its `report`, and that stderr says `said`.
#[track_caller]
fn assert_stopped(script: &mut Script, code: i32, said: &str) {
    let status = script
        .guard
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("script {} still runs", script.name));
    assert!(
        !script.out.exists(),
        "script {} ran on past the failed eval: {:?}",
        script.name,
        fs::read_to_string(&script.out)
    );
    assert_eq!(
        status.code(),
        Some(code),
        "script {}: {status}; stderr: {:?}",
        script.name,
        script.stderr()
    );
    let stderr = script.stderr();
    assert!(
        stderr.contains(said),
        "script {}: stderr lacks {said:?}: {stderr:?}",
        script.name
    );
}

#[test]
fn a_set_e_script_stops_at_the_eval_of_a_refused_lease_in_bash_and_dash() {
    let (_block, d, scratch, project) = setup();
    let holder = ChildGuard::sleep(60);
    lease_named(&d, "api", &project, &holder, &[]).expect(0);
    let project = shell_quote(&project);

    for shell in [Shell::Bash, Shell::Dash] {
        let sh = shell.program();
        // The name is held by another live owner: exit 3, naming it.
        let mut taken = set_e_script(
            shell,
            &d,
            &scratch,
            &format!("taken-{sh}"),
            &format!(r#"eval "$(portctl lease --name api --project {project} --shell)""#),
        );
        assert_stopped(
            &mut taken,
            3,
            &format!("name 'api' is leased on port {}", name_port(&d, "api")),
        );
        assert!(taken.stderr().contains(&format!("pid {}", holder.pid())));

        // `env` in its shell format: no such lease, exit 4.
        let mut absent = set_e_script(
            shell,
            &d,
            &scratch,
            &format!("absent-{sh}"),
            &format!(r#"eval "$(portctl env --name nope --project {project})""#),
        );
        assert_stopped(&mut absent, 4, "no active lease named 'nope'");

        // A usage error fails the eval too.
        let mut usage = set_e_script(
            shell,
            &d,
            &scratch,
            &format!("usage-{sh}"),
            r#"eval "$(portctl lease --shell --colour red)""#,
        );
        assert_stopped(&mut usage, 2, "--colour");
    }
}

/// The port of the active lease `name` holds.
fn name_port(d: &TestDaemon, name: &str) -> u16 {
    let list = d.get("/v1/leases").json();
    let lease = list["leases"]
        .as_array()
        .expect("a list of leases")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no lease named {name}: {list}"))
        .clone();
    port_of(&lease)
}

#[test]
fn an_eval_that_works_exports_port_and_tag_to_the_scripts_children() {
    let (block, d, scratch, project) = setup();
    let mut gate = Gate::new(scratch.path("gate"));
    let project = shell_quote(&project);
    for (i, shell) in [Shell::Bash, Shell::Dash].into_iter().enumerate() {
        let sh = shell.program();
        // A port each: a scan for the second would skip the first's home
        // and say so on stderr, which this test wants quiet.
        let port = block.port(10 + i as u16);
        let body = format!(
            r#"set -e
out=$(portctl lease {port} --name web-{sh} --project {project} --shell)
eval "$out"
report "$(printf '%s' "$out" | wc -l) $(sh -c 'echo "$PORT $PORTD_LEASE"')"
read go < "$GATE"
"#
        );
        let mut script =
            Script::spawn(shell, &d, &scratch, &format!("ok-{sh}"), Some(&gate), &body);
        let (pid, reported) = script.report();
        let words: Vec<&str> = reported.split_whitespace().collect();
        let [newlines, port, id] = words[..] else {
            panic!("{sh}: odd report {reported:?}");
        };
        // Two lines: `wc -l` counts the newline between them.
        assert_eq!(newlines, "1", "{sh}: one export per line");
        let lease = lease_on(&d, port.parse().expect("a port"));
        assert_eq!(lease["id"], id, "{sh}: {lease}");
        assert_eq!(lease["owner"]["pid"], pid, "{sh}: the script owns it");
        script.assert_quiet();
        gate.release(1);
        assert_eq!(
            script.guard.wait_exit(DEADLINE).and_then(|s| s.code()),
            Some(0),
            "{sh}"
        );
    }
}

#[test]
fn an_interactive_bash_survives_a_refused_eval_and_sees_its_exit_code() {
    let (_block, d, _scratch, project) = setup();
    let holder = ChildGuard::sleep(60);
    lease_named(&d, "api", &project, &holder, &[]).expect(0);

    let mut bash = Command::new("bash");
    cli::scrub(&mut bash)
        .args(["--norc", "--noprofile", "-i"])
        .current_dir(&project)
        .env("PATH", script_path())
        .env("PORTD_SOCKET", d.socket())
        .env("PORTD_NO_AUTOSTART", "1")
        .env("PS1", "$ ")
        .env("TERM", "dumb");
    let mut term = Terminal::spawn(&mut bash);
    let timeout = Duration::from_secs(20);
    // The terminal echoes what is typed; only the shell's expansion of
    // `$?` and `$((...))` proves that it ran the line.
    term.send("eval \"$(portctl lease --name api --shell)\"; echo \"status=$? port=[$PORT]\"\n");
    assert!(
        term.wait_output("status=3 port=[]", timeout),
        "the eval did not fail with 3: {}",
        term.output()
    );
    assert!(
        term.output().contains("name 'api' is leased"),
        "portctl's message reached the terminal: {}",
        term.output()
    );
    term.send("echo alive-$((6 * 7))\n");
    assert!(
        term.wait_output("alive-42", timeout),
        "the shell did not run the next line: {}",
        term.output()
    );
    assert!(
        term.guard_mut().is_running(),
        "the interactive shell exited"
    );
}
