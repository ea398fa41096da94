//! A command under a terminal: `portctl run` makes the command's process
//! group the terminal's foreground group, so it may read the keyboard (a
//! background group reading its terminal is stopped with SIGTTIN), and
//! gives the terminal back to its own group when the command exits.
//!
//! Two ways a user gets there: typing the command into an interactive shell
//! (job control: portctl is a foreground job of its own), and a start script
//! run in a terminal (no job control: portctl shares the script's group).
//! And two things a user does with a job: start it in the background (`&`:
//! it must leave the terminal to the shell), and suspend it with Ctrl-Z
//! (the whole job stops; `fg` resumes the command with the keyboard).

use portd_api::procstat::read_stat;
use portd_e2e::cli::script_path;
use portd_e2e::pty::Terminal;

use super::*;

/// Says who it is and whether it has the terminal, reads a line from it,
/// and prints the line back.
const TTY_PROBE_PY: &str = r#"
import os, sys
print(f"ready pid={os.getpid()} pgrp={os.getpgrp()} fg={os.tcgetpgrp(0)} :end", flush=True)
line = sys.stdin.readline()
print("child got: " + line.strip(), flush=True)
"#;

/// A daemon, a project with `tty_probe.py` in it, and a shell on a new
/// terminal in that project with this build's `portctl` on its PATH.
struct Setup {
    _block: PortBlock,
    d: TestDaemon,
    _scratch: Scratch,
    dir: PathBuf,
    port: u16,
    /// `portctl run --port PORT -- python3 tty_probe.py`
    run_line: String,
}

impl Setup {
    fn new() -> Setup {
        let (block, d, scratch, dir) = setup();
        let probe = dir.join("tty_probe.py");
        fs::write(&probe, TTY_PROBE_PY).expect("write tty_probe.py");
        let port = block.port(3);
        Setup {
            run_line: format!("portctl run --port {port} -- python3 {}", probe.display()),
            _block: block,
            d,
            _scratch: scratch,
            dir,
            port,
        }
    }

    /// `bash ARGS` as the leader of a session on a new terminal.
    fn shell(&self, args: &[&str]) -> Terminal {
        let mut cmd = Command::new("bash");
        cli::scrub(&mut cmd)
            .args(args)
            .current_dir(&self.dir)
            .env("PATH", script_path())
            .env("PORTD_SOCKET", self.d.socket())
            .env("PORTD_NO_AUTOSTART", "1")
            .env("TERM", "dumb")
            .env("PS1", "$ ")
            .env("HISTFILE", "");
        Terminal::spawn(&mut cmd)
    }

    /// An interactive shell (with job control) on a new terminal.
    fn interactive_shell(&self) -> Terminal {
        self.shell(&["--norc", "--noprofile", "-i"])
    }
}

/// The command as it reported itself, and its `portctl run`.
struct Ready {
    /// The command's pid.
    child: u32,
    /// The command's process group.
    pgrp: u32,
    /// The terminal's foreground group, as the command saw it.
    fg: u32,
    /// The `portctl run` that started it and owns its lease.
    portctl: u32,
    lease: Value,
    /// The command and its `portctl run`, killed when the test ends.
    _strays: Strays,
}

impl Ready {
    fn lease_id(&self) -> &str {
        self.lease["id"].as_str().expect("a lease id")
    }
}

/// Waits until the command has reported itself on `term`.
#[track_caller]
fn wait_ready(s: &Setup, term: &mut Terminal) -> Ready {
    assert!(
        term.wait_output(" :end", DEADLINE),
        "the command did not start; terminal: {:?}",
        term.output()
    );
    let output = term.output();
    let at = output.find("ready pid=").expect("the ready line");
    let line = output[at..].lines().next().expect("a line");
    let field = |key: &str| -> u32 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{key}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
    };
    let (child, pgrp, fg) = (field("pid"), field("pgrp"), field("fg"));
    let mut strays = Strays::default();
    strays.adopt_pid(child);
    let lease = s.d.active_lease(s.port);
    let lease = lease.expect("portctl run holds the port");
    let portctl = lease["owner"]["pid"].as_u64().expect("a pid") as u32;
    strays.adopt_pid(portctl);
    Ready {
        child,
        pgrp,
        fg,
        portctl,
        lease,
        _strays: strays,
    }
}

