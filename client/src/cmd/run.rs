//! `portctl run`: lease a port, start a command with it, release it when the
//! command exits.
//!
//! The child runs in its own process group, made the terminal's foreground
//! group when stdin is a terminal (and the terminal is given back after), so
//! an interactive dev server keeps its keyboard. portctl owns the lease: if
//! portctl is SIGKILLed the lease ends and the reaper treats the child as an
//! orphan. SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the child's
//! group; portctl exits with the child's code or re-raises its signal.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use clap::Args;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, setpgid, tcgetpgrp, tcsetpgrp};
use portd_api::{LEASE_ENV, Lease, LeaseRequest, NameList};

use super::args::PortChoice;
use super::lease::owner_ref;
use super::passed_over;
use crate::client::{Client, decode};
use crate::error::ClientError;

/// argv[1] of the hidden shim that sets `LISTEN_PID` to its own pid and
/// execs the command: only the process after fork knows its pid.
pub const LISTEN_FD_SHIM: &str = "__listen-fd-shim";
/// The fd a passed listening socket gets (systemd's `SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  portctl run --name api -- uvicorn app:app --port {port}
  portctl run --name web --env API_URL=http://localhost:{port@api} -- npm start
  portctl run --port 8000 --listen-fd -- uvicorn app:app --fd 3

{port} in the command and in --env values becomes the leased port, and
{port@NAME} the port of NAME in the same project; other {...} text is left
as it is. The child gets PORT and PORTD_LEASE in its environment. The lease
ends when the command exits; if portctl itself is killed with SIGKILL, the
lease ends with it and portd reaps the command as an orphan.")]
pub struct RunArgs {
    /// The port to lease: exactly this one unless --next
    #[arg(long, value_parser = super::port_arg, value_name = "PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub choice: PortChoice,
    /// Extra environment for the command (placeholders expand)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub envs: Vec<(String, String)>,
    /// Bind the port here and pass the listening socket as fd 3 (LISTEN_FDS)
    #[arg(long)]
    pub listen_fd: bool,
    /// Address --listen-fd binds
    #[arg(
        long,
        value_name = "IP",
        default_value = "127.0.0.1",
        requires = "listen_fd"
    )]
    pub listen_addr: IpAddr,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!("invalid --env '{text}': expected KEY=VALUE")),
    }
}

