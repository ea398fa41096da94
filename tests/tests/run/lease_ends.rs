//! However a lease ends, nothing of it is left serving its port without a
//! lease (DESIGN "Tags, orphans and the reaper"): what still listens is
//! either reaped or covered by a lease that is still active.
//!
//! - The command exits but left a server (a backgrounded one; a uvicorn
//!   worker whose reloader was killed): `portctl run` keeps the lease while
//!   it serves, says so, and Ctrl-C ends both.
//! - `portctl run` is killed: the daemon reaps the command's process group,
//!   tag or no tag (nginx clears its environment).
//! - `portctl release`, a TTL: the daemon reaps what carried the tag;
//!   `release --keep` opts out.
//!
//! Real uvicorn (`--reload`) and Vite from the tests' venv and npm packages,
//! real nginx, real Python servers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_e2e::servers::{Listener, wait_pid_file};
use portd_e2e::skip::{require_node_package, require_system_tool, require_venv_tool};
use serde_json::json;

use super::*;

/// A plain ASGI app: uvicorn needs nothing else.
const APP_PY: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok from uvicorn\n"})
"#;

/// True when an HTTP GET of `/` on 127.0.0.1:`port` gets a 200.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.split(' ').nth(1) == Some("200")
}

/// A `portctl run` in the background with its stderr in a file.
struct Run {
    portctl: ChildGuard,
    stderr: PathBuf,
}

impl Run {
    fn start(mut cmd: Command, scratch: &Scratch, name: &str) -> Run {
        let stderr = scratch.path(&format!("{name}.err"));
        cmd.stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("create a stderr file"));
        Run {
            portctl: ChildGuard::spawn(&mut cmd),
            stderr,
        }
    }

    fn said(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `portctl run` has said `text` on stderr.
    #[track_caller]
    fn wait_said(&mut self, text: &str) {
        let said = wait_until(DEADLINE, || self.said().contains(text));
        assert!(
            said,
            "portctl run never said {text:?}; it said: {}",
            self.said()
        );
    }

    /// Waits until `port` answers HTTP, while `portctl run` runs.
    #[track_caller]
    fn wait_serving(&mut self, port: u16) {
        let up = wait_until(DEADLINE, || {
            answers_http(port) || !self.portctl.is_running()
        });
        assert!(
            up && self.portctl.is_running(),
            "nothing answered on port {port}; portctl run said: {}",
            self.said()
        );
    }

    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        self.portctl.wait_exit(DEADLINE).unwrap_or_else(|| {
            panic!(
                "portctl run still runs after {DEADLINE:?}; it said: {}",
                self.said()
            )
        })
    }
}

/// `GET /v1/leases/{port}/processes`: (pid, ports it listens on).
fn lease_processes(d: &TestDaemon, port: u16) -> Vec<(u32, Vec<u16>)> {
    let answer = d.get(&format!("/v1/leases/{port}/processes"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["processes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            let listens = p["listens"].as_array().expect("ports");
            (
                p["pid"].as_u64().expect("a pid") as u32,
                listens.iter().map(|v| v.as_u64().unwrap() as u16).collect(),
            )
        })
        .collect()
}

/// The pids `portctl who PORT --json` attributes to lease `id`, and all
/// the pids it lists.
fn holders_of(d: &TestDaemon, port: u16, id: &str) -> (Vec<u32>, Vec<u32>) {
    let report = d.get(&format!("/v1/ports/{port}")).json();
    let holders = report["holders"].as_array().expect("holders").clone();
    let pid = |h: &Value| h["pid"].as_u64().unwrap_or(0) as u32;
    let ours = holders
        .iter()
        .filter(|h| h["lease_id"] == id)
        .map(pid)
        .collect();
    (ours, holders.iter().map(pid).collect())
}

/// Adopts every process of the lease on `port`, so the test ends them all
/// whatever happens; returns the ones listening on `port`.
fn adopt_listeners(d: &TestDaemon, port: u16, strays: &mut Strays) -> Vec<ProcId> {
    let mut listeners = Vec::new();
    for (pid, listens) in lease_processes(d, port) {
        let Some(proc) = ProcId::of(pid) else {
            continue;
        };
        strays.adopt(proc);
        if listens.contains(&port) {
            listeners.push(proc);
        }
    }
    listeners
}

#[test]
fn a_uvicorn_worker_left_by_its_killed_reloader_keeps_the_lease_until_ctrl_c() {
    let Some(uvicorn) = require_venv_tool("uvicorn") else {
        return;
    };
    let (block, d, scratch, dir) = setup();
    fs::write(dir.join("app.py"), APP_PY).expect("write app.py");
    let port = block.port(3);
    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--name", "api", "--port", &port.to_string(), "--"])
        .arg(&uvicorn)
        .args([
            "app:app",
            "--reload",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]);
    let mut run = Run::start(cmd, &scratch, "uvicorn");
    run.wait_serving(port);

    let lease = d.active_lease(port).expect("run leased the port");
    let id = lease["id"].as_str().expect("an id").to_string();
    let reloader = lease["command_pid"]
        .as_u64()
        .expect("run registered its command") as u32;
    let mut strays = Strays::default();
    let listeners = adopt_listeners(&d, port, &mut strays);
    let worker = *listeners
        .iter()
        .find(|p| p.pid != reloader)
        .unwrap_or_else(|| panic!("no worker beside the reloader {reloader}: {listeners:?}"));
    assert!(
        listeners.iter().any(|p| p.pid == reloader),
        "the reloader holds the socket too: {listeners:?}"
    );

    // The reloader dies; its worker goes on serving, under the same lease.
    kill(Pid::from_raw(reloader as i32), Signal::SIGKILL).expect("kill the reloader");
    run.wait_said(&format!("still listens on port {port}"));
    assert!(run.said().contains("killed by SIGKILL"), "{}", run.said());
    assert_eq!(
        d.active_lease(port).map(|l| l["id"].clone()),
        Some(json!(id)),
        "the lease stays active while the worker serves"
    );
    let (ours, _) = holders_of(&d, port, &id);
    assert_eq!(ours, [worker.pid], "who names the worker as the lease's");
    assert!(answers_http(port), "the worker still serves");

    // Ctrl-C: run passes it on, the worker stops, the lease ends.
    run.portctl.signal(Signal::SIGINT);
    let status = run.wait_exit();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "run dies as its command died: {status}"
    );
    assert!(worker.wait_gone(DEADLINE), "the worker survived Ctrl-C");
    assert_released(&d, &id);
    assert_port_free("127.0.0.1", port);
}

