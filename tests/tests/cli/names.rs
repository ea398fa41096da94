//! `portctl lease --name`: a name keeps its home port in its project, takes
//! another port for one lease (and says why) while the home is held, moves
//! only when asked, gets its range from its pattern, and is another name in
//! another project.

use portd_e2e::ports::port_is_free;

use super::*;

/// `portctl lease --json --name NAME --project DIR --owner PID`: asserts
/// exit 0; returns the lease it printed.
#[track_caller]
fn lease_name(d: &TestDaemon, name: &str, project: &str, owner: &ChildGuard) -> (Value, Done) {
    let out = lease_named(d, name, project, owner, &["--json"]);
    out.expect(0);
    (out.json(), out)
}

/// The home `(project, name)` remembers, from `GET /v1/names`.
#[track_caller]
fn home_of(d: &TestDaemon, project: &str, name: &str) -> u16 {
    let names = d.get(&format!("/v1/names?project={project}")).json();
    names["names"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["name"] == name))
        .and_then(|n| n["port"].as_u64())
        .unwrap_or_else(|| panic!("{name} is not remembered: {names}")) as u16
}

/// Waits until nothing holds `port` (its holder was just stopped).
#[track_caller]
fn wait_free(port: u16) {
    assert!(
        wait_until(DEADLINE, || port_is_free(port)),
        "{port} still held"
    );
}

/// `portctl lease --name NAME ...` without `--json`: the port it printed.
#[track_caller]
fn port_printed(out: &Done) -> u16 {
    out.expect(0);
    out.stdout.trim().parse().expect("the port alone on stdout")
}

#[test]
fn a_name_keeps_its_home_while_a_listener_holds_it_and_gets_it_back() {
    let (block, d, _scratch, project) = setup();
    let (a, b, c) = (
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
        ChildGuard::sleep(60),
    );

    let (first, _) = lease_name(&d, "api", &project, &a);
    let home = port_of(&first);
    assert_eq!(first["name"], "api");
    assert_eq!(first["project"], project.as_str(), "{first}");

    // The same owner asking again gets the same lease.
    let (again, out) = lease_name(&d, "api", &project, &a);
    assert_eq!(again["id"], first["id"], "idempotent: {out}");
    portctl(&d, &["release", "--name", "api", "--project", &project]).expect(0);

    // A stray server on the home: `run` and `lease` take another port for
    // this time, and say what holds the home and how to free it.
    let server = ChildGuard::http_server(home);
    let held = format!("api: home port {home} is held by pid {} (", server.pid());
    let ran = portctl(
        &d,
        &["run", "--name", "api", "--project", &project, "--", "true"],
    );
    ran.expect(0);
    assert!(ran.stderr.contains(&held), "{ran}");
    let out = lease_named(&d, "api", &project, &b, &[]);
    let this_time = port_printed(&out);
    assert_ne!(this_time, home, "{out}");
    assert!(block.range().contains(this_time), "{out}");
    assert!(
        out.stderr.contains(&held) && out.stderr.contains("http.server"),
        "names the holder: {out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "using {this_time} this time; portctl kill {home} frees it"
        )),
        "names the fix: {out}"
    );
    assert_eq!(home_of(&d, &project, "api"), home, "the home stays");

    // The fix it names frees the home; the next lease gets it, and says
    // nothing about homes.
    portctl(&d, &["kill", &home.to_string()]).expect(0);
    wait_free(home);
    portctl(&d, &["release", &this_time.to_string()]).expect(0);
    let back = lease_named(&d, "api", &project, &c, &[]);
    assert_eq!(port_printed(&back), home, "{back}");
    assert_eq!(back.stderr, "", "no reason when there is none: {back}");
    portctl(&d, &["release", &home.to_string()]).expect(0);

    // Another live lease on the home: its owner is named, and `who`.
    let pid = a.pid().to_string();
    portctl(&d, &["lease", &home.to_string(), "--owner", &pid]).expect(0);
    let out = lease_named(&d, "api", &project, &c, &[]);
    let this_time = port_printed(&out);
    assert!(
        out.stderr.contains(&format!(
            "api: home port {home} is leased to pid {pid}, using {this_time} this time; \
             portctl who {home} shows it"
        )),
        "{out}"
    );
}

#[test]
fn move_makes_the_port_this_lease_gets_the_names_home() {
    let (_block, d, _scratch, project) = setup();
    let (a, b) = (ChildGuard::sleep(60), ChildGuard::sleep(60));
    let home = port_printed(&lease_named(&d, "api", &project, &a, &[]));
    portctl(&d, &["release", &home.to_string()]).expect(0);

    let mut server = ChildGuard::http_server(home);
    let moved = lease_named(&d, "api", &project, &a, &["--move"]);
    let new_home = port_printed(&moved);
    assert_ne!(new_home, home, "{moved}");
    assert_eq!(moved.stderr, "", "the old home is not tried: {moved}");
    assert_eq!(home_of(&d, &project, "api"), new_home);

    // The old home free again does not take the name back.
    server.kill9();
    wait_free(home);
    portctl(&d, &["release", &new_home.to_string()]).expect(0);
    let again = lease_named(&d, "api", &project, &b, &[]);
    assert_eq!(port_printed(&again), new_home, "{again}");

    // --move names a name's home; without --name it is bad usage.
    let bare = portctl(&d, &["lease", "--move"]);
    bare.expect(2);
    assert!(bare.stderr.contains("--name"), "{bare}");
}

#[test]
fn next_takes_no_name_that_another_process_holds_as_its_help_says() {
    let (_block, d, _scratch, project) = setup();
    let (holder, asker) = (ChildGuard::sleep(60), ChildGuard::sleep(60));
    let held = port_printed(&lease_named(&d, "api", &project, &holder, &[]));

    let out = lease_named(&d, "api", &project, &asker, &["--next"]);
    out.expect(3);
    assert_eq!(out.stdout, "", "{out}");
    assert!(
        out.stderr.contains(&format!(
            "name 'api' is leased on port {held} by pid {}",
            holder.pid()
        )),
        "{out}"
    );
    let help = portctl(&d, &["lease", "--help"]);
    help.expect(0);
    let flat = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "A name that another process holds is still refused (exit 3), --next or not."
        ),
        "{help}"
    );
}

#[test]
fn names_take_their_ports_from_the_range_their_pattern_gives() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.sub_range(0, 10));
    let config = d.config_file();
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(
        &config,
        format!(
            "[name_ranges]\nweb = \"{}\"\n\"web-*\" = \"{}\"\n",
            block.sub_range(10, 5),
            block.sub_range(15, 5)
        ),
    )
    .unwrap();
    d.launch();
    let scratch = Scratch::new();
    let project = project_dir(&scratch, "app");
    let owner = ChildGuard::sleep(60);

    let web = port_printed(&lease_named(&d, "web", &project, &owner, &[]));
    assert_eq!(web, block.port(10), "web's range from the file");
    let admin = port_printed(&lease_named(&d, "web-admin", &project, &owner, &[]));
    assert_eq!(admin, block.port(15), "the longer pattern wins over none");
    // --range turned the default patterns off: api takes the daemon's range.
    let api = port_printed(&lease_named(&d, "api", &project, &owner, &[]));
    assert_eq!(api, block.port(0), "api");

    // A busy home: this time from the name's own range, not the daemon's.
    portctl(&d, &["release", &web.to_string()]).expect(0);
    let _server = ChildGuard::http_server(web);
    let out = lease_named(&d, "web", &project, &owner, &[]);
    assert_eq!(port_printed(&out), block.port(11), "{out}");
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
