//! Reads of the `leases` table, and the rows they return converted into
//! [`ActiveLease`] and [`EndedLease`]: the only place a lease is a row.
//! Every write goes through the writer (`commit`).

use sqlx::FromRow;

use super::{Reader, StoreError};
use crate::lease::{ActiveLease, Command, EndReason, EndedLease, Owner, OwnerId};

/// One row of `leases`, as stored.
#[derive(Debug, Clone, FromRow)]
struct LeaseRow {
    id: String,
    port: i64,
    name: Option<String>,
    project: Option<String>,
    owner_pid: i64,
    owner_start_ticks: i64,
    owner_start_time: f64,
    owner_uid: i64,
    owner_sid: i64,
    boot_id: String,
    state: String,
    end_reason: Option<String>,
    granted_at: i64,
    granted_ticks: i64,
    expires_at: Option<i64>,
    ended_at: Option<i64>,
    command_pid: Option<i64>,
    command_start_ticks: Option<i64>,
    kept_ticks: Option<i64>,
}

impl LeaseRow {
    /// The lease as it was granted (and its command); any state.
    fn lease(self) -> Result<ActiveLease, StoreError> {
        let id = &self.id;
        let command = match (self.command_pid, self.command_start_ticks) {
            (Some(pid), Some(start_ticks)) => Some(Command {
                pid: column(id, "command_pid", pid)?,
                start_ticks: column(id, "command_start_ticks", start_ticks)?,
            }),
            _ => None,
        };
        Ok(ActiveLease {
            port: column(id, "port", self.port)?,
            owner: Owner {
                id: OwnerId {
                    pid: column(id, "owner_pid", self.owner_pid)?,
                    start_ticks: column(id, "owner_start_ticks", self.owner_start_ticks)?,
                },
                start_time: self.owner_start_time,
                uid: column(id, "owner_uid", self.owner_uid)?,
                session: column(id, "owner_sid", self.owner_sid)?,
            },
            granted_ticks: column(id, "granted_ticks", self.granted_ticks)?,
            command,
            id: self.id,
            name: self.name,
            project: self.project,
            boot_id: self.boot_id,
            granted_at: self.granted_at,
            expires_at: self.expires_at,
        })
    }

    fn active(self) -> Result<ActiveLease, StoreError> {
        match self.state.as_str() {
            "active" => self.lease(),
            other => Err(StoreError::Row(format!("lease {} is {other}", self.id))),
        }
    }

    fn ended(self) -> Result<EndedLease, StoreError> {
        let reason = self.end_reason.as_deref().and_then(EndReason::parse);
        let (Some(reason), Some(at), "ended") = (reason, self.ended_at, self.state.as_str()) else {
            return Err(StoreError::Row(format!(
                "lease {} is {} ({:?} at {:?})",
                self.id, self.state, self.end_reason, self.ended_at
            )));
        };
        let kept_ticks = match self.kept_ticks {
            Some(ticks) => Some(column(&self.id, "kept_ticks", ticks)?),
            None => None,
        };
        Ok(EndedLease {
            lease: self.lease()?,
            reason,
            at,
            kept_ticks,
        })
    }
}

/// An integer column in the range of its type, or an error naming it.
fn column<T: TryFrom<i64>>(id: &str, name: &str, value: i64) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Row(format!("lease {id}: {name} {value}")))
}

