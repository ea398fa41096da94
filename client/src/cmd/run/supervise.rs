//! Waiting for the command, and for what it leaves behind.
//!
//! `run` is a child subreaper: whatever the command starts and abandons is
//! reparented to `run`, not to init, so `run` sees it exit. The signals it
//! forwards (and SIGCHLD) arrive on a signalfd, which also lets it look at
//! the lease's processes on a schedule:
//!
//! - while the command runs, a few times in its first seconds, to say when
//!   it listens on some other port but not on the leased one (`ports`);
//! - once the command has exited on its own (not stopped by a signal `run`
//!   forwarded or the terminal sent), to see whether processes of the lease
//!   still run: a backgrounded server (which may not listen yet), a
//!   reloader's worker after the reloader was killed. While any does, the
//!   lease stays active and `run` waits, forwarding signals to them too;
//!   the lease ends when the last of them exits, or when `run` is told to
//!   stop, and then the daemon reaps whatever of them still listens.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid, getpgrp};
use portd_api::routes::ListProcesses;
use portd_api::{Lease, LeaseProcess, LeaseProcesses};

use super::child::{FORWARDED, Started, forwarded_and_chld, in_foreground, set_terminal_group};
use super::ports::{PortCheck, program_name};
use crate::client::Client;

/// How long processes may go on listening after the command exited before
/// `run` says it keeps the lease for them: a server shutting down with its
/// command needs a moment to close its socket.
const QUIET: Duration = Duration::from_secs(1);
/// How often `run` looks again while processes of the lease still serve.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// Forwards signals to the command's group until the command exits and no
/// process of the lease listens on its port any more; returns the
/// command's status.
pub fn supervise(child: Started, client: &Client, lease: &Lease) -> WaitStatus {
    let signals = match SignalFd::with_flags(&forwarded_and_chld(), SfdFlags::SFD_CLOEXEC) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("portctl: cannot wait for signals ({e}); they will not be forwarded");
            return waitpid(child.pid, None).unwrap_or(WaitStatus::Exited(child.pid, 1));
        }
    };
    let group = Pid::from_raw(-child.pid.as_raw());
    let mut check = PortCheck::new(Instant::now());
    let mut status = None;
    // A stop was asked for: a forwarded signal, or the terminal's.
    let mut stopping = false;
    // After the command's exit: since when, and what of the lease still runs.
    let mut exited_at: Option<Instant> = None;
    let mut remaining: Vec<LeaseProcess> = Vec::new();
    let mut announced = false;
    let status = loop {
        reap_exited(&child, group, &mut status);
        let now = Instant::now();
        let timeout = match status {
            None => {
                if check.due().is_some_and(|due| due <= now)
                    && let Some(found) = processes(client, lease)
                    && let Some(warning) = check.observe(now, lease.port, &found.processes)
                {
                    eprintln!("portctl: {warning}");
                }
                check
                    .due()
                    .map(|due| due.saturating_duration_since(Instant::now()))
            }
            Some(status) => {
                if stopping || stopped_by_signal(status) {
                    break status;
                }
                let since = *exited_at.get_or_insert(now);
                remaining = processes(client, lease)
                    .map(|found| found.processes)
                    .unwrap_or_default();
                if remaining.is_empty() {
                    break status;
                }
                if !announced && now.duration_since(since) >= QUIET {
                    announced = true;
                    // Ctrl-C must reach us now, not the group the command left.
                    if child.took_terminal && !in_foreground() {
                        set_terminal_group(getpgrp());
                    }
                    eprintln!("portctl: {}", left_running(status, &remaining, lease.port));
                }
                Some(LOOK_AGAIN)
            }
        };
        if let Some(signal) = next_signal(&signals, timeout)
            && FORWARDED.contains(&signal)
        {
            stopping = true;
            forward(signal, group, &remaining);
        }
    };
    if child.took_terminal {
        set_terminal_group(getpgrp());
    }
    status
}

/// Collects every child that exited: the command (its status goes into
/// `status`) and anything reparented to us. A stopped command (Ctrl-Z)
/// stops us with it.
fn reap_exited(child: &Started, group: Pid, status: &mut Option<WaitStatus>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(done @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, ..)))
                if pid == child.pid =>
            {
                *status = Some(done);
            }
            Ok(WaitStatus::Stopped(pid, _)) if pid == child.pid => suspend_with(child, group),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The next signal, waiting at most `timeout` (forever if `None`).
fn next_signal(signals: &SignalFd, timeout: Option<Duration>) -> Option<Signal> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().max(1)).unwrap_or(PollTimeout::MAX),
    };
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    let info = signals.read_signal().ok()??;
    Signal::try_from(info.ssi_signo as i32).ok()
}

/// Sends `signal` to the command's group and to every process of the lease
/// still running outside it.
fn forward(signal: Signal, group: Pid, remaining: &[LeaseProcess]) {
    let _ = kill(group, signal);
    for process in remaining {
        let pid = Pid::from_raw(process.pid as i32);
        if getpgid(Some(pid)).is_ok_and(|g| g.as_raw() != -group.as_raw()) {
            let _ = kill(pid, signal);
        }
    }
}

