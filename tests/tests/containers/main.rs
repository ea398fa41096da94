//! Ports held for Docker containers (issue 14, items 1, 2 and 4), against a
//! real Docker Engine the test starts: a busybox httpd published on
//! 127.0.0.1 inside the test's port block, so docker-proxy holds the port.
//! portd must name the container (name, short id, image, Compose project
//! and service) in `who`, `GET /v1/ports/{port}` and `lease`'s conflict,
//! refuse `kill` and `lease --kill` with the docker command that stops the
//! container (exit 5, `--force` or not), never signal a container's process
//! from the reaper, and fall back to today's report without an engine.
//!
//! Each test starts its own dockerd; the engines of this binary take turns.

use std::time::Duration;

use portd_e2e::docker::{DockerEngine, IMAGE, get_page};
use portd_e2e::servers::ProcId;
use portd_e2e::{ChildGuard, Done, PortBlock, TestDaemon, cli, finish};
use serde_json::{Value, json};

/// How long the daemon may take to notice a death and reap (or to answer).
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a process that must survive is watched after the daemon had
/// every chance to signal it: twice the reap grace.
const SETTLE: Duration = Duration::from_millis(1000);
const PORTCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon on `block` that asks the Docker Engine at `docker_host`.
fn daemon(block: &PortBlock, docker_host: &str) -> TestDaemon {
    let mut d = TestDaemon::new(block.range());
    d.args(&["--grace", "500ms"]);
    let host = docker_host.to_string();
    d.launch_with(move |mut cmd| {
        cmd.env("DOCKER_HOST", host);
        cmd
    });
    d
}

fn portctl(d: &TestDaemon, args: &[&str]) -> Done {
    Done {
        what: format!("portctl {}", args.join(" ")),
        ..finish(cli::portctl(d.socket()).args(args), PORTCTL_TIMEOUT)
    }
}

/// The one holder `GET /v1/ports/{port}` reports.
#[track_caller]
fn only_holder(d: &TestDaemon, port: u16) -> Value {
    let report = d.get(&format!("/v1/ports/{port}")).json();
    let holders = report["holders"].as_array().expect("a holders list");
    assert_eq!(holders.len(), 1, "{report}");
    holders[0].clone()
}

/// The pid of the docker-proxy that holds `port`, as `who` reports it.
#[track_caller]
fn proxy_pid(holder: &Value) -> u32 {
    assert_eq!(holder["kind"], "docker-proxy", "{holder}");
    holder["pid"].as_u64().expect("docker-proxy's pid") as u32
}

#[test]
fn a_published_port_is_reported_as_its_compose_services_container() {
    let Some(engine) = DockerEngine::start() else {
        return;
    };
    let block = PortBlock::reserve();
    let port = block.port(0);
    let publish = format!("127.0.0.1:{port}:80");
    let id = engine.run_httpd(
        "shop-web-1",
        &[
            "-p",
            &publish,
            "-l",
            "com.docker.compose.project=shop",
            "-l",
            "com.docker.compose.service=web",
        ],
        "80",
        port,
    );
    let d = daemon(&block, &engine.host());

    let holder = only_holder(&d, port);
    proxy_pid(&holder);
    assert_eq!(
        holder["container"],
        json!({
            "id": &id[..12],
            "name": "shop-web-1",
            "image": IMAGE,
            "compose_project": "shop",
            "compose_service": "web",
        }),
        "{holder}"
    );

    // `who --json` prints the API's body; `who` names the container and
    // the command that stops it.
    let json = portctl(&d, &["who", &port.to_string(), "--json"]);
    assert_eq!(json.expect(0).json()["holders"][0], holder, "{json}");
    let who = portctl(&d, &["who", &port.to_string()]);
    who.expect(0);
    assert!(who.stdout.contains("[docker-proxy]"), "{who}");
    assert!(
        who.stdout.contains(&format!(
            "container shop-web-1 ({IMAGE}; compose project shop, service web); \
             stop it with `docker compose -p shop stop web`"
        )),
        "{who}"
    );

    // A lease of the port is refused (exit 3), naming the container.
    let lease = portctl(&d, &["lease", &port.to_string()]);
    lease.expect(3);
    assert!(
        lease.stderr.contains(&format!(
            "port {port} is held by container shop-web-1 ({IMAGE}; compose project shop, service web) through pid"
        )),
        "{lease}"
    );
    assert!(
        lease
            .stderr
            .contains("stop the container with `docker compose -p shop stop web`"),
        "{lease}"
    );
}

