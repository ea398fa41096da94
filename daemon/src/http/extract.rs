//! Body, query and path extractors that reject bad input with our JSON
//! error body instead of axum's plain-text one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use portd_api::ErrorCode;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::conns::Activity;
use super::error::AppError;

/// How long a request's body may take to arrive once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A JSON object body: 400 if malformed, not an object, or with unknown
/// fields; 413 past 64 KiB. An empty body reads as `{}`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Until the body is in, nothing is done: the connection may give way
        // at the cap like one stuck in its headers.
        let activity = req.extensions().get::<Arc<Activity>>().cloned();
        if let Some(activity) = &activity {
            activity.reading_body();
        }
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| {
                AppError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "the request body did not arrive within {} s; send it whole",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::new(ErrorCode::BodyTooLarge, "request body exceeds 64 KiB")
                } else {
                    AppError::new(ErrorCode::BadRequest, rejection.body_text())
                }
            })?;
        if let Some(activity) = &activity {
            activity.busy();
        }
        let text = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => &b"{}"[..],
            Some(b'{') => &bytes[..],
            // serde reads a struct from an array too (`[8000]` as
            // `{"port": 8000}`, `[]` as `{}`): only an object is a body.
            Some(_) => {
                return Err(AppError::new(
                    ErrorCode::BadRequest,
                    "the request body must be a JSON object ({...})",
                ));
            }
        };
        serde_json::from_slice(text)
            .map(ApiJson)
            .map_err(|e| AppError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
    }
}

/// A query string decoded into one of `portd_api::query`'s structs: 400 on
/// unknown or repeated keys, bad values and broken escapes.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        check_escapes(query)
            .and_then(|()| serde_urlencoded::from_str(query).map_err(|e| e.to_string()))
            .map(ApiQuery)
            .map_err(|e| {
                AppError::new(
                    ErrorCode::BadRequest,
                    format!("invalid query '{query}': {e}"),
                )
            })
    }
}

/// The `{port}` of a path, 1-65535. It is read as text and answered with
/// 422 `invalid_value` when it cannot be decoded (`%ff` is not UTF-8) or is
/// not a port, so the router never rejects it with a 404 of its own. Its
/// fields are also the path parameter of the OpenAPI document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct Port {
    /// A TCP port, 1-65535.
    #[param(minimum = 1, maximum = 65535)]
    pub port: u16,
}

impl<S: Send + Sync> FromRequestParts<S> for Port {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                AppError::new(
                    ErrorCode::InvalidValue,
                    format!("invalid path: {}", rejection.body_text()),
                )
            })?;
        let port =
            portd_api::parse_port(&text).map_err(|e| AppError::new(ErrorCode::InvalidValue, e))?;
        Ok(Port { port })
    }
}

/// serde_urlencoded decodes leniently: a broken `%` escape stays as
/// written and bytes that are not UTF-8 become U+FFFD. A query that would
/// mean something other than what it says is refused instead.
fn check_escapes(query: &str) -> Result<(), String> {
    for escape in query.split('%').skip(1) {
        let hex = escape
            .get(..2)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex.is_none() {
            let shown: String = escape.chars().take(2).collect();
            return Err(format!("bad %-escape %{shown}"));
        }
    }
    percent_encoding::percent_decode_str(query)
        .decode_utf8()
        .map(drop)
        .map_err(|_| "the query is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use portd_api::query::{EventsQuery, LeasesQuery, NamesQuery, ReleaseQuery};

    use super::*;

    /// The query of `uri` as the daemon decodes it, or the status and
    /// message it refuses it with.
    async fn decode<T: DeserializeOwned>(uri: &str) -> Result<T, (u16, String)> {
        let (mut parts, ()) = axum::http::Request::get(uri).body(()).unwrap().into_parts();
        match ApiQuery::<T>::from_request_parts(&mut parts, &()).await {
            Ok(ApiQuery(query)) => Ok(query),
            Err(refused) => {
                let response = refused.into_response();
                let status = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let body: portd_api::ErrorBody = serde_json::from_slice(&body).unwrap();
                assert_eq!(body.error.code, ErrorCode::BadRequest);
                Err((status, body.error.message))
            }
        }
    }

    #[tokio::test]
    async fn query_values_keep_their_text_and_booleans() {
        assert_eq!(
            decode::<LeasesQuery>("/v1/leases?all=true").await,
            Ok(LeasesQuery { all: true })
        );
        assert_eq!(
            decode::<LeasesQuery>("/v1/leases").await,
            Ok(LeasesQuery { all: false })
        );
        assert_eq!(
            decode::<EventsQuery>("/v1/events?since=2026-01-01T00%3A00%3A00Z").await,
            Ok(EventsQuery {
                since: Some("2026-01-01T00:00:00Z".into())
            })
        );
        assert_eq!(
            decode::<ReleaseQuery>("/v1/leases/8000?id=a+b&keep=false").await,
            Ok(ReleaseQuery {
                id: Some("a b".into()),
                keep: false
            })
        );
        assert_eq!(
            decode::<NamesQuery>("/v1/names?project=/srv/my%20app&name=%C3%BC").await,
            Ok(NamesQuery {
                project: Some("/srv/my app".into()),
                name: Some("\u{fc}".into())
            })
        );
    }

    #[tokio::test]
    async fn unknown_repeated_and_badly_escaped_keys_are_400() {
        for (query, says) in [
            ("colour=red", "unknown field `colour`"),
            ("keep=true&keep=true", "duplicate field `keep`"),
            ("keep=maybe", "provided string was not `true` or `false`"),
            ("keep", "not `true` or `false`"),
            ("id=%zz", "bad %-escape %zz"),
            ("id=%", "bad %-escape %"),
            ("id=%ff", "the query is not UTF-8"),
            ("id=%C3&keep=true", "the query is not UTF-8"),
        ] {
            let uri = format!("/v1/leases/8000?{query}");
            match decode::<ReleaseQuery>(&uri).await {
                Err((400, message)) => assert!(
                    message.starts_with(&format!("invalid query '{query}': "))
                        && message.contains(says),
                    "{message} does not say {says}"
                ),
                other => panic!("{query} is not refused with 400: {other:?}"),
            }
        }
    }
}
