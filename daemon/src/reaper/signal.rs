//! Sending signals safely: through a pidfd opened first and checked after,
//! so a pid that was reused between the decision and the signal is never hit.
//! SIGTERM (or the asked-for signal), the grace, then SIGKILL for what is left.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::pidfd;
use crate::procs::containers;
use crate::procs::scan::{ProcFacts, facts};

/// How long to wait for processes to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// A process chosen to be signalled, with the facts it was chosen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub facts: ProcFacts,
    pub cmdline: Vec<String>,
    pub port: u16,
    pub lease_id: Option<String>,
}

/// What happened to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: Target,
    /// The last signal sent; `None` if none was.
    pub signal: Option<Signal>,
    pub exited: bool,
    /// Why it was not signalled, if it was not.
    pub skipped: Option<String>,
}

/// True when what /proc says now is still the process that was chosen: same
/// start time, same uids, same tag, still running. A reused pid fails this.
pub fn still_the_same(chosen: &ProcFacts, now: Option<&ProcFacts>) -> bool {
    now.is_some_and(|now| {
        now.running
            && now.start_ticks == chosen.start_ticks
            && now.uids == chosen.uids
            && now.tag == chosen.tag
    })
}

/// Signals every target with `first`, waits up to `grace` for them to exit,
/// then SIGKILLs the rest. Blocking: call it from `spawn_blocking`.
pub fn terminate(targets: Vec<Target>, first: Signal, grace: Duration) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(targets.len());
    let mut live: Vec<(usize, OwnedFd)> = Vec::new();
    for target in targets {
        let mut outcome = Outcome {
            target,
            signal: None,
            exited: false,
            skipped: None,
        };
        match open_checked(&outcome.target.facts) {
            Ok(fd) => match pidfd::send_signal(&fd, first) {
                Ok(()) => {
                    outcome.signal = Some(first);
                    live.push((outcomes.len(), fd));
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => outcome.exited = true,
                Err(e) => outcome.skipped = Some(format!("cannot signal: {e}")),
            },
            Err(reason) => outcome.skipped = Some(reason),
        }
        outcomes.push(outcome);
    }
    let exited = wait_for_exit(&live, grace);
    let mut remaining = Vec::new();
    for (index, fd) in live {
        if exited.contains(&index) {
            outcomes[index].exited = true;
        } else if first != Signal::SIGKILL && pidfd::send_signal(&fd, Signal::SIGKILL).is_ok() {
            outcomes[index].signal = Some(Signal::SIGKILL);
            remaining.push((index, fd));
        } else {
            remaining.push((index, fd));
        }
    }
    for index in wait_for_exit(&remaining, KILL_WAIT) {
        outcomes[index].exited = true;
    }
    outcomes
}

/// The facts of the process `pid` names now, read after a pidfd for it was
/// opened, if it is the one seen earlier: still running, and started at
/// `seen_ticks` (clock ticks after boot). The explicit kill's counterpart of
/// the reaper's scan: the uid rules then judge facts of the very process
/// that was seen, and [`terminate`] checks them again through its own
/// pidfd before it signals.
pub fn seen_again(pid: u32, seen_ticks: Option<u64>) -> Result<ProcFacts, String> {
    let gone = || "it is already gone".to_string();
    let _pidfd = pidfd::open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => gone(),
        _ => format!("cannot open a pidfd for it ({e})"),
    })?;
    let now = facts(pid).filter(|f| f.running).ok_or_else(gone)?;
    match seen_ticks {
        Some(ticks) if ticks == now.start_ticks => Ok(now),
        Some(_) => Err(format!(
            "pid {pid} is not the process found listening any more (the pid was reused)"
        )),
        None => Err("its start time could not be read when it was found".into()),
    }
}

