//! One test per row of DESIGN's table "Which port a request gets", and
//! for what the rows imply: dead owners' leases, owners only /proc can
//! vouch for, names' homes and ranges.

use super::*;
use crate::lease::testing::lease;

const RANGE: PortRange = PortRange {
    start: 8000,
    end: 8009,
};
const FRONT: PortRange = PortRange {
    start: 3000,
    end: 3009,
};
const ME: u32 = 100;
const OTHER: u32 = 200;

fn id(pid: u32) -> OwnerId {
    OwnerId {
        pid,
        start_ticks: 1,
    }
}

fn table(leases: Vec<ActiveLease>, homes: &[(&str, &str, u16)]) -> Table {
    let mut table = Table::load(leases, Vec::new(), Vec::new());
    for (project, name, port) in homes {
        table.remember(project, name, *port);
    }
    table
}

/// Probes of both ranges and a few ports outside: free but `busy`.
fn probed(busy: &[u16]) -> HashMap<u16, Probe> {
    FRONT
        .ports()
        .chain(RANGE.ports())
        .chain(9500..=9502)
        .map(|p| {
            (
                p,
                if busy.contains(&p) {
                    Probe::InUse
                } else {
                    Probe::Free
                },
            )
        })
        .collect()
}

fn named(name: &str) -> LeaseRequest {
    LeaseRequest {
        name: Some(name.into()),
        project: Some("/p".into()),
        ..LeaseRequest::default()
    }
}

fn at(port: u16, next: bool) -> LeaseRequest {
    LeaseRequest {
        port: Some(port),
        next,
        ..LeaseRequest::default()
    }
}

/// `req` from ME on `table`, with `probes` made, every other owner live
/// but those `live` says otherwise of.
fn run_with(
    table: &Table,
    req: &LeaseRequest,
    probes: &HashMap<u16, Probe>,
    live: impl Fn(&ActiveLease) -> Option<bool>,
) -> Decided {
    let name_range = req.name.as_deref().filter(|n| *n == "web").map(|_| FRONT);
    let ask = Ask {
        req,
        owner: id(ME),
        range: RANGE,
        name_range,
        probed: probes,
        probes: 64,
    };
    decide(table, &ask, live)
}

fn run(table: &Table, req: &LeaseRequest, busy: &[u16]) -> Decided {
    run_with(table, req, &probed(busy), |_| Some(true))
}

/// The port granted, or a panic naming what was decided instead.
fn granted(decided: &Decided) -> u16 {
    granted_home(decided).0
}

