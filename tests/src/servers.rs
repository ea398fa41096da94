//! Dev-server look-alikes for the reaper's tests, and the processes they
//! leave behind.
//!
//! - [`Listener`]: a small Python TCP server (bind, listen, accept and hold
//!   every connection) that can fork a worker sharing its socket (uvicorn's
//!   reloader and worker), ignore SIGTERM, or write down the signal that
//!   ended it. It writes its pid (and its worker's) to a pid file once it
//!   listens: that file is the test's "ready".
//! - [`Client`]: a Python process that holds one open connection to a port.
//! - [`ProcId`]: a process known by pid *and* start time, so "is it still
//!   alive?" never mistakes a reused pid for the process the test started.
//! - [`Strays`]: processes the test started indirectly (a forked worker, the
//!   children of a `bash` script, a server whose parent was killed). No
//!   `PR_SET_PDEATHSIG` reaches them (fork clears it), so they are SIGKILLed
//!   when the guard drops, if their pid still names them.
//! - [`Scratch`]: a temp directory for pid files and signal logs.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_api::procstat::{CLOCK_TICKS_PER_SEC, read_stat};

use crate::procs::ChildGuard;
use crate::wait::{wait_for, wait_until};

/// How long a helper server may take to listen (Python starts in ~30 ms;
/// a loaded CI machine is much slower).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

const LEASE_ENV: &str = portd_api::LEASE_ENV;

/// The Python to run: the system's `/usr/bin/python3` when there is one,
/// because every uid may run it (a pyenv shim under /root is unreadable to
/// uid 65534) and it starts without a shim's extra `bash`.
pub fn python() -> PathBuf {
    let system = Path::new("/usr/bin/python3");
    if system.is_file() {
        system.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// `listener.py HOST PORT PID_FILE [--fork] [--ignore-term] [--signal-log PATH]
/// [--term-log PATH]`
const LISTENER_PY: &str = r#"
import os, signal, socket, sys
host, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flags = sys.argv[4:]
log = flags[flags.index("--signal-log") + 1] if "--signal-log" in flags else None
term_log = flags[flags.index("--term-log") + 1] if "--term-log" in flags else None

def on_signal(number, frame):
    with open(log, "a") as f:
        f.write(signal.Signals(number).name + "\n")
    os._exit(0)

def note_term(number, frame):
    with open(term_log, "a") as f:
        f.write("TERM\n")

if log:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
if "--ignore-term" in flags:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if term_log:
    signal.signal(signal.SIGTERM, note_term)
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((host, port))
sock.listen(16)
pids = [os.getpid()]
if "--fork" in flags:
    child = os.fork()
    pids = [] if child == 0 else pids + [child]
if pids:
    with open(pid_file + ".tmp", "w") as f:
        f.write(" ".join(map(str, pids)))
    os.rename(pid_file + ".tmp", pid_file)
held = []
while True:
    conn, _ = sock.accept()
    held.append(conn)
"#;

/// `client.py HOST PORT PID_FILE`: connects, says so, and keeps the
/// connection open (it never reads, so a reset does not end it).
const CLIENT_PY: &str = r#"
import os, socket, sys, time
host, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = socket.create_connection((host, port))
with open(pid_file + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pid_file + ".tmp", pid_file)
while True:
    time.sleep(3600)
"#;

/// A temp directory for pid files and signal logs.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("portd-e2e-scratch.")
            .tempdir_in("/tmp")
            .expect("create a scratch dir in /tmp");
        Scratch { dir }
    }

    /// Lets processes of any uid write here (sticky, like /tmp).
    pub fn open_to_all(self) -> Scratch {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o1777))
            .expect("chmod the scratch dir");
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The contents of `name`, empty if it does not exist (yet).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

/// Quotes `word` for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What a [`Listener`] should do.
#[derive(Debug, Clone)]
pub struct Listener {
    host: String,
    port: u16,
    pid_file: PathBuf,
    fork: bool,
    ignore_term: bool,
    signal_log: Option<PathBuf>,
    term_log: Option<PathBuf>,
    tag: Option<String>,
}

