//! `/v1/url`: the URL a name has through the `.localhost` proxy.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portd_api::query::UrlQuery;
use portd_api::{ErrorBody, ErrorCode, NameUrl};

use super::extract::ApiQuery;
use super::openapi::ServerErrors;
use super::{AppError, Daemon};
use crate::leases::Leases;

/// `GET /v1/url?project=DIR&name=N`.
#[utoipa::path(
    get,
    path = "/v1/url",
    tag = "history",
    params(UrlQuery),
    responses(
        (status = 200, description = "The name's URL through the proxy, and its active lease's port if any", body = NameUrl),
        (status = 400, description = "`bad_request`: no `project` or `name`, an unknown key or a bad value in the query", body = ErrorBody),
        (status = 404, description = "`not_found`: the project knows no such name, or the proxy is off", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the name cannot be part of a host name", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn get(
    State(daemon): State<Arc<Daemon>>,
    State(leases): State<Arc<Leases>>,
    ApiQuery(query): ApiQuery<UrlQuery>,
) -> Result<Json<NameUrl>, AppError> {
    let proxy_port = daemon.proxy.port;
    if proxy_port == 0 {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "the .localhost proxy is off (proxy_port = 0): use the name's port ({port@NAME}), \
             or give portd a proxy port",
        ));
    }
    let (label, port) = leases.name_site(&query.project, &query.name)?;
    let url = crate::leases::site_url(&query.name, &label, proxy_port).ok_or_else(|| {
        AppError::new(
            ErrorCode::InvalidValue,
            format!(
                "name '{}' cannot be part of a host name: only names of lowercase letters, \
                 digits and '-' (at most 63) have a URL; use its port ({{port@NAME}})",
                query.name
            ),
        )
    })?;
    Ok(Json(NameUrl {
        url,
        name: query.name,
        project: query.project,
        label,
        port,
    }))
}
