//! `portctl run --name`: a name remembers its port in its project (the git
//! worktree root of the directory portctl runs in), across runs and daemon
//! restarts; two worktrees of one repository are two projects.

use serde_json::json;

use super::*;

/// Runs `portctl run --name NAME` of a probe that exits at once, in `dir`;
/// returns the port the probe got.
#[track_caller]
fn run_once(d: &TestDaemon, dir: &Path, scratch: &Scratch, name: &str, label: &str) -> u16 {
    let probe = Probe::new(scratch, label);
    finish(&mut run_probe(d, dir, &["--name", name], &probe, &[])).expect(0);
    let facts = probe.facts().expect("the command ran");
    env_of(&facts, "PORT").parse().expect("a port")
}

#[test]
fn a_name_keeps_its_port_across_runs_and_a_daemon_restart() {
    let (block, mut d, scratch, dir) = setup();

    // The first port of the range is leased to someone else, so api gets
    // another one; remembering it is then the only reason to get it again.
    let holder = ChildGuard::sleep(60);
    let first = block.port(0);
    let answer = d.post(
        "/v1/leases",
        &json!({"port": first, "owner": holder.owner()}),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    let api = run_once(&d, &dir, &scratch, "api", "run-1");
    assert_ne!(api, first);
    assert_eq!(d.delete(&format!("/v1/leases/{first}")).status, 200);

    assert_eq!(run_once(&d, &dir, &scratch, "api", "run-2"), api);
    d.restart();
    assert_eq!(
        run_once(&d, &dir, &scratch, "api", "run-3"),
        api,
        "remembered across a restart"
    );
    // From a subdirectory of the worktree: the same project.
    let sub = dir.join("src").join("deep");
    fs::create_dir_all(&sub).expect("create a subdirectory");
    assert_eq!(run_once(&d, &sub, &scratch, "api", "run-4"), api);
    assert_no_active_lease(&d);
}

#[test]
fn two_worktrees_of_a_repository_are_two_projects() {
    // The main worktree has a .git directory, a linked one a .git file.
    let (_block, d, scratch, main) = setup();
    let linked = scratch.path("app-feature");
    fs::create_dir_all(linked.join("web")).expect("create the linked worktree");
    fs::write(
        linked.join(".git"),
        format!("gitdir: {}/.git/worktrees/app-feature\n", main.display()),
    )
    .expect("write the .git file");
    let linked = linked.canonicalize().expect("canonical worktree");
    fs::create_dir_all(main.join("src")).expect("create a subdirectory");

    let mut gate = Gate::new(scratch.path("gate"));
    let start = |dir: &Path, label: &str| {
        let probe = Probe::new(&scratch, label).gate(&gate);
        let cmd = run_probe(&d, dir, &["--name", "api"], &probe, &[]);
        Running::start(cmd, &probe, &scratch, label)
    };
    let mut in_main = start(&main.join("src"), "main");
    let mut in_linked = start(&linked.join("web"), "linked");
    let (main_port, linked_port) = (in_main.port(), in_linked.port());
    assert_ne!(main_port, linked_port, "one name, two projects, two ports");
    let lease = d.active_lease(main_port).expect("main's lease");
    assert_eq!(lease["name"], "api");
    assert_eq!(lease["project"], main.to_str().unwrap(), "{lease}");
    let lease = d.active_lease(linked_port).expect("linked's lease");
    assert_eq!(lease["project"], linked.to_str().unwrap(), "{lease}");

    // The same name in the same project, while another run holds it.
    let third = Probe::new(&scratch, "third");
    let done = finish(&mut run_probe(&d, &main, &["--name", "api"], &third, &[]));
    done.expect(3);
    assert!(third.facts().is_none(), "the command must not start");

    // `portctl ls` shows both, each with its name and project.
    let ls = finish(portctl(&d, Path::new("/")).arg("ls"));
    ls.expect(0);
    for (port, dir) in [(main_port, &main), (linked_port, &linked)] {
        let row = ls
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(&port.to_string()))
            .unwrap_or_else(|| panic!("no row for {port}: {ls}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.get(1), Some(&"api"), "{row}");
        assert_eq!(cells.get(2), Some(&dir.to_str().unwrap()), "{row}");
    }

    gate.release(2);
    assert_eq!(in_main.wait_exit().code(), Some(0));
    assert_eq!(in_linked.wait_exit().code(), Some(0));
    assert_no_active_lease(&d);
}