/// Opens a pidfd for the chosen process and checks, through /proc after the
/// open, that the pid still names it and is not a container's (its port
/// forwarder, or a process inside it): whatever chose it, those are never
/// signalled.
fn open_checked(chosen: &ProcFacts) -> Result<OwnedFd, String> {
    let fd = pidfd::open(chosen.pid).map_err(|e| format!("gone before it was signalled ({e})"))?;
    if !still_the_same(chosen, facts(chosen.pid).as_ref()) {
        return Err("changed since it was chosen (pid reused, uid or tag changed)".into());
    }
    if let Some(reason) = containers::never_signalled(chosen.pid) {
        return Err(reason);
    }
    Ok(fd)
}

/// Waits until each pidfd reports exit or `timeout` passes; returns the
/// indexes that exited.
fn wait_for_exit(fds: &[(usize, OwnedFd)], timeout: Duration) -> Vec<usize> {
    let deadline = Instant::now() + timeout;
    let mut exited = Vec::new();
    loop {
        let pending: Vec<&(usize, OwnedFd)> =
            fds.iter().filter(|(i, _)| !exited.contains(i)).collect();
        if pending.is_empty() {
            return exited;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let mut polls: Vec<PollFd> = pending
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut polls, timeout) {
            Ok(0) => return exited,
            Ok(_) => {
                for (poll_fd, (index, _)) in polls.iter().zip(&pending) {
                    if poll_fd.any().unwrap_or(false) {
                        exited.push(*index);
                    }
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return exited,
        }
        if Instant::now() >= deadline {
            return exited;
        }
    }
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("unknown signal {text}"));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal '{text}' (try TERM, INT, HUP, KILL)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::Uids;
    use std::process::Command;

    fn facts_of(pid: u32) -> ProcFacts {
        facts(pid).expect("facts")
    }

    #[test]
    fn a_reused_pid_is_not_the_chosen_process() {
        let chosen = ProcFacts {
            pid: 10,
            ppid: 1,
            pgrp: 10,
            session: 10,
            start_ticks: 500,
            running: true,
            uids: Uids {
                real: 1000,
                effective: 1000,
                saved: 1000,
            },
            tag: Some("L".into()),
        };
        assert!(still_the_same(&chosen, Some(&chosen.clone())));
        let reused = ProcFacts {
            start_ticks: 900,
            ..chosen.clone()
        };
        assert!(!still_the_same(&chosen, Some(&reused)));
        let setuid = ProcFacts {
            uids: Uids {
                saved: 0,
                ..chosen.uids
            },
            ..chosen.clone()
        };
        assert!(!still_the_same(&chosen, Some(&setuid)));
        let retagged = ProcFacts {
            tag: None,
            ..chosen.clone()
        };
        assert!(!still_the_same(&chosen, Some(&retagged)));
        let zombie = ProcFacts {
            running: false,
            ..chosen.clone()
        };
        assert!(!still_the_same(&chosen, Some(&zombie)));
        assert!(!still_the_same(&chosen, None));
    }

    #[test]
    fn signals_parse_in_every_usual_spelling() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    fn target(pid: u32) -> Target {
        Target {
            facts: facts_of(pid),
            cmdline: vec![],
            port: 1,
            lease_id: None,
        }
    }

    #[test]
    fn sigterm_ends_a_cooperative_child() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let outcomes = terminate(
            vec![target(child.id())],
            Signal::SIGTERM,
            Duration::from_secs(10),
        );
        assert_eq!(outcomes[0].signal, Some(Signal::SIGTERM));
        assert!(outcomes[0].exited);
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
    }

    #[test]
    fn a_child_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let mut child = Command::new("bash")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the trap is installed: the script says so.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let outcomes = terminate(
            vec![target(child.id())],
            Signal::SIGTERM,
            Duration::from_millis(300),
        );
        assert_eq!(outcomes[0].signal, Some(Signal::SIGKILL));
        assert!(outcomes[0].exited);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_changed_process_is_skipped() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let mut t = target(child.id());
        t.facts.start_ticks += 1;
        let outcomes = terminate(vec![t], Signal::SIGTERM, Duration::from_millis(100));
        assert_eq!(outcomes[0].signal, None);
        assert!(outcomes[0].skipped.as_deref().unwrap().contains("changed"));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child must be untouched"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
