//! `POST /v1/cleanup`: the start-up cleanup, on demand (machines without
//! systemd run `portctl cleanup` at login).

use std::sync::Arc;

use axum::Json;
use axum::extract::Extension;
use portd_api::CleanupReport;

use super::openapi::ServerErrors;
use super::{AppError, State};
use crate::leases::LeaseError;
use crate::maintain;
use crate::peer::Peer;
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
    state: State,
    Extension(peer): Extension<Peer>,
) -> Result<Json<CleanupReport>, AppError> {
    let startup = state.startup.report().await;
    let state = Arc::clone(&state.0);
    // Leases it ends have their orphans reaped by its sweep: one unit, so
    // a client that hangs up between the two leaves no orphan behind.
    let units = state.leases.reaper().units().clone();
    let mut report = units
        .run("cleanup", async move {
            maintain::cleanup(&state, peer.pid, now_ms()).await
        })
        .await
        .map_err(LeaseError::from)??;
    report.startup = startup;
    Ok(Json(report))
}
