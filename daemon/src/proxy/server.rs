//! The proxy's threads and accept loops: one hyper HTTP/1.1 connection per
//! client, with keep-alive and upgrades, at most [`max_connections`] at
//! once (an eighth of the open-file limit, 32 to 1,024). A client that does not send a whole request head within
//! [`HEADER_READ_TIMEOUT`] (of connecting, or of its last answer: also the
//! idle keep-alive limit) is closed. On shutdown each connection finishes
//! the request it is on, for at most [`DRAIN_TIMEOUT`].
//!
//! The proxy runs on threads of its own (one per core, at most
//! [`MAX_THREADS`]), each with a single-threaded runtime and its own pool
//! of connections to servers; the accept loop hands each new client to the
//! next thread in turn. A request wakes the client's connection, the
//! server's and the pool in turn, and on one thread those wake-ups cost no
//! futex and no context switch: on the daemon's shared two-thread runtime
//! they were a quarter of the proxy's CPU time (docs/DECISIONS.md,
//! "Proxy"). It also keeps a busy proxy from slowing the lease API, and the
//! other way round.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::forward::{Origin, Upstream};
use super::pool::IDLE_FOR;
use super::route::Proxy;
use crate::socket::accept_failed;

/// Fewest and most client connections served at once; between the two, an
/// eighth of the open-file limit. More wait in the backlog. Each may hold a
/// connection to a server too, and WebSockets hold theirs for long.
const MIN_CONNECTIONS: u64 = 32;
const MAX_CONNECTIONS: u64 = 1024;
/// Most threads the proxy runs on.
const MAX_THREADS: usize = 4;
/// A request's head must arrive within this time of the connection or of
/// the previous answer.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping daemon lets a request under way finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The client connections the proxy serves at once under this process's
/// open-file limit (read after the daemon raised it).
pub fn max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let nofile = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from((nofile / 8).clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)).unwrap_or(1024)
}

/// Descriptors the proxy may hold: a client connection and a server
/// connection each, and as many idle server connections in the pools.
pub fn max_descriptors() -> usize {
    3 * max_connections()
}

/// One proxy thread: where its connections run, and its pool.
#[derive(Clone)]
struct Worker {
    runtime: Handle,
    upstream: Upstream,
    open: Arc<Open>,
}

/// How many connections a worker serves, to wait for at shutdown.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    none: Notify,
}

/// Serves the proxy on every listener, on threads of its own, until
/// `shutdown` is cancelled.
pub fn spawn(
    listeners: Vec<std::net::TcpListener>,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) -> std::io::Result<Stopped> {
    // Each thread holds a sender until it ends; the receiver then hears
    // that every sender is gone.
    let (running, stopped) = mpsc::channel::<()>(1);
    if listeners.is_empty() {
        return Ok(Stopped(stopped));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let worker = Worker {
            runtime: runtime.handle().clone(),
            upstream: Upstream::default(),
            open: Arc::default(),
        };
        let (open, shutdown) = (Arc::clone(&worker.open), shutdown.clone());
        let upstream = worker.upstream.clone();
        runtime.spawn(async move {
            let mut every = tokio::time::interval(IDLE_FOR);
            loop {
                every.tick().await;
                upstream.sweep();
            }
        });
        workers.push(worker);
        let running = running.clone();
        std::thread::Builder::new()
            .name(format!("portd-proxy-{index}"))
            .spawn(move || {
                runtime.block_on(async {
                    shutdown.cancelled().await;
                    drain(&open).await;
                });
                // Upgraded connections still open end with the runtime.
                drop(runtime);
                drop(running);
            })?;
    }
    let workers = Arc::new(workers);
    let slots = Arc::new(Semaphore::new(max_connections()));
    for listener in listeners {
        workers[0].runtime.spawn(accept(
            listener,
            Arc::clone(&proxy),
            Arc::clone(&workers),
            Arc::clone(&slots),
            shutdown.clone(),
        ));
    }
    Ok(Stopped(stopped))
}

/// Says when every proxy thread has stopped.
pub struct Stopped(mpsc::Receiver<()>);

impl Stopped {
    /// Returns once every proxy thread has ended.
    pub async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

/// Waits until the worker's connections have ended, or the drain timeout
/// (and a little) has passed.
async fn drain(open: &Open) {
    let waited = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_millis(500), async {
        while open.count.load(Ordering::Acquire) > 0 {
            open.none.notified().await;
        }
    });
    let _ = waited.await;
}

async fn accept(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    workers: Arc<Vec<Worker>>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve a proxy socket");
            return;
        }
    };
    let port = listener.local_addr().map_or(0, |a| a.port());
    for turn in (0..workers.len()).cycle() {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed("proxy", &e).await;
                    continue;
                }
            },
        };
        // The stream moves to its worker's runtime, which registers it anew.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a proxy connection over");
                continue;
            }
        };
        let worker = workers[turn].clone();
        worker.open.count.fetch_add(1, Ordering::AcqRel);
        let connection = Connection {
            client,
            port,
            proxy: Arc::clone(&proxy),
            upstream: worker.upstream.clone(),
            shutdown: shutdown.clone(),
            _slot: slot,
        };
        let open = worker.open;
        worker.runtime.spawn(async move {
            connection.serve(stream).await;
            if open.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                open.none.notify_one();
            }
        });
    }
}

/// One client's connection and what serving it takes.
struct Connection {
    client: SocketAddr,
    port: u16,
    proxy: Arc<Proxy>,
    upstream: Upstream,
    shutdown: CancellationToken,
    /// Held while the connection is open.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: std::net::TcpStream) {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve a proxy connection");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let Connection {
            client,
            port,
            proxy,
            upstream,
            shutdown,
            _slot,
        } = self;
        let origin = Arc::new(Origin::new(client));
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (proxy, upstream) = (Arc::clone(&proxy), upstream.clone());
            let origin = Arc::clone(&origin);
            async move {
                let response = proxy.handle(request, &origin, port, &upstream).await;
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(DRAIN_TIMEOUT, connection.as_mut()).await {
                    Ok(ended) => ended,
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "proxy connection ended with an error");
        }
    }
}
