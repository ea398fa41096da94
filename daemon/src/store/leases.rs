//! Reads of the `leases` table, on a connection from the reader pool; every
//! write goes through the group-commit writer (`writer`).

use portd_api::{EndReason, Lease, LeaseState, Owner};
use sqlx::{FromRow, SqliteConnection};

use super::rfc3339;
use crate::owner::OwnerId;

/// One row of `leases`, as stored.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct LeaseRow {
    pub id: String,
    pub port: i64,
    pub name: Option<String>,
    pub project: Option<String>,
    pub owner_pid: i64,
    pub owner_start_ticks: i64,
    pub owner_start_time: f64,
    pub owner_uid: i64,
    pub owner_sid: i64,
    pub boot_id: String,
    pub state: String,
    pub end_reason: Option<String>,
    pub granted_at: i64,
    pub granted_ticks: i64,
    pub expires_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// The command `portctl run` started for the lease (and the id of the
    /// process group it leads), once registered.
    pub command_pid: Option<i64>,
    pub command_start_ticks: Option<i64>,
    /// Released with `keep`: clock ticks after boot at the release.
    pub kept_ticks: Option<i64>,
}

impl LeaseRow {
    pub fn port(&self) -> u16 {
        self.port as u16
    }

    pub fn owner(&self) -> OwnerId {
        OwnerId {
            pid: self.owner_pid as u32,
            start_ticks: self.owner_start_ticks as u64,
        }
    }

    pub fn owner_uid(&self) -> u32 {
        self.owner_uid as u32
    }

    /// The registered command: its pid (its process group's id) and start
    /// time in clock ticks after boot.
    pub fn command(&self) -> Option<(u32, u64)> {
        Some((self.command_pid? as u32, self.command_start_ticks? as u64))
    }

    pub fn is_active(&self) -> bool {
        self.state == "active"
    }

    /// The API's view of the row.
    pub fn to_api(&self) -> Lease {
        Lease {
            id: self.id.clone(),
            port: self.port(),
            name: self.name.clone(),
            project: self.project.clone(),
            owner: Owner {
                pid: self.owner_pid as u32,
                start_time: self.owner_start_time,
                uid: self.owner_uid as u32,
            },
            state: if self.is_active() {
                LeaseState::Active
            } else {
                LeaseState::Ended
            },
            end_reason: self.end_reason.as_deref().and_then(EndReason::parse),
            granted_at: rfc3339(self.granted_at),
            expires_at: self.expires_at.map(rfc3339),
            ended_at: self.ended_at.map(rfc3339),
            home: None,
            skipped: None,
            command_pid: self.command().map(|(pid, _)| pid),
        }
    }
}

// sqlx takes `&'static str` queries: the column list is spelled once and
// joined to each statement at compile time.
macro_rules! select_leases {
    ($tail:literal) => {
        concat!(
            "SELECT id, port, name, project, owner_pid, owner_start_ticks, owner_start_time, ",
            "owner_uid, owner_sid, boot_id, state, end_reason, granted_at, granted_ticks, expires_at, ended_at, ",
            "command_pid, command_start_ticks, kept_ticks ",
            "FROM leases ",
            $tail
        )
    };
}

/// Every active lease, by port.
pub async fn all_active(conn: &mut SqliteConnection) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!("WHERE state = 'active' ORDER BY port"))
        .fetch_all(conn)
        .await
}

/// Up to `limit` ended leases, newest first.
pub async fn recently_ended(
    conn: &mut SqliteConnection,
    limit: i64,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'ended' ORDER BY ended_at DESC, granted_at DESC LIMIT ?1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The lease `id`, active or ended.
pub async fn by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!("WHERE id = ?1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// For each port without an active lease, its most recent lease of `boot_id`
/// that ended with a dead owner: where suspects and untagged orphans are
/// looked for. At most `limit`, newest first.
pub async fn last_dead_per_port(
    conn: &mut SqliteConnection,
    boot_id: &str,
    limit: i64,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE id IN (SELECT id FROM (
            SELECT id, MAX(ended_at) FROM leases
            WHERE state = 'ended' AND end_reason = 'owner_died' AND boot_id = ?1
              AND port NOT IN (SELECT port FROM leases WHERE state = 'active')
            GROUP BY port))
         ORDER BY ended_at DESC LIMIT ?2"
    ))
    .bind(boot_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Ended leases of `boot_id` with a registered command, newest first: their
/// command's process group may hold orphans without tags. At most `limit`.
pub async fn ended_with_command(
    conn: &mut SqliteConnection,
    boot_id: &str,
    limit: i64,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'ended' AND boot_id = ?1 AND command_pid IS NOT NULL
         ORDER BY ended_at DESC LIMIT ?2"
    ))
    .bind(boot_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The most recent lease of `boot_id` on `port` that has ended.
pub async fn last_ended_on_port(
    conn: &mut SqliteConnection,
    port: u16,
    boot_id: &str,
) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'ended' AND port = ?1 AND boot_id = ?2 ORDER BY ended_at DESC LIMIT 1"
    ))
    .bind(i64::from(port))
    .bind(boot_id)
    .fetch_optional(conn)
    .await
}
