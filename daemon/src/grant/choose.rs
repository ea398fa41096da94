//! The walk over a plan's ports: which one a request gets, given what the
//! caller knows about each (a [`Verdict`]), or which probes it needs first.

use std::collections::HashSet;

use portd_api::PortRange;

use super::{Plan, searched};

/// What the caller knows about one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Free,
    /// Leased by the requesting owner already.
    OwnLease,
    /// Leased by another live owner.
    Leased,
    /// A probe bind failed: something else holds it.
    Busy,
    /// The daemon may not bind it.
    NotPermitted,
    /// Not leased, but not probed yet.
    Unprobed,
}

/// A port to grant, and what the search passed on its way to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub port: u16,
    /// The name's home, tried first and not grantable, with why: this
    /// lease takes `port` instead, for this time only.
    pub home_missed: Option<(u16, Verdict)>,
    /// A port another name remembers that the scan skipped and would
    /// otherwise have granted (the lowest such port). None when skipping
    /// changed nothing.
    pub skipped: Option<u16>,
}

impl Grant {
    fn at(port: u16) -> Grant {
        Grant {
            port,
            home_missed: None,
            skipped: None,
        }
    }
}

/// The outcome of a successful search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Grant this port.
    Grant(Grant),
    /// The owner already leases the port it asked for: answer that lease.
    Existing(u16),
    /// The walk needs probes of these ports, in this order, before it can
    /// go on.
    Probe(Vec<u16>),
}

/// Why no port was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPort {
    /// `lease P` and P is leased by another owner or busy.
    Taken(u16, Verdict),
    /// `lease P` and the daemon may not bind P.
    NotPermitted(u16),
    /// Nothing grantable in the range searched.
    Exhausted(PortRange),
}

/// Walks `plan`: the first port, then the scan, skipping ports other names
/// remember unless nothing else is grantable. The first unprobed port met
/// ends the walk with a request to probe it, together with the unprobed
/// ports that follow it in the walk, up to `probes` in all and up to the
/// next port already known free: if the first turns out busy, the caller
/// has the next candidates' probes too, and a range full of busy ports
/// costs a few walks, not one per port.
///
/// A scan that found its port above skipped ones then asks about those, in
/// the same way, to report the one it would otherwise have granted.
pub fn choose(
    plan: &Plan,
    remembered_by_others: &HashSet<u16>,
    probes: usize,
    mut verdict: impl FnMut(u16) -> Verdict,
) -> Result<Choice, NoPort> {
    let mut home_missed = None;
    if let Some(port) = plan.first {
        match verdict(port) {
            Verdict::Free => return Ok(Choice::Grant(Grant::at(port))),
            Verdict::Unprobed => return Ok(Choice::Probe(vec![port])),
            Verdict::OwnLease if plan.exact => return Ok(Choice::Existing(port)),
            Verdict::NotPermitted if plan.exact => return Err(NoPort::NotPermitted(port)),
            other if plan.exact => return Err(NoPort::Taken(port, other)),
            other if !plan.asked => home_missed = Some((port, other)),
            _ => {}
        }
    }
    let Some(scan) = plan.scan else {
        return Err(NoPort::Exhausted(searched(plan)));
    };
    let probes = probes.max(1);
    let mut walk = Walk::new(probes);
    let mut skipped = Vec::new();
    let candidates = scan
        .ports()
        .filter(|p| Some(*p) != plan.first && Some(*p) != plan.avoid);
    for port in candidates {
        if remembered_by_others.contains(&port) {
            skipped.push(port);
            continue;
        }
        match walk.visit(port, verdict(port)) {
            Some(Step::Grant(port)) => {
                // Every skipped port lies below: would one have been granted?
                let mut below = Walk::new(probes);
                let mut would = None;
                for &port in &skipped {
                    match below.visit(port, verdict(port)) {
                        Some(Step::Grant(port)) => {
                            would = Some(port);
                            break;
                        }
                        Some(Step::Probe(ports)) => return Ok(Choice::Probe(ports)),
                        None => {}
                    }
                }
                if let (None, Some(Step::Probe(ports))) = (would, below.finish()) {
                    return Ok(Choice::Probe(ports));
                }
                return Ok(Choice::Grant(Grant {
                    port,
                    home_missed,
                    skipped: would,
                }));
            }
            Some(Step::Probe(ports)) => return Ok(Choice::Probe(ports)),
            None => {}
        }
    }
    // Nothing else: the skipped ports, after what the scan still has to probe.
    for port in skipped {
        match walk.visit(port, verdict(port)) {
            Some(Step::Grant(port)) => {
                return Ok(Choice::Grant(Grant {
                    home_missed,
                    ..Grant::at(port)
                }));
            }
            Some(Step::Probe(ports)) => return Ok(Choice::Probe(ports)),
            None => {}
        }
    }
    match walk.finish() {
        Some(Step::Probe(ports)) => Ok(Choice::Probe(ports)),
        _ => Err(NoPort::Exhausted(scan)),
    }
}

