//! `/v1/leases`: grant, list, look up, release.

use axum::Json;
use axum::extract::Extension;
use axum::http::StatusCode;
use portd_api::query::{LeasesQuery, ReleaseQuery};
use portd_api::{ErrorBody, Lease, LeaseList, LeaseRequest};

use super::AppError;
use super::extract::{ApiJson, ApiQuery, Port};
use super::openapi::ServerErrors;
use std::sync::Arc;

use axum::extract::State;

use crate::leases::Leases;
use crate::owner::OwnerCache;
use crate::peer::Peer;

/// `POST /v1/leases`: 201 with a new lease, 200 with the caller's existing one.
#[utoipa::path(
    post,
    path = "/v1/leases",
    tag = "leases",
    request_body(content = LeaseRequest, description = "Every field is optional; an empty body asks for the first grantable port of the daemon's range"),
    responses(
        (status = 201, description = "A new lease", body = Lease),
        (status = 200, description = "The caller's existing lease on that port or name", body = Lease),
        (status = 400, description = "`bad_request`: malformed JSON, a body that is not an object, an unknown field, or a body that did not arrive within 5 s of its headers", body = ErrorBody),
        (status = 403, description = "`forbidden`: the owner is another user's process, or every holder of the port is protected (`kill`)", body = ErrorBody),
        (status = 409, description = "`port_taken` (with `port` and `lease` or `holders`), `no_free_port` (`range`) or `name_taken` (`name`, `lease`)", body = ErrorBody),
        (status = 413, description = "`body_too_large`: over 64 KiB", body = ErrorBody),
        (status = 422, description = "`invalid_value` (port 0, a name without a project, a dead or mismatched owner, ...) or `port_not_permitted`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn create(
    State(leases): State<Arc<Leases>>,
    Extension(peer): Extension<Peer>,
    Extension(cache): Extension<Arc<OwnerCache>>,
    ApiJson(request): ApiJson<LeaseRequest>,
) -> Result<(StatusCode, Json<Lease>), AppError> {
    let granted = leases.grant(peer, request, &cache).await?;
    let status = if granted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(granted.lease)))
}

/// `GET /v1/leases[?all=true]`.
#[utoipa::path(
    get,
    path = "/v1/leases",
    tag = "leases",
    params(LeasesQuery),
    responses(
        (status = 200, description = "Active leases by port, then (with `all`) ended ones", body = LeaseList),
        (status = 400, description = "`bad_request`: an unknown key or a bad value in the query", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(leases): State<Arc<Leases>>,
    ApiQuery(query): ApiQuery<LeasesQuery>,
) -> Result<Json<LeaseList>, AppError> {
    Ok(Json(LeaseList {
        leases: leases.list(query.all).await?,
    }))
}

/// `GET /v1/leases/{port}`: the active lease.
#[utoipa::path(
    get,
    path = "/v1/leases/{port}",
    tag = "leases",
    params(Port),
    responses(
        (status = 200, description = "The active lease on the port", body = Lease),
        (status = 404, description = "`not_found`: no active lease on the port", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the port is not 1-65535", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn get(
    State(leases): State<Arc<Leases>>,
    Port { port }: Port,
) -> Result<Json<Lease>, AppError> {
    Ok(Json(leases.get(port)?))
}

/// `DELETE /v1/leases/{port}[?id=][&keep=true]`: release; the id guards
/// against releasing a newer lease on the same port. The lease's orphans
/// (its processes still listening on the port) are then reaped in the
/// background, unless `keep`.
#[utoipa::path(
    delete,
    path = "/v1/leases/{port}",
    tag = "leases",
    params(Port, ReleaseQuery),
    responses(
        (status = 200, description = "The lease, now ended as `released`; its orphans are reaped in the background unless `keep`", body = Lease),
        (status = 400, description = "`bad_request`: an unknown key or a bad value in the query", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's lease", body = ErrorBody),
        (status = 404, description = "`not_found`: no active lease on the port, or not lease `id`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the port is not 1-65535", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn release(
    State(leases): State<Arc<Leases>>,
    Extension(peer): Extension<Peer>,
    Port { port }: Port,
    ApiQuery(query): ApiQuery<ReleaseQuery>,
) -> Result<Json<Lease>, AppError> {
    Ok(Json(
        leases
            .release(peer, port, query.id.as_deref(), query.keep)
            .await?,
    ))
}
