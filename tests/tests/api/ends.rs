//! How leases end (owner death, TTL, release) and how history shows them.

use nix::sys::signal::Signal;

use super::*;

#[test]
fn an_owner_that_dies_ends_its_lease() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let port = block.port(3);
    let granted = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );
    let id = &granted["id"];

    owner.kill9();
    let ended = wait_for_end(&d, port, id);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    assert!(has_event(&d, "owner_died", id), "{:?}", events(&d));

    // The port is grantable again.
    let next_owner = ChildGuard::sleep(60);
    let regrant = expect(
        &lease(&d, json!({"port": port, "owner": next_owner.owner()})),
        201,
    );
    assert_ne!(regrant["id"], *id);
}

#[test]
fn an_owner_that_is_a_zombie_is_dead() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let identity = owner.owner();
    let port = block.port(1);
    let granted = expect(&lease(&d, json!({"port": port, "owner": identity})), 201);

    // Killed but not reaped: a zombie of this test process, pid still taken.
    owner.signal(Signal::SIGKILL);
    let ended = wait_for_end(&d, port, &granted["id"]);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");

    let state = portd_api::procstat::read_stat(owner.pid()).map(|s| s.state);
    assert_eq!(state.ok(), Some('Z'), "the owner is still a zombie");
    let refused = lease(&d, json!({"port": port, "owner": identity}));
    expect_error(&refused, 422, "invalid_value");
}

#[test]
fn one_owner_with_many_leases_has_one_pidfd_and_loses_them_all_at_death() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let ports = [block.port(11), block.port(12), block.port(13)];
    let ids: Vec<Value> = ports
        .iter()
        .map(|port| {
            let granted = lease(&d, json!({"port": port, "owner": owner.owner()}));
            expect(&granted, 201)["id"].clone()
        })
        .collect();
    let status = expect(&get(&d, "/v1/status"), 200);
    assert_eq!(status["counts"]["active_leases"], 3, "{status}");
    assert_eq!(status["counts"]["owners_watched"], 1, "{status}");

    owner.kill9();
    for (port, id) in ports.iter().zip(&ids) {
        let ended = wait_for_end(&d, *port, id);
        assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    }
    let unwatched = wait_until(DEADLINE, || {
        expect(&get(&d, "/v1/status"), 200)["counts"]["owners_watched"] == 0
    });
    assert!(unwatched, "{}", get(&d, "/v1/status").body);
}

#[test]
fn a_ttl_ends_the_lease_as_expired() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let mut owner = ChildGuard::sleep(60);
    let port = block.port(4);
    let granted = lease(&d, json!({"port": port, "owner": owner.owner(), "ttl": 1}));
    let granted = expect(&granted, 201);
    assert!(granted["expires_at"].is_string(), "{granted}");

    let ended = wait_for_end(&d, port, &granted["id"]);
    assert_eq!(ended["end_reason"], "expired", "{ended}");
    assert!(
        owner.is_running(),
        "the owner lives on; only the lease expired"
    );
    assert!(has_event(&d, "expired", &granted["id"]));
}

/// A TTL is whole seconds; however large, the daemon must answer: refuse it
/// (422) or grant a lease that renders. An `expires_at` past year 9999
/// cannot be written as RFC 3339, and the lease must not become a row that
/// breaks every listing.
#[test]
fn a_ttl_beyond_year_9999_gets_an_answer_and_leaves_listings_working() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(0);
    let ttl = 300_000_000_000_u64; // ~9,500 years
    let body = json!({"port": port, "owner": owner.owner(), "ttl": ttl}).to_string();

    let answer = http::try_request(d.socket(), "POST", "/v1/leases", Some(&body));
    let list = http::try_request(d.socket(), "GET", "/v1/leases", None);
    let one = http::try_request(d.socket(), "GET", &format!("/v1/leases/{port}"), None);
    d.assert_healthy("a huge ttl");

    let mut problems = Vec::new();
    match &answer {
        Ok(a) if matches!(a.status, 201 | 422) => {}
        Ok(a) => problems.push(format!("POST answered {} {}", a.status, a.body)),
        Err(e) => problems.push(format!("POST got no answer ({e})")),
    }
    match &list {
        Ok(a) if a.status == 200 => {}
        Ok(a) => problems.push(format!("GET /v1/leases answered {} {}", a.status, a.body)),
        Err(e) => problems.push(format!("GET /v1/leases got no answer ({e})")),
    }
    match &one {
        Ok(a) if matches!(a.status, 200 | 404) => {}
        Ok(a) => problems.push(format!(
            "GET /v1/leases/{port} answered {} {}",
            a.status, a.body
        )),
        Err(e) => problems.push(format!("GET /v1/leases/{port} got no answer ({e})")),
    }
    assert!(
        problems.is_empty(),
        "ttl {ttl}:\n  {}",
        problems.join("\n  ")
    );
}

