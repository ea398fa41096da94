//! Which processes belong to an ended lease, as a plain function over facts.
//!
//! A process **belongs** to lease L when it carries L's tag, or when it is a
//! member of the process group that `portctl run` made for L's command
//! (registered with the lease: the group's id is the command's pid) and
//! carries no other lease's tag. The group proves what the tag cannot for a
//! server that clears its environment (nginx keeps only `TZ`).
//!
//! An **orphan** of lease L belongs to L, started after L was granted (in
//! the same boot), and either listens on L's port or is in the process group
//! of such a listener whose group leader itself belongs to L (the dev
//! server's reloader, workers and bundlers). Only orphans whose real,
//! effective and saved uids all equal the owner's are signalled; everything
//! else that is tagged, and untagged listeners in the dead owner's session
//! (suspects), is reported with a reason.
//!
//! A group id is only reused once every member of the group has exited and
//! the pid counter has come round again; a member must also be in the
//! owner's session (or the session the command made) and have started after
//! the grant, so a later group that happens to get the same id is not taken
//! for the lease's.

use std::collections::HashSet;

use crate::lease::{ActiveLease, EndedLease};
use crate::procs::scan::ProcFacts;

/// The facts about a lease that the policy needs (an ended lease's, when
/// judging orphans; an active one's, to tell which processes are its).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFacts {
    pub id: String,
    pub port: u16,
    pub owner_uid: u32,
    pub owner_sid: u32,
    /// Clock ticks after boot at which the lease was granted.
    pub granted_ticks: u64,
    pub same_boot: bool,
    /// The process group `portctl run` made for the lease's command (the
    /// command's pid), if one was registered.
    pub group: Option<u32>,
    /// Released with `keep` at this tick: what had started before it is left
    /// running. A process started in the tick of the release counts as
    /// started after it, as one started in the tick of the grant counts as
    /// started after the grant: ticks are 10 ms, and in both cases the
    /// ambiguity goes to the lease.
    pub kept_ticks: Option<u64>,
}

impl LeaseFacts {
    /// The facts of an active lease, for a daemon running in boot `boot_id`.
    pub fn active(lease: &ActiveLease, boot_id: &str) -> LeaseFacts {
        LeaseFacts {
            id: lease.id.clone(),
            port: lease.port,
            owner_uid: lease.owner.uid,
            owner_sid: lease.owner.session,
            granted_ticks: lease.granted_ticks,
            same_boot: lease.boot_id == boot_id,
            group: lease.command.map(|c| c.pid),
            kept_ticks: None,
        }
    }

