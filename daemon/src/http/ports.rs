//! `/v1/ports/{port}`: who leases and who listens on a port.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portd_api::{ErrorBody, PortReport};

use super::AppError;
use super::extract::Port;
use super::openapi::ServerErrors;
use crate::leases::Leases;

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
pub async fn report(
    State(leases): State<Arc<Leases>>,
    Port { port }: Port,
) -> Result<Json<PortReport>, AppError> {
    Ok(Json(leases.report(port).await?))
}
