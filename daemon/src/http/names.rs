//! `/v1/names`: the names that remember ports, per project; listing them
//! and forgetting them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portd_api::query::{ForgetQuery, NamesQuery};
use portd_api::{ErrorBody, NameList};

use super::AppError;
use super::extract::ApiQuery;
use super::openapi::ServerErrors;
use crate::leases::Leases;

/// `GET /v1/names[?project=DIR][&name=N]`.
#[utoipa::path(
    get,
    path = "/v1/names",
    tag = "history",
    params(NamesQuery),
    responses(
        (status = 200, description = "Names, the ports they remember and their active leases", body = NameList),
        (status = 400, description = "`bad_request`: an unknown key or a bad value in the query", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(leases): State<Arc<Leases>>,
    ApiQuery(query): ApiQuery<NamesQuery>,
) -> Result<Json<NameList>, AppError> {
    let names = leases
        .names(query.project.as_deref(), query.name.as_deref())
        .await?;
    Ok(Json(NameList { names }))
}

/// `DELETE /v1/names?project=DIR[&name=N]`: forgets what the names
/// remember, all or nothing.
#[utoipa::path(
    delete,
    path = "/v1/names",
    tag = "history",
    params(ForgetQuery),
    responses(
        (status = 200, description = "The names forgotten, with the ports they remembered", body = NameList),
        (status = 400, description = "`bad_request`: no `project`, an unknown key or a bad value in the query", body = ErrorBody),
        (status = 404, description = "`not_found`: the project remembers no such name (or no names at all)", body = ErrorBody),
        (status = 409, description = "`name_taken`: a name to forget has an active lease (context: `name`, `lease`); nothing was forgotten", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn forget(
    State(leases): State<Arc<Leases>>,
    ApiQuery(query): ApiQuery<ForgetQuery>,
) -> Result<Json<NameList>, AppError> {
    let names = leases
        .forget_names(&query.project, query.name.as_deref())
        .await?;
    Ok(Json(NameList { names }))
}
