//! Names: `(project, name)` keeps its home port across leases; it moves
//! only when asked, and scans skip the homes of other names.

use super::*;

#[test]
fn names_remember_their_port_per_project() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let (a, b, c, e) = (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    );
    let api = |owner: &ChildGuard, project: &str| json!({"name": "api", "project": project, "owner": owner.owner()});

    let first = expect(&lease(&d, api(&a, "/tmp/p1")), 201);
    assert_eq!(first["name"], "api");
    assert_eq!(first["project"], "/tmp/p1");
    let remembered = first["port"].as_u64().unwrap() as u16;
    assert!(block.range().contains(remembered));
    let status = expect(&get(&d, "/v1/status"), 200);
    assert_eq!(status["counts"]["names"], 1, "{status}");
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{remembered}"), None),
        200,
    );

    // After release, the name gets its port back (for a new owner, too).
    let again = expect(&lease(&d, api(&b, "/tmp/p1")), 201);
    assert_eq!(again["port"], remembered, "{again}");
    assert_ne!(again["id"], first["id"]);
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{remembered}"), None),
        200,
    );

    // A scan skips the port a name remembers, though it is free.
    let plain = expect(&lease(&d, json!({"owner": c.owner()})), 201);
    assert_ne!(plain["port"], remembered, "{plain}");

    // The same name in another project is another name.
    let other = expect(&lease(&d, api(&c, "/tmp/p2")), 201);
    assert_ne!(other["port"], remembered, "{other}");
    assert_ne!(other["port"], plain["port"]);

    // Leased by a live owner, the name is not anyone else's in its project.
    let held = expect(&lease(&d, api(&a, "/tmp/p1")), 201);
    assert_eq!(held["port"], remembered);
    let error = expect_error(&lease(&d, api(&e, "/tmp/p1")), 409, "name_taken");
    assert_eq!(error["name"], "api", "{error}");
    assert_eq!(error["lease"]["id"], held["id"], "{error}");
    // ... and its owner asking again gets its lease.
    let same = expect(&lease(&d, api(&a, "/tmp/p1")), 200);
    assert_eq!(same["id"], held["id"]);
}

#[test]
fn a_scan_takes_a_remembered_port_when_nothing_else_is_free() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let (a, b, c) = three_owners();
    let range = block.sub_range(14, 2).to_string();

    let named = lease(
        &d,
        json!({"name": "web", "project": "/tmp/p", "range": range, "owner": a.owner()}),
    );
    let remembered = expect(&named, 201)["port"].clone();
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{remembered}"), None),
        200,
    );

    let first = expect(&lease(&d, json!({"range": range, "owner": b.owner()})), 201);
    assert_ne!(first["port"], remembered, "the scan skips the name's port");
    let second = expect(&lease(&d, json!({"range": range, "owner": c.owner()})), 201);
    assert_eq!(
        second["port"], remembered,
        "then takes it, as nothing else is free"
    );
}

/// Three live processes to own leases.
fn three_owners() -> (ChildGuard, ChildGuard, ChildGuard) {
    (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    )
}

/// The home `(project, name)` remembers, from `GET /v1/names`.
fn home_of(d: &TestDaemon, project: &str, name: &str) -> Value {
    let names = expect(&get(d, &format!("/v1/names?project={project}")), 200);
    names["names"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["name"] == name))
        .map(|n| n["port"].clone())
        .unwrap_or_else(|| panic!("{name} is not remembered: {names}"))
}

#[test]
fn a_name_whose_home_is_leased_gets_another_port_this_time_and_its_home_back_later() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let (a, b, c) = three_owners();
    let web =
        |owner: &ChildGuard| json!({"name": "web", "project": "/tmp/p", "owner": owner.owner()});

    let first = expect(&lease(&d, web(&a)), 201);
    let home = first["port"].as_u64().unwrap();
    assert!(first.get("home").is_none(), "{first}");
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{home}"), None),
        200,
    );

    // Another owner asks for that exact port: an explicit ask ignores names.
    let taker = expect(&lease(&d, json!({"port": home, "owner": b.owner()})), 201);

    let elsewhere = expect(&lease(&d, web(&a)), 201);
    let other = elsewhere["port"].as_u64().unwrap();
    assert_ne!(other, home);
    assert_eq!(elsewhere["home"]["port"], home, "{elsewhere}");
    assert_eq!(elsewhere["home"]["lease"]["id"], taker["id"], "{elsewhere}");
    assert_eq!(elsewhere["home"]["lease"]["owner"]["pid"], b.pid());
    assert_eq!(elsewhere["home"]["not_permitted"], false);
    assert_eq!(
        home_of(&d, "/tmp/p", "web"),
        home,
        "the home stays while another port is used"
    );
    assert!(
        active_lease(&d, other as u16).is_some_and(|l| l.get("home").is_none()),
        "only the grant's answer carries home"
    );

    // Both free again: the next lease of the name gets its home, quietly.
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{other}"), None),
        200,
    );
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{home}"), None),
        200,
    );
    let back = expect(&lease(&d, web(&c)), 201);
    assert_eq!(back["port"], home, "{back}");
    assert!(back.get("home").is_none(), "{back}");
}

