//! The accept loop: one hyper connection per client on the Unix socket,
//! with the caller's credentials attached to every request.
//!
//! `axum::serve` has neither a header-read timeout nor a connection cap, so
//! connections are served here with hyper directly. A slow or idle client
//! cannot hold the daemon: `header_read_timeout` closes a connection that
//! has not sent a whole request head within 5 s of connecting or of its
//! last answer (idle or trickling), the JSON extractor gives a body 5 s,
//! and at the connection cap a new client is admitted by shedding an idle
//! or stuck connection ([`super::conns`]). Shutdown drains in-flight
//! requests with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::conns::{Conns, Tracked};
use super::repoll::Repoll;
use crate::owner::OwnerCache;
use crate::peer::Peer;
use crate::socket::accept_failed;

/// Fewest and most connections served at once; between the two, half the
/// open-file limit (the rest is for pidfds, SQLite, probes and /proc).
const MIN_CONNECTIONS: u64 = 64;
const MAX_CONNECTIONS: u64 = 4096;
/// A client must send a request's headers within this time of connecting
/// or of its previous answer.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection cap for a soft open-file limit of `nofile`.
pub fn connection_cap(nofile: u64) -> usize {
    usize::try_from((nofile / 2).clamp(MIN_CONNECTIONS, MAX_CONNECTIONS))
        .unwrap_or(MAX_CONNECTIONS as usize)
}

/// The connection cap under this process's open-file limit (read after the
/// daemon raised it).
pub fn max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    connection_cap(getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft))
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve_connections(
    listener: UnixListener,
    router: Router,
    shutdown: CancellationToken,
) {
    let conns = Conns::new(max_connections());
    tracing::debug!(cap = conns.cap(), "serving connections");
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed("API", &e).await;
                    continue;
                }
            },
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
                uid: cred.uid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; dropping connection");
                continue;
            }
        };
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = conns.admit() => slot,
        };
        let activity = Arc::clone(slot.activity());
        let router = router.clone();
        let owner_cache = Arc::new(OwnerCache::default());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            activity.busy();
            request.extensions_mut().insert(peer);
            request.extensions_mut().insert(Arc::clone(&owner_cache));
            request.extensions_mut().insert(Arc::clone(&activity));
            let answered = router.clone().oneshot(request);
            let activity = Arc::clone(&activity);
            async move {
                let response = answered.await;
                activity.answered();
                response
            }
        });
        let stream = Tracked::new(stream, Arc::clone(slot.activity()));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A client may shut its writing half once its request is sent
            // (`nc -N`, some HTTP libraries); it still waits for the answer.
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(Repoll::new(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it.
                _ = slot.shed().cancelled() => {}
            }
            drop(slot);
        }));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