/// TTLs whose milliseconds overflow an i64 must not wrap into the past and
/// expire the lease at once.
#[test]
fn a_ttl_too_large_for_milliseconds_does_not_expire_the_lease_at_once() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let mut kept = Vec::new();
    for (index, ttl) in [(0, 10_000_000_000_000_000_u64), (1, u64::MAX)] {
        let port = block.port(index);
        let answer = lease(
            &d,
            json!({"port": port, "owner": owner.owner(), "ttl": ttl}),
        );
        match answer.status {
            422 => assert_eq!(answer.error_code().as_deref(), Some("invalid_value")),
            201 => {
                let granted = answer.json();
                let expires = granted["expires_at"].as_str().unwrap_or_default();
                let granted_at = granted["granted_at"].as_str().unwrap();
                assert!(
                    expires > granted_at,
                    "ttl {ttl}: expires_at {expires:?} is not after granted_at {granted_at:?}"
                );
                kept.push((ttl, port, granted["id"].clone()));
            }
            other => panic!("ttl {ttl}: {other} {}", answer.body),
        }
    }
    // A 1-second lease as a clock: once it has expired, the expiry poll has
    // run after the grants above.
    let clock = expect(
        &lease(
            &d,
            json!({"port": block.port(2), "owner": owner.owner(), "ttl": 1}),
        ),
        201,
    );
    wait_for_end(&d, block.port(2), &clock["id"]);
    for (ttl, port, id) in kept {
        let now = active_lease(&d, port);
        assert_eq!(
            now.as_ref().map(|l| &l["id"]),
            Some(&id),
            "the lease with ttl {ttl} ended at once: {:?}",
            lease_by_id(&d, &id)
        );
    }
}

#[test]
fn release_with_a_wrong_id_keeps_the_lease() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(6);
    let granted = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );
    let id = granted["id"].as_str().unwrap();

    let wrong = "01900000-0000-7000-8000-000000000000";
    let refused = call(&d, "DELETE", &format!("/v1/leases/{port}?id={wrong}"), None);
    expect_error(&refused, 404, "not_found");
    assert_eq!(
        active_lease(&d, port),
        Some(granted.clone()),
        "the lease stays"
    );

    let released = call(&d, "DELETE", &format!("/v1/leases/{port}?id={id}"), None);
    let released = expect(&released, 200);
    assert_eq!(released["id"], id);
    assert_eq!(released["state"], "ended");
    assert_eq!(released["end_reason"], "released");
    assert_eq!(active_lease(&d, port), None);
    let again = call(&d, "DELETE", &format!("/v1/leases/{port}"), None);
    expect_error(&again, 404, "not_found");
}

/// `GET /v1/leases?all=true` is `GET /v1/leases` (active leases by port)
/// followed by ended ones, newest first (docs/API.md).
#[test]
fn listing_all_keeps_active_leases_by_port_then_ended_newest_first() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let grant = |index: u16| {
        // Distinct milliseconds, so "newest" is never a tie.
        let before = std::time::SystemTime::now();
        assert!(wait_until(DEADLINE, || before
            .elapsed()
            .is_ok_and(|e| e >= Duration::from_millis(2))));
        let answer = lease(
            &d,
            json!({"port": block.port(index), "owner": owner.owner()}),
        );
        expect(&answer, 201)["id"].clone()
    };
    let older_ended = grant(4);
    let newer_ended = grant(5);
    let active = [grant(3), grant(1), grant(2)];
    for port in [block.port(4), block.port(5)] {
        expect(
            &call(&d, "DELETE", &format!("/v1/leases/{port}"), None),
            200,
        );
    }

    let plain = expect(&get(&d, "/v1/leases"), 200);
    let ports: Vec<&Value> = plain["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["port"])
        .collect();
    assert_eq!(ports, [block.port(1), block.port(2), block.port(3)]);

    let all = expect(&get(&d, "/v1/leases?all=true"), 200);
    let ids: Vec<&Value> = all["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["id"])
        .collect();
    let expected = [
        &active[1],
        &active[2],
        &active[0],
        &newer_ended,
        &older_ended,
    ];
    assert_eq!(ids, expected, "{all}");
}

#[test]
fn events_since_a_time_start_at_that_time() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let first = expect(
        &lease(&d, json!({"port": block.port(0), "owner": owner.owner()})),
        201,
    );
    // A later millisecond for the second grant, so "since" splits them.
    let before = std::time::SystemTime::now();
    assert!(wait_until(DEADLINE, || before
        .elapsed()
        .is_ok_and(|e| e >= Duration::from_millis(2))));
    let second = expect(
        &lease(&d, json!({"port": block.port(1), "owner": owner.owner()})),
        201,
    );

    let since = second["granted_at"].as_str().unwrap();
    let answer = expect(&get(&d, &format!("/v1/events?since={since}")), 200);
    let ids: Vec<&Value> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["lease_id"])
        .collect();
    assert_eq!(ids, [&second["id"]], "{answer}");
    let all = events(&d);
    assert!(all.iter().any(|e| e["lease_id"] == first["id"]), "{all:?}");

    let bad = get(&d, "/v1/events?since=yesterday");
    assert!(
        matches!(bad.status, 400 | 422),
        "{} {}",
        bad.status,
        bad.body
    );
}
