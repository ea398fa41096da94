//! Queries on the `leases` table. Functions take a connection so callers can
//! compose them inside one write transaction.

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
            moved_from: None,
        }
    }
}

// sqlx takes `&'static str` queries: the column list is spelled once and
// joined to each statement at compile time.
macro_rules! select_leases {
    ($tail:literal) => {
        concat!(
            "SELECT id, port, name, project, owner_pid, owner_start_ticks, owner_start_time, ",
            "owner_uid, owner_sid, boot_id, state, end_reason, granted_at, granted_ticks, expires_at, ended_at ",
            "FROM leases ",
            $tail
        )
    };
}

/// Writes a new active lease. Fails with a unique violation if the port
/// already has an active lease: the index, not this code, is the last word.
pub async fn insert(conn: &mut SqliteConnection, row: &LeaseRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO leases (id, port, name, project, owner_pid, owner_start_ticks, owner_start_time,
            owner_uid, owner_sid, boot_id, state, end_reason, granted_at, granted_ticks, expires_at, ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'active', NULL, ?11, ?12, ?13, NULL)",
    )
    .bind(&row.id)
    .bind(row.port)
    .bind(&row.name)
    .bind(&row.project)
    .bind(row.owner_pid)
    .bind(row.owner_start_ticks)
    .bind(row.owner_start_time)
    .bind(row.owner_uid)
    .bind(row.owner_sid)
    .bind(&row.boot_id)
    .bind(row.granted_at)
    .bind(row.granted_ticks)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The active lease on `port`, if any.
pub async fn active_on_port(
    conn: &mut SqliteConnection,
    port: u16,
) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!("WHERE state = 'active' AND port = ?1"))
        .bind(i64::from(port))
        .fetch_optional(conn)
        .await
}

/// Active leases on ports `lo..=hi`.
pub async fn active_between(
    conn: &mut SqliteConnection,
    lo: u16,
    hi: u16,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'active' AND port BETWEEN ?1 AND ?2"
    ))
    .bind(i64::from(lo))
    .bind(i64::from(hi))
    .fetch_all(conn)
    .await
}

/// The active lease of `(project, name)`, if any.
pub async fn active_by_name(
    conn: &mut SqliteConnection,
    project: &str,
    name: &str,
) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'active' AND project = ?1 AND name = ?2"
    ))
    .bind(project)
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Every active lease, by port.
pub async fn all_active(conn: &mut SqliteConnection) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!("WHERE state = 'active' ORDER BY port"))
        .fetch_all(conn)
        .await
}

/// Active leases by port, then (with `all`) up to 1,000 ended ones, newest
/// first.
pub async fn list(conn: &mut SqliteConnection, all: bool) -> Result<Vec<LeaseRow>, sqlx::Error> {
    let mut rows = all_active(&mut *conn).await?;
    if all {
        let ended: Vec<LeaseRow> = sqlx::query_as(select_leases!(
            "WHERE state = 'ended' ORDER BY ended_at DESC, granted_at DESC LIMIT 1000"
        ))
        .fetch_all(conn)
        .await?;
        rows.extend(ended);
    }
    Ok(rows)
}

/// Active leases whose owner is `owner`.
pub async fn active_of_owner(
    conn: &mut SqliteConnection,
    owner: OwnerId,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'active' AND owner_pid = ?1 AND owner_start_ticks = ?2"
    ))
    .bind(i64::from(owner.pid))
    .bind(owner.start_ticks as i64)
    .fetch_all(conn)
    .await
}

/// Active leases whose TTL has passed at `now_ms`.
pub async fn expired(
    conn: &mut SqliteConnection,
    now_ms: i64,
) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(select_leases!(
        "WHERE state = 'active' AND expires_at <= ?1"
    ))
    .bind(now_ms)
    .fetch_all(conn)
    .await
}

/// Ends the active lease `id`; false if it was not active any more.
pub async fn end(
    conn: &mut SqliteConnection,
    id: &str,
    reason: EndReason,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE leases SET state = 'ended', end_reason = ?2, ended_at = ?3 WHERE id = ?1 AND state = 'active'",
    )
    .bind(id)
    .bind(reason.as_str())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many leases are active.
pub async fn count_active(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE state = 'active'")
        .fetch_one(conn)
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