#[test]
fn a_home_moves_when_asked_by_port_or_with_move() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    let api = |extra: Value| {
        let mut body = json!({"name": "api", "project": "/tmp/p", "owner": owner.owner()});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let release = |port: &Value| {
        expect(
            &call(&d, "DELETE", &format!("/v1/leases/{port}"), None),
            200,
        );
    };

    let first = expect(&lease(&d, api(json!({}))), 201);
    assert_eq!(first["port"], block.port(0), "{first}");
    release(&first["port"]);

    // `move` skips the old home though it is free, and keeps what it got.
    let moved = expect(&lease(&d, api(json!({"move": true}))), 201);
    assert_eq!(moved["port"], block.port(1), "{moved}");
    assert!(moved.get("home").is_none(), "{moved}");
    assert_eq!(home_of(&d, "/tmp/p", "api"), block.port(1));
    release(&moved["port"]);
    let again = expect(&lease(&d, api(json!({}))), 201);
    assert_eq!(again["port"], block.port(1), "the new home sticks");
    release(&again["port"]);

    // `lease P --name N` makes P the home.
    let p = block.port(9);
    let asked = expect(&lease(&d, api(json!({"port": p}))), 201);
    assert_eq!(asked["port"], p);
    assert_eq!(home_of(&d, "/tmp/p", "api"), p);
    release(&asked["port"]);
    let again = expect(&lease(&d, api(json!({}))), 201);
    assert_eq!(again["port"], p, "{again}");

    // `move` without a name means nothing: refused.
    let error = expect_error(
        &lease(&d, json!({"move": true, "owner": owner.owner()})),
        422,
        "invalid_value",
    );
    assert!(
        error["message"].as_str().unwrap().contains("name"),
        "{error}"
    );
}

#[test]
fn a_scan_says_which_home_it_skipped_only_when_that_changed_the_answer() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let (a, b, c) = three_owners();
    let (p, home) = (block.port(0), block.port(1));
    let _busy = ChildGuard::http_server(p);
    let named = lease(
        &d,
        json!({"port": home, "name": "docs", "project": "/tmp/q", "owner": a.owner()}),
    );
    expect(&named, 201);
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{home}"), None),
        200,
    );

    // P is busy and the next port is docs' free home: skipped, and said.
    let next = expect(
        &lease(&d, json!({"port": p, "next": true, "owner": b.owner()})),
        201,
    );
    assert_eq!(next["port"], block.port(2), "{next}");
    assert_eq!(
        next["skipped"],
        json!({"port": home, "name": "docs", "project": "/tmp/q"}),
        "{next}"
    );

    // With the home leased, skipping it changes nothing: nothing is said.
    expect(&lease(&d, json!({"port": home, "owner": a.owner()})), 201);
    let quiet = expect(
        &lease(&d, json!({"port": p, "next": true, "owner": c.owner()})),
        201,
    );
    assert_eq!(quiet["port"], block.port(3), "{quiet}");
    assert!(quiet.get("skipped").is_none(), "{quiet}");
}

/// `DELETE /v1/names`: the forgotten entries, or why nothing was forgotten.
#[test]
fn names_are_forgotten_by_project_and_name_but_never_while_leased() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);
    // A directory that exists: names of gone projects are pruned at cleanup,
    // and the daemon's start-up cleanup may still be running.
    let dir = tempfile::tempdir().expect("a project dir");
    let p = dir.path().to_str().expect("a UTF-8 path");
    let named = |name: &str, port: u16| json!({"port": port, "name": name, "project": p, "owner": owner.owner()});
    let api = expect(&lease(&d, named("api", block.port(1))), 201);
    let web = expect(&lease(&d, named("web", block.port(2))), 201);
    expect(
        &call(&d, "DELETE", &format!("/v1/leases/{}", block.port(2)), None),
        200,
    );

    let listed = expect(&get(&d, &format!("/v1/names?project={p}&name=api")), 200);
    assert_eq!(
        listed["names"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["names"][0]["lease"], api, "{listed}");

    expect_error(&call(&d, "DELETE", "/v1/names", None), 400, "bad_request");
    expect_error(
        &call(&d, "DELETE", &format!("/v1/names?project={p}-other"), None),
        404,
        "not_found",
    );
    let leased = expect_error(
        &call(&d, "DELETE", &format!("/v1/names?project={p}"), None),
        409,
        "name_taken",
    );
    assert_eq!(leased["name"], "api", "{leased}");
    assert_eq!(leased["lease"]["id"], api["id"], "{leased}");
    assert_eq!(
        expect(&get(&d, "/v1/status"), 200)["counts"]["names"],
        2,
        "all or nothing"
    );

    let forgotten = expect(
        &call(
            &d,
            "DELETE",
            &format!("/v1/names?project={p}&name=web"),
            None,
        ),
        200,
    );
    assert_eq!(
        forgotten["names"].as_array().map(Vec::len),
        Some(1),
        "{forgotten}"
    );
    assert_eq!(forgotten["names"][0]["name"], "web");
    assert_eq!(forgotten["names"][0]["port"], web["port"]);
    assert_eq!(forgotten["names"][0]["lease"], Value::Null);
    expect_error(
        &call(
            &d,
            "DELETE",
            &format!("/v1/names?project={p}&name=web"),
            None,
        ),
        404,
        "not_found",
    );
    let left = expect(&get(&d, "/v1/names"), 200);
    assert_eq!(left["names"].as_array().map(Vec::len), Some(1), "{left}");
}
