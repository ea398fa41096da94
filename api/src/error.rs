//! The error body every failed request answers with, and its stable codes.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`: the body of every non-2xx answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and for scripts (`code` plus context).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Context that depends on the code: `port`, `lease`, `holders`, `range`.
    #[serde(flatten)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// Stable machine-readable error codes. Each maps to one HTTP status and one
/// `portctl` exit code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body or the query is not what the endpoint takes.
    BadRequest,
    /// 422: well-formed but invalid value (port 0, an empty range, ...).
    InvalidValue,
    /// 422: the daemon may not bind that port (below 1024 without privilege).
    PortNotPermitted,
    /// 403: the caller may not do this (another user's process or lease).
    Forbidden,
    /// 404: no such lease, port or route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the port is leased to another live owner or held by a process.
    PortTaken,
    /// 409: no grantable port in the range searched.
    NoFreePort,
    /// 409: the name is leased by another live owner in the same project.
    NameTaken,
    /// 413: the body exceeds 64 KiB.
    BodyTooLarge,
    /// 503: the daemon is shutting down.
    ShuttingDown,
    /// 503: the daemon is recovering from a failed write; ask again.
    Unavailable,
    /// 500: the daemon failed; details are in its log, not in the answer.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::InvalidValue | ErrorCode::PortNotPermitted => 422,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PortTaken | ErrorCode::NoFreePort | ErrorCode::NameTaken => 409,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::ShuttingDown | ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The `portctl` exit code for an HTTP status, as the DESIGN's table says.
pub fn exit_code_for_status(status: u16) -> i32 {
    match status {
        200..=299 => 0,
        400 | 405 | 413 | 422 => 2,
        409 => 3,
        404 => 4,
        403 => 5,
        503 => 69,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_the_exit_code_the_design_names() {
        let cases = [
            (ErrorCode::BadRequest, 2),
            (ErrorCode::InvalidValue, 2),
            (ErrorCode::PortNotPermitted, 2),
            (ErrorCode::BodyTooLarge, 2),
            (ErrorCode::PortTaken, 3),
            (ErrorCode::NoFreePort, 3),
            (ErrorCode::NameTaken, 3),
            (ErrorCode::NotFound, 4),
            (ErrorCode::Forbidden, 5),
            (ErrorCode::ShuttingDown, 69),
            (ErrorCode::Internal, 1),
        ];
        for (code, exit) in cases {
            assert_eq!(exit_code_for_status(code.status()), exit, "{code:?}");
        }
    }

    #[test]
    fn error_body_round_trips_with_context() {
        let json = r#"{"error":{"code":"port_taken","message":"m","port":8000}}"#;
        let body: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.error.code, ErrorCode::PortTaken);
        assert_eq!(body.error.context["port"], 8000);
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
    }
}
