//! A real Docker Engine for one test: `dockerd` as root with its own data
//! root, exec root, socket and pid file in a temp directory, and a local
//! busybox image (no registry is reachable) made by `docker import` of a
//! tarball holding Debian's static busybox with `sh` and `httpd` links.
//!
//! Engines of one test binary take turns (a process-wide lock held by the
//! guard): two engines at once would both manage the `docker0` bridge.
//! Dropping the guard removes every container, stops dockerd (SIGTERM,
//! then SIGKILL), and unmounts what it left under its directories, also
//! when the test fails.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::procs::{Done, die_with_parent, finish};
use crate::skip::{require_root, require_system_tool, skip};
use crate::wait::{wait_for, wait_until};

/// The image every container of these tests runs.
pub const IMAGE: &str = "portd-e2e-busybox:local";
/// How long dockerd may take to answer `docker version`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd may take to exit after SIGTERM (it stops containers).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `docker` command may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

static TURN: Mutex<()> = Mutex::new(());

/// One running Docker Engine and its busybox image.
pub struct DockerEngine {
    dir: TempDir,
    socket: PathBuf,
    docker: PathBuf,
    dockerd: Option<Child>,
    _turn: MutexGuard<'static, ()>,
}

impl DockerEngine {
    /// Starts dockerd and imports the image; `None` (after [`skip`]) when
    /// this machine cannot run it: not root, or docker.io or busybox-static
    /// missing. A dockerd that is there but does not start is a skip too,
    /// with its log, so strict mode fails on it.
    pub fn start() -> Option<DockerEngine> {
        if !require_root("to run dockerd") {
            return None;
        }
        let dockerd = require_system_tool("dockerd", "docker.io")?;
        let docker = require_system_tool("docker", "docker.io")?;
        let busybox = require_system_tool("busybox", "busybox-static")?;
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("portd-docker.")
            .tempdir_in("/tmp")
            .expect("a temp dir for dockerd");
        let socket = dir.path().join("docker.sock");
        let log = fs::File::create(dir.path().join("dockerd.log")).expect("dockerd's log");
        let mut cmd = Command::new(dockerd);
        cmd.arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log);
        let child = die_with_parent(&mut cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let mut engine = DockerEngine {
            dir,
            socket,
            docker,
            dockerd: Some(child),
            _turn: turn,
        };
        let up = wait_until(START_TIMEOUT, || {
            engine.dockerd_running() && engine.docker(&["version"]).status.success()
        });
        if !up {
            skip(&format!(
                "dockerd did not start within {START_TIMEOUT:?}; its log:\n{}",
                engine.log()
            ));
            return None;
        }
        engine.import_image(&busybox);
        Some(engine)
    }

    /// `unix://SOCKET`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> Done {
        let mut cmd = Command::new(&self.docker);
        cmd.args(args).env("DOCKER_HOST", self.host());
        Done {
            what: format!("docker {}", args.join(" ")),
            ..finish(&mut cmd, DOCKER_TIMEOUT)
        }
    }

    /// `docker run -d --name NAME [-l LABEL]... [ARGS]... IMAGE busybox
    /// httpd -f -p LISTEN -h /www`, and waits until `port` answers on
    /// 127.0.0.1; returns the container's full id.
    pub fn run_httpd(&self, name: &str, args: &[&str], listen: &str, port: u16) -> String {
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            IMAGE,
            "/usr/bin/busybox",
            "httpd",
            "-f",
            "-p",
            listen,
            "-h",
            "/www",
        ]);
        let run = self.docker(&all);
        run.expect(0);
        let serving = wait_until(Duration::from_secs(20), || {
            get_page(port).is_some_and(|body| body.contains("busybox www"))
        });
        assert!(
            serving,
            "container {name} does not serve on 127.0.0.1:{port}: {}",
            self.docker(&["logs", name])
        );
        run.stdout.trim().to_string()
    }

    /// True while dockerd runs.
    fn dockerd_running(&mut self) -> bool {
        self.dockerd
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// A root file system of busybox, `sh` and `httpd` links and a page
    /// under /www, as the image `IMAGE`.
    fn import_image(&self, busybox: &Path) {
        let root = self.dir.path().join("image");
        for sub in ["usr/bin", "bin", "www"] {
            fs::create_dir_all(root.join(sub)).expect("image directories");
        }
        fs::copy(busybox, root.join("usr/bin/busybox")).expect("copy busybox");
        symlink("/usr/bin/busybox", root.join("bin/sh")).expect("sh link");
        symlink("/usr/bin/busybox", root.join("usr/bin/httpd")).expect("httpd link");
        fs::write(root.join("www/index.html"), "busybox www\n").expect("the page");
        let tarball = self.dir.path().join("image.tar");
        let tar = finish(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tarball)
                .arg("."),
            DOCKER_TIMEOUT,
        );
        tar.expect(0);
        self.docker(&["import", &tarball.display().to_string(), IMAGE])
            .expect(0);
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- dockerd log ---\n{}", self.log());
        }
        if self.dockerd_running() {
            let ids = self.docker(&["ps", "-aq"]);
            let ids: Vec<&str> = ids.stdout.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        if let Some(mut child) = self.dockerd.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let stopped = wait_for(STOP_TIMEOUT, || child.try_wait().ok().flatten());
            if stopped.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        unmount_under(self.dir.path());
    }
}

/// The body of `GET /` on 127.0.0.1:`port`, if it answers 200 in time.
pub fn get_page(port: u16) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// Lazily unmounts whatever dockerd left mounted under `dir` (its network
/// namespace files, overlay layers), deepest first, so the directory can
/// be removed.
fn unmount_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["-l", point])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
