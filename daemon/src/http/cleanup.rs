//! `POST /v1/cleanup`: the start-up cleanup, on demand (machines without
//! systemd run `portctl cleanup` at login).

use axum::Json;
use axum::extract::Extension;
use portd_api::CleanupReport;

use super::openapi::ServerErrors;
use super::{AppError, State};
use crate::leases::Peer;
use crate::maintain;
use crate::reaper::Reaper;
use crate::store::now_ms;

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
    let mut report = maintain::cleanup(&state, Reaper::protected(peer.pid), now_ms()).await?;
    report.startup = startup;
    Ok(Json(report))
}
