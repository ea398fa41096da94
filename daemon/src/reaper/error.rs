//! Why a reap or a kill failed.

use portd_api::Reported;

use crate::store::StoreError;
use crate::task::Panicked;

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    /// A kill request's signal or grace is not one the reaper takes.
    #[error("{0}")]
    Invalid(String),
    /// A kill found no listener on the port.
    #[error("nothing listens on port {0}")]
    NothingListens(u16),
    /// A kill found listeners, and every one of them is protected.
    #[error("every holder of port {port} is protected: {message}")]
    Protected {
        port: u16,
        skipped: Vec<Reported>,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking step (a /proc scan, the signals) panicked; already logged.
    #[error(transparent)]
    Panicked(#[from] Panicked),
}
