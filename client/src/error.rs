//! Client errors, each with the exit code DESIGN assigns it.

use portd_api::ErrorBody;
use portd_api::error::exit_code_for_status;

/// Exit code of a configuration error: sysexits' EX_CONFIG, beside the 69
/// (EX_UNAVAILABLE) of an unreachable daemon.
pub const CONFIG_EXIT: i32 = 78;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad usage the argument parser could not catch.
    #[error("{0}")]
    Usage(String),
    /// The daemon answered with an error.
    #[error("{}", .body.as_ref().map_or_else(|| format!("daemon answered {status}"), |b| b.error.message.clone()))]
    Api {
        status: u16,
        body: Option<ErrorBody>,
        raw: String,
    },
    /// A port is taken, found on this side (`run --listen-fd`'s own bind).
    #[error("{0}")]
    Taken(String),
    /// Looked for, not there (no lease, no name, nothing listening).
    #[error("{0}")]
    NotFound(String),
    /// No daemon to talk to, or one we must not trust.
    #[error("{0}")]
    Unreachable(String),
    /// The settings point somewhere portctl must not go (a socket directory
    /// open to other users): the user fixes them, retrying will not.
    #[error("{0}")]
    Config(String),
    /// `run`: the command could not be started (126, 127).
    #[error("{message}")]
    Exec { code: i32, message: String },
    /// Anything else: I/O, a garbled answer.
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Api { status, .. } => exit_code_for_status(*status),
            ClientError::Taken(_) => 3,
            ClientError::NotFound(_) => 4,
            ClientError::Unreachable(_) => 69,
            ClientError::Config(_) => CONFIG_EXIT,
            ClientError::Exec { code, .. } => *code,
            ClientError::Other(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_design() {
        assert_eq!(ClientError::Usage("x".into()).exit_code(), 2);
        assert_eq!(ClientError::Taken("x".into()).exit_code(), 3);
        assert_eq!(ClientError::NotFound("x".into()).exit_code(), 4);
        assert_eq!(ClientError::Unreachable("x".into()).exit_code(), 69);
        assert_eq!(ClientError::Config("x".into()).exit_code(), 78);
        assert_eq!(ClientError::Other("x".into()).exit_code(), 1);
        let api = |status| ClientError::Api {
            status,
            body: None,
            raw: String::new(),
        };
        assert_eq!(api(409).exit_code(), 3);
        assert_eq!(api(403).exit_code(), 5);
        assert_eq!(api(422).exit_code(), 2);
        assert_eq!(api(503).exit_code(), 69);
        assert_eq!(api(500).exit_code(), 1);
    }
}
