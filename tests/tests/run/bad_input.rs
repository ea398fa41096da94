//! `portctl run` that cannot start its command: no command (2), a command
//! not found (127), a file that cannot be executed (126). A lease taken for
//! it is released either way.

use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn no_command_after_the_dashes_is_a_usage_error() {
    let (block, d, _scratch, dir) = setup();
    let port = block.port(2).to_string();
    let done = finish(portctl(&d, &dir).args(["run", "--port", &port, "--"]));
    done.expect(2);
    let done = finish(portctl(&d, &dir).args(["run", "--port", &port]));
    done.expect(2);
    let all = d.get("/v1/leases?all=true").json();
    assert_eq!(all["leases"], serde_json::json!([]), "nothing was leased");
}

#[test]
fn a_command_that_cannot_run_exits_126_or_127_and_releases_the_port() {
    let (block, d, scratch, dir) = setup();
    let port = block.port(2).to_string();
    let not_executable = scratch.path("server.sh");
    fs::write(&not_executable, "#!/bin/sh\nexit 0\n").expect("write a script");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
    let not_executable = not_executable.to_str().expect("a UTF-8 path");
    let directory = dir.to_str().expect("a UTF-8 path");

    let cases: [(&[&str], &str, i32); 5] = [
        (&[], "/nonexistent/portd-e2e/server", 127),
        (&[], "portd-e2e-no-such-command", 127),
        (&[], not_executable, 126),
        (&[], directory, 126),
        // Through the --listen-fd shim, which execs after the fork.
        (&["--listen-fd"], "/nonexistent/portd-e2e/server", 127),
    ];
    for (flags, program, code) in cases {
        let mut cmd = portctl(&d, &dir);
        cmd.args(["run", "--port", &port])
            .args(flags)
            .args(["--", program, "{port}"]);
        let done = finish(&mut cmd);
        done.expect(code);
        assert!(
            done.stderr
                .contains(program.rsplit('/').next().unwrap_or(program)),
            "stderr names the command: {done}"
        );
        assert_no_active_lease(&d);
    }
    // Every one of them held the port, and released it.
    let all = d.get("/v1/leases?all=true").json();
    let leases = all["leases"].as_array().expect("a list of leases");
    assert_eq!(leases.len(), cases.len(), "{all}");
    for lease in leases {
        assert_eq!(lease["end_reason"], "released", "{lease}");
        assert_eq!(port_of(lease).to_string(), port);
    }
}
