//! portd: a per-user daemon that leases local TCP ports to dev processes.
//!
//! A request arrives on the Unix socket (`http::server`), is routed
//! (`http`), and is decided by `leases` on its in-memory lease table: the
//! port choice (`grant`, applied to the table by `leases::decide`), owner
//! checks (`owner`), probe binds (`probe`) and what `/proc` says (`procs`);
//! the change is committed by the store's group-commit writer (`store`)
//! before the answer. Owner deaths arrive through pidfds (`watch`); the
//! orphans of ended leases are reaped by `reaper`; periodic chores live in
//! `maintain`. Beside the API, `proxy` serves every named lease at
//! `http://NAME.LABEL.localhost:PORT/` on loopback TCP. `main` only parses
//! flags, claims the socket (`socket`) and calls [`serve_with`].
//!
//! Every import points down these layers, never up or sideways (checked
//! by `tests/layers.rs`):
//!
//! ```text
//! main -> lib -> http, maintain, proxy -> leases -> reaper, watch, grant
//!      -> owner, probe -> procs, store, peer
//! ```
//!
//! and any of them may use the leaf modules `lease` (the typed records),
//! `time`, `config`, `task`, `lockfile`, `socket` and `pidfd`.

pub mod config;
pub mod grant;
pub mod http;
pub mod lease;
pub mod leases;
pub mod lockfile;
pub mod maintain;
pub mod owner;
pub mod peer;
pub mod pidfd;
pub mod probe;
pub mod procs;
pub mod proxy;
pub mod reaper;
pub mod socket;
pub mod store;
pub mod task;
pub mod time;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use proxy::ProxySockets;

use crate::http::{AppParts, AppState, Daemon};
use crate::leases::{Leases, Startup};
use crate::maintain::Chores;
use crate::proxy::Proxy;
use crate::reaper::Reaper;
use crate::store::{Store, StoreError};
use crate::task::Units;
use crate::watch::Watcher;

/// How long a stop waits for kills and reaps under way: the longest grace,
/// the wait after SIGKILL, and time to record.
const UNITS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {0}: {1}")]
    Proc(&'static str, std::io::Error),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
}

/// Runs the daemon on `listener` until `shutdown` is cancelled: opens the
/// store, answers at once, reconciles in the background. The proxy binds
/// `config.proxy_port` itself.
pub async fn serve(
    config: Config,
    listener: std::os::unix::net::UnixListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with(config, listener, ProxySockets::Bind, shutdown).await
}

/// [`serve`], with the proxy's sockets from `proxy` (systemd may have
/// bound them).
pub async fn serve_with(
    config: Config,
    listener: std::os::unix::net::UnixListener,
    proxy: ProxySockets,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    watch::raise_fd_limit();
    let boot_id =
        procs::boot_id().map_err(|e| ServeError::Proc("/proc/sys/kernel/random/boot_id", e))?;
    let boot_time = procs::boot_time().map_err(|e| ServeError::Proc("/proc/stat", e))?;
    let store = Store::open(&config.db).await?;
    warn_if_ephemeral_overlap(&config);

    listener.set_nonblocking(true).map_err(ServeError::Listen)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(ServeError::Listen)?;

    let (proxy_listeners, proxy_status) = proxy::open(config.proxy_port, proxy);
    // Pidfds get what the connections (the API's and the proxy's) and the
    // reserve leave of the limit.
    let proxy_fds = match proxy_listeners.is_empty() {
        true => 0,
        false => proxy::max_descriptors(),
    };
    let pidfds = watch::pidfd_budget(http::server::max_connections() + proxy_fds);
    let (watcher, deaths) = Watcher::new(pidfds);
    let units = Units::default();
    let reaper = Arc::new(Reaper::new(
        store.clone(),
        config.grace,
        boot_id.clone(),
        units.clone(),
    ));
    let leases = Leases::load(
        store.clone(),
        Arc::clone(&reaper),
        Arc::clone(&watcher),
        config.range,
        boot_id,
        boot_time,
    );
    let leases = Arc::new(leases.await?.with_name_ranges(config.name_ranges.clone()));
    let startup = Arc::new(Startup::new());
    let daemon = Arc::new(Daemon {
        started: Instant::now(),
        started_at_ms: time::now_ms(),
        config,
        proxy: proxy_status,
    });
    tracing::info!(
        socket = %daemon.config.socket.display(),
        db = %daemon.config.db.display(),
        range = %daemon.config.range,
        "portd {} serving", portd_api::VERSION
    );

    let deaths_task = tokio::spawn(maintain::on_owner_death(
        Arc::clone(&leases),
        deaths,
        shutdown.clone(),
    ));
    let chores = Chores {
        leases: Arc::clone(&leases),
        startup: Arc::clone(&startup),
        poll_interval: daemon.config.poll_interval,
        retention: daemon.config.retention,
        started_at_ms: daemon.started_at_ms,
    };
    let chores = tokio::spawn(maintain::run(chores, shutdown.clone()));
    let proxy_stopped = proxy::spawn(
        proxy_listeners,
        Arc::new(Proxy::new(Arc::clone(&leases))),
        shutdown.clone(),
    )
    .map_err(ServeError::Listen)?;
    let state = AppState::new(AppParts {
        leases,
        reaper,
        store: store.clone(),
        watcher: Arc::clone(&watcher),
        startup,
        units: units.clone(),
        daemon,
        shutdown: shutdown.clone(),
    });
    http::server::serve_connections(listener, http::router(state), shutdown).await;

    proxy_stopped.wait().await;
    for (what, task) in [("chores", chores), ("owner deaths", deaths_task)] {
        if let Err(e) = task.await {
            tracing::error!(task = what, error = %e, "a background task failed");
        }
    }
    // Kills and reaps under way (a grace may outlast the connections'
    // drain) finish and are recorded before the database closes.
    if units.running() > 0 {
        tracing::info!(
            units = units.running(),
            "finishing kills and reaps under way"
        );
        if !units.finish(UNITS_TIMEOUT).await {
            tracing::error!(
                "kills or reaps still running after {UNITS_TIMEOUT:?}; stopping anyway"
            );
        }
    }
    watcher.stop_all();
    // Readers first, so that the writer's final checkpoint can empty the
    // WAL; the last connection to close removes it if it may write.
    store.close().await;
    tracing::info!("portd stopped");
    Ok(())
}

/// Ports in the kernel's ephemeral range may be taken by any outgoing
/// connection at any moment; leasing them invites surprises.
fn warn_if_ephemeral_overlap(config: &Config) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut bounds = text
        .split_ascii_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (bounds.next(), bounds.next())
        && let Some(ephemeral) = portd_api::PortRange::new(lo, hi)
        && ephemeral.overlaps(&config.range)
    {
        tracing::warn!(
            range = %config.range,
            ephemeral = %ephemeral,
            "the lease range overlaps the kernel's ephemeral port range"
        );
    }
}
