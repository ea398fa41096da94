//! `portctl run`, `wait` and `env` end to end (issue 4), and the two-service
//! script in `examples/dev.sh`: the real `portd` and `portctl`, real child
//! processes that report what they were given, real signals, real ports.
//!
//! Every test reserves its own block of ports and starts its own daemon on
//! it (with a short reap grace); `portctl` runs with autostart off, aimed at
//! that daemon, in a project directory of the test's own. Every process a
//! test learns of (a `portctl run`, the command it started) is killed when
//! the test ends, whatever happened to it.
//!
//! - `child`: what the command gets (PORT, PORTD_LEASE, placeholders, its
//!   own process group), the lease around it, and portctl's exit status.
//! - `signals`: signals forwarded to the command; a SIGKILLed `portctl run`.
//! - `projects`: names per project (runs, daemon restarts, git worktrees).
//! - `lease_ends`: however a lease ends, nothing of it serves its port
//!   without a lease (uvicorn --reload, a backgrounded server, nginx).
//! - `listen_fd`: `--listen-fd` (systemd-style socket passing).
//! - `terminal`: a command under a terminal gets the keyboard and gives it
//!   back.
//! - `bad_input`: usage errors, commands not found or not executable.
//! - `wait_env`: `portctl wait` and `portctl env`.
//! - `dev_script`: `examples/dev.sh`, started and stopped with Ctrl-C.

mod bad_input;
mod child;
mod dev_script;
mod lease_ends;
mod listen_fd;
mod projects;
mod signals;
mod terminal;
mod wait_env;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use portd_e2e::cli::{self, Gate};
use portd_e2e::ports::assert_port_free;
use portd_e2e::servers::{ProcId, Scratch, Strays, python};
use portd_e2e::{ChildGuard, Done, PortBlock, TestDaemon, wait_for, wait_until};
use serde_json::Value;

/// How long a command may take to start and report, and the daemon to
/// notice a death.
const DEADLINE: Duration = Duration::from_secs(10);
/// The longest one `portctl` call that should return by itself may take.
const PORTCTL_TIMEOUT: Duration = Duration::from_secs(20);

/// A daemon on `block` with a 500 ms reap grace (the SIGKILL test waits for
/// a reap; the others never reap).
fn daemon(block: &PortBlock) -> TestDaemon {
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "500ms"]).launch();
    d
}

/// What most tests start with: a block of ports, a [`daemon`] on it, a
/// scratch directory, and the [`project`] `app` in it.
fn setup() -> (PortBlock, TestDaemon, Scratch, PathBuf) {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let dir = project(&scratch, "app");
    (block, d, scratch, dir)
}

/// A git worktree root named `name` in `scratch` (it has a `.git`
/// directory), canonical: what `portctl` reports as its project.
fn project(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.path(name);
    fs::create_dir_all(dir.join(".git")).expect("create a project dir");
    dir.canonicalize().expect("canonical project dir")
}

/// `portctl` aimed at `d` (autostart off, untagged), run in `dir`, so a
/// name it leases lives in `dir`'s project.
fn portctl(d: &TestDaemon, dir: &Path) -> Command {
    let mut cmd = cli::portctl(d.socket());
    cmd.current_dir(dir);
    cmd
}

/// `probe.py`: the command under test. It writes what it was given (pid,
/// parent, process group, argv, environment; with `PROBE_LISTEN_FD`, what
/// fd 3 is) as JSON to `$PROBE_OUT`, atomically, once it is ready; then
/// answers one connection on fd 3 (with `PROBE_LISTEN_FD`), waits for a line
/// on the FIFO `$PROBE_GATE` (if set), and exits with `$PROBE_EXIT` or kills
/// itself with signal `$PROBE_KILL`. With `$PROBE_SIGNALS`, SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT write their name to that file and exit with
/// `$PROBE_EXIT`.
const PROBE_PY: &str = r#"
import json, os, signal, socket, sys

def note(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)

