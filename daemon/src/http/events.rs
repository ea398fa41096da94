//! `/v1/events`: the history, oldest first.

use axum::Json;
use axum::extract::State;
use portd_api::query::EventsQuery;
use portd_api::{ErrorBody, ErrorCode, EventList};

use super::AppError;
use super::extract::ApiQuery;
use super::openapi::ServerErrors;
use crate::store::Store;
use crate::time::parse_rfc3339;

/// Most events one answer carries.
const MAX_EVENTS: i64 = 10_000;

/// `GET /v1/events[?since=RFC3339]`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "history",
    params(EventsQuery),
    responses(
        (status = 200, description = "History, oldest first, at most 10,000 events", body = EventList),
        (status = 400, description = "`bad_request`: an unknown key in the query", body = ErrorBody),
        (status = 422, description = "`invalid_value`: `since` is not RFC 3339", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(store): State<Store>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, AppError> {
    let since = match query.since.as_deref() {
        Some(text) => parse_rfc3339(text).ok_or_else(|| {
            AppError::new(
                ErrorCode::InvalidValue,
                format!("invalid since '{text}': expected RFC 3339"),
            )
        })?,
        None => 0,
    };
    let mut reader = store.read().await?;
    let events = reader.events_since(since, MAX_EVENTS).await?;
    Ok(Json(EventList { events }))
}
