//! The reaper: finds the orphans of ended leases and ends them safely, and
//! carries out explicit kills of a port's listeners.
//!
//! The policy (who is an orphan, who is only reported) is a plain function in
//! `policy`; signalling through pidfds is in `signal`. This module gathers
//! the facts, asks the policy, signals, and records one event per process.

mod claims;
pub mod policy;
pub mod signal;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use portd_api::{HolderKind, KillReport, KillRequest, ReapReport, Reported, Signalled};

use self::claims::{Claim, Claims};
use self::policy::{EndedLease, Judgement, judge};
use self::signal::{Outcome, Target, terminate};
use crate::config::MAX_GRACE;
use crate::leases::{LeaseError, Peer};
use crate::probe::{Probe, probe};
use crate::procs;
use crate::procs::containers;
use crate::procs::holders::{Seen, listening_pids, seen_holders};
use crate::procs::scan::{self, ProcFacts};
use crate::store::writer::{Change, Writer};
use crate::store::{LeaseRow, Store, StoreError, leases, now_ms};
use crate::task::{self, Units};

/// Most ended leases without tags examined for suspects in one sweep.
const MAX_UNTAGGED_LEASES: i64 = 200;

pub struct Reaper {
    store: Store,
    writer: Writer,
    grace: Duration,
    boot_id: String,
    /// The processes reaps are signalling now: each is reaped by one.
    claims: Claims,
    units: Units,
}

impl Reaper {
    pub fn new(store: Store, writer: Writer, grace: Duration, boot_id: String) -> Reaper {
        Reaper {
            store,
            writer,
            grace,
            boot_id,
            claims: Claims::default(),
            units: Units::default(),
        }
    }

    /// Pids no path may signal: pid 1 and the daemon itself; for a request,
    /// also the caller and its ancestors.
    pub fn protected(caller: Option<u32>) -> HashSet<u32> {
        let mut protected = HashSet::from([1, std::process::id()]);
        let mut next = caller;
        while let Some(pid) = next {
            if pid <= 1 || !protected.insert(pid) {
                break;
            }
            next = procs::read_stat(pid).ok().map(|s| s.ppid);
        }
        protected
    }

    /// Reaps the orphans of ended leases: of the leases in `only` if given,
    /// else of every ended lease that a running process is tagged with or
    /// that recently ended with a dead owner.
    pub async fn reap(
        &self,
        only: Option<HashSet<String>>,
        dry_run: bool,
        protected: HashSet<u32>,
    ) -> Result<ReapReport, StoreError> {
        // The pids listening on each ended lease's port, read once a port.
        let (procs, ended, mut listening) = match only {
            // A sweep: every process, to find every tag.
            None => {
                let procs = task::blocking("process scan", scan::all).await?;
                let ended = self.ended_leases(&procs).await?;
                (procs, ended, HashMap::new())
            }
            // Known leases (an owner just died): only the processes around
            // their ports' listeners can be orphans, so only those are read.
            Some(ids) => {
                let ended = self.leases_by_ids(&ids).await?;
                let ports: Vec<u16> = ended.iter().map(|l| l.port).collect();
                let (procs, listening) = task::blocking("listener scan", move || {
                    let listening: HashMap<u16, HashSet<u32>> =
                        ports.into_iter().map(|p| (p, listening_pids(p))).collect();
                    let listeners = listening.values().flatten().copied().collect();
                    (scan::around_listeners(&listeners), listening)
                })
                .await?;
                (procs, ended, listening)
            }
        };
        let grace = self.grace;
        let (targets, reported) = task::blocking("orphan judgement", move || {
            let mut targets = Vec::new();
            let mut reported = Vec::new();
            for lease in &ended {
                let listens = listening
                    .entry(lease.port)
                    .or_insert_with(|| listening_pids(lease.port));
                for (pid, judgement) in judge(lease, &procs, listens, &protected) {
                    let Some(facts) = procs.iter().find(|p| p.pid == pid).cloned() else { continue };
                    let cmdline = procs::cmdline(pid);
                    match judgement {
                        // A container's process is the engine's to stop, tag or not.
                        Judgement::Reap => match containers::never_signalled(pid) {
                            None => targets.push(Target { facts, cmdline, port: lease.port, lease_id: Some(lease.id.clone()) }),
                            Some(reason) => reported.push(note(&facts, cmdline, lease, reason, false)),
                        },
                        Judgement::Report(reason) => reported.push(note(&facts, cmdline, lease, reason, false)),
                        Judgement::Suspect => reported.push(note(
                            &facts,
                            cmdline,
                            lease,
                            "untagged listener in the dead owner's session: check it and use `portctl kill`".into(),
                            true,
                        )),
                    }
                }
            }
            (targets, reported)
        })
        .await?;

        if dry_run {
            let reaped = targets
                .into_iter()
                .map(|t| signalled(&t, None, false))
                .collect();
            return Ok(ReapReport {
                dry_run,
                reaped,
                reported,
            });
        }
        // Processes another reap is signalling are its to report; this one
        // answers once they are gone too.
        let (targets, claim, others) = self.claims.claim(targets);
        let outcomes = self
            .signal_and_record(targets, Signal::SIGTERM, grace, "reaped", Some(claim))
            .await?;
        others.finished().await;
        let mut report = ReapReport {
            dry_run,
            reaped: Vec::new(),
            reported,
        };
        for outcome in outcomes {
            match outcome.skipped {
                Some(reason) => report.reported.push(Reported {
                    pid: Some(outcome.target.facts.pid),
                    uid: outcome.target.facts.uids.real,
                    cmdline: outcome.target.cmdline,
                    port: outcome.target.port,
                    lease_id: outcome.target.lease_id,
                    reason,
                    suspect: false,
                }),
                None => {
                    report
                        .reaped
                        .push(signalled(&outcome.target, outcome.signal, outcome.exited))
                }
            }
        }
        if !report.reaped.is_empty() {
            tracing::info!(processes = report.reaped.len(), "reaped orphans");
        }
        Ok(report)
    }

