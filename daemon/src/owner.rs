//! Who owns a lease: whether an owner process is still alive, which
//! process a caller's lease belongs to, and the checks an owner must pass
//! (it runs, it is the process the caller named, the caller may act for
//! its uid), remembered per connection in an [`OwnerCache`].
//!
//! The caller of `POST /v1/leases` is usually `portctl`, which exits at once;
//! the lease must belong to the script or shell that ran it. That is the
//! caller's parent, skipping parents that are forked copies of their own
//! parent (same executable and command line): the subshells that `$(...)`,
//! pipelines and `( )` create in bash and dash.

use std::path::PathBuf;
use std::sync::OnceLock;

use portd_api::OwnerRef;
use portd_api::procstat::same_start_time;

use crate::lease::{Owner, OwnerId};
use crate::peer::Peer;
use crate::procs::{self, ProcStat};

/// Why a request's owner was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// No such process, another process than the one named, or no caller
    /// to resolve from.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not lease ports for that process's uid.
    #[error("{0}")]
    Forbidden(String),
}

/// The owner a connection's requests resolved to. A keep-alive connection
/// has one caller, so its owner is resolved once and then only checked.
#[derive(Debug, Default)]
pub struct OwnerCache(OnceLock<Owner>);

impl OwnerCache {
    /// The owner for a request that names none: the connection's, while
    /// `is_live` says it runs, else resolved from the caller (`check`).
    pub fn owner(
        &self,
        peer: Peer,
        boot_time: u64,
        is_live: impl FnOnce(OwnerId) -> bool,
    ) -> Result<Owner, OwnerError> {
        if let Some(owner) = self.0.get()
            && is_live(owner.id)
        {
            return Ok(*owner);
        }
        let owner = check(peer, None, boot_time)?;
        let _ = self.0.set(owner);
        Ok(owner)
    }
}

/// Resolves and checks the owner of `peer`'s request: the process it names
/// (`named`, with the start time it read), or the caller's parent, skipping
/// forked subshells. `boot_time` is the btime start times were converted
/// with.
pub fn check(peer: Peer, named: Option<OwnerRef>, boot_time: u64) -> Result<Owner, OwnerError> {
    let (pid, (stat, uid)) = match named {
        Some(named) => (named.pid, named_process(named, boot_time)?),
        None => {
            let caller = peer.pid.ok_or_else(|| {
                OwnerError::Invalid("the caller's pid is unknown; pass an owner".into())
            })?;
            let pid = procs::parent_of(caller)
                .and_then(|ppid| resolve_owner(ppid, ancestor_from_proc))
                .ok_or_else(|| {
                    OwnerError::Invalid(
                        "cannot find the calling process's parent; pass --owner".into(),
                    )
                })?;
            (pid, running(pid)?)
        }
    };
    if !peer.may_act_for(uid) {
        return Err(OwnerError::Forbidden(format!(
            "pid {pid} belongs to uid {uid}; uid {} may not lease ports for it",
            peer.uid
        )));
    }
    Ok(Owner {
        id: OwnerId {
            pid,
            start_ticks: stat.start_ticks,
        },
        start_time: procs::ticks_to_unix(boot_time, stat.start_ticks),
        uid,
        session: stat.session,
    })
}

/// What /proc says of the process `named` names: it runs, and it started
/// when the caller says (the start time the caller read, converted with the
/// btime it read); with its real uid.
pub fn named_process(named: OwnerRef, boot_time: u64) -> Result<(ProcStat, u32), OwnerError> {
    let pid = named.pid;
    let (stat, uid) = running(pid)?;
    let start_time = procs::ticks_to_unix(boot_time, stat.start_ticks);
    // btime moves when the wall clock is stepped, so a mismatch is checked
    // again with a fresh one (only then: /proc/stat is costly to read).
    let same = same_start_time(named.start_time, start_time)
        || procs::boot_time().is_ok_and(|btime| {
            let theirs = procs::ticks_to_unix(btime, stat.start_ticks);
            same_start_time(named.start_time, theirs)
        });
    if !same {
        return Err(OwnerError::Invalid(format!(
            "pid {pid} started at {start_time:.2}, not at {:.2}: it is another process",
            named.start_time
        )));
    }
    Ok((stat, uid))
}

/// A running process's stat and real uid.
fn running(pid: u32) -> Result<(ProcStat, u32), OwnerError> {
    let gone = || OwnerError::Invalid(format!("no live process with pid {pid}"));
    let stat = procs::read_stat(pid)
        .ok()
        .filter(|s| s.is_running())
        .ok_or_else(gone)?;
    let uid = procs::uids(pid).map_err(|_| gone())?.real;
    Ok((stat, uid))
}

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

    /// A `sleep` child, killed when dropped (also when a test fails).
    struct Sleeper(std::process::Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A running child, named as the client names an owner, with this
    /// process as the caller.
    fn named_child() -> (Sleeper, OwnerRef, u64, Peer) {
        let child = Sleeper(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        );
        let btime = procs::boot_time().unwrap();
        let stat = procs::read_stat(child.0.id()).unwrap();
        let named = OwnerRef {
            pid: child.0.id(),
            start_time: procs::ticks_to_unix(btime, stat.start_ticks),
        };
        let me = Peer {
            pid: Some(std::process::id()),
            uid: nix::unistd::getuid().as_raw(),
        };
        (child, named, btime, me)
    }

    #[test]
    fn a_named_owner_must_be_the_process_that_started_then_and_the_callers() {
        let (child, named, btime, me) = named_child();
        let owner = check(me, Some(named), btime).unwrap();
        assert_eq!(owner.id.pid, child.0.id());
        assert_eq!(owner.uid, me.uid);
        let later = OwnerRef {
            start_time: named.start_time + 5.0,
            ..named
        };
        assert!(
            matches!(check(me, Some(later), btime), Err(OwnerError::Invalid(m)) if m.contains("another process"))
        );
        let stranger = Peer {
            pid: None,
            uid: me.uid + 4242,
        };
        assert!(matches!(
            check(stranger, Some(named), btime),
            Err(OwnerError::Forbidden(_))
        ));
        drop(child);
        assert!(
            matches!(check(me, Some(named), btime), Err(OwnerError::Invalid(m)) if m.contains("no live process"))
        );
    }

    #[test]
    fn a_connection_keeps_its_owner_while_it_lives() {
        let cache = OwnerCache::default();
        // This test process's caller is its parent: resolved once.
        let me = Peer {
            pid: Some(std::process::id()),
            uid: nix::unistd::getuid().as_raw(),
        };
        let btime = procs::boot_time().unwrap();
        let first = cache.owner(me, btime, |_| true).unwrap();
        let stranger = Peer {
            pid: Some(std::process::id()),
            uid: me.uid + 4242,
        };
        // Alive: the cached owner answers, whoever asks on the connection.
        assert_eq!(cache.owner(stranger, btime, |_| true).unwrap(), first);
        // Gone: resolved again, and checked again.
        assert!(matches!(
            cache.owner(stranger, btime, |_| false),
            Err(OwnerError::Forbidden(_))
        ));
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
