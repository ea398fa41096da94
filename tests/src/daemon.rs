//! A real `portd` for one test: its own temp directory (under /tmp, so the
//! socket path stays far below `sun_path`'s 107 bytes), socket, database, log
//! and port range.
//!
//! Layout of the temp directory (mode 0700, as the daemon demands of the
//! socket's directory):
//!
//! ```text
//! /tmp/portd-e2e.XXXXXX/portd.sock     --socket
//! /tmp/portd-e2e.XXXXXX/portd.lock     the daemon's own lock, beside the socket
//! /tmp/portd-e2e.XXXXXX/state/portd.db --db (the daemon creates state/)
//! /tmp/portd-e2e.XXXXXX/portd.log      stdout and stderr of every run, appended
//! /tmp/portd-e2e.XXXXXX/config/        XDG_CONFIG_HOME (empty unless a test
//!                                      writes config/portd/config.toml)
//! ```
//!
//! Dropping a `TestDaemon` kills the daemon (SIGKILL) and reaps it; if the
//! test is panicking, the daemon's log is printed first.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_api::PortRange;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::bins::portd_bin;
use crate::http::{self, Response};
use crate::procs::{ChildGuard, die_with_parent};
use crate::wait::wait_for;

/// How long a daemon may take to answer `/v1/health` after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after SIGTERM: its drain timeout is
/// 10 s, and an idle daemon needs milliseconds.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment that would make a daemon or client look somewhere other than
/// where the test points it, or mistake itself for socket-activated.
pub const SCRUBBED_ENV: &[&str] = &[
    "PORTD_SOCKET",
    "PORTD_DB",
    "PORTD_LEASE",
    "PORTD_NO_AUTOSTART",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "RUST_LOG",
    PROXY_PORT_ENV,
];

/// Where a daemon (or the one `portctl` autostarts) takes its proxy port
/// from when no flag names it. The harness sets it to 0: a test daemon
/// serves no proxy unless its test gives it `--proxy-port` with a port of
/// its own block, so parallel daemons never contend for the default port.
pub const PROXY_PORT_ENV: &str = "PORTD_PROXY_PORT";

/// A `portd` command for `socket`, `db` and `range`, with `-v` and a scrubbed
/// environment. For daemons the test expects to fail; [`TestDaemon`] runs
/// the ones it expects to serve.
///
/// `XDG_CONFIG_HOME` points at `config/` beside the socket, so a developer's
/// own `~/.config/portd/config.toml` never leaks into a test; a test that
/// needs a config file writes `<socket dir>/config/portd/config.toml`.
pub fn portd_command(socket: &Path, db: &Path, range: PortRange) -> Command {
    let mut cmd = Command::new(portd_bin());
    cmd.arg("--socket")
        .arg(socket)
        .arg("--db")
        .arg(db)
        .arg("--range")
        .arg(range.to_string())
        .arg("-v");
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.env(PROXY_PORT_ENV, "0");
    let socket_dir = socket.parent().unwrap_or(Path::new("/"));
    cmd.env("XDG_CONFIG_HOME", socket_dir.join("config"));
    cmd
}

/// `bash -c '<prelude>; exec CMD ARGS...'` with `cmd`'s environment
/// changes: runs shell set-up (`ulimit`, `export`) in the process that then
/// becomes `cmd`, keeping its pid.
pub fn via_bash(cmd: &Command, prelude: &str) -> Command {
    wrapped_in(
        "bash",
        &["-c".into(), format!("{prelude}\nexec \"$0\" \"$@\"").into()],
        cmd,
    )
}

/// `PROGRAM ARGS... CMD CMD-ARGS...` with `cmd`'s environment changes, for
/// a wrapper that ends by exec'ing the command (`bash -c`, `setpriv`), so
/// that the command keeps the wrapper's pid.
pub fn wrapped_in(program: impl AsRef<OsStr>, args: &[OsString], cmd: &Command) -> Command {
    wrapped_running(program, args, cmd.get_program(), cmd)
}

