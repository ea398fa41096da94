//! `portctl mcp` (issue 14, items 5-7) with a real MCP client that nobody
//! here wrote: the official Python SDK (PyPI `mcp`, in the tests' venv)
//! starts `portctl mcp` over stdio, lists its tools and calls each of them
//! (`mcp_session.py`), including calls the CLI refuses, then starts a web
//! server with the environment `lease` returned and ends the session. The
//! test checks the schemas, every result and error code, and that the
//! session's end ended its leases and stopped the server it tagged.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_e2e::ports::port_is_free;
use portd_e2e::servers::{ProcId, Scratch};
use portd_e2e::skip::require_venv_tool;
use portd_e2e::{ChildGuard, PortBlock, TestDaemon, finish, portctl_bin, wait_until};
use serde_json::{Value, json};

/// How long the daemon may take to notice a death and reap.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long the whole session may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(120);

/// The web servers the session starts in sessions of their own; killed at
/// the end of the test if they still run (the script writes each pid to a
/// file as soon as it starts one).
struct Started<'a> {
    dir: &'a Path,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let pid: Option<i32> = fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse().ok());
            let ours = pid.is_some_and(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("http.server"))
            });
            if let (Some(pid), true) = (pid, ours) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The structured result of one call, asserting whether it failed.
#[track_caller]
fn result(out: &Value, label: &str, is_error: bool) -> Value {
    let call = &out["calls"][label];
    assert_eq!(call["is_error"], is_error, "{label}: {call}");
    call["structured"].clone()
}

/// A failed call's error: its code, and the exit code portctl has for it.
#[track_caller]
fn refused(out: &Value, label: &str, code: &str, exit_code: i32) -> Value {
    let error = result(out, label, true);
    assert_eq!(error["error"]["code"], code, "{label}: {error}");
    assert_eq!(error["exit_code"], exit_code, "{label}: {error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{label}: {error}"
    );
    error
}

