//! Helper processes a test starts (lease owners, listeners, scripts) and the
//! facts about them the API needs.
//!
//! A [`ChildGuard`] kills and reaps its process when dropped, also when the
//! test panics. It signals only the process it spawned, and only while that
//! process is unreaped (a zombie keeps its pid, so the pid cannot name
//! anyone else yet).

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_api::procstat::{boot_time, read_stat, ticks_to_unix};
use serde_json::{Value, json};

use crate::wait::{wait_for, wait_until};

/// The start time of `pid` as the API writes it: Unix seconds, fractional.
pub fn start_time(pid: u32) -> f64 {
    let stat = read_stat(pid).unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    ticks_to_unix(boot_time().expect("btime in /proc/stat"), stat.start_ticks)
}

/// Makes `cmd`'s process die with SIGKILL when the spawning thread exits, so
/// a test binary that is killed outright leaves nothing behind.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from))
    }
}

/// The helpers below start untagged processes even when the tests run under
/// `portctl run` (which tags its child): the tag would make them the daemon's
/// business. Scripts that need a tag set it themselves.
const LEASE_ENV: &str = portd_api::LEASE_ENV;

/// A process the test started; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
    /// Kept alive as long as the process: e.g. the directory a web server
    /// serves.
    _dir: Option<tempfile::TempDir>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin from /dev/null (stdout and stderr as `cmd`
    /// sets them; they default to the test's own).
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        let what = format!("{cmd:?}");
        let child = die_with_parent(cmd.stdin(Stdio::null()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ChildGuard {
            child,
            what,
            _dir: None,
        }
    }

    /// `sleep SECS`: a live process to own leases.
    pub fn sleep(secs: u32) -> ChildGuard {
        ChildGuard::spawn(
            Command::new("sleep")
                .arg(secs.to_string())
                .env_remove(LEASE_ENV),
        )
    }

    /// `bash -c SCRIPT`, output discarded.
    pub fn bash(script: &str) -> ChildGuard {
        ChildGuard::spawn(
            Command::new("bash")
                .arg("-c")
                .arg(script)
                .env_remove(LEASE_ENV)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    }

    /// `python3 -m http.server --bind 127.0.0.1 PORT` serving an empty temp
    /// directory; returns once it accepts connections (panics after 10 s).
    pub fn http_server(port: u16) -> ChildGuard {
        let dir = tempfile::Builder::new()
            .prefix("portd-e2e-www")
            .tempdir()
            .expect("temp dir for the web server");
        let mut guard = ChildGuard::spawn(
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1"])
                .arg(port.to_string())
                .current_dir(dir.path())
                .env_remove(LEASE_ENV)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        guard._dir = Some(dir);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listening = wait_until(Duration::from_secs(10), || {
            assert!(guard.is_running(), "{} exited early", guard.what);
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(listening, "{} does not listen after 10 s", guard.what);
        guard
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's start time in Unix seconds (what `owner.start_time` takes).
    pub fn start_time(&self) -> f64 {
        start_time(self.pid())
    }

    /// `{"pid", "start_time"}`: this process as a lease request's `owner`.
    pub fn owner(&self) -> Value {
        json!({"pid": self.pid(), "start_time": self.start_time()})
    }

    /// The `Child`, for its stdio handles.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// True until the process has exited (and then reaps it).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` if the process is still unreaped; panics otherwise.
    pub fn signal(&mut self, signal: Signal) {
        assert!(self.is_running(), "{} has already exited", self.what);
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.what));
    }

    /// SIGKILL, then reap; returns how it ended.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL to {}: {e}", self.what));
        self.child.wait().expect("reap the killed child")
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // std's kill does nothing to a child it has already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion with stdin from /dev/null and its output
/// captured; panics (after killing it) if it still runs after `timeout`, or
/// if its output stays open 5 s after it exited (a process it left behind
/// holds the pipe).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut guard = ChildGuard::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let stdout = drain(guard.child.stdout.take());
    let stderr = drain(guard.child.stderr.take());
    let Some(status) = guard.wait_exit(timeout) else {
        let what = guard.what.clone();
        drop(guard);
        let stderr = stderr
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        panic!(
            "{what} still runs after {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    let collect = |pipe: mpsc::Receiver<Vec<u8>>, name: &str| {
        pipe.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| {
                panic!(
                    "{}: {name} still open 5 s after it exited; something it started holds it",
                    guard.what
                )
            })
    };
    Output {
        status,
        stdout: collect(stdout, "stdout"),
        stderr: collect(stderr, "stderr"),
    }
}

/// How a command that ran to its end ended, and what it printed, as text.
#[derive(Debug)]
pub struct Done {
    /// The command, as failure messages name it.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ended with {}\n  stdout: {:?}\n  stderr: {:?}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

impl Done {
    /// Asserts the exit code; returns `self` for more checks.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Done {
        assert_eq!(self.status.code(), Some(code), "{self}");
        self
    }

    /// stdout as JSON; panics if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

/// [`output_within`], as text; messages name the command by its `Debug`
/// form (set `what` for a shorter name).
pub fn finish(cmd: &mut Command, timeout: Duration) -> Done {
    let what = format!("{cmd:?}");
    let out = output_within(cmd, timeout);
    Done {
        what,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a
/// full pipe while the test waits for it to exit.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// The command line of `pid`, arguments split, if the process exists.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_kills_and_reaps_its_child_on_drop() {
        let guard = ChildGuard::sleep(60);
        let pid = guard.pid();
        let started = guard.start_time();
        assert!(started > 1.0e9, "{started}");
        drop(guard);
        // Reaped: the pid is gone, or already names another process.
        let gone = read_stat(pid).map_or(true, |s| {
            ticks_to_unix(boot_time().unwrap(), s.start_ticks) != started
        });
        assert!(gone, "pid {pid} still runs");
    }

    #[test]
    fn output_within_captures_both_streams_and_the_status() {
        let out = output_within(
            Command::new("bash").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}
