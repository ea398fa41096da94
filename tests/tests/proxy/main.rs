//! The `.localhost` proxy end to end: the real `portd` with its proxy on a
//! port of the test's own block, real servers behind it (a Python echo
//! server, a server that switches protocols, one that writes its answers
//! by hand, uvicorn, Vite) on the block's
//! other ports, real clients in front (raw HTTP/1.1 over TCP, `portctl`,
//! headless Chromium).
//!
//! - `routing`: Host to lease, everything passed through with the
//!   forwarding headers, keep-alive and the pool, upgrades both ways, two
//!   worktrees with two labels, an ended lease's 404 at once;
//! - `framing`: every way a server's response may end, a body cut short,
//!   a kept connection the server closed, an answer that is not HTTP;
//! - `pages`: the 404, 502 and index pages, JSON when asked, and what is
//!   refused;
//! - `streams`: a uvicorn app's streamed bodies, upload and server-sent
//!   events, without the daemon buffering them;
//! - `browser`: Chromium on a Vite dev server through the proxy, hot
//!   module replacement over its WebSocket;
//! - `cli`: `portctl url`, `{url@NAME}` in `run` and `env`, `status`, the
//!   proxy port's flag, variable and config key, a port that cannot be bound;
//! - `activation`: the proxy's sockets passed by systemd's own tool.

mod activation;
mod browser;
mod cli;
mod framing;
mod pages;
mod routing;
mod streams;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use portd_e2e::cli::portctl;
use portd_e2e::http::Response;
use portd_e2e::servers::Scratch;
use portd_e2e::web::{self, accepts, project_dir};
use portd_e2e::{ChildGuard, PortBlock, TestDaemon, wait_until};
use serde_json::{Value, json};

/// How long a server or the daemon may take to notice something.
const DEADLINE: Duration = Duration::from_secs(10);

/// The block's last port is the proxy's; leases come from the others.
const PROXY_INDEX: u16 = 19;

/// A daemon with its proxy on a port of the test's block, a scratch
/// directory for projects and servers, and a process to own leases.
struct Proxied {
    block: PortBlock,
    d: TestDaemon,
    scratch: Scratch,
    owner: ChildGuard,
}

impl Proxied {
    fn start() -> Proxied {
        let block = PortBlock::reserve();
        let mut d = TestDaemon::new(block.sub_range(0, PROXY_INDEX));
        d.args(&["--proxy-port", &block.port(PROXY_INDEX).to_string()]);
        d.launch();
        Proxied {
            block,
            d,
            scratch: Scratch::new(),
            owner: ChildGuard::sleep(3600),
        }
    }

    fn proxy_port(&self) -> u16 {
        self.block.port(PROXY_INDEX)
    }

    /// `NAME.LABEL.localhost:PROXY` (`label` empty: `NAME.localhost:PROXY`).
    fn host(&self, name: &str, label: &str) -> String {
        match label {
            "" => format!("{name}.localhost:{}", self.proxy_port()),
            label => format!("{name}.{label}.localhost:{}", self.proxy_port()),
        }
    }

    /// A project directory `name` in the scratch directory.
    fn project(&self, name: &str) -> std::path::PathBuf {
        project_dir(&self.scratch.path("projects"), name)
    }

    /// Leases the block's `index`th port as `name` in `project` for the
    /// test's owner process; returns the lease.
    #[track_caller]
    fn lease(&self, index: u16, name: &str, project: &Path) -> Value {
        let answer = self.d.post(
            "/v1/leases",
            &json!({
                "port": self.block.port(index),
                "name": name,
                "project": project.to_str().unwrap(),
                "owner": self.owner.owner(),
            }),
        );
        assert_eq!(answer.status, 201, "lease {name}: {}", answer.body);
        answer.json()
    }

    /// `GET path` through the proxy for `host`, on a new connection.
    fn get(&self, host: &str, path: &str) -> Response {
        web::get(self.proxy_port(), host, path, &[])
    }

    /// As [`Self::get`], asking for JSON.
    fn get_json(&self, host: &str, path: &str) -> Response {
        web::get(self.proxy_port(), host, path, &["Accept: application/json"])
    }

    /// `portctl run --name NAME -- COMMAND...` in `project` on the block's
    /// first port; returns once the command accepts connections there.
    fn serve(&self, project: &Path, name: &str, command: &[&OsStr]) -> Served {
        let mut run = portctl(self.d.socket());
        run.current_dir(project)
            .args(["run", "--name", name, "--"])
            .args(command)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut served = Served {
            run: ChildGuard::spawn(&mut run),
            group: None,
        };
        let port = self.block.port(0);
        let up = wait_until(DEADLINE, || {
            assert!(served.run.is_running(), "portctl run {name} exited");
            accepts(port)
        });
        assert!(up, "{name} does not listen on {port}");
        served.group = self
            .d
            .active_lease(port)
            .and_then(|l| l["command_pid"].as_u64());
        served
    }

    /// The echo server on the block's `index`th port, answering as `who`.
    fn echo(&self, index: u16, who: &str) -> ChildGuard {
        web::echo_server(&self.scratch.path(""), self.block.port(index), who)
    }
}

/// A command under `portctl run`, stopped as a user stops it when the test
/// ends: SIGTERM to `run`, which passes it on and waits; whatever of the
/// command's process group is still there after that is killed.
struct Served {
    run: ChildGuard,
    /// The command's process group, as its lease registered it.
    group: Option<u64>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.run.is_running() {
            self.run.signal(Signal::SIGTERM);
            if self.run.wait_exit(DEADLINE).is_none() {
                self.run.kill9();
            }
        }
        if let Some(group) = self.group.and_then(|g| i32::try_from(g).ok()) {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}