env = os.environ
code = int(env.get("PROBE_EXIT", "0"))
if env.get("PROBE_SIGNALS"):
    def on_signal(number, frame):
        note(env["PROBE_SIGNALS"], signal.Signals(number).name)
        os._exit(code)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, on_signal)
facts = {
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "pgrp": os.getpgrp(),
    "argv": sys.argv[1:],
    "env": dict(env),
}
listener = None
if env.get("PROBE_LISTEN_FD"):
    listener = socket.socket(fileno=3)
    facts["fd3"] = {
        "port": listener.getsockname()[1],
        "listening": listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
        "inode": os.fstat(3).st_ino,
    }
note(env["PROBE_OUT"], json.dumps(facts))
if listener:
    conn, _ = listener.accept()
    conn.sendall(b"hello from fd 3\n")
    conn.close()
if env.get("PROBE_GATE"):
    # A byte at a time, as the shells read: each line lets one probe through.
    gate = os.open(env["PROBE_GATE"], os.O_RDONLY)
    while os.read(gate, 1) not in (b"\n", b""):
        pass
if env.get("PROBE_KILL"):
    # Python ignores SIGPIPE: the signal's default action, whichever it is.
    signal.signal(getattr(signal, env["PROBE_KILL"]), signal.SIG_DFL)
    os.kill(os.getpid(), getattr(signal, env["PROBE_KILL"]))
sys.exit(code)
"#;

/// One run of `probe.py` and how it should behave.
struct Probe {
    script: PathBuf,
    out: PathBuf,
    envs: Vec<(&'static str, OsString)>,
}

impl Probe {
    /// A probe that reports to `NAME.json` in `scratch` and exits 0.
    fn new(scratch: &Scratch, name: &str) -> Probe {
        let script = scratch.path("probe.py");
        if !script.exists() {
            fs::write(&script, PROBE_PY).expect("write probe.py");
        }
        let out = scratch.path(&format!("{name}.json"));
        Probe {
            script,
            envs: vec![("PROBE_OUT", out.clone().into())],
            out,
        }
    }

    /// Waits for a line on `gate` before it exits.
    fn gate(mut self, gate: &Gate) -> Probe {
        self.envs.push(("PROBE_GATE", gate.path().into()));
        self
    }

    fn exit(mut self, code: i32) -> Probe {
        self.envs.push(("PROBE_EXIT", code.to_string().into()));
        self
    }

    /// Kills itself with `signal` (a name, e.g. "SIGTERM") at the end.
    fn kill_self(mut self, signal: &str) -> Probe {
        self.envs.push(("PROBE_KILL", signal.into()));
        self
    }

    /// Writes the name of the forwarded signal that reached it to `log`.
    fn log_signals(mut self, log: &Path) -> Probe {
        self.envs.push(("PROBE_SIGNALS", log.into()));
        self
    }

    /// Takes fd 3 as a listening socket and answers one connection on it.
    fn listen_fd(mut self) -> Probe {
        self.envs.push(("PROBE_LISTEN_FD", "1".into()));
        self
    }

    /// `python3 probe.py`.
    fn argv(&self) -> [OsString; 2] {
        [python().into(), self.script.clone().into()]
    }

