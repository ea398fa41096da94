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

/// `POST /v1/cleanup`: ends the leases of dead owners and of other boots,
/// then reaps orphans. Takes no body.
#[utoipa::path(
    post,
    path = "/v1/cleanup",
    tag = "maintenance",
    responses(
        (status = 200, description = "What the reconcile and the orphan sweep did", body = CleanupReport),
        ServerErrors,
    )
)]
pub async fn cleanup(
    state: State,
    Extension(peer): Extension<Peer>,
) -> Result<Json<CleanupReport>, AppError> {
    Ok(Json(
        maintain::cleanup(&state, Reaper::protected(peer.pid)).await?,
    ))
}
