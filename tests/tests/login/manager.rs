//! `portctl install` and `uninstall` against a real `systemd --user`, so the
//! units' hardening, socket activation and `enable --now` meet the real
//! thing.
//!
//! CI has no user manager, and `systemd --user` refuses to start unless
//! /run/systemd/system exists (the mark of a systemd-booted machine). The
//! test therefore starts one in a private mount namespace (`unshare
//! --mount`) in which an empty temp directory with a `system/` entry is
//! bind-mounted over /run/systemd, with a temp HOME, XDG_CONFIG_HOME and
//! XDG_RUNTIME_DIR; every command that must see that manager runs in the
//! same namespace through `nsenter`. Nothing outside the namespace changes.
//! Where this cannot be done (not root, no systemd, no unshare), the test
//! says why and passes.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_e2e::servers::ProcId;
use portd_e2e::{portd_command, wait_for};
use serde_json::json;

use super::*;

/// How long a manager may take to answer after it is started.
const MANAGER_START: Duration = Duration::from_secs(20);

/// Held by each running [`Manager`]. Managers of one test process live in
/// one cgroup (the test's), and each puts its portd.service at the same
/// path under it: stopping one manager's service kills the other's. So
/// they run one at a time.
static ONE_MANAGER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A `systemd --user` in its own mount namespace, stopped (SIGTERM, so it
/// stops its units) when dropped.
struct Manager {
    guard: ChildGuard,
    home: Home,
    log: PathBuf,
    /// Dropped after the manager has stopped (fields drop after `drop`).
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Manager {
    /// Starts the manager; `Err` says why it cannot run here.
    fn start(home: Home) -> Result<Manager, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root for a private mount namespace".into());
        }
        let systemd = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or("no systemd binary in /usr/lib/systemd or /lib/systemd")?;
        for tool in ["unshare", "nsenter", "systemctl"] {
            system_tool(tool).ok_or(format!("{tool} is not installed"))?;
        }
        let turn = ONE_MANAGER.lock().unwrap_or_else(|e| e.into_inner());
        let marker = home.path("run-systemd");
        fs::create_dir_all(marker.join("system")).expect("create the /run/systemd stand-in");
        let log = home.path("manager.log");
        let out = fs::File::create(&log).expect("create the manager's log");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount --bind \"$1\" /run/systemd && exec \"$2\" --user --log-target=console")
            .arg("sh")
            .arg(&marker)
            .arg(systemd)
            .env_clear()
            .stdout(out.try_clone().expect("dup the log"))
            .stderr(out);
        home.apply(&mut cmd, "/usr/bin:/bin");
        let mut manager = Manager {
            guard: ChildGuard::spawn(&mut cmd),
            home,
            log,
            _turn: turn,
        };
        let answered = wait_for(MANAGER_START, || {
            if !manager.guard.is_running() {
                return Some(Err("systemd --user exited"));
            }
            let answers = manager.systemctl(&["show-environment"]).status.success();
            answers.then_some(Ok(()))
        });
        let why = match answered {
            Some(Ok(())) => return Ok(manager),
            Some(Err(why)) => why.to_string(),
            None => format!("systemd --user did not answer within {MANAGER_START:?}"),
        };
        Err(format!(
            "{why}; its log:\n{}",
            fs::read_to_string(&manager.log).unwrap_or_default()
        ))
    }

    /// `PROGRAM ARGS` inside the manager's mount namespace, in its home.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.guard.pid()))
            .arg("--mount")
            .arg("--")
            .arg(program)
            .args(args);
        scrub(&mut cmd);
        self.home.apply(&mut cmd, "/usr/bin:/bin");
        cmd
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        run(&mut self.command(Path::new("systemctl"), &all))
    }

    fn portctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&portctl_bin(), args);
        cmd.env("PORTD_NO_AUTOSTART", "1");
        run(&mut cmd)
    }

    /// `systemctl --user show -p MainPID --value portd.service`, if non-zero.
    fn main_pid(&self) -> Option<u32> {
        let out = self.systemctl(&["show", "--property=MainPID", "--value", "portd.service"]);
        stdout(&out).trim().parse().ok().filter(|&pid| pid != 0)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let service = self.main_pid().and_then(ProcId::of);
        if self.guard.is_running() {
            let _ = kill(Pid::from_raw(self.guard.pid() as i32), Signal::SIGTERM);
            if self.guard.wait_exit(Duration::from_secs(15)).is_none() {
                eprintln!("systemd --user ignored SIGTERM; killing it");
            }
        }
        // A service the manager failed to stop must not outlive the test.
        if let Some(proc) = service.filter(|p| p.is_alive()) {
            let _ = kill(Pid::from_raw(proc.pid as i32), Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- systemd --user log ----\n{}---- end ----",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The service reads its range and grace from the config file, like a
/// user's daemon would; this keeps it inside the test's block.
fn write_config(home: &Home, block: &PortBlock) {
    let config = home.config().join("portd").join("config.toml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(
        &config,
        format!("range = \"{}\"\ngrace = \"500ms\"\n", block.range()),
    )
    .unwrap();
}

#[test]
fn install_and_uninstall_under_a_real_user_manager() {
    let block = PortBlock::reserve();
    let home = Home::new();
    write_config(&home, &block);
    let db = home
        .path("home")
        .join(".local")
        .join("state")
        .join("portd")
        .join("portd.db");
    let socket = home.manager_socket();
    let manager = match Manager::start(home) {
        Ok(manager) => manager,
        Err(why) => return skip(&why),
    };

    // A daemon portctl autostarted earlier, on the socket and database the
    // service is about to use, with a lease on it.
    let mut stray = start_stray(
        portd_command(&socket, &db, block.range()).env("XDG_CONFIG_HOME", manager.home.config()),
        &socket,
    );
    let mut owner = ChildGuard::sleep(600);
    let port = block.port(3);
    let lease = http::request(
        &socket,
        "POST",
        "/v1/leases",
        Some(&json!({"port": port, "owner": owner.owner()}).to_string()),
    );
    assert_eq!(lease.status, 201, "{}", lease.body);
    let lease_id = lease.json()["id"].as_str().unwrap().to_string();

    let said = success(&manager.portctl(&["install"]), "install");
    assert!(
        said.contains(&format!("stopping portd (pid {})", stray.pid())),
        "{said}"
    );
    assert!(
        stray.wait_exit(DEADLINE).is_some(),
        "the stray daemon still runs"
    );
    for unit in ["portd.socket", "portd.service"] {
        let enabled = manager.systemctl(&["is-enabled", unit]);
        assert_eq!(
            stdout(&enabled).trim(),
            "enabled",
            "{unit}: {}",
            stderr(&enabled)
        );
        let active = manager.systemctl(&["is-active", unit]);
        assert_eq!(
            stdout(&active).trim(),
            "active",
            "{unit}: {}",
            stderr(&active)
        );
    }
    let service_pid = manager.main_pid().expect("portd.service has a main pid");

    // The service serves on systemd's socket, with the stray's lease.
    let status = success(&manager.portctl(&["status", "--json"]), "status");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["pid"], service_pid, "{status}");
    assert_eq!(status["socket"], socket.to_str().unwrap(), "{status}");
    let ls = success(&manager.portctl(&["ls", "--json"]), "ls");
    assert!(
        ls.contains(&lease_id),
        "the lease survived the hand-over: {ls}"
    );
    // The stray's lock file stays (emptied); the service never takes it.
    let lock = fs::read_to_string(socket.with_file_name("portd.lock")).unwrap_or_default();
    assert_ne!(
        lock.trim(),
        service_pid.to_string(),
        "the activated daemon claimed the socket itself"
    );

    // Under the hardening, the owner's death still ends the lease at once.
    owner.kill9();
    let ended = wait_for(DEADLINE, || {
        let out = manager.portctl(&["ls", "--json"]);
        (!stdout(&out).contains(&lease_id)).then_some(())
    });
    assert!(
        ended.is_some(),
        "the lease outlived its owner under systemd"
    );

    // Re-running changes nothing and restarts nothing.
    let said = success(&manager.portctl(&["install"]), "second install");
    assert!(!said.contains("stopping"), "{said}");
    assert!(said.contains("unchanged:"), "{said}");
    assert_eq!(
        manager.main_pid(),
        Some(service_pid),
        "install restarted the service"
    );

    let said = success(&manager.portctl(&["uninstall"]), "uninstall");
    assert!(said.contains("removed:"), "{said}");
    let gone = ProcId::of(service_pid).is_none_or(|p| p.wait_gone(DEADLINE));
    assert!(gone, "portd.service still runs after uninstall");
    for unit in ["portd.socket", "portd.service"] {
        let active = manager.systemctl(&["is-active", unit]);
        assert_ne!(stdout(&active).trim(), "active", "{unit}");
        assert!(
            !manager.home.unit_dir().join(unit).exists(),
            "{unit} is still there"
        );
    }
}

/// With `PORTD_SOCKET` and `PORTD_DB` set, the units systemd runs serve
/// exactly there: the `portctl` that uses those settings talks to the
/// service, which keeps that database.
#[test]
fn under_a_real_user_manager_the_service_serves_the_chosen_socket_and_database() {
    let block = PortBlock::reserve();
    let home = Home::new();
    write_config(&home, &block);
    // Neither directory exists yet: systemd makes the socket's (0700),
    // portd the database's.
    let socket = home.path("sockets").join("mine").join("portd.sock");
    let db = home.path("elsewhere").join("portd.db");
    let default_socket = home.manager_socket();
    let manager = match Manager::start(home) {
        Ok(manager) => manager,
        Err(why) => return skip(&why),
    };
    let chosen = |args: &[&str]| {
        let mut cmd = manager.command(&portctl_bin(), args);
        cmd.env("PORTD_NO_AUTOSTART", "1")
            .env("PORTD_SOCKET", &socket)
            .env("PORTD_DB", &db);
        run(&mut cmd)
    };

    let said = success(&chosen(&["install"]), "install");
    assert!(
        said.contains(&format!("portd.socket listens on {}", socket.display())),
        "{said}"
    );
    let status = success(&chosen(&["status", "--json"]), "status");
    let status: Value = serde_json::from_str(&status).unwrap();
    let service_pid = manager.main_pid().expect("portd.service has a main pid");
    assert_eq!(status["pid"], service_pid, "{status}");
    assert_eq!(status["socket"], socket.to_str().unwrap(), "{status}");
    assert_eq!(status["db"], db.to_str().unwrap(), "{status}");
    assert!(db.is_file(), "no database at {}", db.display());
    let mode = fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the socket's directory");
    assert!(
        !default_socket.exists(),
        "something listens on the default socket too"
    );

    let owner = ChildGuard::sleep(600);
    let port = block.port(4).to_string();
    let pid = owner.pid().to_string();
    success(&chosen(&["lease", &port, "--owner", &pid]), "lease");
    let ls = success(&chosen(&["ls", "--json"]), "ls");
    assert!(ls.contains(&format!("\"port\":{port}")), "{ls}");

    success(&chosen(&["uninstall"]), "uninstall");
    let gone = ProcId::of(service_pid).is_none_or(|p| p.wait_gone(DEADLINE));
    assert!(gone, "portd.service still runs after uninstall");
}
