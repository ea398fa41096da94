//! `/v1/ports/{port}`: who leases and who listens on a port.

use axum::Json;
use portd_api::{ErrorBody, PortReport};

use super::extract::Port;
use super::openapi::ServerErrors;
use super::{AppError, State};

/// `GET /v1/ports/{port}`.
#[utoipa::path(
    get,
    path = "/v1/ports/{port}",
    tag = "ports",
    params(Port),
    responses(
        (status = 200, description = "The port's lease, its listeners, and whether it is free", body = PortReport),
        (status = 422, description = "`invalid_value`: the port is not 1-65535", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn report(state: State, Port { port }: Port) -> Result<Json<PortReport>, AppError> {
    Ok(Json(state.leases.report(port).await?))
}
