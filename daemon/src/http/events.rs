//! `/v1/events`: the history, oldest first.

use axum::Json;
use portd_api::{ErrorCode, EventList};
use serde::Deserialize;

use super::extract::ApiQuery;
use super::{AppError, State};
use crate::leases::LeaseError;
use crate::store::{events, parse_rfc3339};

/// Most events one answer carries.
const MAX_EVENTS: i64 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// RFC 3339; events at or after it.
    since: Option<String>,
}

/// `GET /v1/events[?since=RFC3339]`.
pub async fn list(
    state: State,
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
    state
        .leases
        .writer()
        .flush()
        .await
        .map_err(LeaseError::from)?;
    let mut conn = state.leases.store().reader().acquire().await?;
    let events = events::since(&mut conn, since, MAX_EVENTS).await?;
    Ok(Json(EventList { events }))
}