fn all_ended(rows: Vec<LeaseRow>) -> Result<Vec<EndedLease>, StoreError> {
    rows.into_iter().map(LeaseRow::ended).collect()
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

impl Reader {
    /// Every active lease, by port.
    pub async fn active_leases(&mut self) -> Result<Vec<ActiveLease>, StoreError> {
        let rows: Vec<LeaseRow> =
            sqlx::query_as(select_leases!("WHERE state = 'active' ORDER BY port"))
                .fetch_all(self.conn())
                .await?;
        rows.into_iter().map(LeaseRow::active).collect()
    }

    /// Up to `limit` ended leases, newest first.
    pub async fn recently_ended(&mut self, limit: i64) -> Result<Vec<EndedLease>, StoreError> {
        let rows = sqlx::query_as(select_leases!(
            "WHERE state = 'ended' ORDER BY ended_at DESC, granted_at DESC LIMIT ?1"
        ))
        .bind(limit)
        .fetch_all(self.conn())
        .await?;
        all_ended(rows)
    }

    /// The lease `id`, if it has ended (an active lease has no orphans).
    pub async fn ended_by_id(&mut self, id: &str) -> Result<Option<EndedLease>, StoreError> {
        let row: Option<LeaseRow> =
            sqlx::query_as(select_leases!("WHERE id = ?1 AND state = 'ended'"))
                .bind(id)
                .fetch_optional(self.conn())
                .await?;
        row.map(LeaseRow::ended).transpose()
    }

    /// For each port without an active lease, its most recent lease of
    /// `boot_id` that ended with a dead owner: where suspects and untagged
    /// orphans are looked for. At most `limit`, newest first.
    pub async fn last_dead_per_port(
        &mut self,
        boot_id: &str,
        limit: i64,
    ) -> Result<Vec<EndedLease>, StoreError> {
        let query = select_leases!(
            "WHERE id IN (SELECT id FROM (
                SELECT id, MAX(ended_at) FROM leases
                WHERE state = 'ended' AND end_reason = 'owner_died' AND boot_id = ?1
                  AND port NOT IN (SELECT port FROM leases WHERE state = 'active')
                GROUP BY port))
             ORDER BY ended_at DESC LIMIT ?2"
        );
        self.ended_of_boot(query, boot_id, limit).await
    }

    /// Ended leases of `boot_id` with a registered command, newest first:
    /// their command's process group may hold orphans without tags. At
    /// most `limit`.
    pub async fn ended_with_command(
        &mut self,
        boot_id: &str,
        limit: i64,
    ) -> Result<Vec<EndedLease>, StoreError> {
        let query = select_leases!(
            "WHERE state = 'ended' AND boot_id = ?1 AND command_pid IS NOT NULL
             ORDER BY ended_at DESC LIMIT ?2"
        );
        self.ended_of_boot(query, boot_id, limit).await
    }

    /// The ended leases `query` selects with `boot_id` as ?1 and `limit`
    /// as ?2.
    async fn ended_of_boot(
        &mut self,
        query: &'static str,
        boot_id: &str,
        limit: i64,
    ) -> Result<Vec<EndedLease>, StoreError> {
        let rows = sqlx::query_as(query)
            .bind(boot_id)
            .bind(limit)
            .fetch_all(self.conn())
            .await?;
        all_ended(rows)
    }

    /// The most recent lease of `boot_id` on `port` that has ended.
    pub async fn last_ended_on_port(
        &mut self,
        port: u16,
        boot_id: &str,
    ) -> Result<Option<EndedLease>, StoreError> {
        let row: Option<LeaseRow> = sqlx::query_as(select_leases!(
            "WHERE state = 'ended' AND port = ?1 AND boot_id = ?2 ORDER BY ended_at DESC LIMIT 1"
        ))
        .bind(i64::from(port))
        .bind(boot_id)
        .fetch_optional(self.conn())
        .await?;
        row.map(LeaseRow::ended).transpose()
    }

    /// The most recent lease of `name` in `project` that has ended, of any
    /// boot: what the proxy says about a name that no longer serves.
    pub async fn last_ended_named(
        &mut self,
        project: &str,
        name: &str,
    ) -> Result<Option<EndedLease>, StoreError> {
        let row: Option<LeaseRow> = sqlx::query_as(select_leases!(
            "WHERE state = 'ended' AND project = ?1 AND name = ?2 ORDER BY ended_at DESC LIMIT 1"
        ))
        .bind(project)
        .bind(name)
        .fetch_optional(self.conn())
        .await?;
        row.map(LeaseRow::ended).transpose()
    }
}
