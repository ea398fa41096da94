//! The reaper: finds the orphans of ended leases and ends them safely, and
//! carries out explicit kills of a port's listeners (`kill`).
//!
//! The policy (who is an orphan, who is only reported) is a plain function in
//! `policy`; signalling through pidfds is in `signal`; `claims` keeps two
//! sweeps from signalling one process. This module gathers the facts, asks
//! the policy, signals, and records one event per process.

mod claims;
mod error;
mod kill;
pub mod policy;
pub mod signal;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use portd_api::{ReapReport, Reported, Signalled};

use self::claims::{Claim, Claims};
pub use self::error::ReapError;
use self::policy::{Judgement, LeaseFacts, judge};
use self::signal::{Outcome, Target, terminate};
use crate::lease::EndedLease;
use crate::peer;
use crate::probe::{Probe, probe};
use crate::procs;
use crate::procs::containers;
use crate::procs::holders::listening_pids;
use crate::procs::scan::{self, ProcFacts};
use crate::store::{Change, Reader, Store, StoreError};
use crate::task::{self, Units};
use crate::time::now_ms;

/// Most ended leases without tags examined for suspects in one sweep.
const MAX_UNTAGGED_LEASES: i64 = 200;

pub struct Reaper {
    store: Store,
    grace: Duration,
    boot_id: String,
    /// The processes reaps are signalling now: each is reaped by one.
    claims: Claims,
    units: Units,
}

impl Reaper {
    /// A reaper that records in `store` and runs its signals as `units`,
    /// which a stopping daemon waits for.
    pub fn new(store: Store, grace: Duration, boot_id: String, units: Units) -> Reaper {
        Reaper {
            store,
            grace,
            boot_id,
            claims: Claims::default(),
            units,
        }
    }

    /// Reaps the orphans of the `ended` leases in the background, as a
    /// unit of work (a stopping daemon finishes it first), never signalling
    /// `caller` or its ancestors.
    pub fn reap_later(self: &Arc<Self>, ended: Vec<EndedLease>, caller: Option<u32>) {
        // An orphan listens on its lease's port or shares a listener's
        // process group (`policy::judge`), so a port that a probe bind
        // finds free has none: most releases then read no history, no
        // /proc and no socket table (docs/DECISIONS.md, "Store").
        let ids: HashSet<String> = ended
            .into_iter()
            .filter(|l| probe(l.lease.port) != Probe::Free)
            .map(|l| l.lease.id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let reaper = Arc::clone(self);
        self.units.spawn("reap", async move {
            if let Err(e) = reaper.reap(Some(ids), false, caller).await {
                tracing::error!(error = %e, "reaping the orphans of ended leases failed");
            }
        });
    }

    /// Reaps the orphans of ended leases: of the leases in `only` if given,
    /// else of every ended lease that a running process is tagged with or
    /// that recently ended with a dead owner. The `caller` of a request and
    /// its ancestors are never signalled.
    pub async fn reap(
        &self,
        only: Option<HashSet<String>>,
        dry_run: bool,
        caller: Option<u32>,
    ) -> Result<ReapReport, ReapError> {
        let protected = protected(caller);
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
                let mut reader = self.store.read().await?;
                let ended = self.ended_among(&mut reader, &ids).await?;
                drop(reader);
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
        let (reaped, skipped) = split(outcomes);
        let mut report = ReapReport {
            dry_run,
            reaped,
            reported,
        };
        report.reported.extend(skipped);
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
    pub async fn reap_port(&self, port: u16, caller: Option<u32>) -> Result<usize, ReapError> {
        let mut ids: HashSet<String> = task::blocking("listener tags", move || {
            listening_pids(port)
                .into_iter()
                .filter_map(procs::lease_tag)
                .collect()
        })
        .await?;
        let last = self
            .store
            .read()
            .await?
            .last_ended_on_port(port, &self.boot_id)
            .await?;
        if let Some(last) = last.filter(|l| l.lease.command.is_some()) {
            ids.insert(last.lease.id);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let reaped = self.reap(Some(ids), false, caller).await?.reaped.len();
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
    async fn ended_leases(&self, procs: &[ProcFacts]) -> Result<Vec<LeaseFacts>, StoreError> {
        let tags: HashSet<String> = procs.iter().filter_map(|p| p.tag.clone()).collect();
        let groups: HashSet<u32> = procs.iter().map(|p| p.pgrp).collect();
        let mut reader = self.store.read().await?;
        let mut ended = self.ended_among(&mut reader, &tags).await?;
        let with_group = reader
            .ended_with_command(&self.boot_id, MAX_UNTAGGED_LEASES)
            .await?;
        let dead = reader
            .last_dead_per_port(&self.boot_id, MAX_UNTAGGED_LEASES)
            .await?;
        let group_runs =
            |row: &EndedLease| row.lease.command.is_some_and(|c| groups.contains(&c.pid));
        for row in with_group.into_iter().filter(group_runs).chain(dead) {
            if !ended.iter().any(|e| e.id == row.lease.id) {
                ended.push(LeaseFacts::ended(&row, &self.boot_id));
            }
        }
        Ok(ended)
    }

    /// The ended leases among `ids` (active ones have no orphans).
    async fn ended_among(
        &self,
        reader: &mut Reader,
        ids: &HashSet<String>,
    ) -> Result<Vec<LeaseFacts>, StoreError> {
        let mut ended = Vec::new();
        for id in ids {
            if let Some(row) = reader.ended_by_id(id).await? {
                ended.push(LeaseFacts::ended(&row, &self.boot_id));
            }
        }
        Ok(ended)
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
    ) -> Result<Vec<Outcome>, ReapError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        self.units
            .run(kind, async move {
                let outcomes =
                    task::blocking("signals", move || terminate(targets, first, grace)).await?;
                record(&store, &outcomes, kind).await?;
                // Recorded: another reap may claim these processes again.
                drop(claim);
                Ok(outcomes)
            })
            .await?
    }
}

/// The pids no path signals, for a request from `caller` (or none).
fn protected(caller: Option<u32>) -> HashSet<u32> {
    peer::protected(caller, procs::parent_of)
}

/// One event per signalled process, committed before the answer.
async fn record(store: &Store, outcomes: &[Outcome], kind: &str) -> Result<(), StoreError> {
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
    store.submit(changes).committed().await
}

fn note(
    facts: &ProcFacts,
    cmdline: Vec<String>,
    lease: &LeaseFacts,
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

/// The processes signalled, and those left alone with why (gone, or no
/// longer the process chosen, by the time of the signal).
fn split(outcomes: Vec<Outcome>) -> (Vec<Signalled>, Vec<Reported>) {
    let mut signalled_now = Vec::new();
    let mut skipped = Vec::new();
    for outcome in outcomes {
        match outcome.skipped {
            Some(reason) => skipped.push(Reported {
                pid: Some(outcome.target.facts.pid),
                uid: outcome.target.facts.uids.real,
                cmdline: outcome.target.cmdline,
                port: outcome.target.port,
                lease_id: outcome.target.lease_id,
                reason,
                suspect: false,
            }),
            None => signalled_now.push(signalled(&outcome.target, outcome.signal, outcome.exited)),
        }
    }
    (signalled_now, skipped)
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
