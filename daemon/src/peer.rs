//! Who is asking, and whom nothing done on its behalf may signal: a
//! caller's credentials (SO_PEERCRED, read by the accept loop) and the pids
//! that every kill and reap leaves alone. Plain data and rules: the handlers
//! above and the reaper below share them without importing each other.

use std::collections::HashSet;

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: Option<u32>,
    pub uid: u32,
}

impl Peer {
    /// Whether this caller may act on what `uid` owns: its own, or root.
    pub fn may_act_for(&self, uid: u32) -> bool {
        self.uid == 0 || self.uid == uid
    }
}

/// Pids no path may signal: pid 1 and the daemon itself; for a request, also
/// the `caller` and its ancestors, whose parents `parent_of` gives.
pub fn protected(caller: Option<u32>, parent_of: impl Fn(u32) -> Option<u32>) -> HashSet<u32> {
    let mut protected = HashSet::from([1, std::process::id()]);
    let mut next = caller;
    while let Some(pid) = next {
        if pid <= 1 || !protected.insert(pid) {
            break;
        }
        next = parent_of(pid);
    }
    protected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_acts_for_anyone_and_others_for_themselves() {
        let user = Peer {
            pid: None,
            uid: 1000,
        };
        assert!(user.may_act_for(1000));
        assert!(!user.may_act_for(1001));
        assert!(!user.may_act_for(0));
        let root = Peer { pid: None, uid: 0 };
        assert!(root.may_act_for(1000) && root.may_act_for(0));
    }

    #[test]
    fn the_caller_and_its_ancestors_are_protected_up_to_pid_1() {
        let parents = |pid| match pid {
            40 => Some(30),
            30 => Some(20),
            20 => Some(1),
            _ => None,
        };
        let me = std::process::id();
        assert_eq!(
            protected(Some(40), parents),
            HashSet::from([1, me, 20, 30, 40])
        );
        assert_eq!(protected(None, parents), HashSet::from([1, me]));
    }

    #[test]
    fn a_loop_in_the_parents_ends_the_walk() {
        let parents = |pid| Some(if pid == 50 { 60 } else { 50 });
        let found = protected(Some(50), parents);
        assert!(found.contains(&50) && found.contains(&60), "{found:?}");
    }
}
