//! Names remember their port per project: `(project, name) -> port`, and
//! when they last got a lease.

use portd_api::{Lease, NameEntry};
use sqlx::SqliteConnection;

/// A remembered name as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NameRow {
    pub project: String,
    pub name: String,
    pub port: i64,
    /// Unix milliseconds.
    pub last_used: i64,
}

impl NameRow {
    pub fn port(&self) -> u16 {
        self.port as u16
    }

    /// The API's entry, with the name's active lease if it has one.
    pub fn to_api(&self, lease: Option<Lease>) -> NameEntry {
        NameEntry {
            project: self.project.clone(),
            name: self.name.clone(),
            port: self.port(),
            last_used: super::rfc3339(self.last_used),
            lease_id: lease.as_ref().map(|l| l.id.clone()),
            lease,
        }
    }
}

/// The names of `project` (of every project if `None`), only `name` if
/// given; by project, then name.
pub async fn list(
    conn: &mut SqliteConnection,
    project: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<NameRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT project, name, port, last_used FROM names
         WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR name = ?2)
         ORDER BY project, name",
    )
    .bind(project)
    .bind(name)
    .fetch_all(conn)
    .await
}

/// Every name with the port it remembers.
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<(String, String, u16)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT project, name, port FROM names")
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(p, n, port)| (p, n, port as u16))
        .collect())
}