#[test]
fn an_mcp_client_calls_every_tool_and_the_sessions_end_ends_its_leases() {
    let Some(python) = require_venv_tool("python") else {
        return;
    };
    let block = PortBlock::reserve();
    let mut d = TestDaemon::new(block.range());
    let proxy = block.port(9);
    d.args(&["--grace", "500ms", "--proxy-port", &proxy.to_string()])
        .launch();
    let scratch = Scratch::new();
    let project = scratch.path("app");
    fs::create_dir_all(project.join(".git")).expect("a project that is a git worktree");
    let project = project.canonicalize().unwrap();
    let pids = scratch.path("pids");
    fs::create_dir_all(&pids).unwrap();
    let _started = Started { dir: &pids };

    let held = ChildGuard::http_server(block.port(1));
    let tied_owner = ChildGuard::sleep(300);
    let free = block.port(0);
    let config = json!({
        "portctl": portctl_bin(),
        "socket": d.socket(),
        "project": project,
        "pid_dir": pids,
        "free_port": free,
        "held_port": block.port(1),
        "tied_port": block.port(2),
        "tied_owner": tied_owner.pid(),
        "idle_port": block.port(3),
        "ancestor_port": block.port(4),
        "second_port": block.port(5),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/mcp_session.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(config.to_string());
    let run = finish(&mut cmd, SESSION_TIMEOUT);
    run.expect(0);
    let out = run.json();

    // The server and its tools, each with an input and an output schema.
    assert_eq!(out["server"]["name"], "portd", "{}", out["server"]);
    assert!(
        out["server"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("PORTD_LEASE")),
        "{}",
        out["server"]
    );
    let tools: BTreeSet<&str> = out["tools"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tools,
        BTreeSet::from([
            "env", "kill", "lease", "list", "port", "release", "url", "wait", "who"
        ])
    );
    for (name, tool) in out["tools"].as_object().unwrap() {
        assert_eq!(tool["input_schema"]["type"], "object", "{name}: {tool}");
        assert_eq!(tool["output_schema"]["type"], "object", "{name}: {tool}");
        assert!(
            tool["description"].as_str().is_some_and(|d| d.len() > 20),
            "{name}"
        );
    }
    let lease_input = &out["tools"]["lease"]["input_schema"]["properties"];
    for field in ["port", "name", "next", "range", "owner_pid", "ttl", "kill"] {
        assert!(
            lease_input.get(field).is_some(),
            "lease lacks {field}: {lease_input}"
        );
    }

    // lease: the port, the tag to start the server with, owned by the
    // MCP server (not the client, not the agent's shell).
    let lease = result(&out, "lease", false);
    assert_eq!(lease["port"], free, "{lease}");
    let id = lease["lease"]["id"]
        .as_str()
        .expect("a lease id")
        .to_string();
    assert_eq!(
        lease["env"],
        json!({"PORT": free.to_string(), "PORTD_LEASE": id})
    );
    assert_eq!(
        lease["shell_prefix"],
        format!("PORT={free} PORTD_LEASE={id}"),
        "{lease}"
    );
    let server_pid = lease["lease"]["owner_pid"].as_u64().unwrap() as u32;
    assert_ne!(
        server_pid,
        run_pid(&out),
        "owned by the MCP server, not its client"
    );
    assert_eq!(
        result(&out, "lease_again", false)["lease"]["id"],
        id.as_str()
    );

    // Refused as the CLI refuses, with its codes.
    let taken = refused(&out, "lease_taken", "port_taken", 3);
    assert!(
        taken["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", held.pid())),
        "{taken}"
    );
    refused(&out, "lease_kill_next", "invalid_value", 2);
    refused(&out, "lease_bad_range", "invalid_value", 2);
    refused(&out, "env_none", "invalid_value", 2);
    refused(&out, "who_nothing", "not_found", 4);
    refused(&out, "port_unknown", "not_found", 4);
    refused(&out, "release_unknown", "not_found", 4);
    refused(&out, "wait_timeout", "failed", 1);
    let protected = refused(&out, "kill_ancestor", "forbidden", 5);
    assert!(
        protected["error"]["message"]
            .as_str()
            .unwrap()
            .contains("protected"),
        "{protected}"
    );

    // A lease tied to another pid lives with that pid.
    let tied = result(&out, "lease_tied", false);
    assert_eq!(tied["lease"]["owner_pid"], tied_owner.pid(), "{tied}");
    let tied_id = tied["lease"]["id"].as_str().unwrap().to_string();

    let listed = result(&out, "list", false);
    let listed_ports: BTreeSet<u64> = listed["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        listed_ports,
        BTreeSet::from([u64::from(free), u64::from(block.port(2))])
    );
    let who = result(&out, "who", false);
    assert_eq!(who["holders"][0]["pid"], held.pid(), "{who}");
    assert_eq!(who["holders"][0]["kind"], "process", "{who}");
    assert_eq!(who["free"], false, "{who}");

    let port = result(&out, "port", false);
    assert_eq!(port["port"], free, "{port}");
    assert_eq!(port["lease_id"], id.as_str(), "{port}");
    let url = result(&out, "url", false);
    assert_eq!(
        url["url"],
        format!("http://api.app.localhost:{proxy}/"),
        "{url}"
    );
    assert_eq!(url["port"], free, "{url}");
    refused(&out, "url_unknown", "not_found", 4);
    let env = result(&out, "env", false);
    assert_eq!(env["variables"]["PORTD_LEASE"], id.as_str(), "{env}");
    assert_eq!(env["dotenv"], format!("PORT={free}\n"), "{env}");
    let project_env = result(&out, "env_project", false);
    assert_eq!(
        project_env["variables"],
        json!({"API_PORT": free.to_string()})
    );
    assert!(result(&out, "wait", false)["waited_ms"].is_u64());

    // A server stopped through kill, after its lease was released with keep.
    assert_eq!(result(&out, "release_second_keep", false)["kept"], true);
    let killed = result(&out, "kill", false);
    assert_eq!(killed["signalled"][0]["pid"], out["killed_pid"], "{killed}");
    assert_eq!(killed["free"], true, "{killed}");

    // The session is over: its lease ended with its owner, the MCP
    // server, and the web server started with the lease's tag is reaped.
    let ended = d.wait_lease_ended(&id, DEADLINE);
    assert_eq!(ended["end_reason"], "owner_died", "{ended}");
    let web = out["server_pid"].as_u64().unwrap() as u32;
    assert!(
        ProcId::of(web).is_none_or(|p| p.wait_gone(DEADLINE)),
        "the tagged web server outlived the session"
    );
    d.wait_event("reaped", web, DEADLINE);
    assert!(
        wait_until(DEADLINE, || port_is_free(free)),
        "{free} still held"
    );
    // The lease tied to another pid, and the stranger's server, live on.
    let tied_now = d.lease_by_id(&tied_id).expect("the tied lease");
    assert_eq!(tied_now["state"], "active", "{tied_now}");
    assert!(
        ProcId::of(held.pid()).is_some_and(|p| p.is_alive()),
        "the held port's server was signalled"
    );
}

/// The pid of the Python client, which the script reports as the parent
/// of the web servers' sessions: not an owner of anything.
fn run_pid(out: &Value) -> u32 {
    out["client_pid"].as_u64().expect("the client's pid") as u32
}
