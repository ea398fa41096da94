//! Reads of the append-only history: one row per thing that happened to a
//! lease.

use portd_api::Event;
use sqlx::FromRow;

use super::{Reader, StoreError};
use crate::time::rfc3339;

/// At most this many rows of history are kept in each table.
pub const MAX_HISTORY_ROWS: i64 = 100_000;

#[derive(Debug, FromRow)]
struct EventRow {
    seq: i64,
    at: i64,
    kind: String,
    lease_id: Option<String>,
    port: Option<i64>,
    pid: Option<i64>,
    detail: Option<String>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Event {
        Event {
            seq: row.seq,
            at: rfc3339(row.at),
            kind: row.kind,
            lease_id: row.lease_id,
            port: row.port.map(|p| p as u16),
            pid: row.pid.map(|p| p as u32),
            detail: row.detail,
        }
    }
}

impl Reader {
    /// Events at or after `since_ms`, oldest first, at most `limit`.
    pub async fn events_since(
        &mut self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, at, kind, lease_id, port, pid, detail FROM events
             WHERE at >= ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.conn())
        .await?;
        Ok(rows.into_iter().map(Event::from).collect())
    }

    /// How many events are kept.
    pub async fn event_count(&mut self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.conn())
            .await?;
        Ok(count as u64)
    }
}
