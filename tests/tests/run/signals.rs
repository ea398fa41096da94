//! Signals: the four that `portctl run` forwards reach the command, and a
//! `portctl run` killed outright loses its lease while portd reaps the
//! command it left listening.

use nix::sys::signal::Signal;
use portd_e2e::servers::{Listener, wait_pid_file};

use super::*;

#[test]
fn int_term_hup_and_quit_sent_to_portctl_reach_the_command() {
    let (_block, d, scratch, dir) = setup();
    // The command never gets its gate: only the signal ends it.
    let gate = Gate::new(scratch.path("gate"));
    let signals = [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ];
    let mut runs: Vec<(Signal, PathBuf, Running)> = signals
        .iter()
        .map(|&signal| {
            let name = signal.as_str();
            let log = scratch.path(&format!("{name}.log"));
            let probe = Probe::new(&scratch, name)
                .gate(&gate)
                .log_signals(&log)
                .exit(3);
            let cmd = run_probe(&d, &dir, &[], &probe, &[]);
            (signal, log, Running::start(cmd, &probe, &scratch, name))
        })
        .collect();

    for (signal, _, run) in &mut runs {
        run.portctl.signal(*signal);
    }
    for (signal, log, run) in &mut runs {
        let status = run.wait_exit();
        assert_eq!(
            status.code(),
            Some(3),
            "portctl exits with the command's code after {signal}: {status}"
        );
        assert_eq!(
            fs::read_to_string(&*log).unwrap_or_default(),
            signal.as_str(),
            "the command got {signal}"
        );
        assert_released(&d, &run.lease_id());
    }
    assert_no_active_lease(&d);
}

#[test]
fn a_sigkilled_portctl_loses_its_lease_and_portd_reaps_its_server() {
    let (block, d, scratch, dir) = setup();
    let port = block.port(4);
    let pid_file = scratch.path("server.pid");
    let signal_log = scratch.path("server.signals");
    let server = Listener::new(port, &pid_file).log_signals(&signal_log);

    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--port", &port.to_string(), "--"])
        .args(server.argv())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = ChildGuard::spawn(&mut cmd);
    let pids = wait_pid_file(&pid_file, || run.is_running());
    let mut strays = Strays::default();
    let child = strays.adopt_pid(pids[0]);

    let lease = d.active_lease(port).expect("portctl run leased the port");
    let id = lease["id"].as_str().expect("a lease id").to_string();
    assert_eq!(lease["owner"]["pid"], run.pid(), "{lease}");
    let environ = fs::read(format!("/proc/{}/environ", child.pid)).expect("read environ");
    let tag = format!("{}={id}", portd_api::LEASE_ENV);
    assert!(
        environ.split(|b| *b == 0).any(|var| var == tag.as_bytes()),
        "the server carries the tag {tag}"
    );

    run.kill9();
    let ended = d.wait_lease_ended(&id, DEADLINE);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    assert!(
        child.wait_gone(DEADLINE),
        "portd did not reap the orphaned server (pid {}); log:\n{}",
        child.pid,
        d.log()
    );
    assert_eq!(
        fs::read_to_string(&signal_log).unwrap_or_default().trim(),
        "SIGTERM",
        "reaped with SIGTERM first"
    );
    d.wait_event("reaped", child.pid, DEADLINE);
    assert_port_free("127.0.0.1", port);
    assert_no_active_lease(&d);
}
