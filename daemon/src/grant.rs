//! Which port a request gets: DESIGN's table as a plain function over data.
//!
//! [`plan`] turns a request into the ports to try; [`choose`] walks them,
//! asking a caller-supplied `verdict` about each port (the effectful part:
//! leases, owner liveness, probe binds). Tests feed both with data.
//!
//! A caller that cannot answer for a port without a probe bind says
//! [`Verdict::Unprobed`], and the walk stops there and asks for that probe
//! ([`Choice::Probe`]): the daemon walks under its table lock and probes
//! outside it, then walks again.

use std::collections::HashSet;

use portd_api::PortRange;

/// The port-related part of a lease request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortAsk {
    pub port: Option<u16>,
    pub next: bool,
    pub range: Option<PortRange>,
    /// The port the request's name remembers, if it has a name and one.
    pub remembered: Option<u16>,
}

/// The ports to try, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Tried first and never skipped: the asked-for port, or the name's
    /// remembered port.
    pub first: Option<u16>,
    /// `first` is the port the request named (not a remembered one).
    pub asked: bool,
    /// When `first` is not grantable, whether that ends the search
    /// (`lease P`); also the only plan the owner's own lease on `first`
    /// answers.
    pub exact: bool,
    /// Ports scanned after `first`, lowest first.
    pub scan: Option<PortRange>,
}

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

/// The outcome of a successful search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Grant this port.
    Grant(u16),
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

/// Invalid combinations of port, range and next.
pub fn plan(ask: &PortAsk, configured: PortRange) -> Result<Plan, String> {
    if let (Some(port), Some(range)) = (ask.port, ask.range) {
        if !range.contains(port) {
            return Err(format!("port {port} is outside the range {range}"));
        }
    }
    Ok(match (ask.port, ask.next) {
        (Some(port), false) => Plan {
            first: Some(port),
            asked: true,
            exact: true,
            scan: None,
        },
        (Some(port), true) => {
            let end = match ask.range {
                Some(range) => range.end,
                None if configured.contains(port) => configured.end,
                None => port.saturating_add(999),
            };
            Plan {
                first: Some(port),
                asked: true,
                exact: false,
                scan: PortRange::new(port, end),
            }
        }
        (None, _) => Plan {
            first: ask.remembered,
            asked: false,
            exact: false,
            scan: Some(ask.range.unwrap_or(configured)),
        },
    })
}

/// The range a failed plan searched, for "no free port in A-B".
pub fn searched(plan: &Plan) -> PortRange {
    plan.scan
        .or_else(|| plan.first.and_then(|p| PortRange::new(p, p)))
        .unwrap_or(PortRange { start: 1, end: 1 })
}

/// Walks `plan`: the first port, then the scan, skipping ports other names
/// remember unless nothing else is grantable. The first unprobed port met
/// ends the walk with a request to probe it, together with the unprobed
/// ports that follow it in the walk, up to `probes` in all and up to the
/// next port already known free: if the first turns out busy, the caller
/// has the next candidates' probes too, and a range full of busy ports
/// costs a few walks, not one per port.
pub fn choose(
    plan: &Plan,
    remembered_by_others: &HashSet<u16>,
    probes: usize,
    mut verdict: impl FnMut(u16) -> Verdict,
) -> Result<Choice, NoPort> {
    if let Some(port) = plan.first {
        match verdict(port) {
            Verdict::Free => return Ok(Choice::Grant(port)),
            Verdict::Unprobed => return Ok(Choice::Probe(vec![port])),
            Verdict::OwnLease if plan.exact => return Ok(Choice::Existing(port)),
            Verdict::NotPermitted if plan.exact => return Err(NoPort::NotPermitted(port)),
            other if plan.exact => return Err(NoPort::Taken(port, other)),
            _ => {}
        }
    }
    let Some(scan) = plan.scan else {
        return Err(NoPort::Exhausted(searched(plan)));
    };
    let mut walk = Walk {
        unprobed: Vec::new(),
        probes: probes.max(1),
    };
    let mut skipped = Vec::new();
    for port in scan.ports().filter(|p| Some(*p) != plan.first) {
        if remembered_by_others.contains(&port) {
            skipped.push(port);
            continue;
        }
        if let Some(choice) = walk.visit(port, verdict(port)) {
            return Ok(choice);
        }
    }
    for port in skipped {
        if let Some(choice) = walk.visit(port, verdict(port)) {
            return Ok(choice);
        }
    }
    walk.finish().ok_or(NoPort::Exhausted(scan))
}

