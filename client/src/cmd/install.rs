//! `portctl install`: write the systemd user units for the `portd` beside
//! this `portctl` and, when a user manager answers, enable and start them.
//! Re-running rewrites nothing that is already right.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use portd_api::procstat::read_stat;
use portd_api::routes::GetHealth;
use portd_api::{Health, paths};

use crate::connect::{ConnectError, connect};
use crate::error::ClientError;
use crate::proxy_port::{self, ProxyUnits};
use crate::transport::exchange;
use crate::units::{
    self, Placement, SERVICE_UNIT, SOCKET_UNIT, Written, manager_answers, systemctl, systemctl_line,
};

/// How long a daemon that runs outside systemd gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// What starts portd at login.
const ENABLE: [&str; 4] = ["enable", "--now", SOCKET_UNIT, SERVICE_UNIT];

#[derive(Debug, Args)]
#[command(after_help = "\
The units go to $XDG_CONFIG_HOME/systemd/user (else ~/.config/systemd/user);
portd.service runs the portd beside this portctl. With a systemd user
manager, install then runs `systemctl --user daemon-reload` and
`systemctl --user enable --now portd.socket portd.service`, first stopping a
portd that runs outside systemd on the same socket (leases survive it);
without one, it prints what to run. Running it again is harmless.

A socket chosen with --socket or PORTD_SOCKET, and a database chosen with
PORTD_DB, go into the units (ListenStream= and portd --db), so the portctl
that uses them reaches the daemon systemd starts. portd.socket also binds
the .localhost proxy's port on 127.0.0.1 and ::1: PORTD_PROXY_PORT (carried
into portd --proxy-port), else proxy_port in the config file, else 7355;
none when it is 0, or when another program holds the port.")]
pub struct InstallArgs {
    /// Print the unit files (each after a `==> PATH <==` line); write nothing
    #[arg(long)]
    pub print: bool,
    /// Write the units and reload, but neither enable nor start them
    #[arg(long)]
    pub no_enable: bool,
}

pub fn run(args: InstallArgs, socket: Option<&Path>) -> Result<(), ClientError> {
    let dir = units::user_unit_dir()?;
    let portd = units::portd_path()?;
    let mut placement = Placement::from_env(socket);
    placement.proxy = proxy_units(&portd, placement.socket.as_deref())?;
    let files = units::render(&dir, &portd, &placement)?;
    if args.print {
        return super::write_stdout(units::print_listing(&files).as_bytes());
    }
    if let Some(socket) = &placement.socket {
        println!("portd.socket listens on {}", socket.display());
    }
    if let Some(db) = &placement.db {
        println!("portd.service keeps its database in {}", db.display());
    }
    let mut updated = false;
    for unit in &files {
        let written = units::write_unit(unit)?;
        updated |= written == Written::Updated;
        println!("{}: {}", describe(written), unit.path.display());
    }

    let reload = ["daemon-reload"];
    if !manager_answers() {
        println!("No systemd user manager answers; once one does, run:");
        println!("  {}", systemctl_line(&reload));
        if !args.no_enable {
            println!("  {}", systemctl_line(&ENABLE));
        }
        return Ok(());
    }
    systemctl(&reload)?;
    if args.no_enable {
        println!("Not enabled; to start portd at login, run:");
        println!("  {}", systemctl_line(&ENABLE));
        return Ok(());
    }
    stop_daemon_outside_systemd(placement.socket.as_deref())?;
    systemctl(&ENABLE)?;
    if updated {
        // A running service keeps the binary it started with.
        systemctl(&["try-restart", SERVICE_UNIT])?;
    }
    println!("portd.socket and portd.service are enabled: portd starts at login.");
    Ok(())
}

/// The proxy's part of the units: its port portd.socket binds, unless the
/// proxy is off or another program holds the port (then portd binds it
/// itself and says why it cannot); `--proxy-port` when the port came from
/// `PORTD_PROXY_PORT`, which systemd's portd would not see.
fn proxy_units(portd: &Path, chosen: Option<&Path>) -> Result<ProxyUnits, ClientError> {
    let (port, from_env) = proxy_port::chosen(portd)?;
    let flag = from_env.then_some(port);
    let socket = paths::socket_path(chosen, nix::unistd::geteuid().as_raw());
    if port != 0 && proxy_port::held_by_another(port, &socket) {
        eprintln!(
            "portctl: 127.0.0.1:{port}, the proxy's port, is held by another program: \
             portd.socket leaves the proxy out, and portd will say why it cannot serve it \
             (portctl status); to give the proxy another port, run \
             PORTD_PROXY_PORT=N portctl install, or set proxy_port in config.toml"
        );
        return Ok(ProxyUnits {
            sockets: None,
            flag,
        });
    }
    Ok(ProxyUnits {
        sockets: (port != 0).then_some(port),
        flag,
    })
}

fn describe(written: Written) -> &'static str {
    match written {
        Written::Created => "wrote",
        Written::Updated => "updated",
        Written::Unchanged => "unchanged",
    }
}

/// A daemon that `portctl` autostarted on the socket the unit is about to
/// bind (`chosen`, else `%t/portd/portd.sock`) would keep serving the same
/// database beside systemd's, and remove systemd's socket file when it
/// exits: stop it first (SIGTERM; leases live in the database and survive).
/// The service's main process, or one in its cgroup, is systemd's own and
/// stays.
fn stop_daemon_outside_systemd(chosen: Option<&Path>) -> Result<(), ClientError> {
    let socket = match chosen {
        Some(socket) => socket.to_path_buf(),
        None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(runtime) => Path::new(&runtime).join("portd").join("portd.sock"),
            None => return Ok(()),
        },
    };
    let stream = match connect(&socket) {
        Ok(stream) => stream,
        Err(ConnectError::Absent) => return Ok(()),
        Err(ConnectError::Untrusted(why)) => return Err(ClientError::Unreachable(why)),
        Err(ConnectError::Config(why)) => return Err(ClientError::Config(why)),
        Err(ConnectError::Io(e)) => {
            return Err(ClientError::Other(format!("{}: {e}", socket.display())));
        }
    };
    let Some(pid) = exchange(stream, &GetHealth)
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_slice::<Health>(&r.body).ok())
        .map(|h| h.pid)
    else {
        return Ok(());
    };
    if units::service_main_pid() == Some(pid) {
        return Ok(());
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if units::in_service_cgroup(&cgroup) {
        return Ok(());
    }
    println!(
        "stopping portd (pid {pid}), which runs outside systemd on {}",
        socket.display()
    );
    let start_ticks = read_stat(pid).map(|s| s.start_ticks).ok();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| ClientError::Other(format!("cannot stop portd (pid {pid}): {e}")))?;
    let gone = || {
        read_stat(pid).map_or(true, |s| {
            !s.is_running() || Some(s.start_ticks) != start_ticks
        })
    };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !gone() {
        if Instant::now() >= deadline {
            return Err(ClientError::Other(format!(
                "portd (pid {pid}) still runs {} s after SIGTERM; stop it, then run `{}`",
                STOP_TIMEOUT.as_secs(),
                systemctl_line(&ENABLE)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
