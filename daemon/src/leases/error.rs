//! Why a lease operation failed (`LeaseError`), with what the answer
//! needs to say about it.

use portd_api::{Holder, HolderKind, Lease, PortRange};

use crate::owner::OwnerError;
use crate::reaper::ReapError;
use crate::store::StoreError;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("port {port} is leased to pid {} ({})", lease.owner.pid, lease.id)]
    Leased { port: u16, lease: Box<Lease> },
    #[error("port {port} is held by {}{}", describe_holders(holders), unleased_hint(*port, holders))]
    Held { port: u16, holders: Vec<Holder> },
    #[error("no free port in {0}")]
    NoFreePort(PortRange),
    #[error("name '{name}' is leased on port {} by pid {}", lease.port, lease.owner.pid)]
    NameTaken { name: String, lease: Box<Lease> },
    #[error("every holder of port {port} is protected: {message}")]
    Protected {
        port: u16,
        skipped: Vec<portd_api::Reported>,
        message: String,
    },
    #[error("portd may not bind port {0} (permission denied)")]
    NotPermitted(u16),
    /// Decisions are paused while the table is reloaded after a failed commit.
    #[error("recovering from a failed database write; ask again")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking step (a /proc scan, a probe) panicked; already logged.
    #[error(transparent)]
    Panicked(#[from] crate::task::Panicked),
}

impl From<OwnerError> for LeaseError {
    fn from(e: OwnerError) -> LeaseError {
        match e {
            OwnerError::Invalid(message) => LeaseError::Invalid(message),
            OwnerError::Forbidden(message) => LeaseError::Forbidden(message),
        }
    }
}

impl From<ReapError> for LeaseError {
    fn from(e: ReapError) -> LeaseError {
        match e {
            ReapError::Invalid(message) => LeaseError::Invalid(message),
            ReapError::NothingListens(_) => LeaseError::NotFound(e.to_string()),
            ReapError::Protected {
                port,
                skipped,
                message,
            } => LeaseError::Protected {
                port,
                skipped,
                message,
            },
            ReapError::Store(e) => LeaseError::Store(e),
            ReapError::Panicked(e) => LeaseError::Panicked(e),
        }
    }
}

/// What to do about listeners without a lease: the explicit kill, on its
/// own or as part of the lease. A container is stopped with the docker
/// command that names it; a systemd socket is not stopped that way (kill
/// refuses it without --force), so for those it points at `who`.
fn unleased_hint(port: u16, holders: &[Holder]) -> String {
    if holders.is_empty() {
        String::new()
    } else if let Some(container) = holders.iter().find_map(|h| h.container.as_ref()) {
        format!(
            ", without a lease; stop the container with `{}`",
            container.stop_command()
        )
    } else if holders.iter().all(|h| h.kind == HolderKind::Process) {
        format!(
            ", without a lease; stop it with `portctl kill {port}`, \
             or stop it and lease the port with `portctl lease {port} --kill`"
        )
    } else {
        format!(", without a lease; `portctl who {port}` says what it is")
    }
}

fn describe_holders(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "a socket portd cannot attribute".to_string();
    }
    holders
        .iter()
        .map(Holder::describe)
        .collect::<Vec<_>>()
        .join(", ")
}
