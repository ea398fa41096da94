//! The grant decision, as a pure function: DESIGN's table "Which port a
//! request gets" applied to the lease table. [`decide`] reads the table,
//! the request, its owner, the probe binds made so far and what is known
//! of other owners' liveness, and says which port to grant, which lease
//! answers, why none can be had, or what it must learn first: probe binds
//! and owners only /proc can vouch for. It binds nothing and reads no
//! /proc: the caller (`grant`) runs it under the table's lock, learns what
//! it asks for outside the lock, and runs it again.

use std::collections::HashMap;

use portd_api::{LeaseRequest, PortRange, SkippedHome};

use super::{LeaseError, Table};
use crate::grant::{self, Choice, NoPort, Plan, PortAsk, Verdict};
use crate::lease::{ActiveLease, OwnerId};
use crate::probe::Probe;

/// What a decision takes besides the table.
pub struct Ask<'a> {
    pub req: &'a LeaseRequest,
    pub owner: OwnerId,
    /// The daemon's range, where a request without a port scans.
    pub range: PortRange,
    /// The range the config gives the request's name, if a pattern matches.
    pub name_range: Option<PortRange>,
    /// The probe binds made so far.
    pub probed: &'a HashMap<u16, Probe>,
    /// How many unprobed ports a pass may ask for at once.
    pub probes: usize,
}

/// A name's home that a grant passed over, and what held it then.
#[derive(Debug, PartialEq)]
pub struct MissedHome {
    pub port: u16,
    pub verdict: Verdict,
    /// The live lease on it, when a lease held it.
    pub lease: Option<Box<ActiveLease>>,
}

#[derive(Debug)]
pub enum Decision {
    /// Grant `port`.
    Grant {
        port: u16,
        /// The port the request's name remembers from now on.
        home: Option<u16>,
        missed: Option<MissedHome>,
        skipped: Option<SkippedHome>,
    },
    /// Decide again once these ports are probed and these owners checked.
    Look {
        ports: Vec<u16>,
        owners: Vec<OwnerId>,
    },
    /// The answer, without a new lease.
    Answer(Answer),
}

/// How a request is answered when it gets no new lease.
#[derive(Debug)]
pub enum Answer {
    /// The owner's lease answers the request (idempotence).
    Existing(Box<ActiveLease>),
    Refused(LeaseError),
    /// Nothing grantable, with the live lease that holds the port asked for.
    NoPort(NoPort, Option<Box<ActiveLease>>),
}

/// A decision, and the leases met on the way whose owner is dead: the
/// caller ends them whatever the decision.
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    /// The ports of those leases.
    pub dead: Vec<u16>,
}

impl Decided {
    fn only(decision: Decision) -> Decided {
        Decided {
            decision,
            dead: Vec::new(),
        }
    }
}

/// Decides `ask` on `table`. `is_live` says whether a lease's owner still
/// runs, from what is known without /proc (`None`: only /proc can tell).
pub fn decide(
    table: &Table,
    ask: &Ask<'_>,
    is_live: impl Fn(&ActiveLease) -> Option<bool>,
) -> Decided {
    let req = ask.req;
    let named = req.project.as_deref().zip(req.name.as_deref());
    let port_ask = PortAsk {
        port: req.port,
        next: req.next,
        range: req.range,
        home: named.and_then(|(project, name)| table.remembered(project, name)),
        name_range: ask.name_range,
        move_home: req.move_home,
    };
    let plan = match grant::plan(&port_ask, ask.range) {
        Ok(plan) => plan,
        Err(message) => {
            return Decided::only(Decision::Answer(Answer::Refused(LeaseError::Invalid(
                message,
            ))));
        }
    };
    let mut dead = Vec::new();
    if let Some((project, name)) = named
        && let Some(existing) = table.by_name(project, name)
    {
        let own = existing.owner.id == ask.owner;
        if own && grant::answers(&plan, existing.port) {
            return Decided::only(Decision::Answer(Answer::Existing(Box::new(
                existing.clone(),
            ))));
        }
        let live = match is_live(existing) {
            _ if own => true,
            Some(live) => live,
            None => {
                return Decided::only(Decision::Look {
                    ports: Vec::new(),
                    owners: vec![existing.owner.id],
                });
            }
        };
        if live {
            return Decided::only(Decision::Answer(Answer::Refused(LeaseError::NameTaken {
                name: name.to_string(),
                lease: Box::new(existing.to_api()),
            })));
        }
        dead.push(existing.port);
    }
    let (lo, hi) = span(&plan);
    let others = table.remembered_by_others(lo, hi, named);
    let mut unknown = Vec::new();
    let choice = grant::choose(&plan, &others, ask.probes, |port| {
        if let Some(lease) = table.get(port) {
            if lease.owner.id == ask.owner {
                return Verdict::OwnLease;
            }
            match is_live(lease) {
                Some(true) => return Verdict::Leased,
                Some(false) if !dead.contains(&port) => dead.push(port),
                Some(false) => {}
                // Its owner is checked with the port's probe.
                None => {
                    if !unknown.contains(&lease.owner.id) {
                        unknown.push(lease.owner.id);
                    }
                    return Verdict::Unprobed;
                }
            }
        }
        match ask.probed.get(&port) {
            Some(Probe::Free) => Verdict::Free,
            Some(Probe::InUse) => Verdict::Busy,
            Some(Probe::NotPermitted) => Verdict::NotPermitted,
            None => Verdict::Unprobed,
        }
    });
    // A live lease on a port; a dead one ends with this decision.
    let live_lease = |port| {
        table
            .get(port)
            .filter(|_| !dead.contains(&port))
            .cloned()
            .map(Box::new)
    };
    let decision = match choice {
        Ok(Choice::Existing(port)) => match table.get(port) {
            Some(lease) => Decision::Answer(Answer::Existing(Box::new(lease.clone()))),
            None => Decision::Answer(Answer::Refused(LeaseError::Invalid(format!(
                "port {port} changed; ask again"
            )))),
        },
        Ok(Choice::Probe(ports)) => Decision::Look {
            ports,
            owners: unknown,
        },
        Ok(Choice::Grant(granted)) => Decision::Grant {
            port: granted.port,
            home: named.map(|_| grant::home_after(&port_ask, granted.port)),
            missed: granted.home_missed.map(|(port, verdict)| MissedHome {
                port,
                verdict,
                lease: live_lease(port),
            }),
            skipped: granted.skipped.and_then(|port| {
                let (project, name) = table.home_of(port, req.project.as_deref())?;
                Some(SkippedHome {
                    port,
                    name,
                    project,
                })
            }),
        },
        Err(no_port) => {
            let lease = match no_port {
                NoPort::Taken(port, _) => live_lease(port),
                _ => None,
            };
            Decision::Answer(Answer::NoPort(no_port, lease))
        }
    };
    Decided { decision, dead }
}

/// The lowest and highest port a plan may touch.
fn span(plan: &Plan) -> (u16, u16) {
    let mut lo = u16::MAX;
    let mut hi = 0;
    for port in plan
        .first
        .into_iter()
        .chain(plan.scan.into_iter().flat_map(|s| [s.start, s.end]))
    {
        lo = lo.min(port);
        hi = hi.max(port);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests;