    /// Reaps the orphans listening on `port` (a grant found it held): of the
    /// leases the listeners are tagged with, and of the port's last ended
    /// lease if `portctl run` registered a command for it (its group's
    /// members may carry no tag). Returns how many processes were
    /// signalled, or 1 if another reap that this one waited for freed the
    /// port.
    pub async fn reap_port(&self, port: u16, protected: HashSet<u32>) -> Result<usize, StoreError> {
        let mut ids: HashSet<String> = task::blocking("listener tags", move || {
            listening_pids(port)
                .into_iter()
                .filter_map(procs::lease_tag)
                .collect()
        })
        .await?;
        self.writer.flush().await?;
        let mut conn = self.store.reader().acquire().await?;
        if let Some(last) = leases::last_ended_on_port(&mut conn, port, &self.boot_id).await? {
            if last.command().is_some() {
                ids.insert(last.id);
            }
        }
        drop(conn);
        if ids.is_empty() {
            return Ok(0);
        }
        let reaped = self.reap(Some(ids), false, protected).await?.reaped.len();
        if reaped > 0 {
            return Ok(reaped);
        }
        // Another reap may have had them (and `reap` waited for it): then
        // the port is free now all the same.
        let freed = task::blocking("listeners", move || listening_pids(port).is_empty()).await?;
        Ok(usize::from(freed))
    }

    /// The ended leases a sweep looks at: those running processes are
    /// tagged with, those whose command's process group still has running
    /// members, and the last of each port whose owner died.
    async fn ended_leases(&self, procs: &[ProcFacts]) -> Result<Vec<EndedLease>, StoreError> {
        let tags: HashSet<String> = procs.iter().filter_map(|p| p.tag.clone()).collect();
        let groups: HashSet<u32> = procs.iter().map(|p| p.pgrp).collect();
        let mut ended = self.leases_by_ids(&tags).await?;
        let mut conn = self.store.reader().acquire().await?;
        let with_group =
            leases::ended_with_command(&mut conn, &self.boot_id, MAX_UNTAGGED_LEASES).await?;
        let dead =
            leases::last_dead_per_port(&mut conn, &self.boot_id, MAX_UNTAGGED_LEASES).await?;
        let group_runs =
            |row: &LeaseRow| row.command().is_some_and(|(pid, _)| groups.contains(&pid));
        for row in with_group.into_iter().filter(group_runs).chain(dead) {
            if !ended.iter().any(|e| e.id == row.id) {
                ended.push(self.facts_of(row));
            }
        }
        Ok(ended)
    }

    /// The ended leases among `ids` (active ones have no orphans).
    async fn leases_by_ids(&self, ids: &HashSet<String>) -> Result<Vec<EndedLease>, StoreError> {
        self.writer.flush().await?;
        let mut conn = self.store.reader().acquire().await?;
        let mut ended = Vec::new();
        for id in ids {
            if let Some(row) = leases::by_id(&mut conn, id).await? {
                if !row.is_active() {
                    ended.push(self.facts_of(row));
                }
            }
        }
        Ok(ended)
    }

    /// What the policy needs to know of `row`'s lease.
    pub fn facts_of(&self, row: LeaseRow) -> EndedLease {
        EndedLease {
            port: row.port(),
            owner_uid: row.owner_uid(),
            owner_sid: row.owner_sid as u32,
            granted_ticks: row.granted_ticks as u64,
            same_boot: row.boot_id == self.boot_id,
            group: row.command().map(|(pid, _)| pid),
            kept_ticks: row.kept_ticks.map(|t| t as u64),
            id: row.id,
        }
    }

