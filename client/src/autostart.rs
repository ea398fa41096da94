//! Starting the daemon when nothing answers: `portd` beside this `portctl`
//! (else on PATH), in its own session, stdin from /dev/null and output to
//! `portd.log` beside the database so that `$(portctl ...)` never waits on
//! it, without the caller's lease tag. Many clients may do this at once; the
//! daemons' lock file lets exactly one of them serve.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portd_api::LEASE_ENV;
use portd_api::paths::{
    check_state_dir, create_private_dir, db_path, log_path, open_private_file, parent_dir,
};
use portd_api::routes::GetHealth;

use crate::connect::connect;
use crate::error::ClientError;
use crate::transport::exchange;

/// How long a client waits for an autostarted daemon to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon to start: the `portd` beside this executable, else PATH's.
pub fn daemon_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("portd")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("portd"))
}

/// Where an autostarted daemon writes: beside the database, or beside the
/// socket when no database path can be worked out.
pub fn log_file(socket: &Path) -> PathBuf {
    match db_path(None) {
        Ok(db) => log_path(&db),
        Err(_) => socket.with_file_name("portd.log"),
    }
}

/// Starts the daemon for `socket` and waits until it answers health.
pub fn start(socket: &Path) -> Result<(), ClientError> {
    let log = log_file(socket);
    let unreachable = |why: String| ClientError::Unreachable(format!("cannot start portd: {why}"));
    // The log sits beside the database: the same rules as the daemon's for
    // that directory, and the file is never a symlink or another uid's.
    let uid = nix::unistd::geteuid().as_raw();
    let dir = parent_dir(&log);
    if !dir.exists() {
        create_private_dir(dir).map_err(|e| unreachable(format!("{}: {e}", dir.display())))?;
    }
    check_state_dir(dir, uid).map_err(|e| unreachable(format!("log directory: {e}")))?;
    let out = open_private_file(&log, OpenOptions::new().create(true).append(true), uid)
        .map_err(|e| unreachable(e.to_string()))?;
    // What the log held before: the daemon's reason is written after it.
    let logged_before = out.metadata().map_or(0, |m| m.len());
    let err = out.try_clone().map_err(|e| unreachable(e.to_string()))?;
    let binary = daemon_binary();
    let mut command = Command::new(&binary);
    command
        .arg("--socket")
        .arg(socket)
        .env_remove(LEASE_ENV)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // The daemon outlives its caller: it must not keep the caller's working
    // directory busy, and must not hold any fd the caller passed down (a
    // pipe held open would make `$(...)`, make or bats wait for the daemon).
    command.current_dir("/");
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls may be made: setsid, close_range and
    // fcntl are plain system calls that allocate nothing and take no lock.
    // They are raw because no maintained crate wraps close_range, or
    // fcntl on fds nobody in this process owns; with CLOSE_RANGE_CLOEXEC
    // and FD_CLOEXEC they close nothing before exec, so no fd is pulled
    // from under an owner.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            // Mark every inherited fd close-on-exec rather than closing it:
            // std's own exec-error pipe must survive until exec.
            const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                for fd in 3..1024 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| unreachable(format!("{}: {e}", binary.display())))?;

    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if healthy(socket) {
            // A daemon that lost the start-up race exits at once; reap it.
            let _ = child.try_wait();
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost the race to another client's daemon: that one answers
            // soon. Any other exit is a failure the log explains.
            let why = daemon_error(&log, logged_before);
            if !status.success() && !why.as_deref().is_some_and(lost_the_race) {
                return Err(start_failed(why, &log));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(match daemon_error(&log, logged_before) {
        Some(why) => start_failed(Some(why), &log),
        None => ClientError::Unreachable(format!(
            "portd did not answer within {} s of starting and logged no error; see {}",
            START_TIMEOUT.as_secs(),
            log.display()
        )),
    })
}

/// The daemon's own last error line among what it logged after `offset`:
/// a fatal `portd: ...` line, else the last `ERROR` of its log output.
fn daemon_error(log: &Path, offset: u64) -> Option<String> {
    let mut file = fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let fatal = lines.iter().rev().find_map(|l| l.strip_prefix("portd: "));
    fatal
        .or_else(|| lines.iter().rev().find(|l| l.contains(" ERROR ")).copied())
        .map(String::from)
}

/// True for the message of a daemon that found another one already serving.
fn lost_the_race(why: &str) -> bool {
    why.contains("already running")
}

/// The error for a daemon that did not start: its own words, and where to
/// read the rest.
fn start_failed(why: Option<String>, log: &Path) -> ClientError {
    let why = why.unwrap_or_else(|| "it exited without saying why".into());
    let next = if why.contains("in use by another portd") {
        "; that portd serves another socket: point PORTD_SOCKET (or --socket) at it, \
         or give this socket its own database with PORTD_DB"
    } else {
        ""
    };
    ClientError::Unreachable(format!(
        "cannot start portd: {why}{next} (its log: {})",
        log.display()
    ))
}

fn healthy(socket: &Path) -> bool {
    connect(socket)
        .ok()
        .and_then(|stream| exchange(stream, &GetHealth).ok())
        .is_some_and(|r| r.status == 200)
}
