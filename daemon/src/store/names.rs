//! Reads of `names`: each `(project, name)` remembers a port, and when it
//! last got a lease.

use super::{Reader, StoreError};
use crate::lease::RememberedName;

/// A remembered name as stored.
#[derive(Debug, sqlx::FromRow)]
struct NameRow {
    project: String,
    name: String,
    port: i64,
    last_used: i64,
}

impl Reader {
    /// The names of `project` (of every project if `None`), only `name` if
    /// given; by project, then name.
    pub async fn names(
        &mut self,
        project: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<RememberedName>, StoreError> {
        let rows: Vec<NameRow> = sqlx::query_as(
            "SELECT project, name, port, last_used FROM names
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR name = ?2)
             ORDER BY project, name",
        )
        .bind(project)
        .bind(name)
        .fetch_all(self.conn())
        .await?;
        rows.into_iter()
            .map(|row| {
                let port = u16::try_from(row.port).map_err(|_| {
                    StoreError::Row(format!(
                        "name {} in {}: port {}",
                        row.name, row.project, row.port
                    ))
                })?;
                Ok(RememberedName {
                    project: row.project,
                    name: row.name,
                    port,
                    last_used: row.last_used,
                })
            })
            .collect()
    }
}