/// The command died of a signal that asks for a stop: the terminal's
/// Ctrl-C, a closed terminal, a `kill`. What it left is reaped at once.
fn stopped_by_signal(status: WaitStatus) -> bool {
    matches!(status, WaitStatus::Signaled(_, signal, _) if FORWARDED.contains(&signal))
}

fn processes(client: &Client, lease: &Lease) -> Option<LeaseProcesses> {
    client
        .fetch(&ListProcesses { port: lease.port })
        .ok()
        .map(|(found, _)| found)
}

/// `the command was killed by SIGKILL, but pid 42 (uvicorn) still listens
/// on port 8000: the lease stays while it does (Ctrl-C stops it)`; names the
/// processes listening on the port if any do, else all that still run.
fn left_running(status: WaitStatus, remaining: &[LeaseProcess], port: u16) -> String {
    let how = match status {
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {}", signal.as_str()),
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        _ => "ended".into(),
    };
    let listening: Vec<&LeaseProcess> = remaining
        .iter()
        .filter(|p| p.listens.contains(&port))
        .collect();
    let named: Vec<&LeaseProcess> = if listening.is_empty() {
        remaining.iter().collect()
    } else {
        listening.clone()
    };
    let who: Vec<String> = named
        .iter()
        .map(|p| format!("pid {} ({})", p.pid, program_name(&p.cmdline)))
        .collect();
    let one = who.len() == 1;
    let doing = match (listening.is_empty(), one) {
        (false, true) => format!("listens on port {port}"),
        (false, false) => format!("listen on port {port}"),
        (true, true) => "runs".to_string(),
        (true, false) => "run".to_string(),
    };
    format!(
        "the command {how}, but {} still {doing}: the lease stays while {} (Ctrl-C stops {})",
        who.join(", "),
        if one { "it does" } else { "they do" },
        if one { "it" } else { "them" },
    )
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

/// Exits like the command: its code, or its signal re-raised.
pub fn finish(status: WaitStatus) -> ! {
    super::child::block_forwarded_signals(nix::sys::signal::SigmaskHow::SIG_UNBLOCK);
    match status {
        WaitStatus::Exited(_, code) => std::process::exit(code),
        WaitStatus::Signaled(_, signal, _) => {
            // The signal's default action, whatever ours is (Rust ignores
            // SIGPIPE; `nohup` and `&` in a script leave HUP, INT or QUIT
            // ignored): this ends portctl as the signal ended the command.
            // It returns only for a signal it does not know (a real-time
            // one), which then becomes the shell's 128 + N.
            let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
            std::process::exit(128 + signal as i32)
        }
        _ => std::process::exit(1),
    }
}

/// Makes `run` the parent of whatever its command abandons.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        // Without it an abandoned server goes to init; the daemon still
        // reaps it when the lease ends.
        if e != Errno::EINVAL {
            eprintln!("portctl: warning: cannot become a child subreaper: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(pid: u32, cmd: &str) -> LeaseProcess {
        LeaseProcess {
            pid,
            cmdline: cmd.split(' ').map(String::from).collect(),
            listens: vec![8000],
        }
    }

    fn idle(pid: u32, cmd: &str) -> LeaseProcess {
        LeaseProcess {
            listens: Vec::new(),
            ..serving(pid, cmd)
        }
    }

    #[test]
    fn the_note_names_what_still_serves_and_how_the_command_ended() {
        let pid = Pid::from_raw(7);
        let one = left_running(
            WaitStatus::Signaled(pid, Signal::SIGKILL, false),
            &[
                serving(42, "/venv/bin/python3 /venv/bin/uvicorn app:app"),
                idle(
                    43,
                    "python3 -c from multiprocessing.resource_tracker import main",
                ),
            ],
            8000,
        );
        assert_eq!(
            one,
            "the command was killed by SIGKILL, but pid 42 (uvicorn) still listens on port 8000: the lease stays while it does (Ctrl-C stops it)"
        );
        let two = left_running(
            WaitStatus::Exited(pid, 0),
            &[serving(42, "nginx"), serving(43, "nginx")],
            8000,
        );
        assert!(two.starts_with("the command exited with status 0, but pid 42 (nginx), pid 43 (nginx) still listen on port 8000"), "{two}");
        assert!(two.ends_with("while they do (Ctrl-C stops them)"), "{two}");
        let starting = left_running(
            WaitStatus::Exited(pid, 0),
            &[idle(44, "python3 -m http.server 8000")],
            8000,
        );
        assert_eq!(
            starting,
            "the command exited with status 0, but pid 44 (http.server) still runs: the lease stays while it does (Ctrl-C stops it)"
        );
    }

    #[test]
    fn only_a_stop_signal_ends_the_wait_at_once() {
        let pid = Pid::from_raw(7);
        assert!(stopped_by_signal(WaitStatus::Signaled(
            pid,
            Signal::SIGINT,
            false
        )));
        assert!(stopped_by_signal(WaitStatus::Signaled(
            pid,
            Signal::SIGHUP,
            true
        )));
        assert!(!stopped_by_signal(WaitStatus::Signaled(
            pid,
            Signal::SIGKILL,
            false
        )));
        assert!(!stopped_by_signal(WaitStatus::Exited(pid, 0)));
    }
}
