//! `portd`: flags, logging, signals, then [`portd::serve`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portd::config::{
    Setting, Settings, Source, apply_file, config_path, parse_grace, parse_proxy_port,
};
use portd::{Config, socket};
use portd_api::{PROXY_PORT_ENV, PortRange, paths};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the proxy allocates and frees a few
/// small buffers per request on each of its threads (docs/DECISIONS.md,
/// "Proxy").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    ///
    /// Its directory must be yours and mode 0700. A stale socket at the path
    /// is replaced; anything else there is refused and left alone.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// SQLite database [env: PORTD_DB; default: $XDG_STATE_HOME/portd/portd.db,
    /// else ~/.local/state/portd/portd.db]
    ///
    /// Its directory must be yours and not writable by group or others
    /// (portd creates it 0700); the database, its lock and WAL are yours and
    /// 0600.
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,

    /// Ports handed out when a request names none [default: 8000-8999]; also
    /// turns off the default ranges by name (web, frontend, ui: 3000-3999)
    #[arg(long, value_name = "A-B", value_parser = parse_range)]
    range: Option<PortRange>,

    /// Time reaped processes get between SIGTERM and SIGKILL (5, 5s, 500ms;
    /// at most 50s) [default: 5s]
    #[arg(long, value_name = "DUR", value_parser = parse_grace)]
    grace: Option<Duration>,

    /// Port of the `.localhost` proxy on 127.0.0.1 and ::1; 0 turns it off
    /// [env: PORTD_PROXY_PORT; default: 7355]
    ///
    /// Every named lease is reachable at http://NAME.LABEL.localhost:PORT/.
    /// If the port cannot be bound, portd still serves leases, and `portctl
    /// status` says why the proxy is off.
    #[arg(long, value_name = "PORT", value_parser = parse_proxy_port)]
    proxy_port: Option<u16>,

    /// Config file [default: $XDG_CONFIG_HOME/portd/config.toml, else
    /// ~/.config/portd/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Print the effective configuration and where each value came from, then exit
    #[arg(long)]
    print_config: bool,

    /// More logging (-v debug, -vv trace); RUST_LOG overrides both
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_range(text: &str) -> Result<PortRange, String> {
    text.parse()
}

fn main() -> ExitCode {
    // Whatever the caller's umask, nothing the daemon creates is open to
    // others (the socket between its bind and its chmod included).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let args = Args::parse();
    let uid = nix::unistd::geteuid().as_raw();
    let mut settings = Settings::default();
    if let Some((path, required)) = config_path(args.config.as_deref())
        && let Err(e) = apply_file(&mut settings, &path, required)
    {
        return fail(&e.to_string());
    }
    settings.range.set(args.range, Source::Flag);
    settings.grace.set(args.grace, Source::Flag);
    match std::env::var(PROXY_PORT_ENV) {
        Ok(text) if !text.is_empty() => match parse_proxy_port(&text) {
            Ok(port) => settings
                .proxy_port
                .set(Some(port), Source::Env(PROXY_PORT_ENV)),
            Err(e) => return fail(&format!("{PROXY_PORT_ENV}: {e}")),
        },
        _ => {}
    }
    settings.proxy_port.set(args.proxy_port, Source::Flag);
    let socket = resolved(args.socket.clone(), paths::SOCKET_ENV, || {
        Ok(paths::socket_path(None, uid))
    });
    let db = resolved(args.db.clone(), paths::DB_ENV, || paths::db_path(None));
    let (socket, db) = match (socket, db) {
        (Ok(socket), Ok(db)) => (socket, db),
        (Err(e), _) | (_, Err(e)) => return fail(&e),
    };
    if args.print_config {
        print!("{}", settings.render(&socket, &db));
        return ExitCode::SUCCESS;
    }
    init_logging(args.verbose, &settings.log_level.value);

    let socket_path = socket.value;
    let mut config = Config::new(socket_path.clone(), db.value);
    config.range = settings.range.value;
    config.name_ranges = settings.effective_name_ranges();
    config.grace = settings.grace.value;
    config.retention = settings.event_retention.value;
    config.proxy_port = settings.proxy_port.value;

    // Socket activation first; otherwise claim the path ourselves.
    let mut proxy_sockets = None;
    let (listener, claimed) = match socket::activated() {
        Err(e) => return fail(&e.to_string()),
        Ok(Some(socket::Activated { listener, proxy })) => {
            // systemd holds the proxy's port too when portd.socket lists it.
            if !proxy.is_empty() {
                proxy_sockets = Some(proxy);
            }
            // Report the socket systemd bound, not the one we would have.
            if let Some(path) = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Into::into))
            {
                config.socket = path;
            }
            (listener, None)
        }
        Ok(None) => match socket::claim(&socket_path) {
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
        // Installed before the daemon answers anything, so that no signal
        // that arrives once it serves meets the default action.
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => return Err(format!("cannot install signal handlers: {e}")),
        };
        tokio::spawn(signals.handle(shutdown.clone()));
        let proxy = match proxy_sockets {
            Some(sockets) => portd::ProxySockets::Passed(sockets),
            None => portd::ProxySockets::Bind,
        };
        portd::serve_with(config, listener, proxy, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    if let Some(claimed) = claimed {
        claimed.remove();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portd: {message}");
    ExitCode::FAILURE
}

/// A path from its flag, else its environment variable, else `fallback`.
fn resolved(
    flag: Option<PathBuf>,
    env: &'static str,
    fallback: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<Setting<PathBuf>, String> {
    if let Some(path) = flag {
        return Ok(Setting {
            value: path,
            source: Source::Flag,
        });
    }
    if let Some(path) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Ok(Setting {
            value: PathBuf::from(path),
            source: Source::Env(env),
        });
    }
    fallback().map(Setting::default)
}

/// RUST_LOG wins, then -v, then the config file's log_level.
fn init_logging(verbose: u8, configured: &str) {
    let level = match verbose {
        0 => configured,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The signals the daemon acts on.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// SIGTERM and SIGINT stop the daemon. SIGHUP (a closed terminal, or
    /// `kill -HUP` from habit) is logged and ignored: a daemon that dies of
    /// it would end every lease's watch without a word, and the config file
    /// is read only at start.
    async fn handle(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = self.hup.recv() => tracing::warn!(
                    "SIGHUP ignored: portd keeps serving; restart it to read a changed config file"
                ),
            }
        }
        shutdown.cancel();
    }
}
