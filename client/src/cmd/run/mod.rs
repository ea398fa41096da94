//! `portctl run`: lease a port, start a command with it, release it when the
//! command and what it started have stopped serving.
//!
//! The command runs in its own process group (`child`), made the terminal's
//! foreground group when stdin is a terminal (and the terminal is given back
//! after), so an interactive dev server keeps its keyboard. `run` registers
//! the command with its lease, so that the group's members belong to the
//! lease even without the tag; it owns the lease, so if `run` is SIGKILLed
//! the lease ends and the daemon reaps the group and every tagged process
//! as orphans. SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the
//! group; `run` exits with the command's code or re-raises its signal.
//! `supervise` waits, and `ports` notices a command that ignores its port.

mod child;
mod ports;
mod supervise;

pub use child::{LISTEN_FD_SHIM, listen_fd_shim};

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use clap::Args;
use nix::unistd::Pid;
use portd_api::query::ReleaseQuery;
use portd_api::routes::{CreateLease, RegisterCommand, ReleaseLease};
use portd_api::{CommandRequest, Lease, LeaseRequest};

use self::child::{Spec, Started, spawn};
use self::supervise::{become_subreaper, finish, supervise};
use super::args::PortChoice;
use super::lease::owner_ref;
use super::passed_over;
use super::placeholders::{Names, expand};
use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  portctl run --name api -- uvicorn app:app --port {port}
  portctl run --name web --env VITE_API_URL={url@api} -- npm run dev -- --port {port}
  portctl run --name web --env API_URL=http://localhost:{port@api} -- npm start
  portctl run --port 8000 --listen-fd -- uvicorn app:app --fd 3

{port} in the command and in --env values becomes the leased port,
{port@NAME} the port of NAME in the same project, and {url@NAME} NAME's
URL through portd's proxy (http://NAME.PROJECT.localhost:7355/, for
browsers); other {...} text is left as it is. The command gets PORT and PORTD_LEASE in its environment, and if
it listens on other ports but not on the leased one, run says so.

The lease lasts while the command runs, and after it while processes it
started still listen on the port (a server it put in the background, a
reloader's worker); Ctrl-C stops them. If portctl itself is killed with
SIGKILL, the lease ends with it and portd reaps the command's process
group and everything carrying its tag.")]
pub struct RunArgs {
    /// The port to lease: exactly this one unless --next
    #[arg(long, value_parser = super::port_arg, value_name = "PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub choice: PortChoice,
    /// Extra environment for the command (placeholders expand)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub envs: Vec<(String, String)>,
    /// Bind the port here and pass the listening socket as fd 3 (LISTEN_FDS)
    #[arg(long)]
    pub listen_fd: bool,
    /// Address --listen-fd binds
    #[arg(
        long,
        value_name = "IP",
        default_value = "127.0.0.1",
        requires = "listen_fd"
    )]
    pub listen_addr: IpAddr,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!("invalid --env '{text}': expected KEY=VALUE")),
    }
}

pub fn run(client: &Client, args: RunArgs) -> Result<(), ClientError> {
    let create = CreateLease(LeaseRequest {
        owner: Some(owner_ref(std::process::id())?),
        ..args.choice.request(args.port)?
    });
    let (lease, _) = client.fetch(&create)?;
    passed_over::note(&lease);
    let project = create.0.project.as_deref().unwrap_or_default();
    become_subreaper();
    match start(client, &args, &lease, project) {
        Ok(child) => {
            register(client, &lease, child.pid);
            let status = supervise(child, client, &lease);
            release(client, &lease);
            finish(status)
        }
        Err(e) => {
            release(client, &lease);
            Err(e)
        }
    }
}

/// Ends the lease; the daemon then reaps what of it still listens. A lease
/// that already ended (released by hand, reaped) needs no word.
fn release(client: &Client, lease: &Lease) {
    let release = ReleaseLease {
        port: lease.port,
        query: ReleaseQuery {
            id: Some(lease.id.clone()),
            keep: false,
        },
    };
    match client.call(&release) {
        Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
        Err(e) => eprintln!("portctl: could not release port {}: {e}", lease.port),
    }
}

/// Tells the daemon which process is the lease's command, so that its
/// process group belongs to the lease even where the tag does not reach.
fn register(client: &Client, lease: &Lease, pid: Pid) {
    let Ok(command) = owner_ref(pid.as_raw() as u32) else {
        return; // already gone: nothing of it to find
    };
    let register = RegisterCommand {
        port: lease.port,
        request: CommandRequest {
            id: lease.id.clone(),
            pid: command.pid,
            start_time: command.start_time,
        },
    };
    match client.call(&register) {
        // 422: the command exited (or exec'd away) before it was registered.
        Ok(_) | Err(ClientError::Api { status: 422, .. }) => {}
        Err(e) => eprintln!(
            "portctl: warning: cannot register the command with its lease ({e}); if portctl is killed, only processes carrying PORTD_LEASE are reaped"
        ),
    }
}

/// Expands the command line and environment, binds the port for
/// `--listen-fd`, and starts the command.
fn start(
    client: &Client,
    args: &RunArgs,
    lease: &Lease,
    project: &str,
) -> Result<Started, ClientError> {
    let mut names = Names::new(client, project);
    let mut lookup = |wanted, name: &str| names.lookup(wanted, name);
    let mut command_line = Vec::with_capacity(args.command.len());
    for arg in &args.command {
        command_line.push(match arg.to_str() {
            Some(text) => OsString::from(expand(text, lease.port, &mut lookup)?),
            None => arg.clone(),
        });
    }
    let mut envs = Vec::with_capacity(args.envs.len());
    for (key, value) in &args.envs {
        envs.push((key.clone(), expand(value, lease.port, &mut lookup)?));
    }
    let listener = if args.listen_fd {
        let addr = SocketAddr::new(args.listen_addr, lease.port);
        Some(TcpListener::bind(addr).map_err(|e| bind_error(addr, &e))?)
    } else {
        None
    };
    spawn(Spec {
        command_line,
        envs,
        lease,
        listener,
    })
}

/// `--listen-fd` could not bind: exit 3 when something else has the port.
fn bind_error(addr: SocketAddr, error: &io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::AddrInUse => ClientError::Taken(format!(
            "cannot bind {addr}: address in use (by something without a lease; `portctl who {}` shows it)",
            addr.port()
        )),
        io::ErrorKind::PermissionDenied => {
            ClientError::Usage(format!("cannot bind {addr}: permission denied"))
        }
        _ => ClientError::Other(format!("cannot bind {addr}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_need_a_key() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn a_listen_fd_bind_on_a_taken_port_says_so_and_exits_3() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let error = TcpListener::bind(addr).expect_err("the port is taken");
        let failure = bind_error(addr, &error);
        assert_eq!(failure.exit_code(), 3);
        assert!(
            failure
                .to_string()
                .starts_with(&format!("cannot bind {addr}: address in use")),
            "{failure}"
        );
    }
}