impl Listener {
    /// A listener on 127.0.0.1:`port`, untagged, that writes its pid to
    /// `pid_file` once it listens. Its script goes beside the pid file (a
    /// short command line reads better in reports than the whole source).
    pub fn new(port: u16, pid_file: impl Into<PathBuf>) -> Listener {
        let pid_file = pid_file.into();
        write_script(&pid_file, "listener.py", LISTENER_PY);
        Listener {
            host: "127.0.0.1".into(),
            port,
            pid_file,
            fork: false,
            ignore_term: false,
            signal_log: None,
            term_log: None,
            tag: None,
        }
    }

    /// Listens on `host` (`127.0.0.1` or `::1`) instead.
    pub fn host(mut self, host: &str) -> Listener {
        self.host = host.into();
        self
    }

    /// Forks a worker after `listen`: both hold the socket.
    pub fn fork(mut self) -> Listener {
        self.fork = true;
        self
    }

    pub fn ignore_sigterm(mut self) -> Listener {
        self.ignore_term = true;
        self
    }

    /// Survives SIGTERM, appending `TERM` to `path` each time one arrives:
    /// a test can tell when a grace has begun.
    pub fn note_sigterm(mut self, path: impl Into<PathBuf>) -> Listener {
        self.term_log = Some(path.into());
        self
    }

    /// Appends the name of the signal (INT, TERM, HUP) that ends it to `path`.
    pub fn log_signals(mut self, path: impl Into<PathBuf>) -> Listener {
        self.signal_log = Some(path.into());
        self
    }

    /// Runs with `PORTD_LEASE=id` (only [`Self::command`] and
    /// [`Self::spawn`] set it; a shell line leaves the tag to the shell).
    pub fn tagged(mut self, id: &str) -> Listener {
        self.tag = Some(id.into());
        self
    }

    /// `python3 listener.py HOST PORT PID_FILE [flags]`.
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            python().into(),
            script_path(&self.pid_file, "listener.py").into(),
            self.host.clone().into(),
            self.port.to_string().into(),
            self.pid_file.clone().into(),
        ];
        if self.fork {
            argv.push("--fork".into());
        }
        if self.ignore_term {
            argv.push("--ignore-term".into());
        }
        if let Some(log) = &self.signal_log {
            argv.push("--signal-log".into());
            argv.push(log.into());
        }
        if let Some(log) = &self.term_log {
            argv.push("--term-log".into());
            argv.push(log.into());
        }
        argv
    }

    /// The listener as one shell command line (for scripts that start it).
    pub fn shell_line(&self) -> String {
        self.argv()
            .iter()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command, with output discarded, cwd `/`, and the tag set or
    /// removed.
    pub fn command(&self) -> Command {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.tag {
            Some(id) => cmd.env(LEASE_ENV, id),
            None => cmd.env_remove(LEASE_ENV),
        };
        cmd
    }

    /// Starts it (a child of the test) and waits until it listens.
    pub fn spawn(&self) -> Server {
        self.spawn_with(self.command())
    }

    /// Starts `cmd`, which must end up running this listener in the same
    /// process (e.g. `setpriv ... python3 ...`), and waits until it listens.
    pub fn spawn_with(&self, mut cmd: Command) -> Server {
        let mut guard = ChildGuard::spawn(&mut cmd);
        let pids = wait_pid_file(&self.pid_file, || guard.is_running());
        let mut strays = Strays::default();
        let procs: Vec<ProcId> = pids
            .iter()
            .map(|&pid| ProcId::of(pid).unwrap_or_else(|| panic!("pid {pid} vanished at once")))
            .collect();
        for p in procs.iter().filter(|p| p.pid != guard.pid()) {
            strays.adopt(*p);
        }
        assert_eq!(
            procs[0].pid,
            guard.pid(),
            "the listener runs in the spawned process"
        );
        Server {
            guard,
            procs,
            _strays: strays,
        }
    }
}

fn script_path(beside: &Path, name: &str) -> PathBuf {
    beside.parent().unwrap_or(Path::new("/tmp")).join(name)
}

