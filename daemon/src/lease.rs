//! A lease as the daemon holds it, a name that remembers a port, and a
//! project's label: the typed records that the lease table keeps in memory,
//! the writer commits, the reads return and the reaper judges by. SQLite's rows (i64 columns, a
//! `state` string) exist only inside `store`, which converts at its edge;
//! the API's JSON only in the answer (`to_api`).

pub use portd_api::EndReason;
use portd_api::{Lease, LeaseState, NameEntry};

use crate::time::rfc3339;

/// A process identity that survives pid reuse: the pid plus its start time
/// in clock ticks after boot (within one boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId {
    pub pid: u32,
    pub start_ticks: u64,
}

/// The process a lease belongs to, as the grant checked it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner {
    pub id: OwnerId,
    /// Unix seconds (fractional), as the API shows it.
    pub start_time: f64,
    pub uid: u32,
    /// Its session: untagged listeners in it are suspects once it dies.
    pub session: u32,
}

/// The command `portctl run` started for a lease and registered: it leads a
/// process group of its own, whose id is its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub pid: u32,
    pub start_ticks: u64,
}

/// A lease while it is active: what the grant decided, and the command
/// registered since.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveLease {
    pub id: String,
    pub port: u16,
    pub name: Option<String>,
    pub project: Option<String>,
    pub owner: Owner,
    pub boot_id: String,
    /// Unix milliseconds.
    pub granted_at: i64,
    /// The grant in clock ticks after boot, the clock of process start
    /// times: only processes started at or after it can be its orphans.
    pub granted_ticks: u64,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    pub command: Option<Command>,
}

/// A lease that has ended: the lease as it was, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedLease {
    pub lease: ActiveLease,
    pub reason: EndReason,
    /// Unix milliseconds.
    pub at: i64,
    /// Released with `keep`: clock ticks after boot at the release. What of
    /// the lease started before it is left running.
    pub kept_ticks: Option<u64>,
}

/// A name that remembers a port, per project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedName {
    pub project: String,
    pub name: String,
    pub port: u16,
    /// When it last got a lease, Unix milliseconds.
    pub last_used: i64,
}

/// The label a project goes by in the proxy's host names
/// (`NAME.LABEL.localhost`): given once, never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectLabel {
    pub project: String,
    pub label: String,
}

impl ActiveLease {
    /// The lease ended now (`at`, Unix ms) for `reason`.
    pub fn end(self, reason: EndReason, at: i64) -> EndedLease {
        EndedLease {
            lease: self,
            reason,
            at,
            kept_ticks: None,
        }
    }

    /// The API's view of the active lease.
    pub fn to_api(&self) -> Lease {
        Lease {
            id: self.id.clone(),
            port: self.port,
            name: self.name.clone(),
            project: self.project.clone(),
            owner: portd_api::Owner {
                pid: self.owner.id.pid,
                start_time: self.owner.start_time,
                uid: self.owner.uid,
            },
            state: LeaseState::Active,
            end_reason: None,
            granted_at: rfc3339(self.granted_at),
            expires_at: self.expires_at.map(rfc3339),
            ended_at: None,
            home: None,
            skipped: None,
            command_pid: self.command.map(|c| c.pid),
        }
    }
}

impl EndedLease {
    /// The API's view of the ended lease.
    pub fn to_api(&self) -> Lease {
        Lease {
            state: LeaseState::Ended,
            end_reason: Some(self.reason),
            ended_at: Some(rfc3339(self.at)),
            ..self.lease.to_api()
        }
    }
}

impl RememberedName {
    /// The API's entry, with the name's active lease if it has one.
    pub fn to_api(&self, lease: Option<Lease>) -> NameEntry {
        NameEntry {
            project: self.project.clone(),
            name: self.name.clone(),
            port: self.port,
            last_used: rfc3339(self.last_used),
            lease_id: lease.as_ref().map(|l| l.id.clone()),
            lease,
        }
    }
}

/// Leases for tests.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// An active lease `lease-PORT` on `port`, of process `pid` (started at
    /// tick 1, uid 1000, its own session), named in project `/p` when `name`
    /// is given.
    pub fn lease(port: u16, pid: u32, name: Option<&str>) -> ActiveLease {
        ActiveLease {
            id: format!("lease-{port}"),
            port,
            name: name.map(String::from),
            project: name.map(|_| "/p".to_string()),
            owner: Owner {
                id: OwnerId {
                    pid,
                    start_ticks: 1,
                },
                start_time: 1.0,
                uid: 1000,
                session: pid,
            },
            boot_id: "boot".into(),
            granted_at: 0,
            granted_ticks: 0,
            expires_at: None,
            command: None,
        }
    }
}