/// Asserts that `pid` is not stopped (by SIGTTOU, SIGTTIN).
#[track_caller]
fn assert_not_stopped(pid: u32, what: &str, term: &Terminal) {
    let state = read_stat(pid).map(|s| s.state).unwrap_or('?');
    assert_ne!(
        state,
        'T',
        "{what} (pid {pid}) is stopped; terminal: {:?}",
        term.output()
    );
}

/// Types a line for the command and checks that it read it, that the
/// command had the terminal, and that `portctl run` exited 0.
#[track_caller]
fn type_for_the_command(term: &mut Terminal, ready: &Ready) {
    let child = ready.child;
    assert_not_stopped(ready.portctl, "portctl run", term);
    assert_eq!(ready.pgrp, child, "the command leads its own group");
    assert_eq!(
        ready.fg,
        child,
        "the command's group has the terminal; terminal: {:?}",
        term.output()
    );
    assert_eq!(term.foreground_group(), Some(child));

    term.send("hello\n");
    let read = term.wait_output("child got: hello", DEADLINE);
    if !read {
        assert_not_stopped(child, "the command", term);
        panic!(
            "the command did not read its terminal; terminal: {:?}",
            term.output()
        );
    }
    assert!(
        term.wait_output("run exited 0", DEADLINE),
        "terminal: {:?}",
        term.output()
    );
}

/// Waits for the shell on `term` to exit 0, and asserts that the command's
/// lease was released.
#[track_caller]
fn assert_shell_exits_0_and_the_lease_is_released(s: &Setup, term: &mut Terminal, ready: &Ready) {
    let status = term.guard_mut().wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "terminal: {:?}",
        term.output()
    );
    assert_released(&s.d, ready.lease_id());
}

#[test]
fn a_command_typed_into_an_interactive_shell_gets_the_keyboard() {
    let s = Setup::new();
    let mut term = s.interactive_shell();
    term.send(&format!("{}; echo \"run exited $?\"\n", s.run_line));
    let ready = wait_ready(&s, &mut term);
    type_for_the_command(&mut term, &ready);

    term.send("exit\n");
    assert_shell_exits_0_and_the_lease_is_released(&s, &mut term, &ready);
}

#[test]
fn a_command_in_a_script_on_a_terminal_gets_the_keyboard_and_gives_it_back() {
    let s = Setup::new();
    // The script leads the terminal's session and runs portctl in its own
    // process group (no job control); after portctl it reads a line itself:
    // only possible once portctl gave the terminal back.
    let script = format!(
        "{}; echo \"run exited $?\"\nIFS= read -r line; echo \"outer got: $line\"",
        s.run_line
    );
    let mut term = s.shell(&["-c", &script]);
    let shell = term.pid();
    let ready = wait_ready(&s, &mut term);
    type_for_the_command(&mut term, &ready);

    assert_eq!(
        term.foreground_group(),
        Some(shell),
        "the terminal is given back to portctl's group (the script's); terminal: {:?}",
        term.output()
    );
    term.send("after\n");
    assert!(
        term.wait_output("outer got: after", DEADLINE),
        "the script could not read its terminal after portctl run; terminal: {:?}",
        term.output()
    );
    assert_shell_exits_0_and_the_lease_is_released(&s, &mut term, &ready);
}