    /// Explicit kill of the listeners on `port` on behalf of `peer`.
    pub async fn kill_port(
        &self,
        peer: Peer,
        port: u16,
        request: KillRequest,
        protected: HashSet<u32>,
    ) -> Result<KillReport, LeaseError> {
        let first = match request.signal.as_deref() {
            Some(text) => signal::parse_signal(text).map_err(LeaseError::Invalid)?,
            None => Signal::SIGTERM,
        };
        let grace = match request.grace {
            Some(secs) if !(0.0..=MAX_GRACE.as_secs_f64()).contains(&secs) => {
                return Err(LeaseError::Invalid(format!(
                    "grace must be from 0 to {} seconds",
                    MAX_GRACE.as_secs()
                )));
            }
            Some(secs) => Duration::from_secs_f64(secs),
            None => self.grace,
        };
        let force = request.force;
        // Who listens, then each one's facts through a pidfd: one blocking
        // step, so that little time passes between the two.
        let chosen = task::blocking("holder lookup", move || {
            let seen = seen_holders(port);
            (!seen.is_empty()).then(|| kill_targets(peer, port, seen, force, &protected))
        })
        .await?;
        let Some((targets, skipped)) = chosen else {
            return Err(LeaseError::NotFound(format!(
                "nothing listens on port {port}"
            )));
        };
        if targets.is_empty() {
            let why: Vec<String> = skipped
                .iter()
                .map(|s| {
                    format!(
                        "pid {}: {}",
                        s.pid.map_or("?".into(), |p| p.to_string()),
                        s.reason
                    )
                })
                .collect();
            return Err(LeaseError::Protected {
                port,
                skipped,
                message: why.join("; "),
            });
        }
        let outcomes = self
            .signal_and_record(targets, first, grace, "killed", None)
            .await?;
        let mut report = KillReport {
            port,
            signalled: Vec::new(),
            skipped,
            free: false,
        };
        for outcome in outcomes {
            match outcome.skipped {
                Some(reason) => report.skipped.push(Reported {
                    pid: Some(outcome.target.facts.pid),
                    uid: outcome.target.facts.uids.real,
                    cmdline: outcome.target.cmdline,
                    port,
                    lease_id: outcome.target.lease_id,
                    reason,
                    suspect: false,
                }),
                None => report.signalled.push(signalled(
                    &outcome.target,
                    outcome.signal,
                    outcome.exited,
                )),
            }
        }
        report.free = task::blocking("port check", move || {
            listening_pids(port).is_empty() && probe(port) != Probe::InUse
        })
        .await?;
        Ok(report)
    }

    /// Signals `targets` and records one event of `kind` per process
    /// signalled, as one unit that runs to its end even if the caller is
    /// dropped (a client that hangs up, a request that times out) and that
    /// a stopping daemon waits for.
    async fn signal_and_record(
        &self,
        targets: Vec<Target>,
        first: Signal,
        grace: Duration,
        kind: &'static str,
        claim: Option<Claim>,
    ) -> Result<Vec<Outcome>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let writer = self.writer.clone();
        self.units
            .run(kind, async move {
                let outcomes =
                    task::blocking("signals", move || terminate(targets, first, grace)).await?;
                record(&writer, &outcomes, kind).await?;
                // Recorded: another reap may claim these processes again.
                drop(claim);
                Ok(outcomes)
            })
            .await?
    }

    /// The units of work in flight (signals and their records, cleanups).
    pub fn units(&self) -> &Units {
        &self.units
    }
}

/// One event per signalled process, committed before the answer.
async fn record(writer: &Writer, outcomes: &[Outcome], kind: &str) -> Result<(), StoreError> {
    let now = now_ms();
    let changes: Vec<Change> = outcomes
        .iter()
        .filter(|o| o.signal.is_some())
        .map(|outcome| Change::Event {
            at: now,
            kind: kind.to_string(),
            lease_id: outcome.target.lease_id.clone(),
            port: Some(outcome.target.port),
            pid: Some(outcome.target.facts.pid),
            detail: Some(format!(
                "{} {}: {}",
                outcome.signal.map_or("", |s| s.as_str()),
                if outcome.exited {
                    "ended it"
                } else {
                    "did not end it"
                },
                outcome.target.cmdline.join(" ")
            )),
        })
        .collect();
    writer.submit(changes).committed().await
}