/// Writes `source` to `name` in the directory of `beside` (world-readable,
/// for servers run as another uid); returns its path.
fn write_script(beside: &Path, name: &str, source: &str) -> PathBuf {
    let path = script_path(beside, name);
    if fs::read_to_string(&path).ok().as_deref() != Some(source) {
        fs::write(&path, source).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
    path
}

/// Waits for the pid file at `path` and returns the pids in it; panics after
/// [`READY_TIMEOUT`], or at once if `running` says the process that should
/// write it has exited.
pub fn wait_pid_file(path: &Path, mut running: impl FnMut() -> bool) -> Vec<u32> {
    let pids = wait_for(READY_TIMEOUT, || {
        let text = fs::read_to_string(path).ok();
        if text.is_none() {
            assert!(
                running(),
                "{} is not written and its writer has exited",
                path.display()
            );
        }
        let pids: Vec<u32> = text?
            .split_ascii_whitespace()
            .map(|p| p.parse().expect("a pid"))
            .collect();
        (!pids.is_empty()).then_some(pids)
    });
    pids.unwrap_or_else(|| panic!("{} not written within {READY_TIMEOUT:?}", path.display()))
}

/// A running [`Listener`]: the spawned process (first of `procs`) and, with
/// `fork`, its worker.
#[derive(Debug)]
pub struct Server {
    pub guard: ChildGuard,
    pub procs: Vec<ProcId>,
    _strays: Strays,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// A process holding one open connection to `host:port`; returns once it is
/// connected.
#[derive(Debug)]
pub struct Client {
    pub guard: ChildGuard,
    pub proc: ProcId,
}

impl Client {
    pub fn connect(host: &str, port: u16, scratch: &Scratch, name: &str) -> Client {
        let pid_file = scratch.path(name);
        let script = write_script(&pid_file, "client.py", CLIENT_PY);
        let mut guard = ChildGuard::spawn(
            Command::new(python())
                .arg(script)
                .arg(host)
                .arg(port.to_string())
                .arg(&pid_file)
                .current_dir("/")
                .env_remove(LEASE_ENV)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let pids = wait_pid_file(&pid_file, || guard.is_running());
        assert_eq!(pids, [guard.pid()]);
        let proc = ProcId::of(guard.pid()).expect("the client runs");
        Client { guard, proc }
    }
}

/// A process known by pid and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcId {
    /// `pid` as it is now; `None` if there is no such process.
    pub fn of(pid: u32) -> Option<ProcId> {
        let stat = read_stat(pid).ok()?;
        Some(ProcId {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    /// True while the pid names this process and it has not exited (a
    /// zombie has: it holds no socket and runs no code).
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid).is_ok_and(|s| s.start_ticks == self.start_ticks && s.is_running())
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        wait_until(timeout, || !self.is_alive())
    }

    /// True if the process is alive for the whole of `period` (polled).
    pub fn stays_alive(&self, period: Duration) -> bool {
        !wait_until(period, || !self.is_alive())
    }

    /// Process group and session.
    pub fn group_and_session(&self) -> (u32, u32) {
        let stat = read_stat(self.pid).expect("the process runs");
        (stat.pgrp, stat.session)
    }
}

/// Processes the test started but cannot reap; SIGKILLed on drop while
/// their pid still names them.
#[derive(Debug, Default)]
pub struct Strays {
    procs: Vec<ProcId>,
}

impl Strays {
    pub fn adopt(&mut self, proc: ProcId) {
        self.procs.push(proc);
    }

    /// Adopts `pid` as it is now; panics if it is already gone.
    pub fn adopt_pid(&mut self, pid: u32) -> ProcId {
        let proc = ProcId::of(pid).unwrap_or_else(|| panic!("pid {pid} is gone"));
        self.adopt(proc);
        proc
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        for proc in &self.procs {
            if proc.is_alive() {
                let _ = kill(Pid::from_raw(proc.pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Now, in the clock of process start times: clock ticks after boot
/// (CLOCK_BOOTTIME).
pub fn boot_ticks_now() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
    now.tv_sec() as u64 * CLOCK_TICKS_PER_SEC
        + now.tv_nsec() as u64 / (1_000_000_000 / CLOCK_TICKS_PER_SEC)
}

/// Makes `cmd`'s process the leader of a new session (and so of a new
/// process group), as `setsid` and daemonising servers do.
pub fn in_new_session(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe { cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from)) }
}
