//! `POST /v1/cleanup`: the start-up cleanup, on demand (machines without
//! systemd run `portctl cleanup` at login).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use portd_api::CleanupReport;

use super::AppError;
use super::openapi::ServerErrors;
use crate::leases::{LeaseError, Leases, Startup};
use crate::peer::Peer;
use crate::task::Units;
use crate::time::now_ms;

/// `POST /v1/cleanup`: ends the leases of dead owners and of other boots,
/// then reaps orphans and forgets stale names; waits for the daemon's own
/// start-up cleanup first and reports it too. Takes no body.
#[utoipa::path(
    post,
    path = "/v1/cleanup",
    tag = "maintenance",
    responses(
        (status = 200, description = "What the reconcile, the orphan sweep and the name pruning did, and what the start-up cleanup did", body = CleanupReport),
        ServerErrors,
    )
)]
pub async fn cleanup(
    State(leases): State<Arc<Leases>>,
    State(startup): State<Arc<Startup>>,
    State(units): State<Units>,
    Extension(peer): Extension<Peer>,
) -> Result<Json<CleanupReport>, AppError> {
    let startup = startup.report().await;
    // Leases it ends have their orphans reaped by its sweep: one unit, so
    // a client that hangs up between the two leaves no orphan behind.
    let mut report = units
        .run("cleanup", async move {
            leases.cleanup(peer.pid, now_ms()).await
        })
        .await
        .map_err(LeaseError::from)??;
    report.startup = startup;
    Ok(Json(report))
}
