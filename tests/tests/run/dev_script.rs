//! `examples/dev.sh` end to end: a backend and a front end started under
//! `portctl run` in a project, the front end told the backend's port, and
//! Ctrl-C stopping both and freeing both ports: as SIGINT sent to the
//! script, and as Ctrl-C typed in the terminal of an interactive shell.

use std::net::TcpStream;

use nix::sys::signal::Signal;
use portd_e2e::cli::script_path;
use portd_e2e::portctl_bin;
use portd_e2e::pty::Terminal;

use super::*;

/// The example as shipped.
fn dev_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("dev.sh")
}

/// A daemon and a project to run `dev.sh` in.
struct Setup {
    _block: PortBlock,
    d: TestDaemon,
    scratch: Scratch,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let (block, d, scratch, dir) = setup();
        Setup {
            _block: block,
            d,
            scratch,
            dir,
        }
    }

    /// Where the web stand-in writes the environment it got.
    fn web_env(&self) -> PathBuf {
        self.scratch.path("web.env")
    }

    /// `cmd` (dev.sh, or a shell that will run it) in the project, with the
    /// script's settings: this build's `portctl`, this test's daemon, the
    /// default api stand-in, and a web stand-in that first writes down its
    /// environment.
    fn environment<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        let web_cmd = format!(
            "env > '{env}.tmp' && mv '{env}.tmp' '{env}' && exec python3 -m http.server --bind 127.0.0.1 {{port}}",
            env = self.web_env().display()
        );
        cli::scrub(cmd)
            .current_dir(&self.dir)
            .env("PATH", script_path())
            .env("PORTCTL", portctl_bin())
            .env("PORTD_SOCKET", self.d.socket())
            .env("PORTD_NO_AUTOSTART", "1")
            .env_remove("API_CMD")
            .env("WEB_CMD", web_cmd)
    }

    /// The names of the project that have an active lease: name -> lease id.
    fn active_names(&self) -> Vec<(String, String)> {
        let answer = self
            .d
            .get(&format!("/v1/names?project={}", self.dir.display()));
        assert_eq!(answer.status, 200, "GET /v1/names: {}", answer.body);
        answer.json()["names"]
            .as_array()
            .expect("a list of names")
            .iter()
            .filter_map(|n| {
                Some((
                    n["name"].as_str()?.to_string(),
                    n["lease_id"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Waits until api and web both serve, checks that web was told api's
    /// port, and returns them. `running` says whether the script still
    /// runs; `output` what it printed.
    #[track_caller]
    fn wait_serving(
        &self,
        mut running: impl FnMut() -> bool,
        output: impl Fn() -> String,
    ) -> Services {
        let d = &self.d;
        let names = wait_for(DEADLINE, || {
            assert!(running(), "dev.sh exited; {}", output());
            let names = self.active_names();
            (names.len() == 2).then_some(names)
        })
        .unwrap_or_else(|| panic!("api and web not both leased; {}", output()));
        let lease_of = |name: &str| {
            let id = &names.iter().find(|(n, _)| n == name).expect("the name").1;
            d.lease_by_id(id)
                .unwrap_or_else(|| panic!("lease {id} is not in ?all=true"))
        };
        let leases = [lease_of("api"), lease_of("web")];
        let ports = [port_of(&leases[0]), port_of(&leases[1])];

        // Every process behind them known (and killed if the test fails)...
        let mut strays = Strays::default();
        for lease in &leases {
            strays.adopt_pid(lease["owner"]["pid"].as_u64().expect("a pid") as u32);
        }
        let mut servers = Vec::new();
        for port in ports {
            let holder = wait_for(DEADLINE, || {
                let answer = d.get(&format!("/v1/ports/{port}")).json();
                answer["holders"].as_array()?.first()?["pid"].as_u64()
            })
            .unwrap_or_else(|| panic!("nothing listens on {port}; {}", output()));
            servers.push(strays.adopt_pid(holder as u32));
        }
        // ...and both serving.
        for port in ports {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_ok(),
                "{port} does not accept connections"
            );
        }

        let env = fs::read_to_string(self.web_env()).expect("web wrote its environment");
        let vars: Vec<&str> = env.lines().collect();
        let api_url = format!("API_URL=http://localhost:{}", ports[0]);
        assert!(
            vars.contains(&api_url.as_str()),
            "web got API_URL with the api's port {}: {env}",
            ports[0]
        );
        assert!(
            vars.contains(&format!("PORT={}", ports[1]).as_str()),
            "{env}"
        );
        Services {
            leases,
            ports,
            servers,
            _strays: strays,
        }
    }
}

/// api and web as [`Setup::wait_serving`] found them.
struct Services {
    leases: [Value; 2],
    ports: [u16; 2],
    servers: Vec<ProcId>,
    _strays: Strays,
}

impl Services {
    /// Both servers gone, both leases released, both ports free.
    #[track_caller]
    fn assert_stopped(&self, d: &TestDaemon) {
        for server in &self.servers {
            assert!(
                server.wait_gone(DEADLINE),
                "server {} still runs after Ctrl-C",
                server.pid
            );
        }
        for lease in &self.leases {
            assert_released(d, lease["id"].as_str().expect("an id"));
        }
        for port in self.ports {
            assert_port_free("127.0.0.1", port);
        }
        assert_no_active_lease(d);
    }
}

#[test]
fn dev_sh_runs_api_and_web_and_sigint_stops_both_and_frees_their_ports() {
    let s = Setup::new();
    let (log, err) = (s.scratch.path("dev.log"), s.scratch.path("dev.err"));
    let mut cmd = Command::new("bash");
    s.environment(&mut cmd)
        .arg(dev_sh())
        .stdout(fs::File::create(&log).expect("create the script's log"))
        .stderr(fs::File::create(&err).expect("create the script's log"));
    let mut script = ChildGuard::spawn(&mut cmd);
    let output = || {
        format!(
            "stdout: {:?}\nstderr: {:?}",
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(&err).unwrap_or_default()
        )
    };
    let services = s.wait_serving(|| script.is_running(), output);

    script.signal(Signal::SIGINT);
    let status = script
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("dev.sh still runs after SIGINT; {}", output()));
    assert_eq!(status.code(), Some(130), "{status}; {}", output());
    services.assert_stopped(&s.d);
}

/// As a user runs it: typed into an interactive shell, stopped with Ctrl-C
/// on the keyboard (SIGINT to the whole foreground job, not only the
/// script).
#[test]
fn dev_sh_in_a_terminal_stops_on_ctrl_c() {
    let s = Setup::new();
    let mut cmd = Command::new("bash");
    s.environment(&mut cmd)
        .args(["--norc", "--noprofile", "-i"])
        .env("TERM", "dumb")
        .env("PS1", "$ ")
        .env("HISTFILE", "");
    let mut term = Terminal::spawn(&mut cmd);
    term.send(&format!(
        "bash {}; echo \"dev.sh exited $?\"\n",
        dev_sh().display()
    ));
    assert!(
        term.wait_output("dev.sh: api on", DEADLINE),
        "dev.sh did not start the api; terminal: {:?}",
        term.output()
    );
    let services = s.wait_serving(|| true, || format!("terminal: {:?}", term.output()));

    term.send("\x03");
    assert!(
        term.wait_output("dev.sh exited 130", DEADLINE),
        "dev.sh did not stop on Ctrl-C; terminal: {:?}",
        term.output()
    );
    services.assert_stopped(&s.d);
}
