//! `/v1/leases/{port}/command` and `/v1/leases/{port}/processes`: the
//! command `portctl run` started for a lease, and what a lease's processes
//! listen on.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use portd_api::{CommandRequest, ErrorBody, Lease, LeaseProcesses};

use super::AppError;
use super::extract::{ApiJson, Port};
use super::openapi::ServerErrors;
use crate::leases::Leases;
use crate::peer::Peer;

/// `PUT /v1/leases/{port}/command`: registers the command `portctl run`
/// started; the members of its process group then belong to the lease.
#[utoipa::path(
    put,
    path = "/v1/leases/{port}/command",
    tag = "leases",
    params(Port),
    request_body(content = CommandRequest, description = "The lease's id and the command's pid and start time"),
    responses(
        (status = 200, description = "The lease, with `command_pid`", body = Lease),
        (status = 400, description = "`bad_request`: malformed JSON or an unknown field", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's lease", body = ErrorBody),
        (status = 404, description = "`not_found`: lease `id` is not active on the port", body = ErrorBody),
        (status = 413, description = "`body_too_large`: over 64 KiB", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the process is not the owner's child leading its own group, started after the grant, as the owner's uid", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn register(
    State(leases): State<Arc<Leases>>,
    Extension(peer): Extension<Peer>,
    Port { port }: Port,
    ApiJson(request): ApiJson<CommandRequest>,
) -> Result<Json<Lease>, AppError> {
    Ok(Json(leases.register_command(peer, port, request).await?))
}

/// `GET /v1/leases/{port}/processes`: the active lease's processes and the
/// TCP ports each listens on.
#[utoipa::path(
    get,
    path = "/v1/leases/{port}/processes",
    tag = "leases",
    params(Port),
    responses(
        (status = 200, description = "Processes tagged with the lease or in its command's process group", body = LeaseProcesses),
        (status = 404, description = "`not_found`: no active lease on the port", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the port is not 1-65535", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(leases): State<Arc<Leases>>,
    Port { port }: Port,
) -> Result<Json<LeaseProcesses>, AppError> {
    Ok(Json(leases.processes(port).await?))
}
