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

/// `portctl names --all --json`: every remembered name, as the API has it.
fn all_names(d: &TestDaemon) -> Vec<Value> {
    let out = portctl(d, &["names", "--all", "--json"]);
    out.expect(0);
    let list = out.json();
    assert_eq!(list, d.get("/v1/names").json(), "the API's body: {out}");
    list["names"].as_array().expect("a list of names").clone()
}

/// `(project, name, port)` of each name.
fn keys(names: &[Value]) -> Vec<(String, String, u16)> {
    names
        .iter()
        .map(|n| {
            (
                n["project"].as_str().unwrap().to_string(),
                n["name"].as_str().unwrap().to_string(),
                n["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

/// The port a plain scan of `from..=to` grants (then released): the first
/// free port that no name remembers, which shows what the daemon's table
/// remembers, not only what SQLite says.
fn scan(d: &TestDaemon, from: u16, to: u16, owner: &ChildGuard) -> u16 {
    let range = format!("{from}-{to}");
    let out = portctl(
        d,
        &[
            "lease",
            "--range",
            &range,
            "--owner",
            &owner.pid().to_string(),
        ],
    );
    out.expect(0);
    let port: u16 = out.stdout.trim().parse().expect("a port");
    portctl(d, &["release", &port.to_string()]).expect(0);
    port
}

/// `lease PORT --name NAME --project DIR`, then release it: the name
/// remembers PORT.
fn remember(d: &TestDaemon, name: &str, project: &str, port: u16, owner: &ChildGuard) {
    lease_named(d, name, project, owner, &[&port.to_string()]).expect(0);
    portctl(d, &["release", &port.to_string()]).expect(0);
}

#[test]
fn names_lists_this_projects_names_with_their_leases_and_all_lists_every_project() {
    let (block, d, scratch, project) = setup();
    let other = project_dir(&scratch, "other");
    let owner = ChildGuard::sleep(60);
    remember(&d, "web", &project, block.port(1), &owner);
    lease_named(&d, "api", &project, &owner, &[&block.port(2).to_string()]).expect(0);
    remember(&d, "api", &other, block.port(3), &owner);

    let here = run(
        cli::portctl(d.socket()).arg("names").current_dir(&project),
        "portctl names (in the project)".into(),
    );
    here.expect(0);
    let lines: Vec<&str> = here.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two names: {here}");
    assert!(lines[0].starts_with("NAME"), "{here}");
    let api: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(api[..2], ["api", &block.port(2).to_string()[..]], "{here}");
    assert!(
        lines[1].ends_with(&format!("port {} (pid {})", block.port(2), owner.pid())),
        "the active lease: {here}"
    );
    assert!(
        lines[2].starts_with("web") && lines[2].ends_with(" -"),
        "{here}"
    );
    assert!(!here.stdout.contains(&other), "only this project: {here}");

    let all = portctl(&d, &["names", "--all"]);
    all.expect(0);
    assert!(
        all.stdout.contains(&other) && all.stdout.contains(&project),
        "{all}"
    );
    assert_eq!(all.stdout.lines().count(), 4, "{all}");

    let json = portctl(&d, &["names", "--project", &project, "--json"]);
    json.expect(0);
    let listed = json.json();
    assert_eq!(
        listed,
        d.get(&format!("/v1/names?project={project}")).json(),
        "{json}"
    );
    let api = &listed["names"][0];
    assert_eq!(api["name"], "api", "{listed}");
    assert_eq!(api["lease"], lease_on(&d, block.port(2)), "{listed}");
    assert_eq!(api["lease_id"], api["lease"]["id"], "{listed}");
    assert!(api["last_used"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(listed["names"][1]["lease"], Value::Null, "{listed}");

    let elsewhere = project_dir(&scratch, "nameless");
    let none = portctl(&d, &["names", "--project", &elsewhere]);
    none.expect(0);
    assert_eq!(none.stdout, "", "{none}");
    assert!(none.stderr.contains("no names remembered"), "{none}");
}

/// Forgetting changes the daemon's table and its database together: the
/// port is no longer kept from scans, and a restart does not bring it back.
#[test]
fn names_forget_forgets_a_name_or_a_project_but_never_a_leased_one() {
    let (block, d, scratch, project) = setup();
    let mut d = d;
    let owner = ChildGuard::sleep(60);
    let (web, db, api) = (block.port(10), block.port(12), block.port(14));
    remember(&d, "web", &project, web, &owner);
    remember(&d, "db", &project, db, &owner);
    lease_named(&d, "api", &project, &owner, &[&api.to_string()]).expect(0);
    // web's port is remembered: a scan from it takes the next one.
    assert_eq!(scan(&d, web, web + 1, &owner), web + 1);

    let leased = portctl(&d, &["names", "forget", "api", "--project", &project]);
    leased.expect(3);
    assert!(
        leased.stderr.contains(&format!(
            "release it first (`portctl release --name api --project {project}`)"
        )),
        "{leased}"
    );
    portctl(&d, &["names", "forget", "nope", "--project", &project]).expect(4);

    let forgot = portctl(&d, &["names", "forget", "web", "--project", &project]);
    forgot.expect(0);
    assert_eq!(
        forgot.stdout,
        format!("forgot 'web' in {project} (it remembered port {web})\n"),
        "{forgot}"
    );
    assert_eq!(
        scan(&d, web, web + 1, &owner),
        web,
        "the table still keeps {web}"
    );
    let left = keys(&all_names(&d));
    assert_eq!(
        left,
        [
            (project.clone(), "api".to_string(), api),
            (project.clone(), "db".to_string(), db)
        ]
    );

    // The whole project: all or nothing while api is leased.
    portctl(&d, &["names", "forget", "--project", &project]).expect(3);
    assert_eq!(keys(&all_names(&d)), left, "nothing was forgotten");
    portctl(&d, &["release", &api.to_string()]).expect(0);
    let json = portctl(&d, &["names", "forget", "--project", &project, "--json"]);
    json.expect(0);
    assert_eq!(
        keys(json.json()["names"].as_array().unwrap()),
        left,
        "{json}"
    );
    assert_eq!(all_names(&d), Vec::<Value>::new());
    assert_eq!(d.get("/v1/status").json()["counts"]["names"], 0);

    // A restart reads the database: nothing comes back.
    d.restart();
    assert_eq!(all_names(&d), Vec::<Value>::new());
    assert_eq!(scan(&d, db, db + 1, &owner), db);

    // A checkout that was deleted can still have its names forgotten.
    let gone = project_dir(&scratch, "deleted");
    remember(&d, "api", &gone, block.port(16), &owner);
    fs::remove_dir(&gone).expect("remove the project dir");
    let forgot = portctl(&d, &["names", "forget", "--project", &gone]);
    forgot.expect(0);
    assert!(
        forgot.stdout.contains(&format!("forgot 'api' in {gone}")),
        "{forgot}"
    );
}

/// Names are pruned like history: a project's directory is gone (at any
/// cleanup), or no lease for 90 days (here aged in the database while the
/// daemon is down, then pruned by the cleanup it runs when it starts).
#[test]
fn cleanup_forgets_names_of_gone_projects_and_names_unused_for_90_days() {
    let (block, d, scratch, project) = setup();
    let mut d = d;
    let owner = ChildGuard::sleep(60);
    let gone = project_dir(&scratch, "gone");
    let (old, recent, lost, leased) = (block.port(4), block.port(6), block.port(8), block.port(10));
    remember(&d, "old", &project, old, &owner);
    remember(&d, "recent", &project, recent, &owner);
    remember(&d, "api", &gone, lost, &owner);
    // Leased names are in use, whatever their directory.
    let gone_too = project_dir(&scratch, "gone-but-leased");
    lease_named(&d, "api", &gone_too, &owner, &[&leased.to_string()]).expect(0);
    fs::remove_dir(&gone).expect("remove a project dir");
    fs::remove_dir(&gone_too).expect("remove a project dir");

    let report = portctl(&d, &["cleanup", "--json"]);
    report.expect(0);
    let forgotten = keys(report.json()["forgotten"].as_array().expect("forgotten"));
    assert_eq!(
        forgotten,
        [(gone.clone(), "api".to_string(), lost)],
        "{report}"
    );
    assert_eq!(
        scan(&d, lost, lost + 1, &owner),
        lost,
        "still kept from scans"
    );
    let said = portctl(&d, &["cleanup"]);
    said.expect(0);
    assert!(!said.stdout.contains("forgot"), "forgotten once: {said}");

    // 91 days without a lease, as the database will say after the restart.
    d.stop();
    let aged = std::process::Command::new(portd_e2e::servers::python())
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             db = sqlite3.connect(sys.argv[1])\n\
             db.execute('UPDATE names SET last_used = ? WHERE name = ?',\n\
                        (int((time.time() - 91 * 86400) * 1000), 'old'))\n\
             db.commit()\n\
             print(db.total_changes)",
        )
        .arg(d.db())
        .output()
        .expect("run python3");
    assert_eq!(
        String::from_utf8_lossy(&aged.stdout).trim(),
        "1",
        "{aged:?}"
    );
    d.launch();
    let startup = portctl(&d, &["cleanup", "--json"]).json()["startup"].clone();
    let forgotten = keys(startup["forgotten"].as_array().expect("forgotten"));
    assert_eq!(
        forgotten,
        [(project.clone(), "old".to_string(), old)],
        "{startup}"
    );
    assert_eq!(
        keys(&all_names(&d)),
        [
            (project.clone(), "recent".to_string(), recent),
            (gone_too.clone(), "api".to_string(), leased)
        ]
    );
    assert_eq!(scan(&d, old, old + 1, &owner), old);
}

#[test]
fn env_project_names_prints_every_name_of_the_project_as_a_port_variable() {
    let (_block, d, scratch, project) = setup();
    let owner = ChildGuard::sleep(60);
    // `api` remembers its port and has no lease now; `db-main` holds a
    // lease on another port than its home, which a stray server holds.
    let (api, _) = lease_name(&d, "api", &project, &owner);
    portctl(&d, &["release", "--name", "api", "--project", &project]).expect(0);
    let (db, _) = lease_name(&d, "db-main", &project, &owner);
    portctl(&d, &["release", "--name", "db-main", "--project", &project]).expect(0);
    let _stray = ChildGuard::http_server(port_of(&db));
    let (db_now, _) = lease_name(&d, "db-main", &project, &owner);
    assert_ne!(port_of(&db_now), port_of(&db), "{db_now}");

    let env = |format: &str| {
        portctl(
            &d,
            &[
                "env",
                "--project-names",
                "--project",
                &project,
                "--format",
                format,
            ],
        )
    };
    let dotenv = env("dotenv");
    assert_eq!(
        dotenv.expect(0).stdout,
        format!(
            "API_PORT={}\nDB_MAIN_PORT={}\n",
            port_of(&api),
            port_of(&db_now)
        ),
        "{dotenv}"
    );
    let shell = env("shell");
    assert_eq!(
        shell.expect(0).stdout,
        format!(
            "export API_PORT={}\nexport DB_MAIN_PORT={}\n",
            port_of(&api),
            port_of(&db_now)
        ),
        "{shell}"
    );
    assert_eq!(
        env("json").expect(0).json(),
        serde_json::json!({"API_PORT": port_of(&api), "DB_MAIN_PORT": port_of(&db_now)})
    );

    // A project that remembers nothing: exit 4, and `(exit 4)` for eval.
    let empty = project_dir(&scratch, "empty");
    let none = portctl(&d, &["env", "--project-names", "--project", &empty]);
    none.expect(4);
    assert_eq!(none.stdout, "(exit 4)\n", "{none}");
    assert!(none.stderr.contains("no names remembered in"), "{none}");
    // A port and --project-names are one too many.
    portctl(&d, &["env", "8000", "--project-names"]).expect(2);
}
