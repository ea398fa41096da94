//! Who owns a lease: the identity of an owner process, whether it is still
//! alive, and which process a caller's lease belongs to.
//!
//! The caller of `POST /v1/leases` is usually `portctl`, which exits at once;
//! the lease must belong to the script or shell that ran it. That is the
//! caller's parent, skipping parents that are forked copies of their own
//! parent (same executable and command line): the subshells that `$(...)`,
//! pipelines and `( )` create in bash and dash.

use std::path::PathBuf;

use crate::lease::OwnerId;
use crate::procs::{self, ProcStat};

/// True when `stat` (what /proc says of `owner.pid` now) is still the owner:
/// the process exists, is not a zombie, and started at the same tick.
pub fn owner_is_alive(owner: OwnerId, stat: Option<&ProcStat>) -> bool {
    match stat {
        Some(stat) => {
            stat.pid == owner.pid && stat.start_ticks == owner.start_ticks && stat.is_running()
        }
        None => false,
    }
}

/// Reads /proc and answers [`owner_is_alive`].
pub fn owner_is_alive_now(owner: OwnerId) -> bool {
    owner_is_alive(owner, procs::read_stat(owner.pid).ok().as_ref())
}

/// What owner resolution needs to know about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub ppid: u32,
    pub exe: Option<PathBuf>,
    pub cmdline: Option<Vec<u8>>,
}

impl Ancestor {
    /// A forked copy of `parent`: the same program with the same arguments.
    /// Unknown executables never match, so an unreadable parent stops the walk.
    fn is_copy_of(&self, parent: &Ancestor) -> bool {
        self.exe.is_some()
            && self.exe == parent.exe
            && self.cmdline.is_some()
            && self.cmdline == parent.cmdline
    }
}

/// The owner for a request from a caller whose parent is `caller_ppid`: that
/// parent, skipping forked copies. `lookup` returns what /proc says about a
/// pid (the caller's own executable and command line are never needed).
/// `None` when the parent cannot be read.
pub fn resolve_owner(caller_ppid: u32, lookup: impl Fn(u32) -> Option<Ancestor>) -> Option<u32> {
    let mut candidate = lookup(caller_ppid)?;
    // A bounded walk: a chain of copies longer than this is not a shell.
    for _ in 0..64 {
        if candidate.ppid == 0 {
            break;
        }
        let Some(parent) = lookup(candidate.ppid) else {
            break;
        };
        if !candidate.is_copy_of(&parent) {
            break;
        }
        candidate = parent;
    }
    Some(candidate.pid)
}

/// Reads what [`resolve_owner`] needs from /proc.
pub fn ancestor_from_proc(pid: u32) -> Option<Ancestor> {
    let stat = procs::read_stat(pid).ok()?;
    Some(Ancestor {
        pid,
        ppid: stat.ppid,
        exe: procs::exe(pid),
        cmdline: procs::cmdline_raw(pid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stat(pid: u32, state: char, start_ticks: u64) -> ProcStat {
        ProcStat {
            pid,
            state,
            ppid: 1,
            pgrp: pid,
            session: pid,
            start_ticks,
        }
    }

    #[test]
    fn owner_is_alive_only_with_same_start_time_and_not_zombie() {
        let owner = OwnerId {
            pid: 42,
            start_ticks: 1000,
        };
        assert!(owner_is_alive(owner, Some(&stat(42, 'S', 1000))));
        assert!(
            !owner_is_alive(owner, Some(&stat(42, 'S', 1001))),
            "pid reused"
        );
        assert!(!owner_is_alive(owner, Some(&stat(42, 'Z', 1000))), "zombie");
        assert!(!owner_is_alive(owner, None), "gone");
    }

    fn tree(entries: &[(u32, u32, &str, &str)]) -> HashMap<u32, Ancestor> {
        entries
            .iter()
            .map(|&(pid, ppid, exe, cmd)| {
                let a = Ancestor {
                    pid,
                    ppid,
                    exe: (!exe.is_empty()).then(|| PathBuf::from(exe)),
                    cmdline: Some(cmd.as_bytes().to_vec()),
                };
                (pid, a)
            })
            .collect()
    }

    #[test]
    fn command_substitution_subshells_are_skipped() {
        // script (bash) -> $( ) subshell -> pipeline subshell -> portctl
        let t = tree(&[
            (1, 0, "/sbin/init", "init"),
            (10, 1, "/usr/bin/bash", "-bash"),
            (20, 10, "/usr/bin/bash", "bash\0run.sh"),
            (21, 20, "/usr/bin/bash", "bash\0run.sh"),
            (22, 21, "/usr/bin/bash", "bash\0run.sh"),
            (23, 22, "/usr/bin/portctl", "portctl\0lease"),
        ]);
        assert_eq!(resolve_owner(t[&23].ppid, |p| t.get(&p).cloned()), Some(20));
    }

    #[test]
    fn a_direct_child_of_the_script_is_owned_by_the_script() {
        let t = tree(&[
            (10, 1, "/usr/bin/dash", "sh"),
            (20, 10, "/usr/bin/dash", "sh\0run.sh"),
            (23, 20, "/usr/bin/portctl", "portctl"),
        ]);
        assert_eq!(resolve_owner(t[&23].ppid, |p| t.get(&p).cloned()), Some(20));
    }

    #[test]
    fn an_unreadable_parent_stops_the_walk() {
        let t = tree(&[
            (10, 1, "", "bash"),
            (20, 10, "", "bash"),
            (23, 20, "/p", "portctl"),
        ]);
        assert_eq!(resolve_owner(t[&23].ppid, |p| t.get(&p).cloned()), Some(20));
    }

    #[test]
    fn a_vanished_parent_gives_no_owner() {
        let t = tree(&[(23, 20, "/p", "portctl")]);
        assert_eq!(resolve_owner(t[&23].ppid, |p| t.get(&p).cloned()), None);
    }
}
