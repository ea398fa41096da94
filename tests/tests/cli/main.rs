//! `portctl` end to end: the real `portctl` and `portd` binaries, run as a
//! user and their start scripts run them, and what they see: stdout, stderr,
//! exit codes, and the leases the daemon then holds.
//!
//! Every test reserves its own block of ports and starts its own daemon on
//! it (autostart tests: their own fresh socket, leasing only inside their
//! block with `--range`). Every `portctl` call asserts that it printed no
//! version warning: client and daemon come from one build.
//!
//! - `owners`: whose lease it is when a bash or dash script leases, and that
//!   it lives exactly as long as the script (also across a daemon restart,
//!   and with 40 scripts racing for one port).
//! - `lease`: `portctl lease` output and exit codes.
//! - `verbs`: `release`, `ls`, `status`, `env`, `who`.
//! - `names`: `--name` remembering its port per project.
//! - `shell`: `eval "$(portctl lease --shell)"` in bash and dash scripts
//!   under `set -e`, and in an interactive bash on a terminal.
//! - `autostart`: a daemon started by `portctl` when nothing answers.

mod autostart;
mod lease;
mod names;
mod owners;
mod shell;
mod verbs;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use portd_e2e::cli::{Gate, script_path};
use portd_e2e::servers::Scratch;
use portd_e2e::{ChildGuard, Done, PortBlock, TestDaemon, cli, finish, output_within, wait_until};
use serde_json::Value;

/// How long the daemon may take to notice a death or an expiry, and a
/// script to get its lease.
const DEADLINE: Duration = Duration::from_secs(10);
/// The longest one `portctl` call may take.
const PORTCTL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `cmd` to completion, named `what` in messages; asserts that
/// nothing on stderr warns (of a version mismatch or anything else).
#[track_caller]
fn run(cmd: &mut Command, what: String) -> Done {
    let run = Done {
        what,
        ..finish(cmd, PORTCTL_TIMEOUT)
    };
    assert!(
        !run.stderr.to_lowercase().contains("warning"),
        "portctl warned: {run}"
    );
    run
}

/// `portctl ARGS` against `d` (autostart off); run from the test, so a
/// lease it takes without `--owner` belongs to the test process.
#[track_caller]
fn portctl(d: &TestDaemon, args: &[&str]) -> Done {
    run(
        cli::portctl(d.socket()).args(args).current_dir("/tmp"),
        format!("portctl {}", args.join(" ")),
    )
}

/// The active lease on `port`; panics if there is none.
#[track_caller]
fn lease_on(d: &TestDaemon, port: u16) -> Value {
    d.active_lease(port)
        .unwrap_or_else(|| panic!("no active lease on {port}"))
}

/// The id of `lease`.
fn id_of(lease: &Value) -> &str {
    lease["id"].as_str().expect("a lease id")
}

/// Waits until `lease` has ended; returns it as the history shows it.
#[track_caller]
fn wait_for_end(d: &TestDaemon, lease: &Value) -> Value {
    d.wait_lease_ended(id_of(lease), DEADLINE)
}

/// `portctl lease EXTRA... --name NAME --project DIR --owner PID`.
#[track_caller]
fn lease_named(
    d: &TestDaemon,
    name: &str,
    project: &str,
    owner: &ChildGuard,
    extra: &[&str],
) -> Done {
    let pid = owner.pid().to_string();
    let mut args = vec!["lease"];
    args.extend_from_slice(extra);
    args.extend(["--name", name, "--project", project, "--owner", &pid]);
    portctl(d, &args)
}

/// The shells start scripts are written for.
#[derive(Debug, Clone, Copy)]
enum Shell {
    Bash,
    Dash,
}

impl Shell {
    fn program(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Dash => "dash",
        }
    }
}

/// Defined for every script: `report VALUE` writes "$$ VALUE" to `$OUT`
/// atomically, so the test learns the script's own pid and its result.
const PRELUDE: &str = r#"report() { echo "$$ $1" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"; }
"#;

/// A start script run by `bash FILE` or `dash FILE` against one daemon:
/// `portctl` on its PATH, autostart off, cwd in the scratch directory,
/// stderr to `NAME.err`; `$OUT` for [`PRELUDE`]'s `report`, `$GATE` for
/// its gate.
struct Script {
    guard: ChildGuard,
    name: String,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Script {
    fn spawn(
        shell: Shell,
        d: &TestDaemon,
        scratch: &Scratch,
        name: &str,
        gate: Option<&Gate>,
        body: &str,
    ) -> Script {
        let file = scratch.path(&format!("{name}.sh"));
        fs::write(&file, format!("{PRELUDE}{body}")).expect("write the script");
        let out = scratch.path(&format!("{name}.out"));
        let err = scratch.path(&format!("{name}.err"));
        let mut cmd = Command::new(shell.program());
        cli::scrub(&mut cmd)
            .arg(&file)
            .current_dir(file.parent().expect("the scratch dir"))
            .env("PATH", script_path())
            .env("PORTD_SOCKET", d.socket())
            .env("PORTD_NO_AUTOSTART", "1")
            .env("OUT", &out)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).expect("create the script's stderr"));
        if let Some(gate) = gate {
            cmd.env("GATE", gate.path());
        }
        Script {
            guard: ChildGuard::spawn(&mut cmd),
            name: name.to_string(),
            out,
            err,
        }
    }

    fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// What the script wrote to stderr so far.
    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the script's `report`: its `$$` and the value. Panics if
    /// the script exits first or takes longer than [`DEADLINE`].
    #[track_caller]
    fn report(&mut self) -> (u32, String) {
        let out = &self.out;
        let guard = &mut self.guard;
        let text = portd_e2e::wait_for(DEADLINE, || {
            if let Ok(text) = fs::read_to_string(out) {
                return Some(Ok(text));
            }
            (!guard.is_running()).then_some(Err(()))
        });
        let text = match text {
            Some(Ok(text)) => text,
            Some(Err(())) => panic!(
                "script {} exited before it reported; stderr: {:?}",
                self.name,
                self.stderr()
            ),
            None => panic!(
                "script {} did not report within {DEADLINE:?}; stderr: {:?}",
                self.name,
                self.stderr()
            ),
        };
        let (pid, value) = text
            .trim_end()
            .split_once(' ')
            .unwrap_or_else(|| panic!("script {}: odd report {text:?}", self.name));
        (pid.parse().expect("a pid"), value.to_string())
    }

    /// Asserts that the script's `portctl` calls printed nothing on stderr
    /// (no warning, no error).
    #[track_caller]
    fn assert_quiet(&self) {
        let stderr = self.stderr();
        assert!(
            stderr.is_empty(),
            "script {} wrote to stderr: {stderr:?}",
            self.name
        );
    }
}

/// A daemon on a block of ports of its own, a scratch directory, and the
/// `--project` directory `app` in it.
fn setup() -> (PortBlock, TestDaemon, Scratch, String) {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let project = project_dir(&scratch, "app");
    (block, d, scratch, project)
}

/// A `--project` directory named `name` in the scratch dir.
fn project_dir(scratch: &Scratch, name: &str) -> String {
    let dir = scratch.path(name);
    fs::create_dir_all(&dir).expect("create a project dir");
    dir.canonicalize()
        .expect("canonical project dir")
        .display()
        .to_string()
}

fn port_of(lease: &Value) -> u16 {
    lease["port"].as_u64().expect("a port") as u16
}
