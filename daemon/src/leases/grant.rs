//! A grant's effects around the pure decision (`decide`): the owner
//! checks, the passes under the table's lock with the probe binds and /proc
//! reads between them, the changes submitted in decision order, and the
//! retry after freeing a port held without a live lease (a reap, or with
//! `--kill` an explicit kill).

use std::collections::HashMap;
use std::ops::ControlFlow;

use portd_api::{EndReason, Home, KillRequest, Lease, LeaseRequest, LeaseState, SkippedHome};

use super::decide::{Answer, Ask, Decided, Decision, MissedHome, decide};
use super::labels::ensure_label;
use super::validate::validate;
use super::{LeaseError, Leases, event};
use crate::grant::{NoPort, Verdict};
use crate::lease::{ActiveLease, EndedLease, Owner, OwnerId};
use crate::owner::{self, OwnerCache, owner_is_alive_now};
use crate::peer::Peer;
use crate::probe::{Probe, probe};
use crate::procs::{self, holders::holders};
use crate::reaper::ReapError;
use crate::store::{Change, Pending};
use crate::task;
use crate::time::now_ms;

/// Most probes one pass of a grant asks for.
const MAX_PROBES_PER_PASS: usize = 64;

/// The result of a grant: the lease, and whether it is new.
#[derive(Debug)]
pub struct Granted {
    pub lease: Lease,
    pub created: bool,
}

/// What a grant came to: the lease it granted, or another answer.
enum Outcome {
    Granted {
        lease: Box<ActiveLease>,
        missed: Option<MissedHome>,
        skipped: Option<SkippedHome>,
    },
    Answer(Answer),
}

/// What to learn outside the lock before the next pass: probes of `ports`,
/// whether `owners` run.
struct Look {
    ports: Vec<u16>,
    owners: Vec<OwnerId>,
}

impl Leases {
    /// Grants a port as DESIGN's table says, or answers the caller's existing
    /// lease when it asks again.
    pub async fn grant(
        &self,
        peer: Peer,
        req: LeaseRequest,
        cache: &OwnerCache,
    ) -> Result<Granted, LeaseError> {
        validate(&req)?;
        let owner = match req.owner {
            Some(named) => owner::check(peer, Some(named), self.boot_time)?,
            None => cache.owner(peer, self.boot_time, |id| {
                self.watcher.is_watched(id) || owner_is_alive_now(id)
            })?,
        };
        match self.grant_once(&req, owner).await {
            Err(LeaseError::Held { port, holders }) if req.port == Some(port) && !req.next => {
                // The asked-for port is held without a live lease: by orphans
                // of an ended lease (reaped under the automatic rules), or,
                // with `kill`, by whatever listens (explicit-kill rules).
                let freed = if req.kill {
                    match self
                        .reaper
                        .kill_port(peer, port, KillRequest::default())
                        .await
                    {
                        Ok(_) | Err(ReapError::NothingListens(_)) => true,
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    self.reaper.reap_port(port, peer.pid).await? > 0
                };
                if freed {
                    self.grant_once(&req, owner).await
                } else {
                    Err(LeaseError::Held { port, holders })
                }
            }
            other => other,
        }
    }

    /// One grant: the decision runs on the table under its lock; every probe
    /// bind and /proc read it asks for is made outside the lock, after which
    /// it runs again on the table as it is then (another grant may have
    /// taken the port meanwhile). Each port is probed and each owner read at
    /// most once per grant.
    async fn grant_once(&self, req: &LeaseRequest, owner: Owner) -> Result<Granted, LeaseError> {
        let mut probed = HashMap::new();
        let mut known = HashMap::new();
        let mut ended = Vec::new();
        let mut pending = Vec::new();
        // Probes a pass may ask for: one first (the common case: it is
        // free), then twice as many each pass, for ranges full of servers.
        let mut probes = 1;
        let outcome = loop {
            let (flow, submitted) = match self.pass(req, owner, &probed, probes, &known, &mut ended)
            {
                Ok(passed) => passed,
                Err(e) => break Err(e),
            };
            pending.push(submitted);
            let Look { ports, owners } = match flow {
                ControlFlow::Break(outcome) => break Ok(outcome),
                ControlFlow::Continue(look) => look,
            };
            for port in ports {
                if probed.contains_key(&port) {
                    continue;
                }
                let found = probe(port);
                probed.insert(port, found);
                if found == Probe::Free {
                    break;
                }
            }
            for owner in owners {
                known.insert(owner, owner_is_alive_now(owner));
            }
            probes = (probes * 2).min(MAX_PROBES_PER_PASS);
        };
        for submitted in pending {
            submitted.committed().await?;
        }
        self.reap_later(ended);
        match outcome? {
            Outcome::Answer(Answer::Existing(lease)) => Ok(Granted {
                lease: lease.to_api(),
                created: false,
            }),
            Outcome::Answer(Answer::Refused(error)) => Err(error),
            Outcome::Answer(Answer::NoPort(no_port, lease)) => Err(explain(no_port, lease).await),
            Outcome::Granted {
                lease,
                missed,
                skipped,
            } => {
                let mut answer = lease.to_api();
                answer.skipped = skipped;
                if let Some(missed) = missed {
                    answer.home = Some(describe_home(missed).await);
                }
                if self.owner_gone(lease.owner.id) {
                    // The owner died between our check and the watch: end at once.
                    self.end_owner(lease.owner.id).await?;
                    answer.state = LeaseState::Ended;
                    answer.end_reason = Some(EndReason::OwnerDied);
                }
                Ok(Granted {
                    lease: answer,
                    created: true,
                })
            }
        }
    }

    /// One pass of a grant under the table lock: the decision, with its
    /// changes (leases found dead on the way, the grant) made to the table
    /// and submitted to the writer under the same lock, so they reach it in
    /// decision order.
    fn pass(
        &self,
        req: &LeaseRequest,
        owner: Owner,
        probed: &HashMap<u16, Probe>,
        probes: usize,
        known: &HashMap<OwnerId, bool>,
        ended: &mut Vec<EndedLease>,
    ) -> Result<(ControlFlow<Outcome, Look>, Pending), LeaseError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let mut table = self.table_for_change()?;
        let ask = Ask {
            req,
            owner: owner.id,
            range: self.range,
            name_range: req
                .name
                .as_deref()
                .and_then(|n| self.name_ranges.for_name(n)),
            probed,
            probes,
        };
        let Decided { decision, dead } = decide(&table, &ask, |lease| self.is_live(lease, known));
        for port in dead {
            let detail = Some("owner found dead at a grant");
            let reason = EndReason::OwnerDied;
            ended.extend(self.end_in(&mut table, port, reason, now, detail, &mut changes));
        }
        let outcome = match decision {
            Decision::Look { ports, owners } => {
                let look = ControlFlow::Continue(Look { ports, owners });
                return Ok((look, self.store.submit(changes)));
            }
            Decision::Answer(answer) => Outcome::Answer(answer),
            Decision::Grant {
                port,
                home,
                missed,
                skipped,
            } => {
                let lease = self.new_lease(req, owner, port, now);
                table.insert(lease.clone());
                changes.push(Change::Grant(lease.clone()));
                if let (Some(_), Some(project)) = (&req.name, &req.project) {
                    ensure_label(&mut table, project, now, &mut changes);
                }
                if let (Some(name), Some(project), Some(home)) = (&req.name, &req.project, home) {
                    // Also when the home stays: the name was used now.
                    table.remember(project, name, home);
                    changes.push(Change::Remember {
                        project: project.clone(),
                        name: name.clone(),
                        port: home,
                        at: now,
                    });
                }
                let detail = req.name.as_ref().map(|n| match &missed {
                    Some(missed) => format!("name {n}; home {} was not free", missed.port),
                    None => format!("name {n}"),
                });
                changes.push(event(now, "granted", &lease, detail));
                Outcome::Granted {
                    lease: Box::new(lease),
                    missed,
                    skipped,
                }
            }
        };
        // An existing lease may itself still be queued: answer after it.
        let submitted = match (&outcome, changes.is_empty()) {
            (Outcome::Answer(Answer::Existing(_)), true) => self.store.barrier(),
            _ => self.store.submit(changes),
        };
        Ok((ControlFlow::Break(outcome), submitted))
    }

