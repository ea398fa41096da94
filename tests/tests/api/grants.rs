//! `POST /v1/leases`: which port a request gets, who owns it, and when it
//! is refused.

use std::sync::Barrier;
use std::thread;

use super::*;

#[test]
fn a_lease_is_idempotent_for_its_owner_and_taken_for_everyone_else() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let other = ChildGuard::sleep(60);
    let port = block.port(5);

    let first = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );
    let mut keys: Vec<&str> = first
        .as_object()
        .expect("a lease is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "end_reason",
            "ended_at",
            "expires_at",
            "granted_at",
            "id",
            "name",
            "owner",
            "port",
            "project",
            "state"
        ],
        "{first}"
    );
    let id = first["id"].as_str().expect("id is a string");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "7", "a UUIDv7: {id}");
    assert_eq!(first["port"], port);
    assert_eq!(first["owner"]["pid"], owner.pid());
    assert_eq!(first["owner"]["uid"], uid());
    let start = first["owner"]["start_time"]
        .as_f64()
        .expect("fractional seconds");
    assert!(
        (start - owner.start_time()).abs() < 0.005,
        "{start} vs {}",
        owner.start_time()
    );
    assert_eq!(first["state"], "active");
    for absent in ["name", "project", "end_reason", "expires_at", "ended_at"] {
        assert!(first[absent].is_null(), "{absent}: {first}");
    }
    let granted_at = first["granted_at"].as_str().expect("granted_at");
    assert!(
        granted_at.len() >= 20 && &granted_at[10..11] == "T" && granted_at.ends_with('Z'),
        "RFC 3339 UTC: {granted_at}"
    );

    let again = expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        200,
    );
    assert_eq!(again, first, "asking again answers the same lease");

    let taken = lease(&d, json!({"port": port, "owner": other.owner()}));
    let error = expect_error(&taken, 409, "port_taken");
    assert_eq!(error["port"], port);
    assert_eq!(error["lease"]["id"], first["id"], "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&owner.pid().to_string()), "{message}");

    assert_eq!(active_lease(&d, port), Some(first.clone()));
    let list = expect(&get(&d, "/v1/leases"), 200);
    assert_eq!(list["leases"], json!([first]));
    let grants: Vec<Value> = events(&d)
        .into_iter()
        .filter(|e| e["kind"] == "granted")
        .collect();
    assert_eq!(grants.len(), 1, "asking again grants nothing: {grants:?}");
    assert_eq!(grants[0]["lease_id"], first["id"]);
    assert_eq!(grants[0]["port"], port);
    assert_eq!(grants[0]["pid"], owner.pid());
}

