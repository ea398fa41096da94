//! Names remember their port per project: `(project, name) -> port`.

use sqlx::SqliteConnection;

/// The port `name` remembers in `project`, if any.
pub async fn remembered(
    conn: &mut SqliteConnection,
    project: &str,
    name: &str,
) -> Result<Option<u16>, sqlx::Error> {
    let port: Option<i64> =
        sqlx::query_scalar("SELECT port FROM names WHERE project = ?1 AND name = ?2")
            .bind(project)
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(port.map(|p| p as u16))
}

/// Ports in `lo..=hi` that any name other than `(project, name)` remembers.
pub async fn remembered_ports(
    conn: &mut SqliteConnection,
    lo: u16,
    hi: u16,
    except: Option<(&str, &str)>,
) -> Result<Vec<u16>, sqlx::Error> {
    let (project, name) = except.unwrap_or(("", ""));
    let ports: Vec<i64> = sqlx::query_scalar(
        "SELECT port FROM names WHERE port BETWEEN ?1 AND ?2 AND NOT (project = ?3 AND name = ?4)",
    )
    .bind(i64::from(lo))
    .bind(i64::from(hi))
    .bind(project)
    .bind(name)
    .fetch_all(conn)
    .await?;
    Ok(ports.into_iter().map(|p| p as u16).collect())
}

/// Makes `(project, name)` remember `port`.
pub async fn remember(
    conn: &mut SqliteConnection,
    project: &str,
    name: &str,
    port: u16,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO names (project, name, port, last_used) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project, name) DO UPDATE SET port = excluded.port, last_used = excluded.last_used",
    )
    .bind(project)
    .bind(name)
    .bind(i64::from(port))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

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