/// Replaces `{port}` with `port` and `{port@NAME}` with `lookup(NAME)`;
/// leaves any other `{...}` as written.
pub fn expand(
    text: &str,
    port: u16,
    lookup: &mut dyn FnMut(&str) -> Result<u16, ClientError>,
) -> Result<String, ClientError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{port") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("{port}") {
            out.push_str(&port.to_string());
            rest = after;
        } else if let Some((name, after)) =
            tail.strip_prefix("{port@").and_then(|t| t.split_once('}'))
        {
            out.push_str(&lookup(name)?.to_string());
            rest = after;
        } else {
            out.push_str("{port");
            rest = &tail["{port".len()..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub fn run(client: &Client, args: RunArgs) -> Result<(), ClientError> {
    let request = LeaseRequest {
        owner: Some(owner_ref(std::process::id())?),
        ..args.choice.request(args.port)?
    };
    let lease: Lease = decode(&client.send("POST", "/v1/leases", Some(&request))?)?;
    passed_over::note(&lease);
    let release = || {
        let path = format!("/v1/leases/{}?id={}", lease.port, lease.id);
        if let Err(e) = client.send("DELETE", &path, None::<&()>) {
            eprintln!("portctl: could not release port {}: {e}", lease.port);
        }
    };
    let project = request.project.as_deref().unwrap_or_default();
    match start(client, &args, &lease, project) {
        Ok(child) => {
            let status = supervise(child);
            release();
            finish(status)
        }
        Err(e) => {
            release();
            Err(e)
        }
    }
}

/// A started child and how the terminal was arranged for it.
struct Started {
    pid: Pid,
    took_terminal: bool,
}

fn start(
    client: &Client,
    args: &RunArgs,
    lease: &Lease,
    project: &str,
) -> Result<Started, ClientError> {
    let mut names: Option<NameList> = None;
    let mut lookup = |name: &str| -> Result<u16, ClientError> {
        if names.is_none() {
            let path = format!("/v1/names?project={}", percent_encode(project));
            names = Some(client.get::<NameList>(&path)?.0);
        }
        names
            .iter()
            .flat_map(|n| &n.names)
            .find(|n| n.name == name)
            .map(|n| n.port)
            .ok_or_else(|| {
                ClientError::NotFound(format!(
                    "no port known for name '{name}' in {project}; lease it first"
                ))
            })
    };
    let mut command_line = Vec::with_capacity(args.command.len());
    for arg in &args.command {
        command_line.push(match arg.to_str() {
            Some(text) => OsString::from(expand(text, lease.port, &mut lookup)?),
            None => arg.clone(),
        });
    }
    let mut envs = Vec::with_capacity(args.envs.len());
    for (key, value) in &args.envs {
        envs.push((key.clone(), expand(value, lease.port, &mut lookup)?));
    }

    let listener = if args.listen_fd {
        let addr = SocketAddr::new(args.listen_addr, lease.port);
        Some(TcpListener::bind(addr).map_err(|e| ClientError::Api {
            status: 409,
            body: None,
            raw: format!("cannot bind {addr}: {e}"),
        })?)
    } else {
        None
    };

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
    // The parent waits for these with sigwait; block them before the child
    // exists so that none is lost (the child's mask is reset by std).
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
        // The parent blocks the forwarded signals to sigwait on them; the
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

const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn forwarded_and_chld() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

fn block_forwarded_signals(how: SigmaskHow) {
    let _ = pthread_sigmask(how, Some(&forwarded_and_chld()), None);
}

/// Forwards signals to the child's group until the child exits.
fn supervise(child: Started) -> WaitStatus {
    let set = forwarded_and_chld();
    let group = Pid::from_raw(-child.pid.as_raw());
    let status = loop {
        match waitpid(
            child.pid,
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED),
        ) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break status,
            Ok(WaitStatus::Stopped(..)) => suspend_with(&child, group),
            Ok(_) => {}
            Err(_) => break WaitStatus::Exited(child.pid, 1),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(signal) => {
                let _ = kill(group, signal);
            }
            Err(_) => {}
        }
    };
    if child.took_terminal {
        set_terminal_group(getpgrp());
    }
    status
}

/// The child stopped (Ctrl-Z): stop with it so the shell sees its job
/// stopped and gets the terminal back; when continued (or at once, with no
/// shell to continue us), continue the child, handing the terminal over
/// again if we are in the foreground.
fn suspend_with(child: &Started, group: Pid) {
    if child.took_terminal {
        set_terminal_group(getpgrp());
    }
    // SIGTSTP, not SIGSTOP: in an orphaned process group (no job-control
    // shell above us: tmux, ssh -t, a script leading the session) the kernel
    // discards SIGTSTP, and we go straight on to continue the child instead
    // of stopping where nobody could resume us.
    let _ = nix::sys::signal::raise(Signal::SIGTSTP);
    if child.took_terminal && in_foreground() {
        set_terminal_group(child.pid);
    }
    let _ = kill(group, Signal::SIGCONT);
}

/// True when stdin is our controlling terminal and our group is its
/// foreground group (tcgetpgrp fails on anything else).
fn in_foreground() -> bool {
    tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == getpgrp())
}

/// Makes `group` the terminal's foreground group. Called from whatever
/// group we are in, so SIGTTOU is ignored for the call.
fn set_terminal_group(group: Pid) {
    // SAFETY: signal() with SIG_IGN/SIG_DFL on SIGTTOU only.
    unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
    let _ = tcsetpgrp(std::io::stdin(), group);
    unsafe { libc::signal(libc::SIGTTOU, libc::SIG_DFL) };
}

/// Exits like the child: its code, or its signal re-raised.
fn finish(status: WaitStatus) -> ! {
    block_forwarded_signals(SigmaskHow::SIG_UNBLOCK);
    match status {
        WaitStatus::Exited(_, code) => std::process::exit(code),
        WaitStatus::Signaled(_, signal, _) => {
            // SAFETY: restoring the default action and raising it on ourselves.
            unsafe {
                libc::signal(signal as libc::c_int, libc::SIG_DFL);
            }
            let _ = nix::sys::signal::raise(signal);
            std::process::exit(128 + signal as i32)
        }
        _ => std::process::exit(1),
    }
}

/// 127 for a command not found, 126 for one that cannot be executed.
fn spawn_error(program: &str, error: &io::Error) -> ClientError {
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

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str) -> Result<u16, ClientError> {
        match name {
            "api" => Ok(8001),
            other => Err(ClientError::NotFound(format!("no {other}"))),
        }
    }

    #[test]
    fn placeholders_expand_and_unknown_ones_stay() {
        let mut lookup = names;
        assert_eq!(
            expand("--port={port}", 8000, &mut lookup).unwrap(),
            "--port=8000"
        );
        assert_eq!(
            expand("http://localhost:{port@api}/x?p={port}", 8000, &mut lookup).unwrap(),
            "http://localhost:8001/x?p=8000"
        );
        assert_eq!(
            expand("{host} {port:x} {port", 8000, &mut lookup).unwrap(),
            "{host} {port:x} {port"
        );
        assert!(matches!(
            expand("{port@web}", 8000, &mut lookup),
            Err(ClientError::NotFound(_))
        ));
    }

    #[test]
    fn env_pairs_need_a_key() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn projects_are_encoded_for_the_query() {
        assert_eq!(percent_encode("/home/me/my app&x"), "/home/me/my%20app%26x");
    }
}
