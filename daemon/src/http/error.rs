//! `AppError`: every failure a handler can answer with, mapped to a status
//! and a stable code. Internal errors are logged in full and answered
//! without internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portd_api::{ErrorBody, ErrorCode, ErrorDetail};
use serde_json::{Map, Value, json};

use crate::leases::LeaseError;
use crate::reaper::ReapError;
use crate::store::{CommitError, StoreError};

#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    message: String,
    context: Map<String, Value>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            context: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> AppError {
        self.context.insert(key.to_string(), value);
        self
    }
}

impl From<LeaseError> for AppError {
    fn from(err: LeaseError) -> AppError {
        let message = err.to_string();
        match err {
            LeaseError::Invalid(_) => AppError::new(ErrorCode::InvalidValue, message),
            LeaseError::Forbidden(_) => AppError::new(ErrorCode::Forbidden, message),
            LeaseError::NotFound(_) => AppError::new(ErrorCode::NotFound, message),
            LeaseError::NotPermitted(port) => {
                AppError::new(ErrorCode::PortNotPermitted, message).with("port", json!(port))
            }
            LeaseError::Leased { port, lease } => AppError::new(ErrorCode::PortTaken, message)
                .with("port", json!(port))
                .with("lease", json!(lease)),
            LeaseError::Held { port, holders } => AppError::new(ErrorCode::PortTaken, message)
                .with("port", json!(port))
                .with("holders", json!(holders)),
            LeaseError::NoFreePort(range) => {
                AppError::new(ErrorCode::NoFreePort, message).with("range", json!(range))
            }
            LeaseError::Protected { port, skipped, .. } => {
                AppError::new(ErrorCode::Forbidden, message)
                    .with("port", json!(port))
                    .with("skipped", json!(skipped))
            }
            LeaseError::NameTaken { name, lease } => AppError::new(ErrorCode::NameTaken, message)
                .with("name", json!(name))
                .with("lease", json!(lease)),
            LeaseError::Unavailable => AppError::new(ErrorCode::Unavailable, message),
            // Logged with its message where it was caught.
            LeaseError::Panicked(_) => {
                AppError::new(ErrorCode::Internal, "internal error; see the daemon's log")
            }
            // Said in so many words: the fix is the user's, not a bug.
            LeaseError::Store(StoreError::Commit(full @ CommitError::DiskFull(_))) => {
                tracing::error!(error = %full, "store failure");
                AppError::new(ErrorCode::Internal, full.to_string())
            }
            LeaseError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                AppError::new(ErrorCode::Internal, "internal error; see the daemon's log")
            }
        }
    }
}

impl From<ReapError> for AppError {
    fn from(err: ReapError) -> AppError {
        LeaseError::from(err).into()
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> AppError {
        LeaseError::from(err).into()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                context: self.context,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Panicked;

    #[test]
    fn a_full_disk_is_a_500_that_says_so_and_other_store_failures_are_not() {
        let full = CommitError::DiskFull("/home/u/.local/state/portd/portd.db".into());
        let error = AppError::from(LeaseError::Store(StoreError::Commit(full)));
        assert_eq!(error.code, ErrorCode::Internal);
        assert!(error.message.contains("disk is full"), "{}", error.message);
        assert!(
            error.message.contains("free some space"),
            "{}",
            error.message
        );
        let other = CommitError::Failed("disk I/O error".into());
        let error = AppError::from(LeaseError::Store(StoreError::Commit(other)));
        assert_eq!(error.message, "internal error; see the daemon's log");
        assert_eq!(error.into_response().status(), 500);
    }

    #[test]
    fn a_panic_is_a_500_internal_that_keeps_its_message_out_of_the_answer() {
        let panicked = Panicked {
            what: "holder lookup",
            message: "secret detail".into(),
        };
        for err in [
            LeaseError::Panicked(panicked.clone()),
            LeaseError::from(ReapError::Panicked(panicked)),
        ] {
            let error = AppError::from(err);
            assert_eq!(error.code, ErrorCode::Internal);
            assert_eq!(error.into_response().status(), 500);
        }
        let error = AppError::from(LeaseError::Panicked(Panicked {
            what: "x",
            message: "secret detail".into(),
        }));
        assert!(!error.message.contains("secret"), "{}", error.message);
    }
}
