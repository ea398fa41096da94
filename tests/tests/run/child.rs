//! What `portctl run` gives its command (PORT, PORTD_LEASE, placeholders
//! expanded, a process group of its own), the lease it holds around it, and
//! how it exits: with the command's code, or by the command's signal.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::Signal;
use portd_api::procstat::read_stat;

use super::*;

#[test]
fn the_command_gets_its_port_and_tag_and_portctl_exits_with_its_code() {
    let (block, d, scratch, dir) = setup();
    let mut gate = Gate::new(scratch.path("gate"));
    let probe = Probe::new(&scratch, "child").gate(&gate).exit(7);
    let range = block.sub_range(5, 5).to_string();
    let cmd = run_probe(
        &d,
        &dir,
        &[
            "--range",
            &range,
            "--env",
            "SELF={port}",
            "--env",
            "URL=http://localhost:{port}/x?p={port}",
            "--env",
            "ODD={host}:{portx}:{port",
        ],
        &probe,
        &["--port={port}", "{port}", "{host}", "{port:x}", "{port"],
    );
    let mut run = Running::start(cmd, &probe, &scratch, "child");
    let port = run.port();
    let p = port.to_string();
    assert!(block.sub_range(5, 5).contains(port), "{port} is in --range");

    // While the command runs, portctl run owns the lease the command is
    // tagged with.
    let lease = d
        .active_lease(port)
        .expect("a lease while the command runs");
    assert_eq!(lease["id"], run.lease_id(), "PORTD_LEASE names the lease");
    assert_eq!(
        lease["owner"]["pid"],
        run.pid(),
        "portctl run owns it: {lease}"
    );
    assert_eq!(lease["project"], dir.to_str().unwrap(), "{lease}");
    assert_eq!(
        run.facts["ppid"],
        run.pid(),
        "the command is portctl's child"
    );

    // Placeholders: {port} everywhere, anything else left as written.
    assert_eq!(
        run.facts["argv"],
        serde_json::json!([format!("--port={p}"), p, "{host}", "{port:x}", "{port"]),
    );
    assert_eq!(env_of(&run.facts, "SELF"), p);
    assert_eq!(
        env_of(&run.facts, "URL"),
        format!("http://localhost:{p}/x?p={p}")
    );
    assert_eq!(env_of(&run.facts, "ODD"), "{host}:{portx}:{port");

    // Its own process group, not portctl's.
    let child = read_stat(run.child.pid).expect("the command runs");
    let parent = read_stat(run.pid()).expect("portctl runs");
    assert_eq!(child.pgrp, run.child.pid, "the command leads its own group");
    assert_ne!(child.pgrp, parent.pgrp, "not portctl's group");
    assert_eq!(run.facts["pgrp"], run.child.pid);

    gate.release(1);
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(7), "the command's exit code: {status}");
    assert_released(&d, &run.lease_id());
    assert_no_active_lease(&d);
}

#[test]
fn a_command_killed_by_a_signal_takes_portctl_with_it() {
    let (block, d, scratch, dir) = setup();
    // SIGPIPE too, which portctl (as any Rust program) ignores.
    for signal in [Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGPIPE] {
        let probe = Probe::new(&scratch, signal.as_str()).kill_self(signal.as_str());
        let range = block.sub_range(0, 5).to_string();
        let done = finish(&mut run_probe(&d, &dir, &["--range", &range], &probe, &[]));
        assert_eq!(
            done.status.signal(),
            Some(signal as i32),
            "portctl re-raises {signal}: {done}"
        );
        let facts = probe.facts().expect("the command ran");
        assert_released(&d, &env_of(&facts, portd_api::LEASE_ENV));
    }
    assert_no_active_lease(&d);
}

#[test]
fn port_at_name_is_the_port_of_that_name_in_the_same_project() {
    let (_block, d, scratch, dir) = setup();
    let elsewhere = project(&scratch, "other");

    let mut gate = Gate::new(scratch.path("gate"));
    let api_probe = Probe::new(&scratch, "api").gate(&gate);
    let cmd = run_probe(&d, &dir, &["--name", "api"], &api_probe, &[]);
    let mut api = Running::start(cmd, &api_probe, &scratch, "api");
    let api_port = api.port().to_string();

    // While api's lease is active.
    let web_args = [
        "--name",
        "web",
        "--env",
        "API_URL=http://localhost:{port@api}",
    ];
    let web = Probe::new(&scratch, "web-1");
    let done = finish(&mut run_probe(
        &d,
        &dir,
        &web_args,
        &web,
        &["{port@api}", "{port}"],
    ));
    done.expect(0);
    let facts = web.facts().expect("web ran");
    let web_port = env_of(&facts, "PORT");
    assert_ne!(web_port, api_port, "two names, two ports");
    assert_eq!(
        env_of(&facts, "API_URL"),
        format!("http://localhost:{api_port}")
    );
    assert_eq!(facts["argv"], serde_json::json!([api_port, web_port]));

    // Another project has no api: exit 4, the command never starts, and the
    // lease taken for it is released.
    let stranger = Probe::new(&scratch, "stranger");
    let done = finish(&mut run_probe(
        &d,
        &elsewhere,
        &["--name", "web"],
        &stranger,
        &["{port@api}"],
    ));
    done.expect(4);
    assert!(done.stderr.contains("api"), "names what is missing: {done}");
    assert!(stranger.facts().is_none(), "the command must not start");

    // After api's lease ended, its remembered port still resolves.
    gate.release(1);
    assert_eq!(api.wait_exit().code(), Some(0));
    d.wait_lease_ended(&api.lease_id(), DEADLINE);
    let later = Probe::new(&scratch, "web-2");
    finish(&mut run_probe(&d, &dir, &web_args, &later, &[])).expect(0);
    let facts = later.facts().expect("web ran again");
    assert_eq!(
        env_of(&facts, "API_URL"),
        format!("http://localhost:{api_port}")
    );

    // A name nobody ever leased: exit 4, nothing started, nothing held.
    let nobody = Probe::new(&scratch, "nobody");
    let done = finish(&mut run_probe(
        &d,
        &dir,
        &["--env", "X={port@nobody}"],
        &nobody,
        &[],
    ));
    done.expect(4);
    assert!(done.stderr.contains("nobody"), "{done}");
    assert!(nobody.facts().is_none(), "the command must not start");
    assert_no_active_lease(&d);
}
