//! Driving `portctl` the way users and their start scripts do.
//!
//! - [`portctl`]: a `portctl` command aimed at one daemon, autostart off,
//!   with nothing from the developer's environment.
//! - [`script_path`]: `PATH` for scripts, so `portctl` in a script is this
//!   build's and `python3` is the system's (not a pyenv shim).
//! - [`Gate`]: a FIFO that scripts block on (`read go < "$GATE"`) until the
//!   test lets them through: a script that waits there is alive, idle, and
//!   still itself (no `exec`), and ends normally once released.
//! - [`FreshSocket`]: a socket path that nothing serves yet, for autostart
//!   tests. The daemons `portctl` starts there are not the test's children;
//!   the guard finds them by that path in /proc and stops them when dropped.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, mkfifo};
use tempfile::TempDir;

use crate::bins::portctl_bin;
use crate::daemon::{PROXY_PORT_ENV, SCRUBBED_ENV, STOP_TIMEOUT};
use crate::procs::cmdline;
use crate::servers::ProcId;
use crate::wait::wait_until;

/// `portctl` for the daemon on `socket` (through `PORTD_SOCKET`), with
/// autostart off and none of the variables in [`SCRUBBED_ENV`] otherwise.
pub fn portctl(socket: &Path) -> Command {
    let mut cmd = Command::new(portctl_bin());
    scrub(&mut cmd)
        .env("PORTD_SOCKET", socket)
        .env("PORTD_NO_AUTOSTART", "1");
    cmd
}

/// Removes what would point a daemon or client elsewhere (or tag it), and
/// turns off the proxy of any daemon it autostarts (see
/// [`crate::daemon::PROXY_PORT_ENV`]).
pub fn scrub(cmd: &mut Command) -> &mut Command {
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.env(PROXY_PORT_ENV, "0")
}

/// `PATH` for test scripts: the built binaries' directory, then the
/// system's directories only.
pub fn script_path() -> OsString {
    let bin = portctl_bin();
    let dir = bin.parent().expect("portctl lives in a directory");
    let mut path = OsString::from(dir);
    path.push(":/usr/bin:/bin");
    path
}

/// A FIFO that scripts block on until the test writes a line per script.
///
/// The test holds the FIFO open for reading *and* writing, so a script's
/// `read go < "$GATE"` never blocks in `open` and never sees an early EOF;
/// the shells' `read` takes one byte at a time from a pipe, so each line
/// lets exactly one script through.
#[derive(Debug)]
pub struct Gate {
    path: PathBuf,
    fifo: File,
}

impl Gate {
    pub fn new(path: impl Into<PathBuf>) -> Gate {
        let path = path.into();
        mkfifo(&path, Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
        let fifo = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Gate { path, fifo }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets `scripts` readers through, one line each.
    pub fn release(&mut self, scripts: usize) {
        self.write("go\n".repeat(scripts));
    }

    /// Lets one reader through with `line` as what it reads (`read -r
    /// VAR < "$GATE"`).
    pub fn pass(&mut self, line: &str) {
        self.write(format!("{line}\n"));
    }

    fn write(&mut self, lines: String) {
        self.fifo
            .write_all(lines.as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
    }
}

/// A socket path under /tmp that no daemon serves yet, in a directory the
/// daemon creates, with a database path beside it. Dropping it stops every
/// `portd` whose command line names this socket.
///
/// ```text
/// /tmp/portd-cli.XXXXXX/run/portd.sock    PORTD_SOCKET (run/ made by portd)
/// /tmp/portd-cli.XXXXXX/state/portd.db    PORTD_DB
/// /tmp/portd-cli.XXXXXX/state/portd.log   where autostart sends the daemon's output
/// /tmp/portd-cli.XXXXXX/config/           XDG_CONFIG_HOME (empty)
/// ```
#[derive(Debug)]
pub struct FreshSocket {
    dir: TempDir,
    socket: PathBuf,
    db: PathBuf,
}

impl FreshSocket {
    pub fn new() -> FreshSocket {
        let dir = tempfile::Builder::new()
            .prefix("portd-cli.")
            .tempdir_in("/tmp")
            .expect("create a temp dir in /tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the temp dir");
        let socket = dir.path().join("run").join("portd.sock");
        let db = dir.path().join("state").join("portd.db");
        FreshSocket { dir, socket, db }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn db(&self) -> &Path {
        &self.db
    }

    /// Where an autostarted daemon writes: `portd.log` beside the database.
    pub fn log_path(&self) -> PathBuf {
        self.db.with_file_name("portd.log")
    }

    /// The daemons' log, empty if there is none (yet).
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `portctl` that starts a daemon on this socket when nothing answers:
    /// socket, database and config directory all inside the temp directory.
    pub fn portctl(&self) -> Command {
        let mut cmd = Command::new(portctl_bin());
        self.environment(&mut cmd);
        cmd
    }

    /// Gives `cmd` (a `portctl`, or a script that runs one) the environment
    /// of [`Self::portctl`].
    pub fn environment<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        scrub(cmd)
            .env("PORTD_SOCKET", &self.socket)
            .env("PORTD_DB", &self.db)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
    }

    /// The `portd` processes serving (or trying to serve) this socket.
    pub fn daemons(&self) -> Vec<ProcId> {
        daemons_on(&self.socket)
    }
}

impl Default for FreshSocket {
    fn default() -> FreshSocket {
        FreshSocket::new()
    }
}

impl Drop for FreshSocket {
    fn drop(&mut self) {
        stop_daemons_on(&self.socket);
    }
}

/// Processes whose program is `portd` and whose arguments include exactly
/// `socket`: the daemons autostarted there (`portd --socket PATH`).
pub fn daemons_on(socket: &Path) -> Vec<ProcId> {
    let Some(socket) = socket.to_str() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            cmdline(pid).is_some_and(|argv| {
                let program = argv.first().map(|a| Path::new(a).file_name());
                program == Some(Some("portd".as_ref())) && argv.iter().any(|a| a == socket)
            })
        })
        .filter_map(ProcId::of)
        .filter(ProcId::is_alive)
        .collect()
}

/// SIGTERM to every daemon on `socket`, then SIGKILL to what is left after
/// [`STOP_TIMEOUT`]. Signals only processes [`daemons_on`] names, and only
/// while their pid still names them.
pub fn stop_daemons_on(socket: &Path) {
    let daemons = daemons_on(socket);
    for daemon in &daemons {
        let _ = kill(Pid::from_raw(daemon.pid as i32), Signal::SIGTERM);
    }
    let stopped = wait_until(STOP_TIMEOUT, || daemons.iter().all(|d| !d.is_alive()));
    if !stopped {
        for daemon in daemons.iter().filter(|d| d.is_alive()) {
            let _ = kill(Pid::from_raw(daemon.pid as i32), Signal::SIGKILL);
        }
    }
    // One that was between fork and exec at the first scan.
    for daemon in daemons_on(socket) {
        let _ = kill(Pid::from_raw(daemon.pid as i32), Signal::SIGKILL);
    }
}
