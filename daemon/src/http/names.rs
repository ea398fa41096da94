//! `/v1/names`: the names that remember ports, per project.

use axum::Json;
use portd_api::{ErrorBody, NameList};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::ApiQuery;
use super::openapi::ServerErrors;
use super::{AppError, State};
use crate::leases::LeaseError;
use crate::store::names;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NamesQuery {
    /// Only the names of this project (its absolute path).
    project: Option<String>,
}

/// `GET /v1/names[?project=DIR]`.
#[utoipa::path(
    get,
    path = "/v1/names",
    tag = "history",
    params(NamesQuery),
    responses(
        (status = 200, description = "Names and the ports they remember", body = NameList),
        (status = 400, description = "`bad_request`: an unknown key or a bad value in the query", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    state: State,
    ApiQuery(query): ApiQuery<NamesQuery>,
) -> Result<Json<NameList>, AppError> {
    state
        .leases
        .writer()
        .flush()
        .await
        .map_err(LeaseError::from)?;
    let mut conn = state.leases.store().reader().acquire().await?;
    let names = names::list(&mut conn, query.project.as_deref()).await?;
    Ok(Json(NameList { names }))
}