    /// The facts of an ended lease, for a daemon running in boot `boot_id`.
    pub fn ended(ended: &EndedLease, boot_id: &str) -> LeaseFacts {
        LeaseFacts {
            kept_ticks: ended.kept_ticks,
            ..LeaseFacts::active(&ended.lease, boot_id)
        }
    }
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

/// Whether the running process `p` belongs to `lease`: it carries the
/// lease's tag, or it is a member of the lease's registered process group
/// (in the owner's session or the one the command made, this boot) and
/// carries no other lease's tag.
pub fn belongs(lease: &LeaseFacts, p: &ProcFacts) -> bool {
    let tagged = p.tag.as_deref() == Some(lease.id.as_str());
    let in_group = lease.same_boot
        && lease.group.is_some_and(|group| {
            p.pgrp == group
                && (p.session == lease.owner_sid || p.session == group)
                && (p.tag.is_none() || tagged)
        });
    p.running && (tagged || in_group)
}

/// Judges every process of `procs` that concerns `lease`. `listens` holds
/// the pids listening on the lease's port; `protected` pids are never
/// signalled.
pub fn judge(
    lease: &LeaseFacts,
    procs: &[ProcFacts],
    listens: &HashSet<u32>,
    protected: &HashSet<u32>,
) -> Vec<(u32, Judgement)> {
    let after_grant = |p: &ProcFacts| p.start_ticks >= lease.granted_ticks;
    let eligible = |p: &ProcFacts| belongs(lease, p) && after_grant(p);
    let eligible_leader = |pgrp: u32| procs.iter().any(|p| p.pid == pgrp && eligible(p));
    let listener_groups: HashSet<u32> = procs
        .iter()
        .filter(|p| eligible(p) && listens.contains(&p.pid) && eligible_leader(p.pgrp))
        .map(|p| p.pgrp)
        .collect();

    let mut out = Vec::new();
    for p in procs {
        if !belongs(lease, p) {
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
        } else if lease.kept_ticks.is_some_and(|kept| p.start_ticks < kept) {
            Judgement::Report("left running by `portctl release --keep`".into())
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

    fn lease() -> LeaseFacts {
        LeaseFacts {
            id: ID.into(),
            port: 8000,
            owner_uid: 1000,
            owner_sid: 50,
            granted_ticks: GRANTED,
            same_boot: true,
            group: None,
            kept_ticks: None,
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
        lease: &LeaseFacts,
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
        let other_boot = LeaseFacts {
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

    /// nginx under `portctl run`: master (the command, leader of group 10)
    /// and worker, both untagged, both holding the listening socket.
    fn registered(group: u32) -> LeaseFacts {
        LeaseFacts {
            group: Some(group),
            ..lease()
        }
    }

    fn untagged_in(pid: u32, pgrp: u32, session: u32) -> ProcFacts {
        ProcFacts {
            session,
            ..proc(pid, pgrp, None, LATER)
        }
    }

    #[test]
    fn untagged_members_of_the_registered_group_are_orphans() {
        let procs = [untagged_in(10, 10, 50), untagged_in(11, 10, 50)];
        assert_eq!(
            reaped(&run_with(&registered(10), &procs, &[10, 11], &[])),
            [10, 11]
        );
        // A member that does not listen goes with the group's listener.
        assert_eq!(
            reaped(&run_with(&registered(10), &procs, &[11], &[])),
            [10, 11]
        );
        // Without the registration they are only suspects.
        assert!(reaped(&run(&procs, &[10, 11])).is_empty());
    }

    #[test]
    fn a_command_that_made_its_own_session_keeps_its_group() {
        let procs = [untagged_in(10, 10, 10), untagged_in(11, 10, 10)];
        assert_eq!(
            reaped(&run_with(&registered(10), &procs, &[11], &[])),
            [10, 11]
        );
    }

    #[test]
    fn a_group_id_seen_in_another_session_is_not_the_leases() {
        // The registered group died and its id came round again elsewhere.
        let procs = [untagged_in(10, 10, 77)];
        assert!(run_with(&registered(10), &procs, &[10], &[]).is_empty());
    }

    #[test]
    fn group_members_started_before_the_grant_or_tagged_for_another_lease_stay() {
        let early = ProcFacts {
            start_ticks: GRANTED - 1,
            ..untagged_in(10, 10, 50)
        };
        let judged = run_with(&registered(10), &[early], &[10], &[]);
        assert!(matches!(&judged[..], [(10, Judgement::Report(r))] if r.contains("before")));
        let other = ProcFacts {
            tag: Some("lease-2".into()),
            ..untagged_in(11, 10, 50)
        };
        assert!(run_with(&registered(10), &[other], &[11], &[]).is_empty());
    }

    #[test]
    fn a_release_with_keep_spares_what_ran_then_but_not_what_started_later() {
        let kept = LeaseFacts {
            kept_ticks: Some(LATER + 10),
            ..lease()
        };
        let procs = [
            proc(10, 10, Some(ID), LATER + 9),
            proc(20, 20, Some(ID), LATER + 10),
        ];
        let judged = run_with(&kept, &procs, &[10, 20], &[]);
        assert_eq!(reaped(&judged), [20]);
        assert!(matches!(&judged[0], (10, Judgement::Report(r)) if r.contains("--keep")));
    }

    #[test]
    fn a_registered_group_of_another_boot_is_nothing() {
        let other_boot = LeaseFacts {
            same_boot: false,
            ..registered(10)
        };
        let procs = [untagged_in(10, 10, 60)];
        assert!(run_with(&other_boot, &procs, &[10], &[]).is_empty());
    }

    #[test]
    fn pid_reuse_shows_as_a_start_after_the_grant_without_the_tag() {
        // A reused pid is another process: it has no tag, so it is never ours.
        assert!(reaped(&run(&[proc(10, 10, None, LATER)], &[10])).is_empty());
    }
}
