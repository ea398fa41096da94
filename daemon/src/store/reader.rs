//! A read connection from the read-only pool, with one method per question
//! the daemon asks of what SQLite holds (`leases`, `names`, `events`).
//! [`super::Store::read`] hands one out once the writer's queue has
//! drained.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection};

/// Reads on one pooled connection; dropping it returns the connection.
pub struct Reader(PoolConnection<Sqlite>);

impl Reader {
    pub(super) fn new(conn: PoolConnection<Sqlite>) -> Reader {
        Reader(conn)
    }

    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.0
    }
}