/// What a scan's port settles.
enum Step {
    Grant(u16),
    Probe(Vec<u16>),
}

/// The scan part of a walk: what it has gathered to probe.
struct Walk {
    unprobed: Vec<u16>,
    probes: usize,
}

impl Walk {
    fn new(probes: usize) -> Walk {
        Walk {
            unprobed: Vec::new(),
            probes,
        }
    }

    /// The step `port` settles the walk with, if it does.
    fn visit(&mut self, port: u16, verdict: Verdict) -> Option<Step> {
        match verdict {
            Verdict::Free if self.unprobed.is_empty() => Some(Step::Grant(port)),
            // A lower port still needs its probe before this one can win.
            Verdict::Free => Some(Step::Probe(std::mem::take(&mut self.unprobed))),
            Verdict::Unprobed => {
                self.unprobed.push(port);
                (self.unprobed.len() >= self.probes)
                    .then(|| Step::Probe(std::mem::take(&mut self.unprobed)))
            }
            _ => None,
        }
    }

    /// At the end of the ports: the probes gathered, if any.
    fn finish(self) -> Option<Step> {
        (!self.unprobed.is_empty()).then_some(Step::Probe(self.unprobed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::grant::tests::{RANGE, ask, named};
    use crate::grant::{PortAsk, home_after, plan};

    fn world(entries: &[(u16, Verdict)]) -> impl FnMut(u16) -> Verdict {
        let map: HashMap<u16, Verdict> = entries.iter().copied().collect();
        move |p| map.get(&p).copied().unwrap_or(Verdict::Free)
    }

    fn run(ask: PortAsk, remembered: &[u16], entries: &[(u16, Verdict)]) -> Result<Choice, NoPort> {
        let plan = plan(&ask, RANGE).unwrap();
        choose(
            &plan,
            &remembered.iter().copied().collect(),
            1,
            world(entries),
        )
    }

    fn granted(port: u16) -> Result<Choice, NoPort> {
        Ok(Choice::Grant(Grant::at(port)))
    }

    #[test]
    fn lease_p_is_exactly_p() {
        assert_eq!(run(ask(Some(8003), false), &[], &[]), granted(8003));
        assert_eq!(
            run(ask(Some(8003), false), &[], &[(8003, Verdict::Busy)]),
            Err(NoPort::Taken(8003, Verdict::Busy))
        );
        assert_eq!(
            run(ask(Some(8003), false), &[], &[(8003, Verdict::Leased)]),
            Err(NoPort::Taken(8003, Verdict::Leased))
        );
        assert_eq!(
            run(ask(Some(80), false), &[], &[(80, Verdict::NotPermitted)]),
            Err(NoPort::NotPermitted(80))
        );
    }

    #[test]
    fn an_unprobed_port_stops_the_walk_to_ask_for_its_probe() {
        let unprobed = [
            (8000, Verdict::Leased),
            (8001, Verdict::Unprobed),
            (8002, Verdict::Free),
        ];
        assert_eq!(
            run(ask(None, false), &[], &unprobed),
            Ok(Choice::Probe(vec![8001]))
        );
        // Never a verdict on an exact port before its probe.
        assert_eq!(
            run(ask(Some(8001), false), &[], &unprobed),
            Ok(Choice::Probe(vec![8001]))
        );
        // Remembered-by-others ports are probed only when nothing else is free.
        let mut world: Vec<_> = RANGE.ports().map(|p| (p, Verdict::Busy)).collect();
        world[1] = (8001, Verdict::Unprobed);
        assert_eq!(
            run(ask(None, false), &[8001], &world),
            Ok(Choice::Probe(vec![8001]))
        );
    }

    #[test]
    fn a_walk_gathers_the_probes_that_follow_up_to_a_free_port() {
        let plan = plan(&ask(None, false), RANGE).unwrap();
        let none = HashSet::new();
        let world = |known: &'static [(u16, Verdict)]| {
            move |p: u16| {
                known
                    .iter()
                    .find(|(port, _)| *port == p)
                    .map_or(Verdict::Unprobed, |(_, v)| *v)
            }
        };
        // Nothing probed yet: the first four candidates, leased ones left out.
        let leased = &[(8001, Verdict::Leased)];
        assert_eq!(
            choose(&plan, &none, 4, world(leased)),
            Ok(Choice::Probe(vec![8000, 8002, 8003, 8004]))
        );
        // A port known free ends the gathering: 8000 must be probed first.
        let later_free = &[(8002, Verdict::Free)];
        assert_eq!(
            choose(&plan, &none, 4, world(later_free)),
            Ok(Choice::Probe(vec![8000, 8001]))
        );
        // The end of the range ends it too.
        let busy_below = &[
            (8000, Verdict::Busy),
            (8001, Verdict::Busy),
            (8002, Verdict::Busy),
            (8003, Verdict::Busy),
            (8004, Verdict::Busy),
            (8005, Verdict::Busy),
            (8006, Verdict::Busy),
            (8007, Verdict::Busy),
        ];
        assert_eq!(
            choose(&plan, &none, 4, world(busy_below)),
            Ok(Choice::Probe(vec![8008, 8009]))
        );
    }

    #[test]
    fn only_an_exact_ask_answers_with_the_owners_own_lease() {
        let own = [(8003, Verdict::OwnLease)];
        assert_eq!(
            run(ask(Some(8003), false), &[], &own),
            Ok(Choice::Existing(8003))
        );
        // `--next` and a bare lease always give a port the owner lacks.
        assert_eq!(run(ask(Some(8003), true), &[], &own), granted(8004));
        let own_first = [(8000, Verdict::OwnLease)];
        assert_eq!(run(ask(None, false), &[], &own_first), granted(8001));
        assert_eq!(run(ask(None, true), &[], &own_first), granted(8001));
    }

    #[test]
    fn next_moves_up_to_the_end_of_the_range_containing_p() {
        let busy = [(8007, Verdict::Busy), (8008, Verdict::Leased)];
        assert_eq!(run(ask(Some(8007), true), &[], &busy), granted(8009));
        let all_busy = [(8008, Verdict::Busy), (8009, Verdict::Leased)];
        assert_eq!(
            run(ask(Some(8008), true), &[], &all_busy),
            Err(NoPort::Exhausted(PortRange {
                start: 8008,
                end: 8009
            }))
        );
    }

    #[test]
    fn no_port_takes_the_first_grantable_of_the_range() {
        assert_eq!(
            run(ask(None, false), &[], &[(8000, Verdict::Busy)]),
            granted(8001)
        );
        assert_eq!(run(ask(None, true), &[], &[]), granted(8000));
        let all: Vec<_> = RANGE.ports().map(|p| (p, Verdict::Busy)).collect();
        assert_eq!(
            run(ask(None, false), &[], &all),
            Err(NoPort::Exhausted(RANGE))
        );
    }

    #[test]
    fn explicit_range_is_searched_and_must_contain_p() {
        let r = PortRange {
            start: 8100,
            end: 8102,
        };
        let a = PortAsk {
            range: Some(r),
            ..PortAsk::default()
        };
        assert_eq!(run(a, &[], &[(8100, Verdict::Busy)]), granted(8101));
        let bad = PortAsk {
            port: Some(8000),
            range: Some(r),
            ..PortAsk::default()
        };
        assert!(plan(&bad, RANGE).unwrap_err().contains("outside"));
    }

    #[test]
    fn scans_skip_remembered_ports_unless_nothing_else_is_free() {
        let others: Vec<_> = (8002..=8009).map(|p| (p, Verdict::Busy)).collect();
        assert_eq!(run(ask(None, false), &[8000, 8001], &others), granted(8000));
        assert_eq!(
            run(
                ask(Some(8001), true),
                &[8002, 8003],
                &[(8001, Verdict::Busy)]
            ),
            Ok(Choice::Grant(Grant {
                skipped: Some(8002),
                ..Grant::at(8004)
            }))
        );
    }

    #[test]
    fn a_skipped_port_is_reported_only_when_it_would_have_been_granted() {
        // 8000 is leased and 8001 busy: skipping them changed nothing.
        let taken = [(8000, Verdict::Leased), (8001, Verdict::Busy)];
        assert_eq!(run(ask(None, true), &[8000, 8001], &taken), granted(8002));
        // 8001 is free: without the skip it would have been the answer.
        let free = [(8000, Verdict::Leased)];
        assert_eq!(
            run(ask(None, true), &[8000, 8001], &free),
            Ok(Choice::Grant(Grant {
                skipped: Some(8001),
                ..Grant::at(8002)
            }))
        );
        // A remembered port above the answer is never asked about.
        let plan = plan(&ask(None, true), RANGE).unwrap();
        let remembered = HashSet::from([8005]);
        let mut asked = Vec::new();
        let choice = choose(&plan, &remembered, 1, |p| {
            asked.push(p);
            Verdict::Free
        });
        assert_eq!(choice, granted(8000));
        assert_eq!(asked, [8000]);
        // The skipped port's probe is asked for before the grant is made.
        let world = |p: u16| match p {
            8000 => Verdict::Unprobed,
            _ => Verdict::Free,
        };
        assert_eq!(
            choose(&plan, &HashSet::from([8000]), 4, world),
            Ok(Choice::Probe(vec![8000]))
        );
    }

    #[test]
    fn a_name_gets_its_home_or_another_port_for_this_time() {
        assert_eq!(run(named(8005), &[], &[]), granted(8005));
        for why in [
            Verdict::Busy,
            Verdict::Leased,
            Verdict::OwnLease,
            Verdict::NotPermitted,
        ] {
            assert_eq!(
                run(named(8005), &[], &[(8005, why)]),
                Ok(Choice::Grant(Grant {
                    home_missed: Some((8005, why)),
                    ..Grant::at(8000)
                })),
                "{why:?}"
            );
        }
        // The home is tried even outside the range.
        assert_eq!(run(named(9500), &[], &[]), granted(9500));
    }

    #[test]
    fn move_neither_tries_nor_takes_the_old_home() {
        let moving = PortAsk {
            move_home: true,
            ..named(8000)
        };
        assert_eq!(run(moving, &[], &[]), granted(8001));
        let all_busy: Vec<_> = (8001..=8009).map(|p| (p, Verdict::Busy)).collect();
        assert_eq!(run(moving, &[], &all_busy), Err(NoPort::Exhausted(RANGE)));
        // Asked for by port, the old home is granted like any other.
        let exact = PortAsk {
            port: Some(8000),
            ..moving
        };
        assert_eq!(run(exact, &[], &[]), granted(8000));
    }

    #[test]
    fn an_explicit_range_leaves_a_home_outside_it_alone() {
        let r = PortRange {
            start: 8100,
            end: 8102,
        };
        let outside = PortAsk {
            range: Some(r),
            ..named(8005)
        };
        assert_eq!(run(outside, &[], &[(8005, Verdict::Busy)]), granted(8100));
        assert_eq!(home_after(&outside, 8100), 8005);
        let inside = PortAsk {
            range: Some(r),
            ..named(8101)
        };
        assert_eq!(run(inside, &[], &[]), granted(8101));
    }

    #[test]
    fn a_name_with_a_range_of_its_own_scans_it() {
        let web = PortRange {
            start: 3000,
            end: 3009,
        };
        let ask_web = |port, next| PortAsk {
            port,
            next,
            name_range: Some(web),
            ..PortAsk::default()
        };
        assert_eq!(run(ask_web(None, false), &[], &[]), granted(3000));
        let p = plan(&ask_web(Some(3004), true), RANGE).unwrap();
        assert_eq!(p.scan, PortRange::new(3004, 3009));
        // P in the daemon's range: that range's end, as without a name.
        let p = plan(&ask_web(Some(8004), true), RANGE).unwrap();
        assert_eq!(p.scan, PortRange::new(8004, 8009));
        // An explicit range wins over the name's.
        let explicit = PortAsk {
            range: PortRange::new(8100, 8102),
            ..ask_web(None, false)
        };
        assert_eq!(run(explicit, &[], &[]), granted(8100));
    }
}
