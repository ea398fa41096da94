//! `/v1/health` and `/v1/status`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portd_api::{Counts, Health, Status, VERSION};

use super::openapi::ServerErrors;
use super::{AppError, Daemon};
use crate::leases::{Leases, Startup};
use crate::store::Store;
use crate::time::rfc3339;
use crate::watch::Watcher;

/// `GET /v1/health`: answers as soon as the socket accepts, before the
/// start-up reconcile ends.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "daemon",
    responses((status = 200, description = "The daemon is alive (also while it reconciles or shuts down)", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        ok: true,
        version: VERSION.to_string(),
        pid: std::process::id(),
    })
}

/// `GET /v1/status`.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "daemon",
    responses(
        (status = 200, description = "Version, uptime, paths, range and counts", body = Status),
        ServerErrors,
    )
)]
pub async fn status(
    State(daemon): State<Arc<Daemon>>,
    State(leases): State<Arc<Leases>>,
    State(store): State<Store>,
    State(watcher): State<Arc<Watcher>>,
    State(startup): State<Arc<Startup>>,
) -> Result<Json<Status>, AppError> {
    let events = store.read().await?.event_count().await?;
    let (active, names) = leases.counts();
    let config = &daemon.config;
    Ok(Json(Status {
        version: VERSION.to_string(),
        pid: std::process::id(),
        uptime_secs: daemon.started.elapsed().as_secs_f64(),
        started_at: rfc3339(daemon.started_at_ms),
        db: config.db.display().to_string(),
        socket: config.socket.display().to_string(),
        range: config.range,
        grace_secs: config.grace.as_secs_f64(),
        reconciled: startup.is_finished(),
        counts: Counts {
            active_leases: active as u64,
            owners_watched: watcher.count() as u64,
            names: names as u64,
            events,
        },
        proxy: daemon.proxy.clone(),
    }))
}
