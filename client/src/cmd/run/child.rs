//! Starting the command: its own process group, the terminal handed over
//! when we are its foreground job, the listening socket as fd 3 with
//! `--listen-fd`, and the signals `run` forwards blocked until it waits.

use std::ffi::OsString;
use std::io::{self, Stdin};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask, sigprocmask};
use nix::unistd::{Pid, close, getpgrp, getpid, setpgid, tcgetpgrp, tcsetpgrp};
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
    let took_terminal = in_foreground();
    let terminal = took_terminal.then(std::io::stdin);
    // SAFETY: between fork and exec the closure makes only
    // async-signal-safe system calls (sigprocmask, setpgid, getpid,
    // tcsetpgrp, close, fcntl) through nix, on the stdin handle and the
    // listener it owns; it allocates nothing and takes no lock
    // (`Stdin::as_fd` is the constant fd 0, nix's errors are errnos).
    unsafe {
        command.pre_exec(move || child_setup(terminal.as_ref(), listener.as_ref()));
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
    // The command has its copy of the listening socket: close ours.
    drop(command);
    let pid = Pid::from_raw(child.id() as i32);
    // Also from this side, so the group exists whichever runs first. The
    // child took the terminal before exec, and spawn returns after exec.
    let _ = setpgid(pid, pid);
    Ok(Started { pid, took_terminal })
}

/// In the child, before exec: own process group, the terminal if we have
/// one (stdin), and the listening socket as fd 3.
fn child_setup(terminal: Option<&Stdin>, listener: Option<&TcpListener>) -> io::Result<()> {
    // SIGTTOU blocked: a background group may take the terminal (POSIX
    // tcsetpgrp: "blocking or ignoring SIGTTOU"). Every other signal
    // unblocked: the parent blocks the forwarded ones to wait for them.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&sigttou()), None)?;
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    if let Some(stdin) = terminal {
        // Without the terminal the command still runs, as a background job.
        let _ = tcsetpgrp(stdin, getpid());
    }
    // The command starts with no signal blocked.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    if let Some(listener) = listener {
        if listener.as_raw_fd() == LISTEN_FD {
            fcntl(listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
        } else {
            // Whatever the caller passed down as fd 3 gives way; the copy
            // then lands on the lowest free fd from 3, which is 3, and
            // without close-on-exec.
            let _ = close(LISTEN_FD);
            if fcntl(listener, FcntlArg::F_DUPFD(LISTEN_FD))? != LISTEN_FD {
                return Err(Errno::EBADF.into());
            }
        }
    }
    Ok(())
}

fn sigttou() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTTOU);
    set
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
/// group we are in, so SIGTTOU is blocked for the call (which, for
/// tcsetpgrp, POSIX treats as ignoring it).
pub fn set_terminal_group(group: Pid) {
    let mut before = SigSet::empty();
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&sigttou()), Some(&mut before));
    let _ = tcsetpgrp(std::io::stdin(), group);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
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