/// Which of the listeners seen on `port` an explicit kill by `peer` may
/// signal, and why the others are skipped. Blocking: it reads /proc.
fn kill_targets(
    peer: Peer,
    port: u16,
    seen: Vec<Seen>,
    force: bool,
    protected: &HashSet<u32>,
) -> (Vec<Target>, Vec<Reported>) {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for Seen {
        holder,
        start_ticks,
    } in seen
    {
        let skip = |reason: String| Reported {
            pid: holder.pid,
            uid: holder.uid,
            cmdline: holder.cmdline.clone(),
            port,
            lease_id: holder.lease_id.clone(),
            reason,
            suspect: false,
        };
        let Some(pid) = holder.pid else {
            skipped.push(skip("its process cannot be seen from here".into()));
            continue;
        };
        let facts = match signal::seen_again(pid, start_ticks) {
            Ok(facts) => facts,
            Err(reason) => {
                skipped.push(skip(reason));
                continue;
            }
        };
        if protected.contains(&pid) {
            skipped.push(skip(
                "protected (pid 1, portd, or the caller and its ancestors)".into(),
            ));
        } else if let Some(reason) = containers::kill_refusal(&holder) {
            skipped.push(skip(reason));
        } else if holder.kind == HolderKind::Systemd && !force {
            skipped.push(skip(
                "a systemd manager holds it for someone else; use --force".into(),
            ));
        } else if peer.uid != 0
            && [facts.uids.real, facts.uids.effective, facts.uids.saved] != [peer.uid; 3]
        {
            skipped.push(skip(format!(
                "it belongs to uid {}, not to uid {}",
                facts.uids.real, peer.uid
            )));
        } else {
            targets.push(Target {
                facts,
                cmdline: holder.cmdline,
                port,
                lease_id: holder.lease_id,
            });
        }
    }
    (targets, skipped)
}

fn note(
    facts: &ProcFacts,
    cmdline: Vec<String>,
    lease: &EndedLease,
    reason: String,
    suspect: bool,
) -> Reported {
    Reported {
        pid: Some(facts.pid),
        uid: facts.uids.real,
        cmdline,
        port: lease.port,
        lease_id: if suspect {
            None
        } else {
            Some(lease.id.clone())
        },
        reason,
        suspect,
    }
}

fn signalled(target: &Target, signal: Option<Signal>, exited: bool) -> Signalled {
    Signalled {
        pid: target.facts.pid,
        uid: target.facts.uids.real,
        cmdline: target.cmdline.clone(),
        port: target.port,
        lease_id: target.lease_id.clone(),
        signal: signal.map(|s| s.as_str().to_string()),
        exited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A `sleep` child, killed when dropped (also when a test fails).
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A `sleep` child, seen as a listener of port 1 with its real start
    /// time plus `shift_ticks`.
    fn seen_sleep(shift_ticks: u64) -> (Sleeper, Seen) {
        let child = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
        let pid = child.0.id();
        let stat = procs::read_stat(pid).unwrap();
        let seen = Seen {
            holder: portd_api::Holder {
                pid: Some(pid),
                ppid: Some(stat.ppid),
                uid: nix::unistd::getuid().as_raw(),
                user: None,
                cmdline: vec!["sleep".into(), "60".into()],
                start_time: None,
                lease_id: None,
                kind: HolderKind::Process,
                suspect: false,
                container: None,
            },
            start_ticks: Some(stat.start_ticks + shift_ticks),
        };
        (child, seen)
    }

    /// What this process may kill of `seen`, on port 1.
    fn targets_of(seen: Seen) -> (Vec<Target>, Vec<Reported>) {
        let me = Peer {
            pid: Some(std::process::id()),
            uid: nix::unistd::getuid().as_raw(),
        };
        kill_targets(me, 1, vec![seen], false, &HashSet::new())
    }

    #[test]
    fn a_holder_whose_pid_now_names_another_process_is_not_a_kill_target() {
        // The listener seen under this pid started one tick before the
        // process that has the pid now: a reused pid.
        let (_child, seen) = seen_sleep(1);
        let (targets, skipped) = targets_of(seen);
        assert!(targets.is_empty(), "{targets:?}");
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].reason.contains("not the process"),
            "{}",
            skipped[0].reason
        );
    }

    #[test]
    fn the_holder_that_was_seen_is_a_kill_target() {
        let (child, seen) = seen_sleep(0);
        let (targets, skipped) = targets_of(seen);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].facts.pid, child.0.id());
    }

    #[test]
    fn a_holder_that_has_exited_is_skipped_as_gone() {
        let (child, seen) = seen_sleep(0);
        drop(child);
        let (targets, skipped) = targets_of(seen);
        assert!(targets.is_empty(), "{targets:?}");
        assert!(skipped[0].reason.contains("gone"), "{}", skipped[0].reason);
    }
}
