//! `POST /v1/ports/{port}/kill`: explicit termination of a port's listeners.

use axum::Json;
use axum::extract::{Extension, Path};
use portd_api::{KillReport, KillRequest};

use super::extract::ApiJson;
use super::{AppError, State, path_port};
use crate::leases::Peer;
use crate::reaper::Reaper;

pub async fn kill(
    state: State,
    Extension(peer): Extension<Peer>,
    Path(port): Path<String>,
    ApiJson(request): ApiJson<KillRequest>,
) -> Result<Json<KillReport>, AppError> {
    let port = path_port(&port)?;
    let protected = Reaper::protected(peer.pid);
    Ok(Json(
        state
            .leases
            .reaper()
            .kill_port(peer, port, request, protected)
            .await?,
    ))
}