#[test]
fn a_command_that_backgrounds_its_server_keeps_the_lease_while_the_server_serves() {
    let (block, d, scratch, dir) = setup();
    let port = block.port(4);
    let server = format!(
        "nohup {} -m http.server {{port}} --bind 127.0.0.1 >/dev/null 2>&1 &",
        python().display()
    );
    let mut cmd = portctl(&d, &dir);
    cmd.args([
        "run",
        "--port",
        &port.to_string(),
        "--",
        "bash",
        "-c",
        &server,
    ]);
    let mut run = Run::start(cmd, &scratch, "background");
    run.wait_serving(port);
    let id = d.active_lease(port).expect("run leased the port")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let mut strays = Strays::default();
    let listeners = adopt_listeners(&d, port, &mut strays);
    assert_eq!(
        listeners.len(),
        1,
        "the server is the lease's: {listeners:?}"
    );

    run.wait_said("exited with status 0, but pid");
    assert!(run.portctl.is_running(), "run keeps waiting");
    assert_eq!(
        d.active_lease(port).map(|l| l["id"].clone()),
        Some(json!(id))
    );
    assert!(answers_http(port));

    run.portctl.signal(Signal::SIGTERM);
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(0), "the command's own status: {status}");
    assert!(listeners[0].wait_gone(DEADLINE), "the server survived");
    assert_released(&d, &id);
    assert_port_free("127.0.0.1", port);
}

/// nginx in the foreground, one worker, everything under `prefix`.
fn nginx_conf(prefix: &Path, port: u16) -> String {
    let p = prefix.display();
    // As root, nginx would run its worker as `nobody`; keep it ours.
    let user = if nix::unistd::geteuid().is_root() {
        "user root root;"
    } else {
        ""
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}\npid {p}/nginx.pid;\n\
         error_log {p}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
           fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
           server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok from nginx\\n\"; }} }}\n}}\n"
    )
}

