//! Names: `(project, name)` remembers its port across leases.

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
    let (a, b, c) = (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    );
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

#[test]
fn a_name_whose_port_is_taken_moves_and_says_where_from() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let (a, b, c) = (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    );
    let web =
        |owner: &ChildGuard| json!({"name": "web", "project": "/tmp/p", "owner": owner.owner()});

    let first = expect(&lease(&d, web(&a)), 201);
    let old = first["port"].as_u64().unwrap();
    assert!(first.get("moved_from").is_none(), "{first}");
    expect(&call(&d, "DELETE", &format!("/v1/leases/{old}"), None), 200);

    // Someone asks for that exact port: an explicit ask ignores names.
    expect(&lease(&d, json!({"port": old, "owner": b.owner()})), 201);

    let moved = expect(&lease(&d, web(&a)), 201);
    let new = moved["port"].as_u64().unwrap();
    assert_ne!(new, old);
    assert_eq!(moved["moved_from"], old, "{moved}");

    // The name now remembers its new port.
    expect(&call(&d, "DELETE", &format!("/v1/leases/{new}"), None), 200);
    let back = expect(&lease(&d, web(&c)), 201);
    assert_eq!(back["port"], new, "{back}");
    assert!(back.get("moved_from").is_none(), "{back}");
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