/// `portctl run ... &` from an interactive shell: a background job must not
/// take the terminal from the shell (the shell would read EOF, and bash
/// tries to exit); its command stays in the background like any job's.
#[test]
fn a_command_started_in_the_background_leaves_the_terminal_to_the_shell() {
    let s = Setup::new();
    let mut term = s.interactive_shell();
    let shell = term.pid();
    term.send(&format!("{} &\n", s.run_line));
    let ready = wait_ready(&s, &mut term);
    assert_eq!(ready.pgrp, ready.child, "the command leads its own group");
    assert_eq!(
        ready.fg,
        shell,
        "a background portctl run gave its command the shell's terminal; terminal: {:?}",
        term.output()
    );
    assert_eq!(term.foreground_group(), Some(shell), "{:?}", term.output());
    // (Once the command reads the terminal, SIGTTIN stops it, and the job
    // with it, as any background job that reads: not checked here.)
    term.send("echo still-$((40+2))\n");
    assert!(
        term.wait_output("still-42", DEADLINE),
        "the shell lost its terminal; terminal: {:?}",
        term.output()
    );
    assert_eq!(term.foreground_group(), Some(shell), "{:?}", term.output());
}

/// Ctrl-Z stops the command (the terminal sends SIGTSTP to its group, which
/// is not portctl's): the whole job must stop, so the shell gets its
/// terminal back, and `fg` must resume the command with the keyboard.
#[test]
fn ctrl_z_suspends_the_job_and_fg_resumes_the_command() {
    let s = Setup::new();
    let mut term = s.interactive_shell();
    let shell = term.pid();
    term.send(&format!("{}\n", s.run_line));
    let ready = wait_ready(&s, &mut term);
    assert_not_stopped(ready.portctl, "portctl run", &term);

    term.send("\x1a");
    assert!(
        term.wait_output("Stopped", DEADLINE),
        "the shell did not see the job stop; terminal: {:?}",
        term.output()
    );
    assert_eq!(term.foreground_group(), Some(shell), "{:?}", term.output());
    term.send("echo still-$((40+2))\n");
    assert!(
        term.wait_output("still-42", DEADLINE),
        "the shell did not get its terminal back; terminal: {:?}",
        term.output()
    );

    term.send("fg; echo \"fg exited $?\"\n");
    let resumed = wait_until(DEADLINE, || term.foreground_group() == Some(ready.child));
    assert!(
        resumed,
        "fg did not give the command the terminal; terminal: {:?}",
        term.output()
    );
    term.send("hello\n");
    assert!(
        term.wait_output("child got: hello", DEADLINE),
        "the resumed command did not read its terminal; terminal: {:?}",
        term.output()
    );
    assert!(
        term.wait_output("fg exited 0", DEADLINE),
        "terminal: {:?}",
        term.output()
    );
    assert_released(&s.d, ready.lease_id());
}

/// Ctrl-Z where no shell can resume the job: portctl leads (or shares) an
/// orphaned process group, as under `tmux new-window 'portctl run ...'`,
/// `ssh -t`, `docker run -it` or a script run as the terminal's session
/// leader. The kernel ignores Ctrl-Z for such a group; with portctl in
/// between, the command stops, and nothing may leave it (or portctl)
/// stopped for good: the keyboard must still reach the command.
#[test]
fn ctrl_z_with_no_job_control_above_portctl_leaves_nothing_stopped() {
    let s = Setup::new();
    let script = format!("{}; echo \"run exited $?\"", s.run_line);
    let mut term = s.shell(&["-c", &script]);
    let ready = wait_ready(&s, &mut term);

    term.send("\x1a");
    // The terminal echoes ^Z once it has sent SIGTSTP to the command's
    // group; what is typed after it must reach the command: portctl may
    // neither stay stopped nor leave the command stopped.
    assert!(
        term.wait_output("^Z", DEADLINE),
        "no ^Z echoed; terminal: {:?}",
        term.output()
    );
    term.send("hello\n");
    assert!(
        term.wait_output("child got: hello", DEADLINE),
        "after Ctrl-Z: portctl {:?}, the command {:?}, the terminal's group {:?} \
         (the command's is {}); terminal: {:?}",
        read_stat(ready.portctl).map(|s| s.state),
        read_stat(ready.child).map(|s| s.state),
        term.foreground_group(),
        ready.child,
        term.output()
    );
    assert!(
        term.wait_output("run exited 0", DEADLINE),
        "terminal: {:?}",
        term.output()
    );
}
