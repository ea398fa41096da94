//! Who asks (`Peer`) and why a lease operation failed (`LeaseError`).

use portd_api::{Holder, Lease, PortRange};

use crate::store::StoreError;

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: Option<u32>,
    pub uid: u32,
}

impl Peer {
    pub(crate) fn may_act_for(&self, uid: u32) -> bool {
        self.uid == 0 || self.uid == uid
    }
}

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
    #[error("port {port} is held by {}", describe_holders(holders))]
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

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> LeaseError {
        LeaseError::Store(StoreError::Query(e))
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
