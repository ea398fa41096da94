//! `/v1/ports/{port}`: who leases and who listens on a port.

use axum::Json;
use axum::extract::Path;
use portd_api::PortReport;

use super::{AppError, State, path_port};

/// `GET /v1/ports/{port}`.
pub async fn report(state: State, Path(port): Path<String>) -> Result<Json<PortReport>, AppError> {
    Ok(Json(state.leases.report(path_port(&port)?).await?))
}