/// The port granted and the port the name remembers from now on.
fn granted_home(decided: &Decided) -> (u16, Option<u16>) {
    match decided.decision {
        Decision::Grant { port, home, .. } => (port, home),
        ref other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn lease_p_is_exactly_p_or_port_taken() {
    let empty = table(Vec::new(), &[]);
    assert_eq!(granted(&run(&empty, &at(8003, false), &[])), 8003);
    let busy = run(&empty, &at(8003, false), &[8003]);
    assert!(matches!(
        busy.decision,
        Decision::Answer(Answer::NoPort(NoPort::Taken(8003, Verdict::Busy), None))
    ));
    let leased = table(vec![lease(8003, OTHER, None)], &[]);
    match run(&leased, &at(8003, false), &[]).decision {
        Decision::Answer(Answer::NoPort(NoPort::Taken(8003, Verdict::Leased), Some(lease))) => {
            assert_eq!(lease.owner.id, id(OTHER));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lease_p_next_takes_the_first_grantable_from_p_to_the_end_of_its_range() {
    let t = table(vec![lease(8003, OTHER, None)], &[]);
    assert_eq!(granted(&run(&t, &at(8003, true), &[8004])), 8005);
    let none = run(&t, &at(8008, true), &[8008, 8009]);
    assert!(matches!(
        none.decision,
        Decision::Answer(Answer::NoPort(
            NoPort::Exhausted(PortRange {
                start: 8008,
                end: 8009
            }),
            None
        ))
    ));
    // Outside the configured range: up from P all the same.
    assert_eq!(granted(&run(&t, &at(9500, true), &[9500])), 9501);
}

#[test]
fn a_bare_lease_or_next_without_a_port_takes_the_first_grantable_of_the_range() {
    let t = table(vec![lease(8000, OTHER, None)], &[]);
    assert_eq!(granted(&run(&t, &LeaseRequest::default(), &[8001])), 8002);
    let next = LeaseRequest {
        next: true,
        ..LeaseRequest::default()
    };
    assert_eq!(granted(&run(&t, &next, &[8001])), 8002);
}

#[test]
fn an_explicit_range_is_searched_and_must_hold_p() {
    let t = table(Vec::new(), &[]);
    let range = LeaseRequest {
        range: PortRange::new(8005, 8009),
        ..LeaseRequest::default()
    };
    assert_eq!(granted(&run(&t, &range, &[8005])), 8006);
    let outside = LeaseRequest {
        port: Some(8000),
        ..range
    };
    match run(&t, &outside, &[]).decision {
        Decision::Answer(Answer::Refused(LeaseError::Invalid(message))) => {
            assert!(message.contains("outside"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_name_gets_its_home_or_a_port_of_its_range_for_this_time_only() {
    let t = table(vec![lease(3006, OTHER, None)], &[("/p", "web", 3005)]);
    let home = run(&t, &named("web"), &[]);
    assert_eq!(granted_home(&home), (3005, Some(3005)));
    assert!(matches!(
        home.decision,
        Decision::Grant { missed: None, .. }
    ));
    // The home is busy: a port of the name's range, and the home stays.
    match run(&t, &named("web"), &[3000, 3005]).decision {
        Decision::Grant {
            port: 3001,
            home: Some(3005),
            missed: Some(missed),
            ..
        } => assert_eq!(
            (missed.port, missed.verdict, missed.lease),
            (3005, Verdict::Busy, None)
        ),
        other => panic!("{other:?}"),
    }
    // The home is leased: the answer names the lease.
    let leased = table(vec![lease(3005, OTHER, None)], &[("/p", "web", 3005)]);
    match run(&leased, &named("web"), &[]).decision {
        Decision::Grant {
            port: 3000,
            missed: Some(missed),
            ..
        } => {
            assert_eq!(missed.verdict, Verdict::Leased);
            assert_eq!(missed.lease.map(|l| l.port), Some(3005));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lease_p_with_a_name_is_exactly_p_and_makes_p_its_home() {
    let t = table(Vec::new(), &[("/p", "api", 8000)]);
    let req = LeaseRequest {
        port: Some(8004),
        ..named("api")
    };
    assert_eq!(granted_home(&run(&t, &req, &[])), (8004, Some(8004)));
    assert!(matches!(
        run(&t, &req, &[8004]).decision,
        Decision::Answer(Answer::NoPort(NoPort::Taken(8004, Verdict::Busy), None))
    ));
}

#[test]
fn the_same_owner_asking_again_gets_its_lease_without_a_probe() {
    let t = table(vec![lease(8003, ME, Some("api"))], &[("/p", "api", 8003)]);
    let nothing_probed = HashMap::new();
    for req in [at(8003, false), named("api")] {
        match run_with(&t, &req, &nothing_probed, |_| None).decision {
            Decision::Answer(Answer::Existing(lease)) => assert_eq!(lease.port, 8003),
            other => panic!("{req:?}: {other:?}"),
        }
    }
}

#[test]
fn next_or_no_port_always_gives_a_port_the_owner_does_not_hold() {
    let t = table(vec![lease(8000, ME, None)], &[]);
    assert_eq!(granted(&run(&t, &at(8000, true), &[])), 8001);
    assert_eq!(granted(&run(&t, &LeaseRequest::default(), &[])), 8001);
}

#[test]
fn a_name_another_live_owner_holds_is_refused_and_a_dead_ones_taken_over() {
    let t = table(
        vec![lease(8002, OTHER, Some("api"))],
        &[("/p", "api", 8002)],
    );
    match run(&t, &named("api"), &[]).decision {
        Decision::Answer(Answer::Refused(LeaseError::NameTaken { name, lease })) => {
            assert_eq!((name.as_str(), lease.port), ("api", 8002));
        }
        other => panic!("{other:?}"),
    }
    let dead = run_with(&t, &named("api"), &probed(&[]), |_| Some(false));
    assert_eq!(granted(&dead), 8002);
    assert_eq!(dead.dead, [8002]);
}

#[test]
fn kill_never_takes_another_live_owners_lease() {
    // `--kill` frees a port only when the answer is "held without a
    // lease"; a live lease is "leased", and stays.
    let t = table(vec![lease(8003, OTHER, None)], &[]);
    let kill = LeaseRequest {
        kill: true,
        ..at(8003, false)
    };
    assert!(matches!(
        run(&t, &kill, &[8003]).decision,
        Decision::Answer(Answer::NoPort(
            NoPort::Taken(8003, Verdict::Leased),
            Some(_)
        ))
    ));
}

#[test]
fn a_lease_whose_owner_is_dead_ends_and_its_port_can_be_granted() {
    let t = table(vec![lease(8000, OTHER, None)], &[]);
    let decided = run_with(&t, &LeaseRequest::default(), &probed(&[]), |_| Some(false));
    assert_eq!(granted(&decided), 8000);
    assert_eq!(decided.dead, [8000]);
}

#[test]
fn owners_only_proc_can_vouch_for_are_asked_for_not_guessed() {
    let t = table(vec![lease(8000, OTHER, None)], &[]);
    match run_with(&t, &LeaseRequest::default(), &probed(&[]), |_| None).decision {
        Decision::Look { ports, owners } => {
            assert_eq!((ports, owners), (vec![8000], vec![id(OTHER)]));
        }
        other => panic!("{other:?}"),
    }
    let by_name = table(vec![lease(8002, OTHER, Some("api"))], &[]);
    match run_with(&by_name, &named("api"), &probed(&[]), |_| None).decision {
        Decision::Look { ports, owners } => {
            assert_eq!((ports, owners), (Vec::new(), vec![id(OTHER)]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ports_not_yet_probed_are_asked_for_before_any_verdict() {
    let t = table(Vec::new(), &[]);
    match run_with(&t, &at(8003, false), &HashMap::new(), |_| Some(true)).decision {
        Decision::Look { ports, owners } => {
            assert_eq!((ports, owners), (vec![8003], Vec::new()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn scans_skip_other_names_homes_unless_nothing_else_is_free() {
    let t = table(Vec::new(), &[("/q", "docs", 8000)]);
    match run(&t, &LeaseRequest::default(), &[]).decision {
        Decision::Grant {
            port: 8001,
            skipped: Some(skipped),
            ..
        } => assert_eq!(
            (
                skipped.port,
                skipped.name.as_str(),
                skipped.project.as_str()
            ),
            (8000, "docs", "/q")
        ),
        other => panic!("{other:?}"),
    }
    let full: Vec<u16> = (8001..=8009).collect();
    assert_eq!(granted(&run(&t, &LeaseRequest::default(), &full)), 8000);
}

#[test]
fn move_gives_a_name_a_new_home_away_from_the_old_one() {
    let t = table(Vec::new(), &[("/p", "api", 8000)]);
    let moving = LeaseRequest {
        move_home: true,
        ..named("api")
    };
    assert_eq!(granted_home(&run(&t, &moving, &[])), (8001, Some(8001)));
}
