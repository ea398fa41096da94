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
