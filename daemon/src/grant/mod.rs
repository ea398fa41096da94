//! Which port a request gets: DESIGN's table as a plain function over data.
//!
//! [`plan`] turns a request into the ports to try; [`choose`] (in `choose`)
//! walks them, asking a caller-supplied `verdict` about each port: leased
//! by the owner, by another live owner, busy or free. [`home_after`] says
//! which port a name remembers once a grant is made. Tests feed all three
//! with data; `leases::decide` feeds them the lease table.
//!
//! A caller that cannot answer for a port without a probe bind says
//! [`Verdict::Unprobed`], and the walk stops there and asks for that probe
//! ([`Choice::Probe`]): the daemon walks under its table lock and probes
//! outside it, then walks again.

mod choose;

use portd_api::PortRange;

pub use self::choose::{Choice, Grant, NoPort, Verdict, choose};

/// The port-related part of a lease request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortAsk {
    pub port: Option<u16>,
    pub next: bool,
    pub range: Option<PortRange>,
    /// The name's home: the port it remembers, if the request has a name
    /// and the name has one.
    pub home: Option<u16>,
    /// The range the config gives the request's name, if a pattern matches.
    pub name_range: Option<PortRange>,
    /// Give the name a new home: scans neither try nor take the old one,
    /// and the port granted becomes the home.
    pub move_home: bool,
}

/// The ports to try, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Tried first and never skipped: the asked-for port, or the name's home.
    pub first: Option<u16>,
    /// `first` is the port the request named (not the name's home).
    pub asked: bool,
    /// When `first` is not grantable, whether that ends the search
    /// (`lease P`); also the only plan the owner's own lease on `first`
    /// answers.
    pub exact: bool,
    /// Ports scanned after `first`, lowest first.
    pub scan: Option<PortRange>,
    /// A port the scan never takes: the name's old home, with `move_home`.
    pub avoid: Option<u16>,
}

/// Invalid combinations of port, range and next.
pub fn plan(ask: &PortAsk, configured: PortRange) -> Result<Plan, String> {
    if let (Some(port), Some(range)) = (ask.port, ask.range)
        && !range.contains(port)
    {
        return Err(format!("port {port} is outside the range {range}"));
    }
    let avoid = |first: Option<u16>| ask.home.filter(|h| ask.move_home && Some(*h) != first);
    Ok(match (ask.port, ask.next) {
        (Some(port), false) => Plan {
            first: Some(port),
            asked: true,
            exact: true,
            scan: None,
            avoid: None,
        },
        (Some(port), true) => {
            let containing = [ask.name_range, Some(configured)]
                .into_iter()
                .flatten()
                .find(|r| r.contains(port));
            let end = match (ask.range, containing) {
                (Some(range), _) | (None, Some(range)) => range.end,
                (None, None) => port.saturating_add(999),
            };
            Plan {
                first: Some(port),
                asked: true,
                exact: false,
                scan: PortRange::new(port, end),
                avoid: avoid(Some(port)),
            }
        }
        (None, _) => {
            // An explicit range is where the caller wants its port: a home
            // outside it is not tried (nor moved).
            let home = ask
                .home
                .filter(|h| !ask.move_home && ask.range.is_none_or(|r| r.contains(*h)));
            Plan {
                first: home,
                asked: false,
                exact: false,
                scan: Some(ask.range.or(ask.name_range).unwrap_or(configured)),
                avoid: avoid(None),
            }
        }
    })
}

/// Whether the owner's active lease on `port` for the same name answers
/// `plan` (idempotence by name): any port when no port was asked for, the
/// port itself for `lease P`, and a port P's `--next` search could have
/// given.
pub fn answers(plan: &Plan, port: u16) -> bool {
    match (plan.asked, plan.exact) {
        (false, _) => true,
        (true, true) => plan.first == Some(port),
        (true, false) => plan.scan.is_some_and(|s| s.contains(port)),
    }
}

/// The port a named request leaves its name remembering once `granted` is
/// granted: the port the request asked for if it got it (`lease P`, or
/// `lease P --next` that got P), the granted port with `move_home` or for
/// a name without a home; otherwise the home stays where it is.
pub fn home_after(ask: &PortAsk, granted: u16) -> u16 {
    match ask.home {
        _ if ask.port == Some(granted) || ask.move_home => granted,
        Some(home) => home,
        None => granted,
    }
}

/// The range a failed plan searched, for "no free port in A-B".
pub fn searched(plan: &Plan) -> PortRange {
    plan.scan
        .or_else(|| plan.first.and_then(|p| PortRange::new(p, p)))
        .unwrap_or(PortRange { start: 1, end: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const RANGE: PortRange = PortRange {
        start: 8000,
        end: 8009,
    };

    pub(super) fn ask(port: Option<u16>, next: bool) -> PortAsk {
        PortAsk {
            port,
            next,
            ..PortAsk::default()
        }
    }

    pub(super) fn named(home: u16) -> PortAsk {
        PortAsk {
            home: Some(home),
            ..PortAsk::default()
        }
    }

    #[test]
    fn the_same_name_answers_a_plan_that_could_have_given_its_port() {
        let exact = plan(&ask(Some(8003), false), RANGE).unwrap();
        assert!(answers(&exact, 8003));
        assert!(!answers(&exact, 8004));
        let next = plan(&ask(Some(8003), true), RANGE).unwrap();
        assert!(answers(&next, 8003) && answers(&next, 8009));
        assert!(!answers(&next, 8002), "below P, --next never gives it");
        let bare = plan(&ask(None, false), RANGE).unwrap();
        assert!(answers(&bare, 8002) && answers(&bare, 9500));
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
    fn a_home_moves_only_when_asked() {
        let home = named(8005);
        // Taken this time: the home stays.
        assert_eq!(home_after(&home, 8000), 8005);
        assert_eq!(home_after(&home, 8005), 8005);
        // A name without a home keeps the port it first got.
        assert_eq!(home_after(&PortAsk::default(), 8003), 8003);
        // `lease P --name N`: P becomes the home.
        let exact = PortAsk {
            port: Some(8007),
            ..home
        };
        assert_eq!(home_after(&exact, 8007), 8007);
        // `lease P --next`: P, if it got P; else the home stays.
        let next = PortAsk {
            next: true,
            ..exact
        };
        assert_eq!(home_after(&next, 8007), 8007);
        assert_eq!(home_after(&next, 8008), 8005);
        // --move: whatever it got.
        let moved = PortAsk {
            move_home: true,
            ..next
        };
        assert_eq!(home_after(&moved, 8008), 8008);
    }
}
