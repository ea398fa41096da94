//! Login and boot (issue 5) end to end: the systemd user units as `portctl
//! install` writes them and as systemd itself judges them, socket activation
//! by a real systemd tool, the cleanup a daemon runs at start and `portctl
//! cleanup` runs on demand, the daemon's config errors, and the completions
//! and man pages generated from portctl's clap definitions.
//!
//! - `units`: `install --print` through `systemd-analyze --user verify`;
//!   install, re-install and uninstall with no user manager, and with a
//!   stand-in `systemctl` that records what it was asked.
//! - `manager`: the same against a real `systemd --user` started for the
//!   test (skipped, saying why, where one cannot run).
//! - `activation`: `systemd-socket-activate` passes its socket to `portd`.
//! - `cleanup`: orphans reaped at start-up and by `portctl cleanup`.
//! - `config`: `portd --config` errors and `--print-config`.
//! - `docs`: `portctl completions` and `portctl man`.
//!
//! No test here talks to the developer's own systemd or writes to their
//! home: every command gets temp `XDG_CONFIG_HOME`, `XDG_RUNTIME_DIR` and
//! `HOME` (or a `PATH` without `systemctl`).

mod activation;
mod cleanup;
mod config;
mod docs;
mod manager;
mod units;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portd_e2e::cli::{self, scrub};
use portd_e2e::skip::{require_system_tool, skip, system_tool};
use portd_e2e::{ChildGuard, PortBlock, TestDaemon, http, output_within, portctl_bin, wait_until};
use serde_json::Value;
use tempfile::TempDir;

/// How long the daemon may take to notice a death, reap, or answer.
const DEADLINE: Duration = Duration::from_secs(10);
/// The longest one command (portctl, portd, systemd-analyze) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon on `block` with a short reap grace.
fn daemon(block: &PortBlock) -> TestDaemon {
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "500ms"]).launch();
    d
}

/// `portctl` with nothing from the developer's environment that would point
/// it at another daemon or tag it, and autostart off.
fn portctl() -> Command {
    let mut cmd = Command::new(portctl_bin());
    scrub(&mut cmd).env("PORTD_NO_AUTOSTART", "1");
    cmd
}

/// Starts `cmd`, a `portd` on `socket` that is not a [`TestDaemon`] (as one
/// `portctl` autostarted, for `install` to find and stop), and waits until
/// it answers.
#[track_caller]
fn start_stray(cmd: &mut Command, socket: &Path) -> ChildGuard {
    let stray = ChildGuard::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::null()));
    let up = wait_until(DEADLINE, || {
        http::try_request(socket, "GET", "/v1/health", None).is_ok_and(|r| r.status == 200)
    });
    assert!(
        up,
        "the stray daemon does not answer on {}",
        socket.display()
    );
    stray
}

/// Runs `cmd` to its end (within [`COMMAND_TIMEOUT`]).
fn run(cmd: &mut Command) -> Output {
    output_within(cmd, COMMAND_TIMEOUT)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `out` is a success; returns its stdout.
#[track_caller]
fn success(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// A temp home for one test: `config/` (XDG_CONFIG_HOME), `run/`
/// (XDG_RUNTIME_DIR, mode 0700), `home/` (HOME) and `bin/` (a PATH that
/// holds only what the test puts there).
#[derive(Debug)]
struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("portd-login.")
            .tempdir_in("/tmp")
            .expect("create a temp dir in /tmp");
        for sub in ["config", "run", "home", "bin"] {
            fs::create_dir(dir.path().join(sub)).expect("create a temp sub-directory");
        }
        fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the runtime dir");
        Home { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("config")
    }

    fn runtime(&self) -> PathBuf {
        self.path("run")
    }

    fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    /// Where `install` puts the units.
    fn unit_dir(&self) -> PathBuf {
        self.config().join("systemd").join("user")
    }

    /// The socket a user manager would bind for portd.socket.
    fn manager_socket(&self) -> PathBuf {
        self.runtime().join("portd").join("portd.sock")
    }

    /// `cmd` living in this home: XDG dirs and HOME here, no session bus,
    /// and `path` as PATH.
    fn apply<'c>(&self, cmd: &'c mut Command, path: impl Into<OsString>) -> &'c mut Command {
        cmd.env("XDG_CONFIG_HOME", self.config())
            .env("XDG_RUNTIME_DIR", self.runtime())
            .env("HOME", self.path("home"))
            .env("PATH", path.into())
            .env_remove("XDG_STATE_HOME")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
    }

    /// `portctl ARGS` in this home with only `bin/` on PATH: no
    /// `systemctl` unless the test put one there.
    fn portctl(&self, args: &[&str]) -> Output {
        run(self.apply(portctl().args(args), self.bin()))
    }

    /// Writes an executable script to `bin/NAME`.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.bin().join(name);
        fs::write(&path, text).expect("write a script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod a script");
        path
    }
}

/// The files an `install --print` listing shows: `==> PATH <==` before each,
/// a blank line between files.
fn parse_listing(listing: &str) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for line in listing.split_inclusive('\n') {
        let header = line
            .strip_prefix("==> ")
            .and_then(|rest| rest.strip_suffix(" <==\n"));
        match (header, files.last_mut()) {
            (Some(path), last) => {
                if let Some((_, text)) = last {
                    // The blank line that separates two files.
                    assert!(
                        text.ends_with("\n\n"),
                        "no blank line before {path}: {listing}"
                    );
                    text.pop();
                }
                files.push((PathBuf::from(path), String::new()));
            }
            (None, Some((_, text))) => text.push_str(line),
            (None, None) => panic!("the listing does not start with a header: {listing}"),
        }
    }
    files
}

#[test]
fn a_listing_parses_back_into_its_files() {
    let files = parse_listing("==> /a <==\nA\n\n==> /b <==\nB\n\nB2\n");
    assert_eq!(
        files,
        [
            (PathBuf::from("/a"), "A\n".to_string()),
            (PathBuf::from("/b"), "B\n\nB2\n".to_string())
        ]
    );
}
