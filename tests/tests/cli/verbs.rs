//! `release`, `ls`, `status`, `env` and `who`: what they print and how they
//! exit.

use super::*;

#[test]
fn release_ends_a_lease_by_port_or_by_name() {
    let (block, d, scratch, project) = setup();
    let owner = ChildGuard::sleep(60);
    let pid = owner.pid().to_string();

    let port = block.port(0);
    portctl(&d, &["lease", &port.to_string(), "--owner", &pid]).expect(0);
    let id = id_of(&lease_on(&d, port)).to_string();
    let released = portctl(&d, &["release", &port.to_string()]);
    released.expect(0);
    assert!(released.stderr.contains(&port.to_string()), "{released}");
    assert_eq!(d.active_lease(port), None);
    assert_eq!(d.lease_by_id(&id).unwrap()["end_reason"], "released");
    portctl(&d, &["release", &port.to_string()]).expect(4);

    let named = lease_named(&d, "web", &project, &owner, &[]);
    named.expect(0);
    let named_port: u16 = named.stdout.trim().parse().expect("a port");
    let id = id_of(&lease_on(&d, named_port)).to_string();
    // Another project's "web" is not this one.
    let elsewhere = project_dir(&scratch, "elsewhere");
    portctl(&d, &["release", "--name", "web", "--project", &elsewhere]).expect(4);
    portctl(&d, &["release", "--name", "web", "--project", &project]).expect(0);
    assert_eq!(d.active_lease(named_port), None);
    assert_eq!(d.lease_by_id(&id).unwrap()["end_reason"], "released");
    portctl(&d, &["release", "--name", "web", "--project", &project]).expect(4);
}

#[test]
fn ls_lists_leases_as_a_table_all_of_them_or_as_json() {
    let (block, d, _scratch, project) = setup();
    let owner = ChildGuard::sleep(60);
    let pid = owner.pid().to_string();

    let empty = portctl(&d, &["ls"]);
    empty.expect(0);
    assert_eq!(empty.stdout, "", "{empty}");

    let api = lease_named(&d, "api", &project, &owner, &[]);
    api.expect(0);
    let api_port = api.stdout.trim().to_string();
    let gone = block.port(15).to_string();
    portctl(&d, &["lease", &gone, "--owner", &pid]).expect(0);
    portctl(&d, &["release", &gone]).expect(0);

    let table = portctl(&d, &["ls"]);
    table.expect(0);
    let row = table
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(api_port.as_str()))
        .unwrap_or_else(|| panic!("no row for port {api_port}: {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "api", "{table}");
    assert!(cells.contains(&pid.as_str()), "the owner's pid: {table}");
    assert!(
        !table.stdout.contains(&gone),
        "ended leases only with --all: {table}"
    );

    let all = portctl(&d, &["ls", "--all"]);
    all.expect(0);
    let ended = all
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(gone.as_str()))
        .unwrap_or_else(|| panic!("--all shows the released lease: {all}"));
    assert!(ended.contains("released"), "{all}");
    assert!(all.stdout.contains(&api_port), "{all}");

    let json = portctl(&d, &["ls", "--json"]);
    json.expect(0);
    let listed = json.json();
    assert_eq!(listed, d.get("/v1/leases").json(), "{json}");
    let leases = listed["leases"].as_array().expect("{\"leases\": [...]}");
    assert_eq!(leases.len(), 1, "{listed}");
    assert_eq!(leases[0]["name"], "api");

    let json_all = portctl(&d, &["ls", "--all", "--json"]).json();
    assert_eq!(
        json_all["leases"].as_array().map(Vec::len),
        Some(2),
        "{json_all}"
    );
}

#[test]
fn status_names_the_socket_and_the_daemon() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());

    let human = portctl(&d, &["status"]);
    human.expect(0);
    let socket = d.socket().display().to_string();
    assert!(human.stdout.contains(&socket), "{human}");
    assert!(
        human.stdout.contains(&format!("pid {}", d.pid())),
        "{human}"
    );
    assert!(human.stdout.contains(&block.range().to_string()), "{human}");

    let json = portctl(&d, &["status", "--json"]);
    json.expect(0);
    let status = json.json();
    assert_eq!(status["socket"], socket.as_str(), "{status}");
    assert_eq!(status["pid"], d.pid(), "{status}");
    assert_eq!(status["version"], portd_api::VERSION, "{status}");
}

/// The client and the daemon of one build agree: `portctl --version` is the
/// daemon's version, and no call warns (every call here checks stderr).
#[test]
fn client_and_daemon_of_one_build_have_one_version() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let version = portctl(&d, &["--version"]);
    version.expect(0);
    let status = portctl(&d, &["status", "--json"]).json();
    let daemon_version = status["version"].as_str().expect("a version");
    assert_eq!(
        version.stdout.split_whitespace().last(),
        Some(daemon_version),
        "{version}"
    );
    let port = block.port(3).to_string();
    for args in [
        &["lease", &port][..],
        &["ls"],
        &["who", &port],
        &["env", &port],
        &["release", &port],
    ] {
        // `portctl` checks stderr for a warning on every call.
        portctl(&d, args).expect(0);
    }
}