#[test]
fn kill_and_lease_kill_refuse_a_containers_port_even_with_force() {
    let Some(engine) = DockerEngine::start() else {
        return;
    };
    let block = PortBlock::reserve();
    let port = block.port(0);
    let publish = format!("127.0.0.1:{port}:80");
    engine.run_httpd("plain-web", &["-p", &publish], "80", port);
    let d = daemon(&block, &engine.host());
    let proxy = ProcId::of(proxy_pid(&only_holder(&d, port))).expect("docker-proxy runs");

    for args in [
        vec!["kill", "PORT"],
        vec!["kill", "PORT", "--force"],
        vec!["kill", "PORT", "--force", "--signal", "KILL"],
        vec!["lease", "PORT", "--kill"],
    ] {
        let port_text = port.to_string();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "PORT" { &port_text } else { *a })
            .collect();
        let out = portctl(&d, &args);
        out.expect(5);
        assert!(
            out.stderr
                .contains("it serves the port of container plain-web"),
            "{out}"
        );
        assert!(out.stderr.contains("`docker stop plain-web`"), "{out}");
        // Nothing was announced as about to be signalled.
        assert!(!out.stderr.contains("SIGTERM to"), "{out}");
    }
    // The JSON error carries the same code and the skipped holder.
    let json = portctl(&d, &["kill", &port.to_string(), "--force", "--json"]);
    let body = json.expect(5).json();
    assert_eq!(body["error"]["code"], "forbidden", "{json}");

    assert!(proxy.stays_alive(SETTLE), "docker-proxy was signalled");
    assert!(
        get_page(port).is_some_and(|p| p.contains("busybox www")),
        "the container no longer serves"
    );
    assert_eq!(d.events("killed"), Vec::<Value>::new());
}

#[test]
fn the_reaper_leaves_a_tagged_container_process_alone() {
    let Some(engine) = DockerEngine::start() else {
        return;
    };
    let block = PortBlock::reserve();
    let port = block.port(0);
    let d = daemon(&block, &engine.host());
    let mut owner = ChildGuard::sleep(300);
    let lease = d.lease(port, &owner);
    // A container on the host's network that carries the lease's tag and
    // listens on its port, as root like the owner: by every other rule an
    // orphan once the lease ends.
    let tag = format!("PORTD_LEASE={lease}");
    let listen = format!("127.0.0.1:{port}");
    engine.run_httpd("tagged", &["--network", "host", "-e", &tag], &listen, port);
    let holder = only_holder(&d, port);
    assert_eq!(holder["kind"], "process", "{holder}");
    assert_eq!(holder["container"]["name"], "tagged", "{holder}");
    let server = ProcId::of(holder["pid"].as_u64().unwrap() as u32).expect("httpd runs");

    owner.kill9();
    d.wait_lease_ended(&lease, DEADLINE);
    let report = portctl(&d, &["reap", "--json"]).expect(0).json();
    assert_eq!(report["reaped"], json!([]), "{report}");
    let reported = report["reported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == server.pid)
        .unwrap_or_else(|| panic!("the container's process is not reported: {report}"))
        .clone();
    assert!(
        reported["reason"]
            .as_str()
            .unwrap()
            .contains("runs in container"),
        "{reported}"
    );
    assert!(
        server.stays_alive(SETTLE),
        "the container's process was signalled"
    );
    assert!(get_page(port).is_some(), "the container no longer serves");
    assert_eq!(d.events("reaped"), Vec::<Value>::new());

    // An explicit kill is refused too, naming the container.
    let kill = portctl(&d, &["kill", &port.to_string()]);
    kill.expect(5);
    assert!(kill.stderr.contains("`docker stop tagged`"), "{kill}");
}

#[test]
fn without_a_docker_engine_a_forwarder_is_reported_as_before_and_still_spared() {
    let Some(engine) = DockerEngine::start() else {
        return;
    };
    let block = PortBlock::reserve();
    let port = block.port(0);
    let publish = format!("127.0.0.1:{port}:80");
    engine.run_httpd("unnamed", &["-p", &publish], "80", port);
    // A socket path that does not exist, and a directory in its place.
    for host in ["unix:///nonexistent/docker.sock", "unix:///tmp"] {
        let d = daemon(&block, host);
        let holder = only_holder(&d, port);
        let proxy = ProcId::of(proxy_pid(&holder)).expect("docker-proxy runs");
        assert!(holder.get("container").is_none(), "{holder}");
        let who = portctl(&d, &["who", &port.to_string()]);
        who.expect(0);
        assert!(who.stdout.contains("[docker-proxy]"), "{who}");

        let kill = portctl(&d, &["kill", &port.to_string(), "--force"]);
        kill.expect(5);
        assert!(kill.stderr.contains("`docker ps` shows which"), "{kill}");
        assert!(proxy.stays_alive(SETTLE), "docker-proxy was signalled");
    }
    assert!(get_page(port).is_some(), "the container no longer serves");
}