/// The scan part of a walk: what it has gathered to probe.
struct Walk {
    unprobed: Vec<u16>,
    probes: usize,
}

impl Walk {
    /// The choice `port` settles the walk with, if it does.
    fn visit(&mut self, port: u16, verdict: Verdict) -> Option<Choice> {
        match verdict {
            Verdict::Free if self.unprobed.is_empty() => Some(Choice::Grant(port)),
            // A lower port still needs its probe before this one can win.
            Verdict::Free => Some(Choice::Probe(std::mem::take(&mut self.unprobed))),
            Verdict::Unprobed => {
                self.unprobed.push(port);
                (self.unprobed.len() >= self.probes)
                    .then(|| Choice::Probe(std::mem::take(&mut self.unprobed)))
            }
            _ => None,
        }
    }

    /// At the end of the scan: the probes gathered, if any.
    fn finish(self) -> Option<Choice> {
        (!self.unprobed.is_empty()).then_some(Choice::Probe(self.unprobed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const RANGE: PortRange = PortRange {
        start: 8000,
        end: 8009,
    };

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

    fn ask(port: Option<u16>, next: bool) -> PortAsk {
        PortAsk {
            port,
            next,
            ..PortAsk::default()
        }
    }

    #[test]
    fn lease_p_is_exactly_p() {
        assert_eq!(
            run(ask(Some(8003), false), &[], &[]),
            Ok(Choice::Grant(8003))
        );
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
        assert_eq!(
            run(ask(Some(8003), true), &[], &own),
            Ok(Choice::Grant(8004))
        );
        let own_first = [(8000, Verdict::OwnLease)];
        assert_eq!(
            run(ask(None, false), &[], &own_first),
            Ok(Choice::Grant(8001))
        );
        assert_eq!(
            run(ask(None, true), &[], &own_first),
            Ok(Choice::Grant(8001))
        );
    }

    #[test]
    fn next_moves_up_to_the_end_of_the_range_containing_p() {
        let busy = [(8007, Verdict::Busy), (8008, Verdict::Leased)];
        assert_eq!(
            run(ask(Some(8007), true), &[], &busy),
            Ok(Choice::Grant(8009))
        );
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
    fn next_outside_the_range_searches_999_above_capped_at_65535() {
        let p = plan(&ask(Some(3000), true), RANGE).unwrap();
        assert_eq!(
            p.scan,
            Some(PortRange {
                start: 3000,
                end: 3999
            })
        );
        let p = plan(&ask(Some(65000), true), RANGE).unwrap();
        assert_eq!(
            p.scan,
            Some(PortRange {
                start: 65000,
                end: 65535
            })
        );
    }

    #[test]
    fn no_port_takes_the_first_grantable_of_the_range() {
        assert_eq!(
            run(ask(None, false), &[], &[(8000, Verdict::Busy)]),
            Ok(Choice::Grant(8001))
        );
        assert_eq!(run(ask(None, true), &[], &[]), Ok(Choice::Grant(8000)));
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
        assert_eq!(
            run(a, &[], &[(8100, Verdict::Busy)]),
            Ok(Choice::Grant(8101))
        );
        let bad = PortAsk {
            port: Some(8000),
            range: Some(r),
            ..PortAsk::default()
        };
        assert!(plan(&bad, RANGE).unwrap_err().contains("outside"));
    }

    #[test]
    fn scans_skip_remembered_ports_unless_nothing_else_is_free() {
        assert_eq!(
            run(ask(None, false), &[8000, 8001], &[]),
            Ok(Choice::Grant(8002))
        );
        let others: Vec<_> = (8002..=8009).map(|p| (p, Verdict::Busy)).collect();
        assert_eq!(
            run(ask(None, false), &[8000, 8001], &others),
            Ok(Choice::Grant(8000))
        );
    }

    #[test]
    fn a_name_gets_its_remembered_port_or_moves() {
        let named = PortAsk {
            remembered: Some(8005),
            ..PortAsk::default()
        };
        assert_eq!(run(named, &[], &[]), Ok(Choice::Grant(8005)));
        assert_eq!(
            run(named, &[], &[(8005, Verdict::Busy)]),
            Ok(Choice::Grant(8000))
        );
        // The remembered port is tried even outside the range.
        let far = PortAsk {
            remembered: Some(9500),
            ..PortAsk::default()
        };
        assert_eq!(run(far, &[], &[]), Ok(Choice::Grant(9500)));
    }
}