#[test]
fn nginx_that_clears_its_environment_is_reaped_by_its_group_when_run_is_killed() {
    let Some(nginx) = require_system_tool("nginx", "nginx-light") else {
        return;
    };
    let (block, d, scratch, dir) = setup();
    let port = block.port(5);
    let prefix = scratch.path("nginx");
    fs::create_dir_all(&prefix).expect("create nginx's prefix");
    let conf = prefix.join("nginx.conf");
    fs::write(&conf, nginx_conf(&prefix, port)).expect("write nginx.conf");
    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--port", &port.to_string(), "--"])
        .arg(&nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("startup.log"))
        .arg("-c")
        .arg(&conf);
    let mut run = Run::start(cmd, &scratch, "nginx");
    run.wait_serving(port);
    let lease = d.active_lease(port).expect("run leased the port");
    let id = lease["id"].as_str().expect("an id").to_string();
    let master = lease["command_pid"].as_u64().expect("a registered command") as u32;
    let mut strays = Strays::default();
    let listeners = adopt_listeners(&d, port, &mut strays);
    assert!(
        listeners.len() >= 2 && listeners.iter().any(|p| p.pid == master),
        "master and worker listen: {listeners:?}"
    );
    // The premise: nginx carries no tag, only its group makes it the lease's.
    for proc in &listeners {
        let environ = fs::read(format!("/proc/{}/environ", proc.pid)).unwrap_or_default();
        let tag = format!("{}=", portd_api::LEASE_ENV);
        assert!(
            !environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(tag.as_bytes())),
            "pid {} carries the tag after all",
            proc.pid
        );
    }
    let (mut ours, mut all) = holders_of(&d, port, &id);
    ours.sort_unstable();
    all.sort_unstable();
    assert_eq!(ours, all, "who attributes every nginx process to the lease");

    run.portctl.kill9();
    let ended = d.wait_lease_ended(&id, DEADLINE);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    for proc in &listeners {
        assert!(
            proc.wait_gone(DEADLINE),
            "nginx pid {} survived; log:\n{}",
            proc.pid,
            d.log()
        );
    }
    let event = d.wait_event("reaped", master, DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_port_free("127.0.0.1", port);
}

#[test]
fn a_release_by_hand_stops_the_command_of_a_run() {
    let (block, d, scratch, dir) = setup();
    let port = block.port(6);
    let pid_file = scratch.path("server.pid");
    let signals = scratch.path("server.signals");
    let server = Listener::new(port, &pid_file).log_signals(&signals);
    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--port", &port.to_string(), "--"])
        .args(server.argv());
    let mut run = Run::start(cmd, &scratch, "released");
    let pids = wait_pid_file(&pid_file, || run.portctl.is_running());
    let mut strays = Strays::default();
    let proc = strays.adopt_pid(pids[0]);
    let id = d.active_lease(port).expect("leased")["id"]
        .as_str()
        .expect("an id")
        .to_string();

    let out = finish(portctl(&d, &dir).args(["release", &port.to_string()]));
    out.expect(0);
    assert!(proc.wait_gone(DEADLINE), "the released command survived");
    assert_eq!(
        fs::read_to_string(&signals).unwrap_or_default().trim(),
        "SIGTERM"
    );
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(0), "the command's own status: {status}");
    assert!(
        !run.said().contains("could not release"),
        "a lease already ended needs no word: {}",
        run.said()
    );
    let event = d.wait_event("reaped", proc.pid, DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert_eq!(
        d.lease_by_id(&id).expect("history")["end_reason"],
        "released"
    );
    assert_port_free("127.0.0.1", port);
}

