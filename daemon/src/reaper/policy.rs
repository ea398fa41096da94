//! Which processes belong to an ended lease, as a plain function over facts.
//!
//! An **orphan** of lease L carries L's tag, started after L was granted (in
//! the same boot), and either listens on L's port or is in the process group
//! of such a listener whose group leader is itself tagged with L (the dev
//! server's reloader, workers and bundlers). Only orphans whose real,
//! effective and saved uids all equal the owner's are signalled; everything
//! else that is tagged, and untagged listeners in the dead owner's session
//! (suspects), is reported with a reason.

use std::collections::HashSet;

use crate::procs::scan::ProcFacts;

/// The facts about an ended lease that the policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLease {
    pub id: String,
    pub port: u16,
    pub owner_uid: u32,
    pub owner_sid: u32,
    /// Clock ticks after boot at which the lease was granted.
    pub granted_ticks: u64,
    pub same_boot: bool,
}

/// A process and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Signal it.
    Reap,
    /// Leave it, and say why.
    Report(String),
    /// An untagged listener in the dead owner's session: report only.
    Suspect,
}

/// Judges every process of `procs` that concerns `lease`. `listens` holds
/// the pids listening on the lease's port; `protected` pids are never
/// signalled.
pub fn judge(
    lease: &EndedLease,
    procs: &[ProcFacts],
    listens: &HashSet<u32>,
    protected: &HashSet<u32>,
) -> Vec<(u32, Judgement)> {
    let tagged = |p: &ProcFacts| p.running && p.tag.as_deref() == Some(lease.id.as_str());
    let after_grant = |p: &ProcFacts| p.start_ticks >= lease.granted_ticks;
    let eligible = |p: &ProcFacts| tagged(p) && after_grant(p);
    let eligible_leader = |pgrp: u32| procs.iter().any(|p| p.pid == pgrp && eligible(p));
    let listener_groups: HashSet<u32> = procs
        .iter()
        .filter(|p| eligible(p) && listens.contains(&p.pid) && eligible_leader(p.pgrp))
        .map(|p| p.pgrp)
        .collect();

    let mut out = Vec::new();
    for p in procs {
        if !tagged(p) {
            if p.running
                && p.tag.is_none()
                && listens.contains(&p.pid)
                && p.session == lease.owner_sid
            {
                out.push((p.pid, Judgement::Suspect));
            }
            continue;
        }
        let verdict = if !lease.same_boot {
            Judgement::Report("the lease is from another boot; its tags prove nothing".into())
        } else if !after_grant(p) {
            Judgement::Report("started before the lease was granted".into())
        } else if !(listens.contains(&p.pid) || listener_groups.contains(&p.pgrp)) {
            Judgement::Report(format!(
                "tagged, but neither listens on port {} nor is in a listener's process group",
                lease.port
            ))
        } else if [p.uids.real, p.uids.effective, p.uids.saved] != [lease.owner_uid; 3] {
            Judgement::Report(format!(
                "runs as uid {}/{}/{}, the lease's owner was uid {}",
                p.uids.real, p.uids.effective, p.uids.saved, lease.owner_uid
            ))
        } else if protected.contains(&p.pid) {
            Judgement::Report("protected (pid 1, portd, or the caller and its ancestors)".into())
        } else {
            Judgement::Reap
        };
        out.push((p.pid, verdict));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::Uids;

    const ID: &str = "lease-1";
    const GRANTED: u64 = 1_000_000;

    fn lease() -> EndedLease {
        EndedLease {
            id: ID.into(),
            port: 8000,
            owner_uid: 1000,
            owner_sid: 50,
            granted_ticks: GRANTED,
            same_boot: true,
        }
    }

    fn proc(pid: u32, pgrp: u32, tag: Option<&str>, start_ticks: u64) -> ProcFacts {
        ProcFacts {
            pid,
            ppid: 1,
            pgrp,
            session: 60,
            start_ticks,
            running: true,
            uids: Uids {
                real: 1000,
                effective: 1000,
                saved: 1000,
            },
            tag: tag.map(String::from),
        }
    }

    fn run(procs: &[ProcFacts], listeners: &[u32]) -> Vec<(u32, Judgement)> {
        run_with(&lease(), procs, listeners, &[])
    }

    fn run_with(
        lease: &EndedLease,
        procs: &[ProcFacts],
        listeners: &[u32],
        protected: &[u32],
    ) -> Vec<(u32, Judgement)> {
        let listens = listeners.iter().copied().collect();
        let protected = protected.iter().copied().collect();
        judge(lease, procs, &listens, &protected)
    }

    fn reaped(judged: &[(u32, Judgement)]) -> Vec<u32> {
        judged
            .iter()
            .filter(|(_, j)| *j == Judgement::Reap)
            .map(|(p, _)| *p)
            .collect()
    }

    const LATER: u64 = GRANTED + 50;

    #[test]
    fn a_tagged_listener_started_after_the_grant_is_an_orphan() {
        assert_eq!(reaped(&run(&[proc(10, 10, Some(ID), LATER)], &[10])), [10]);
    }

    #[test]
    fn reloader_and_worker_that_both_listen_both_go() {
        let procs = [proc(10, 10, Some(ID), LATER), proc(11, 10, Some(ID), LATER)];
        assert_eq!(reaped(&run(&procs, &[10, 11])), [10, 11]);
    }

    #[test]
    fn the_whole_group_of_a_tagged_leader_goes() {
        // npm (leader, not listening) -> node (listens) -> esbuild (not listening)
        let procs = [
            proc(10, 10, Some(ID), LATER),
            proc(11, 10, Some(ID), LATER),
            proc(12, 10, Some(ID), LATER),
        ];
        assert_eq!(reaped(&run(&procs, &[11])), [10, 11, 12]);
    }

    #[test]
    fn a_group_whose_leader_is_not_tagged_only_loses_its_listener() {
        let procs = [
            proc(10, 10, None, LATER),
            proc(11, 10, Some(ID), LATER),
            proc(12, 10, Some(ID), LATER),
        ];
        let judged = run(&procs, &[11]);
        assert_eq!(reaped(&judged), [11]);
        assert!(matches!(
            judged.iter().find(|(p, _)| *p == 12).unwrap().1,
            Judgement::Report(_)
        ));
    }

    #[test]
    fn a_tagged_process_that_does_not_listen_outside_the_group_survives() {
        let procs = [proc(10, 10, Some(ID), LATER), proc(20, 20, Some(ID), LATER)];
        let judged = run(&procs, &[10]);
        assert_eq!(reaped(&judged), [10]);
        assert!(matches!(&judged[1], (20, Judgement::Report(r)) if r.contains("neither listens")));
    }

    #[test]
    fn a_process_started_before_the_grant_survives() {
        let judged = run(&[proc(10, 10, Some(ID), GRANTED - 1)], &[10]);
        assert!(matches!(&judged[0], (10, Judgement::Report(r)) if r.contains("before")));
    }

    #[test]
    fn another_users_orphan_is_reported_not_reaped() {
        let mut p = proc(10, 10, Some(ID), LATER);
        p.uids.saved = 65534;
        let judged = run(&[p], &[10]);
        assert!(matches!(&judged[0], (10, Judgement::Report(r)) if r.contains("65534")));
    }

    #[test]
    fn leases_from_another_boot_reap_nothing() {
        let other_boot = EndedLease {
            same_boot: false,
            ..lease()
        };
        assert!(
            reaped(&run_with(
                &other_boot,
                &[proc(10, 10, Some(ID), LATER)],
                &[10],
                &[]
            ))
            .is_empty()
        );
    }

    #[test]
    fn protected_pids_are_never_reaped() {
        assert!(
            reaped(&run_with(
                &lease(),
                &[proc(10, 10, Some(ID), LATER)],
                &[10],
                &[10]
            ))
            .is_empty()
        );
    }

    #[test]
    fn other_tags_and_zombies_are_ignored() {
        let mut zombie = proc(11, 11, Some(ID), LATER);
        zombie.running = false;
        assert!(run(&[proc(10, 10, Some("other"), LATER), zombie], &[10, 11]).is_empty());
    }

    #[test]
    fn untagged_listeners_in_the_owners_session_are_suspects() {
        let mut p = proc(10, 10, None, LATER);
        p.session = 50;
        let q = proc(11, 11, None, LATER); // another session: nothing to say
        assert_eq!(run(&[p, q], &[10, 11]), [(10, Judgement::Suspect)]);
    }

    #[test]
    fn pid_reuse_shows_as_a_start_after_the_grant_without_the_tag() {
        // A reused pid is another process: it has no tag, so it is never ours.
        assert!(reaped(&run(&[proc(10, 10, None, LATER)], &[10])).is_empty());
    }
}
