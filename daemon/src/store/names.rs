//! Names remember their port per project: `(project, name) -> port`.

use sqlx::SqliteConnection;

#[derive(Debug, sqlx::FromRow)]
struct NameRow {
    project: String,
    name: String,
    port: i64,
    last_used: i64,
    lease_id: Option<String>,
}

/// Every name (of `project`, if given) with its active lease, if any.
pub async fn list(
    conn: &mut SqliteConnection,
    project: Option<&str>,
) -> Result<Vec<portd_api::NameEntry>, sqlx::Error> {
    let rows: Vec<NameRow> = sqlx::query_as(
        "SELECT n.project, n.name, n.port, n.last_used, l.id AS lease_id FROM names n
         LEFT JOIN leases l ON l.state = 'active' AND l.project = n.project AND l.name = n.name
         WHERE ?1 IS NULL OR n.project = ?1
         ORDER BY n.project, n.name",
    )
    .bind(project)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| portd_api::NameEntry {
            project: r.project,
            name: r.name,
            port: r.port as u16,
            last_used: super::rfc3339(r.last_used),
            lease_id: r.lease_id,
        })
        .collect())
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