#[test]
fn env_prints_an_existing_lease_as_shell_dotenv_or_json() {
    let (block, d, _scratch, project) = setup();
    let owner = ChildGuard::sleep(60);
    let port = block.port(1);
    let p = port.to_string();
    lease_named(&d, "api", &project, &owner, &[&p]).expect(0);
    let lease = lease_on(&d, port);
    let id = id_of(&lease);

    let shell = portctl(&d, &["env", &p]);
    shell.expect(0);
    assert_eq!(
        shell.stdout,
        format!("export PORT={port}\nexport PORTD_LEASE={id}\n")
    );
    let explicit = portctl(&d, &["env", &p, "--format", "shell"]);
    assert_eq!(explicit.expect(0).stdout, shell.stdout);

    for args in [
        &["env", &p, "--format", "dotenv"][..],
        &[
            "env",
            "--name",
            "api",
            "--project",
            &project,
            "--format",
            "dotenv",
        ],
    ] {
        let dotenv = portctl(&d, args);
        dotenv.expect(0);
        assert_eq!(dotenv.stdout, format!("PORT={port}\n"), "{dotenv}");
        assert!(!dotenv.stdout.contains("PORTD_LEASE"), "{dotenv}");
        assert!(!dotenv.stdout.contains(id), "no tag in a file: {dotenv}");
    }

    let json = portctl(&d, &["env", &p, "--format", "json"]);
    json.expect(0);
    assert_eq!(json.json(), lease, "{json}");

    let by_name = portctl(&d, &["env", "--name", "api", "--project", &project]);
    assert_eq!(by_name.expect(0).stdout, shell.stdout);

    // No lease: the shell format fails the eval, dotenv prints nothing, and
    // JSON prints the error body, as every `--json` verb does.
    let free = block.port(2).to_string();
    let none = portctl(&d, &["env", &free]);
    none.expect(4);
    assert_eq!(none.stdout, "(exit 4)\n", "{none}");
    let none = portctl(&d, &["env", &free, "--format", "dotenv"]);
    none.expect(4);
    assert_eq!(none.stdout, "", "{none}");
    let by_port = portctl(&d, &["env", &free, "--format", "json"]);
    by_port.expect(4);
    assert_eq!(
        by_port.json(),
        d.get(&format!("/v1/leases/{free}")).json(),
        "the API's body: {by_port}"
    );
    let by_name = portctl(
        &d,
        &[
            "env",
            "--name",
            "nope",
            "--project",
            &project,
            "--format",
            "json",
        ],
    );
    by_name.expect(4);
    let error = &by_name.json()["error"];
    assert_eq!(error["code"], "not_found", "{by_name}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("'nope'")),
        "{by_name}"
    );
    assert_eq!(by_name.stdout.lines().count(), 1, "one document: {by_name}");
}

#[test]
fn who_reports_free_ports_listeners_and_leases() {
    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let owner = ChildGuard::sleep(60);

    let free = block.port(4).to_string();
    let nothing = portctl(&d, &["who", &free]);
    nothing.expect(4);
    assert!(nothing.stdout.contains("free"), "{nothing}");

    let port = block.port(5);
    let server = ChildGuard::http_server(port);
    let who = portctl(&d, &["who", &port.to_string()]);
    who.expect(0);
    assert!(
        who.stdout.contains(&format!("pid {}", server.pid())),
        "names the listener: {who}"
    );
    assert!(who.stdout.contains("http.server"), "and its command: {who}");

    let json = portctl(&d, &["who", &port.to_string(), "--json"]);
    json.expect(0);
    let report = json.json();
    assert_eq!(report, d.get(&format!("/v1/ports/{port}")).json(), "{json}");
    assert_eq!(report["free"], false, "{report}");
    assert_eq!(report["holders"][0]["pid"], server.pid(), "{report}");

    let leased = block.port(6).to_string();
    portctl(&d, &["lease", &leased, "--owner", &owner.pid().to_string()]).expect(0);
    let who = portctl(&d, &["who", &leased]);
    who.expect(0);
    assert!(
        who.stdout
            .contains(&format!("leased to pid {}", owner.pid())),
        "{who}"
    );
}

/// `kill` answers only after the grace; meanwhile stderr has said whom it
/// signalled and how long until SIGKILL.
#[test]
fn kill_says_whom_it_signalled_and_how_long_until_sigkill_while_it_waits() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    use portd_e2e::servers::{Listener, Scratch};

    let block = PortBlock::reserve();
    let d = TestDaemon::start(block.range());
    let scratch = Scratch::new();
    let port = block.port(8).to_string();
    // It ignores SIGTERM, so only SIGKILL after the grace ends it.
    let server = Listener::new(block.port(8), scratch.path("stubborn"))
        .ignore_sigterm()
        .spawn();

    let mut cmd = cli::portctl(d.socket());
    cmd.args(["kill", &port, "--grace", "8s"])
        .current_dir("/tmp")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut kill = ChildGuard::spawn(&mut cmd);
    let stderr = kill.child_mut().stderr.take().expect("piped stderr");
    let (lines, said) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = said
        .recv_timeout(DEADLINE)
        .expect("portctl kill said nothing on stderr");
    let expected = format!(
        "portctl: SIGTERM to pid {} ({}",
        server.pid(),
        portd_e2e::servers::python().display()
    );
    assert!(line.starts_with(&expected), "{line:?}");
    assert!(
        line.ends_with("waiting up to 8 s for it to exit, then SIGKILL"),
        "{line:?}"
    );
    // Said during the grace, not after: the listener ignores SIGTERM and
    // still runs, and portctl still waits for the answer.
    assert!(server.procs[0].is_alive(), "the listener is already gone");
    assert!(kill.is_running(), "portctl already answered");

    let status = kill.wait_exit(DEADLINE + Duration::from_secs(8));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        server.procs[0].wait_gone(DEADLINE),
        "the listener survived SIGKILL"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(
        kill.child_mut().stdout.as_mut().expect("piped stdout"),
        &mut stdout,
    )
    .expect("read portctl's stdout");
    assert!(
        stdout.contains(&format!("pid {:<7} SIGKILL, ended", server.pid())),
        "{stdout}"
    );
}
