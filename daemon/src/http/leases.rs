//! `/v1/leases`: grant, list, look up, release.

use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use portd_api::{Lease, LeaseList, LeaseRequest};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use super::{AppError, State, path_port};
use std::sync::Arc;

use crate::leases::{OwnerCache, Peer};

/// `POST /v1/leases`: 201 with a new lease, 200 with the caller's existing one.
pub async fn create(
    state: State,
    Extension(peer): Extension<Peer>,
    Extension(cache): Extension<Arc<OwnerCache>>,
    ApiJson(request): ApiJson<LeaseRequest>,
) -> Result<(StatusCode, Json<Lease>), AppError> {
    let granted = state.leases.grant(peer, request, &cache).await?;
    let status = if granted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(granted.lease)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /v1/leases[?all=true]`.
pub async fn list(
    state: State,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<LeaseList>, AppError> {
    Ok(Json(LeaseList {
        leases: state.leases.list(query.all).await?,
    }))
}

/// `GET /v1/leases/{port}`: the active lease.
pub async fn get(state: State, Path(port): Path<String>) -> Result<Json<Lease>, AppError> {
    Ok(Json(state.leases.get(path_port(&port)?)?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseQuery {
    id: Option<String>,
}

/// `DELETE /v1/leases/{port}[?id=]`: release; the id guards against
/// releasing a newer lease on the same port.
pub async fn release(
    state: State,
    Extension(peer): Extension<Peer>,
    Path(port): Path<String>,
    ApiQuery(query): ApiQuery<ReleaseQuery>,
) -> Result<Json<Lease>, AppError> {
    let port = path_port(&port)?;
    Ok(Json(
        state
            .leases
            .release(peer, port, query.id.as_deref())
            .await?,
    ))
}