/// As [`wrapped_in`], with `runs` in place of `cmd`'s program (a copy of
/// it that the wrapper may execute).
pub fn wrapped_running(
    program: impl AsRef<OsStr>,
    args: &[OsString],
    runs: impl AsRef<OsStr>,
    cmd: &Command,
) -> Command {
    let mut wrapped = Command::new(program);
    wrapped.args(args).arg(runs).args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

/// One test's daemon.
#[derive(Debug)]
pub struct TestDaemon {
    dir: TempDir,
    socket: PathBuf,
    db: PathBuf,
    log: PathBuf,
    range: PortRange,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl TestDaemon {
    /// Starts a daemon serving `range` and waits until it answers health.
    pub fn start(range: PortRange) -> TestDaemon {
        let mut daemon = TestDaemon::new(range);
        daemon.launch();
        daemon
    }

    /// Prepares the temp directory without starting the daemon: for tests
    /// that put files in place first, or add flags with [`Self::args`].
    pub fn new(range: PortRange) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("portd-e2e.")
            .tempdir_in("/tmp")
            .expect("create a temp dir in /tmp");
        // The daemon demands 0700 of the socket's directory; tempfile leaves
        // the mode to the umask.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the temp dir");
        let socket = dir.path().join("portd.sock");
        let db = dir.path().join("state").join("portd.db");
        let log = dir.path().join("portd.log");
        TestDaemon {
            dir,
            socket,
            db,
            log,
            range,
            extra_args: Vec::new(),
            child: None,
        }
    }

    /// Flags added to every later start (e.g. `["--grace", "1s"]`).
    pub fn args(&mut self, args: &[&str]) -> &mut TestDaemon {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The command that starts this daemon (socket, db, range, extra flags).
    pub fn command(&self) -> Command {
        let mut cmd = portd_command(&self.socket, &self.db, self.range);
        cmd.args(&self.extra_args);
        cmd
    }

    /// Starts the daemon and waits (up to [`START_TIMEOUT`]) until *this*
    /// process answers `/v1/health`; panics with the log if it exits or
    /// does not answer in time.
    pub fn launch(&mut self) {
        self.launch_with(|cmd| cmd);
    }

    /// As [`Self::launch`], but `wrap` may replace the command, e.g. run it
    /// through [`via_bash`] to set limits or pass a socket; the spawned
    /// process must become the daemon (`exec`), since health must answer
    /// with its pid. [`Self::restart`] launches unwrapped.
    pub fn launch_with(&mut self, wrap: impl FnOnce(Command) -> Command) {
        assert!(!self.is_running(), "portd is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon's log");
        let mut cmd = wrap(self.command());
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log);
        let mut child = die_with_parent(&mut cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pid = child.id();
        let socket = self.socket.clone();
        let mut exited = None;
        let healthy = wait_for(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            let answer = http::try_request(&socket, "GET", "/v1/health", None).ok()?;
            let ours = answer.status == 200
                && serde_json::from_str::<Value>(&answer.body).is_ok_and(|v| v["pid"] == pid);
            ours.then_some(true)
        });
        if healthy != Some(true) {
            let _ = child.kill();
            let _ = child.wait();
            let why = match exited {
                Some(status) => format!("exited with {status}"),
                None => format!("did not answer /v1/health within {START_TIMEOUT:?}"),
            };
            panic!("portd {why}; log:\n{}", self.log());
        }
        self.child = Some(child);
    }

    /// SIGTERM, then waits for the exit (up to [`STOP_TIMEOUT`]).
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.pid();
        let child = self.child.as_mut().expect("running");
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM to portd");
        let status = wait_for(STOP_TIMEOUT, || child.try_wait().ok().flatten());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            self.child = None;
            panic!(
                "portd still runs {STOP_TIMEOUT:?} after SIGTERM; log:\n{}",
                self.log()
            );
        };
        self.child = None;
        status
    }

    /// SIGKILL, then reaps: the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("portd is not running");
        child.kill().expect("SIGKILL to portd");
        child.wait().expect("reap portd");
    }

    /// Starts the daemon again with the same socket, database, range and
    /// flags; stops it first (SIGTERM) if it still runs.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        self.launch();
    }

    /// True while the daemon process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                // It exited on its own: reaped now, forgotten.
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The running daemon's pid; panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("portd is not running").id()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn db(&self) -> &Path {
        &self.db
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The temp directory that holds socket, database and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `systemd-socket-activate` must pass on to this daemon (it
    /// passes only what `-E` names): its database, socket and config
    /// directory.
    pub fn activation_env(&self) -> Vec<OsString> {
        [
            ("PORTD_DB", self.db.as_os_str()),
            ("PORTD_SOCKET", self.socket.as_os_str()),
            (
                "XDG_CONFIG_HOME",
                &self.dir.path().join("config").into_os_string(),
            ),
        ]
        .iter()
        .flat_map(|(name, value)| {
            let mut pair = OsString::from(format!("{name}="));
            pair.push(value);
            [OsString::from("-E"), pair]
        })
        .collect()
    }

    /// Where this daemon looks for its config file (absent by default).
    pub fn config_file(&self) -> PathBuf {
        self.dir
            .path()
            .join("config")
            .join("portd")
            .join("config.toml")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the daemon has written to stdout and stderr, all runs.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(no log at {}: {e})", self.log.display()))
    }

    /// One request on a new connection; panics on I/O errors.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        http::request(&self.socket, method, path, body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string()))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None)
    }

    /// Writes raw bytes on a new connection; returns what came back.
    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        http::send_raw(&self.socket, bytes)
    }

    /// Asserts that the daemon answers health, as the same process;
    /// `after` says after what.
    #[track_caller]
    pub fn assert_healthy(&self, after: &str) {
        let answer = self.get("/v1/health");
        assert_eq!(answer.status, 200, "health after {after}: {}", answer.body);
        assert_eq!(
            answer.json()["pid"],
            self.pid(),
            "the daemon was replaced after {after}"
        );
    }

    /// Leases exactly `port` for `owner`; returns the lease id. Panics
    /// unless the lease is granted (201).
    #[track_caller]
    pub fn lease(&self, port: u16, owner: &ChildGuard) -> String {
        let answer = self.post("/v1/leases", &json!({"port": port, "owner": owner.owner()}));
        assert_eq!(answer.status, 201, "lease {port}: {}", answer.body);
        answer.json()["id"]
            .as_str()
            .expect("a lease id")
            .to_string()
    }

    /// The active lease on `port`, `None` on 404; panics on any other
    /// answer.
    pub fn active_lease(&self, port: u16) -> Option<Value> {
        let answer = self.get(&format!("/v1/leases/{port}"));
        match answer.status {
            200 => Some(answer.json()),
            404 => None,
            other => panic!("GET /v1/leases/{port}: {other} {}", answer.body),
        }
    }

    /// Lease `id` as the full history (`?all=true`) shows it, if it is
    /// there.
    pub fn lease_by_id(&self, id: &str) -> Option<Value> {
        let answer = self.get("/v1/leases?all=true");
        assert_eq!(
            answer.status, 200,
            "GET /v1/leases?all=true: {}",
            answer.body
        );
        answer.json()["leases"]
            .as_array()
            .expect("a list of leases")
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
    }

    /// Waits up to `timeout` until lease `id` has ended; returns it as the
    /// history shows it. Panics at once if the history lacks it.
    #[track_caller]
    pub fn wait_lease_ended(&self, id: &str, timeout: Duration) -> Value {
        let in_history = || {
            self.lease_by_id(id)
                .unwrap_or_else(|| panic!("lease {id} is not in ?all=true"))
        };
        wait_for(timeout, || {
            let lease = in_history();
            (lease["state"] == "ended").then_some(lease)
        })
        .unwrap_or_else(|| {
            panic!(
                "lease {id} still active after {timeout:?}: {}",
                in_history()
            )
        })
    }

    /// Every event of `kind`, oldest first.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let answer = self.get("/v1/events");
        assert_eq!(answer.status, 200, "GET /v1/events: {}", answer.body);
        answer.json()["events"]
            .as_array()
            .expect("a list of events")
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }

    /// Waits up to `timeout` for the `kind` event about `pid`; returns it.
    #[track_caller]
    pub fn wait_event(&self, kind: &str, pid: u32, timeout: Duration) -> Value {
        wait_for(timeout, || {
            self.events(kind).into_iter().find(|e| e["pid"] == pid)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind} event for pid {pid} within {timeout:?}: {}",
                self.get("/v1/events").body
            )
        })
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- portd log ({}) ----\n{}---- end of portd log ----",
                self.log.display(),
                self.log()
            );
        }
    }
}
