//! `portctl lease --name`: a name remembers its port in its project, moves
//! (and says so) when that port is held, and is another name in another
//! project.

use super::*;

/// `portctl lease --json --name NAME --project DIR --owner PID`: asserts
/// exit 0; returns the lease it printed.
#[track_caller]
fn lease_name(d: &TestDaemon, name: &str, project: &str, owner: &ChildGuard) -> (Value, Done) {
    let out = lease_named(d, name, project, owner, &["--json"]);
    out.expect(0);
    (out.json(), out)
}

#[test]
fn a_name_keeps_its_port_until_a_listener_takes_it_then_moves() {
    let (block, d, _scratch, project) = setup();
    let (a, b, c) = (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    );

    let (first, _) = lease_name(&d, "api", &project, &a);
    let remembered = port_of(&first);
    assert_eq!(first["name"], "api");
    assert_eq!(first["project"], project.as_str(), "{first}");

    // The same owner asking again gets the same lease.
    let (again, out) = lease_name(&d, "api", &project, &a);
    assert_eq!(again["id"], first["id"], "idempotent: {out}");
    assert_eq!(again["port"], first["port"]);

    // Released, the name gets its port back, for another owner too.
    portctl(&d, &["release", "--name", "api", "--project", &project]).expect(0);
    let (back, _) = lease_name(&d, "api", &project, &b);
    assert_eq!(port_of(&back), remembered, "{back}");
    assert_ne!(back["id"], first["id"]);
    portctl(&d, &["release", &remembered.to_string()]).expect(0);

    // A listener on the remembered port: the name moves, and says so.
    let _server = ChildGuard::http_server(remembered);
    let moved = lease_named(&d, "api", &project, &c, &[]);
    moved.expect(0);
    let new_port: u16 = moved.stdout.trim().parse().expect("the port alone");
    assert_ne!(new_port, remembered, "{moved}");
    assert!(block.range().contains(new_port), "{moved}");
    assert!(
        moved.stderr.contains("moved"),
        "stderr says it moved: {moved}"
    );
    assert!(
        moved.stderr.contains(&remembered.to_string())
            && moved.stderr.contains(&new_port.to_string()),
        "from where to where: {moved}"
    );
    assert_eq!(lease_on(&d, new_port)["name"], "api");
}

#[test]
fn the_same_name_in_two_projects_gets_two_ports() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let (one, two) = (project_dir(&scratch, "one"), project_dir(&scratch, "two"));
    let owner = ChildGuard::sleep(60);

    let (first, _) = lease_name(&d, "api", &one, &owner);
    let (second, _) = lease_name(&d, "api", &two, &owner);
    assert_ne!(first["port"], second["port"], "{first} {second}");
    assert_eq!(second["project"], two.as_str(), "{second}");

    // Each remembers its own port.
    portctl(&d, &["release", "--name", "api", "--project", &one]).expect(0);
    portctl(&d, &["release", "--name", "api", "--project", &two]).expect(0);
    let (again_two, _) = lease_name(&d, "api", &two, &owner);
    let (again_one, _) = lease_name(&d, "api", &one, &owner);
    assert_eq!(again_one["port"], first["port"]);
    assert_eq!(again_two["port"], second["port"]);
}

/// Without `--owner`, both calls of one script resolve to the script: the
/// second gets the first's lease, not a new one.
#[test]
fn a_script_asking_twice_for_a_name_gets_one_lease() {
    let (_block, d, scratch, project) = setup();
    let gate = Gate::new(scratch.path("gate"));
    let body = format!(
        r#"A=$(portctl lease --name api --project {project}) || exit 7
B=$(portctl lease --name api --project {project} --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || exit 8
report "$A $B"
read go < "$GATE"
"#
    );
    let mut script = Script::spawn(Shell::Bash, &d, &scratch, "twice", Some(&gate), &body);
    let (pid, reported) = script.report();
    let (port, id) = reported.split_once(' ').expect("port and id");
    let port: u16 = port.parse().expect("a port");
    let lease = lease_on(&d, port);
    assert_eq!(
        lease["id"], id,
        "the second call got the first lease: {lease}"
    );
    assert_eq!(lease["owner"]["pid"], pid, "{lease}");
    let history = d.get("/v1/leases?all=true").json();
    assert_eq!(
        history["leases"].as_array().map(Vec::len),
        Some(1),
        "one lease, never ended and granted again: {history}"
    );
    script.assert_quiet();
}
