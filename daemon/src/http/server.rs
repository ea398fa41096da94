//! The accept loop: one hyper connection per client on the Unix socket,
//! with the caller's credentials attached to every request.
//!
//! `axum::serve` has neither a header-read timeout nor a connection cap, so
//! connections are served here with hyper-util directly: a semaphore caps
//! them, `header_read_timeout` cuts off clients that send nothing (or one
//! byte a second), and shutdown drains in-flight requests with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::leases::{OwnerCache, Peer};

/// Most connections served at once; further clients wait in the backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// A client must send a request's headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve_connections(
    listener: UnixListener,
    router: Router,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.expect("semaphore never closes"),
        };
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // EMFILE and friends: give the fd table a moment to drain.
                    tokio::time::sleep(Duration::from_millis(50)).await;
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
        let router = router.clone();
        let owner_cache = Arc::new(OwnerCache::default());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer);
            request.extensions_mut().insert(Arc::clone(&owner_cache));
            router.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A client may shut its writing half once its request is sent
            // (`nc -N`, some HTTP libraries); it still waits for the answer.
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
