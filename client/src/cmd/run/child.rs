//! Starting the command: its own process group, the terminal handed over
//! when we are its foreground job, the listening socket as fd 3 with
//! `--listen-fd`, and the signals `run` forwards blocked until it waits.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, setpgid, tcgetpgrp, tcsetpgrp};
use portd_api::{LEASE_ENV, Lease};

use crate::error::ClientError;

/// argv[1] of the hidden shim that sets `LISTEN_PID` to its own pid and
/// execs the command: only the process after fork knows its pid.
pub const LISTEN_FD_SHIM: &str = "__listen-fd-shim";
/// The fd a passed listening socket gets (systemd's `SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;

/// The signals `run` forwards to its command.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// A started command and how the terminal was arranged for it.
pub struct Started {
    pub pid: Pid,
    pub took_terminal: bool,
}

/// What to start: the expanded command line and environment.
pub struct Spec<'a> {
    pub command_line: Vec<OsString>,
    pub envs: Vec<(String, String)>,
    pub lease: &'a Lease,
    pub listener: Option<TcpListener>,
}

/// Starts the command as the leader of a process group of its own, with
/// `PORT` and the lease's tag, and the terminal if we are in the
/// foreground. On return the forwarded signals and SIGCHLD are blocked in
/// this process (the waiter takes them from a signalfd).
pub fn spawn(spec: Spec<'_>) -> Result<Started, ClientError> {
    let Spec {
        command_line,
        envs,
        lease,
        listener,
    } = spec;
    let mut command = match &listener {
        Some(_) => {
            let mut shim = Command::new(
                std::env::current_exe().map_err(|e| ClientError::Other(e.to_string()))?,
            );
            shim.arg(LISTEN_FD_SHIM).args(&command_line);
            shim.env("LISTEN_FDS", "1")
                .env("LISTEN_FDNAMES", lease.name.as_deref().unwrap_or("port"));
            shim
        }
        None => {
            let mut direct = Command::new(&command_line[0]);
            direct.args(&command_line[1..]);
            direct
        }
    };
    command
        .env("PORT", lease.port.to_string())
        .env(LEASE_ENV, &lease.id)
        .envs(envs);
    command.env_remove("LISTEN_PID");
    if listener.is_none() {
        command
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
    }

    // Hand the terminal over only if we are its foreground job: a
    // background `portctl run ... &` must leave it to the shell.
    let terminal = in_foreground();
    let listen_raw = listener.as_ref().map(|l| l.as_raw_fd());
    // SAFETY: only async-signal-safe calls (setpgid, signal, tcsetpgrp, dup2,
    // fcntl) run between fork and exec.
    unsafe {
        command.pre_exec(move || child_setup(terminal, listen_raw));
    }
    // The parent waits for these on a signalfd; block them before the child
    // exists so that none is lost (the child's mask is reset before exec).
    block_forwarded_signals(SigmaskHow::SIG_BLOCK);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            block_forwarded_signals(SigmaskHow::SIG_UNBLOCK);
            let program = command_line[0].to_string_lossy().into_owned();
            return Err(spawn_error(&program, &e));
        }
    };
    drop(listener);
    let pid = Pid::from_raw(child.id() as i32);
    // Also from this side, so the group exists whichever runs first. The
    // child took the terminal before exec, and spawn returns after exec.
    let _ = setpgid(pid, pid);
    Ok(Started {
        pid,
        took_terminal: terminal,
    })
}

/// In the child, before exec: own process group, the terminal if we have
/// one, and the listening socket as fd 3.
fn child_setup(terminal: bool, listener: Option<RawFd>) -> io::Result<()> {
    // SAFETY: plain syscalls on our own process and fds.
    unsafe {
        // The parent blocks the forwarded signals to wait for them; the
        // command must start with none blocked.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if terminal {
            // A background group may not take the terminal unless SIGTTOU
            // is ignored; restore the default before exec.
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        }
        if let Some(fd) = listener {
            if fd == LISTEN_FD {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The forwarded signals and SIGCHLD.
pub fn forwarded_and_chld() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

pub fn block_forwarded_signals(how: SigmaskHow) {
    let _ = pthread_sigmask(how, Some(&forwarded_and_chld()), None);
}

/// True when stdin is our controlling terminal and our group is its
/// foreground group (tcgetpgrp fails on anything else).
pub fn in_foreground() -> bool {
    tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == getpgrp())
}

/// Makes `group` the terminal's foreground group. Called from whatever
/// group we are in, so SIGTTOU is ignored for the call.
pub fn set_terminal_group(group: Pid) {
    // SAFETY: signal() with SIG_IGN/SIG_DFL on SIGTTOU only.
    unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
    let _ = tcsetpgrp(std::io::stdin(), group);
    // SAFETY: as above; SIGTTOU gets its default action back.
    unsafe { libc::signal(libc::SIGTTOU, libc::SIG_DFL) };
}

/// 127 for a command not found, 126 for one that cannot be executed.
pub fn spawn_error(program: &str, error: &io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::NotFound => ClientError::Exec {
            code: 127,
            message: format!("{program}: command not found"),
        },
        _ => ClientError::Exec {
            code: 126,
            message: format!("{program}: cannot execute: {error}"),
        },
    }
}

/// The shim: `LISTEN_PID` is this process's pid, which the command keeps
/// across exec. Never returns on success.
pub fn listen_fd_shim(command: &[OsString]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("portctl: {LISTEN_FD_SHIM}: no command");
        return 2;
    };
    let error = Command::new(program)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .exec();
    let failure = spawn_error(&program.to_string_lossy(), &error);
    eprintln!("portctl: {failure}");
    failure.exit_code()
}