#[test]
fn a_release_reaps_a_scripts_server_and_keep_leaves_it_running() {
    let (block, d, scratch, dir) = setup();
    let owner = ChildGuard::sleep(600);
    let (reaped_port, kept_port) = (block.port(7), block.port(8));
    let mut reaped = Listener::new(reaped_port, scratch.path("reaped"))
        .tagged(&d.lease(reaped_port, &owner))
        .spawn();
    let kept_id = d.lease(kept_port, &owner);
    let mut kept = Listener::new(kept_port, scratch.path("kept"))
        .tagged(&kept_id)
        .spawn();

    finish(portctl(&d, &dir).args(["release", &reaped_port.to_string()])).expect(0);
    assert!(
        reaped.procs[0].wait_gone(DEADLINE),
        "release left the server"
    );
    assert!(reaped.guard.wait_exit(DEADLINE).is_some());
    assert_port_free("127.0.0.1", reaped_port);

    let out = finish(portctl(&d, &dir).args(["release", &kept_port.to_string(), "--keep"]));
    out.expect(0);
    assert!(out.stderr.contains("keep running"), "{out}");
    // Longer than the grace plus one second: nothing comes for it.
    assert!(kept.procs[0].stays_alive(Duration::from_millis(1600)));
    let report = finish(portctl(&d, &dir).args(["reap", "--json"]));
    report.expect(0);
    let report = report.json();
    assert_eq!(report["reaped"], json!([]), "{report}");
    let spared = report["reported"]
        .as_array()
        .expect("reported")
        .iter()
        .find(|r| r["pid"] == kept.pid())
        .unwrap_or_else(|| panic!("reap names the kept server: {report}"));
    assert!(
        spared["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("--keep"),
        "{report}"
    );
    assert!(kept.procs[0].is_alive());
    assert!(kept.guard.is_running());
}

#[test]
fn a_ttl_that_ends_a_scripts_lease_reaps_its_server() {
    let (block, d, scratch, dir) = setup();
    let port = block.port(9);
    let pid_file = scratch.path("server.pid");
    let server = Listener::new(port, &pid_file);
    let script = format!(
        "eval \"$(portctl lease {port} --ttl 1 --shell)\"\n{} &\nwait\n",
        server.shell_line()
    );
    let mut bash = Command::new("bash");
    cli::scrub(&mut bash)
        .args(["-c", &script])
        .current_dir(&dir)
        .env("PATH", cli::script_path())
        .env("PORTD_SOCKET", d.socket())
        .env("PORTD_NO_AUTOSTART", "1")
        .stdout(Stdio::null());
    let mut script = ChildGuard::spawn(&mut bash);
    let pids = wait_pid_file(&pid_file, || script.is_running());
    let mut strays = Strays::default();
    let proc = strays.adopt_pid(pids[0]);
    let id = d.active_lease(port).map_or_else(
        // The TTL may already have run out: the last lease on the port.
        || d.events("granted").last().expect("a grant")["lease_id"].clone(),
        |l| l["id"].clone(),
    );
    let id = id.as_str().expect("an id").to_string();

    let ended = d.wait_lease_ended(&id, DEADLINE);
    assert_eq!(ended["end_reason"], "expired", "{ended}");
    assert!(proc.wait_gone(DEADLINE), "the server outlived its lease");
    let event = d.wait_event("reaped", proc.pid, DEADLINE);
    assert_eq!(event["lease_id"], id.as_str(), "{event}");
    assert!(script.wait_exit(DEADLINE).is_some(), "the script waited on");
    assert_port_free("127.0.0.1", port);
}

#[test]
fn run_says_when_its_command_listens_elsewhere_than_the_leased_port() {
    let (block, d, scratch, dir) = setup();
    let (leased, elsewhere) = (block.port(10), block.port(11));
    let pid_file = scratch.path("elsewhere.pid");
    // A server that ignores {port} and binds a port of its own choosing.
    let server = Listener::new(elsewhere, &pid_file);
    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--port", &leased.to_string(), "--"])
        .args(server.argv());
    let mut run = Run::start(cmd, &scratch, "elsewhere");
    let pids = wait_pid_file(&pid_file, || run.portctl.is_running());
    let mut strays = Strays::default();
    strays.adopt_pid(pids[0]);
    run.wait_said(&format!(
        "listens on {elsewhere}, not on the leased {leased}: add --port {{port}}"
    ));
    run.portctl.signal(Signal::SIGTERM);
    run.wait_exit();
}

#[test]
fn run_names_vite_on_its_own_port_and_is_quiet_once_vite_gets_port() {
    let Some(vite) = require_node_package("vite") else {
        return;
    };
    let (block, d, scratch, dir) = setup();
    let (leased, own) = (block.port(12), block.port(13));
    fs::write(dir.join("index.html"), "<h1>hello from vite</h1>\n").expect("index.html");
    // Vite's own default port, kept inside the test's block.
    fs::write(
        dir.join("vite.config.mjs"),
        format!(
            "export default {{ server: {{ host: '127.0.0.1', port: {own}, strictPort: true }} }}\n"
        ),
    )
    .expect("vite.config.mjs");
    let bin = vite.join("bin/vite.js");

    let mut cmd = portctl(&d, &dir);
    cmd.args([
        "run",
        "--name",
        "web",
        "--port",
        &leased.to_string(),
        "--",
        "node",
    ])
    .arg(&bin);
    let mut ignoring = Run::start(cmd, &scratch, "vite-own");
    ignoring.wait_said(&format!(
        "vite listens on {own}, not on the leased {leased}: add --port {{port}}"
    ));
    ignoring.portctl.signal(Signal::SIGINT);
    ignoring.wait_exit();
    assert_port_free("127.0.0.1", own);

    // As the README writes it: the port passed on, nothing to say.
    let mut cmd = portctl(&d, &dir);
    cmd.args(["run", "--name", "web", "--", "node"])
        .arg(&bin)
        .args(["--port", "{port}"]);
    let mut passing = Run::start(cmd, &scratch, "vite-port");
    passing.wait_serving(leased);
    let lease = d.active_lease(leased).expect("web got its home port again");
    assert_eq!(lease["name"], "web", "{lease}");
    // Longer than run's looking needs to settle on a warning.
    let warned = wait_until(Duration::from_millis(2500), || {
        passing.said().contains("not on the leased")
    });
    assert!(
        !warned,
        "a warning although vite listens on the leased port: {}",
        passing.said()
    );
    passing.portctl.signal(Signal::SIGINT);
    passing.wait_exit();
}