    /// What the probe reported, if it has.
    fn facts(&self) -> Option<Value> {
        let text = fs::read_to_string(&self.out).ok()?;
        Some(serde_json::from_str(&text).expect("probe.py writes JSON"))
    }
}

/// `portctl run ARGS -- python3 probe.py EXTRA...` in `dir`, with the
/// probe's settings in the environment portctl passes on.
fn run_probe(d: &TestDaemon, dir: &Path, args: &[&str], probe: &Probe, extra: &[&str]) -> Command {
    let mut cmd = portctl(d, dir);
    cmd.arg("run")
        .args(args)
        .arg("--")
        .args(probe.argv())
        .args(extra);
    for (key, value) in &probe.envs {
        cmd.env(key, value);
    }
    cmd
}

/// Runs `cmd` to completion (within [`PORTCTL_TIMEOUT`]).
fn finish(cmd: &mut Command) -> Done {
    portd_e2e::finish(cmd, PORTCTL_TIMEOUT)
}

/// A `portctl run` of a probe, started in the background, once the probe
/// has reported. Dropping it SIGKILLs both.
struct Running {
    /// Declared first, so dropped first: the owner goes before its child.
    portctl: ChildGuard,
    /// The probe's report.
    facts: Value,
    /// The probe process.
    child: ProcId,
    stderr: PathBuf,
    _strays: Strays,
}

impl Running {
    /// Starts `cmd` (from [`run_probe`]), its stderr to `NAME.err` in
    /// `scratch`, and waits for `probe`'s report.
    #[track_caller]
    fn start(mut cmd: Command, probe: &Probe, scratch: &Scratch, name: &str) -> Running {
        let stderr = scratch.path(&format!("{name}.err"));
        cmd.stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create a stderr file"));
        let mut portctl = ChildGuard::spawn(&mut cmd);
        let facts = wait_for(DEADLINE, || {
            if let Some(facts) = probe.facts() {
                return Some(Ok(facts));
            }
            (!portctl.is_running()).then_some(Err(()))
        });
        let facts = match facts {
            Some(Ok(facts)) => facts,
            Some(Err(())) => panic!(
                "{name}: portctl run exited before its command reported; stderr: {:?}",
                fs::read_to_string(&stderr).unwrap_or_default()
            ),
            None => panic!("{name}: the command did not report within {DEADLINE:?}"),
        };
        let mut strays = Strays::default();
        let child = strays.adopt_pid(pid_in(&facts));
        Running {
            portctl,
            facts,
            child,
            stderr,
            _strays: strays,
        }
    }

    fn pid(&self) -> u32 {
        self.portctl.pid()
    }

    /// `PORT` as the command got it.
    fn port(&self) -> u16 {
        env_of(&self.facts, "PORT")
            .parse()
            .expect("PORT is a number")
    }

    /// `PORTD_LEASE` as the command got it.
    fn lease_id(&self) -> String {
        env_of(&self.facts, portd_api::LEASE_ENV)
    }

    /// Waits for `portctl run` to exit; panics after [`DEADLINE`].
    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        self.portctl.wait_exit(DEADLINE).unwrap_or_else(|| {
            panic!(
                "portctl run still runs after {DEADLINE:?}; stderr: {:?}",
                fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        })
    }
}

/// The pid a probe reported.
fn pid_in(facts: &Value) -> u32 {
    facts["pid"].as_u64().expect("a pid") as u32
}

/// Variable `key` of a probe's environment; panics if it is unset.
#[track_caller]
fn env_of(facts: &Value, key: &str) -> String {
    facts["env"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the command got no {key}: {}", facts["env"]))
        .to_string()
}

/// The daemon's active leases.
fn active_leases(d: &TestDaemon) -> Vec<Value> {
    let answer = d.get("/v1/leases");
    assert_eq!(answer.status, 200, "GET /v1/leases: {}", answer.body);
    answer.json()["leases"]
        .as_array()
        .expect("a list of leases")
        .clone()
}

/// Waits until lease `id` has ended; asserts that it was released (not
/// ended by a death).
#[track_caller]
fn assert_released(d: &TestDaemon, id: &str) {
    let ended = d.wait_lease_ended(id, DEADLINE);
    assert_eq!(ended["end_reason"], "released", "{ended}");
}

/// Asserts that no lease is active (every one the test's runs took ended).
#[track_caller]
fn assert_no_active_lease(d: &TestDaemon) {
    let leases = active_leases(d);
    assert!(leases.is_empty(), "active leases remain: {leases:?}");
}

/// The port of a lease.
fn port_of(lease: &Value) -> u16 {
    lease["port"].as_u64().expect("a port") as u16
}
