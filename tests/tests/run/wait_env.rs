//! `portctl wait` (a port that starts listening, a timeout, an HTTP path
//! that starts answering) and `portctl env` for a name `portctl run` holds.

use std::time::Instant;

use super::*;

/// `python3 -u -m http.server` serving `root` on 127.0.0.1:`port`, its
/// request log (stderr) to `log`. Not waited for.
fn web_server(root: &Path, port: u16, log: &Path) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(python())
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(root)
            .arg(port.to_string())
            .env_remove(portd_api::LEASE_ENV)
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).expect("create the server's log")),
    )
}

/// `portctl wait ARGS` in the background, output discarded.
fn spawn_wait(d: &TestDaemon, args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(
        portctl(d, Path::new("/"))
            .arg("wait")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

#[test]
fn wait_returns_once_a_server_listens_and_exits_1_on_timeout() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(1);
    let p = port.to_string();

    // Nothing listens: exit 1 after the timeout, not before.
    let started = Instant::now();
    let done = finish(portctl(&d, Path::new("/")).args(["wait", &p, "--timeout", "300ms"]));
    done.expect(1);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "gave up early: {done}"
    );
    assert!(done.stderr.contains(&p), "{done}");

    // Started first, the server later: wait returns once it listens.
    let mut wait = spawn_wait(&d, &[&p, "--timeout", "20s"]);
    assert!(wait.is_running(), "wait returned before anything listened");
    let root = scratch.path("www");
    fs::create_dir_all(&root).expect("create the web root");
    let _server = web_server(&root, port, &scratch.path("server.log"));
    let status = wait.wait_exit(DEADLINE).expect("wait returns");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn wait_http_waits_for_a_2xx_or_3xx_answer() {
    let block = PortBlock::reserve();
    let d = daemon(&block);
    let scratch = Scratch::new();
    let port = block.port(1);
    let p = port.to_string();
    let root = scratch.path("www");
    fs::create_dir_all(root.join("sub")).expect("create the web root");
    let log = scratch.path("server.log");
    let _server = web_server(&root, port, &log);
    let wait_ok = finish(portctl(&d, Path::new("/")).args(["wait", &p, "--timeout", "10s"]));
    wait_ok.expect(0);

    // 404 is not ready; a 301 (a directory without its slash) is.
    finish(portctl(&d, Path::new("/")).args([
        "wait",
        &p,
        "--http",
        "/missing",
        "--timeout",
        "300ms",
    ]))
    .expect(1);
    finish(portctl(&d, Path::new("/")).args(["wait", &p, "--http", "/sub", "--timeout", "10s"]))
        .expect(0);

    // Waiting while the path answers 404, done once it answers 200.
    let mut wait = spawn_wait(&d, &[&p, "--http", "/ready.txt", "--timeout", "20s"]);
    // Asked twice: a wait that took the first 404 for an answer would not.
    let asked_again = wait_until(DEADLINE, || {
        let log = fs::read_to_string(&log).unwrap_or_default();
        log.matches("\"GET /ready.txt HTTP/1.0\" 404").count() >= 2
    });
    assert!(
        asked_again,
        "wait did not ask again after a 404; server log: {:?}",
        fs::read_to_string(&log)
    );
    assert!(wait.is_running(), "wait returned on a 404");
    fs::write(root.join("ready.txt"), "ok\n").expect("write ready.txt");
    let status = wait.wait_exit(DEADLINE).expect("wait returns");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn env_prints_the_lease_of_a_name_that_run_holds() {
    let (block, d, scratch, dir) = setup();
    let mut gate = Gate::new(scratch.path("gate"));
    let probe = Probe::new(&scratch, "api").gate(&gate);
    let range = block.sub_range(10, 5).to_string();
    let cmd = run_probe(&d, &dir, &["--name", "api", "--range", &range], &probe, &[]);
    let mut run = Running::start(cmd, &probe, &scratch, "api");
    let (port, id) = (run.port(), run.lease_id());
    assert!(block.sub_range(10, 5).contains(port));

    let env = |dir: &Path, format: &str| {
        finish(portctl(&d, dir).args(["env", "--name", "api", "--format", format]))
    };
    let shell = env(&dir, "shell");
    shell.expect(0);
    assert_eq!(
        shell.stdout,
        format!("export PORT={port}\nexport PORTD_LEASE={id}\n"),
        "{shell}"
    );
    let by_default = finish(portctl(&d, &dir).args(["env", "--name", "api"]));
    assert_eq!(by_default.stdout, shell.stdout, "shell is the default");

    let dotenv = env(&dir, "dotenv");
    dotenv.expect(0);
    assert_eq!(dotenv.stdout, format!("PORT={port}\n"), "no tag: {dotenv}");

    let json = env(&dir, "json");
    json.expect(0);
    let lease: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(lease["id"], id.as_str());
    assert_eq!(lease["port"], port);
    assert_eq!(lease["name"], "api");
    assert_eq!(lease["project"], dir.to_str().unwrap());
    assert_eq!(lease["owner"]["pid"], run.pid());

    // From a subdirectory of the project: the same name.
    let sub = dir.join("src");
    fs::create_dir_all(&sub).expect("create a subdirectory");
    assert_eq!(env(&sub, "dotenv").stdout, dotenv.stdout);
    // Another project has no api.
    env(&project(&scratch, "other"), "dotenv").expect(4);

    gate.release(1);
    assert_eq!(run.wait_exit().code(), Some(0));
    d.wait_lease_ended(&id, DEADLINE);
    env(&dir, "dotenv").expect(4);
}
