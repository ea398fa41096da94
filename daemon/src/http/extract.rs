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

/// A query string: 400 on unknown keys or bad values.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_like(query)
            .and_then(|value| serde_json::from_value(value).map_err(|e| e.to_string()))
            .map(ApiQuery)
            .map_err(|e| AppError::new(ErrorCode::BadRequest, format!("invalid query: {e}")))
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

/// Parses `a=1&b=x` into a JSON object of strings, booleans and numbers as
/// written, so serde can type-check it with `deny_unknown_fields`.
fn serde_urlencoded_like(query: &str) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        let json = match value.as_str() {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => serde_json::Value::String(value),
        };
        if map.insert(key.clone(), json).is_some() {
            return Err(format!("'{key}' given twice"));
        }
    }
    Ok(serde_json::Value::Object(map))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or("truncated %-escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "query is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_their_text_and_booleans() {
        let v = serde_urlencoded_like("all=true&since=2026-01-01T00%3A00%3A00Z&id=a+b").unwrap();
        assert_eq!(v["all"], true);
        assert_eq!(v["since"], "2026-01-01T00:00:00Z");
        assert_eq!(v["id"], "a b");
        assert!(serde_urlencoded_like("a=1&a=2").is_err());
        assert!(serde_urlencoded_like("a=%zz").is_err());
    }
}
