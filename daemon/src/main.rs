//! `portd`: flags, logging, signals, then [`portd::serve`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portd::{Config, socket};
use portd_api::{PortRange, parse_duration, paths};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Per-user daemon that leases local TCP ports to dev processes and ends
/// each lease when its owner dies.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = "\
Usually started for you: by `portctl` on first use, or by the systemd user
units. Clients talk to it with `portctl` or over HTTP on the socket:

  curl --unix-socket \"$XDG_RUNTIME_DIR/portd/portd.sock\" http://portd/v1/leases")]
struct Args {
    /// Unix socket to serve on [env: PORTD_SOCKET; default:
    /// $XDG_RUNTIME_DIR/portd/portd.sock, else /tmp/portd-$UID/portd.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// SQLite database [env: PORTD_DB; default: $XDG_STATE_HOME/portd/portd.db,
    /// else ~/.local/state/portd/portd.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,

    /// Ports handed out when a request names none
    #[arg(long, value_name = "A-B", default_value = "8000-8999", value_parser = clap::value_parser!(PortRangeArg))]
    range: PortRangeArg,

    /// Time reaped processes get between SIGTERM and SIGKILL (60, 60s, 5m)
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    grace: Duration,

    /// More logging (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy)]
struct PortRangeArg(PortRange);

impl std::str::FromStr for PortRangeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(PortRangeArg)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.verbose);
    let uid = nix::unistd::geteuid().as_raw();
    let socket_path = paths::socket_path(args.socket.as_deref(), uid);
    let db = match paths::db_path(args.db.as_deref()) {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let mut config = Config::new(socket_path.clone(), db);
    config.range = args.range.0;
    config.grace = args.grace;

    // Socket activation first; otherwise claim the path ourselves.
    let (listener, claimed) = match socket::activated() {
        Some(listener) => (listener, None),
        None => match socket::claim(&socket_path) {
            Ok(claimed) => match claimed.listener.try_clone() {
                Ok(listener) => (listener, Some(claimed)),
                Err(e) => return fail(&format!("{}: {e}", socket_path.display())),
            },
            Err(e) => return fail(&e.to_string()),
        },
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        tokio::spawn(stop_on_signal(shutdown.clone()));
        portd::serve(config, listener, shutdown).await
    });
    if let Some(claimed) = claimed {
        claimed.remove();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portd: {message}");
    ExitCode::FAILURE
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "portd=info,warn",
        1 => "portd=debug,info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