    /// A lease of this boot whose owner still runs, as far as is known
    /// without /proc: an owner with a pidfd is alive until the pidfd says
    /// otherwise; others as `known` found them, else unknown.
    fn is_live(&self, lease: &ActiveLease, known: &HashMap<OwnerId, bool>) -> Option<bool> {
        let owner = lease.owner.id;
        if lease.boot_id != self.boot_id {
            Some(false)
        } else if self.watcher.is_watched(owner) {
            Some(true)
        } else {
            known.get(&owner).copied()
        }
    }

    fn new_lease(&self, req: &LeaseRequest, owner: Owner, port: u16, now: i64) -> ActiveLease {
        ActiveLease {
            id: uuid::Uuid::now_v7().to_string(),
            port,
            name: req.name.clone(),
            project: req.project.clone(),
            owner,
            boot_id: self.boot_id.clone(),
            granted_at: now,
            granted_ticks: procs::ticks_since_boot(),
            expires_at: req.ttl.map(|ttl| now + ttl as i64 * 1000),
            command: None,
        }
    }
}

/// The error for a search that found nothing, with who holds the port.
async fn explain(no_port: NoPort, lease: Option<Box<ActiveLease>>) -> LeaseError {
    match no_port {
        NoPort::Taken(port, Verdict::Leased | Verdict::OwnLease) => match lease {
            Some(lease) => LeaseError::Leased {
                port,
                lease: Box::new(lease.to_api()),
            },
            None => LeaseError::Held {
                port,
                holders: Vec::new(),
            },
        },
        NoPort::Taken(port, _) => {
            match task::blocking("holder lookup", move || holders(port)).await {
                Ok(holders) => LeaseError::Held { port, holders },
                Err(panicked) => LeaseError::Panicked(panicked),
            }
        }
        NoPort::NotPermitted(port) => LeaseError::NotPermitted(port),
        NoPort::Exhausted(range) => LeaseError::NoFreePort(range),
    }
}

/// The API's account of a home a grant passed over. Holders are read now,
/// after the grant: a holder that exited meanwhile leaves the list empty.
async fn describe_home(missed: MissedHome) -> Home {
    let port = missed.port;
    let holders = match missed.verdict {
        // The lease is granted and committed: a failed lookup (logged) costs
        // the note its holders, not the caller its answer.
        Verdict::Busy => task::blocking("home port's holders", move || holders(port))
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Home {
        port,
        lease: missed.lease.map(|l| Box::new(l.to_api())),
        holders,
        not_permitted: missed.verdict == Verdict::NotPermitted,
    }
}