#[test]
fn forty_live_owners_racing_for_one_port_get_exactly_one_lease() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(7);
    let owners: Vec<ChildGuard> = (0..40).map(|_| ChildGuard::sleep(60)).collect();
    let barrier = Barrier::new(owners.len());

    let answers: Vec<(u32, Response)> = thread::scope(|s| {
        let racers: Vec<_> = owners
            .iter()
            .map(|owner| {
                let body = json!({"port": port, "owner": owner.owner()}).to_string();
                let pid = owner.pid();
                let barrier = &barrier;
                let socket = d.socket();
                s.spawn(move || {
                    barrier.wait();
                    (
                        pid,
                        http::request(socket, "POST", "/v1/leases", Some(&body)),
                    )
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let statuses: Vec<u16> = answers.iter().map(|(_, a)| a.status).collect();
    let winners: Vec<&(u32, Response)> = answers.iter().filter(|(_, a)| a.status == 201).collect();
    assert_eq!(winners.len(), 1, "statuses: {statuses:?}");
    for (_, answer) in answers.iter().filter(|(_, a)| a.status != 201) {
        expect_error(answer, 409, "port_taken");
    }
    let (winner_pid, won) = winners[0];
    let won = won.json();
    let held = active_lease(&d, port).expect("the winner's lease");
    assert_eq!(held["id"], won["id"]);
    assert_eq!(held["owner"]["pid"], *winner_pid);
    let all = expect(&get(&d, "/v1/leases?all=true"), 200);
    assert_eq!(all["leases"].as_array().unwrap().len(), 1, "{all}");
}

#[test]
fn a_port_held_by_a_listener_is_taken_and_next_skips_it() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(0);
    let mut server = ChildGuard::http_server(port);
    let owner = ChildGuard::sleep(60);

    let taken = lease(&d, json!({"port": port, "owner": owner.owner()}));
    let error = expect_error(&taken, 409, "port_taken");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {}", server.pid())),
        "{message}"
    );
    assert!(
        message.contains("http.server"),
        "the holder's command: {message}"
    );
    assert_eq!(error["port"], port);
    let holders = error["holders"].as_array().expect("holders in the context");
    let holder = holders
        .iter()
        .find(|h| h["pid"] == server.pid())
        .unwrap_or_else(|| panic!("pid {} not among {holders:?}", server.pid()));
    assert_eq!(holder["uid"], uid());
    assert!(
        holder["cmdline"]
            .as_array()
            .is_some_and(|a| a.iter().any(|arg| arg == "http.server")),
        "{holder}"
    );
    assert_eq!(
        active_lease(&d, port),
        None,
        "nothing leased on a held port"
    );

    let next = lease(
        &d,
        json!({"port": port, "next": true, "owner": owner.owner()}),
    );
    assert_eq!(expect(&next, 201)["port"], port + 1);

    let report = expect(&get(&d, &format!("/v1/ports/{port}")), 200);
    assert_eq!(report["free"], false, "{report}");
    assert!(report["lease"].is_null(), "{report}");
    assert!(
        report["holders"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["pid"] == server.pid())),
        "{report}"
    );

    // Once the server is gone, the port really is free again.
    server.kill9();
    let report = expect(&get(&d, &format!("/v1/ports/{port}")), 200);
    assert_eq!(report["free"], true, "{report}");
    assert_eq!(report["holders"], json!([]), "{report}");
    expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );
}

#[test]
fn next_from_a_port_outside_the_configured_range_searches_above_it() {
    let block = PortBlock::reserve();
    // The daemon's range is the lower half; ports 15.. lie outside it.
    let d = TestDaemon::start(block.sub_range(0, 10));
    let held = block.port(15);
    let _server = ChildGuard::http_server(held);
    let owner = ChildGuard::sleep(60);
    let next = lease(
        &d,
        json!({"port": held, "next": true, "owner": owner.owner()}),
    );
    assert_eq!(expect(&next, 201)["port"], held + 1);
}

#[test]
fn an_exhausted_range_answers_no_free_port() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let range = block.sub_range(10, 3);
    let ask = json!({"range": range.to_string(), "owner": owner.owner()});

    let mut ports: Vec<u64> = (0..3)
        .map(|_| {
            expect(&lease(&d, ask.clone()), 201)["port"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ports.sort_unstable();
    let expected: Vec<u64> = range.ports().map(u64::from).collect();
    assert_eq!(ports, expected, "each port of {range} once");

    let error = expect_error(&lease(&d, ask), 409, "no_free_port");
    assert_eq!(error["range"], range.to_string(), "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&range.to_string()),
        "{error}"
    );
}

#[test]
fn a_pid_with_another_start_time_is_not_the_owner() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let port = block.port(2);

    let impostor = json!({"pid": owner.pid(), "start_time": owner.start_time() + 5.0});
    let refused = lease(&d, json!({"port": port, "owner": impostor}));
    let error = expect_error(&refused, 422, "invalid_value");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&owner.pid().to_string()),
        "{error}"
    );
    assert_eq!(active_lease(&d, port), None);

    // The true start time names the same pid as its owner.
    expect(
        &lease(&d, json!({"port": port, "owner": owner.owner()})),
        201,
    );
}

/// The owner a request names by default is the caller's parent, skipping
/// forked copies of it: the subshell of `$(...)` here.
#[test]
fn without_an_owner_the_lease_belongs_to_the_callers_script() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let port = block.port(16);
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n"
          + b"Content-Length: %d\r\n\r\n" % len(body) + body)
while s.recv(65536):
    pass
"#;
    let script = format!(
        "answer=$(python3 -c '{client}' '{}' '{{\"port\": {port}}}'; true)\nexec sleep 60",
        d.socket().display()
    );
    let mut shell = ChildGuard::bash(&script);
    let granted = portd_e2e::wait_for(Duration::from_secs(10), || active_lease(&d, port));
    let granted = granted.expect("the script's request leased the port");
    assert_eq!(granted["owner"]["pid"], shell.pid(), "{granted}");

    shell.kill9();
    let ended = wait_for_end(&d, port, &granted["id"]);
    assert_eq!(ended["end_reason"], "owner_died");
}

#[test]
fn invalid_combinations_in_a_lease_request_are_422() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let me = owner.owner();
    let inside = block.sub_range(0, 5).to_string();
    let cases = [
        json!({"port": block.port(9), "range": inside, "owner": me}),
        json!({"name": "api", "owner": me}),
        json!({"name": "api", "project": "relative/dir", "owner": me}),
        json!({"name": "has space", "project": "/tmp/p", "owner": me}),
        json!({"name": "", "project": "/tmp/p", "owner": me}),
        json!({"port": block.port(9), "ttl": 0, "owner": me}),
        json!({"port": block.port(9), "owner": {"pid": 0, "start_time": 1.0}}),
    ];
    for body in cases {
        let answer = lease(&d, body.clone());
        assert_eq!(
            (answer.status, answer.error_code().as_deref()),
            (422, Some("invalid_value")),
            "{body}: {}",
            answer.body
        );
    }
    let all = expect(&get(&d, "/v1/leases?all=true"), 200);
    assert_eq!(all["leases"], json!([]), "nothing was leased");
}
