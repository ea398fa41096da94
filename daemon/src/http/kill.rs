//! `POST /v1/ports/{port}/kill`: explicit termination of a port's listeners.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use portd_api::{ErrorBody, KillReport, KillRequest};

use super::AppError;
use super::extract::{ApiJson, Port};
use super::openapi::ServerErrors;
use crate::peer::Peer;
use crate::reaper::Reaper;

/// `POST /v1/ports/{port}/kill`: signals the port's listening holders
/// (explicit-kill rules: the caller's own processes, root's any).
#[utoipa::path(
    post,
    path = "/v1/ports/{port}/kill",
    tag = "ports",
    params(Port),
    request_body(content = KillRequest, description = "Every field is optional"),
    responses(
        (status = 200, description = "What was signalled and what was skipped", body = KillReport),
        (status = 400, description = "`bad_request`: malformed JSON, a body that is not an object, an unknown field, or a body that did not arrive within 5 s of its headers", body = ErrorBody),
        (status = 403, description = "`forbidden`: every holder is protected or another user's", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing listens on the port", body = ErrorBody),
        (status = 413, description = "`body_too_large`: over 64 KiB", body = ErrorBody),
        (status = 422, description = "`invalid_value`: a bad port, signal or grace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn kill(
    State(reaper): State<Arc<Reaper>>,
    Extension(peer): Extension<Peer>,
    Port { port }: Port,
    ApiJson(request): ApiJson<KillRequest>,
) -> Result<Json<KillReport>, AppError> {
    Ok(Json(reaper.kill_port(peer, port, request).await?))
}
