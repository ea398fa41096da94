//! `/v1/names`: the names that remember ports, per project.

use axum::Json;
use portd_api::NameList;
use serde::Deserialize;

use super::extract::ApiQuery;
use super::{AppError, State};
use crate::leases::LeaseError;
use crate::store::names;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    project: Option<String>,
}

/// `GET /v1/names[?project=DIR]`.
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
