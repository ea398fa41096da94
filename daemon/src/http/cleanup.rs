//! `POST /v1/cleanup`: the start-up cleanup, on demand (machines without
//! systemd run `portctl cleanup` at login).

use axum::Json;
use axum::extract::Extension;
use portd_api::CleanupReport;

use super::{AppError, State};
use crate::leases::Peer;
use crate::maintain;
use crate::reaper::Reaper;

pub async fn cleanup(
    state: State,
    Extension(peer): Extension<Peer>,
) -> Result<Json<CleanupReport>, AppError> {
    Ok(Json(
        maintain::cleanup(&state, Reaper::protected(peer.pid)).await?,
    ))
}
